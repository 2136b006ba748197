"""`spinscore extract`: couplings from a force oracle on every test snapshot (SPEC §6).

Methods: `network` (the frozen score model at t_eval), `oracle` (beta x the exact tangent force:
checks the design matrix end to end), and the classical estimators of `baselines`.
"""

from __future__ import annotations

import numpy as np
import torch

from spinscore.analysis.batches import dataset_system, network_field, snapshot_batches
from spinscore.analysis.inversion import (
    NormalEquations,
    coupling_metrics,
    design_matrix,
    system_design,
    system_layout,
)
from spinscore.analysis.paper_values import PUBLISHED_METRICS, PUBLISHED_RATIOS, is_paper_system
from spinscore.analysis.readout import DirectWStats, extrapolated_readout
from spinscore.io import Dataset
from spinscore.physics.hamiltonian import system_classes, system_couplings, system_tangent_force


def accumulate(ds: Dataset, force_fn, batch_size: int = 128, progress: bool = True,
               desc: str = "extract") -> NormalEquations:
    """Run `force_fn(spins, types, seq)` -> (B, N, 3) over all snapshots (cropped batches) and
    accumulate the normal equations per sequence, the design matrix in the layout of the data
    set's system (`inversion.system_design`)."""
    sites = dataset_system(ds.config.system)
    n_params = sites.n_parameters
    eqs = NormalEquations.zeros(ds.n_sequences, n_params)
    for b in snapshot_batches(ds, batch_size, progress, desc):
        y = force_fn(b.spins, b.types, b.seq)
        eqs.add(b.seq, system_design(sites, b.spins, b.types, n_params), y, b.mask)
    return eqs


def oracle_force(ds: Dataset):
    """beta x exact tangent force of the data set's system, as a force function for
    `accumulate`: (spins (B, N, 3), types (B, N), seq) -> (B, N, 3)."""
    table, beta = ds.config.system.coupling_table(), ds.config.system.beta
    sites = dataset_system(ds.config.system)

    def force(spins, types, seq):
        return beta * system_tangent_force(sites, spins, system_couplings(sites, types, table))
    return force


def describe(estimate: np.ndarray, r2: float | None, ds: Dataset, method: str, unit: float,
             xtx: np.ndarray) -> dict:
    """The metrics of one coupling estimate.

    `unit` is what the estimate was divided by: 1 for force fields in score units (network,
    oracle: estimate ~ beta J x attenuation), beta for the classical estimators (estimate = J).
    `scale_over_beta` is the fitted estimate/truth in score units over beta (1 = no attenuation).
    The force R^2 compares the force field of the estimate with the true one, rescaled by the
    fitted scale, on the test configurations: 1 - |X (c - s c*)|^2 / |X s c*|^2, with
    |X v|^2 = v^T (X^T X) v.
    """
    system = ds.config.system
    truth = system.parameter_vector()
    result = {"method": method, "parameters": system.parameter_names(),
              "estimate": np.asarray(estimate).tolist(), "truth": truth.tolist(),
              "units": "J" if unit != 1.0 else "score (beta J x attenuation)",
              "r2": None if r2 is None else float(r2), **coupling_metrics(estimate, truth),
              "beta": system.beta}
    result["scale_over_beta"] = result["scale"] * unit / system.beta
    diff = estimate - result["scale"] * truth
    ref = result["scale"] * truth
    result["force_r2"] = float(1 - diff @ xtx @ diff / (ref @ xtx @ ref))
    result["n_sequences"] = ds.n_sequences
    result["n_snapshots"] = ds.n_sequences * ds.n_snapshots
    return result


def summarise(eqs: NormalEquations, ds: Dataset, method: str, n_boot: int = 200,
              seed: int = 0, unit: float = 1.0, with_r2: bool = True, **extra) -> dict:
    """`describe` the solution of the normal equations, with bootstrap 95% intervals over
    sequences (each resample solves the summed per-sequence equations)."""
    truth = ds.config.system.parameter_vector()
    est, r2 = eqs.solve()
    result = describe(est / unit, r2 if with_r2 else None, ds, method, unit, eqs.xtx.sum(0))
    result["n_equations"] = int(eqs.count.sum())
    rng = np.random.default_rng(seed)
    boots = {"estimate": [], "ratio_estimate": [], "cosine": [], "scale": []}
    if with_r2:
        boots["r2"] = []
    for _ in range(n_boot):
        w = np.bincount(rng.integers(0, ds.n_sequences, ds.n_sequences),
                        minlength=ds.n_sequences).astype(float)
        b_est, b_r2 = eqs.solve(w)
        m = coupling_metrics(b_est / unit, truth)
        boots["estimate"].append((b_est / unit).tolist())
        for key in ("ratio_estimate", "cosine", "scale"):
            boots[key].append(m[key])
        if with_r2:
            boots["r2"].append(b_r2)
    if n_boot:
        result["bootstrap_ci95"] = {
            k: np.percentile(np.asarray(v), [2.5, 97.5], axis=0).tolist() for k, v in boots.items()
        }
        result["bootstrap_se"] = {"estimate": np.std(boots["estimate"], axis=0).tolist()}
        result["bootstrap_samples"] = n_boot
    result.update(extra)
    return result


def ratio_table(result: dict) -> str:
    """The paper's Table 1: truth, published network, ours (ratios to the first parameter)."""
    names = result["parameters"]
    paper = is_paper_system(names, result["truth"])
    ci = result.get("bootstrap_ci95", {}).get("ratio_estimate")
    ci_head = "  95% CI (bootstrap)" if ci else ""
    lines = [f"{'parameter':<10} {'truth':>8} {'published':>10} {'ours':>9}{ci_head}"]
    for k, name in enumerate(names):
        pub = PUBLISHED_RATIOS[name] if paper else None
        pub_s = f"{pub:>10.3f}" if pub is not None else f"{'-':>10}"
        ci_s = f"[{ci[0][k]:+.3f}, {ci[1][k]:+.3f}]" if ci else ""
        lines.append(f"{name:<10} {result['ratio_truth'][k]:>8.3f} {pub_s} "
                     f"{result['ratio_estimate'][k]:>9.3f}  {ci_s}")
    r2 = "-" if result["r2"] is None else f"{result['r2']:.4f}"
    lines.append(f"cosine {result['cosine']:.5f}   R^2 {r2}   worst ratio error "
                 f"{result['worst_ratio_error']:.4f}   scale {result['scale']:.4g} "
                 f"(scale/beta in score units {result['scale_over_beta']:.3f})   force R^2 "
                 f"{result['force_r2']:.5f}")
    if paper:
        p = PUBLISHED_METRICS
        lines.append(f"published: cosine {p['cosine']}   R^2 {p['r2']}   worst ratio error "
                     f"{p['worst_ratio_error']}")
    return "\n".join(lines)


def quick_network_extraction(model, ds: Dataset, t_eval: float, batch_size: int = 128,
                             progress: bool = False) -> dict:
    """Network extraction without bootstrap (for monitoring during development)."""
    model.eval()

    def force(spins, types, seq):
        return network_field(model, spins, types, t_eval)[1].double().numpy()
    return summarise(accumulate(ds, force, batch_size, progress), ds, "network", n_boot=0,
                     t_eval=t_eval)


@torch.no_grad()
def network_readout(model, ds: Dataset, times: list[float], t_direct: float | None = None,
                    batch_size: int = 128, progress: bool = True
                    ) -> tuple[list[NormalEquations], DirectWStats | None]:
    """One pass over the test snapshots: the normal equations of the network's score at each
    of `times`, and the direct-W statistics of its couplings at `t_direct` (one of `times`)."""
    system, sites = ds.config.system, dataset_system(ds.config.system)
    n_params = sites.n_parameters
    eqs = [NormalEquations.zeros(ds.n_sequences, n_params) for _ in times]
    direct = None if t_direct is None else DirectWStats.for_system(
        system.parameter_vector(), ds.n_sequences, sites)
    for b in snapshot_batches(ds, batch_size, progress, "extract"):
        classes, pairs = system_layout(sites, b.types)
        x = design_matrix(b.spins, classes, n_params, pairs)
        for k, t in enumerate(times):
            w, y = network_field(model, b.spins, b.types, t)
            eqs[k].add(b.seq, x, y.double().numpy(), b.mask)
            if t == t_direct:
                direct.add(b.seq, w.double().numpy(), classes, b.mask, pairs)
    return eqs, direct


def summarise_extrapolated(eqs: list[NormalEquations], times: list[float], ds: Dataset,
                           n_boot: int = 200, seed: int = 0) -> dict:
    """`describe` the OLS readouts at `times` extrapolated to t = 0 (`readout`), with
    bootstrap 95% intervals and standard errors over sequences."""
    truth = ds.config.system.parameter_vector()
    c0, kappa, r2 = extrapolated_readout(eqs, times)
    result = describe(c0, r2, ds, "network extrapolated to t = 0", 1.0, eqs[0].total("xtx"))
    result.update(times=list(times), kappa=kappa.tolist())
    rng = np.random.default_rng(seed)
    keys = ("estimate", "ratio_estimate", "cosine", "scale", "worst_ratio_error", "r2")
    boots: dict[str, list] = {k: [] for k in keys}
    for _ in range(n_boot):
        w = np.bincount(rng.integers(0, ds.n_sequences, ds.n_sequences),
                        minlength=ds.n_sequences).astype(float)
        b_c0, _, b_r2 = extrapolated_readout(eqs, times, w)
        m = {"estimate": b_c0.tolist(), "r2": b_r2, **coupling_metrics(b_c0, truth)}
        for k in keys:
            boots[k].append(m[k])
    if n_boot:
        result["bootstrap_ci95"] = {k: np.percentile(np.asarray(v), [2.5, 97.5], axis=0).tolist()
                                    for k, v in boots.items()}
        result["bootstrap_se"] = {k: np.std(np.asarray(v), axis=0).tolist()
                                  for k, v in boots.items()}
        result["bootstrap_samples"] = n_boot
    return result


def readout_by_time(eqs: list[NormalEquations], times: list[float], ds: Dataset) -> list[dict]:
    """The single-t OLS readout at each time (no bootstrap): how the estimate moves with t."""
    rows = []
    for e, t in zip(eqs, times, strict=True):
        est, r2 = e.solve()
        d = describe(est, r2, ds, "network", 1.0, e.total("xtx"))
        rows.append({"t": t, **{k: d[k] for k in ("estimate", "ratio_estimate", "cosine", "r2",
                                                   "worst_ratio_error", "scale_over_beta")}})
    return rows


@torch.no_grad()
def interaction_profile(model, ds: Dataset, t_eval: float,
                        t_zero: tuple[float, float] | None = None, max_distance: int = 15,
                        max_snapshots: int = 2000, batch_size: int = 128) -> dict:
    """Mean |W_ij| and its quartiles against the pair feature d_ij = 1..max_distance the
    network sees (`SpinSystem.pair_features`: |i - j| on a chain, the paper's Fig. 2; the
    distance shell on a lattice; the shell, then n_shells + hops, on a graph), over the test
    snapshots (of the first sequences, `Dataset.head`, where there are more than
    `max_snapshots`). `true_range`: the largest d with a coupling.

    At t > 0 the heat kernel itself couples sites two bonds apart: the score of the smoothed
    density gains t/2 grad |grad log p|^2, pairs j, k with a common neighbour i at
    ~ t beta^2 J_ij J_ik, a share ~ t beta of the couplings (1 % at t = 1e-3, beta = 10). With
    `t_zero = (t1, t2)` the profile is also given of W extrapolated linearly to t = 0 from
    those two times, W0 = (t2 W(t1) - t1 W(t2)) / (t2 - t1), which removes that O(t) part
    ("extrapolated"). `decades_beyond_range`: log10 of the weakest mean |W| within the true
    range over the strongest beyond it.
    """
    sites = dataset_system(ds.config.system)
    keys = ["t_eval"] + (["t_zero"] if t_zero is not None else [])
    values: dict[str, list[list[np.ndarray]]] = {k: [[] for _ in range(max_distance)]
                                                 for k in keys}
    seen = 0
    ds = ds.head(max(1, max_snapshots // ds.n_snapshots))
    for b in snapshot_batches(ds, batch_size):
        n = b.spins.shape[1]
        w = {"t_eval": network_field(model, b.spins, b.types, t_eval)[0].numpy()}
        if t_zero is not None:
            w1, w2 = (network_field(model, b.spins, b.types, t)[0].numpy() for t in t_zero)
            w["t_zero"] = linear_to_zero(t_zero, w1, w2)
        feature = np.triu(sites.pair_features(n), k=1)  # each pair i < j once
        for d in range(1, max_distance + 1):
            i, j = np.nonzero(feature == d)  # row-major: on a chain, i ascending, j = i + d
            keep = b.mask[:, i] & b.mask[:, j]
            for k in keys:
                values[k][d - 1].append(np.abs(w[k][:, i, j])[keep])
        seen += len(b.seq)
    result = {**_profile_summary(values["t_eval"], sites.n_shells), "t_eval": t_eval,
              "snapshots": seen, "true_range": sites.n_shells,
              "distance_name": "|i - j|" if ds.config.system.geometry == "chain"
              else "pair feature (shell)"}
    if t_zero is not None:
        result["extrapolated"] = {**_profile_summary(values["t_zero"], sites.n_shells),
                                  "times": list(t_zero)}
    return result


def absent_classes(ds: Dataset) -> list[str]:
    """The coupling classes (shell and pair of types, `SystemConfig.parameter_names`) that no
    pair of any sample of `ds` belongs to: no readout can tell their value (a fixed site
    pattern can leave out a pair of types, chains too short a shell)."""
    classes = system_classes(dataset_system(ds.config.system), ds.types.astype(np.int64))
    present = set(np.unique(classes[classes >= 0]).tolist())
    return [name for k, name in enumerate(ds.config.system.parameter_names())
            if k not in present]


def linear_to_zero(times: tuple[float, float], at_t1, at_t2):
    """The straight line through (t1, a1) and (t2, a2) at t = 0: (t2 a1 - t1 a2) / (t2 - t1),
    which removes a part linear in t (the heat kernel's induced couplings). Any shapes."""
    t1, t2 = times
    return (t2 * at_t1 - t1 * at_t2) / (t2 - t1)


def network_shell_profile(model, ds: Dataset, times: tuple[float, float], true_range: int,
                          batch_size: int = 128, progress: bool = True) -> dict:
    """The couplings the network's force carries, by shell, on the basis of `ds` (extended past
    the true range with `SystemConfig.with_shells`): the OLS readout at the two `times`,
    extrapolated linearly to t = 0 (`linear_to_zero`, as the W profile's "extrapolated"), then
    `coupling_profile`. Unlike mean |W_ij| it leaves out what W does not put into the force
    (W_ij along S_i, or pairs whose force cancels over the snapshots' typical states)."""
    eqs, _ = network_readout(model, ds, list(times), None, batch_size, progress)
    c0 = linear_to_zero(times, eqs[0].solve()[0], eqs[1].solve()[0])
    system = ds.config.system
    profile = coupling_profile(c0, None, len(system.type_pairs()), true_range)
    return {**profile, "times": list(times), "parameters": system.parameter_names(),
            "estimate": c0.tolist()}


def _profile_summary(values: list[list[np.ndarray]], true_range: int) -> dict:
    """distance, mean_abs_w, q25, q75 over the distances with any pair, and
    decades_beyond_range (None without a distance on both sides of the true range, or with
    exactly zero beyond it)."""
    out: dict = {"distance": [], "mean_abs_w": [], "q25": [], "q75": []}
    for d, vs in enumerate(values, start=1):
        if vs and sum(len(v) for v in vs):
            v = np.concatenate(vs)
            out["distance"].append(d)
            out["mean_abs_w"].append(float(v.mean()))
            out["q25"].append(float(np.percentile(v, 25)))
            out["q75"].append(float(np.percentile(v, 75)))
    out["decades_beyond_range"] = _decades(out["distance"], out["mean_abs_w"], true_range)
    return out


def _decades(distance, mean_abs, true_range: int) -> float | None:
    """log10 of the weakest mean |coupling| within the true range over the strongest beyond."""
    d, mean = np.asarray(distance), np.asarray(mean_abs)
    inside, beyond = mean[d <= true_range], mean[d > true_range]
    return (float(np.log10(inside.min() / beyond.max()))
            if inside.size and beyond.size and beyond.max() > 0 else None)


def coupling_profile(estimate: np.ndarray, se: np.ndarray | None, n_pairs: int,
                     true_range: int) -> dict:
    """An estimator's couplings on a basis extended beyond the true range, by shell: the mean
    |estimate| over the `n_pairs` type pairs of each shell, the largest |estimate| / standard
    error there (a coupling beyond the range that the data tell apart from zero has a large
    one), and decades_beyond_range as for the network's profile. estimate, se: (shells *
    n_pairs,) in `SystemConfig.parameter_names` order (se None: no z)."""
    est = np.abs(np.asarray(estimate, float)).reshape(-1, n_pairs)
    shells = list(range(1, len(est) + 1))
    out = {"distance": shells, "mean_abs": est.mean(1).tolist(), "true_range": true_range}
    if se is not None:
        out["max_z"] = (est / np.asarray(se, float).reshape(-1, n_pairs)).max(1).tolist()
        out["mean_se"] = np.asarray(se, float).reshape(-1, n_pairs).mean(1).tolist()
    out["decades_beyond_range"] = _decades(shells, out["mean_abs"], true_range)
    return out


def default_readout_times(t_low: float) -> list[float]:
    """Readout times for the extrapolation: the smallest trained time and three doublings."""
    return [t_low * 2.0**k for k in range(4)]
