"""The old import path of :mod:`anyio_rsocket.wire.payload`.

The same module under two names: importing this one gives that module itself.
"""

import sys

from .wire import payload as _module
from .wire.payload import *  # noqa: F403 - its public names, for type checkers

sys.modules[__name__] = _module
