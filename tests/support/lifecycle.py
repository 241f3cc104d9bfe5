"""A context manager over start() and stop(): a failed start still stops what it had started."""
from __future__ import annotations

from types import TracebackType
from typing import TypeVar

T = TypeVar("T", bound="Service")


class Service:
    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self: T) -> T:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
