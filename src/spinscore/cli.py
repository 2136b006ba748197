"""The `spinscore` command line: parse arguments, load the config, call the library."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from spinscore import __version__, stages
from spinscore.config.analysis import AnalysisConfig, PartitionSettings
from spinscore.errors import SpinscoreError

_PARTITION = PartitionSettings()  # the defaults of the partition options


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


set_option = click.option("--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE",
                          help="Override one configuration value (repeatable).")
checkpoint_option = click.option("--checkpoint", required=True, type=click.Path(dir_okay=False),
                                 help="Trained model (checkpoint.pt).")
_config_options = [
    click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False),
                 help="YAML configuration file (see configs/)."),
    set_option,
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

    config = load_config(config_path, overrides)
    if threads is not None and threads < 1:
        raise SpinscoreError(f"--threads: expected a positive number, got {threads}")
    path = stages.simulate(config, out, threads=threads, scheduler=scheduler,
                           overwrite=overwrite, progress=not quiet)
    click.echo(f"wrote {path}")


@main.command()
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--plots", "plots_dir", type=click.Path(file_okay=False), default=None,
              help="Directory for the data-set figure (PNG) and summary (JSON).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--mixing", is_flag=True,
              help="Also audit REMC mixing: aligned overlap q of snapshots k thinning intervals "
                   "apart against independent re-runs of the same sequences. Printed; with "
                   "--plots also written as mixing.png and mixing.json.")
@click.option("--mixing-sequences", type=int, default=200, show_default=True,
              help="Sequences re-simulated for the --mixing baseline (REMC cost).")
@click.option("--threads", type=int, default=None,
              help="Threads for the --mixing re-simulation (default: all cores).")
def inspect(path, plots_dir, as_json, mixing, mixing_sequences, threads):
    """Summarise a data set (sizes, couplings, T, swap rates, energy per spin); with --mixing,
    audit how well its REMC snapshots are decorrelated (SPEC §8b)."""
    import os

    from spinscore.io import read_dataset
    from spinscore.sampling.diagnostics import dataset_summary, format_summary

    if mixing_sequences < 1:
        raise SpinscoreError(f"--mixing-sequences: expected a positive integer, got "
                             f"{mixing_sequences}")
    if threads is not None and threads < 1:
        raise SpinscoreError(f"--threads: expected a positive number, got {threads}")
    ds = read_dataset(path)
    summary = dataset_summary(ds)
    mix = None
    if mixing:
        mix = stages.mixing(ds, Path(plots_dir) if plots_dir else None, mixing_sequences,
                            threads or os.cpu_count() or 1, progress=sys.stderr.isatty())
    if as_json:
        click.echo(json.dumps(summary if mix is None else {**summary, "mixing": mix}, indent=2))
    else:
        click.echo(format_summary(summary))
        if mix is not None:
            from spinscore.analysis.mixing import format_mixing

            click.echo(format_mixing(mix))
    if plots_dir:
        out = Path(plots_dir)
        stages.inspect_dataset(ds, out)
        click.echo(f"wrote {out / 'dataset.png'} and {out / 'dataset_summary.json'}")
        if mix is not None:
            click.echo(f"wrote {out / 'mixing.png'} and {out / 'mixing.json'}")


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

    config = load_config(config_path, overrides)
    path = stages.train(config, data_path, out, resume=resume, overwrite=overwrite,
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
@click.option("--t-eval", type=float, default=None,
              help="Diffusion time at which the network is queried (default: the model's "
                   "smallest training time: 1e-3 for the presets, 1e-4 for the published "
                   "checkpoints).")
@click.option("--bootstrap", type=int, default=AnalysisConfig().bootstrap, show_default=True,
              help="Bootstrap resamples over sequences for the confidence intervals.")
@click.option("--per-config", is_flag=True,
              help="Also write the OOD flag of every snapshot (network only): per_config.json.")
@click.option("--t-extrapolate", default="auto", show_default=True, metavar="T1,T2,...|auto|none",
              help="Readout times extrapolated to t = 0 (network only); auto: the model's "
                   "smallest training time and three doublings.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def extract(data_path, checkpoint, out, method, t_eval, bootstrap, per_config, t_extrapolate,
            quiet):
    """Recover the couplings from the network's force field (or a classical estimator)."""
    from spinscore.analysis.extract import ratio_table
    from spinscore.report.tables import readout_summary

    if t_eval is not None and t_eval <= 0:
        raise SpinscoreError(f"--t-eval: expected a positive time, got {t_eval}")
    if per_config and method != "network":
        raise SpinscoreError("--per-config needs --method network")
    result = stages.extract(data_path, out, method, checkpoint, t_eval, bootstrap,
                            per_config=per_config, progress=not quiet,
                            t_extrapolate=_times(t_extrapolate, "--t-extrapolate"))
    for warning in result.get("warnings", []):
        click.echo(warning, err=True)
    click.echo(f"{method} extraction, {result['n_snapshots']} snapshots of "
               f"{result['n_sequences']} sequences")
    click.echo(ratio_table(result))
    if method == "network":
        click.echo(readout_summary(result))
    click.echo(f"wrote {Path(out) / 'extraction.json'}")


def _validated(cls, values: dict):
    """`cls(**values)` with a validation error as one line naming the option (--per-temperature
    for per_temperature)."""
    from pydantic import ValidationError

    try:
        return cls(**values)
    except ValidationError as exc:
        err = exc.errors()[0]
        option = "--" + str(err["loc"][0]).replace("_", "-")
        raise SpinscoreError(f"{option}: {err['msg']} (got {err.get('input')!r})") from None


def _times(text: str, option: str) -> list[float] | None:
    """`auto` -> None, `none` -> [], else comma-separated positive times."""
    if text == "auto":
        return None
    if text == "none":
        return []
    try:
        times = [float(x) for x in text.split(",")]
    except ValueError:
        raise SpinscoreError(f"{option}: expected comma-separated times, auto or none, "
                             f"got {text!r}") from None
    if len(times) < 2 or min(times) <= 0:
        raise SpinscoreError(f"{option}: expected at least two positive times, got {text!r}")
    return times


@main.command()
@checkpoint_option
@click.option("--data", "data_path", required=True, type=click.Path(dir_okay=False),
              help="In-distribution test set (.h5).")
@click.option("--ood", "ood_sets", multiple=True, required=True, metavar="NAME=PATH.h5",
              help="An out-of-distribution set (repeatable).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output directory.")
@click.option("--t-eval", type=float, default=None,
              help="Diffusion time at which the network is queried (default: the model's "
                   "smallest training time: 1e-3 for the presets, 1e-4 for the published "
                   "checkpoints).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def ood(checkpoint, data_path, ood_sets, out, t_eval, quiet):
    """ROC AUCs of the OOD flags (explained variance on the local basis, configurational
    temperature, and the two combined) for each OOD set."""
    sets = {}
    for item in ood_sets:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise SpinscoreError(f"--ood: expected NAME=PATH.h5, got {item!r}")
        sets[name] = path
    summary = stages.ood(checkpoint, data_path, sets, out, t_eval, progress=not quiet)
    for name, entry in summary["sets"].items():
        auc = f"   AUC {entry['auc']:.4f}" if "auc" in entry else ""
        click.echo(f"{name:<20} EV median {entry['ev_median']:.5f}  5% {entry['ev_q05']:.5f}{auc}")
    click.echo(f"wrote {Path(out) / 'ood.json'} and {Path(out) / 'ood.png'}")


@main.command()
@config_options
@click.option("--sequence", required=True,
              help="Site types, one letter per site (e.g. ABBA); comma-separated for longer names.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output directory.")
@click.option("--points", type=int, default=100, show_default=True,
              help="Grid points on [0, beta0] (Simpson's rule).")
@click.option("--beta", "beta0", type=float, default=None,
              help="Target inverse temperature (default: 1 / system.temperature).")
@click.option("--runs", type=int, default=8, show_default=True,
              help="Independent REMC runs; the error bar is their standard error.")
@click.option("--sweeps", type=int, default=4000, show_default=True,
              help="Measurement sweeps per run after simulation.burn_in.")
@click.option("--seed", type=int, default=None, help="Master seed (default: simulation.seed).")
@click.option("--threads", type=int, default=None, help="Concurrent runs (default: all cores).")
@click.option("--method", type=click.Choice(["ti", "mbar", "both"]), default="both",
              show_default=True, help="Thermodynamic integration (Simpson, --points), MBAR over "
              "the simulation ladder down to 1/beta (pymbar), or both.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def thermo(config_path, overrides, sequence, out, points, beta0, runs, sweeps, seed, threads,
           method, quiet):
    """ln Z of one sequence by thermodynamic integration of <E> over beta (SPEC §7) and by
    MBAR over a replica-exchange ladder."""
    import math
    import os

    from spinscore.config import load_config

    config = load_config(config_path, overrides)
    system, sim = config.system, config.simulation
    types = system.sequence_from_text(sequence)
    beta0 = system.beta if beta0 is None else beta0
    seed = sim.seed if seed is None else seed
    threads = threads if threads is not None else (os.cpu_count() or 1)
    checks = [(points >= 3, "--points", "an integer >= 3", points),
              (math.isfinite(beta0) and beta0 > 0, "--beta", "a positive number", beta0),
              (runs >= 2, "--runs", "an integer >= 2", runs),
              (sweeps >= sim.swap_every, "--sweeps", f">= simulation.swap_every ({sim.swap_every})",
               sweeps),
              (seed >= 0, "--seed", "a non-negative integer", seed),
              (threads >= 1, "--threads", "a positive number", threads)]
    for ok, name, expected, got in checks:
        if not ok:
            raise SpinscoreError(f"{name}: expected {expected}, got {got}")

    methods = ("ti", "mbar") if method == "both" else (method,)
    result = stages.thermo(config, types, out, beta0=beta0, points=points, runs=runs,
                           sweeps=sweeps, seed=seed, threads=threads, progress=not quiet,
                           methods=methods)
    exact, out, timings = result["exact"], Path(out), result["timings"]
    tail = "" if exact is None else f" (exact {exact['log_z']:.4f})"
    if "ti" in methods:
        click.echo(f"TI    ln Z(beta={beta0:g}) = {result['log_z']:.4f} +- "
                   f"{result['log_z_err']:.4f}{tail}; {timings['ti_s']:.1f} s")
    if "mbar" in methods:
        m = result["mbar"]
        click.echo(f"MBAR  ln Z(beta={beta0:g}) = {m['log_z'][-1]:.4f} +- {m['log_z_err'][-1]:.4f}"
                   f"{tail}; {timings['mbar_s']:.1f} s ({m['anchor']} anchor, min. neighbour "
                   f"overlap {m['overlap_min']:.3f})")
    if "mbar_minus_ti" in result:
        d = result["mbar_minus_ti"]
        click.echo(f"MBAR - TI = {d['difference']:+.4f} ({d['in_sigma']:.1f} combined sigma)")
    click.echo(f"wrote {out / 'thermo.json'} and {out / 'thermo.png'}")


@main.command()
@checkpoint_option
@click.option("--sequence", required=True,
              help="Site types, one letter per site (e.g. ABBA); comma-separated for longer names.")
@click.option("--n", "n_chains", type=int, default=1000, show_default=True,
              help="Number of chains to generate.")
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="Output .h5 file; OUT.png and OUT.json (energies against REMC) go next to it.")
@click.option("--method", type=click.Choice(["ode", "sde"]), default="ode", show_default=True,
              help="Probability-flow ODE or reverse SDE.")
@click.option("--steps", type=int, default=None,
              help="Fixed steps (ODE: geodesic Heun; SDE: Euler-Maruyama, default 500); "
                   "the ODE is adaptive without it.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of noise and REMC.")
@click.option("--reference-snapshots", type=int, default=200, show_default=True,
              help="REMC snapshots of the same sequence to compare with.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def sample(checkpoint, sequence, n_chains, out, method, steps, seed, reference_snapshots, quiet):
    """Generate chains of one sequence from a trained model; compare their energies with REMC."""
    from spinscore.checkpoints import load_model

    checks = [(n_chains >= 1, "--n", n_chains), (steps is None or steps >= 1, "--steps", steps),
              (seed >= 0, "--seed", seed),
              (reference_snapshots >= 2, "--reference-snapshots", reference_snapshots)]
    for ok, name, got in checks:
        if not ok:
            raise SpinscoreError(f"{name}: expected a positive integer (>= 2 for "
                                 f"--reference-snapshots, >= 0 for --seed), got {got}")
    model, config, _ = load_model(checkpoint)
    types = config.system.sequence_from_text(sequence)
    result = stages.generate(model, config, types, n_chains, out, method=method,
                             steps=steps, seed=seed, reference_snapshots=reference_snapshots,
                             progress=not quiet)
    click.echo(f"<E> generated {result['mean_generated']:.3f} +- {result['sem_generated']:.3f}, "
               f"REMC {result['mean_reference']:.3f} +- {result['sem_reference']:.3f}; "
               f"Wasserstein {result['wasserstein']:.3f}, KS {result['ks_statistic']:.3f}")
    out = Path(out)
    click.echo(f"wrote {out}, {out.with_suffix('.png')} and {out.with_suffix('.json')}")


@main.command()
@checkpoint_option
@click.option("--data", "data_path", required=True, type=click.Path(dir_okay=False),
              help="Test data set (.h5) holding the sequence.")
@click.option("--sequence-index", type=int, default=0, show_default=True,
              help="Which sequence of --data.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output directory.")
@click.option("--per-temperature", type=int, default=_PARTITION.per_temperature,
              show_default=True, help="REMC snapshots at each temperature of the ladder.")
@click.option("--divergence", type=click.Choice(["exact", "hutchinson"]),
              default=_PARTITION.divergence, show_default=True,
              help="Divergence of the probability-flow ODE.")
@click.option("--seed", type=int, default=_PARTITION.seed, show_default=True,
              help="Seed of REMC, TI, probes.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def partition(checkpoint, data_path, sequence_index, out, per_temperature, divergence, seed, quiet):
    """Calibrate the learned density against the energy and compare -ln Z with TI (Fig. 3)."""
    settings = _validated(PartitionSettings, {"per_temperature": per_temperature,
                                              "divergence": divergence, "seed": seed})
    r = stages.partition(checkpoint, data_path, sequence_index, out, settings,
                         progress=not quiet)
    click.echo(f"alpha {r['alpha']:.4f} +- {r['alpha_err']:.4f}, plateau {r['plateau']:.3f} "
               f"(std {r['plateau_std']:.3f}), -ln Z_TI {-r['log_z_ti']:.3f} +- "
               f"{r['log_z_ti_err']:.3f}, gap {r['gap']:.3f} ({100 * r['relative_gap']:.2f} %)")
    click.echo(f"wrote {Path(out) / 'partition.json'} and {Path(out) / 'partition.png'}")


@main.command()
@click.option("--preset", default="quick", show_default=True,
              help="quick (CPU, minutes), paper (the paper's sizes), or a config file.")
@set_option
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run directory.")
@click.option("--device", default=None, help="torch device (default: cuda if present, else cpu).")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def reproduce(preset, overrides, out, device, quiet):
    """The whole paper: simulate, train, extract, OOD, generate, partition function, report.

    Stages already done with the same inputs are skipped, so a rerun continues after a crash."""
    from spinscore.reproduce import reproduce as run_reproduce

    report = run_reproduce(preset, out, overrides, device=device, progress=not quiet)
    click.echo(f"wrote {report} and {Path(out) / 'metrics.json'}")


if __name__ == "__main__":
    main()
