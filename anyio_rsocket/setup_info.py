"""The old import path of :mod:`anyio_rsocket.peer.setup_info`.

The same module under two names: importing this one gives that module itself.
"""

import sys

from .peer import setup_info as _module
from .peer.setup_info import *  # noqa: F403 - its public names, for type checkers

sys.modules[__name__] = _module
