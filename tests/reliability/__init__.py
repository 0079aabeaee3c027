"""Scaled-down fault experiments: peers killed, frozen or speaking garbage, on both backends."""
