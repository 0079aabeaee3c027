"""The old import path of :mod:`anyio_rsocket.wire.lease`.

The same module under two names: importing this one gives that module itself.
"""

import sys

from .wire import lease as _module
from .wire.lease import *  # noqa: F403 - its public names, for type checkers

sys.modules[__name__] = _module
