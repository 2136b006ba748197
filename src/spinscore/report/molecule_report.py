"""The report of a molecular run: metrics.json and report.html from the stages' JSON and PNGs."""

from __future__ import annotations

import json
from pathlib import Path

from spinscore.io import atomic_write_bytes
from spinscore.report.build import STYLE, environment
from spinscore.report.html import img, table
from spinscore.report.tables import plus_minus

SECTOR_ORDER = ("bond", "angle", "proper", "improper", "lj", "coulomb", "lj14", "coulomb14")


def _load(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def collect_molecule_metrics(run_dir: Path, records: dict[str, dict]) -> dict:
    """The content of metrics.json: each stage's numbers, the targets, the times."""
    readout = _load(run_dir / "readout" / "readout.json")
    if readout is not None:
        readout.pop("parameter_tables", None)
    metrics = {"md_check": _load(run_dir / "inspect" / "md_check.json"),
               "training": _load(run_dir / "train" / "train_summary.json"),
               "readout": readout,
               "generation": _load(run_dir / "generate" / "generation.json"),
               "stage_seconds": {name: r["seconds"] for name, r in records.items()},
               "environment": environment()}
    metrics["total_seconds"] = sum(metrics["stage_seconds"].values())
    return metrics


def _readout_rows(readout: dict) -> list[list]:
    total = readout["network_total"]
    rows = [["total (network score vs β F)", f"{total['cosine']:.4f} / {total['nrmse']:.3f}",
             "", ""]]
    for family in SECTOR_ORDER:
        cells = []
        for fit in ("network", "score_matching", "oracle"):
            s = readout[fit]["sectors"].get(family)
            cells.append("–" if s is None else f"{s['cosine']:.4f} / {s['nrmse']:.3f}")
        rows.append([family, *cells])
    return rows


def _identifiability_paragraph(ident: dict) -> str:
    """Bias or variance: the noise-equivalent parameters and the sloppiest error direction."""
    ne = ident["noise_equivalent"]
    top = ident["directions"][0]
    names = ", ".join(name for name, _ in top["columns"][:4])
    return ("<p>Bias or variance? The exact force plus iid noise of the network's rms error "
            f"({ident['residual_rms']:.3g} kJ/mol/nm) reads θ0 worst "
            f"{ne['angle_theta0_deg']['worst']:.2f}°, r0 worst {ne['bond_r0_nm']['worst']:.4f} nm, "
            f"k worst {max(ne['bond_k_relative']['worst'], ne['angle_k_relative']['worst']):.1%}: "
            "what an unbiased network of the same accuracy would give. "
            f"{ident['share_in_sloppiest'].get('5', 0):.0%} of the network's coefficient error "
            "lies in the 5 sloppiest directions of the basis; the largest share "
            f"({top['share']:.0%}, eigenvalue {top['eigenvalue']:.1e} of the largest) along "
            f"{names}.</p>")


def build_molecule_report(run_dir: str | Path, records: dict[str, dict]) -> Path:
    """RUN_DIR/report.html and RUN_DIR/metrics.json of a molecular run."""
    run_dir = Path(run_dir)
    m = collect_molecule_metrics(run_dir, records)
    atomic_write_bytes(run_dir / "metrics.json", json.dumps(m, indent=2).encode())
    parts = ["<h1>spinscore: a molecule's force field read back from a score model</h1>"]
    md = m["md_check"]
    if md:
        t = md["kinetic_temperature"]
        e = md.get("energy_conservation", {})
        parts.append("<h2>Molecular dynamics</h2>" + table(
            ["check", "value"],
            [["frames", md["frames"]], ["simulated (ps)", md["simulated_ps"]],
             ["NVE fluctuation / kT sqrt(n_dof/2)", e.get("ratio")],
             ["kinetic temperature (K)",
              f"{plus_minus(t['mean'], t['stderr'], 2)} (bath {t['bath']:g})"],
             *[[f"basin {name}", plus_minus(b["mean"], b["stderr"], 4)]
               for name, b in md["basins"].items()]]))
        parts.append(img(run_dir / "inspect" / "md_check.png", "MD validation"))
    r = m["readout"]
    if r:
        parts.append("<h2>The force field read back</h2>"
                     f"<p>{r['frames']} held-out frames; the network read at σ = {r['sigma_nm']:g} "
                     f"nm; score matching on {r['fit_frames']} training frames. Cosine / NRMSE "
                     "of each sector against its OpenMM force group.</p>")
        parts.append(table(["sector", "network", "score matching (Network 2)", "oracle"],
                           _readout_rows(r)))
        rows = []
        for fit in ("network", "score_matching", "oracle"):
            p = r[fit]["parameters"]
            rows.append([fit, *(f"{p[k]['median']:.3g} / {p[k]['worst']:.3g}" if k in p else "–"
                                for k in ("bond_r0_nm", "bond_k_relative", "angle_theta0_deg",
                                          "angle_k_relative", "proper_V_relative"))])
        parts.append("<p>Parameters against amber14, median / worst over types.</p>" + table(
            ["fit", "bond r0 (nm)", "bond k (rel.)", "angle θ0 (°)", "angle k (rel.)",
             "torsion V (rel.)"], rows))
        ident = r["network"].get("identifiability")
        if ident:
            parts.append(_identifiability_paragraph(ident))
        if "solvent_share" in r:
            parts.append(f"<p>Solvent share of the force: {r['solvent_share']:.3f}.</p>")
        parts.append("<h3>Targets</h3>" + table(["target", "met"], _flat(r["met"])))
        parts.append(img(run_dir / "readout" / "readout.png", "readout"))
    g = m["generation"]
    if g:
        parts.append(_generation_section(g) + img(run_dir / "generate" / "generation.png",
                                                  "generation"))
    parts.append("<h2>Training</h2>" + img(run_dir / "train" / "loss_curve.png", "loss"))
    parts.append("<h2>Stage times</h2>" + table(
        ["stage", "seconds"], [[k, v] for k, v in m["stage_seconds"].items()]))
    parts.append("<h2>Environment</h2>" + table(
        ["item", "value"], [[k, v] for k, v in m["environment"].items()]))
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>spinscore molecule "
            f"report</title><style>{STYLE}</style></head><body>{''.join(parts)}</body></html>")
    atomic_write_bytes(run_dir / "report.html", page.encode())
    return run_dir / "report.html"


def _generation_section(g: dict) -> str:
    rows = [["Ramachandran JS divergence, model vs MD (nats)", f"{g['js_divergence']:.4f}"],
            ["sampling floor: even vs odd MD chains, scaled to the sizes compared",
             f"{g['js_floor']:.4f} ({g['js_md_halves']:.4f} × {g['js_floor_scale']:.2f})"]]
    for name in g["populations"]["md"]:
        md, model = g["populations"]["md"][name], g["populations"]["model"][name]
        rows.append([f"basin {name}: MD / model", f"{md['mean']:.4f} ± {md['stderr']:.4f} / "
                                                  f"{model['mean']:.4f} ± {model['stderr']:.4f}"])
    for key, unit in (("bond_lengths_nm", "nm"), ("angles_deg", "°")):
        d = g[key]
        rows.append([f"{key.split('_')[0]}: |mean difference| ({unit}), median / worst",
                     f"{d['mean_difference']['median']:.2g} / {d['mean_difference']['worst']:.2g}"])
        rows.append([f"{key.split('_')[0]}: |spread ratio − 1|, median / worst",
                     f"{d['std_relative_difference']['median']:.3f} / "
                     f"{d['std_relative_difference']['worst']:.3f}"])
    t = g["kinetic_temperature"]
    rows.append(["kinetic temperature of the chains (K)",
                 f"{t['model']:.1f} ± {t['stderr']:.1f} (bath {t['bath']:g})"])
    rows.append(["speed (ns/day, all chains)", f"{g['ns_per_day']:.2f}"])
    return ("<h2>Generation: Langevin dynamics with the learned force</h2>"
            f"<p>{g['chains']} chains of {g['picoseconds']:g} ps from frames of the held-out "
            "trajectories, against the MD that followed the same frames.</p>"
            + table(["quantity", "value"], rows))


def _flat(met: dict, prefix: str = "") -> list[list]:
    rows = []
    for key, value in met.items():
        if isinstance(value, dict):
            rows += _flat(value, f"{prefix}{key}: ")
        else:
            rows.append([prefix + key, value])
    return rows
