"""`spinscore reproduce --preset alanine-vacuum|alanine-implicit`: a molecule end to end.

    simulate (OpenMM trajectories) -> inspect (MD validation) -> train (atom score model)
    -> readout (sector forces, force-field parameters, score matching, oracle)
    -> generate (Langevin dynamics with the learned force against MD) -> report

Stages are cached and resumable as in the spin pipeline (`pipeline.Pipeline`).
"""

from __future__ import annotations

import time
from pathlib import Path

from tqdm.auto import tqdm

from spinscore import stages
from spinscore.config.molecule import MOLECULE_DATA_SECTIONS, MoleculeRunConfig
from spinscore.io import atomic_write_bytes
from spinscore.pipeline import Pipeline


def reproduce_molecule(config: MoleculeRunConfig, run_dir: Path, progress: bool = True,
                       threads: int = 2) -> Path:
    """Run every stage of a molecular preset into `run_dir` (already claimed); return
    report.html."""
    atomic_write_bytes(run_dir / "config.yaml", config.to_yaml().encode())
    pipe = Pipeline(run_dir, progress)
    data = run_dir / "simulate" / "data.h5"
    checkpoint = run_dir / "train" / "checkpoint.pt"

    def simulate(stage_dir: Path) -> dict:
        data.unlink(missing_ok=True)  # a finished file without a record: redo it
        stages.simulate_molecule(config, data, threads=threads, progress=progress)
        return {"path": str(data.relative_to(run_dir))}

    def inspect(stage_dir: Path) -> dict:
        result = stages.md_check(data, stage_dir)
        return {"kinetic_temperature": result["kinetic_temperature"]["mean"],
                "nve_ratio": result.get("energy_conservation", {}).get("ratio")}

    def train(stage_dir: Path) -> dict:
        stages.train_molecule(config, data, stage_dir, resume=True, progress=progress)
        return {"checkpoint": str(checkpoint.relative_to(run_dir))}

    def readout(stage_dir: Path) -> dict:
        result = stages.readout_molecule(checkpoint, data, stage_dir)
        return {"total_cosine": result["network_total"]["cosine"], "met": result["met"]}

    def generate(stage_dir: Path) -> dict:
        g = config.generate
        result = stages.generate_molecule(checkpoint, data, stage_dir, chains=g.chains,
                                          picoseconds=g.picoseconds, seed=g.seed,
                                          friction_per_ps=g.friction_per_ps)
        return {"js_divergence": result["js_divergence"]}

    steps = [("simulate", [], [config.to_yaml(MOLECULE_DATA_SECTIONS)], simulate),
             ("inspect", ["simulate"], [], inspect),
             ("train", ["simulate"], [config.to_yaml(("model", "train"))], train),
             ("readout", ["train", "simulate"], [], readout),
             ("generate", ["train", "simulate"], [config.to_yaml(("generate",))], generate)]
    with tqdm(total=len(steps) + 1, desc="reproduce", unit="stage", disable=not progress,
              position=0) as bar:
        for name, upstream, texts, step in steps:
            pipe.stage(name, [pipe.records[n]["key"] for n in upstream] + texts, step, bar)
        pipe.stage("report", [str(time.time())],  # always rewritten
                   lambda _: {"path": str(stages.molecule_report(run_dir, pipe.records))}, bar)
    return run_dir / "report.html"
