"""The sections of a run's configuration besides the system, composed into `RunConfig`."""

from __future__ import annotations

from typing import Literal

import yaml
from pydantic import Field, model_validator

from spinscore.config.analysis import AnalysisConfig
from spinscore.config.system import MAX_SEED, SystemConfig, _Frozen


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
    seed: int = Field(default=0, ge=0, le=MAX_SEED)
    chunk_size: int = Field(default=32, gt=0)

    @model_validator(mode="after")
    def _check(self) -> SimulationConfig:
        # the ladder's energies and swap rates are measured at the swap steps after burn-in
        # (one replica has no swaps to rate: snapshots a sweep apart stay possible there)
        end = self.burn_in + self.snapshots * self.thinning
        if self.replicas > 1 and end // self.swap_every == self.burn_in // self.swap_every:
            raise ValueError(f"snapshots x thinning ({self.snapshots} x {self.thinning}): no "
                             f"swap step (every {self.swap_every} sweeps) after burn-in, so "
                             f"nothing to measure the ladder with; expected a multiple of "
                             f"swap_every in sweeps {self.burn_in + 1}..{end}")
        return self


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
    # Pair track restricted to each site's neighbours with pair feature <= pair_cutoff (the
    # chain's |i - j|, a lattice's shell, a graph's shell): memory grows as N x neighbours
    # instead of N^2, and W is zero beyond the cutoff. None: the dense pair track. At least
    # the system's interaction range (RunConfig checks it).
    pair_cutoff: int | None = Field(default=None, ge=1)
    # Also embed the displacement r_j - r_i of each pair (lattices only): anisotropic
    # couplings. Keeps translation invariance but not the lattice's point group.
    displacement_features: bool = False

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

    @property
    def trained_range(self) -> tuple[float, float]:
        """(lowest, highest) training time of the t mixture."""
        return (min(c.low for c in self.t_sampling), max(c.high for c in self.t_sampling))

    @model_validator(mode="after")
    def _check(self) -> DiffusionConfig:
        if self.t_min >= self.t_max:
            raise ValueError(f"t_min ({self.t_min}) must be below t_max ({self.t_max})")
        for c in self.t_sampling:
            if c.low < self.t_min * (1 - 1e-12) or c.high > self.t_max * (1 + 1e-12):
                raise ValueError(f"t_sampling component [{c.low}, {c.high}] leaves "
                                 f"[t_min, t_max] = [{self.t_min}, {self.t_max}]")
        if self.weighting == "likelihood":  # its objective integrates over all of [t_min, t_max]
            reached = self.t_min
            for c in sorted(self.t_sampling, key=lambda c: c.low):
                if c.low > reached * (1 + 1e-12):
                    break
                reached = max(reached, c.high)
            if reached < self.t_max * (1 - 1e-12):
                raise ValueError(f"t_sampling: with the likelihood weighting the components must "
                                 f"cover [t_min, t_max] = [{self.t_min}, {self.t_max}]; they "
                                 f"reach from t_min only to {reached:g}")
        return self


class TrainConfig(_Frozen):
    """Optimisation (SPEC §5 paper values as defaults). `samples` counts noised training
    examples, batch_size per step; with `diffusion.antithetic` each snapshot drawn is noised
    twice (x_t and its mirror), so a step draws batch_size / 2 snapshots (batch_size must be
    even) and 800 000 samples, the paper's 20 epochs x 40 000 in examples, draw 10 epochs of
    snapshots."""

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
    # fraction of the steps after which the state is also kept as early.pt: an under-trained
    # model (the ood stage reads its raw weights) for the trust-flag pool. 0: none.
    early_checkpoint: float = Field(default=0.1, ge=0, lt=1)
    log_every: int = Field(default=10, gt=0)
    seed: int = Field(default=0, ge=0, le=MAX_SEED)


class GenerationConfig(_Frozen):
    """Reverse sampling from the trained model (`diffusion.generate.sample_chains`).

    method: "ode" (probability flow; adaptive without `steps`), "sde" (reverse SDE) or "pc"
    (predictor-corrector, Song et al. 2021: each step a `predictor` step, then
    `corrector_steps` Langevin steps with the learned score at the new time, step size
    one eps for the whole batch, eps = 2 snr^2 E|z|^2 / E|s|^2 with E|z|^2 = 2 per spin (a
    step per chain would bias the stationary law), at most `corrector_max_step`;
    `final_corrector_steps` more at t_min). steps: on a log-spaced grid from t_max to t_min
    (default 500 for "sde" and "pc"). zero_time: one more step from t_min to 0 at the end."""

    method: Literal["ode", "sde", "pc"] = "ode"
    steps: int | None = Field(default=None, gt=0)
    predictor: Literal["sde", "ode"] = "sde"
    corrector_steps: int = Field(default=1, ge=0)
    snr: float = Field(default=0.16, gt=0)
    final_corrector_steps: int = Field(default=0, ge=0)
    corrector_max_step: float = Field(default=0.01, gt=0)
    # a last step from t_min to t = 0 with the score at t_min (diffusion.generate): the chains
    # follow the data density, not its heat-kernel smoothing at t_min
    zero_time: bool = True


class ReproduceConfig(_Frozen):
    """`spinscore reproduce`: the evaluation sets and analyses around the trained model.

    The test set and the OOD sets are simulated with the run's system and simulation sections
    and these changes; the OOD sets are: chains longer than any in training (`ood_length`),
    a higher temperature (`ood_temperature`), and a Hamiltonian with an extra interaction range
    whose couplings are `ood_extra_fraction` x the range-1 couplings of each pair.
    """

    test_sequences: int = Field(default=300, gt=0)
    test_snapshots: int = Field(default=5, gt=0)
    test_seed: int = Field(default=1, ge=0, le=MAX_SEED)
    ood_sequences: int = Field(default=100, gt=0)
    ood_snapshots: int = Field(default=5, gt=0)
    ood_length: tuple[int, int] = (60, 100)
    ood_temperature: float = Field(default=0.2, gt=0)
    ood_extra_fraction: float = 0.2
    partition_sequence: int = Field(default=0, ge=0)  # index into the test set
    mixing_sequences: int = Field(default=200, gt=0)  # re-simulated for the mixing baseline
    generate: int = Field(default=500, gt=0)  # chains generated for the energy histogram
    # ln Z of the partition sequence by three routes (stage "thermo"): thermodynamic
    # integration on `thermo_points` betas and MBAR over the REMC ladder, each from
    # `thermo_runs` independent runs of `thermo_sweeps` sweeps, and importance sampling from
    # `thermo_samples` probability-flow chains of the model (0: no importance sampling);
    # thermo false: no such stage.
    thermo: bool = True
    thermo_points: int = Field(default=100, ge=3)
    thermo_runs: int = Field(default=8, ge=2)
    thermo_sweeps: int = Field(default=4000, gt=0)
    thermo_samples: int = Field(default=200, ge=0)


DATA_SECTIONS = ("system", "simulation")  # what a data set depends on


class RunConfig(_Frozen):
    """Everything one run needs: one section per stage."""

    system: SystemConfig
    simulation: SimulationConfig
    model: ModelConfig = ModelConfig()
    diffusion: DiffusionConfig = DiffusionConfig()
    train: TrainConfig = TrainConfig()
    analysis: AnalysisConfig = AnalysisConfig()
    reproduce: ReproduceConfig = ReproduceConfig()
    generation: GenerationConfig = GenerationConfig()

    @model_validator(mode="after")
    def _check(self) -> RunConfig:
        if self.simulation.replicas > 1 and self.simulation.t_max <= self.system.temperature:
            raise ValueError(
                f"simulation.t_max: expected a temperature above system.temperature "
                f"({self.system.temperature}), got {self.simulation.t_max}"
            )
        cutoff, shells = self.model.pair_cutoff, self.system.max_range
        if cutoff is not None and cutoff < shells:
            raise ValueError(f"model.pair_cutoff: {cutoff} would drop the couplings of shells "
                             f"{cutoff + 1}..{shells}; expected at least {shells} (the "
                             f"interaction range of system.couplings)")
        if self.diffusion.antithetic and self.train.batch_size % 2:
            raise ValueError(f"train.batch_size: expected an even number with "
                             f"diffusion.antithetic (pairs x_t and its mirror), got "
                             f"{self.train.batch_size}")
        swap_every = self.simulation.swap_every  # TI and MBAR record energies at each swap
        partition = self.analysis.partition
        for name, sweeps in (("analysis.partition.ti_sweeps", partition.ti_sweeps),
                             ("reproduce.thermo_sweeps", self.reproduce.thermo_sweeps)):
            if sweeps < swap_every:
                raise ValueError(f"{name}: expected at least simulation.swap_every "
                                 f"({swap_every}) sweeps, got {sweeps}")
        if self.model.displacement_features and self.system.geometry != "lattice":
            raise ValueError(f"model.displacement_features: needs a lattice (system.lattice); "
                             f"a {self.system.geometry} has no site positions")
        return self

    def to_yaml(self, sections: tuple[str, ...] | None = None) -> str:
        """The resolved configuration (or only `sections` of it) as YAML text; round-trips
        through `parse_config`."""
        data = self.model_dump(mode="json")
        if sections is not None:
            data = {k: v for k, v in data.items() if k in sections}
        if "system" in data:
            system = data["system"]
            system["couplings"] = {int(k): v for k, v in system["couplings"].items()}
            for key in ("lattice", "graph", "pattern"):  # a chain's YAML stays as it was
                if system[key] is None:
                    del system[key]
            if system.get("lattice") or system.get("graph"):
                del system["length"]
        return yaml.safe_dump(data, sort_keys=False)
