"""A trust flag that predicts the network's error (issue 14, deliverable 5).

The OOD flags of `analysis.ood` ask whether a configuration is new. A user wants to know
whether the network is *wrong* on it. Here the truth is known, so each configuration x gets the
network's relative force error

    e(x) = |s_theta(x, t_eval) - beta F(x)| / |beta F(x)|,

with beta the training temperature's and F the tangent force of the Hamiltonian that made x (so
the extra-range set's F has its extra couplings, which the network never learned). A pool of
configurations: in-distribution test snapshots, the OOD sets (longer, hotter, extra range, a
larger lattice), uniform random spins on the test sequences, and in-distribution snapshots
read by an under-trained checkpoint. A configuration is unreliable when e > 2 x the median e of
the in-distribution set. Each flag is scored by its ROC AUC for the unreliable configurations
of the whole pool, and by its AUC for telling each shifted set from in-distribution data.

Flags, larger = less trustworthy: 1 - explained variance (the paper's), |ln theta| (the
configurational temperature; +inf where theta <= 0), -log p_theta(x) / N (the model's own
log-likelihood per site, probability-flow ODE), and their combination, 1 - the smallest
empirical p-value against the in-distribution set.
"""

from __future__ import annotations

import numpy as np
import torch

from spinscore.analysis.batches import dataset_system, network_field, snapshot_batches
from spinscore.analysis.ood import (
    configurational_temperature,
    empirical_p,
    explained_variance,
    roc_auc,
    temperature_flag,
)
from spinscore.io import Dataset
from spinscore.physics.hamiltonian import system_couplings, system_tangent_force

FLAGS = ("explained_variance", "configurational_temperature", "log_likelihood")
IN = "in-distribution"


def subsample(ds: Dataset, n: int, seed: int) -> Dataset:
    """n configurations of `ds` drawn without replacement (all, if it has fewer) as a data set
    of n sequences x 1 snapshot, in memory. Same path and config."""
    total = ds.n_sequences * ds.n_snapshots
    pick = np.sort(np.random.default_rng(seed).choice(total, size=min(n, total), replace=False))
    seq, snap = np.divmod(pick, ds.n_snapshots)
    return Dataset(ds.path, ds.config, {
        "spins": ds.spins[seq, snap][:, None], "types": ds.types[seq],
        "length": ds.length[seq]}, ds.attrs)


def uniform_like(ds: Dataset, seed: int) -> Dataset:
    """The configurations of `ds` with every spin replaced by an independent uniform unit
    vector (infinite temperature), zero on padding; same types and lengths."""
    g = np.random.default_rng(seed).standard_normal(ds.spins.shape)
    spins = g / np.linalg.norm(g, axis=-1, keepdims=True) * ds.valid[:, None, :, None]
    return Dataset(ds.path.with_name(ds.path.name + ":uniform"), ds.config, {
        "spins": spins.astype(np.float32), "types": ds.types, "length": ds.length}, ds.attrs)


def force_errors(model, ds: Dataset, beta: float, t_eval: float, batch_size: int = 128
                 ) -> np.ndarray:
    """e (n_seq, n_snap): the relative force error of the network at t_eval against beta x the
    tangent force of the data set's own Hamiltonian (module docstring)."""
    sites = dataset_system(ds.config.system)
    table = ds.config.system.coupling_table()
    e = np.empty((ds.n_sequences, ds.n_snapshots))
    for b in snapshot_batches(ds, batch_size):
        s = network_field(model, b.spins, b.types, t_eval)[1].double().numpy()
        f = beta * system_tangent_force(sites, b.spins, system_couplings(sites, b.types, table))
        f = f * b.mask[..., None]
        e[b.seq, b.snap] = (np.linalg.norm((s - f).reshape(len(s), -1), axis=1)
                            / np.linalg.norm(f.reshape(len(f), -1), axis=1))
    return e


def negative_log_likelihood(model, ds: Dataset, t_min: float, t_max: float, *,
                            divergence: str, probes: int, tolerance: float, seed: int,
                            batch_size: int = 32) -> np.ndarray:
    """-log p_theta(x) / N (n_seq, n_snap), nats per site, by the probability-flow ODE
    (`diffusion.likelihood.solve_likelihood`)."""
    from spinscore.diffusion.likelihood import solve_likelihood

    gen = torch.Generator().manual_seed(seed)
    out = np.empty((ds.n_sequences, ds.n_snapshots))
    for b in snapshot_batches(ds, batch_size):
        res = solve_likelihood(model, torch.as_tensor(b.spins), torch.as_tensor(b.types),
                               t_min=t_min, t_max=t_max, divergence=divergence,
                               n_probes=probes, rtol=tolerance, atol=tolerance, generator=gen)
        out[b.seq, b.snap] = -res.log_p.numpy() / b.mask.sum(1)
    return out


def flags_and_errors(model, meta: dict, ds: Dataset, t_eval: float, settings) -> dict:
    """Every flag and e on the configurations of `ds` (all of them: subsample first), read by
    `model`: {flag: (n,), "error": (n,), "theta": (n,)}."""
    diffusion_t = meta["trained_t"]
    ev = explained_variance(model, ds, tuple(meta["types"]), int(meta["max_range"]), t_eval,
                            progress=False)
    theta = configurational_temperature(model, ds, t_eval)
    nll = negative_log_likelihood(model, ds, float(diffusion_t[0]), float(diffusion_t[1]),
                                  divergence=settings.divergence, probes=settings.probes,
                                  tolerance=settings.tolerance, seed=settings.seed)
    return {"explained_variance": 1.0 - ev.ravel(),
            "configurational_temperature": temperature_flag(theta.ravel()),
            "log_likelihood": nll.ravel(), "theta": theta.ravel(),
            "error": force_errors(model, ds, float(meta["beta"]), t_eval).ravel()}


def trust_pool(model, meta: dict, in_data: Dataset, ood_sets: dict[str, Dataset],
               t_eval: float, settings, early_model=None) -> dict[str, dict]:
    """The pool of the module docstring: {set: flags_and_errors}, `settings.configurations`
    drawn from each set (seeded), the uniform set on the in-distribution draw's sequences, and
    the under-trained set when `early_model` is given."""
    n, seed = settings.configurations, settings.seed
    sets = {IN: subsample(in_data, n, seed)}
    sets.update({name: subsample(ds, n, seed + 1 + k) for k, (name, ds)
                 in enumerate(ood_sets.items())})
    sets["uniform"] = uniform_like(sets[IN], seed)
    pool = {name: flags_and_errors(model, meta, ds, t_eval, settings)
            for name, ds in sets.items()}
    if early_model is not None:
        pool["under_trained"] = flags_and_errors(early_model, meta, sets[IN], t_eval, settings)
    return pool


def trust_summary(pool: dict[str, dict]) -> dict:
    """Scores of every flag on a pool (`trust_pool`): the threshold, the unreliable share per
    set, the AUC for unreliable configurations over the pool, and each set's drift AUC against
    the in-distribution set. The combined flag is added to each set's flags in place."""
    ref = pool[IN]
    for flags in pool.values():
        flags["combined"] = 1.0 - np.min([empirical_p(ref[k], flags[k]) for k in FLAGS], axis=0)
    names = (*FLAGS, "combined")
    threshold = 2.0 * float(np.median(ref["error"]))
    error = np.concatenate([v["error"] for v in pool.values()])
    bad = error > threshold
    auc = {k: _auc(np.concatenate([v[k] for v in pool.values()]), bad) for k in names}
    sets = {}
    for name, v in pool.items():
        entry = {"configurations": len(v["error"]),
                 "error_median": float(np.median(v["error"])),
                 "unreliable_fraction": float(np.mean(v["error"] > threshold))}
        if name != IN:
            entry["drift_auc"] = {k: roc_auc(ref[k], v[k]) for k in names}
        sets[name] = entry
    return {"error": "|s_theta - beta F| / |beta F| per configuration, F of the set's own "
                     "Hamiltonian, beta of the training data",
            "threshold": threshold, "unreliable": int(bad.sum()), "pool": int(bad.size),
            "auc_unreliable": auc, "sets": sets,
            # None when no configuration (or every one) is unreliable: no AUC to rank by
            "best_flag": max((k for k in auc if auc[k] is not None), key=lambda k: auc[k],
                             default=None)}


def _auc(score: np.ndarray, label: np.ndarray) -> float | None:
    """ROC AUC of `score` for the True labels (None when one class is empty)."""
    if label.all() or not label.any():
        return None
    return roc_auc(score[~label], score[label])
