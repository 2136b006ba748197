"""Figures of molecular runs: numbers in, matplotlib figure out."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from spinscore.report.figures import plt


def ramachandran_free_energy(phi: np.ndarray, psi: np.ndarray, bins: int = 60
                             ) -> tuple[np.ndarray, np.ndarray]:
    """Free energy −ln p(φ, ψ) in kT, shifted to a minimum of 0 (NaN where no frame fell).

    Args:
        phi, psi: (...) degrees in (−180, 180].
        bins: bins per angle.

    Returns:
        (bins, bins) free energy indexed [φ bin, ψ bin], and the (bins + 1,) bin edges, degrees.
    """
    from spinscore.molecules.ramachandran import ramachandran_histogram

    with np.errstate(divide="ignore"):
        f = -np.log(ramachandran_histogram(phi, psi, bins))
    f[~np.isfinite(f)] = np.nan
    return f - np.nanmin(f), np.linspace(-180.0, 180.0, bins + 1)


def ramachandran_axes(ax, phi: np.ndarray, psi: np.ndarray, title: str, vmax: float = 8.0):
    """Draw the free-energy map of (φ, ψ) on `ax`; returns the mesh (for a colour bar)."""
    f, edges = ramachandran_free_energy(phi, psi)
    mesh = ax.pcolormesh(edges, edges, f.T, cmap="viridis", vmin=0, vmax=vmax, shading="flat")
    ax.set(xlabel="φ (°)", ylabel="ψ (°)", title=title, xlim=(-180, 180), ylim=(-180, 180),
           aspect="equal")
    ax.set_xticks(range(-180, 181, 90))
    ax.set_yticks(range(-180, 181, 90))
    return mesh


def md_check_figure(phi: np.ndarray, psi: np.ndarray, nve_time_ps: np.ndarray | None,
                    nve_energy: np.ndarray | None, kinetic_T: np.ndarray, bath_T: float,
                    bond_lengths: dict[str, np.ndarray], title: str) -> Figure:
    """The MD validation figure: Ramachandran free energy, the NVE total-energy trace, the
    kinetic temperature of each trajectory, and bond-length distributions by element pair.

    Args:
        phi, psi: (T, F) degrees.
        nve_time_ps, nve_energy: (R,) ps and kJ/mol, or None when no NVE check was run.
        kinetic_T: (T,) kinetic temperature of each trajectory, K.
        bath_T: the thermostat's temperature, K.
        bond_lengths: bond type, the pair of amber classes (e.g. "CT-HC") -> (...) bond lengths, nm.
    """
    fig, axes = plt.subplots(1, 4, figsize=(19, 4.4))
    mesh = ramachandran_axes(axes[0], phi, psi, "(a) Ramachandran free energy")
    fig.colorbar(mesh, ax=axes[0], label="−ln p (kT)")
    ax = axes[1]
    if nve_energy is not None:
        ax.plot(nve_time_ps, nve_energy - nve_energy[0], lw=0.8)
        ax.set(xlabel="time (ps)", ylabel="E − E(0) (kJ/mol)")
    ax.set_title("(b) total energy without thermostat (NVE)")
    ax = axes[2]
    ax.plot(np.arange(len(kinetic_T)), kinetic_T, "o")
    ax.set_xticks(np.arange(len(kinetic_T)))
    ax.axhline(bath_T, color="k", ls="--", lw=1, label=f"bath {bath_T:g} K")
    ax.set(xlabel="trajectory", ylabel="kinetic temperature (K)",
           title="(c) kinetic temperature per trajectory")
    ax.legend()
    ax = axes[3]
    for name, r in sorted(bond_lengths.items()):
        ax.hist(np.ravel(r), bins=80, histtype="step", density=True, label=name)
    ax.set(xlabel="bond length (nm)", ylabel="density", title="(d) bond lengths")
    ax.legend(fontsize=7, ncol=2)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def loss_figure(steps: np.ndarray, loss: np.ndarray) -> Figure:
    """The denoising loss (per degree of freedom) against the optimiser step. Its level is set
    by the noise (1/2 for a zero score); the learning shows as the small decrease below it."""
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(steps, loss, lw=1)
    ax.set(xlabel="optimiser step", ylabel="DSM loss per degree of freedom",
           title="training loss (log-spaced noise levels)")
    fig.tight_layout()
    return fig


def readout_figure(score: np.ndarray, target: np.ndarray, fits: dict, tables: dict[str, list],
                   title: str) -> Figure:
    """The molecular readout: (a) the network's score against beta x OpenMM's force, component
    by component; (b) bond force constants read back against amber14's, (c) bond lengths r0 and
    (d) angles theta0, each fit's error per type.

    Args:
        score, target: (M, n, 3) nm^-1.
        fits: fit name -> coefficients (only the names are used, for the legend order).
        tables: fit name -> rows {"family", "name", "value", "true", "error", ...}.
    """
    fig, axes = plt.subplots(1, 4, figsize=(19, 4.4))
    ax = axes[0]
    p, t = np.ravel(score), np.ravel(target)
    keep = np.random.default_rng(0).choice(p.size, size=min(p.size, 20_000), replace=False)
    ax.plot(t[keep], p[keep], ",", alpha=0.5)
    lim = np.percentile(np.abs(t), 99.5)
    ax.plot([-lim, lim], [-lim, lim], "k--", lw=1)
    ax.set(xlim=(-lim, lim), ylim=(-lim, lim), xlabel="β F (OpenMM), nm⁻¹",
           ylabel="network score, nm⁻¹", title="(a) zero-noise score against β × force")
    markers = dict(zip(fits, ("o", "s", "x", "^"), strict=False))
    for ax, family, name, label in ((axes[1], "bond", "k", "bond k (kJ/mol/nm²), amber"),
                                    (axes[2], "bond", "r0", "bond r0 error (nm)"),
                                    (axes[3], "angle", "theta0", "angle θ0 error (°)")):
        for fit in fits:
            rows = [r for r in tables[fit] if r["family"] == family and r["name"] == name]
            if name == "k":
                ax.plot([r["true"] for r in rows], [abs(r["value"]) for r in rows],
                        markers[fit], label=fit, mfc="none")
            else:
                ax.plot(range(len(rows)), [r["error"] for r in rows], markers[fit], label=fit,
                        mfc="none")
        if name == "k":
            ks = [r["true"] for r in tables[next(iter(fits))] if r["family"] == family
                  and r["name"] == name]
            ax.plot([min(ks), max(ks)], [min(ks), max(ks)], "k--", lw=1)
            ax.set(xlabel="amber14", ylabel="read back", title=f"(b) {label}")
        else:
            bound = 0.002 if name == "r0" else 2.0
            for sign in (-1, 1):
                ax.axhline(sign * bound, color="k", ls=":", lw=1)
            ax.set(xlabel=f"{family} type", ylabel="read back − amber14",
                   title=f"({'c' if name == 'r0' else 'd'}) {label}")
            errors = [abs(r["error"]) for f in fits for r in tables[f]
                      if r["family"] == family and r["name"] == name]
            limit = max(5 * bound, 1.1 * max(errors, default=0.0))
            ax.set_ylim(-limit, limit)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def generation_figure(dihedrals: dict, values: dict, result: dict) -> Figure:
    """Generation against MD from the same frames: (a, b) Ramachandran free energies, (c)
    basin populations, (d) bond lengths and (e) angles about each coordinate's MD mean, (f)
    each bond's and angle's spread, model over MD.

    Args:
        dihedrals: "md" and "model" -> (phi, psi), each (L, B) degrees.
        values: "md" and "model" -> (bond lengths (L, B, n_bonds) nm, angles (L, B, n_angles) °).
        result: generation.json's numbers (js_divergence, js_floor, populations).
    """
    fig, axes = plt.subplots(2, 3, figsize=(15, 9))
    for ax, name, label in ((axes[0, 0], "md", "(a) MD"), (axes[0, 1], "model", "(b) model")):
        mesh = ramachandran_axes(ax, *dihedrals[name], f"{label}, same starts")
    fig.colorbar(mesh, ax=axes[0, 1], label="−ln p (kT)")
    ax = axes[0, 2]
    basins = list(result["populations"]["md"])
    for shift, name in ((-0.2, "md"), (0.2, "model")):
        pop = result["populations"][name]
        ax.bar(np.arange(len(basins)) + shift, [pop[b]["mean"] for b in basins], width=0.4,
               yerr=[pop[b]["stderr"] for b in basins], label=name, capsize=3)
    ax.set_xticks(np.arange(len(basins)), basins)
    ax.set(yscale="log", ylim=(1e-4, 1.5), ylabel="population",
           title=f"(c) basins; JS {result['js_divergence']:.3f} "
                 f"(sampling floor {result['js_floor']:.3f})")
    ax.legend()
    for ax, k, unit, label in ((axes[1, 0], 0, "nm", "(d) bond lengths"),
                               (axes[1, 1], 1, "°", "(e) bond angles")):
        centre = values["md"][k].reshape(-1, values["md"][k].shape[-1]).mean(0)
        for name in ("md", "model"):
            ax.hist(np.ravel(values[name][k] - centre), bins=100, histtype="step",
                    density=True, label=name)
        ax.set(xlabel=f"value − MD mean of its coordinate ({unit})", ylabel="density", title=label)
        ax.legend()
    ax = axes[1, 2]
    for k, name in ((0, "bonds"), (1, "angles")):
        g = values["model"][k].reshape(-1, values["model"][k].shape[-1]).std(0)
        m = values["md"][k].reshape(-1, values["md"][k].shape[-1]).std(0)
        ax.plot(m / m.max(), g / m, "o", mfc="none", label=name)
    ax.axhline(1.0, color="k", ls="--", lw=1)
    ax.set(xlabel="MD spread of the coordinate (relative to the widest)",
           ylabel="spread, model / MD", title="(f) spread of each bond and angle")
    ax.legend()
    fig.suptitle(f"Langevin dynamics with the learned force: {result['chains']} chains × "
                 f"{result['picoseconds']:g} ps from held-out MD frames; kinetic temperature "
                 f"{result['kinetic_temperature']['model']:.1f} K "
                 f"(bath {result['kinetic_temperature']['bath']:g} K)")
    fig.tight_layout()
    return fig
