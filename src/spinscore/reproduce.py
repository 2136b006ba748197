"""`spinscore reproduce`: the paper end to end in one run directory.

    simulate (train, test, OOD sets) -> train -> extract (network, classical estimators)
    -> OOD flag -> generated chains -> partition function -> report

Each stage writes into its own folder of RUN_DIR and, when it has finished, a record
`RUN_DIR/stages/<stage>.json` with the hash of its inputs (the config sections it reads and the
records of the stages it uses) and its wall time. A rerun skips every stage whose record
matches; a stage whose inputs changed starts again from scratch; a stage without a record (it
crashed) resumes where its own checkpoints allow (simulation chunks, training checkpoints), if
it crashed with the same inputs (`stages/<stage>.started` holds them), else starts again.
`RUN_DIR/run.json` names the preset the directory belongs to; another preset is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import yaml
from tqdm.auto import tqdm

from spinscore import __version__, stages
from spinscore.checkpoints import EARLY_CHECKPOINT
from spinscore.config import RunConfig, load_config
from spinscore.config.molecule import MoleculeRunConfig
from spinscore.errors import AnalysisError, SpinscoreError
from spinscore.io import atomic_write_bytes
from spinscore.model.published import is_published_system
from spinscore.pipeline import Pipeline
from spinscore.systems import shell_basis

PRESETS = {name: f"{name}.yaml" for name in ("quick", "paper", "square", "triangular",
                                             "alanine-vacuum", "alanine-implicit",
                                             "alanine-water")}
PUBLISHED = Path("tests") / "data" / "mini_af3_epoch_20.pt"  # the authors' checkpoint
PUBLISHED_T_EVAL = 1e-4  # where the paper reads its network


def _repo_file(relative: Path) -> Path | None:
    """`relative` in this checkout of spinscore, else in the working directory."""
    for root in (Path(__file__).resolve().parents[2], Path.cwd()):
        if (root / relative).exists():
            return root / relative
    return None


def published_checkpoint() -> Path | None:
    """The vendored published checkpoint, if this is a checkout that has it."""
    return _repo_file(PUBLISHED)


def preset_path(preset: str) -> Path:
    """The YAML file of a preset: configs/<preset>.yaml of the repository, or a path."""
    if preset in PRESETS:
        path = _repo_file(Path("configs") / PRESETS[preset])
        if path is None:
            raise SpinscoreError(f"--preset {preset}: configs/{PRESETS[preset]} not found")
        return path
    path = Path(preset)
    if not path.is_file():
        raise SpinscoreError(f"--preset: expected one of {sorted(PRESETS)} or a config file, "
                             f"got {preset!r}")
    return path


def preset_identity(preset: str) -> str:
    """What a run directory belongs to: a built-in preset's name (also when given as its
    file), else the config file's absolute path."""
    if preset in PRESETS:
        return preset
    path = preset_path(preset).resolve()
    for name, file in PRESETS.items():
        builtin = _repo_file(Path("configs") / file)
        if builtin is not None and builtin.resolve() == path:
            return name
    return str(path)


def claim_run_dir(run_dir: Path, preset: str) -> None:
    """Record the preset of `run_dir` in RUN_DIR/run.json at its first run; refuse a run of
    another preset there (its stages would replace this one's). `--set` overrides of the same
    preset are not another preset: they rerun the stages whose inputs they change. A directory
    from before run.json existed is claimed by the preset it is next run with."""
    identity, record = preset_identity(preset), run_dir / "run.json"
    if record.exists():
        try:
            owner = json.loads(record.read_text())["preset"]
        except (ValueError, KeyError, TypeError):
            raise SpinscoreError(f"{record}: not a run record of spinscore reproduce") from None
        if owner != identity:
            raise SpinscoreError(f"{record}: {run_dir} holds a run of preset {owner}, not "
                                 f"{identity}; give it another --out")
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    stages.write_json(record, {"preset": identity})


def _with(config: RunConfig, **changes: dict) -> RunConfig:
    """A copy of `config` with some fields of some sections replaced (re-validated)."""
    from spinscore.config import parse_config

    data = yaml.safe_load(config.to_yaml())  # the config as written (a chain has no lattice)
    for section, values in changes.items():
        data[section] = {**data[section], **values}
    return parse_config(data, "reproduce")


def data_configs(config: RunConfig) -> dict[str, RunConfig]:
    """The run's data sets: training, test and the three OOD sets (see ReproduceConfig)."""
    rc, system = config.reproduce, config.system
    test = {"sequences": rc.test_sequences, "snapshots": rc.test_snapshots, "seed": rc.test_seed}
    ood = {"sequences": rc.ood_sequences, "snapshots": rc.ood_snapshots}
    extra = {system.max_range + 1: {pair: rc.ood_extra_fraction * j
                                    for pair, j in system.couplings[1].items()}}
    sets = {"train": config, "test": _with(config, simulation=test)}
    larger = {**ood, "seed": rc.test_seed + 1}
    if system.lattice is not None:  # a lattice larger by half in every direction
        lattice = system.lattice.model_dump(mode="json")
        lattice["size"] = [n + (n + 1) // 2 for n in lattice["size"]]
        sets["ood_larger_lattice"] = _with(config, simulation=larger, system={"lattice": lattice})
    elif system.graph is None:  # a graph has no larger version
        sets["ood_longer_chains"] = _with(config, simulation=larger,
                                          system={"length": rc.ood_length})
    return {
        **sets,
        "ood_higher_temperature": _with(config, simulation={**ood, "seed": rc.test_seed + 2},
                                        system={"temperature": rc.ood_temperature}),
        "ood_extra_range": _with(config, simulation={**ood, "seed": rc.test_seed + 3},
                                 system={"couplings": {**system.couplings, **extra}}),
    }


SUMMARY_KEYS = ("cosine", "r2", "worst_ratio_error", "scale_over_beta")


@dataclass
class Run:
    """What every stage of one reproduce run reads: the config, where the data sets live, and
    how to run (device, inner progress bars)."""

    config: RunConfig
    run_dir: Path
    datasets: dict[str, RunConfig]
    device: str | None
    inner: bool

    def data(self, name: str) -> Path:
        return self.run_dir / f"simulate_{name}" / "data.h5"

    @property
    def checkpoint(self) -> Path:
        return self.run_dir / "train" / "checkpoint.pt"


def _simulate(run: Run, name: str, stage_dir: Path) -> dict:
    path = run.data(name)
    path.unlink(missing_ok=True)  # a finished file without a record: redo it
    stages.simulate(run.datasets[name], path, progress=run.inner)
    return {"path": str(path.relative_to(run.run_dir))}


def _inspect(run: Run, stage_dir: Path) -> dict:
    from spinscore.io import read_dataset

    summary = stages.inspect_dataset(read_dataset(run.data("train")), stage_dir)
    return {"energy_per_spin": summary.get("energy_per_spin")}


def _train(run: Run, stage_dir: Path) -> dict:
    resume = (stage_dir / "checkpoint.pt").exists()
    stages.train(run.config, run.data("train"), stage_dir, resume=resume, device=run.device,
                 progress=run.inner)
    return json.loads((stage_dir / "train_summary.json").read_text())


def readout_times(config: RunConfig) -> tuple[float, list[float]]:
    """The run's readout times, from its own config: `analysis.t_eval` and `t_extrapolate`,
    else the smallest training time and its doublings. Never those stored in the checkpoint,
    which a cached training stage may have written under other analysis settings."""
    from spinscore.analysis.extract import default_readout_times

    low = config.diffusion.trained_range[0]
    times = config.analysis.t_extrapolate
    return (config.analysis.eval_time([low]),
            list(times) if times is not None else default_readout_times(low))


def _extract(run: Run, stage_dir: Path) -> dict:
    ac, results = run.config.analysis, {}
    t_eval, t_extrapolate = readout_times(run.config)
    shells = _readout_shells(run.config.system, min(run.config.model.max_distance, 15))
    for method in ("network", "oracle", "pseudolikelihood", "score-matching"):
        results[method] = stages.extract(
            run.data("test"), stage_dir / method, method,
            run.checkpoint if method == "network" else None, t_eval, ac.bootstrap,
            ac.batch_size, per_config=method == "network", progress=run.inner,
            t_extrapolate=t_extrapolate, shells=shells if method == "network" else None)
    summary = {m: {k: r[k] for k in SUMMARY_KEYS} for m, r in results.items()}
    ext = results["network"].get("extrapolated")
    if ext:
        summary["network_extrapolated"] = {k: ext[k] for k in SUMMARY_KEYS}
    return summary


def _readout_shells(system, limit: int) -> int | None:
    """On a lattice, the widest basis of at most `limit` shells that it holds past the true
    range: the network's couplings by shell (`extract --shells`) are read on it. None on chains
    (their profile is the W one) and graphs (no shells past the file's)."""
    if system.lattice is None:
        return None
    for shells in range(limit, system.max_range, -1):
        try:
            shell_basis(system, shells)
            return shells
        except SpinscoreError:
            continue
    return None


def _extract_published(run: Run, stage_dir: Path) -> dict:
    r = stages.extract(run.data("test"), stage_dir, "network", published_checkpoint(),
                       PUBLISHED_T_EVAL, run.config.analysis.bootstrap, progress=run.inner)
    return {k: r[k] for k in SUMMARY_KEYS}


def _mixing(run: Run, stage_dir: Path) -> dict:
    from spinscore.io import read_dataset

    result = stages.mixing(read_dataset(run.data("train")), stage_dir,
                           run.config.reproduce.mixing_sequences, os.cpu_count() or 1,
                           progress=run.inner)
    return {"decorrelated": result["decorrelated"]}


def _ood(run: Run, stage_dir: Path) -> dict:
    sets = {name.removeprefix("ood_"): run.data(name) for name in run.datasets
            if name.startswith("ood_")}
    early = run.checkpoint.with_name(EARLY_CHECKPOINT)
    summary = stages.ood(run.checkpoint, run.data("test"), sets, stage_dir,
                         readout_times(run.config)[0], progress=run.inner,
                         trust=run.config.analysis.trust,
                         early_checkpoint=early if early.exists() else None)
    aucs = {name: s.get("auc") for name, s in summary["sets"].items()}
    if "trust" in summary:
        aucs.update(trust_auc=summary["trust"]["auc_unreliable"],
                    trust_best=summary["trust"]["best_flag"])
    return aucs


def _generate(run: Run, stage_dir: Path) -> dict:
    rc = run.config.reproduce
    return stages.generate_for_test_sequence(run.checkpoint, run.data("test"),
                                             rc.partition_sequence, rc.generate, stage_dir,
                                             settings=run.config.generation,
                                             progress=run.inner)


def _partition(run: Run, stage_dir: Path) -> dict:
    try:
        return stages.partition(run.checkpoint, run.data("test"),
                                run.config.reproduce.partition_sequence, stage_dir,
                                run.config.analysis.partition, progress=run.inner)
    except AnalysisError as exc:  # a finding about the model: reported, not fatal
        stages.write_json(stage_dir / "partition.json", {"error": str(exc)})
        return {"error": str(exc)}


def _thermo(run: Run, stage_dir: Path) -> dict:
    from spinscore.io import read_dataset

    rc, sim = run.config.reproduce, run.config.simulation
    ds = read_dataset(run.data("test"))
    i = rc.partition_sequence
    if i >= ds.n_sequences:
        raise SpinscoreError(f"reproduce.partition_sequence: {i} is beyond the test set's "
                             f"{ds.n_sequences} sequences")
    record = stages.thermo(run.config, ds.types[i, : ds.length[i]], stage_dir,
                           beta0=run.config.system.beta, points=rc.thermo_points,
                           runs=rc.thermo_runs, sweeps=rc.thermo_sweeps, seed=sim.seed,
                           threads=os.cpu_count() or 1, progress=run.inner,
                           methods=("ti", "mbar", "is") if rc.thermo_samples else ("ti", "mbar"),
                           checkpoint=run.checkpoint, samples=max(rc.thermo_samples, 2))
    keys = ("log_z", "log_z_err", "mbar_minus_ti", "importance_minus_ti", "exact")
    return {k: record.get(k) for k in keys}


def plan(run: Run) -> list[tuple[str, list[str], list[str], Callable[[Path], dict | None]]]:
    """The stages in order: (name, upstream stages, other input texts, run(stage_dir)).

    A stage's cache key hashes the upstream records' keys followed by the input texts."""
    config, rc, ac = run.config, run.config.reproduce, run.config.analysis
    # chunk_size only cuts the work into pieces: the file is the same (tests/test_simulate.py)
    steps = [(f"simulate_{name}", [], [cfg.model_dump_json(
        include={"system", "simulation"}, exclude={"simulation": {"chunk_size"}})],
        partial(_simulate, run, name)) for name, cfg in run.datasets.items()]
    steps += [
        ("inspect", ["simulate_train"], [], partial(_inspect, run)),
        ("train", ["simulate_train"], [config.to_yaml(("model", "diffusion", "train"))],
         partial(_train, run)),
        ("extract", ["train", "simulate_test"],
         [ac.model_dump_json(exclude={"partition", "trust"})], partial(_extract, run)),
    ]
    published = published_checkpoint()
    if published is not None and is_published_system(config.system):
        digest = hashlib.sha256(published.read_bytes()).hexdigest()
        steps.append(("extract_published", ["simulate_test"],
                      [f"{digest} bootstrap={ac.bootstrap}"], partial(_extract_published, run)))
    ood_sets = [f"simulate_{name}" for name in run.datasets if name.startswith("ood_")]
    steps += [
        ("mixing", ["simulate_train"], [f"n={rc.mixing_sequences}"], partial(_mixing, run)),
        ("ood", ["train", "simulate_test", *ood_sets],
         [f"t_eval={ac.t_eval}", ac.trust.model_dump_json() if ac.trust else "no trust pool"],
         partial(_ood, run)),
        ("generate", ["train", "simulate_test"],
         [f"n={rc.generate} seq={rc.partition_sequence}", config.to_yaml(("generation",))],
         partial(_generate, run)),
        ("partition", ["train", "simulate_test"],
         [f"seq={rc.partition_sequence}", ac.partition.model_dump_json()],
         partial(_partition, run)),
    ]
    if rc.thermo:
        steps.append(("thermo", ["train", "simulate_test"],
                      [f"seq={rc.partition_sequence} points={rc.thermo_points} "
                       f"runs={rc.thermo_runs} sweeps={rc.thermo_sweeps} "
                       f"samples={rc.thermo_samples}"], partial(_thermo, run)))
    return steps


def reproduce(preset: str, run_dir: str | Path, overrides: tuple[str, ...] = (),
              device: str | None = None, progress: bool = True) -> Path:
    """Run every stage for a preset (or config file) into `run_dir`; return report.html."""
    config = load_config(preset_path(preset), overrides)
    run_dir = Path(run_dir)
    if isinstance(config, MoleculeRunConfig):
        from spinscore.molecule_reproduce import reproduce_molecule

        claim_run_dir(run_dir, preset)
        return reproduce_molecule(config, run_dir, progress)
    claim_run_dir(run_dir, preset)
    atomic_write_bytes(run_dir / "config.yaml", config.to_yaml().encode())
    pipe = Pipeline(run_dir, progress)
    # the stages' own bars sit below the overall one
    run = Run(config, run_dir, data_configs(config), device, inner=progress)
    steps = plan(run)
    pipe.prune({name for name, *_ in steps} | {"report"})  # e.g. thermo after thermo: false
    with tqdm(total=len(steps) + 1, desc="reproduce", unit="stage", disable=not progress,
              position=0) as bar:
        for name, upstream, texts, step in steps:
            # a new release of the code redoes every stage; commits between releases do not
            inputs = [pipe.records[n]["key"] for n in upstream] + texts + [__version__]
            pipe.stage(name, inputs, step, bar)
        keys = json.dumps({k: v["key"] for k, v in pipe.records.items()})
        pipe.stage("report", [keys, str(time.time())],
                   lambda _: {"path": str(stages.report(run_dir, pipe.records))}, bar)
    return run_dir / "report.html"
