"""The old import path of :mod:`anyio_rsocket.peer.url`.

The same module under two names: importing this one gives that module itself.
"""

import sys

from .peer import url as _module
from .peer.url import *  # noqa: F403 - its public names, for type checkers

sys.modules[__name__] = _module
