"""The `spinscore` command line: parse arguments, load the config, call the library."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from spinscore import __version__
from spinscore.errors import SpinscoreError


class _Group(click.Group):
    """Report `SpinscoreError` (and unreadable inputs) as one line unless --debug is given."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except SpinscoreError as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)


_config_options = [
    click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False),
                 help="YAML configuration file (see configs/)."),
    click.option("--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE",
                 help="Override one configuration value (repeatable)."),
]


def config_options(f):
    for option in reversed(_config_options):
        f = option(f)
    return f


@click.group(cls=_Group)
@click.version_option(__version__, prog_name="spinscore")
@click.option("--debug", is_flag=True, help="Show full tracebacks.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """Score-based generative models that learn the Hamiltonian of spin chains."""
    ctx.obj = {"debug": debug}


@main.command()
@config_options
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Output .h5 file.")
@click.option("--threads", type=int, default=None, help="Worker threads (default: all cores).")
@click.option("--scheduler", default=None, help="Dask scheduler address to run chunks on.")
@click.option("--overwrite", is_flag=True, help="Replace an existing output file.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def simulate(config_path, overrides, out, threads, scheduler, overwrite, quiet):
    """Simulate equilibrium snapshots by replica-exchange Monte Carlo into an HDF5 data set."""
    from spinscore.config import load_config
    from spinscore.sampling.simulate import simulate_dataset

    config = load_config(config_path, overrides)
    if threads is not None and threads < 1:
        raise SpinscoreError(f"--threads: expected a positive number, got {threads}")
    path = simulate_dataset(config, out, threads=threads, scheduler=scheduler,
                            overwrite=overwrite, progress=not quiet)
    click.echo(f"wrote {path}")


@main.command()
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--plots", "plots_dir", type=click.Path(file_okay=False), default=None,
              help="Directory for the data-set figure (PNG) and summary (JSON).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def inspect(path, plots_dir, as_json):
    """Summarise a data set (sizes, couplings, T, swap rates, energy per spin)."""
    from spinscore.io import read_dataset
    from spinscore.sampling.diagnostics import dataset_summary, format_summary

    ds = read_dataset(path)
    summary = dataset_summary(ds)
    click.echo(json.dumps(summary, indent=2) if as_json else format_summary(summary))
    if plots_dir:
        out = Path(plots_dir)
        out.mkdir(parents=True, exist_ok=True)
        _dataset_plots(ds, out)
        (out / "dataset_summary.json").write_text(json.dumps(summary, indent=2))
        click.echo(f"wrote {out / 'dataset.png'} and {out / 'dataset_summary.json'}")


def _dataset_plots(ds, out: Path) -> None:
    import numpy as np

    from spinscore.report.figures import dataset_figure, save_figure
    from spinscore.sampling.diagnostics import bond_dots_by_class, tangent_force_magnitudes

    rng = np.random.default_rng(0)
    picks = rng.choice(ds.n_sequences, size=min(4, ds.n_sequences), replace=False)
    conformations = [ds.spins[i, 0, : ds.length[i]].astype(float) for i in picks]
    fig = dataset_figure(ds.length, bond_dots_by_class(ds), tangent_force_magnitudes(ds),
                         conformations, title=f"{ds.path.name}: T = {ds.config.system.temperature}")
    save_figure(fig, out / "dataset.png")


@main.command()
@click.option("--data", "data_path", required=True, type=click.Path(dir_okay=False),
              help="Training data set (.h5 from `spinscore simulate`).")
@config_options
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run directory.")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its checkpoint.")
@click.option("--overwrite", is_flag=True, help="Start again even if --out holds a run.")
@click.option("--device", default=None, help="torch device (default: cuda if present, else cpu).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def train(data_path, config_path, overrides, out, resume, overwrite, device, quiet):
    """Train the equivariant score model by denoising score matching on (S^2)^N.

    Several processes: torchrun --nproc_per_node=K -m spinscore.cli train ... (DDP)."""
    from spinscore.config import load_config
    from spinscore.training.loop import train as run_training

    config = load_config(config_path, overrides)
    path = run_training(config, data_path, out, resume=resume, overwrite=overwrite,
                        device=device, progress=not quiet)
    click.echo(f"wrote {path}")


@main.command()
@click.option("--data", "data_path", required=True, type=click.Path(dir_okay=False),
              help="Test data set (.h5).")
@click.option("--checkpoint", type=click.Path(dir_okay=False), default=None,
              help="Trained model (checkpoint.pt); needed for --method network.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output directory.")
@click.option("--method", type=click.Choice(["network", "oracle", "pseudolikelihood",
                                             "score-matching"]), default="network",
              show_default=True, help="Force oracle or classical estimator.")
@click.option("--t-eval", type=float, default=1e-4, show_default=True,
              help="Diffusion time at which the network is queried.")
@click.option("--bootstrap", type=int, default=200, show_default=True,
              help="Bootstrap resamples over sequences for the confidence intervals.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def extract(data_path, checkpoint, out, method, t_eval, bootstrap, quiet):
    """Recover the couplings from the network's force field (or a classical estimator)."""
    from spinscore.analysis.extract import ratio_table, run_extraction

    if t_eval <= 0:
        raise SpinscoreError(f"--t-eval: expected a positive time, got {t_eval}")
    result = run_extraction(data_path, out, method, checkpoint, t_eval, bootstrap,
                            progress=not quiet)
    click.echo(f"{method} extraction, {result['n_snapshots']} snapshots of "
               f"{result['n_sequences']} sequences")
    click.echo(ratio_table(result))
    click.echo(f"wrote {Path(out) / 'extraction.json'}")


if __name__ == "__main__":
    main()
