"""The report of a `spinscore reproduce` run: RUN_DIR/report.html (self-contained, figures
embedded) and RUN_DIR/metrics.json (every number of the report, machine-readable)."""

from __future__ import annotations

import html
import json
import os
import platform
from pathlib import Path

import numpy as np

from spinscore.analysis.paper_values import (
    DIRECT_W_HIGHER_IS_BETTER,
    PUBLISHED_METRICS,
    PUBLISHED_RATIOS,
    REVISED_DIRECT_W,
    REVISED_IDENTIFIABILITY,
    REVISED_MIXING,
    is_paper_system,
)
from spinscore.io import atomic_write_bytes
from spinscore.report.html import img as _img
from spinscore.report.html import table as _table
from spinscore.report.tables import DIRECT_W_NAMES
from spinscore.report.versions import paper_versions

# The quick preset's targets (readout issue): name -> (metrics.json path, test, bound). The
# couplings are judged on the readout extrapolated to t = 0.
TARGETS = {
    "cosine (t -> 0)": (("extraction", "extrapolated", "cosine"), ">=", 0.9995),
    "R^2 (t -> 0)": (("extraction", "extrapolated", "r2"), ">=", 0.97),
    "worst ratio error (t -> 0)": (("extraction", "extrapolated", "worst_ratio_error"), "<=",
                                   0.01),
    "scale / beta (t -> 0)": (("extraction", "extrapolated", "scale_over_beta"), ">=", 0.97),
    # the density issue's bounds: alpha to +-0.02 and ln Z within 1 %
    "partition relative gap": (("partition", "relative_gap"), "<=", 0.01),
    "partition relative gap, log-mean-exp plateau": (("partition", "relative_gap_lme"), "<=",
                                                     0.01),
    "partition alpha error": (("partition", "alpha_err"), "<=", 0.02),
    "model ln Z (reverse importance) vs TI, relative": (
        ("partition", "model_log_z", "relative_gap"), "<=", 0.01),
}
# The lattice and graph presets' targets (lattice issue); the classical estimators and the
# interaction profile are added in `collect_metrics`.
LATTICE_TARGETS = {
    "cosine (t -> 0)": (("extraction", "extrapolated", "cosine"), ">=", 0.999),
    "R^2 (t -> 0)": (("extraction", "extrapolated", "r2"), ">=", 0.95),
    "worst ratio error (t -> 0)": (("extraction", "extrapolated", "worst_ratio_error"), "<=",
                                   0.03),
    "profile decades beyond range (t -> 0)": (
        ("interaction_profile", "extrapolated", "decades_beyond_range"), ">=", 2.0),
    # the same bound on the couplings the network's force carries (extract --shells), which
    # leaves out what W puts into no force
    "profile decades beyond range, force readout (t -> 0)": (
        ("extraction", "shell_profile", "decades_beyond_range"), ">=", 2.0),
    "run time (s)": (("total_seconds",), "<=", 1200.0),
}
CLASSICAL = ("pseudolikelihood", "score-matching")


def environment() -> dict:
    """Versions and hardware of this process."""
    import numba
    import numpy
    import scipy
    import torch

    from spinscore import __version__
    from spinscore.io import git_commit

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"spinscore": __version__, "commit": git_commit(), "python": platform.python_version(),
            "torch": torch.__version__, "numpy": numpy.__version__, "numba": numba.__version__,
            "scipy": scipy.__version__, "platform": platform.platform(), "cpu": cpu,
            "cpu_count": os.cpu_count(), "gpu": gpu}


def _load(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def _get(d: dict, keys: tuple[str, ...]):
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def collect_metrics(run_dir: Path, records: dict[str, dict]) -> dict:
    """Gather the stages' JSON outputs into one dict (the content of metrics.json)."""
    ex = run_dir / "extract"
    metrics = {
        "extraction": _load(ex / "network" / "extraction.json"),
        "oracle": _load(ex / "oracle" / "extraction.json"),
        "classical": {m: _load(ex / m / "extraction.json") for m in CLASSICAL},
        "interaction_profile": _load(ex / "network" / "interaction_profile.json"),
        "ood": _load(run_dir / "ood" / "ood.json"),
        "partition": _load(run_dir / "partition" / "partition.json"),
        "thermo": _load(run_dir / "thermo" / "thermo.json"),
        "generate": _load(run_dir / "generate" / "generate.json"),
        "training": _load(run_dir / "train" / "train_summary.json"),
        "dataset": _load(run_dir / "inspect" / "dataset_summary.json"),
        "published": {"ratios": PUBLISHED_RATIOS, **PUBLISHED_METRICS},
        "published_measured": _load(run_dir / "extract_published" / "extraction.json"),
        "revised_release": {"direct_w": REVISED_DIRECT_W,
                            "identifiability": REVISED_IDENTIFIABILITY,
                            "mixing": REVISED_MIXING},
        "mixing": _load(run_dir / "mixing" / "mixing.json"),
        "stage_seconds": {name: r["seconds"] for name, r in records.items()},
        "environment": environment(),
    }
    metrics["total_seconds"] = sum(metrics["stage_seconds"].values())
    checks = {}
    chain = (_get(metrics, ("dataset", "geometry")) or "chain") == "chain"
    for name, (keys, op, bound) in (TARGETS if chain else LATTICE_TARGETS).items():
        value = _get(metrics, keys)
        ok = None if value is None else (value >= bound if op == ">=" else value <= bound)
        checks[name] = {"value": value, "target": f"{op} {bound}", "met": ok}
    if not chain:
        for method, result in metrics["classical"].items():
            if result is not None:
                value = worst_relative_error(result["estimate"], result["truth"])
                checks[f"{method}: worst coupling error"] = {
                    "value": value, "target": "<= 0.01", "met": value <= 0.01}
    for name, entry in ((metrics["ood"] or {}).get("sets") or {}).items():
        if "auc" in entry:
            checks[f"OOD AUC {name}"] = {"value": entry["auc"], "target": ">= 0.95",
                                         "met": entry["auc"] >= 0.95}
    for key, label in (("mbar_minus_ti", "MBAR"), ("importance_minus_ti", "importance sampling")):
        d = (metrics["thermo"] or {}).get(key)
        if d and d.get("in_sigma") is not None:  # the routes agree within their error bars
            checks[f"ln Z: {label} - TI (combined sigma)"] = {
                "value": d["in_sigma"], "target": "<= 2", "met": d["in_sigma"] <= 2}
    trust = (metrics["ood"] or {}).get("trust")
    if trust:
        best = max((v for v in trust["auc_unreliable"].values() if v is not None), default=None)
        checks["trust flag: best AUC for unreliable configurations"] = {
            "value": best, "target": ">= 0.9", "met": None if best is None else best >= 0.9}
        for name, entry in trust["sets"].items():
            if "drift_auc" in entry:
                flag = max(entry["drift_auc"], key=lambda k: entry["drift_auc"][k])
                value = entry["drift_auc"][flag]
                checks[f"drift AUC {name} (best: {flag})"] = {
                    "value": value, "target": ">= 0.95", "met": value >= 0.95}
    direct = _get(metrics, ("extraction", "direct_w"))
    extraction = metrics.get("extraction") or {}
    if direct and is_paper_system(extraction["parameters"], extraction["truth"]):
        beaten = [k for k in DIRECT_W_NAMES
                  if direct[k] is not None and _better(k, direct[k], REVISED_DIRECT_W[k])]
        checks["direct-W metrics better than the revised release"] = {
            "value": f"{len(beaten)} of {len(DIRECT_W_NAMES)}", "target": "all",
            "met": len(beaten) == len(DIRECT_W_NAMES)}
    metrics["targets"] = checks
    return metrics


def worst_relative_error(estimate: list[float], truth: list[float]) -> float:
    """max |estimate / truth - 1| over the nonzero true couplings (both in units of J)."""
    est, true = np.asarray(estimate, float), np.asarray(truth, float)
    nonzero = true != 0
    return float(np.max(np.abs(est[nonzero] / true[nonzero] - 1.0)))


def _better(key: str, ours: float, theirs: float) -> bool:
    return ours > theirs if key in DIRECT_W_HIGHER_IS_BETTER else ours < theirs


def _ratio_rows(m: dict) -> list[list]:
    ours = m["extraction"]
    classical = {k: v for k, v in m["classical"].items() if v}
    paper = is_paper_system(ours["parameters"], ours["truth"])
    rows = []
    for k, name in enumerate(ours["parameters"]):
        row = [name, ours["truth"][k], ours["ratio_truth"][k],
               PUBLISHED_RATIOS[name] if paper else None, ours["ratio_estimate"][k]]
        ci = _get(ours, ("bootstrap_ci95", "ratio_estimate"))
        row.append(f"[{ci[0][k]:+.3f}, {ci[1][k]:+.3f}]" if ci else "–")
        row += [c["ratio_estimate"][k] for c in classical.values()]
        row += [c["estimate"][k] for c in classical.values()]
        rows.append(row)
    return rows


STYLE = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
         "table{border-collapse:collapse;margin:1em 0;display:block;overflow-x:auto}"
         "td,th{border:1px solid #bbb;"
         "padding:3px 8px;text-align:right}th{background:#eee}td:first-child{text-align:left}"
         "img{max-width:100%}figcaption{font-size:90%;color:#555}.missing{color:#a00}")


def build_report(run_dir: str | Path, records: dict[str, dict]) -> Path:
    """Write RUN_DIR/metrics.json and RUN_DIR/report.html from the stage outputs."""
    run_dir = Path(run_dir)
    m = collect_metrics(run_dir, records)
    atomic_write_bytes(run_dir / "metrics.json", json.dumps(m, indent=2).encode())
    parts = [f"<h1>spinscore reproduction: {html.escape(run_dir.name)}</h1>",
             f"<p>Generated {html.escape(records.get('train', {}).get('finished', ''))}; "
             f"total stage time {m['total_seconds'] / 60:.1f} min.</p>",
             "<h2>Targets</h2>" + _table(
                 ["quantity", "value", "target", "met"],
                 [[k, v["value"], v["target"], v["met"]] for k, v in m["targets"].items()])]
    if m["extraction"]:
        parts.append(_extraction_section(m))
    parts.append(paper_versions(m, run_dir))
    parts.append("<h2>Interaction profile</h2>" + _img(
        run_dir / "extract" / "network" / "interaction_profile.png", "mean |W_ij| against |i-j|"))
    parts += [_partition_section(m, run_dir), _thermo_section(m, run_dir),
              _generate_section(m, run_dir),
              _ood_section(m, run_dir)]
    parts.append("<h2>Data set and training</h2>")
    parts.append(_img(run_dir / "inspect" / "dataset.png", "training data set (Fig. S1)"))
    parts.append(_img(run_dir / "train" / "loss_curve.png", "training loss"))
    parts.append("<h2>Stage times</h2>" + _table(
        ["stage", "seconds"], [[k, v] for k, v in m["stage_seconds"].items()]))
    parts.append("<h2>Environment</h2>" + _table(
        ["item", "value"], [[k, v] for k, v in m["environment"].items()]))
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>spinscore report</title>"
            f"<style>{STYLE}</style></head><body>{''.join(parts)}</body></html>")
    atomic_write_bytes(run_dir / "report.html", page.encode())
    return run_dir / "report.html"


def _extraction_section(m: dict) -> str:
    ex = m["extraction"]
    classical = [k for k, v in m["classical"].items() if v]
    parts = ["<h2>Table 1: couplings recovered from the network's zero-noise force</h2>",
             _table(["parameter", "J true", "ratio true", "ratio published",
                     "ratio ours (network)", "95% CI (bootstrap)"]
                    + [f"ratio {c}" for c in classical] + [f"J {c}" for c in classical],
                    _ratio_rows(m))]
    rows = [["published network (800k samples, GPU)", PUBLISHED_METRICS["cosine"],
             PUBLISHED_METRICS["r2"], PUBLISHED_METRICS["worst_ratio_error"], "≈0.3–0.5"]] \
        if is_paper_system(ex["parameters"], ex["truth"]) else []
    rows.append(["ours: network", ex["cosine"], ex["r2"], ex["worst_ratio_error"],
                 ex["scale_over_beta"]])
    for label, r in [(f"ours: {c}", m["classical"][c]) for c in classical] + [
            ("oracle (β × exact force)", m["oracle"])]:
        if r:
            rows.append([label, r["cosine"], r["r2"], r["worst_ratio_error"],
                         r["scale_over_beta"]])
    parts.append(_table(["method", "cosine", "R²", "worst ratio error", "scale / β"], rows))
    parts.append(f"<p>{ex['n_snapshots']} test snapshots of {ex['n_sequences']} sequences, "
                 f"{ex['n_equations']} equations, network queried at t = {ex['t_eval']:g}.</p>")
    return "".join(parts)


def _keyed_table(d: dict, keys: tuple[str, ...]) -> str:
    present = [k for k in keys if k in d]
    return _table(present, [[d[k] for k in present]])


def _partition_section(m: dict, run_dir: Path) -> str:
    parts = ["<h2>Partition function</h2>"]
    p = m["partition"]
    if p and "error" in p:
        parts.append(f"<p class='missing'>{html.escape(p['error'])}</p>")
    elif p:
        parts.append(_keyed_table(p, ("alpha", "alpha_err", "beta_eff", "plateau",
                                      "plateau_std", "log_z_ti", "log_z_ti_err", "gap",
                                      "relative_gap", "plateau_lme", "plateau_lme_err",
                                      "relative_gap_lme")))
        z = p.get("model_log_z")
        if z:
            parts.append(f"<p>The plateau is a mean of log p, which sits below −ln Z by the KL "
                         f"divergence between the data and the model (≈ half the variance of "
                         f"the invariant: {p['plateau_std'] ** 2 / 2:.2f} nats here); "
                         f"the log-mean-exp plateau (plateau_lme) is free of that bias. The "
                         f"model's own ln Z(β) by reverse importance on the "
                         f"{z['n']} configurations at the data temperature: "
                         f"{z['log_z']:.3f} ± {z['log_z_err']:.3f} (ESS {z['ess']:.1f}) "
                         f"against TI {z['log_z_ti']:.3f} ± {z['log_z_ti_err']:.3f}: relative "
                         f"gap {z['relative_gap']:.2%}.</p>")
        if p.get("at_t_min"):
            a = p["at_t_min"]
            parts.append(f"<p>log p is log p_0, one heat-equation step below the smallest "
                         f"trained time; the same analysis on log p at t_min: α = "
                         f"{a['alpha']:.4f} ± {a['alpha_err']:.4f}, relative gap "
                         f"{a['relative_gap']:.2%}.</p>")
    parts.append(_img(run_dir / "partition" / "partition.png",
                      "log p + αβE against E, with −ln Z(αβ) from thermodynamic integration"))
    return "".join(parts)


def _thermo_section(m: dict, run_dir: Path) -> str:
    t = m.get("thermo")
    if not t:
        return ""
    exact = (t.get("exact") or {}).get("log_z")
    rows = [["thermodynamic integration", t["log_z"], t["log_z_err"], "", ""]]
    if t.get("mbar"):
        mbar = t["mbar"]
        d = t.get("mbar_minus_ti", {})
        rows.append(["MBAR (REMC ladder)", mbar["log_z"][-1], mbar["log_z_err"][-1],
                     d.get("in_sigma"), ""])
    if t.get("importance"):
        imp = t["importance"]
        d = t.get("importance_minus_ti", {})
        rows.append(["importance sampling (model)", imp["log_z"], imp["log_z_err"],
                     d.get("in_sigma"), f"{imp['ess']:.1f} of {imp['n']}"])
    if exact is not None:
        rows.append(["exact (nearest-neighbour chain)", exact, 0.0, "", ""])
    return ("<h2>ln Z by three routes</h2>"
            f"<p>Sequence {html.escape(str(t['sequence']))} (L = {t['length']}) at β = "
            f"{t['beta0']:g}.</p>"
            + _table(["route", "ln Z", "error", "|− TI| / σ", "ESS"], rows)
            + _img(run_dir / "thermo" / "thermo.png", "ln Z and ⟨E⟩ along β by each route"))


def _generate_section(m: dict, run_dir: Path) -> str:
    parts = ["<h2>Generated chains</h2>"]
    if m["generate"]:
        parts.append(_keyed_table(m["generate"], (
            "sequence", "method", "n_generated", "n_reference", "mean_generated",
            "mean_reference", "std_generated", "std_reference", "wasserstein", "ks_statistic",
            "chirality_reversals_generated", "chirality_reversals_reference")))
    for png in sorted((run_dir / "generate").glob("*.png")):
        parts.append(_img(png, "energy histogram: generated chains against REMC"))
    return "".join(parts)


def _ood_section(m: dict, run_dir: Path) -> str:
    parts = ["<h2>Out-of-distribution flag</h2>"]
    if m["ood"]:
        parts.append(_table(
            ["set", "configurations", "EV median", "EV 5%", "θ median", "AUC (EV)", "AUC (θ)",
             "AUC (combined)"],
            [[name, s["configurations"], s["ev_median"], s["ev_q05"], s.get("theta_median"),
              s.get("auc_explained_variance"), s.get("auc_configurational_temperature"),
              s.get("auc")] for name, s in m["ood"]["sets"].items()]))
    parts.append(_img(run_dir / "ood" / "ood.png", "OOD flag distributions and ROC curves"))
    trust = (m["ood"] or {}).get("trust")
    if trust:
        flags = list(trust["auc_unreliable"])
        parts.append(f"<h3>Trust flag</h3><p>{trust['unreliable']} of {trust['pool']} "
                     f"configurations unreliable: force error above "
                     f"{trust['threshold']:.4g} (twice the in-distribution median).</p>")
        rows = [["AUC for unreliable", "", "", *trust["auc_unreliable"].values()]]
        rows += [[name, s["error_median"], s["unreliable_fraction"],
                  *(s.get("drift_auc", {}).get(f) for f in flags)]
                 for name, s in trust["sets"].items()]
        parts.append(_table(["set", "median error", "unreliable share",
                             *(f"drift AUC ({f})" for f in flags)], rows))
        parts.append(_img(run_dir / "ood" / "trust.png",
                          "relative force error against each trust flag"))
    return "".join(parts)
