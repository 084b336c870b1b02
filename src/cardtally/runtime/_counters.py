"""Named counters that any thread may bump, read as one consistent snapshot."""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping

# Prometheus metric and label names, so a metrics endpoint can print snapshot keys as they are.
_NAME = re.compile(r"[a-z_][a-z0-9_]*\Z")
LABEL_NAME_DEFAULT = "label"


def _checked(kind: str, name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(f"{kind} {name!r} must match [a-z_][a-z0-9_]*")
    return name


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Counters:
    """Monotonic int counters, each optionally split by one label.

    Keys of :meth:`snapshot` use the Prometheus sample syntax: ``frames_in`` for a plain
    counter, ``declined{code="51"}`` for a labelled one. The label's name is declared per
    counter at construction and is ``label`` otherwise.

    >>> counters = Counters(label_names={"declined": "code"})
    >>> counters.inc("frames_in", by=2)
    >>> counters.inc("declined", "51")
    >>> counters.snapshot()
    {'declined{code="51"}': 1, 'frames_in': 2}
    """

    def __init__(self, label_names: Mapping[str, str] | None = None) -> None:
        self._label_names = {
            _checked("counter", counter): _checked("label name", label)
            for counter, label in (label_names or {}).items()
        }
        self._lock = threading.Lock()
        self._values: dict[tuple[str, str | None], int] = {}

    def inc(self, name: str, label: str | None = None, *, by: int = 1) -> None:
        """Add ``by`` (default 1; 0 declares the counter so that it shows in snapshots)."""
        if by < 0:
            raise ValueError(f"counters only go up; got by={by} for {name}")
        key = (name, label)
        with self._lock:
            value = self._values.get(key)
            if value is None:
                _checked("counter", name)
                value = 0
            self._values[key] = value + by

    def get(self, name: str, label: str | None = None) -> int:
        with self._lock:
            return self._values.get((name, label), 0)

    def samples(self) -> list[tuple[str, str | None, str | None, int]]:
        """Every counter as ``(name, label name, label, value)``, sorted; the label name and
        label are None for a counter bumped without one (a metrics exporter reads these)."""
        with self._lock:
            items = sorted(self._values.items(), key=lambda item: (item[0][0], item[0][1] or ""))
        return [
            (name, None if label is None else self.label_name(name), label, value)
            for (name, label), value in items
        ]

    def label_name(self, name: str) -> str:
        """The name of ``name``'s label (``label`` unless declared at construction)."""
        return self._label_names.get(name, LABEL_NAME_DEFAULT)

    def snapshot(self) -> dict[str, int]:
        """Every counter, sorted by key."""
        with self._lock:
            items = list(self._values.items())
        rendered = {self._key(name, label): value for (name, label), value in items}
        return dict(sorted(rendered.items()))

    def _key(self, name: str, label: str | None) -> str:
        if label is None:
            return name
        return f'{name}{{{self.label_name(name)}="{_escape(label)}"}}'
