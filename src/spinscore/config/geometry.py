"""Where the sites of a spin system sit: a lattice (`LatticeConfig`) or an explicit graph
(`GraphConfig`). Checks that need the geometry itself (a shell the lattice lacks, a periodic
size too small for the shells, a graph that is not symmetric) are made when the system is built
(`systems.system_from_config`)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator, model_validator

# sites per unit cell and dimension of each lattice kind
LATTICE_KINDS = {"chain": (1, 1), "square": (1, 2), "triangular": (1, 2), "honeycomb": (2, 2),
                 "kagome": (3, 2), "cubic": (1, 3)}


class LatticeConfig(BaseModel):
    """`system.lattice`: kind, size (unit cells per dimension), boundary.

    An open chain written as a lattice (`size` the range [min, max] of chain lengths) is turned
    into `system.length` by `SystemConfig` before this model is built; every lattice here
    (a periodic chain is a ring) has one size per dimension.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    kind: Literal["chain", "square", "triangular", "honeycomb", "kagome", "cubic"]
    size: tuple[StrictInt, ...]  # strict: YAML's true or "3" is not a size
    boundary: Literal["open", "periodic"] = "open"

    @model_validator(mode="after")
    def _check(self) -> LatticeConfig:
        if self.kind == "chain" and self.boundary == "open":
            raise ValueError("an open chain is given by system.length")
        dim = LATTICE_KINDS[self.kind][1]
        if len(self.size) != dim:
            raise ValueError(f"size: a {self.boundary} {self.kind} lattice takes {dim} sizes "
                             f"(unit cells per dimension), got {list(self.size)}")
        if min(self.size) < 1:
            raise ValueError(f"size: expected positive sizes, got {list(self.size)}")
        return self

    @property
    def n_sites(self) -> int:
        """Sites of the lattice: unit cells x sites per cell."""
        cells = 1
        for n in self.size:
            cells *= n
        return cells * LATTICE_KINDS[self.kind][0]


class GraphConfig(BaseModel):
    """`system.graph`: any geometry as explicit sites and interacting pairs with their shell
    (k >= 1: which coupling table J_k applies). In a config file either this mapping inline or
    the path of a YAML/JSON file holding it (read when the config is loaded, so data sets and
    checkpoints carry the graph itself)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    sites: StrictInt = Field(ge=2)  # strict, as `systems.graph.read_graph`: no true, "1", 1.0
    pairs: tuple[tuple[StrictInt, StrictInt, StrictInt], ...]
    file: str | None = None  # where the graph was read from, for messages

    @field_validator("pairs")
    @classmethod
    def _non_empty(cls, v):
        if not v:
            raise ValueError("expected at least one interacting pair [i, j, shell]")
        return v


def read_graph_file(path: str | Path) -> dict:
    """The mapping {sites, pairs} of a graph file (YAML or JSON; JSON is YAML). Raises
    ValueError naming the file when it cannot be read."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"{path}: graph file not found") from None
    except OSError as exc:
        raise ValueError(f"{path}: cannot read graph file ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(f"{path}: not a valid graph file ({first})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a graph file holds a mapping with 'sites' and 'pairs'")
    return data
