"""One log line per request the UI's server rejects.

A malformed request to the Gradio app (an unknown event index, a body the route cannot use) makes uvicorn
log ``Exception in ASGI application`` with the whole server-side traceback on stderr, for every such
request.  Nothing is wrong with the server (it answers 4xx/500 and goes on), so the log keeps one line
naming the exception instead.
"""

from __future__ import annotations

import logging

__all__ = ["OneLineRejections", "quiet_rejections"]

#: the loggers uvicorn reports failed requests on
SERVER_LOGGERS = ("uvicorn.error",)


class OneLineRejections(logging.Filter):
    """Turn a log record carrying an exception into ``rejected request: <Type>: <message>`` (first line of
    the message, at most 200 characters), without the traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None:
            text = (str(exc).splitlines() or [""])[0][:200]
            record.msg, record.args = f"rejected request: {type(exc).__name__}: {text}".rstrip(": "), ()
            record.exc_info, record.exc_text, record.stack_info = None, None, None
        return True


def quiet_rejections() -> None:
    """Install :class:`OneLineRejections` on uvicorn's loggers (once; calling again changes nothing)."""
    for name in SERVER_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, OneLineRejections) for f in logger.filters):
            logger.addFilter(OneLineRejections())
