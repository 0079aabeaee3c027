"""The suite over loopback WebSocket only: ``python bench/bench_websocket.py [python -m bench options]``."""

from __future__ import annotations

import os
import sys

if __package__ in (None, ""):  # run as a script: make ``bench`` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench._harness import main

if __name__ == "__main__":
    sys.exit(main(["--transport", "ws", *sys.argv[1:]]))
