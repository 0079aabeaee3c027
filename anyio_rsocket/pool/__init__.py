"""Load balancing over several servers: :func:`connect_pool` and its strategies."""

from .pool import (
    DEFAULT_POOL_RECONNECT,
    DEFAULT_TARGET_DRAIN_TIMEOUT,
    Pool,
    PooledInteraction,
    Targets,
    connect_pool,
)
from .sources import dns_targets, file_targets, parse_targets
from .strategies import LeastLoaded, RoundRobin, Strategy
from .target import Target, TargetState, TargetStats

__all__ = [
    "DEFAULT_POOL_RECONNECT",
    "DEFAULT_TARGET_DRAIN_TIMEOUT",
    "LeastLoaded",
    "Pool",
    "PooledInteraction",
    "RoundRobin",
    "Strategy",
    "Target",
    "TargetState",
    "TargetStats",
    "Targets",
    "connect_pool",
    "dns_targets",
    "file_targets",
    "parse_targets",
]
