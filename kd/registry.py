"""One small registry for data sets, models and methods.

Fails loudly on an unknown key (listing the valid ones) and on a duplicate key,
so the UI's drop-downs (built from keys()) and the core cannot disagree.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

from kd.errors import UnknownKeyError

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    key: str
    description: str  # one line, shown in `python -m kd list` and the UI
    obj: T


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind  # "model", "data set", "method": used in error messages
        self._entries: dict[str, Entry[T]] = {}

    def add(self, key: str, obj: T, description: str) -> T:
        if key in self._entries:
            raise ValueError(f"duplicate {self.kind} key {key!r}")
        if not description or "\n" in description:
            raise ValueError(f"{self.kind} {key!r} needs a one-line description")
        self._entries[key] = Entry(key, description, obj)
        return obj

    def register(self, key: str, description: str) -> Callable[[T], T]:
        """Decorator form of add()."""
        return lambda obj: self.add(key, obj, description)

    def entry(self, key: str) -> Entry[T]:
        try:
            return self._entries[key]
        except (KeyError, TypeError):
            raise UnknownKeyError(self.kind, key, self.keys()) from None

    def get(self, key: str) -> T:
        return self.entry(key).obj

    def description(self, key: str) -> str:
        return self.entry(key).description

    def keys(self) -> list[str]:
        return list(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __iter__(self) -> Iterator[Entry[T]]:
        return iter(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)
