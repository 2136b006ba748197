"""Plain-text tables of the readouts, for the command line (the HTML report has its own)."""

from __future__ import annotations

from spinscore.analysis.paper_values import REVISED_DIRECT_W, is_paper_system

DIRECT_W_NAMES = {
    "pearson": "Pearson(W, J) over the support",
    "a_star_over_beta": "a*/beta (class-balanced scale)",
    "class_ratio_relative_rms": "class-ratio relative RMS",
    "pointwise_relative_rmse": "pointwise relative RMSE",
    "configuration_relative_rms": "configuration-relative RMS",
    "support_share": "support share of sum |W|",
}


def plus_minus(value: float, error: float | None, digits: int) -> str:
    """"value ± error" to `digits` decimals; the value alone without an error (None)."""
    return f"{value:.{digits}f}" + ("" if error is None else f" ± {error:.{digits}f}")


def direct_w_table(direct: dict, paper: bool) -> str:
    head = f"direct-W at t = {direct['t_eval']:g}"
    lines = [f"{head:<36} {'ours':>9} {'revised release':>16}"]
    for key, name in DIRECT_W_NAMES.items():
        quoted = f"{REVISED_DIRECT_W[key]:>16.4g}" if paper else f"{'-':>16}"
        ours = f"{'-':>9}" if direct[key] is None else f"{direct[key]:>9.4f}"
        lines.append(f"{name:<36} {ours} {quoted}")
    return "\n".join(lines)


def extrapolated_table(ext: dict) -> str:
    se = ext.get("bootstrap_se", {})
    lines = [f"extrapolated to t = 0 from t = {', '.join(f'{t:g}' for t in ext['times'])}"
             f" (c(t) = c0 / (1 + kappa t) per class)"]
    for k, name in enumerate(ext["parameters"]):
        err = f" +- {se['ratio_estimate'][k]:.4f}" if se else ""
        lines.append(f"  {name:<8} ratio {ext['ratio_estimate'][k]:+.4f}{err} (truth "
                     f"{ext['ratio_truth'][k]:+.3f})   kappa {ext['kappa'][k]:7.2f}")
    sob = ext["scale_over_beta"]
    sob_err = f" +- {se['scale'] / ext['beta']:.4f}" if se else ""
    lines.append(f"  cosine {ext['cosine']:.5f}   R^2 {ext['r2']:.4f}   worst ratio error "
                 f"{ext['worst_ratio_error']:.4f}   scale/beta {sob:.4f}{sob_err}")
    return "\n".join(lines)


def readout_summary(result: dict) -> str:
    """Direct-W, the readout against t, its extrapolation and the identifiability audit."""
    paper = is_paper_system(result["parameters"], result["truth"])
    parts = [direct_w_table(result["direct_w"], paper)]
    rows = [f"{'t':>8} {'cosine':>9} {'R^2':>7} {'worst ratio err':>16} {'scale/beta':>11}"]
    for r in result["readout_by_t"]:
        rows.append(f"{r['t']:>8.2g} {r['cosine']:>9.5f} {r['r2']:>7.4f} "
                    f"{r['worst_ratio_error']:>16.4f} {r['scale_over_beta']:>11.4f}")
    parts.append("OLS readout against t\n" + "\n".join(rows))
    if "extrapolated" in result:
        parts.append(extrapolated_table(result["extrapolated"]))
    ident = result["identifiability"]["gram"]
    parts.append(f"identifiability: condition number of X {ident['condition_number']:.3f} "
                 f"(revised release 3.81), weakest direction "
                 f"[{', '.join(f'{v:.3f}' for v in ident['weakest'])}], cosine to J "
                 f"{ident['weakest_cosine_to_truth']:.4f}")
    return "\n\n".join(parts)


def shell_profile_table(profile: dict, method: str) -> str:
    """`coupling_profile` as text: mean |estimate|, mean standard error and largest z by shell."""
    has_z = "max_z" in profile
    what = (f"the network's force, extrapolated to t = 0 from t = "
            f"{', '.join(f'{t:g}' for t in profile['times'])}" if "times" in profile else method)
    lines = [f"couplings by shell ({what}; true range {profile['true_range']}): mean |estimate|"
             + ("   mean s.e.   max |z|" if has_z else "")]
    for k, d in enumerate(profile["distance"]):
        z = f"   {profile['mean_se'][k]:9.4f}   {profile['max_z'][k]:6.2f}" if has_z else ""
        lines.append(f"  shell {d:<3} {profile['mean_abs'][k]:12.4f}{z}")
    dec = profile["decades_beyond_range"]
    if dec is not None:
        lines.append(f"falls {dec:.2f} decades beyond the true range")
    return "\n".join(lines)
