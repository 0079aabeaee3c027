"""``python -m bench``: the whole suite (see bench/README.md); ``--quick`` and ``--smoke`` trim it.

``--quick`` takes about 25 s on a 2-core VM (24.0 s measured; it prints its total at the end).
"""

import sys

from bench._harness import main

sys.exit(main())
