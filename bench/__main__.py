"""``python -m bench``: run the loopback TCP benchmark (see bench/README.md)."""

import sys

from bench.bench_tcp import main

sys.exit(main())
