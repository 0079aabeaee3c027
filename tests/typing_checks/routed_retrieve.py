"""Checked by mypy (``tests/test_cli_usability.py``), never run: what ``RoutedRequester.retrieve`` and
``decode`` return for each way of passing ``into``. ``assert_type`` fails the check on ``Any``."""

from __future__ import annotations

import dataclasses
import sys
from typing import Any

from anyio_rsocket import Payload
from anyio_rsocket.routed import RoutedRequester

if sys.version_info >= (3, 11):
    from typing import assert_type
else:  # pragma: no cover - Python 3.10
    from typing_extensions import assert_type


@dataclasses.dataclass
class User:
    id: int
    name: str


async def retrieve(users: RoutedRequester) -> None:
    assert_type(await users.retrieve(into=User), User)
    assert_type(await users.retrieve({"id": 1}, into=User), User)
    assert_type(await users.retrieve({"id": 1}, User), User)
    assert_type(await users.retrieve(data={"id": 1}, into=User), User)
    assert_type(await users.retrieve(into=int), int)
    assert_type(await users.retrieve(), Any)
    assert_type(await users.retrieve({"id": 1}), Any)
    assert_type(await users.retrieve(into=list[User]), list[User])


def decode(users: RoutedRequester, payload: Payload) -> None:
    assert_type(users.decode(payload, into=User), User)
    assert_type(users.decode(payload, User), User)
    assert_type(users.decode(payload), Any)
