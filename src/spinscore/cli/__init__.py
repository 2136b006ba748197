"""The `spinscore` command line: parse arguments, load the config, call the library.

One module per family of commands (data, analysis, density); each registers its commands on
`main` (`cli.base`) when imported."""

from __future__ import annotations

from pathlib import Path

import click

from spinscore.cli import analysis, data, density  # noqa: F401  (register the commands)
from spinscore.cli.base import check_device, main, set_option

__all__ = ["main"]


@main.command()
@click.option("--preset", default="quick", show_default=True,
              help="quick (CPU, minutes), paper (the paper's sizes), square, triangular, "
                   "alanine-vacuum, alanine-implicit (molecules), or a config file.")
@set_option
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run directory.")
@click.option("--device", default=None, help="torch device (default: cuda if present, else cpu).")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def reproduce(preset, overrides, out, device, quiet):
    """The whole paper: simulate, train, extract, OOD, generate, partition function, report.

    Stages already done with the same inputs are skipped, so a rerun continues after a crash."""
    from spinscore.reproduce import reproduce as run_reproduce

    check_device(device)
    report = run_reproduce(preset, out, overrides, device=device, progress=not quiet)
    click.echo(f"wrote {report} and {Path(out) / 'metrics.json'}")
