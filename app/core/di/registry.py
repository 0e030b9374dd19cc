"""The registry: a small dictionary of the app's singletons, filled at start-up."""

from __future__ import annotations

from typing import Any, TypeVar, cast

T = TypeVar("T")


class Registry:
    def __init__(self) -> None:
        self._items: dict[type[Any], Any] = {}

    def put(self, key: type[T], value: T) -> None:
        self._items[key] = value

    def get(self, key: type[T]) -> T:
        try:
            return cast(T, self._items[key])
        except KeyError:
            raise LookupError(f"{key.__name__} is not registered") from None

    def find(self, key: type[T]) -> T | None:
        return cast("T | None", self._items.get(key))
