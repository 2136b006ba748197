"""Thermodynamic integration (TI): ln Z of one sample (a chain's sequence, or the site types of
a lattice or graph) from <E>_beta (SPEC §7).

    ln Z(beta0) = L ln(4 pi) - int_0^beta0 <E>_beta dbeta,

with Z = int prod_i dS_i exp(-beta H) over the product of the L unit spheres (area 4 pi each), so
ln Z(0) = L ln 4 pi, and d ln Z / d beta = -<E>_beta. L is the number of sites of the sample.

<E>_beta is measured on a uniform grid of n_points values of beta in [0, beta0] and integrated with
Simpson's rule. beta = 0 is exact: the spins are independent and isotropic, <E>_0 = 0. The other
n_points - 1 grid values are the ladder of one replica-exchange run (`simulate_chain`), so every
grid point is sampled at once and the closely spaced ladder swaps often.

Why a uniform grid: the Simpson error is ~h^4 and <E>_beta is smooth (slope -Var E, the sum of
J^2 / 3 over the interacting pairs at beta = 0, decaying like 1/beta^2 in the low-temperature
regime). With 100 points on [0, 20] and the exact <E> of a 20-spin nearest-neighbour chain the
quadrature error is 1e-5 in ln Z (trapezoid: 1e-2), far below the Monte Carlo error, so the grid
of the paper is kept.

Error bars: `runs` independent REMC runs (each its own seed) give independent estimates of the
whole curve and of ln Z. Their spread accounts for the autocorrelation in Monte Carlo time and for
the correlation between neighbouring betas that swaps create: the standard error of ln Z is
sqrt(w^T Cov w / runs), w the Simpson weights and Cov the covariance of the runs' <E> curves.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor, as_completed

import numpy as np
from scipy.integrate import simpson
from tqdm.auto import tqdm

from spinscore.config import SimulationConfig, SystemConfig
from spinscore.physics.exact import LOG_4PI, chain_bonds_by_range, nn_chain_log_z, nn_chain_mean_energy
from spinscore.physics.hamiltonian import bond_couplings, system_couplings
from spinscore.sampling.remc import ChainResult, simulate_chain
from spinscore.systems import system_from_config


def beta_grid(beta0: float, n_points: int) -> np.ndarray:
    """The integration grid: n_points uniformly spaced inverse temperatures on [0, beta0], (n,)."""
    return np.linspace(0.0, beta0, n_points)


def simpson_weights(betas: np.ndarray) -> np.ndarray:
    """Weights w (n,) with sum_k w_k f(beta_k) = simpson(f, x=betas) for any f (the rule is
    linear); any increasing grid, even or odd n >= 2."""
    return simpson(np.eye(len(betas)), x=betas, axis=-1)


def integrate_log_z(betas: np.ndarray, mean_energy: np.ndarray, length: int) -> np.ndarray:
    """ln Z(betas[-1]) = L ln 4 pi - int <E> dbeta by Simpson's rule.

    Args:
        betas: (n,) increasing grid starting at 0 (units 1/J). mean_energy: (..., n) <E> on the
            grid (units J). length: L, the number of spins.
    Returns:
        (...,) ln Z (dimensionless).
    """
    return length * LOG_4PI - mean_energy @ simpson_weights(betas)


def exact_single_range(system: SystemConfig, types: np.ndarray, betas: np.ndarray) -> dict | None:
    """Closed-form ln Z(betas[-1]) and <E>_beta (n,) when the chain has one interaction range (it is
    then a set of independent nearest-neighbour chains, SPEC §2); None otherwise, and None for
    every system that is not an open chain (a lattice, a graph)."""
    if system.geometry != "chain":
        return None
    bonds = bond_couplings(np.asarray(types), system.coupling_table())
    if not np.any(bonds):  # free spins
        return {"log_z": len(types) * LOG_4PI, "mean_energy": np.zeros(len(betas))}
    try:
        chains = chain_bonds_by_range(bonds)
    except ValueError:
        return None
    energy = np.array([sum(nn_chain_mean_energy(j, b) for _, j in chains) for b in betas])
    return {"log_z": float(sum(nn_chain_log_z(j, betas[-1]) for _, j in chains)),
            "mean_energy": energy}


def high_temperature_variance(system: SystemConfig, types: np.ndarray) -> float:
    """Var E at beta = 0, exact: sum of J_ij^2 / 3 over the interacting pairs of the sample
    with site types `types` (N,) of `system` (isotropic independent spins: the pair energies
    are uncorrelated, each S_i . S_j of variance 1/3). Units J^2."""
    sites = system_from_config(system)
    couplings = system_couplings(sites, np.asarray(types), system.coupling_table())
    return float(np.sum(couplings**2) / 3.0)


def _check_ti_settings(n_points: int, beta0: float, runs: int, sweeps: int,
                       sim: SimulationConfig) -> None:
    if n_points < 3:
        raise ValueError(f"n_points: expected at least 3 grid points, got {n_points}")
    if not (np.isfinite(beta0) and beta0 > 0):
        raise ValueError(f"beta0: expected a positive inverse temperature, got {beta0}")
    check_runs(runs, sweeps, sim)


def check_runs(runs: int, sweeps: int, sim: SimulationConfig) -> None:
    """ValueError unless `runs` >= 2 (an error bar) and `sweeps` >= sim.swap_every (at least
    one measurement per run)."""
    if runs < 2:
        raise ValueError(f"runs: expected at least 2 independent runs for an error bar, got {runs}")
    if sweeps < sim.swap_every:
        raise ValueError(f"sweeps ({sweeps}) must be at least swap_every ({sim.swap_every})")


def ladder_runs(system: SystemConfig, types: np.ndarray, temperatures: np.ndarray,
                sim: SimulationConfig, seed: int, runs: int, sweeps: int, threads: int,
                progress: bool, desc: str = "thermo") -> list[ChainResult]:
    """`runs` independent REMC runs of the sample `types` (N,) on the ladder `temperatures`
    (R,) (hottest first, units J), in `threads` threads: run r is chain r of master seed
    `seed`, burn_in and swap_every from `sim`, then `sweeps` measurement sweeps."""
    # One stored snapshot per run (not used).
    sim_run = sim.model_copy(update={"replicas": len(temperatures), "snapshots": 1,
                                     "thinning": sweeps, "seed": seed})
    with (ThreadPoolExecutor(max_workers=threads) as pool,
          tqdm(total=runs, unit="run", desc=desc, disable=not progress) as bar):
        futures = [pool.submit(simulate_chain, system, sim_run, r, types, temperatures)
                   for r in range(runs)]
        for _ in as_completed(futures):
            bar.update(1)
        return [f.result() for f in futures]


def thermodynamic_integration(
    system: SystemConfig,
    types: np.ndarray,
    beta0: float,
    n_points: int = 100,
    sim: SimulationConfig | None = None,
    seed: int = 0,
    progress: bool = False,
    runs: int = 8,
    sweeps: int = 4000,
    threads: int = 1,
) -> dict:
    """ln Z(beta0) of the sample `types` (L,) int of `system` (a chain's sequence, or the site
    types of a lattice or graph) by thermodynamic integration (module docstring).

    Args: beta0: target inverse temperature (1/J). n_points: grid size on [0, beta0] (>= 3);
        all but beta = 0 are REMC replicas. sim: sampler schedule, of which burn_in and
        swap_every are used (the ladder, snapshot and seed fields are replaced); default
        SimulationConfig defaults (2000, 10). seed: master seed; run r uses chain stream
        (seed, r), so the result is deterministic and independent of `threads`. runs:
        independent REMC runs (>= 2); error bars come from their spread. sweeps: measurement
        sweeps per run after burn-in; <E> is sampled every swap_every sweeps. threads: runs
        executed concurrently (the kernels release the GIL).
    Returns:
        dict with log_z, log_z_err (standard error), log_z_runs (runs,), log_z_infinite_temperature
        (L ln 4 pi), betas (n,), mean_energy and mean_energy_err (n,) (units J), energy_var (n,)
        (Var E, J^2), heat_capacity (n,) (beta^2 Var E), swap_acceptance (n-2,) (mean over runs),
        and the settings (length, beta0, runs, sweeps, burn_in, swap_every, seed), wall_time_s.
    """
    types = np.asarray(types)
    sim = sim if sim is not None else SimulationConfig(sequences=1, snapshots=1)
    _check_ti_settings(n_points, beta0, runs, sweeps, sim)
    betas = beta_grid(beta0, n_points)
    start = time.perf_counter()
    # the ladder is the grid without beta = 0
    results = ladder_runs(system, types, 1.0 / betas[1:], sim, seed, runs, sweeps, threads,
                          progress)
    wall = time.perf_counter() - start

    zero = np.zeros((runs, 1))  # <E>_0 = 0 and Var_0 E = sum J^2 / 3, exact (isotropic spins)
    energy = np.hstack([zero, [r.ladder_energy_mean for r in results]])  # (runs, n)
    var0 = high_temperature_variance(system, types)
    energy_var = np.hstack([[var0], np.mean([r.ladder_energy_var for r in results], axis=0)])
    log_z_runs = integrate_log_z(betas, energy, len(types))  # (runs,)
    return {
        "log_z": float(log_z_runs.mean()),
        "log_z_err": float(log_z_runs.std(ddof=1) / np.sqrt(runs)),
        "log_z_runs": log_z_runs,
        "log_z_infinite_temperature": len(types) * LOG_4PI,
        "betas": betas,
        "mean_energy": energy.mean(axis=0),
        "mean_energy_err": energy.std(axis=0, ddof=1) / np.sqrt(runs),
        "energy_var": energy_var,
        "heat_capacity": betas**2 * energy_var,
        "swap_acceptance": np.mean([r.swap_acceptance for r in results], axis=0),
        "length": len(types), "beta0": float(beta0), "runs": runs, "sweeps": sweeps,
        "burn_in": sim.burn_in, "swap_every": sim.swap_every, "seed": seed, "wall_time_s": wall,
    }
