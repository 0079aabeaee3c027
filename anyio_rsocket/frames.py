"""The old import path of :mod:`anyio_rsocket.wire.frames`.

The same module under two names: importing this one gives that module itself.
"""

import sys

from .wire import frames as _module
from .wire.frames import *  # noqa: F403 - its public names, for type checkers

sys.modules[__name__] = _module
