"""The thermodynamic-integration stage: ln Z of one sequence, its figure and record."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from spinscore import __version__, io
from spinscore.config import RunConfig
from spinscore.stages.data import write_json


def thermo(config: RunConfig, types: np.ndarray, out: str | Path, *, beta0: float, points: int,
           runs: int, sweeps: int, seed: int, threads: int, progress: bool = True) -> dict:
    """`spinscore thermo`: ln Z(beta0) of the sequence `types` (L,) by thermodynamic
    integration (`analysis.thermo`), with the exact value where one exists; thermo.json and
    thermo.png in `out`. Returns the record."""
    from spinscore.analysis.thermo import exact_single_range, thermodynamic_integration
    from spinscore.report.figures import save_figure, thermo_figure

    start = time.perf_counter()
    system = config.system
    result = thermodynamic_integration(system, types, beta0, points, config.simulation, seed,
                                       progress=progress, runs=runs, sweeps=sweeps,
                                       threads=threads)
    exact = exact_single_range(system, types, result["betas"])
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_figure(thermo_figure(result, exact), out / "thermo.png")
    record = {
        "sequence": system.sequence_text(types),
        **{k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in result.items()},
        "exact": None if exact is None else {"log_z": exact["log_z"],
                                             "mean_energy": exact["mean_energy"].tolist()},
        "timings": {"sampling_s": result["wall_time_s"], "total_s": time.perf_counter() - start,
                    "threads": threads},
        "system": config.model_dump(mode="json")["system"],
        "code_version": {"spinscore": __version__, "git_commit": io.git_commit()},
    }
    write_json(out / "thermo.json", record)
    return record
