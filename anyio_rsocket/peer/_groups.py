"""Unwrapping of single-exception groups at the public API boundary.

Task groups wrap whatever escapes them in an ``ExceptionGroup``. Users of this library should catch
``ApplicationError`` or ``ConnectionClosedError`` directly, so when exactly one exception is inside a
group (however deeply nested) we raise that exception instead. Several real failures stay grouped.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

if sys.version_info < (3, 11):  # pragma: no cover - exercised on 3.10 only
    from exceptiongroup import BaseExceptionGroup  # type: ignore[import-not-found,unused-ignore]


def single_exception(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """The only leaf exception of ``group``, or ``None`` when it holds several."""
    current: BaseException = group
    while isinstance(current, BaseExceptionGroup):
        if len(current.exceptions) != 1:
            return None
        current = current.exceptions[0]
    return current


@asynccontextmanager
async def unwrap_exception_groups() -> AsyncIterator[None]:
    """Re-raise a lone exception out of any exception group raised inside the block."""
    try:
        yield
    except BaseExceptionGroup as group:
        leaf = single_exception(group)
        if leaf is None:
            raise
        raise leaf from leaf.__cause__
