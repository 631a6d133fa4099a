"""The one clock: now as naive UTC, the way the database stores every time.

People read times in ``TIMEZONE`` (``messages.when`` turns a moment into their date and time);
everything stored and compared is naive UTC from here.
"""

from datetime import UTC, datetime

__all__ = ["utcnow"]


def utcnow() -> datetime:
    """Now, naive UTC."""
    return datetime.now(UTC).replace(tzinfo=None)
