"""Commands on the density and the partition function: thermo, sample."""

from __future__ import annotations

from pathlib import Path

import click

from spinscore import stages
from spinscore.cli.base import _validated, checkpoint_option, config_options, main
from spinscore.errors import SpinscoreError


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
@click.option("--method", type=click.Choice(["ti", "mbar", "both", "is", "all"]),
              default="both", show_default=True,
              help="Thermodynamic integration (Simpson, --points), MBAR over the simulation "
              "ladder down to 1/beta (pymbar), both, importance sampling from --checkpoint's "
              "model (is), or all three.")
@click.option("--checkpoint", type=click.Path(dir_okay=False), default=None,
              help="Trained model for --method is|all.")
@click.option("--samples", type=int, default=200, show_default=True,
              help="Importance sampling: probability-flow chains, each with its exact log q.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def thermo(config_path, overrides, sequence, out, points, beta0, runs, sweeps, seed, threads,
           method, checkpoint, samples, quiet):
    """ln Z of one sequence by thermodynamic integration of <E> over beta (SPEC §7) and by
    MBAR over a replica-exchange ladder."""
    import math
    import os

    from spinscore.config import load_config, require_spin_config

    config = require_spin_config(load_config(config_path, overrides), "spinscore thermo")
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
              (threads >= 1, "--threads", "a positive number", threads),
              (samples >= 2 or method not in ("is", "all"), "--samples", "an integer >= 2",
               samples),
              (checkpoint is not None or method not in ("is", "all"), "--checkpoint",
               "a trained model for --method is|all", checkpoint)]
    for ok, name, expected, got in checks:
        if not ok:
            raise SpinscoreError(f"{name}: expected {expected}, got {got}")

    methods = {"both": ("ti", "mbar"), "all": ("ti", "mbar", "is")}.get(method, (method,))
    result = stages.thermo(config, types, out, beta0=beta0, points=points, runs=runs,
                           sweeps=sweeps, seed=seed, threads=threads, progress=not quiet,
                           methods=methods, checkpoint=checkpoint, samples=samples)
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
    if "is" in methods:
        m = result["importance"]
        click.echo(f"IS    ln Z(beta={beta0:g}) = {m['log_z']:.4f} +- {m['log_z_err']:.4f} "
                   f"(bootstrap {m['log_z_err_bootstrap']:.4f}){tail}; ESS {m['ess']:.1f} of "
                   f"{m['n']}; <E> reweighted {m['energy']['mean']:.3f} +- "
                   f"{m['energy']['err']:.3f} (generated {m['mean_energy_generated']:.3f}); "
                   f"{timings['importance_s']:.1f} s")
    for key, label in (("importance_minus_ti", "IS - TI"), ("importance_minus_mbar", "IS - MBAR"),
                       ("mbar_minus_ti", "MBAR - TI")):
        if key in result:
            d = result[key]
            click.echo(f"{label} = {d['difference']:+.4f} ({d['in_sigma']:.1f} combined sigma)")
    click.echo(f"wrote {out / 'thermo.json'} and {out / 'thermo.png'}")

@main.command()
@checkpoint_option
@click.option("--sequence", required=True,
              help="Site types, one letter per site (e.g. ABBA); comma-separated for longer names.")
@click.option("--n", "n_chains", type=int, default=1000, show_default=True,
              help="Number of chains to generate.")
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="Output .h5 file; OUT.png and OUT.json (energies against REMC) go next to it.")
@click.option("--method", type=click.Choice(["ode", "sde", "pc"]), default=None,
              help="Probability-flow ODE, reverse SDE or predictor-corrector (default: the "
                   "checkpoint config's generation.method, ode unless set).")
@click.option("--steps", type=int, default=None,
              help="Fixed steps (ODE: geodesic Heun; SDE, PC: Euler-Maruyama, default 500); "
                   "the ODE is adaptive without it.")
@click.option("--corrector-steps", type=int, default=None,
              help="PC: Langevin steps after each predictor step (default: generation.*).")
@click.option("--snr", type=float, default=None, help="PC: signal-to-noise ratio of the "
              "Langevin step size (default: generation.snr).")
@click.option("--final-corrector-steps", type=int, default=None,
              help="PC: Langevin steps at t_min at the end (default: generation.*).")
@click.option("--zero-time/--no-zero-time", default=None,
              help="A last step from t_min to t = 0 (default: generation.zero_time).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of noise and REMC.")
@click.option("--reference-snapshots", type=int, default=200, show_default=True,
              help="REMC snapshots of the same sequence to compare with.")
@click.option("--overwrite", is_flag=True, help="Replace existing OUT, OUT.png and OUT.json.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def sample(checkpoint, sequence, n_chains, out, method, steps, corrector_steps, snr,
           final_corrector_steps, zero_time, seed, reference_snapshots, overwrite, quiet):
    """Generate chains of one sequence from a trained model; compare their energies with REMC."""
    from spinscore.checkpoints import load_model
    from spinscore.config import GenerationConfig
    from spinscore.config.system import MAX_SEED

    checks = [(n_chains >= 1, "--n", n_chains), (0 <= seed <= MAX_SEED, "--seed", seed),
              (reference_snapshots >= 2, "--reference-snapshots", reference_snapshots)]
    for ok, name, got in checks:
        if not ok:
            raise SpinscoreError(f"{name}: expected a positive integer (>= 2 for "
                                 f"--reference-snapshots, 0 .. 2^63 - 1 for --seed), got {got}")
    model, config, _ = load_model(checkpoint)
    given = {"method": method, "steps": steps, "corrector_steps": corrector_steps, "snr": snr,
             "final_corrector_steps": final_corrector_steps, "zero_time": zero_time}
    settings = _validated(GenerationConfig, {**config.generation.model_dump(),
                                             **{k: v for k, v in given.items() if v is not None}})
    types = config.system.sequence_from_text(sequence)
    written = [Path(out), Path(out).with_suffix(".png"), Path(out).with_suffix(".json")]
    if not overwrite and any(p.exists() for p in written):
        found = next(p for p in written if p.exists())
        raise SpinscoreError(f"{found}: exists; pass --overwrite to replace it")
    result = stages.generate(model, config, types, n_chains, out, settings=settings, seed=seed,
                             reference_snapshots=reference_snapshots, progress=not quiet)
    click.echo(f"<E> generated {result['mean_generated']:.3f} +- {result['sem_generated']:.3f}, "
               f"REMC {result['mean_reference']:.3f} +- {result['sem_reference']:.3f}; "
               f"Wasserstein {result['wasserstein']:.3f}, KS {result['ks_statistic']:.3f}")
    out = Path(out)
    click.echo(f"wrote {out}, {out.with_suffix('.png')} and {out.with_suffix('.json')}")
