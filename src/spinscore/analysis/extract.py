"""`spinscore extract`: couplings from a force oracle on every test snapshot (SPEC §6).

Methods: `network` (the frozen score model at t_eval), `oracle` (beta x the exact tangent force:
checks the design matrix end to end), and the classical estimators of `baselines`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from spinscore.analysis.inversion import NormalEquations, coupling_metrics, design_matrix
from spinscore.io import Dataset
from spinscore.physics.hamiltonian import bond_classes, bond_couplings, tangent_force

# The published model's ratio table (Xi & Chen 2026, Table 1; SPEC §8), paper system only.
PUBLISHED_RATIOS = {"J1_AA": 1.0, "J1_BB": 0.621, "J1_AB": 0.876, "J2_AA": -0.464,
                    "J2_BB": -0.293, "J2_AB": -0.378}
PUBLISHED_METRICS = {"cosine": 0.9974, "r2": 0.8698, "worst_ratio_error": 0.12}


def snapshot_batches(ds: Dataset, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(sequence ids, snapshot ids) of all snapshots, in batches of similar chain length."""
    seq = np.repeat(np.arange(ds.n_sequences), ds.n_snapshots)
    snap = np.tile(np.arange(ds.n_snapshots), ds.n_sequences)
    order = np.argsort(ds.length[seq], kind="stable")
    for a in range(0, len(order), batch_size):
        idx = order[a : a + batch_size]
        yield seq[idx], snap[idx]


@torch.no_grad()
def network_force(model, spins: np.ndarray, types: np.ndarray, t_eval: float,
                  device: str = "cpu") -> np.ndarray:
    """The model's score at time t_eval on a batch: spins (B, N, 3), types (B, N) -> (B, N, 3)."""
    x = torch.as_tensor(spins, dtype=torch.float32, device=device)
    ty = torch.as_tensor(types, dtype=torch.int64, device=device)
    t = torch.full((len(x),), float(t_eval), device=device)
    return model(x, ty, t).double().cpu().numpy()


def accumulate(ds: Dataset, force_fn, batch_size: int = 128, progress: bool = True,
               desc: str = "extract") -> NormalEquations:
    """Run `force_fn(spins, types, seq)` -> (B, N, 3) over all snapshots (cropped batches) and
    accumulate the normal equations per sequence."""
    system = ds.config.system
    n_params = len(system.parameter_names())
    eqs = NormalEquations.zeros(ds.n_sequences, n_params)
    total = ds.n_sequences * ds.n_snapshots
    with tqdm(total=total, unit="snapshot", desc=desc, disable=not progress) as bar:
        for seq, snap in snapshot_batches(ds, batch_size):
            n = int(ds.length[seq].max())
            spins = ds.spins[seq, snap, :n].astype(np.float64)
            types = ds.types[seq, :n].astype(np.int64)
            y = force_fn(spins, types, seq)
            x = design_matrix(spins, bond_classes(types, system.n_types, system.max_range),
                              n_params)
            eqs.add(seq, x, y, types >= 0)
            bar.update(len(seq))
    return eqs


def oracle_force(ds: Dataset):
    """beta x exact tangent force, as a force function for `accumulate`."""
    table, beta = ds.config.system.coupling_table(), ds.config.system.beta

    def force(spins, types, seq):
        return beta * tangent_force(spins, bond_couplings(types, table))
    return force


def summarise(eqs: NormalEquations, ds: Dataset, method: str, n_boot: int = 200,
              seed: int = 0, **extra) -> dict:
    """extraction.json content: estimate, metrics, and bootstrap 95% intervals over sequences."""
    system = ds.config.system
    truth = system.parameter_vector()
    est, r2 = eqs.solve()
    result = {"method": method, "parameters": system.parameter_names(),
              "estimate": est.tolist(), "truth": truth.tolist(), "r2": float(r2),
              **coupling_metrics(est, truth), "beta": system.beta}
    result["scale_over_beta"] = result["scale"] / system.beta
    result["n_equations"] = int(eqs.count.sum())
    result["n_sequences"] = ds.n_sequences
    rng = np.random.default_rng(seed)
    boots = {"estimate": [], "ratio_estimate": [], "cosine": [], "r2": [], "scale": []}
    for _ in range(n_boot):
        w = np.bincount(rng.integers(0, ds.n_sequences, ds.n_sequences),
                        minlength=ds.n_sequences).astype(float)
        b_est, b_r2 = eqs.solve(w)
        m = coupling_metrics(b_est, truth)
        for key, value in (("estimate", b_est.tolist()), ("ratio_estimate", m["ratio_estimate"]),
                           ("cosine", m["cosine"]), ("r2", b_r2), ("scale", m["scale"])):
            boots[key].append(value)
    if n_boot:
        result["bootstrap_ci95"] = {
            k: np.percentile(np.asarray(v), [2.5, 97.5], axis=0).tolist() for k, v in boots.items()
        }
        result["bootstrap_samples"] = n_boot
    result.update(extra)
    return result


def ratio_table(result: dict) -> str:
    """The paper's Table 1: truth, published network, ours (ratios to the first parameter)."""
    names = result["parameters"]
    ci = result.get("bootstrap_ci95", {}).get("ratio_estimate")
    lines = [f"{'parameter':<10} {'truth':>8} {'published':>10} {'ours':>9}  95% CI (bootstrap)"]
    for k, name in enumerate(names):
        pub = PUBLISHED_RATIOS.get(name) if set(names) == set(PUBLISHED_RATIOS) else None
        pub_s = f"{pub:>10.3f}" if pub is not None else f"{'-':>10}"
        ci_s = f"[{ci[0][k]:+.3f}, {ci[1][k]:+.3f}]" if ci else ""
        lines.append(f"{name:<10} {result['ratio_truth'][k]:>8.3f} {pub_s} "
                     f"{result['ratio_estimate'][k]:>9.3f}  {ci_s}")
    lines.append(f"cosine {result['cosine']:.5f}   R^2 {result['r2']:.4f}   worst ratio error "
                 f"{result['worst_ratio_error']:.4f}   scale {result['scale']:.3f} "
                 f"(= {result['scale_over_beta']:.3f} beta)")
    if set(names) == set(PUBLISHED_RATIOS):
        p = PUBLISHED_METRICS
        lines.append(f"published: cosine {p['cosine']}   R^2 {p['r2']}   worst ratio error "
                     f"{p['worst_ratio_error']}")
    return "\n".join(lines)


def quick_network_extraction(model, ds: Dataset, t_eval: float, batch_size: int = 128,
                             progress: bool = False) -> dict:
    """Network extraction without bootstrap (for monitoring during development)."""
    model.eval()

    def force(spins, types, seq):
        return network_force(model, spins, types, t_eval)
    return summarise(accumulate(ds, force, batch_size, progress), ds, "network", n_boot=0,
                     t_eval=t_eval)


def write_json(path: Path, result: dict) -> None:
    import json

    path.write_text(json.dumps(result, indent=2))
