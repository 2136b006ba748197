"""The report stage."""

from __future__ import annotations

from pathlib import Path


def report(run_dir: str | Path, records: dict[str, dict]) -> Path:
    """RUN_DIR/report.html and RUN_DIR/metrics.json from the outputs of the other stages
    (`report.build.build_report`); `records` are the stage records of `reproduce`."""
    from spinscore.report.build import build_report

    return build_report(run_dir, records)


def molecule_report(run_dir: str | Path, records: dict[str, dict]) -> Path:
    """RUN_DIR/report.html and RUN_DIR/metrics.json of a molecular run
    (`report.molecule_report.build_molecule_report`)."""
    from spinscore.report.molecule_report import build_molecule_report

    return build_molecule_report(run_dir, records)
