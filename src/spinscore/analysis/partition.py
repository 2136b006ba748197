"""The partition function from the learned density (SPEC §7, the paper's Fig. 3).

For one sequence (a chain's, or the site types of a lattice or graph): thermal configurations
from low to high energy (REMC with its coldest replica at each temperature T_k of the simulation
ladder), their log-likelihood log p_θ(x) under the model (probability-flow ODE,
`diffusion.likelihood`), and

* the calibration log p ≈ c − α β E: least squares over the low-energy configurations, those
  at the data temperature (the typical set the model was trained on; `fit_temperatures` > 1
  adds the next warmer ladder temperatures, which widens the lever arm in E), α = −slope in βE;
* the invariant log p + α β E, which is flat (= −ln Z(αβ)) where the model is the Boltzmann
  density exp(−αβE)/Z(αβ), and breaks up in the high-energy tail it never saw;
* −ln Z(αβ) from thermodynamic integration (`analysis.thermo`), an independent oracle;
* gap = plateau − (−ln Z_TI), relative_gap = |gap| / |ln Z_TI|.

The plateau is a mean, and a mean of log p is biased: with log p_θ = log p_α + ε, ε the model's
error per configuration, normalisation forces E_{p_α}[e^ε] = 1, so E[ε] = −KL(p_α ‖ p_θ)
≈ −Var ε / 2 < 0. The plateau sits below −ln Z(αβ) by the KL divergence however accurate the
normalisation. The same identity gives an unbiased plateau, the log-mean-exp of the invariant,
ln mean(e^{log p + αβE}) → −ln Z(αβ) ("plateau_lme"; exact at α = 1, and up to the
difference between the samples' β and αβ otherwise). The model's own ln Z, free of α and of
that bias, is the reverse importance
identity on the samples at the data temperature (`reverse_importance_log_z`):
E_{p_β}[p_θ(x) e^{βE(x)}] = 1 / Z(β), against TI at β ("model_log_z").
"""

from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from tqdm.auto import tqdm

from spinscore.config import PartitionSettings, SimulationConfig, SystemConfig
from spinscore.errors import AnalysisError

__all__ = ["calibrate", "ladder_snapshots", "partition_analysis", "reverse_importance_log_z"]

LIKELIHOOD_BATCH = 32  # configurations per probability-flow solve (shared steps and nodes)


def ladder_snapshots(system: SystemConfig, sim: SimulationConfig, types: np.ndarray,
                     per_temperature: int, seed: int = 0, threads: int = 1,
                     progress: bool = False, extra: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Equilibrium snapshots of one sequence at every temperature of the simulation ladder.

    Run k uses the ladder truncated at T_k (`temperatures = ladder[: k + 1]`, hottest first),
    so its coldest replica, the one `simulate_chain` records, is at T_k, with the burn-in,
    thinning and swaps of `sim`; run k has its own random stream (seed, k). `extra` more
    snapshots at the data temperature come from one more run on the whole ladder (stream
    (seed, R)). Returns spins (R·M + extra, L, 3) float64 and their temperatures, M =
    per_temperature, coldest last.
    """
    from spinscore.sampling.remc import simulate_chain, temperature_ladder

    ladder = temperature_ladder(system.temperature, sim.t_max, sim.replicas)
    run = sim.model_copy(update={"snapshots": per_temperature, "seed": seed})
    jobs = [(run, k, ladder[: k + 1]) for k in range(len(ladder))]
    if extra:
        jobs.append((sim.model_copy(update={"snapshots": extra, "seed": seed}), len(ladder),
                     ladder))
    with (ThreadPoolExecutor(max_workers=threads) as pool,
          tqdm(total=len(jobs), desc="REMC per T", disable=not progress, leave=False) as bar):
        futures = [pool.submit(simulate_chain, system, r, k, types, temps)
                   for r, k, temps in jobs]
        results = []
        for f in futures:
            results.append(f.result())
            bar.update(1)
    spins = np.concatenate([r.spins for r in results])
    return spins, np.concatenate([np.repeat(ladder, per_temperature), np.full(extra, ladder[-1])])


def calibrate(log_p: np.ndarray, beta_energy: np.ndarray, low: np.ndarray) -> dict:
    """Fit log p = c − α βE by least squares over the configurations `low`, and the invariant.

    log_p, beta_energy: (n,) nats and dimensionless; low: (n,) bool. Returns alpha, its standard
    error alpha_err, intercept c, r2 of the fit, invariant (n,) = log p + α βE, plateau (mean
    invariant over `low`), plateau_std (its spread), plateau_sem (standard error of the mean).
    """
    x, y = beta_energy[low], log_p[low]
    if low.sum() < 3 or np.ptp(x) == 0:
        raise AnalysisError("partition: need at least 3 low-energy configurations with "
                             "different energies to fit alpha")
    design = np.column_stack([np.ones_like(x), -x])
    (intercept, alpha), *_ = np.linalg.lstsq(design, y, rcond=None)
    resid = y - design @ np.array([intercept, alpha])
    dof = max(len(y) - 2, 1)
    cov = np.linalg.inv(design.T @ design) * (resid @ resid / dof)
    invariant = log_p + alpha * beta_energy
    return {
        "alpha": float(alpha), "alpha_err": float(math.sqrt(cov[1, 1])),
        "intercept": float(intercept),
        "r2": float(1 - resid @ resid / max(((y - y.mean()) ** 2).sum(), 1e-300)),
        "invariant": invariant, "low": low,
        "plateau": float(invariant[low].mean()), "plateau_std": float(invariant[low].std(ddof=1)),
        "plateau_sem": float(invariant[low].std(ddof=1) / math.sqrt(low.sum())),
    }


def reverse_importance_log_z(log_p: np.ndarray, beta_energy: np.ndarray, bootstrap: int = 1000,
                             seed: int = 0) -> dict:
    """ln Z(β) from a normalised model density on samples of the Boltzmann density at β.

    E_{p_β}[p_θ e^{βE}] = ∫ p_θ dx / Z(β) = 1 / Z(β) holds for any normalised p_θ, so
    ln Z = −ln mean(e^{log p_θ + βE}). log_p: (n,) nats; beta_energy: (n,) βE of the same
    configurations, drawn from p_β. Returns log_z, log_z_err (bootstrap standard error over
    the samples, `bootstrap` resamples, fixed `seed`), ess (the effective sample size of the
    weights e^{log p + βE}) and n.
    """
    from scipy.special import logsumexp

    y = np.asarray(log_p, float) + np.asarray(beta_energy, float)
    n = len(y)
    if n < 2:
        raise AnalysisError("partition: the reverse importance estimate needs at least 2 "
                            "configurations at the data temperature")
    rng = np.random.default_rng(seed)
    boot = [logsumexp(y[rng.integers(0, n, n)]) - math.log(n) for _ in range(bootstrap)]
    w = np.exp(y - y.max())
    return {"log_z": float(math.log(n) - logsumexp(y)), "log_z_err": float(np.std(boot)),
            "ess": float(w.sum() ** 2 / (w**2).sum()), "n": n}


def partition_analysis(model, config, types: np.ndarray, settings: PartitionSettings, *,
                       threads: int = 2, progress: bool = False) -> dict:
    """The partition-function analysis of one sequence (module docstring).

    model, config: from `load_model`; types: (L,) int. `settings`: REMC snapshots per ladder
    temperature of config.simulation, their log p (`solve_likelihood`: divergence, tolerance,
    probes), the fit on the coldest `fit_temperatures`, TI at beta_eff = alpha beta
    (`thermodynamic_integration`). Returns a dict: alpha, alpha_err, beta, beta_eff, plateau,
    plateau_std, plateau_sem, log_z_ti, log_z_ti_err, gap, relative_gap (and plateau_lme,
    plateau_lme_err, gap_lme, relative_gap_lme: the log-mean-exp plateau), the fit's r2 and
    intercept, settings, timings (seconds) and `points` (per configuration: temperature,
    energy, log_p, invariant, and the zero-time correction in log_p). With
    `settings.zero_time`, log p is log p_0 and `at_t_min` holds alpha, plateau and gap of the
    same analysis on log p_{t_min}. `model_log_z`: the model's ln Z(β) by
    `reverse_importance_log_z` on the configurations at the data temperature, against TI at
    β (log_z, log_z_err, ess, n, log_z_ti, log_z_ti_err, gap, relative_gap). Arrays are lists
    (JSON-ready). Raises AnalysisError when the
    learned density does not decrease with the energy.
    """
    from spinscore.analysis.thermo import check_runs, thermodynamic_integration
    from spinscore.diffusion import likelihood

    system, ps = config.system, settings
    check_runs(ps.ti_runs, ps.ti_sweeps, config.simulation)  # before the expensive part
    types = np.asarray(types, dtype=np.int64)
    temps, energies, log_p, correction, timings, solver = _ladder_log_p(
        model, config, types, ps, threads, progress)
    beta = system.beta
    low = temps <= np.sort(np.unique(temps))[min(ps.fit_temperatures, len(np.unique(temps))) - 1]

    def fit_and_ti(log_p_: np.ndarray) -> tuple[dict, dict]:
        fit_ = calibrate(log_p_, beta * energies, low)
        if fit_["alpha"] <= 0:
            raise AnalysisError(f"partition: fitted alpha = {fit_['alpha']:.3g} is not positive; "
                                "the learned density does not decrease with the energy")
        return fit_, thermodynamic_integration(
            system, types, fit_["alpha"] * beta, n_points=ps.ti_points, sim=config.simulation,
            seed=ps.seed, runs=ps.ti_runs, sweeps=ps.ti_sweeps, threads=threads,
            progress=progress)

    tick = time.perf_counter()
    fit, ti = fit_and_ti(log_p)
    beta_eff = fit["alpha"] * beta
    gap = fit["plateau"] + ti["log_z"]
    lme = reverse_importance_log_z(log_p[low], beta_eff * energies[low], seed=ps.seed)
    gap_lme = ti["log_z"] - lme["log_z"]  # plateau_lme = -lme["log_z"]
    at_t_min = None
    if correction is not None:  # the same analysis on log p_{t_min}, for comparison
        fit_t, ti_t = fit_and_ti(log_p - correction)
        at_t_min = {"alpha": fit_t["alpha"], "alpha_err": fit_t["alpha_err"],
                    "plateau": fit_t["plateau"], "plateau_std": fit_t["plateau_std"],
                    "log_z_ti": ti_t["log_z"], "gap": fit_t["plateau"] + ti_t["log_z"],
                    "relative_gap": abs(fit_t["plateau"] + ti_t["log_z"]) / abs(ti_t["log_z"])}
    data_t = temps == temps.min()  # the coldest rung: the data temperature
    model_z = reverse_importance_log_z(log_p[data_t], beta * energies[data_t], seed=ps.seed)
    ti_beta = thermodynamic_integration(
        system, types, beta, n_points=ps.ti_points, sim=config.simulation, seed=ps.seed,
        runs=ps.ti_runs, sweeps=ps.ti_sweeps, threads=threads, progress=progress)
    model_gap = model_z["log_z"] - ti_beta["log_z"]
    model_z.update({"log_z_ti": ti_beta["log_z"], "log_z_ti_err": ti_beta["log_z_err"],
                    "gap": model_gap, "relative_gap": abs(model_gap) / abs(ti_beta["log_z"])})
    timings["ti_s"] = time.perf_counter() - tick
    return {
        "length": len(types), "temperature": system.temperature, "beta": beta,
        "alpha": fit["alpha"], "alpha_err": fit["alpha_err"], "beta_eff": beta_eff,
        "fit_r2": fit["r2"], "intercept": fit["intercept"],
        "plateau": fit["plateau"], "plateau_std": fit["plateau_std"],
        "plateau_sem": fit["plateau_sem"],
        "log_z_ti": ti["log_z"], "log_z_ti_err": ti["log_z_err"],
        "gap": gap, "relative_gap": abs(gap) / abs(ti["log_z"]),
        "plateau_lme": -lme["log_z"], "plateau_lme_err": lme["log_z_err"], "gap_lme": gap_lme,
        "relative_gap_lme": abs(gap_lme) / abs(ti["log_z"]),
        "divergence": ps.divergence, "n_probes": ps.probes if ps.divergence == "hutchinson"
        else None, "trajectory_rtol": ps.tolerance, "trajectory_atol": ps.tolerance,
        "log_p_atol_per_spin": likelihood.QUADRATURE_ATOL,
        "per_temperature": ps.per_temperature, "seed": ps.seed,
        "fit_temperatures": ps.fit_temperatures, "fit_snapshots": ps.fit_snapshots,
        "n_fit": int(low.sum()), **solver, "zero_time": ps.zero_time, "at_t_min": at_t_min,
        "model_log_z": model_z,
        "n_configurations": len(energies),
        "timings": {**timings, "total_s": sum(timings.values())},
        "points": {"temperature": temps.tolist(), "energy": energies.tolist(),
                   "log_p": log_p.tolist(), "invariant": fit["invariant"].tolist(),
                   "low": low.tolist(),
                   "correction": None if correction is None else correction.tolist()},
    }


def _ladder_log_p(model, config, types: np.ndarray, ps: PartitionSettings, threads: int,
                  progress: bool):
    """REMC snapshots at every ladder temperature and their log p under the model.

    Returns (temperatures (M,), energies (M,), log p (M,), the zero-time correction in it
    (M,) or None, timings, solver statistics)."""
    from spinscore.diffusion.likelihood import solve_likelihood
    from spinscore.physics.hamiltonian import system_couplings, system_energy
    from spinscore.systems import system_from_config

    system, diffusion = config.system, config.diffusion
    sites = system_from_config(system)
    tick = time.perf_counter()
    spins, temps = ladder_snapshots(system, config.simulation, types, ps.per_temperature,
                                    ps.seed, threads, progress, extra=ps.fit_snapshots)
    energies = system_energy(sites, spins, system_couplings(sites, types, system.coupling_table()))
    timings = {"remc_s": time.perf_counter() - tick}
    tick = time.perf_counter()
    gen = torch.Generator().manual_seed(ps.seed)
    x = torch.as_tensor(spins)
    t = torch.as_tensor(types).expand(len(spins), len(types))
    log_p, nfe, n_div = np.empty(len(spins)), [], []
    correction = np.empty(len(spins)) if ps.zero_time else None
    for start in tqdm(range(0, len(spins), LIKELIHOOD_BATCH), desc=f"log p ({ps.divergence})",
                      disable=not progress, leave=False):
        sl = slice(start, start + LIKELIHOOD_BATCH)
        res = solve_likelihood(model, x[sl], t[sl], t_min=diffusion.t_min, t_max=diffusion.t_max,
                               divergence=ps.divergence, rtol=ps.tolerance, atol=ps.tolerance,
                               n_probes=ps.probes, generator=gen, zero_time=ps.zero_time)
        log_p[sl] = res.log_p.numpy()
        if correction is not None:
            correction[sl] = res.correction.numpy()
        nfe.append(res.nfe)
        n_div.append(res.n_divergence)
    timings["likelihood_s"] = time.perf_counter() - tick
    solver = {"nfe_mean": float(np.mean(nfe)),
              "divergence_evaluations_mean": float(np.mean(n_div))}
    return temps, energies, log_p, correction, timings, solver
