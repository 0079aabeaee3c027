"""``python -m bench``: the whole suite (see bench/README.md); ``--quick`` and ``--smoke`` trim it."""

import sys

from bench._harness import main

sys.exit(main())
