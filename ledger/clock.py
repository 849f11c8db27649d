"""Timestamps: the statement `at` format, and the ledger's never-backwards `recorded_at` clock."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from ledger.errors import Malformed

AT_PATTERN = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{3})?Z\Z"
RECORDED_PATTERN = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z\Z"
_AT = re.compile(AT_PATTERN)


def format_recorded(moment: datetime) -> str:
    """`YYYY-MM-DDTHH:MM:SS.mmmZ` in UTC: string order is time order."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def parse_timestamp(text: str) -> datetime:
    """Parse an `at` or `recorded_at` timestamp, refusing other shapes and impossible dates."""
    if not _AT.match(text):
        raise Malformed(f"timestamp {text!r} is not YYYY-MM-DDTHH:MM:SS[.mmm]Z")
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise Malformed(f"timestamp {text!r} is not a real date and time") from None


def normalise(text: str) -> str:
    """An `at` timestamp in recorded_at form, so the two compare as strings."""
    return text if len(text) == 24 else text[:-1] + ".000Z"


class Clock:
    """The ledger's clock: millisecond UTC timestamps that never go backwards."""

    def __init__(self, now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._now = now
        self._last = ""
        self._lock = threading.Lock()

    def next(self, *not_before: str, strictly: bool = False, after: str = "") -> str:
        """The current time, but never earlier than the last one issued or any of `not_before`,
        and later than `after` (by a millisecond if need be); with `strictly`, later than all
        of them."""
        with self._lock:
            floor = max((self._last, *not_before))
            stamp = max(format_recorded(self._now()), floor)
            if (strictly and floor and stamp == floor) or (after and stamp <= after):
                stamp = format_recorded(
                    datetime.fromisoformat(max(stamp, after)) + timedelta(milliseconds=1)
                )
            self._last = stamp
            return stamp
