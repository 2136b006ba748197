"""The thermodynamic-integration stage: ln Z of one sequence, its figure and record."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from spinscore import __version__, io
from spinscore.config import RunConfig
from spinscore.stages.data import write_json


def thermo(config: RunConfig, types: np.ndarray, out: str | Path, *, beta0: float, points: int,
           runs: int, sweeps: int, seed: int, threads: int, progress: bool = True,
           methods: tuple[str, ...] = ("ti", "mbar"), checkpoint: str | Path | None = None,
           samples: int = 200) -> dict:
    """`spinscore thermo`: ln Z(beta0) of the sequence `types` (L,) by thermodynamic
    integration (`analysis.thermo`, "ti") and by MBAR over a REMC ladder from
    simulation.t_max down to 1/beta0 in simulation.replicas steps (`analysis.mbar`, "mbar"),
    with the exact value where one exists; thermo.json and thermo.png in `out`. The record's
    log_z is the TI's where it ran, else MBAR's; `mbar` holds MBAR's ln Z at every ladder
    temperature. "is": importance sampling from the model of `checkpoint` (`samples`
    probability-flow chains with their exact log q, `analysis.importance`), in `importance`.
    Returns the record."""
    from spinscore.analysis.mbar import mbar_log_z
    from spinscore.analysis.thermo import exact_single_range, thermodynamic_integration
    from spinscore.report.figures import save_figure, thermo_figure
    from spinscore.sampling.remc import temperature_ladder

    start = time.perf_counter()
    system, sim = config.system, config.simulation
    result, mbar = None, None
    if "ti" in methods:
        result = thermodynamic_integration(system, types, beta0, points, sim, seed,
                                           progress=progress, runs=runs, sweeps=sweeps,
                                           threads=threads)
    if "mbar" in methods:
        t0 = 1.0 / beta0  # the data sets' ladder, or one twice as hot where beta0 is hotter
        ladder = temperature_ladder(t0, sim.t_max if sim.t_max > t0 else 2 * t0,
                                    max(sim.replicas, 2))
        mbar = _listed(mbar_log_z(system, types, ladder, sim, seed, progress, runs, sweeps,
                                  threads))
        mbar["exact_log_z"] = _exact_along(system, types, mbar["betas"])
    importance = _importance(config, types, beta0, checkpoint, samples, seed, progress) \
        if "is" in methods else None
    exact = exact_single_range(system, types, result["betas"] if result else [0.0, beta0])
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_figure(thermo_figure(result, exact, mbar, importance), out / "thermo.png")
    estimates = {}  # route -> (ln Z(beta0), its error); the first is the record's log_z
    if result:
        estimates["ti"] = (result["log_z"], result["log_z_err"])
    if mbar:
        estimates["mbar"] = (mbar["log_z"][-1], mbar["log_z_err"][-1])
    if importance:
        estimates["is"] = (importance["log_z"], importance["log_z_err"])
    log_z, log_z_err = next(iter(estimates.values()))
    main = _listed(result) if result else {
        "log_z": log_z, "log_z_err": log_z_err, "beta0": beta0, "length": len(types),
        "runs": runs, "sweeps": sweeps, "seed": seed}
    record = {
        "sequence": system.sequence_text(types),
        "methods": list(methods),
        **main,
        "mbar": mbar,
        "importance": importance,
        "exact": None if exact is None else {
            "log_z": exact["log_z"],
            "mean_energy": exact["mean_energy"].tolist() if result else None},
        "timings": {"sampling_s": (result["wall_time_s"] if result else 0.0)
                    + (mbar["wall_time_s"] if mbar else 0.0),
                    "ti_s": result["wall_time_s"] if result else None,
                    "mbar_s": mbar["wall_time_s"] if mbar else None,
                    "importance_s": importance["wall_time_s"] if importance else None,
                    "total_s": time.perf_counter() - start, "threads": threads},
        "system": config.model_dump(mode="json")["system"],
        "code_version": {"spinscore": __version__, "git_commit": io.git_commit()},
    }
    reference = next((route for route in ("ti", "mbar") if route in estimates), None)
    if "is" in estimates and reference:
        record[f"importance_minus_{reference}"] = _difference(estimates["is"],
                                                             estimates[reference])
    if "ti" in estimates and "mbar" in estimates:
        record["mbar_minus_ti"] = _difference(estimates["mbar"], estimates["ti"])
    write_json(out / "thermo.json", record)
    return record


def _importance(config: RunConfig, types: np.ndarray, beta0: float, checkpoint, samples: int,
                seed: int, progress: bool) -> dict:
    """ln Z(beta0) by importance sampling from the model of `checkpoint` (module
    `analysis.importance`): ln Z, its error bars, the ESS, and <E> reweighted."""
    import torch

    from spinscore.analysis.importance import importance_estimate, model_samples_with_log_q
    from spinscore.checkpoints import check_sites, load_model
    from spinscore.errors import SpinscoreError
    from spinscore.physics.hamiltonian import system_couplings, system_energy
    from spinscore.systems import system_from_config

    if checkpoint is None:
        raise SpinscoreError("--method is: needs --checkpoint (the model to sample)")
    start = time.perf_counter()
    model, model_config, _ = load_model(checkpoint)
    check_sites(model, len(types), "sequence")
    d = model_config.diffusion
    spins, log_q, timings = model_samples_with_log_q(
        model, torch.as_tensor(types, dtype=torch.long), samples, t_min=d.t_min, t_max=d.t_max,
        seed=seed, progress=progress)
    sites = system_from_config(config.system)
    energy = system_energy(sites, spins,
                           system_couplings(sites, types, config.system.coupling_table()))
    result = importance_estimate(-beta0 * energy - log_q, {"energy": energy}, seed=seed)
    return {**result, "beta0": beta0, "mean_energy_generated": float(energy.mean()),
            "checkpoint": str(checkpoint), "model_t_min": d.t_min, **timings,
            "wall_time_s": time.perf_counter() - start}


def _difference(a: tuple[float, float], b: tuple[float, float]) -> dict:
    """a − b of two (value, standard error) estimates, in combined standard errors."""
    diff, sigma = a[0] - b[0], float(np.hypot(a[1], b[1]))
    return {"difference": diff, "sigma": sigma, "in_sigma": abs(diff) / sigma if sigma > 0 else None}


def _listed(d: dict) -> dict:
    """A result dict with its arrays as lists (JSON-ready)."""
    return {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in d.items()}


def _exact_along(system, types: np.ndarray, betas: list[float]) -> list[float] | None:
    """The exact ln Z at each beta (a chain with one interaction range), else None."""
    from spinscore.analysis.thermo import exact_single_range

    values = [exact_single_range(system, types, np.array([0.0, b])) for b in betas]
    return None if values[0] is None else [v["log_z"] for v in values]
