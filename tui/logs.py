"""Where log lines go: stderr for the command line, a file while the app owns the terminal.
Either way no AWS access key id and no terminal control sequence reaches a line."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

from core.safetext import visible

_SECRET = re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b")
_NOISY = ("botocore", "aiobotocore", "urllib3", "werkzeug")


class Redact(logging.Filter):
    """Access key ids redacted, control characters made visible."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = visible(_SECRET.sub("[access key redacted]", record.getMessage()))
        record.args = ()
        return True


class SafeFormatter(logging.Formatter):
    """Tracebacks too: each line made visible (the lines stay lines, so a traceback reads
    as one) and every line after a record's first marked "  | ", so that a newline in an
    exception's text (an object key, say) cannot forge a record; access key ids redacted."""

    def __init__(self, form: str, journald: bool = False):
        super().__init__(form)
        self.journald = journald

    def format(self, record: logging.LogRecord) -> str:
        text = _SECRET.sub("[access key redacted]", super().format(record))
        lines = [visible(line) for line in text.split("\n")]
        lines[1:] = [f"  | {line}" for line in lines[1:]]
        if self.journald:  # systemd reads "<N>" as the line's priority (sd-daemon(3))
            priority = _PRIORITY.get(record.levelno, 6)
            lines = [f"<{priority}>{line}" for line in lines]
        return "\n".join(lines)


_PRIORITY = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6,
             logging.DEBUG: 7}


def journald_stderr() -> bool:
    """Whether stderr is connected to the systemd journal: systemd sets JOURNAL_STREAM to
    the device and inode of that stream (systemd.exec(5))."""
    stream = os.environ.get("JOURNAL_STREAM", "")
    try:
        device, inode = (int(part) for part in stream.split(":"))
        status = os.fstat(sys.stderr.fileno())
    except (ValueError, OSError):
        return False
    return (status.st_dev, status.st_ino) == (device, inode)


def log_to_stderr(verbosity: int) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(Redact())
    handler.setFormatter(SafeFormatter("vpcwatch: %(levelname)s: %(message)s",
                                       journald=journald_stderr()))
    level = (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbosity, 2)]
    logging.basicConfig(level=level, handlers=[handler], force=True)
    for noisy in _NOISY:
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


@contextlib.contextmanager
def log_to_file(path: Path) -> Iterator[None]:
    """While the app owns the terminal, log lines go to ``path`` (stderr would tear it)."""
    root = logging.getLogger()
    saved = root.handlers[:]
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.addFilter(Redact())
    handler.setFormatter(SafeFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.handlers = [handler]
    try:
        yield
    finally:
        root.handlers = saved
        handler.close()
