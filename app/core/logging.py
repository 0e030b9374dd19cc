"""Logging set-up: plain lines, and no access token ever reaches a log."""

from __future__ import annotations

import logging

from app.core.middleware import redact_query


class RedactTokens(logging.Filter):
    """uvicorn logs the request target with its query string (`/api/v1/ws?token=…`) in the
    access log and in its WebSocket accept/close lines; rewrite those arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact_query(arg) for arg in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: redact_query(v) for k, v in record.args.items()}
        record.msg = redact_query(record.msg)
        return True


_FILTER = RedactTokens()


def configure_logging(level: str = "INFO") -> None:
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("cascade").setLevel(level)
    for name in ("uvicorn", "uvicorn.access", "uvicorn.error"):
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
    # Handlers of other loggers see records propagated from children; filter them too.
    for handler in logging.getLogger("uvicorn.access").handlers + root.handlers:
        if _FILTER not in handler.filters:
            handler.addFilter(_FILTER)
