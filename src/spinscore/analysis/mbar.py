"""ln Z at every temperature of a replica-exchange ladder by MBAR (Shirts & Chodera 2008), the
standard estimator for samples at several temperatures; beside the Simpson TI of `thermo`.

States. The ladder's states k = 1..R are its inverse temperatures beta_k (hottest first). There
is one Hamiltonian, so the reduced potential of a configuration x in state k is beta_k E(x) and
MBAR needs only the energy of every sample: u_kn = beta_k E_n for every state k and every
sample n, whichever state drew it (`ChainResult.ladder_energies`: the energy at each ladder
temperature after every swap step). MBAR returns f_k = -ln Z_k up to one common constant.

Anchor. State 0 is beta = 0, sampled exactly: independent isotropic spins, whose ln Z is
N ln 4 pi (Z = int prod_i dS_i exp(-beta H), as in `thermo`). It enters MBAR as one more state,
so ln Z_k = N ln 4 pi - (f_k - f_0), when it overlaps the hottest ladder state: the off-diagonal
element O[0, 1] of pymbar's overlap matrix of these two states alone (0.5 for identical
distributions, 0 for disjoint ones; alone, so that it does not depend on how densely the rest of
the ladder is spaced) at least `min_overlap`, 0.03 by default (the smallest neighbour overlap
Klimovich, Shirts & Mobley 2015 accept). It is set by beta_1 sqrt(Var_0 E), Var_0 E =
sum J^2 / 3 (`high_temperature_variance`): about 0.45 for a 20-site quick-preset chain at
T_max = 5, but several units on the lattice presets. Below the threshold, ln Z(beta_1) comes
from a short TI on [0, beta_1] (`thermodynamic_integration`, its own runs, seed + 1) and MBAR
gives the differences along the ladder.

Decorrelation. Each state's energy trace is correlated in Monte Carlo time, and MBAR's analytic
uncertainty assumes independent samples: every trace is subsampled at its statistical
inefficiency g_k (`pymbar.timeseries`, one sample every g_k measurements), the standard
treatment. The beta = 0 samples are independent by construction (as many as measurements).

Error bars. `runs` independent REMC runs, one MBAR each: the estimate of ln Z_k is the mean of
the runs' values and its error bar their standard error, as for the TI (this assumes nothing
about autocorrelation or the correlation swaps create between states). pymbar's analytic
uncertainty, combined over the runs, is returned beside it (log_z_err_mbar); the two agree
when the subsampling has removed the correlation.
"""

from __future__ import annotations

import logging
import time
from typing import Literal

import numpy as np

from spinscore.analysis.thermo import check_runs, ladder_runs, thermodynamic_integration
from spinscore.config import SimulationConfig, SystemConfig
from spinscore.physics.exact import LOG_4PI
from spinscore.physics.hamiltonian import system_couplings, system_energy
from spinscore.sampling.remc import chain_seed, temperature_ladder
from spinscore.systems import system_from_config


class _DropImportBanner(logging.Filter):
    """Drops the log records that contain `text` (a banner pymbar logs when imported)."""

    def __init__(self, text: str):
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


# pymbar 4 logs two banners on import: that JAX is missing (it then solves with NumPy and SciPy,
# as intended here) and a general caveat of its timeseries module (the error bars here come from
# independent runs). Only these two records are dropped; pymbar is imported where it is used.
logging.getLogger("pymbar.mbar_solvers").addFilter(_DropImportBanner("JAX NOT FOUND"))
logging.getLogger("pymbar.timeseries").addFilter(
    _DropImportBanner("Warning on use of the timeseries module"))


def isotropic_energies(system: SystemConfig, types: np.ndarray, n: int,
                       rng: np.random.Generator) -> np.ndarray:
    """Energies (n,) (units J) of n independent configurations of the sample `types` (N,) of
    `system` with every spin uniform on the sphere: exact samples at beta = 0."""
    sites = system_from_config(system)
    couplings = system_couplings(sites, np.asarray(types), system.coupling_table())
    spins = rng.standard_normal((n, len(types), 3))
    spins /= np.linalg.norm(spins, axis=-1, keepdims=True)
    return system_energy(sites, spins, couplings)


def decorrelated(trace: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Subsample each state's energy trace at its statistical inefficiency.

    Args: trace (n, R): energy at each of R states at n successive measurements.
    Returns: the R subsampled traces (list of (n_k,) arrays) and g (R,), the statistical
        inefficiencies in measurements (pymbar.timeseries).
    """
    from pymbar import timeseries

    def inefficiency(x: np.ndarray) -> float:  # pymbar needs a trace that varies
        return 1.0 if len(x) < 3 or np.ptp(x) == 0 else timeseries.statistical_inefficiency(x)

    g = np.array([inefficiency(trace[:, k]) for k in range(trace.shape[1])])
    kept = [trace[timeseries.subsample_correlated_data(trace[:, k], g=g[k]), k]
            for k in range(trace.shape[1])]
    return kept, g


def mbar_free_energies(energies: list[np.ndarray], betas: np.ndarray) -> dict:
    """MBAR on samples of K states of one Hamiltonian at inverse temperatures `betas` (K,).

    Args: energies: K arrays (n_k,), the energies (units J) of the samples drawn in each
        state; betas (K,) (1/J), the states' inverse temperatures.
    Returns: dict with delta_f (K, K) f_j - f_i at [i, j] (f = -ln Z, dimensionless) and its
        analytic standard error delta_f_err (K, K), overlap (K, K) (pymbar's overlap matrix),
        and n_effective (K,) (Kish's effective number of samples reweighted to each state).
    """
    from pymbar import MBAR

    u_kn = np.outer(betas, np.concatenate(energies))
    counts = np.array([len(e) for e in energies])
    try:
        mbar = MBAR(u_kn, counts, initialize="BAR")
    # BAR's guess fails between near-identical states (beta0 <= 1e-5), and pymbar 4.0.3's own
    # handler of that failure raises a NameError: start from zeros instead
    except Exception:  # noqa: BLE001
        mbar = MBAR(u_kn, counts, initialize="zeros")
    result = mbar.compute_free_energy_differences()
    return {"delta_f": result["Delta_f"], "delta_f_err": result["dDelta_f"],
            "overlap": mbar.compute_overlap()["matrix"],
            "n_effective": mbar.compute_effective_sample_number()}


def _check_temperatures(temperatures: np.ndarray) -> None:
    if not (temperatures.ndim == 1 and len(temperatures) >= 1 and np.all(np.isfinite(temperatures))
            and np.all(temperatures > 0) and np.all(np.diff(temperatures) < 0)):
        raise ValueError("temperatures: expected positive temperatures, hottest first and "
                         f"strictly decreasing, got {temperatures.tolist()}")


def mbar_log_z(
    system: SystemConfig,
    types: np.ndarray,
    temperatures: np.ndarray | None = None,
    sim: SimulationConfig | None = None,
    seed: int = 0,
    progress: bool = False,
    runs: int = 8,
    sweeps: int = 4000,
    threads: int = 1,
    anchor: Literal["auto", "uniform", "ti"] = "auto",
    min_overlap: float = 0.03,
    anchor_points: int = 11,
) -> dict:
    """ln Z at every temperature of a REMC ladder by MBAR, for the sample `types` (N,) int of
    `system` (module docstring).

    Args: temperatures: (R,) the ladder, hottest first (units J); default the data sets'
        ladder, from sim.t_max down to system.temperature in sim.replicas steps. sim: sampler
        schedule, of which burn_in and swap_every (and, without `temperatures`, t_max and
        replicas) are used; default SimulationConfig defaults. seed: master seed; run r uses
        chain stream (seed, r), its beta = 0 samples a stream spawned from it. runs:
        independent REMC runs (>= 2), the error bar. sweeps: measurement sweeps per run after
        burn-in; energies are recorded every swap_every sweeps. threads: runs executed
        concurrently. anchor: "uniform" (beta = 0 as an MBAR state), "ti" (a TI on [0, beta_1]
        of anchor_points grid points, `runs` runs of `sweeps` sweeps), or "auto": "uniform"
        when the two-state overlap of beta = 0 and the hottest state (mean over runs) is
        >= min_overlap, else "ti".
    Returns:
        dict with betas and temperatures (R,); log_z, log_z_err (standard error over runs) and
        log_z_err_mbar (pymbar's analytic one combined over runs, with the TI's error in
        quadrature under a TI anchor), all (R,); log_z_runs (runs, R); anchor ("uniform" or
        "ti"); anchor_overlap (the two-state O[0, 1]); neighbour_overlap (R,) (O[k, k+1] of the
        MBAR of all the states beta = 0, beta_1, ..., beta_R) and overlap_min, its minimum
        over the links ln Z uses (from beta_1 on under the TI anchor);
        statistical_inefficiency (R,) (in measurements); n_samples and n_effective (R + 1,)
        (decorrelated samples and Kish's effective samples per state, beta = 0 first); these
        are means over runs. anchor_ti (the TI's log_z and log_z_err at beta_1 and its points;
        None without it), swap_acceptance (R-1,), the settings (length, runs, sweeps, burn_in,
        swap_every, seed) and wall times in seconds (sampling_s, mbar_s, anchor_ti_s,
        wall_time_s the total).
    """
    types = np.asarray(types)
    sim = sim if sim is not None else SimulationConfig(sequences=1, snapshots=1)
    if temperatures is None:
        temperatures = temperature_ladder(system.temperature, sim.t_max, sim.replicas)
    temperatures = np.asarray(temperatures, dtype=float)
    _check_temperatures(temperatures)
    check_runs(runs, sweeps, sim)
    if anchor not in ("auto", "uniform", "ti"):
        raise ValueError(f"anchor: expected 'auto', 'uniform' or 'ti', got {anchor!r}")
    betas = 1.0 / temperatures
    start = time.perf_counter()
    results = ladder_runs(system, types, temperatures, sim, seed, runs, sweeps, threads, progress,
                          desc="mbar")
    sampled = time.perf_counter()

    fits, g, counts, anchor_overlap = [], [], [], []
    for r, res in enumerate(results):
        kept, g_run = decorrelated(res.ladder_energies)
        rng = np.random.default_rng(chain_seed(seed, r).spawn(1)[0])
        zero = isotropic_energies(system, types, len(res.ladder_energies), rng)
        fits.append(mbar_free_energies([zero, *kept], np.concatenate([[0.0], betas])))
        pair = mbar_free_energies([zero, kept[0]], np.array([0.0, betas[0]]))
        anchor_overlap.append(pair["overlap"][0, 1])
        g.append(g_run)
        counts.append([len(zero), *map(len, kept)])
    fitted = time.perf_counter()

    anchor_overlap = float(np.mean(anchor_overlap))
    if anchor == "auto":
        anchor = "uniform" if anchor_overlap >= min_overlap else "ti"
    # O[k, k+1] of all states together: small on a dense ladder, whose weight spreads over
    # several neighbours, without any loss of precision
    neighbour = np.mean([np.diagonal(f["overlap"], offset=1) for f in fits], axis=0)  # (R,)
    ref = 0 if anchor == "uniform" else 1  # the MBAR state whose ln Z is known
    used = ref  # under the TI anchor the link beta = 0 -> beta_1 is not used (anchor_overlap)
    delta = np.array([f["delta_f"][ref, 1:] for f in fits])  # (runs, R): f_k - f_ref
    err_mbar = np.sqrt(np.sum([f["delta_f_err"][ref, 1:] ** 2 for f in fits], axis=0)) / runs
    anchor_ti = None
    if anchor == "uniform":
        log_z_runs = len(types) * LOG_4PI - delta
    else:  # ln Z(beta_1) of the TI's run r anchors MBAR run r (independent runs)
        ti = thermodynamic_integration(system, types, betas[0], anchor_points, sim, seed + 1,
                                       progress, runs, sweeps, threads)
        log_z_runs = ti["log_z_runs"][:, None] - delta
        err_mbar = np.sqrt(err_mbar**2 + ti["log_z_err"] ** 2)
        anchor_ti = {"log_z": ti["log_z"], "log_z_err": ti["log_z_err"], "points": anchor_points}
    end = time.perf_counter()
    return {
        "betas": betas, "temperatures": temperatures,
        "log_z": log_z_runs.mean(axis=0),
        "log_z_err": log_z_runs.std(axis=0, ddof=1) / np.sqrt(runs),
        "log_z_err_mbar": err_mbar,
        "log_z_runs": log_z_runs,
        "anchor": anchor, "anchor_overlap": anchor_overlap, "anchor_ti": anchor_ti,
        "neighbour_overlap": neighbour, "overlap_min": float(neighbour[used:].min()),
        "statistical_inefficiency": np.mean(g, axis=0),
        "n_samples": np.mean(counts, axis=0),
        "n_effective": np.mean([f["n_effective"] for f in fits], axis=0),
        "swap_acceptance": np.mean([r.swap_acceptance for r in results], axis=0),
        "length": len(types), "runs": runs, "sweeps": sweeps, "burn_in": sim.burn_in,
        "swap_every": sim.swap_every, "seed": seed,
        "sampling_s": sampled - start, "mbar_s": fitted - sampled, "anchor_ti_s": end - fitted,
        "wall_time_s": end - start,
    }
