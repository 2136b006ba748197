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
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from spinscore import stages
from spinscore.config import RunConfig, load_config
from spinscore.errors import AnalysisError, SpinscoreError
from spinscore.io import atomic_write_bytes
from spinscore.model.published import is_published_system

PRESETS = {"quick": "quick.yaml", "paper": "paper.yaml"}
PUBLISHED = Path("tests") / "data" / "mini_af3_epoch_20.pt"  # the authors' checkpoint
PUBLISHED_T_EVAL = 1e-4  # where the paper reads its network


def _repo_file(relative: Path) -> Path | None:
    for root in (Path.cwd(), Path(__file__).resolve().parents[2]):
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
    if not path.exists():
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

    data = config.model_dump(mode="python")
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
    return {
        "train": config,
        "test": _with(config, simulation=test),
        "ood_longer_chains": _with(config, simulation={**ood, "seed": rc.test_seed + 1},
                                   system={"length": rc.ood_length}),
        "ood_higher_temperature": _with(config, simulation={**ood, "seed": rc.test_seed + 2},
                                        system={"temperature": rc.ood_temperature}),
        "ood_extra_range": _with(config, simulation={**ood, "seed": rc.test_seed + 3},
                                 system={"couplings": {**system.couplings, **extra}}),
    }


@dataclass
class Pipeline:
    """Runs stages in order, skipping those whose input hash matches their record."""

    run_dir: Path
    progress: bool = True
    records: dict[str, dict] = field(default_factory=dict)

    def stage(self, name: str, inputs: list[str], run: Callable[[Path], dict | None],
              bar: tqdm) -> dict:
        """Run (or skip) stage `name`: `inputs` are texts (config YAML, upstream hashes) that
        determine its result; `run(stage_dir)` returns a small JSON-able summary."""
        record_path = self.run_dir / "stages" / f"{name}.json"
        started = record_path.with_suffix(".started")  # the key of a run that has not finished
        key = hashlib.sha256("\0".join(inputs).encode()).hexdigest()
        stage_dir = self.run_dir / name
        if record_path.exists():
            record = json.loads(record_path.read_text())
            if record.get("key") == key:
                bar.set_postfix_str(f"{name}: cached")
                bar.update(1)
                self.records[name] = record
                return record
            shutil.rmtree(stage_dir, ignore_errors=True)  # inputs changed: start again
            record_path.unlink()
        elif started.exists() and started.read_text() != key:
            shutil.rmtree(stage_dir, ignore_errors=True)  # crashed with other inputs: start again
        bar.set_postfix_str(name)
        stage_dir.mkdir(parents=True, exist_ok=True)
        started.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(started, key.encode())
        start = time.perf_counter()
        summary = run(stage_dir) or {}
        record = {"stage": name, "key": key, "seconds": time.perf_counter() - start,
                  "finished": time.strftime("%Y-%m-%d %H:%M:%S"), "summary": summary}
        record_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = record_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=2))
        tmp.replace(record_path)
        started.unlink()
        bar.update(1)
        self.records[name] = record
        return record


def reproduce(preset: str, run_dir: str | Path, overrides: tuple[str, ...] = (),
              device: str | None = None, progress: bool = True) -> Path:
    """Run every stage for a preset (or config file) into `run_dir`; return report.html."""

    config = load_config(preset_path(preset), overrides)
    run_dir = Path(run_dir)
    claim_run_dir(run_dir, preset)
    atomic_write_bytes(run_dir / "config.yaml", config.to_yaml().encode())
    pipe = Pipeline(run_dir, progress)
    datasets = data_configs(config)
    paths = {name: run_dir / f"simulate_{name}" / "data.h5" for name in datasets}
    n_stages = len(datasets) + 9
    inner = progress  # the stages' own bars sit below the overall one

    def key(*names: str) -> list[str]:
        return [pipe.records[n]["key"] for n in names]

    with tqdm(total=n_stages, desc="reproduce", unit="stage", disable=not progress,
              position=0) as bar:
        for name, cfg in datasets.items():
            def simulate(_, cfg=cfg, name=name):
                path = paths[name]
                path.unlink(missing_ok=True)  # a finished file without a record: redo it
                stages.simulate(cfg, path, progress=inner)
                return {"path": str(path.relative_to(run_dir))}
            pipe.stage(f"simulate_{name}", [cfg.to_yaml(("system", "simulation"))],
                       simulate, bar)

        def inspect(stage_dir):
            from spinscore.io import read_dataset

            summary = stages.inspect_dataset(read_dataset(paths["train"]), stage_dir)
            return {"energy_per_spin": summary.get("energy_per_spin")}
        pipe.stage("inspect", key("simulate_train"), inspect, bar)

        def train_stage(stage_dir):
            resume = (stage_dir / "checkpoint.pt").exists()
            stages.train(config, paths["train"], stage_dir, resume=resume, device=device,
                         progress=inner)
            return json.loads((stage_dir / "train_summary.json").read_text())
        pipe.stage("train", key("simulate_train") + [
            config.to_yaml(("model", "diffusion", "train"))], train_stage, bar)
        checkpoint = run_dir / "train" / "checkpoint.pt"
        rc, ac = config.reproduce, config.analysis

        def extract(stage_dir):
            results = {}
            for method in ("network", "oracle", "pseudolikelihood", "score-matching"):
                out = stage_dir / method
                results[method] = stages.extract(
                    paths["test"], out, method, checkpoint if method == "network" else None,
                    ac.t_eval, ac.bootstrap, ac.batch_size, per_config=method == "network",
                    progress=inner, t_extrapolate=ac.t_extrapolate)
            summary = {m: {k: r[k] for k in ("cosine", "r2", "worst_ratio_error",
                                             "scale_over_beta")} for m, r in results.items()}
            ext = results["network"].get("extrapolated")
            if ext:
                summary["network_extrapolated"] = {k: ext[k] for k in summary["network"]}
            return summary
        pipe.stage("extract", key("train", "simulate_test") + [
            config.to_yaml(("analysis",))],
            extract, bar)

        published = published_checkpoint()
        if published is not None and is_published_system(config.system):
            def extract_published(stage_dir):
                r = stages.extract(paths["test"], stage_dir, "network", published,
                                   PUBLISHED_T_EVAL, ac.bootstrap, progress=inner)
                return {k: r[k] for k in ("cosine", "r2", "worst_ratio_error", "scale_over_beta")}
            pipe.stage("extract_published", key("simulate_test") + [
                f"{published.stat().st_size} bootstrap={ac.bootstrap}"], extract_published, bar)

        def mixing(stage_dir):
            from spinscore.io import read_dataset

            result = stages.mixing(read_dataset(paths["train"]), stage_dir, rc.mixing_sequences,
                                   os.cpu_count() or 1, progress=inner)
            return {"decorrelated": result["decorrelated"]}
        pipe.stage("mixing", key("simulate_train") + [f"n={rc.mixing_sequences}"], mixing, bar)

        def ood(stage_dir):
            sets = {name.removeprefix("ood_"): paths[name] for name in datasets
                    if name.startswith("ood_")}
            summary = stages.ood(checkpoint, paths["test"], sets, stage_dir, ac.t_eval,
                              progress=inner)
            return {name: s.get("auc") for name, s in summary["sets"].items()}
        pipe.stage("ood", key("train", "simulate_test", "simulate_ood_longer_chains",
                              "simulate_ood_higher_temperature", "simulate_ood_extra_range")
                   + [f"t_eval={ac.t_eval}"], ood, bar)

        def generate(stage_dir):
            return stages.generate_for_test_sequence(checkpoint, paths["test"],
                                                     rc.partition_sequence, rc.generate,
                                                     stage_dir, progress=inner)
        pipe.stage("generate", key("train", "simulate_test") + [
            f"n={rc.generate} seq={rc.partition_sequence}"], generate, bar)

        def partition(stage_dir):
            try:
                return stages.partition(checkpoint, paths["test"], rc.partition_sequence,
                                        stage_dir, ac.partition, progress=inner)
            except AnalysisError as exc:  # a finding about the model: reported, not fatal
                stages.write_json(stage_dir / "partition.json", {"error": str(exc)})
                return {"error": str(exc)}
        pipe.stage("partition", key("train", "simulate_test") + [
            f"seq={rc.partition_sequence}", config.to_yaml(("analysis",))], partition, bar)

        def report(_):
            stages.report(run_dir, pipe.records)
        pipe.stage("report", [json.dumps({k: v["key"] for k, v in pipe.records.items()}),
                              str(time.time())], report, bar)
    return run_dir / "report.html"
