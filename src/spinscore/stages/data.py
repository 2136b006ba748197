"""Data stages: simulate a data set, inspect it, audit its REMC mixing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from spinscore.io import Dataset, atomic_write_bytes
from spinscore.systems import system_from_config


def write_json(path: Path, data: dict) -> None:
    """`data` as indented JSON, written atomically."""
    atomic_write_bytes(path, json.dumps(data, indent=2).encode())


def simulate(config, out: str | Path, *, threads: int | None = None,
             scheduler: str | None = None, overwrite: bool = False, progress: bool = True
             ) -> Path:
    """`spinscore simulate`: the REMC data set of `config` in the HDF5 file `out`, chunked and
    resumable (`sampling.simulate.simulate_dataset`). Returns the path."""
    from spinscore.sampling.simulate import simulate_dataset

    return simulate_dataset(config, out, threads=threads, scheduler=scheduler,
                            overwrite=overwrite, progress=progress)


def inspect_dataset(ds: Dataset, out: Path) -> dict:
    """The data-set summary (dataset_summary.json) and its Fig. S1-style figure (dataset.png)
    in `out`; returns the summary."""
    from spinscore.report.figures import dataset_figure, save_figure
    from spinscore.sampling.diagnostics import (
        bond_dots_by_class,
        dataset_summary,
        tangent_force_magnitudes,
    )

    out.mkdir(parents=True, exist_ok=True)
    summary = dataset_summary(ds)
    rng = np.random.default_rng(0)
    picks = rng.choice(ds.n_sequences, size=min(4, ds.n_sequences), replace=False)
    geometry = ds.config.system.geometry
    conformations = [ds.spins[i, 0, : ds.length[i]].astype(float) for i in picks] \
        if geometry == "chain" else None  # a path only along a chain
    snapshot = None
    if geometry == "lattice":
        positions = system_from_config(ds.config.system).positions()
        layer = positions[:, 2] == positions[:, 2].min() if positions.shape[1] > 2 \
            else np.ones(len(positions), bool)  # a cubic lattice: its bottom layer
        i = picks[0]
        snapshot = (positions[layer, :2], ds.spins[i, 0, : ds.length[i]][layer].astype(float),
                    ds.types[i, : ds.length[i]][layer])
    fig = dataset_figure(ds.length, bond_dots_by_class(ds), tangent_force_magnitudes(ds),
                         conformations, title=f"{ds.path.name}: T = {ds.config.system.temperature}",
                         snapshot=snapshot, energy_per_spin=ds.energy / ds.length[:, None],
                         type_names=list(ds.config.system.types))
    save_figure(fig, out / "dataset.png")
    write_json(out / "dataset_summary.json", summary)
    return summary


def mixing(ds: Dataset, out: Path | None, max_sequences: int, threads: int,
           progress: bool = False) -> dict:
    """The REMC mixing audit of a data set; with `out`, mixing.json and mixing.png there."""
    from spinscore.analysis.mixing import mixing_audit
    from spinscore.report.figures import mixing_figure, save_figure

    result = mixing_audit(ds, max_sequences=max_sequences, threads=threads, progress=progress)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        save_figure(mixing_figure(result), out / "mixing.png")
        write_json(out / "mixing.json", {"file": str(ds.path), **result})
    return result
