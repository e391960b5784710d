"""The tamper-evident audit log: hash-chained JSONL records of every answer and pipeline run.

:class:`AuditLog` appends (safe with several processes, durable), :func:`verify` checks a log and names its
first bad record, :func:`answer_record` / :func:`pipeline_record` build records that never hold document
text. Format, guarantees and residual risks: docs/audit.md.
"""

from ragtune.audit.log import GENESIS, AuditLog, Head, log_path, read_head, record_hash
from ragtune.audit.records import answer_record, outcome_of, pipeline_record, question_sha256
from ragtune.audit.verify import Problem, VerifyReport, verify

__all__ = ["GENESIS", "AuditLog", "Head", "Problem", "VerifyReport", "answer_record", "log_path", "outcome_of",
           "pipeline_record", "question_sha256", "read_head", "record_hash", "verify"]
