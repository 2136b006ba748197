"""The stage runner of `spinscore reproduce`: each stage runs once per set of inputs.

A stage writes into its own folder of RUN_DIR and, when it has finished, a record
`RUN_DIR/stages/<stage>.json` with the hash of its inputs and its wall time. A rerun skips every
stage whose record matches; a stage whose inputs changed starts again from scratch; a stage
without a record (it crashed) resumes where its own checkpoints allow, if it crashed with the
same inputs (`stages/<stage>.started` holds them), else starts again.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from spinscore import stages
from spinscore.io import atomic_write_bytes, git_commit


@dataclass
class Pipeline:
    """Runs stages in order, skipping those whose input hash matches their record."""

    run_dir: Path
    progress: bool = True
    records: dict[str, dict] = field(default_factory=dict)

    def prune(self, planned: set[str]) -> None:
        """Delete the folder and record of every finished or started stage not in `planned`
        (a stage the config no longer asks for), so no report reads its old results."""
        records = self.run_dir / "stages"
        for path in [*records.glob("*.json"), *records.glob("*.started")]:
            if path.stem not in planned:
                shutil.rmtree(self.run_dir / path.stem, ignore_errors=True)
                path.unlink(missing_ok=True)

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
                  "finished": time.strftime("%Y-%m-%d %H:%M:%S"), "git_commit": git_commit(),
                  "summary": summary}
        stages.write_json(record_path, record)
        started.unlink()
        bar.update(1)
        self.records[name] = record
        return record
