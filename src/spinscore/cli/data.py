"""Commands that make and train on data: simulate, inspect, train."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from spinscore import stages
from spinscore.cli.base import check_device, config_options, main
from spinscore.errors import SpinscoreError


@main.command()
@config_options
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Output .h5 file.")
@click.option("--threads", type=int, default=None, help="Worker threads (default: all cores).")
@click.option("--scheduler", default=None, help="Dask scheduler address to run chunks on.")
@click.option("--overwrite", is_flag=True, help="Replace an existing output file.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def simulate(config_path, overrides, out, threads, scheduler, overwrite, quiet):
    """Simulate equilibrium snapshots by replica-exchange Monte Carlo into an HDF5 data set; for
    a molecular config (system.molecule), Langevin trajectories with OpenMM."""
    from spinscore.config import load_config
    from spinscore.config.molecule import MoleculeRunConfig

    config = load_config(config_path, overrides)
    if threads is not None and threads < 1:
        raise SpinscoreError(f"--threads: expected a positive number, got {threads}")
    if isinstance(config, MoleculeRunConfig):
        if scheduler is not None:
            raise SpinscoreError("--scheduler: molecular runs use local threads (--threads) only")
        path = stages.simulate_molecule(config, out, threads=threads, overwrite=overwrite,
                                        progress=not quiet)
    else:
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
@click.option("--reference", type=click.Path(dir_okay=False), default=None,
              help="Molecules: a longer run's trajectory file to compare the Ramachandran basin "
                   "populations with.")
def inspect(path, plots_dir, as_json, mixing, mixing_sequences, threads, reference):
    """Summarise a data set (sizes, couplings, T, swap rates, energy per spin); with --mixing,
    audit how well its REMC snapshots are decorrelated (SPEC §8b). For molecular trajectories:
    validate the dynamics (NVE energy conservation at the time step, kinetic temperature,
    Ramachandran basins, bond lengths)."""
    import os

    from spinscore.io import read_dataset
    from spinscore.sampling.diagnostics import dataset_summary, format_summary

    if stages.is_molecule_file(path):
        if mixing:
            raise SpinscoreError("--mixing: only for spin data sets (REMC)")
        out = Path(plots_dir) if plots_dir else Path(path).with_suffix(".check")
        result = stages.md_check(path, out, reference=reference)
        click.echo(json.dumps(result, indent=2) if as_json else _format_md_check(result))
        click.echo(f"wrote {out / 'md_check.png'} and {out / 'md_check.json'}")
        return

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

def _format_md_check(result: dict) -> str:
    from spinscore.report.tables import plus_minus

    lines = [f"{result['file']}: {result['frames']} frames, {result['simulated_ps']:g} ps"]
    if "energy_conservation" in result:
        e = result["energy_conservation"]
        lines.append(f"NVE at {e['timestep_fs']:g} fs, {e['steps']} steps: fluctuation "
                     f"{e['fluctuation']:.3f} kJ/mol = {e['ratio']:.4f} kT sqrt(n_dof/2), drift "
                     f"{e['drift_per_ps']:+.4f} kJ/mol/ps")
    t = result["kinetic_temperature"]
    lines.append(f"kinetic temperature {plus_minus(t['mean'], t['stderr'], 2)} K "
                 f"(bath {t['bath']:g})")
    ref = result.get("basins_against_reference", {})
    for name, b in result["basins"].items():
        line = f"  {name:12s} {plus_minus(b['mean'], b['stderr'], 4)}"
        if name in ref:
            r = ref[name]
            z = "-" if r["z"] is None else f"{r['z']:+.2f}"
            line += f"   reference {plus_minus(r['reference'], r['reference_stderr'], 4)}  z {z}"
        lines.append(line)
    for name, b in result["bond_lengths"].items():
        lines.append(f"  bond {name:5s} {b['mean']:.4f} ± {b['std']:.4f} nm")
    return "\n".join(lines)


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
    from spinscore.config.molecule import MoleculeRunConfig

    if resume and overwrite:
        raise SpinscoreError("--resume and --overwrite: choose one (continue the run, or "
                             "start it again)")
    check_device(device)
    config = load_config(config_path, overrides)
    if isinstance(config, MoleculeRunConfig):
        if device not in (None, "cpu"):
            raise SpinscoreError("--device: molecular training runs on the CPU so far")
        path = stages.train_molecule(config, data_path, out, resume=resume, overwrite=overwrite,
                                     progress=not quiet)
    else:
        path = stages.train(config, data_path, out, resume=resume, overwrite=overwrite,
                            device=device, progress=not quiet)
    click.echo(f"wrote {path}")


def _molecular_model_inputs(command):
    """--checkpoint, --data and --out of the commands that read a trained molecular model."""
    for option in reversed((
        click.option("--checkpoint", required=True, type=click.Path(dir_okay=False),
                     help="Molecular training checkpoint (checkpoint.pt of `spinscore train`)."),
        click.option("--data", "data_path", required=True, type=click.Path(dir_okay=False),
                     help="The trajectory file it was trained on (its held-out trajectories "
                          "are read)."),
        click.option("--out", required=True, type=click.Path(file_okay=False),
                     help="Output directory."))):
        command = option(command)
    return command


@main.command()
@_molecular_model_inputs
@click.option("--frames", type=int, default=500, show_default=True,
              help="Held-out frames to read the network on.")
@click.option("--fit-frames", type=int, default=None,
              help="Training frames for the score-matching baseline (default: all; ~1 ms "
                   "each).")
def readout(checkpoint, data_path, out, frames, fit_frames):
    """Molecules: the network's zero-noise force against OpenMM's, sector by sector, and the
    force-field parameters read back (with score matching and the oracle on the same basis)."""
    if frames < 1 or (fit_frames is not None and fit_frames < 1):
        raise SpinscoreError(f"--frames, --fit-frames: expected positive integers, got "
                             f"{frames}, {fit_frames}")
    result = stages.readout_molecule(checkpoint, data_path, out, frames=frames,
                                     fit_frames=fit_frames)
    total = result["network_total"]
    click.echo(f"network total force: cosine {total['cosine']:.5f}, NRMSE {total['nrmse']:.4f}")
    for fit in ("network", "score_matching", "oracle"):
        sectors = ", ".join(f"{f} {s['cosine']:.4f}" for f, s in result[fit]["sectors"].items())
        click.echo(f"{fit}: {sectors}")
    click.echo(f"wrote {Path(out) / 'readout.json'} and {Path(out) / 'readout.png'}")


@main.command()
@_molecular_model_inputs
@click.option("--chains", type=int, default=64, show_default=True, help="Chains run at once.")
@click.option("--picoseconds", type=float, default=5.0, show_default=True,
              help="Length of each chain.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--friction", type=float, default=None,
              help="Thermostat friction (1/ps); default: the data's.")
def langevin(checkpoint, data_path, out, chains, picoseconds, seed, friction):
    """Molecules: generate with Langevin dynamics driven by the learned force, from held-out
    frames, against the MD that followed them (Ramachandran maps, JS divergence, bonds, angles)."""
    if chains < 2 or not picoseconds > 0 or seed < 0 or not (friction is None or friction > 0):
        raise SpinscoreError(f"--chains, --picoseconds, --seed, --friction: expected >= 2, > 0, "
                             f">= 0, > 0, got {chains}, {picoseconds}, {seed}, {friction}")
    g = stages.generate_molecule(checkpoint, data_path, out, chains=chains,
                                 picoseconds=picoseconds, seed=seed, friction_per_ps=friction)
    t = g["kinetic_temperature"]
    click.echo(f"Ramachandran JS divergence {g['js_divergence']:.4f} (sampling floor "
               f"{g['js_floor']:.4f}); kinetic temperature {t['model']:.1f} ± "
               f"{t['stderr']:.1f} K (bath {t['bath']:g}); {g['ns_per_day']:.2f} ns/day")
    click.echo(f"wrote {Path(out) / 'generation.json'} and {Path(out) / 'generation.png'}")
