"""The old import path of :mod:`anyio_rsocket.peer.options`.

The same module under two names: importing this one gives that module itself.
"""

import sys

from .peer import options as _module
from .peer.options import *  # noqa: F403 - its public names, for type checkers

sys.modules[__name__] = _module
