"""Structured logs: JSON lines when stderr is not a terminal, short text when it is.

Every record carries the audit id of the exec it belongs to (see policies.logctx)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from typing import Any

from policies.logctx import AuditIdFilter

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = (
                    value
                    if isinstance(value, str | int | float | bool) or value is None
                    else str(value)
                )
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        audit = getattr(record, "audit_id", None)
        head = f"{record.levelname.lower():7} {record.name}: {record.getMessage()}"
        text = f"{head} (audit {audit})" if audit else head
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def setup_logging(level: str = "INFO", fmt: str = "auto") -> None:
    """Configure the root logger once, for the CLI and the server."""
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if use_json else TextFormatter())
    handler.addFilter(AuditIdFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("uvicorn.access", "httpx", "websockets", "aiosqlite", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
