"""The old import path of :mod:`anyio_rsocket.peer.websocket`.

The same module under two names: importing this one gives that module itself.
"""

import sys

from .peer import websocket as _module
from .peer.websocket import *  # noqa: F403 - its public names, for type checkers

sys.modules[__name__] = _module
