"""Typed, validated configuration: one frozen model per stage, composed into `RunConfig`.

A YAML file is the single source of truth for every parameter of a run. `load_config` reads it,
applies `--set section.key=value` overrides and validates everything at the door; errors name the
file, the key and what was expected (`ConfigError`).
"""

from __future__ import annotations

import difflib
import itertools
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from spinscore.errors import ConfigError


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _pair_key(a: str, b: str, single_char: bool) -> str:
    return f"{a}{b}" if single_char else f"{a}-{b}"


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
        single = all(len(t) == 1 for t in self.types)
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
                        f"couplings.{r}: missing pair {_pair_key(a, b, single)!r} "
                        "(give every unordered pair of types, 0 for none)"
                    )
        lo, hi = self.length
        if lo > hi:
            raise ValueError(f"length: expected [min, max] with min <= max, got {list(self.length)}")
        if lo < self.max_range + 1:
            raise ValueError(
                f"length: chains of {lo} sites are too short for interaction range "
                f"{self.max_range} (need at least {self.max_range + 1})"
            )
        return self

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
        single = all(len(t) == 1 for t in self.types)
        return [
            f"J{r}_{_pair_key(a, b, single)}"
            for r in range(1, self.max_range + 1)
            for a, b in self.type_pairs_named()
        ]

    def coupling_table(self) -> np.ndarray:
        """Couplings as an array `table[r-1, a, b]` (shape (max_range, n_types, n_types)),
        symmetric in (a, b); zero for ranges not listed."""
        single = all(len(t) == 1 for t in self.types)
        table = np.zeros((self.max_range, self.n_types, self.n_types))
        for r, entries in self.couplings.items():
            for key, value in entries.items():
                a, b = (self.types.index(x) for x in self._split_pair(key, single))
                table[r - 1, a, b] = table[r - 1, b, a] = value
        return table

    def parameter_vector(self) -> np.ndarray:
        """True couplings in the order of `parameter_names()`, shape (max_range * n_pairs,)."""
        table = self.coupling_table()
        return np.array([table[r, a, b] for r in range(self.max_range) for a, b in self.type_pairs()])


class SimulationConfig(_Frozen):
    """Replica-exchange Monte Carlo (SPEC §3). Temperatures are log-spaced from `t_max` down to
    `system.temperature`; snapshots are taken from the coldest replica."""

    sequences: int = Field(gt=0)
    snapshots: int = Field(gt=0)
    replicas: int = Field(default=16, ge=1)
    t_max: float = Field(default=5.0, gt=0)
    burn_in: int = Field(default=2000, ge=0)
    thinning: int = Field(default=100, gt=0)
    swap_every: int = Field(default=10, gt=0)
    seed: int = Field(default=0, ge=0)
    chunk_size: int = Field(default=32, gt=0)


class ModelConfig(_Frozen):
    """The score network (SPEC §5). The paper's sizes are c_s 64, c_z 32, 4 blocks, 4 heads."""

    single_dim: int = Field(default=64, gt=0)
    pair_dim: int = Field(default=32, gt=0)
    blocks: int = Field(default=4, ge=1)
    heads: int = Field(default=4, ge=1)
    transition: int = Field(default=2, ge=1)  # hidden width factor of the MLPs
    max_distance: int = Field(default=32, ge=1)  # |i - j| embedding clipped beyond this
    max_length: int = Field(default=128, ge=2)  # longest chain the position embedding covers
    # Output preconditioning c(t) multiplying W: "stiffness" beta / (1 + beta t), the score scale
    # of a spin of stiffness beta smoothed by the heat kernel (-> beta * force at t = 0, ~ 1/t
    # at large t), so the trunk predicts O(1) couplings at every t; "constant" beta.
    output_scaling: Literal["stiffness", "constant"] = "stiffness"
    # Fourier octaves of the time embedding: frequencies pi/16 * 2^k, k < time_octaves, in
    # ln t. The highest one bounds how fast the field can vary in t (period 4 in ln t at the
    # default 4); faster variation makes the probability-flow ODE stiff to integrate.
    time_octaves: int = Field(default=4, ge=1, le=12)

    @model_validator(mode="after")
    def _check(self) -> ModelConfig:
        if self.single_dim % self.heads:
            raise ValueError(f"single_dim ({self.single_dim}) must be divisible by heads "
                             f"({self.heads})")
        return self


class TimeComponent(_Frozen):
    """One component of the mixture from which training times t are drawn."""

    weight: float = Field(gt=0)
    low: float = Field(gt=0)
    high: float = Field(gt=0)
    kind: Literal["loguniform", "uniform"] = "loguniform"

    @model_validator(mode="after")
    def _check(self) -> TimeComponent:
        if self.low >= self.high:
            raise ValueError(f"expected low < high, got [{self.low}, {self.high}]")
        return self


class DiffusionConfig(_Frozen):
    """Brownian motion on each sphere (generator 1/2 Laplacian, t = sigma^2) and the training
    objective (SPEC §4).

    t is drawn from a mixture of log-uniform / uniform components on [t_min, t_max]. The loss
    weight is lambda(t) / p(t) with lambda = 1 for `likelihood` (the continuous-time ELBO
    weighting of a unit-diffusion SDE, whatever p(t) is), so changing where t is sampled only
    changes the variance, not the objective. `none` gives the plain mean over sampled t;
    `paper` multiplies by t (the published code's weight). `antithetic`: a batch holds
    batch_size / 2 snapshots, each noised to x_t and to its mirror image about x_0 (both exact
    heat-kernel samples; see `diffusion.sde.mirror`).
    """

    t_min: float = Field(default=1e-3, gt=0)
    t_max: float = Field(default=5.0, gt=0)
    t_sampling: tuple[TimeComponent, ...] = (
        TimeComponent(weight=0.75, low=1e-3, high=0.1),
        TimeComponent(weight=0.25, low=0.1, high=5.0),
    )
    weighting: Literal["likelihood", "none", "paper"] = "likelihood"
    # lower bound of the loss weight: with `likelihood`, the weight of a sample at small t is
    # ~t, which starves the zero-noise limit (the force); a floor keeps those samples in play
    weight_floor: float = Field(default=0.0, ge=0)
    antithetic: bool = True  # each snapshot noised twice, x_t and its mirror image about x_0

    @model_validator(mode="after")
    def _check(self) -> DiffusionConfig:
        if self.t_min >= self.t_max:
            raise ValueError(f"t_min ({self.t_min}) must be below t_max ({self.t_max})")
        for c in self.t_sampling:
            if c.low < self.t_min * (1 - 1e-12) or c.high > self.t_max * (1 + 1e-12):
                raise ValueError(f"t_sampling component [{c.low}, {c.high}] leaves "
                                 f"[t_min, t_max] = [{self.t_min}, {self.t_max}]")
        return self


class TrainConfig(_Frozen):
    """Optimisation (SPEC §5 paper values as defaults). `samples` counts training examples
    (one random snapshot of one sequence each); the paper's 20 epochs of 40 000 sequences is
    800 000."""

    samples: int = Field(default=800_000, gt=0)
    batch_size: int = Field(default=256, gt=0)
    micro_batch_tokens: int = Field(default=40_000, gt=0)  # sum of L^2 per forward pass
    lr: float = Field(default=1e-3, gt=0)
    lr_schedule: Literal["constant", "cosine"] = "cosine"
    warmup_steps: int = Field(default=50, ge=0)
    weight_decay: float = Field(default=1e-4, ge=0)
    grad_clip: float = Field(default=1.0, gt=0)
    ema_decay: float = Field(default=0.999, ge=0, lt=1)
    checkpoint_every: int = Field(default=200, gt=0)  # optimizer steps
    log_every: int = Field(default=10, gt=0)
    seed: int = Field(default=0, ge=0)


class ReproduceConfig(_Frozen):
    """`spinscore reproduce`: the evaluation sets and analyses around the trained model.

    The test set and the OOD sets are simulated with the run's system and simulation sections
    and these changes; the OOD sets are: chains longer than any in training (`ood_length`),
    a higher temperature (`ood_temperature`), and a Hamiltonian with an extra interaction range
    whose couplings are `ood_extra_fraction` x the range-1 couplings of each pair.
    """

    test_sequences: int = Field(default=300, gt=0)
    test_snapshots: int = Field(default=5, gt=0)
    test_seed: int = Field(default=1, ge=0)
    ood_sequences: int = Field(default=100, gt=0)
    ood_snapshots: int = Field(default=5, gt=0)
    ood_length: tuple[int, int] = (60, 100)
    ood_temperature: float = Field(default=0.2, gt=0)
    ood_extra_fraction: float = 0.2
    t_eval: float = Field(default=1e-4, gt=0)  # zero-noise evaluation time of the network
    # readout times whose OLS estimates are extrapolated to t = 0 (None: the smallest training
    # time and three doublings, `analysis.extract.default_readout_times`)
    t_extrapolate: tuple[float, ...] | None = None
    mixing_sequences: int = Field(default=200, gt=0)  # re-simulated for the mixing baseline
    bootstrap: int = Field(default=200, ge=0)
    partition_sequence: int = Field(default=0, ge=0)  # index into the test set
    partition_per_temperature: int = Field(default=20, gt=0)
    # rtol = atol of the probability-flow trajectory (radians); the divergence integral is
    # held to 1e-3 nats per spin by the quadrature (diffusion.likelihood)
    likelihood_tolerance: float = Field(default=1e-5, gt=0)
    generate: int = Field(default=500, gt=0)  # chains generated for the energy histogram

    @model_validator(mode="after")
    def _check(self) -> ReproduceConfig:
        if self.t_extrapolate is not None and (len(self.t_extrapolate) < 2
                                               or min(self.t_extrapolate) <= 0):
            raise ValueError(f"t_extrapolate: expected at least two positive times, got "
                             f"{list(self.t_extrapolate)}")
        return self


DATA_SECTIONS = ("system", "simulation")  # what a data set depends on


class RunConfig(_Frozen):
    """Everything one run needs: one section per stage."""

    system: SystemConfig
    simulation: SimulationConfig
    model: ModelConfig = ModelConfig()
    diffusion: DiffusionConfig = DiffusionConfig()
    train: TrainConfig = TrainConfig()
    reproduce: ReproduceConfig = ReproduceConfig()

    @model_validator(mode="after")
    def _check(self) -> RunConfig:
        if self.simulation.replicas > 1 and self.simulation.t_max <= self.system.temperature:
            raise ValueError(
                f"simulation.t_max: expected a temperature above system.temperature "
                f"({self.system.temperature}), got {self.simulation.t_max}"
            )
        return self

    def to_yaml(self, sections: tuple[str, ...] | None = None) -> str:
        """The resolved configuration (or only `sections` of it) as YAML text; round-trips
        through `parse_config`."""
        data = self.model_dump(mode="json")
        if sections is not None:
            data = {k: v for k, v in data.items() if k in sections}
        if "system" in data:
            data["system"]["couplings"] = {int(k): v
                                           for k, v in data["system"]["couplings"].items()}
        return yaml.safe_dump(data, sort_keys=False)


# --- loading ---------------------------------------------------------------------------------


def apply_override(data: dict[str, Any], assignment: str, source: str = "--set") -> None:
    """Apply one `dotted.key=value` assignment in place; the value is parsed as YAML."""
    if "=" not in assignment:
        raise ConfigError(f"{source}: expected section.key=value, got {assignment!r}")
    path, _, raw = assignment.partition("=")
    keys = path.strip().split(".")
    if not all(keys):
        raise ConfigError(f"{source}: malformed key {path!r}")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source} {path}: cannot parse value {raw!r}: {exc}") from None
    node = data
    for depth, key in enumerate(keys[:-1]):
        key = _match_key(node, key)
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{source}: {'.'.join(keys[: depth + 1])} is not a section")
        node = child
    node[_match_key(node, keys[-1])] = value


def _match_key(node: dict, key: str) -> Any:
    """YAML reads `1:` as an int key; let `--set system.couplings.1.AA=...` address it."""
    for existing in node:
        if str(existing) == key:
            return existing
    return int(key) if key.isdigit() else key


def parse_config(data: Any, source: str = "<config>") -> RunConfig:
    """Validate a mapping as a `RunConfig`; raise `ConfigError` naming `source` and the key."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of sections, got {type(data).__name__}")
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc, source)) from None


def load_config(path: str | Path, overrides: tuple[str, ...] | list[str] = ()) -> RunConfig:
    """Read a YAML config file, apply `section.key=value` overrides, validate."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    data = data if data is not None else {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    for assignment in overrides:
        apply_override(data, assignment, source=f"{path}: --set")
    source = str(path) + (" (with --set overrides)" if overrides else "")
    return parse_config(data, source)


def _format_validation_error(exc: ValidationError, source: str) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            msg = "unknown key" + _suggestion(exc, err["loc"])
        elif err["type"] == "missing":
            msg = "required key is missing"
        else:
            msg = err["msg"].removeprefix("Value error, ")
            if "input" in err and err["type"] != "value_error":
                msg += f" (got {err['input']!r})"
        lines.append(f"{source}: {loc}: {msg}" if loc else f"{source}: {msg}")
    return "\n".join(lines)


def _suggestion(exc: ValidationError, loc: tuple) -> str:
    model: Any = RunConfig
    for part in loc[:-1]:
        field = model.model_fields.get(str(part)) if hasattr(model, "model_fields") else None
        model = field.annotation if field is not None else None
    if model is None or not hasattr(model, "model_fields"):
        return ""
    close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
