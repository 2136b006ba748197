"""The configuration of a molecular run (`system.molecule`): the molecule and its force field,
the Langevin simulation that makes its data, composed into `MoleculeRunConfig`.

A config whose `system` section holds `molecule` is a molecular run; `parse_config` dispatches on
it. Units: kelvin, femtoseconds, picoseconds, nanometres, degrees.
"""

from __future__ import annotations

from typing import Literal

import yaml
from pydantic import Field, model_serializer, model_validator

from spinscore.config.system import MAX_SEED, _Frozen

# Flexible X-H bonds (k ~ 3e5 kJ/mol/nm^2, period ~ 10 fs) integrate stably up to about 1 fs.
MAX_FLEXIBLE_TIMESTEP_FS = 1.0
# Explicit water: the solute-image distance, nm; at least the PME cutoff
# (`molecules.forcefield.EXPLICIT_CUTOFF_NM`, not imported: the config needs no OpenMM).
DEFAULT_PADDING_NM = 1.0
PADDING_RANGE_NM = (0.9, 3.0)


class MoleculeConfig(_Frozen):
    """The molecule: name, force field, solvent and temperature.

    solvent: "vacuum" (the score at zero noise is exactly beta x the force field's force),
    "implicit" (amber14 + OBC2 generalised Born), or "explicit" (TIP3P water with PME, 0.9 nm
    cutoff, rigid water, NVT: the authors' setting; the water is integrated out, only the
    solute's atoms reach the data file).
    padding_nm: explicit water only (default then `DEFAULT_PADDING_NM`): the least distance
    between the solute and its periodic images in the water box (OpenMM's `addSolvent`
    padding; the box edge is max(solute diameter + padding, 2 padding)).
    """

    name: Literal["alanine-dipeptide"] = "alanine-dipeptide"
    forcefield: Literal["amber14"] = "amber14"
    solvent: Literal["vacuum", "implicit", "explicit"] = "vacuum"
    temperature: float = Field(default=300.0, gt=0)  # K
    padding_nm: float | None = None

    @model_validator(mode="before")
    @classmethod
    def _default_padding(cls, data: object) -> object:
        if isinstance(data, dict) and data.get("solvent") == "explicit" and data.get("padding_nm") is None:
            return {**data, "padding_nm": DEFAULT_PADDING_NM}
        return data

    @model_validator(mode="after")
    def _check(self) -> MoleculeConfig:
        if self.solvent != "explicit" and self.padding_nm is not None:
            raise ValueError(f"padding_nm: only for solvent: explicit (this is {self.solvent})")
        if self.padding_nm is not None and not PADDING_RANGE_NM[0] <= self.padding_nm <= PADDING_RANGE_NM[1]:
            raise ValueError(f"padding_nm: expected {PADDING_RANGE_NM[0]} to {PADDING_RANGE_NM[1]} nm (at "
                             f"least the {PADDING_RANGE_NM[0]} nm PME cutoff between the solute and its "
                             f"periodic images; nanometres, not ångström), got {self.padding_nm}")
        return self

    @model_serializer(mode="wrap")
    def _dump(self, handler):
        # Vacuum and implicit configs dump as before padding_nm existed (their hashes stay).
        data = handler(self)
        if self.padding_nm is None:
            data.pop("padding_nm", None)
        return data


class MoleculeSystemConfig(_Frozen):
    """`system:` of a molecular run."""

    molecule: MoleculeConfig

    @property
    def temperature(self) -> float:
        """The temperature, K."""
        return self.molecule.temperature


class LangevinConfig(_Frozen):
    """`simulation:` of a molecular run: independent Langevin trajectories (OpenMM's
    LangevinMiddleIntegrator, flexible bonds, no cutoff), each from the minimised start
    structure, equilibrated, then a frame every `steps_per_frame` steps.

    Trajectory i is seeded from (seed, i), so a run's frames do not depend on how many run at
    once. `frames_per_chunk` frames are the unit of crash safety (a killed run resumes from the
    last finished chunk of each trajectory).
    """

    trajectories: int = Field(default=4, gt=0)
    frames: int = Field(default=1000, gt=0)  # per trajectory
    steps_per_frame: int = Field(default=400, gt=0)
    equilibration_steps: int = Field(default=20_000, ge=0)
    frames_per_chunk: int = Field(default=100, gt=0)
    timestep_fs: float = Field(default=0.5, gt=0)
    friction_per_ps: float = Field(default=1.0, gt=0)
    seed: int = Field(default=0, ge=0, le=MAX_SEED)
    start_phi: float = Field(default=-80.0, ge=-180, le=180)  # degrees, before minimisation
    start_psi: float = Field(default=75.0, ge=-180, le=180)
    nve_steps: int = Field(default=20_000, ge=0)  # the time-step check (0: none)

    @model_validator(mode="after")
    def _check(self) -> LangevinConfig:
        if self.timestep_fs > MAX_FLEXIBLE_TIMESTEP_FS:
            raise ValueError(f"timestep_fs: bonds are flexible (their vibrations are part of the "
                             f"data), which needs at most {MAX_FLEXIBLE_TIMESTEP_FS} fs, got "
                             f"{self.timestep_fs}")
        return self

    @property
    def simulated_ps(self) -> float:
        """Sampled time over all trajectories, ps (equilibration excluded)."""
        return self.trajectories * self.frames * self.steps_per_frame * self.timestep_fs / 1000


class AtomModelConfig(_Frozen):
    """`model:` of a molecular run: the E(3)-equivariant atom score model
    (`molecules.score_model.AtomScoreModel`): a Pairformer over atoms with triangle updates,
    symmetric pair weights W_ij = exp(gain[graph distance]) h_ij / (std_ij mean_ij) (the
    harmonic scale of each pair from the training positions' distance statistics),
    score_i = sum_j W_ij (x_i - x_j). The defaults mirror `score_model.HYPER_DEFAULTS`."""

    single_dim: int = Field(default=64, gt=0)
    pair_dim: int = Field(default=32, gt=0)
    blocks: int = Field(default=2, ge=1)
    heads: int = Field(default=4, ge=1)
    transition: int = Field(default=2, ge=1)
    n_radial: int = Field(default=32, gt=0)  # Gaussian radial features on [0, r_max]
    r_max: float = Field(default=1.2, gt=0)  # nm
    max_graph_distance: int = Field(default=5, ge=1)  # bond-graph distances >= this are one
    # nm^-2, the scale of W without pair_scale; None: from the training positions, the mean
    # over bonds of 1 / (std(r) mean(r)) (the |W| of a harmonic bond by equipartition)
    w_scale: float | None = Field(default=None, gt=0)
    sigma_ref: float = Field(default=1e-4, gt=0)  # nm, the noise embedding's unit
    noise_octaves: int = Field(default=4, ge=1)
    standardise: bool = True  # pair input (r - mean) / std per pair, from training positions
    pair_scale: bool = True  # W in units of 1 / (std mean) per pair (harmonic scale)
    linear_skip: bool = True  # a learned line in the standardised distance per pair type
    triangle: bool = True  # a triangle multiplicative update before each Pairformer block
    # the score as -grad of a learned pair energy (a force field that keeps the bath's temperature
    # under Langevin dynamics) instead of the W form; ~3x slower training steps
    conservative: bool = False

    @model_validator(mode="after")
    def _check(self) -> AtomModelConfig:
        if self.single_dim % self.heads:
            raise ValueError(f"single_dim ({self.single_dim}) must be divisible by heads "
                             f"({self.heads})")
        return self


class DSMConfig(_Frozen):
    """`train:` of a molecular run: antithetic denoising score matching on the centred
    coordinates of the training trajectories (all but the last `holdout_trajectories`, which
    only the readout sees), noise sigma (nm) log-uniform in `sigma_range` or from `sigma_set`,
    below the thermal amplitude of the stiffest bond (~0.003 nm) so the score is still beta x
    the force."""

    steps: int = Field(default=3000, gt=0)
    batch_size: int = Field(default=32, gt=0)
    lr: float = Field(default=2e-3, gt=0)  # peak; linear warm-up, then the schedule
    warmup: int = Field(default=100, ge=0)  # steps
    schedule: Literal["cosine", "constant"] = "cosine"
    min_lr_factor: float = Field(default=0.02, ge=0, le=1)  # the cosine's floor, times lr
    # "score": every noise level weighs the same (the implicit score-matching objective);
    # "noise": the plain 1/2 |eps + sigma s|^2, dominated by the largest sigma of a batch
    weighting: Literal["score", "noise"] = "score"
    sigma_range: tuple[float, float] = (3e-5, 3e-4)
    sigma_set: tuple[float, ...] = ()
    ema_decay: float = Field(default=0.999, ge=0, lt=1)
    grad_clip: float = Field(default=1.0, ge=0)
    seed: int = Field(default=0, ge=0, le=MAX_SEED)
    holdout_trajectories: int = Field(default=2, ge=1)
    checkpoint_every: int = Field(default=500, gt=0)  # optimiser steps
    log_every: int = Field(default=50, gt=0)

    @model_validator(mode="after")
    def _check(self) -> DSMConfig:
        lo, hi = self.sigma_range
        if not 0 < lo <= hi:
            raise ValueError(f"sigma_range: expected 0 < low <= high (nm), got {list(self.sigma_range)}")
        if any(s <= 0 for s in self.sigma_set):
            raise ValueError("sigma_set: expected positive noise levels (nm)")
        return self


class MoleculeGenerateConfig(_Frozen):
    """`generate:` of a molecular run: Langevin dynamics with the learned force (score / beta
    at the smallest training noise), BAOAB with the data's time step and friction, `chains`
    chains from frames of the held-out trajectories, each `picoseconds` long, against the MD
    that followed the same frames (`molecules.generation`)."""

    chains: int = Field(default=64, ge=2)
    picoseconds: float = Field(default=5.0, gt=0)
    seed: int = Field(default=0, ge=0, le=MAX_SEED)
    # 1/ps; None: the data's. A stronger thermostat drains the work a non-conservative learned
    # force does (the chains' kinetic temperature shows it) at the price of slower diffusion
    friction_per_ps: float | None = Field(default=None, gt=0)


MOLECULE_DATA_SECTIONS = ("system", "simulation")  # what a molecular data set depends on
MOLECULE_MODEL_SECTIONS = ("system", "simulation", "model", "train")  # what a checkpoint does


class MoleculeRunConfig(_Frozen):
    """Everything a molecular run needs: one section per stage."""

    system: MoleculeSystemConfig
    simulation: LangevinConfig = LangevinConfig()
    model: AtomModelConfig = AtomModelConfig()
    train: DSMConfig = DSMConfig()
    generate: MoleculeGenerateConfig = MoleculeGenerateConfig()

    def to_yaml(self, sections: tuple[str, ...] | None = None) -> str:
        """The resolved configuration (or only `sections` of it) as YAML; round-trips through
        `parse_config`."""
        data = self.model_dump(mode="json")
        if sections is not None:
            data = {k: v for k, v in data.items() if k in sections}
        return yaml.safe_dump(data, sort_keys=False)


def is_molecule_config(data: object) -> bool:
    """Whether a raw config mapping describes a molecular run (`system.molecule` present)."""
    return isinstance(data, dict) and isinstance(data.get("system"), dict) \
        and "molecule" in data["system"]
