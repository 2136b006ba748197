"""How a trained model is read: the one place for the settings of the readouts (extract, ood)
and of the partition-function analysis, shared by the command line and `reproduce`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from spinscore.config.system import MAX_SEED, _Frozen


class PartitionSettings(_Frozen):
    """The partition-function analysis of one sequence (SPEC §7): REMC snapshots at every
    ladder temperature, their log p by the probability-flow ODE, the fit of alpha on the
    coldest temperatures, and thermodynamic integration at beta_eff = alpha beta."""

    per_temperature: int = Field(default=20, ge=2)  # REMC snapshots per ladder temperature
    divergence: Literal["exact", "hutchinson"] = "exact"
    probes: int = Field(default=4, gt=0)  # Hutchinson probes per configuration
    # rtol = atol of the probability-flow trajectory (radians); the divergence integral is
    # held to 1e-3 nats per spin by the quadrature (diffusion.likelihood)
    tolerance: float = Field(default=1e-5, gt=0)
    fit_temperatures: int = Field(default=1, gt=0)  # coldest ladder temperatures in the fit
    # more snapshots at the data temperature, for alpha's error (it falls as 1/sqrt(n_fit))
    fit_snapshots: int = Field(default=0, ge=0)
    # log p_0 by the first-order heat-equation step from t_min (diffusion.likelihood): the
    # density the ODE reaches at t_min is the data's smoothed, which reads as alpha < 1
    zero_time: bool = True
    ti_points: int = Field(default=100, ge=3)  # beta grid of the TI (Simpson)
    ti_runs: int = Field(default=8, ge=2)  # independent REMC runs: the TI error bar
    ti_sweeps: int = Field(default=4000, gt=0)  # measurement sweeps per run
    seed: int = Field(default=0, ge=0, le=MAX_SEED)

    @model_validator(mode="after")
    def _check(self) -> PartitionSettings:
        if self.per_temperature * self.fit_temperatures + self.fit_snapshots < 3:
            raise ValueError(
                f"per_temperature x fit_temperatures + fit_snapshots: the fit of alpha needs "
                f"at least 3 configurations, got {self.per_temperature} x "
                f"{self.fit_temperatures} + {self.fit_snapshots}")
        return self


class TrustSettings(_Frozen):
    """The trust-flag pool of the ood stage (`analysis.trust`): configurations drawn per set,
    and the probability-flow log-likelihood of each (a flag: Hutchinson's estimator is
    unbiased and its noise is small against the spread between sets)."""

    # per set of the pool; the likelihood of the quick preset's longer chains (L <= 100)
    # takes ~2.5 s per configuration here, the rest 0.3 s
    configurations: int = Field(default=32, ge=8)
    divergence: Literal["exact", "hutchinson"] = "hutchinson"
    probes: int = Field(default=1, gt=0)
    # rtol = atol of the trajectory (radians): the flag of the quick model changes by < 0.02
    # nats per site from 1e-4, against a spread of ~0.5 within a set
    tolerance: float = Field(default=1e-3, gt=0)
    seed: int = Field(default=0, ge=0, le=MAX_SEED)


class AnalysisConfig(_Frozen):
    """The readouts of a trained network (extract, ood) and the partition function."""

    # zero-noise evaluation time of the network (None: the model's smallest training time)
    t_eval: float | None = Field(default=None, gt=0)
    # readout times whose OLS estimates are extrapolated to t = 0 (None: the smallest
    # training time and three doublings, `analysis.extract.default_readout_times`)
    t_extrapolate: tuple[float, ...] | None = None
    bootstrap: int = Field(default=200, ge=0)  # resamples over test sequences
    batch_size: int = Field(default=128, gt=0)  # snapshots per network call
    partition: PartitionSettings = PartitionSettings()
    # the trust-flag pool of the ood stage; null: none (its likelihoods cost ~3 s per
    # configuration on a 9 x 9 lattice)
    trust: TrustSettings | None = TrustSettings()

    @model_validator(mode="after")
    def _check(self) -> AnalysisConfig:
        times = self.t_extrapolate
        if times is not None and (len(set(times)) < len(times) or len(times) < 2
                                  or min(times) <= 0):
            raise ValueError(f"t_extrapolate: expected at least two distinct positive times, "
                             f"got {list(times)}")
        return self

    def eval_time(self, trained_t: list[float]) -> float:
        """t_eval, or the smallest training time `trained_t[0]` of the model when unset."""
        return self.t_eval if self.t_eval is not None else float(trained_t[0])
