"""Figures of the generative side of the model: energy histograms of generated chains against
REMC, and the partition-function invariant (the paper's Fig. 3). Numbers in, figure out."""

from __future__ import annotations

import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from spinscore.report.figures import plt  # the Agg backend is chosen there


def energy_histogram_figure(generated: np.ndarray, reference: np.ndarray, title: str = "",
                            labels: tuple[str, str] = ("generated", "REMC")) -> Figure:
    """Densities of two energy samples (units of J) on common bins, with their means."""
    gen, ref = np.asarray(generated, float), np.asarray(reference, float)
    both = np.concatenate([gen, ref])
    lo, hi = np.quantile(both, [0.0, 0.995])
    bins = np.linspace(lo, hi + 1e-9, 50)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for values, label, colour in ((gen, labels[0], "tab:orange"), (ref, labels[1], "tab:blue")):
        ax.hist(values, bins=bins, density=True, histtype="stepfilled", alpha=0.35, color=colour,
                label=f"{label}: n = {values.size}, mean {values.mean():.3f}, "
                      f"std {values.std(ddof=1):.3f}")
        ax.axvline(values.mean(), color=colour, ls="--", lw=1.5)
    ax.set(xlabel="energy E (units of J)", ylabel="density", title=title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def partition_figure(energy: np.ndarray, log_p: np.ndarray, temperature: np.ndarray, beta: float,
                     fit: dict, log_z_ti: float, log_z_ti_err: float, title: str = "",
                     zoom_temperatures: int = 4, log_p_t_min: np.ndarray | None = None,
                     alpha_t_min: float | None = None) -> Figure:
    """(a) log p against βE with the calibration line log p = c − αβE fitted on the low-energy
    configurations; (b) the invariant log p + αβE against E with −ln Z(αβ) from thermodynamic
    integration (band: its standard error) and the plateau (mean over the low-energy
    configurations, and with `fit["plateau_lme"]` their log-mean-exp); (c) the same, zoomed
    on the `zoom_temperatures` coldest temperatures.
    Points coloured by the REMC temperature that produced them.

    energy, log_p, temperature: (n,) per configuration (J, nats, J); fit: dict with alpha,
    alpha_err, intercept, plateau, plateau_std and `low` (n,) bool mask of the fitted points.
    log_p_t_min, alpha_t_min: where log p is log p_0 by the zero-time step, the log p the ODE
    reached at t_min and its alpha, drawn grey in (a).
    """
    energy, log_p, temperature = (np.asarray(a, float) for a in (energy, log_p, temperature))
    low = np.asarray(fit["low"], bool)
    alpha, plateau = fit["alpha"], fit["plateau"]
    invariant = log_p + alpha * beta * energy
    norm = LogNorm(temperature.min(), max(temperature.max(), temperature.min() * 1.01))
    colours = {"c": temperature, "cmap": "coolwarm", "norm": norm, "s": 14}
    fig, axes = plt.subplots(1, 3, figsize=(17, 5), layout="constrained")
    ax = axes[0]
    if log_p_t_min is not None:
        ax.scatter(beta * energy, log_p_t_min, c="0.7", s=8,
                   label=f"log p at t_min, before the zero-time step: α = {alpha_t_min:.3f}")
    sc = ax.scatter(beta * energy, log_p, **colours)
    x = np.linspace((beta * energy[low]).min(), (beta * energy[low]).max(), 2)
    ax.plot(x, fit["intercept"] - alpha * x, "k-", lw=2,
            label=f"fit on the {low.sum()} low-energy points: α = {alpha:.3f} ± "
                  f"{fit['alpha_err']:.3f}")
    ax.set(xlabel=r"$\beta E$", ylabel=r"$\log p_\theta(x)$ (nats)",
           title="(a) calibration of the learned density")
    ax.legend(fontsize=8)

    cold = np.sort(np.unique(temperature))[:zoom_temperatures]
    zoom = np.isin(temperature, cold)
    for ax, sel, name in ((axes[1], slice(None), "(b) invariant, all temperatures"),
                          (axes[2], zoom, f"(c) the {len(cold)} coldest temperatures")):
        ax.scatter(energy[sel], invariant[sel], **{**colours, "c": temperature[sel]})
        ax.axhline(-log_z_ti, color="k", lw=1.5,
                   label=rf"$-\ln Z(\alpha\beta)$ (TI) = {-log_z_ti:.2f} ± {log_z_ti_err:.2f}")
        ax.axhspan(-log_z_ti - log_z_ti_err, -log_z_ti + log_z_ti_err, color="k", alpha=0.15)
        ax.axhline(plateau, color="tab:green", ls="--", lw=1.5,
                   label=f"plateau = {plateau:.2f} (std {fit['plateau_std']:.2f})")
        if fit.get("plateau_lme") is not None:
            ax.axhline(fit["plateau_lme"], color="tab:purple", ls=":", lw=1.5,
                       label=f"log-mean-exp plateau = {fit['plateau_lme']:.2f}")
        ax.set(xlabel="energy E (units of J)",
               ylabel=r"$\log p_\theta(x) + \alpha\beta E$ (nats)", title=name)
        ax.legend(fontsize=8)
    fig.colorbar(sc, ax=axes[2], label="REMC temperature T")
    if title:
        fig.suptitle(title)
    return fig


def partition_figure_of(result: dict, title: str = ""):
    """The figure (`report.diffusion_figures.partition_figure`) of a `partition_analysis` result
    (or of a partition.json read back)."""
    p = result["points"]
    fit = {k: result[k] for k in ("alpha", "alpha_err", "intercept", "plateau", "plateau_std")}
    fit["plateau_lme"] = result.get("plateau_lme")
    fit["low"] = np.asarray(p["low"])
    before = None
    if p.get("correction") is not None and result.get("at_t_min"):
        before = np.asarray(p["log_p"]) - np.asarray(p["correction"])
    return partition_figure(np.asarray(p["energy"]), np.asarray(p["log_p"]),
                            np.asarray(p["temperature"]), result["beta"], fit, result["log_z_ti"],
                            result["log_z_ti_err"], title=title, log_p_t_min=before,
                            alpha_t_min=(result.get("at_t_min") or {}).get("alpha"))


def trust_figure(pool: dict[str, dict[str, np.ndarray]], summary: dict):
    """The network's relative force error e against each trust flag, one point per
    configuration coloured by its set, the unreliable threshold dashed; each panel's title has
    the flag's AUC for unreliable configurations. pool: {set: {flag: (n,), "error": (n,)}}
    (`analysis.trust.trust_pool` after `trust_summary`)."""
    from spinscore.analysis.trust import FLAGS

    names = (*FLAGS, "combined")
    labels = {"explained_variance": "1 - explained variance",
              "configurational_temperature": r"$|\ln\theta|$",
              "log_likelihood": r"$-\log p_\theta(x)\,/\,N$ (nats per site)",
              "combined": "combined (1 - min empirical p)"}
    fig, axes = plt.subplots(1, len(names), figsize=(4.6 * len(names), 4.2))
    for ax, name in zip(axes, names, strict=True):
        finite = np.concatenate([v[name][np.isfinite(v[name])] for v in pool.values()])
        cap = 2 * finite.max() if finite.size else 1.0  # +inf (theta <= 0) drawn at the cap
        log = name in ("explained_variance", "configurational_temperature")
        for k, (s, v) in enumerate(pool.items()):
            x = np.clip(v[name], 1e-6, cap) if log else v[name]
            ax.scatter(x, v["error"], s=6, alpha=0.6, color=f"C{k}", label=s)
        ax.axhline(summary["threshold"], color="k", ls="--", lw=0.8)
        auc = summary["auc_unreliable"][name]
        ax.set(xlabel=labels[name], yscale="log",
               title=f"AUC (unreliable) {auc:.3f}" if auc is not None else "AUC: one class")
        if log:
            ax.set_xscale("log")
    axes[0].set_ylabel(r"relative force error $|s_\theta - \beta F| / |\beta F|$")
    axes[0].legend(fontsize=7, markerscale=2)
    fig.tight_layout()
    return fig
