"""The physical system of a run: site types, couplings by range and pair of types, chain
lengths, temperature; and the one definition of how types and pairs are named."""

from __future__ import annotations

import itertools
import re

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from spinscore.config.geometry import GraphConfig, LatticeConfig, read_graph_file

MAX_SEED = 2**63 - 1  # seeds are stored as int64 (HDF5 attributes, checkpoints)


class _Frozen(BaseModel):
    # no NaN or infinite number anywhere in a config (an infinite t_max made NaN spins)
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class SystemConfig(_Frozen):
    """The physical system: a chain of unit spins with sequence-dependent couplings.

    `couplings[r][pair]` is J_r between sites i and i+r whose types form `pair` (unordered).
    Pair keys are the concatenated type names ("AB") when all names are one character,
    otherwise "A-B". Every unordered pair must be given for every listed range; ranges that are
    not listed have zero coupling. Positive J is ferromagnetic.
    """

    types: tuple[str, ...] = ("A", "B")
    couplings: dict[int, dict[str, float]]
    length: tuple[int, int] = (20, 50)
    temperature: float = Field(gt=0)
    lattice: LatticeConfig | None = None
    graph: GraphConfig | None = None
    pattern: tuple[str, ...] | None = None

    @model_validator(mode="before")
    @classmethod
    def _normalise(cls, data):
        """An open chain given as a lattice is today's chain (`length`); a graph given as a file
        path is read into the config, so that data sets and checkpoints carry it; a pattern may
        be written as text ("ABBA" or "Ala,Gly")."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        lattice = data.get("lattice")
        if isinstance(lattice, dict) and lattice.get("kind") == "chain" \
                and lattice.get("boundary", "open") == "open":
            if "length" in data:
                raise ValueError("give either lattice (kind chain) or length, not both")
            size = lattice.get("size")
            data["length"] = size * 2 if isinstance(size, list) and len(size) == 1 else size
            del data["lattice"]
        if isinstance(data.get("graph"), str):
            data["graph"] = {**read_graph_file(data["graph"]), "file": data["graph"]}
        if isinstance(data.get("pattern"), str):
            text = data["pattern"]
            data["pattern"] = re.split(r"[,\s]+", text.strip()) if "," in text or " " in text \
                else list(text.strip())
        return data

    @field_validator("types")
    @classmethod
    def _check_types(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v:
            raise ValueError("expected at least one site type")
        if len(set(v)) != len(v):
            raise ValueError(f"expected distinct type names, got {list(v)}")
        if any(not name or "-" in name for name in v):
            raise ValueError("type names must be non-empty and contain no '-'")
        if len(v) > 127:
            raise ValueError("at most 127 site types (stored as int8)")
        return v

    @model_validator(mode="after")
    def _check(self) -> SystemConfig:
        if not self.couplings:
            raise ValueError("couplings: expected at least one interaction range")
        for r in self.couplings:
            if r < 1:
                raise ValueError(f"couplings: interaction range must be >= 1, got {r}")
        known = set(self.types)
        single = self.single_char_names
        for r, table in self.couplings.items():
            seen: dict[tuple[str, str], str] = {}
            for key, value in table.items():
                a, b = self._split_pair(key, single)
                for name in (a, b):
                    if name not in known:
                        raise ValueError(
                            f"couplings.{r}.{key}: unknown site type {name!r} "
                            f"(types are {list(self.types)})"
                        )
                if not np.isfinite(value):
                    raise ValueError(f"couplings.{r}.{key}: expected a finite number")
                pair = tuple(sorted((a, b), key=self.types.index))
                if pair in seen:
                    raise ValueError(f"couplings.{r}: pair {key!r} given twice (also {seen[pair]!r})")
                seen[pair] = key
            for a, b in self.type_pairs_named():
                if (a, b) not in seen:
                    raise ValueError(
                        f"couplings.{r}: missing pair {self.pair_key(a, b)!r} "
                        "(give every unordered pair of types, 0 for none)"
                    )
        self._check_geometry()
        lo, hi = self.length
        if lo > hi:
            raise ValueError(f"length: expected [min, max] with min <= max, got {list(self.length)}")
        if self.geometry == "chain" and lo < self.max_range + 1:
            raise ValueError(
                f"length: chains of {lo} sites are too short for interaction range "
                f"{self.max_range} (need at least {self.max_range + 1})"
            )
        return self

    def _check_geometry(self) -> None:
        if self.lattice is not None and self.graph is not None:
            raise ValueError("give either lattice or graph, not both")
        if self.geometry != "chain" and "length" in self.model_fields_set:
            raise ValueError(f"length: only for chains; the {self.geometry} fixes the sites")
        if self.graph is not None:
            shells = {k for _, _, k in self.graph.pairs}
            if max(shells) > self.max_range or min(shells) < 1:
                raise ValueError(f"graph: pairs of shell {sorted(shells)} but couplings are "
                                 f"given for shells 1..{self.max_range}")
        if self.pattern is not None:
            lo, hi = self.n_sites_range
            if lo != hi:
                raise ValueError("pattern: a fixed pattern needs a fixed number of sites")
            if len(self.pattern) != hi:
                raise ValueError(f"pattern: expected one type per site ({hi} sites), got "
                                 f"{len(self.pattern)}")
            unknown = sorted(set(self.pattern) - set(self.types))
            if unknown:
                raise ValueError(f"pattern: unknown site types {unknown} (types are "
                                 f"{list(self.types)})")

    @property
    def geometry(self) -> str:
        """"chain" (open chains of `length` sites), "lattice" or "graph"."""
        return "lattice" if self.lattice else "graph" if self.graph else "chain"

    @property
    def n_sites_range(self) -> tuple[int, int]:
        """(min, max) sites of a sample: `length` for chains, (N, N) for a lattice or graph."""
        if self.lattice is not None:
            return (self.lattice.n_sites, self.lattice.n_sites)
        if self.graph is not None:
            return (self.graph.sites, self.graph.sites)
        return self.length

    def pattern_types(self) -> np.ndarray | None:
        """The fixed site types (N,) int8 of `pattern`, or None (types drawn i.i.d.)."""
        if self.pattern is None:
            return None
        return np.array([self.types.index(n) for n in self.pattern], dtype=np.int8)

    @staticmethod
    def _split_pair(key: str, single_char: bool) -> tuple[str, str]:
        if "-" in key:
            a, _, b = key.partition("-")
            return a, b
        if single_char and len(key) == 2:
            return key[0], key[1]
        raise ValueError(f"couplings: cannot read pair key {key!r}; write it as 'A-B'")

    # --- derived quantities (one place for the canonical parameter order) ---------------------

    @property
    def single_char_names(self) -> bool:
        """Whether every type name is one character: then pairs are written "AB" and
        sequences "ABBA"; otherwise "A-B" and "Ala,Gly,Gly"."""
        return all(len(t) == 1 for t in self.types)

    def pair_key(self, a: str, b: str) -> str:
        """The key of the pair of types (a, b) in `couplings` and parameter names."""
        return f"{a}{b}" if self.single_char_names else f"{a}-{b}"

    def sequence_text(self, types) -> str:
        """A sequence of site types (L,) int as text ("ABBA", or "Ala,Gly,Gly")."""
        return ("" if self.single_char_names else ",").join(self.types[k] for k in types)

    def sequence_from_text(self, text: str) -> np.ndarray:
        """Site types (L,) int64 of a sequence written with the type names: one character per
        site ("ABBA") when every name is one character, else names separated by commas or
        spaces ("Ala,Gly,Gly"). Raises SpinscoreError naming an unknown type, a chain too
        short for the interaction range, or a lattice or graph not given one type per site."""
        from spinscore.errors import SpinscoreError

        names = [c for c in text if not c.isspace()] if self.single_char_names \
            else re.split(r"[,\s]+", text.strip())
        names = [n for n in names if n]
        for pos, name in enumerate(names):
            if name not in self.types:
                raise SpinscoreError(f"sequence: unknown site type {name!r} at position {pos} "
                                     f"(types are {list(self.types)})")
        if self.geometry != "chain" and len(names) != self.n_sites_range[0]:
            raise SpinscoreError(f"sequence: {len(names)} site types given; the {self.geometry} "
                                 f"has {self.n_sites_range[0]} sites (one type per site)")
        if len(names) < self.max_range + 1:
            raise SpinscoreError(f"sequence: {len(names)} sites are too short for interaction "
                                 f"range {self.max_range} (need at least {self.max_range + 1})")
        return np.array([self.types.index(n) for n in names], dtype=np.int64)

    @property
    def n_types(self) -> int:
        return len(self.types)

    @property
    def max_range(self) -> int:
        return max(self.couplings)

    @property
    def beta(self) -> float:
        return 1.0 / self.temperature

    def type_pairs(self) -> list[tuple[int, int]]:
        """Unordered type pairs in the canonical order: like pairs first (AA, BB, ...), then
        unlike pairs in lexicographic order (AB, AC, BC, ...). Paper order for two types."""
        n = self.n_types
        return [(a, a) for a in range(n)] + list(itertools.combinations(range(n), 2))

    def type_pairs_named(self) -> list[tuple[str, str]]:
        return [(self.types[a], self.types[b]) for a, b in self.type_pairs()]

    def parameter_names(self) -> list[str]:
        """Names of the coupling parameters, e.g. ['J1_AA', 'J1_BB', 'J1_AB', 'J2_AA', ...]."""
        return [
            f"J{r}_{self.pair_key(a, b)}"
            for r in range(1, self.max_range + 1)
            for a, b in self.type_pairs_named()
        ]

    def coupling_table(self) -> np.ndarray:
        """Couplings as an array `table[r-1, a, b]` (shape (max_range, n_types, n_types)),
        symmetric in (a, b); zero for ranges not listed."""
        single = self.single_char_names
        table = np.zeros((self.max_range, self.n_types, self.n_types))
        for r, entries in self.couplings.items():
            for key, value in entries.items():
                a, b = (self.types.index(x) for x in self._split_pair(key, single))
                table[r - 1, a, b] = table[r - 1, b, a] = value
        return table

    def with_shells(self, shells: int) -> SystemConfig:
        """The same system with zero couplings listed up to shell `shells` (validated as a new
        config: a shell the lattice lacks is an error): a basis that reaches beyond the true
        range, for estimators that should find zero there."""
        if self.graph is not None:
            raise ValueError("shells: a graph file lists its own shells; it has none beyond them")
        if shells < self.max_range:
            raise ValueError(f"shells: {shells} is below the couplings' range {self.max_range}")
        zero = {self.pair_key(a, b): 0.0 for a, b in self.type_pairs_named()}
        couplings = {r: dict(self.couplings.get(r, zero)) for r in range(1, shells + 1)}
        try:
            return type(self).model_validate({**self.model_dump(exclude_unset=True),
                                              "couplings": couplings})
        except ValidationError as err:
            raise ValueError(err.errors()[0]["msg"].removeprefix("Value error, ")) from None

    def parameter_vector(self) -> np.ndarray:
        """True couplings in the order of `parameter_names()`, shape (max_range * n_pairs,)."""
        table = self.coupling_table()
        return np.array([table[r, a, b] for r in range(self.max_range) for a, b in self.type_pairs()])
