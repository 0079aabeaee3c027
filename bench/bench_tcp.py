"""The suite over loopback TCP only: ``python bench/bench_tcp.py [options of python -m bench]``."""

from __future__ import annotations

import os
import sys

if __package__ in (None, ""):  # run as a script: make ``bench`` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench._harness import main

if __name__ == "__main__":
    sys.exit(main(["--transport", "tcp", *sys.argv[1:]]))
