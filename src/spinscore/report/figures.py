"""One pure function per figure: numbers in, matplotlib figure out (never shown, only saved)."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from spinscore.io import atomic_write_bytes  # noqa: E402


def dataset_figure(
    lengths: np.ndarray,
    bond_dots: dict[str, np.ndarray],
    force_magnitudes: np.ndarray,
    conformations: list[np.ndarray] | None,
    title: str = "",
    snapshot: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    energy_per_spin: np.ndarray | None = None,
    type_names: list[str] | None = None,
) -> Figure:
    """The data-set figure (the paper's Fig. S1), four panels.

    Args:
        lengths: (n_seq,) chain lengths (sites per sample).
        bond_dots: S_i.S_j values per coupling class name (only shell-1 classes are drawn).
        force_magnitudes: |F_i| values (units of J).
        conformations: a few (L, 3) spin chains, drawn as the cumulative sum of their spins;
            None for a lattice or graph (no path through the sites).
        snapshot: for a lattice, (positions (N, 2), spins (N, 3), types (N,)) of one sample,
            drawn in panel (d) as in-plane arrows coloured by S_z (a graph has no positions:
            the panel says so).
        energy_per_spin: (n_seq, n_snap) energies per spin (units of J), panel (a) where every
            sample has the same number of sites (a lattice or graph).
        type_names: the site type names (legend of panel (d)).
    """
    chain = conformations is not None
    fig = plt.figure(figsize=(13, 9.5))
    ax = fig.add_subplot(2, 2, 1)
    if chain or energy_per_spin is None:
        lo, hi = int(lengths.min()), int(lengths.max())
        ax.hist(lengths, bins=np.arange(lo, hi + 2) - 0.5, color="tab:blue", alpha=0.8)
        ax.set(xlabel="chain length L" if chain else "sites N", ylabel="samples",
               title="(a) length distribution" if chain else "(a) sites per sample")
    else:
        e = np.ravel(energy_per_spin)
        ax.hist(e, bins=80, color="tab:blue", alpha=0.8, density=True)
        ax.set(xlabel=f"E / N (units of J; N = {int(lengths[0])} sites)", ylabel="density",
               title="(a) energy per spin")

    ax = fig.add_subplot(2, 2, 2)
    for name, values in bond_dots.items():
        if name.startswith("J1_") and values.size:
            ax.hist(values, bins=np.linspace(values.min(), 1, 80), histtype="step", lw=1.5,
                    density=True, label=f"{name} (mean {values.mean():.3f})")
    ax.set(xlabel=r"$S_i\cdot S_{i+1}$" if chain else r"$S_i\cdot S_j$ (shell-1 pairs)",
           ylabel="density", yscale="log",
           title="(b) nearest-neighbour alignment per bond type")
    ax.legend()

    ax = fig.add_subplot(2, 2, 3)
    ax.hist(force_magnitudes, bins=100, color="tab:green", alpha=0.8, density=True)
    ax.axvline(np.median(force_magnitudes), color="k", ls="--",
               label=f"median {np.median(force_magnitudes):.3f}")
    ax.set(xlabel=r"$|F_i|$ (units of J)", ylabel="density",
           title="(c) tangent force magnitude")
    ax.legend()

    if chain:
        ax = fig.add_subplot(2, 2, 4, projection="3d")
        for k, spins in enumerate(conformations):
            path = np.vstack([np.zeros(3), np.cumsum(spins, axis=0)])
            ax.plot(*path.T, marker="o", ms=2, lw=1.2, label=f"L = {len(spins)}", color=f"C{k}")
        ax.set(xlabel="x", ylabel="y", zlabel="z", title=r"(d) conformations $\sum_{j\leq i} S_j$")
        ax.legend(fontsize=8)
    elif snapshot is not None:
        ax = fig.add_subplot(2, 2, 4)
        pos, spins, types = snapshot
        for k in np.unique(types):
            on = types == k
            ax.scatter(*pos[on].T, s=14, marker="os^Dv"[int(k) % 5], facecolor="none",
                       edgecolor="0.5", lw=0.6,
                       label=type_names[int(k)] if type_names else f"type {int(k)}")
        q = ax.quiver(*pos.T, spins[:, 0], spins[:, 1], spins[:, 2], cmap="coolwarm",
                      clim=(-1, 1), pivot="middle", scale=1.4, scale_units="xy", width=0.004)
        fig.colorbar(q, ax=ax, label=r"$S_z$", shrink=0.8)
        ax.set_aspect("equal")
        ax.legend(fontsize=8, loc="upper right", framealpha=0.8)
        ax.set(xlabel="x", ylabel="y", title=r"(d) one snapshot: $(S_x, S_y)$ arrows")
    else:
        ax = fig.add_subplot(2, 2, 4)
        ax.set_axis_off()
        ax.text(0.5, 0.5, "(d) a graph has no site positions to draw", transform=ax.transAxes,
                ha="center", va="center")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def save_figure(fig: Figure, path) -> None:
    """Save as PNG, atomically (a crash leaves the old file or the new one, never half of
    one), and release the figure's memory."""
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(Path(path), png.getvalue())


def loss_curve_figure(samples: np.ndarray, loss: np.ndarray, loss_t: np.ndarray) -> Figure:
    """Training loss against samples seen: the objective (per spin, weighted) and the t-scaled
    loss t |s - target|^2 per spin, whose noise floor does not depend on t (~2 at small t), so
    the learning shows as its drop."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, y, label in ((axes[0], loss, "training objective per spin"),
                         (axes[1], loss_t, r"$t\,|s_\theta - \mathrm{target}|^2$ per spin")):
        ax.plot(samples, y, lw=0.8, alpha=0.5, label="logged (mean since last row)")
        if len(y) >= 5:
            k = max(2, len(y) // 20)
            ax.plot(samples[k - 1 :], np.convolve(y, np.ones(k) / k, mode="valid"), lw=2,
                    label=f"running mean ({k} rows)")
        ax.set(xlabel="training samples", ylabel=label, yscale="log")
        ax.legend()
    axes[0].set_title("training loss")
    axes[1].set_title("t-scaled loss (comparable across t)")
    fig.tight_layout()
    return fig


def profile_figure(profile: dict) -> Figure:
    """Interaction profile (the paper's Fig. 2): mean |W_ij| with interquartile range against
    the pair distance (`distance_name`: |i - j| on a chain, the shell of a lattice or graph),
    linear and log scale, the shells with a coupling (`true_range`, default 2) shaded; W
    extrapolated to t = 0 beside W at t_eval where the profile has it (`extrapolated`)."""
    name, reach = profile.get("distance_name", "|i - j|"), profile.get("true_range", 2)
    curves = [(f"t = {profile['t_eval']:g}", profile)]
    if "extrapolated" in profile:
        t1, t2 = profile["extrapolated"]["times"]
        curves.append((f"t -> 0 (from t = {t1:g}, {t2:g})", profile["extrapolated"]))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, scale in zip(axes, ("linear", "log"), strict=True):
        for k, (label, p) in enumerate(curves):
            d = np.asarray(p["distance"])
            mean, lo, hi = (np.asarray(p[key]) for key in ("mean_abs_w", "q25", "q75"))
            decades = p.get("decades_beyond_range")
            fall = f", falls {decades:.2f} decades" if decades is not None else ""
            ax.fill_between(d, np.maximum(lo, 1e-12), hi, alpha=0.2, color=f"C{k}")
            ax.plot(d, mean, "o-", color=f"C{k}", label=rf"mean $|W_{{ij}}|$, {label}{fall}")
        ax.axvspan(0.5, reach + 0.5, color="tab:green", alpha=0.08,
                   label=f"true range ({name} <= {reach})")
        ax.set(xlabel=name, ylabel=r"$|W_{ij}|$ (band: interquartile range)", yscale=scale,
               xticks=curves[0][1]["distance"], title=f"interaction profile ({scale} scale)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def ood_figure(flags: dict[str, dict[str, np.ndarray]], summary: dict) -> Figure:
    """The OOD flags: the distribution of each flag per set (log scale) and the ROC curves of
    the combined flag. flags: {set: {flag name: (n,) values}} (from `analysis.ood.ood_report`)."""
    from spinscore.analysis.ood import roc_curve

    colors = {name: f"C{k}" for k, name in enumerate(flags)}
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.4))
    panels = (("explained_variance", "1 - explained variance on the local basis"),
              ("theta", r"configurational temperature / training T ($\theta$; flag $|\ln\theta|$)"))
    for ax, (key, label) in zip(axes[:2], panels, strict=True):
        vals = {s: np.clip(f[key], 1e-6, None) for s, f in flags.items()}
        lo = min(v.min() for v in vals.values())
        hi = max(v.max() for v in vals.values())
        bins = np.logspace(np.log10(lo), np.log10(hi) + 1e-9, 50)
        for s, v in vals.items():
            ax.hist(v, bins=bins, histtype="step", lw=1.5, density=True, label=s,
                    color=colors[s])
        ax.set(xscale="log", xlabel=label, ylabel="density")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.legend(fontsize=8)
    axes[0].set_title(f"per-configuration flags (t = {summary['t_eval']:g})")
    ref = flags["in-distribution"]["combined"]
    for s, f in flags.items():
        if s != "in-distribution":
            fpr, tpr = roc_curve(ref, f["combined"])
            axes[2].plot(fpr, tpr, color=colors[s], label=f"{s}: AUC {summary['sets'][s]['auc']:.3f}")
    axes[2].plot([0, 1], [0, 1], "k:", lw=0.8)
    axes[2].set(xlabel="false positive rate (in-distribution flagged)",
                ylabel="true positive rate (OOD flagged)", title="ROC of the combined flag")
    axes[2].legend(fontsize=8)
    fig.tight_layout()
    return fig


def thermo_figure(result: dict | None, exact: dict | None = None, mbar: dict | None = None,
                  importance: dict | None = None) -> Figure:
    """The ln Z record of `spinscore thermo`. With the TI `result`: <E>_beta with error bars
    (and the exact curve when known) over the standard error per beta. With `mbar` or
    `importance`: ln Z by MBAR at every ladder temperature, by TI and by importance sampling at
    beta0, less the exact value where known (else as they are)."""
    lower = mbar is not None or importance is not None
    panels = (2 if result else 0) + (1 if lower else 0)
    ratios = ([2, 1] if result else []) + ([1.5] if lower else [])
    fig, axes = plt.subplots(panels, 1, figsize=(7, 3.5 * panels), squeeze=False,
                             gridspec_kw={"height_ratios": ratios})
    axes = list(axes[:, 0])
    if result:
        betas, energy, err = result["betas"], result["mean_energy"], result["mean_energy_err"]
        ax, ax_err = axes.pop(0), axes.pop(0)
        ax.errorbar(betas, energy, yerr=err, fmt=".", ms=3, capsize=2, label="REMC")
        if exact is not None and exact.get("mean_energy") is not None:
            ax.plot(betas, exact["mean_energy"], "k-", lw=0.8, label="exact")
        ax.set(ylabel=r"$\langle E\rangle_\beta$ (J)",
               title=rf"TI: $\ln Z(\beta_0={result['beta0']:g})$ = {result['log_z']:.3f} "
                     rf"$\pm$ {result['log_z_err']:.3f} (L = {result['length']}, "
                     f"{len(betas)} points, {result['runs']} runs)")
        ax.legend()
        ax_err.semilogy(betas[1:], err[1:], ".", ms=3)
        ax_err.set(xlabel=r"$\beta$ (1/J)", ylabel=r"std. error of $\langle E\rangle$ (J)")
    if lower:
        ax = axes.pop(0)
        at_beta0 = []  # (name, ln Z(beta0), its error, marker, colour, legend label)
        if mbar:  # drawn as the last point of its ladder below
            at_beta0.append(("MBAR", mbar["log_z"][-1], mbar["log_z_err"][-1], None, None, None))
        if result:
            at_beta0.append(("TI", result["log_z"], result["log_z_err"], "s", "tab:red",
                             "TI (Simpson)"))
        if importance:
            at_beta0.append(("IS", importance["log_z"], importance["log_z_err"], "D", "tab:green",
                             f"importance sampling (ESS {importance['ess']:.0f} of "
                             f"{importance['n']})"))
        title = r"$\ln Z(\beta_0)$: " + ", ".join(f"{n} {v:.3f} ± {e:.3f}"
                                                 for n, v, e, *_ in at_beta0)
        if exact is None:  # no curve to subtract: the estimates at beta0, against the first
            first = at_beta0[0][1]
            for k, (_, value, err, *_) in enumerate(at_beta0):
                ax.errorbar([k], [value - first], yerr=[err], fmt="o", capsize=4, color=f"C{k}")
            ax.axhline(0.0, color="0.6", lw=0.8)
            ax.set_xticks(range(len(at_beta0)), [n for n, *_ in at_beta0])
            ax.set(ylabel=rf"$\ln Z - \ln Z_{{\rm {at_beta0[0][0]}}}$", title=title)
            fig.tight_layout()
            return fig
        if mbar:
            betas, log_z = np.asarray(mbar["betas"]), np.asarray(mbar["log_z"])
            ax.errorbar(betas, log_z - np.asarray(mbar["exact_log_z"]), yerr=mbar["log_z_err"],
                        fmt="o", ms=3, capsize=2,
                        label=f"MBAR ({mbar['anchor']} anchor, {mbar['runs']} runs; min. "
                              f"neighbour overlap {mbar['overlap_min']:.3f})")
        beta0 = mbar["betas"][-1] if mbar else (result or importance)["beta0"]
        for _, value, err, fmt, color, label in at_beta0:
            if fmt:
                ax.errorbar([beta0], [value - exact["log_z"]], yerr=[err], fmt=fmt, color=color,
                            capsize=3, label=label)
        ax.axhline(0.0, color="k", lw=0.8, label="exact")
        ax.set(xlabel=r"$\beta$ (1/J)",
               ylabel=r"$\ln Z - \ln Z_{\rm exact}$", title=title)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def mixing_figure(result: dict) -> Figure:
    """The REMC mixing audit (`analysis.mixing.mixing_audit`): the aligned overlap q between
    snapshots k thinning intervals apart with 95% bootstrap intervals, against lag in sweeps;
    the independent-run baseline as a band (its 95% interval) around its mean."""
    sweeps = np.asarray(result["lag_sweeps"])
    q = np.asarray(result["q_mean"])
    lo, hi = np.asarray(result["q_ci95"]).T
    base = result["baseline"]
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    ax.axhspan(*base["ci95"], color="tab:orange", alpha=0.25,
               label=f"independent runs: {base['mean']:.4f} [{base['ci95'][0]:.4f}, "
                     f"{base['ci95'][1]:.4f}] ({base['sequences']} sequences)")
    ax.axhline(base["mean"], color="tab:orange", lw=1)
    ax.errorbar(sweeps, q, yerr=[q - lo, hi - q], fmt="o-", capsize=3, color="tab:blue",
                label=f"snapshots k apart ({result['sequences']} sequences, 95% CI)")
    d = result["lag1_minus_baseline"]
    verdict = "decorrelated" if result["decorrelated"] else "NOT decorrelated"
    ax.set(xlabel=f"lag (sweeps; thinning {result['thinning']})",
           ylabel="aligned overlap q (best O(3) alignment)",
           title=f"REMC mixing: lag 1 - independent = {d['mean']:+.4f} "
                 f"[{d['ci95'][0]:+.4f}, {d['ci95'][1]:+.4f}] ({verdict})")
    if len(sweeps) <= 20:
        ax.set_xticks(sweeps)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
