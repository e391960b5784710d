"""Structured logs: the ``ragtune`` logger as one JSON object per line, with the request id.

The request id is a context variable the server's middleware sets for each request (from an incoming
``X-Request-ID``, else a new one); every record logged while that request is served carries it. Records hold
what the code logs — routes, statuses, counts, latencies — never question or document text.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import time
import uuid
from typing import IO, Any

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("ragtune_request_id", default="")
_VALID_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
# LogRecord's own attributes: anything else on a record came from ``extra=`` and is logged as a field.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


def new_request_id(incoming: str | None) -> str:
    """The incoming ``X-Request-ID`` when it is a plain token (letters, digits, ``._:-``, at most 128), else a
    new random one: a header can never inject text into logs."""
    if incoming and _VALID_ID.fullmatch(incoming):
        return incoming
    return uuid.uuid4().hex


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, request_id, the ``extra`` fields, exception."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage(),
            "request_id": request_id.get() or None,
        }
        out.update({k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")})
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def configure_logging(log_format: str, stream: IO[str] | None = None) -> logging.Handler | None:
    """Log the ``ragtune`` logger at INFO as JSON lines to ``stream`` (stderr by default) for ``json``;
    ``text`` leaves logging as it is. Returns the handler added (remove it to undo), or None."""
    if log_format != "json":
        return None
    logger = logging.getLogger("ragtune")
    for old in [h for h in logger.handlers if isinstance(h.formatter, JsonFormatter)]:
        logger.removeHandler(old)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return handler
