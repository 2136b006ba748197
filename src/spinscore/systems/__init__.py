"""Spin systems: typed sites, interacting pairs and their classes, a colouring, pair features.

`SpinSystem` (base) is the interface every stage below the CLI asks; `Chain` is its first
implementation. `system_from_config` is the one place that maps a configuration to a system.
"""

from spinscore.config import SystemConfig
from spinscore.systems.base import (
    Pairs,
    SpinSystem,
    check_colouring,
    pair_classes,
    sweep_order,
    type_pair_index,
)
from spinscore.systems.chain import Chain


def system_from_config(system: SystemConfig) -> SpinSystem:
    """The spin system a `SystemConfig` describes (today always an open chain)."""
    return Chain.from_config(system)


__all__ = [
    "Chain",
    "Pairs",
    "SpinSystem",
    "check_colouring",
    "pair_classes",
    "sweep_order",
    "system_from_config",
    "type_pair_index",
]
