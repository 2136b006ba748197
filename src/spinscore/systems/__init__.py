"""Spin systems: typed sites, interacting pairs and their classes, a colouring, pair features.

`SpinSystem` (base) is the interface every stage below the CLI asks; `Chain` is its first
implementation. `system_from_config` is the one place that maps a configuration to a system.
"""

import numpy as np

from spinscore.config import SystemConfig
from spinscore.errors import SpinscoreError
from spinscore.systems.base import (
    Pairs,
    SpinSystem,
    check_colouring,
    pair_classes,
    sweep_order,
    type_pair_index,
)
from spinscore.systems.chain import Chain
from spinscore.systems.graph import Graph
from spinscore.systems.lattice import Lattice


def system_from_config(system: SystemConfig) -> SpinSystem:
    """The spin system a `SystemConfig` describes: open chains, a lattice or a graph.

    Raises SpinscoreError (one line, naming the config field) for a geometry that does not
    fit the couplings: a shell the lattice lacks, a periodic size too small for the shells, a
    graph that is not symmetric.
    """
    if system.geometry == "chain":
        return Chain.from_config(system)
    pattern = system.pattern_types()
    try:
        if system.lattice is not None:
            lat = system.lattice
            return Lattice(lat.kind, lat.size, lat.boundary, system.n_types, system.max_range,
                           pattern)
        graph = system.graph
        i, j, shell = (np.array([p[c] for p in graph.pairs], dtype=np.int64) for c in range(3))
        return Graph(graph.sites, Pairs(i=i, j=j, shell=shell), system.n_types,
                     system.max_range, pattern, name=graph.file or "graph")
    except SpinscoreError as exc:
        raise SpinscoreError(f"system.{system.geometry}: {exc}") from None


def shell_basis(system: SystemConfig, shells: int) -> SystemConfig:
    """`system` with zero couplings listed up to shell `shells` (`SystemConfig.with_shells`),
    checked against its geometry as well (a shell the lattice lacks, a periodic size too small
    for it). Raises SpinscoreError (one line) where the system has no such basis."""
    try:
        wide = system.with_shells(shells)
    except ValueError as err:
        raise SpinscoreError(str(err)) from None
    system_from_config(wide)
    return wide


__all__ = [
    "Chain",
    "Graph",
    "Lattice",
    "Pairs",
    "SpinSystem",
    "check_colouring",
    "pair_classes",
    "shell_basis",
    "sweep_order",
    "system_from_config",
    "type_pair_index",
]

