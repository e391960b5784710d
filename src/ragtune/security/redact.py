"""Remove secrets from text before it is shown: known secret values and common credential shapes.

Only the standard library is imported, so the CLI can redact its error line without a slower start.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MASK = "***"

# scheme://user:password@host -> scheme://***@host (the password may itself hold a raw '@').
_URL_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)[^\s/?#@]*(?:@[^\s/?#@]*)*@")
# Provider key shapes: OpenAI-style sk-..., GitHub tokens, Slack tokens, AWS access key ids.
_KEY_SHAPES = re.compile(
    r"\b(?:sk-[A-Za-z0-9_\-]{6,}|gh[pousr]_[A-Za-z0-9]{16,}|github_pat_[A-Za-z0-9_]{16,}"
    r"|xox[abposr]-[A-Za-z0-9\-]{8,}|AKIA[0-9A-Z]{16})"
)
# Authorization: Bearer xyz / Basic xyz / Token xyz, and a bare "Bearer xyz".
_AUTH_HEADER = re.compile(r"(?i)\b(authorization\s*[:=]\s*[\"']?)(?:(bearer|basic|token)\s+)?[^\s\"',;}]+")
_BEARER = re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9\-._~+/]+=*")
# api_key=..., "access_token": "...", password: ..., ?key=... (names ending in key/token/secret/password).
_ASSIGNMENT = re.compile(
    r"(?i)(?P<name>\b(?:[A-Za-z0-9]+[_\-])*(?:api[_\-]?key|apikey|key|token|secret|password|passwd|pwd"
    r"|credentials?|signature|sig))(?P<sep>[\"']?\s*[=:]\s*[\"']?)(?P<value>[^\s\"'&,;}`\])]+)"
)


def _mask_assignment(match: re.Match[str]) -> str:
    value = match.group("value")
    if value in {"...", MASK} or value.startswith("***"):
        return match.group(0)
    return f"{match.group('name')}{match.group('sep')}{MASK}"


def _mask_auth(match: re.Match[str]) -> str:
    scheme = match.group(2)
    return f"{match.group(1)}{scheme + ' ' if scheme else ''}{MASK}"


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every value in ``secrets`` and every credential-shaped substring replaced by ``***``."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    text = _URL_USERINFO.sub(lambda m: f"{m.group('scheme')}{MASK}@", text)
    text = _KEY_SHAPES.sub(lambda m: m.group(0)[:3] + MASK if m.group(0).startswith("sk-") else MASK, text)
    text = _AUTH_HEADER.sub(_mask_auth, text)
    text = _BEARER.sub(lambda m: f"{m.group(1)}{MASK}", text)
    return _ASSIGNMENT.sub(_mask_assignment, text)
