"""Commands that read a trained network: extract, ood, partition."""

from __future__ import annotations

import math
from pathlib import Path

import click

from spinscore import stages
from spinscore.cli.base import _validated, checkpoint_option, main
from spinscore.config.analysis import AnalysisConfig, PartitionSettings, TrustSettings
from spinscore.errors import SpinscoreError

_PARTITION = PartitionSettings()  # the defaults of the partition options
_TRUST = TrustSettings()  # the defaults of the trust-pool options
_T_EVAL_HELP = ("Diffusion time at which the network is queried (default: the checkpoint's "
                "analysis.t_eval, else its smallest training time: 1e-4 for the published "
                "checkpoints).")


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
              help=_T_EVAL_HELP)
@click.option("--bootstrap", type=click.IntRange(min=0), default=AnalysisConfig().bootstrap,
              show_default=True,
              help="Bootstrap resamples over sequences for the confidence intervals.")
@click.option("--per-config", is_flag=True,
              help="Also write the OOD flag of every snapshot (network only): per_config.json.")
@click.option("--t-extrapolate", default="auto", show_default=True, metavar="T1,T2,...|auto|none",
              help="Readout times extrapolated to t = 0 (network only); auto: the "
                   "checkpoint's analysis.t_extrapolate, else its smallest training time and "
                   "three doublings.")
@click.option("--shells", type=click.IntRange(min=1), default=None,
              help="Also read the couplings on a basis up to this shell (zero beyond the "
                   "true range) and print them by shell: for the oracle and the classical "
                   "estimators, how far below the couplings the data pin those beyond the "
                   "range; for the network, the couplings its force carries (t -> 0).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def extract(data_path, checkpoint, out, method, t_eval, bootstrap, per_config, t_extrapolate,
            shells, quiet):
    """Recover the couplings from the network's force field (or a classical estimator)."""
    from spinscore.analysis.extract import ratio_table
    from spinscore.report.tables import readout_summary, shell_profile_table

    _check_time(t_eval, "--t-eval")
    if per_config and method != "network":
        raise SpinscoreError("--per-config needs --method network")
    result = stages.extract(data_path, out, method, checkpoint, t_eval, bootstrap,
                            per_config=per_config, progress=not quiet,
                            t_extrapolate=_times(t_extrapolate, "--t-extrapolate"),
                            shells=shells)
    for warning in result.get("warnings", []):
        click.echo(warning, err=True)
    click.echo(f"{method} extraction, {result['n_snapshots']} snapshots of "
               f"{result['n_sequences']} sequences")
    click.echo(ratio_table(result))
    if method == "network":
        click.echo(readout_summary(result))
    if "shell_profile" in result:
        click.echo(shell_profile_table(result["shell_profile"], method))
    click.echo(f"wrote {Path(out) / 'extraction.json'}")


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
    if len(set(times)) < len(times) or len(times) < 2 or min(times) <= 0:
        raise SpinscoreError(f"{option}: expected at least two distinct positive times, got "
                             f"{text!r}")
    for t in times:
        _check_time(t, option)
    return times


def _check_time(t: float | None, option: str) -> None:
    """A diffusion time the network can be read at: finite, within [1e-8, 1e3] (float32)."""
    if t is not None and not (math.isfinite(t) and 1e-8 <= t <= 1e3):
        raise SpinscoreError(f"{option}: expected a time in [1e-08, 1000], got {t}")

@main.command()
@checkpoint_option
@click.option("--data", "data_path", required=True, type=click.Path(dir_okay=False),
              help="In-distribution test set (.h5).")
@click.option("--ood", "ood_sets", multiple=True, required=True, metavar="NAME=PATH.h5",
              help="An out-of-distribution set (repeatable).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output directory.")
@click.option("--t-eval", type=float, default=None,
              help=_T_EVAL_HELP)
@click.option("--trust-configurations", type=int, default=_TRUST.configurations,
              show_default=True,
              help="Configurations per set of the trust-flag pool (force error against the "
                   "truth, and which flag predicts it); 0: no pool.")
@click.option("--early-checkpoint", type=click.Path(dir_okay=False), default=None,
              help="An under-trained checkpoint (train/early.pt) whose reading of the test "
                   "snapshots joins the trust pool.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def ood(checkpoint, data_path, ood_sets, out, t_eval, trust_configurations, early_checkpoint,
        quiet):
    """ROC AUCs of the OOD flags (explained variance on the local basis, configurational
    temperature, and the two combined) for each OOD set; and the trust flag: which flag
    predicts the network's force error."""
    _check_time(t_eval, "--t-eval")
    sets = {}
    for item in ood_sets:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise SpinscoreError(f"--ood: expected NAME=PATH.h5, got {item!r}")
        if name in sets:
            raise SpinscoreError(f"--ood: the name {name!r} is given twice")
        sets[name] = path
    if trust_configurations and trust_configurations < 8:
        raise SpinscoreError(f"--trust-configurations: expected 0 (no pool) or at least 8, got "
                             f"{trust_configurations}")
    trust = None if trust_configurations == 0 else _validated(
        TrustSettings, {"configurations": trust_configurations})
    summary = stages.ood(checkpoint, data_path, sets, out, t_eval, progress=not quiet,
                         trust=trust, early_checkpoint=early_checkpoint)
    for name, entry in summary["sets"].items():
        auc = f"   AUC {entry['auc']:.4f}" if "auc" in entry else ""
        click.echo(f"{name:<20} EV median {entry['ev_median']:.5f}  5% {entry['ev_q05']:.5f}{auc}")
    if trust is not None:
        t = summary["trust"]
        aucs = ", ".join(f"{k} {'-' if v is None else f'{v:.3f}'}"
                         for k, v in t["auc_unreliable"].items())
        click.echo(f"trust: {t['unreliable']} of {t['pool']} unreliable (e > "
                   f"{t['threshold']:.4f}); AUC {aucs}")
    click.echo(f"wrote {Path(out) / 'ood.json'} and {Path(out) / 'ood.png'}")

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
@click.option("--fit-snapshots", type=int, default=_PARTITION.fit_snapshots,
              show_default=True,
              help="More snapshots at the data temperature for the fit of alpha (its error "
                   "falls as 1/sqrt of the fitted configurations).")
@click.option("--zero-time/--no-zero-time", default=_PARTITION.zero_time, show_default=True,
              help="log p_0 by the heat-equation step from t_min (else log p at t_min).")
@click.option("--seed", type=int, default=_PARTITION.seed, show_default=True,
              help="Seed of REMC, TI, probes.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def partition(checkpoint, data_path, sequence_index, out, per_temperature, divergence,
              fit_snapshots, zero_time, seed, quiet):
    """Calibrate the learned density against the energy and compare -ln Z with TI (Fig. 3)."""
    settings = _validated(PartitionSettings, {"per_temperature": per_temperature,
                                              "divergence": divergence,
                                              "fit_snapshots": fit_snapshots,
                                              "zero_time": zero_time, "seed": seed})
    r = stages.partition(checkpoint, data_path, sequence_index, out, settings,
                         progress=not quiet)
    click.echo(f"alpha {r['alpha']:.4f} +- {r['alpha_err']:.4f}, plateau {r['plateau']:.3f} "
               f"(std {r['plateau_std']:.3f}), -ln Z_TI {-r['log_z_ti']:.3f} +- "
               f"{r['log_z_ti_err']:.3f}, gap {r['gap']:.3f} ({100 * r['relative_gap']:.2f} %)")
    z = r["model_log_z"]
    click.echo(f"model ln Z(beta) by reverse importance {z['log_z']:.3f} +- {z['log_z_err']:.3f} "
               f"(ESS {z['ess']:.1f} of {z['n']}), TI {z['log_z_ti']:.3f} +- "
               f"{z['log_z_ti_err']:.3f}, gap {z['gap']:+.3f} ({100 * z['relative_gap']:.2f} %)")
    if r["at_t_min"]:
        a = r["at_t_min"]
        click.echo(f"at t_min (no zero-time step): alpha {a['alpha']:.4f} +- "
                   f"{a['alpha_err']:.4f}, gap {a['gap']:.3f} ({100 * a['relative_gap']:.2f} %)")
    click.echo(f"wrote {Path(out) / 'partition.json'} and {Path(out) / 'partition.png'}")
