"""REMC mixing audit: aligned overlaps between snapshots against independent runs (issue 11).

The aligned overlap of two configurations a, b of the same N sites is

    q(a, b) = (1/N) sum_k sigma_k(M),   M = sum_n a_n b_n^T  (3 x 3),

the sum of the singular values of M being max over R in O(3) of sum_n a_n . R b_n: the overlap
after the best common rotation or reflection (the Hamiltonian is O(3)-invariant, so a global
rotation of a snapshot is not a memory of the previous one). q = 1 for identical configurations
up to O(3); for independent uniform spins q -> E||G||_* / (3 sqrt(N)) (G a 3 x 3 standard
Gaussian matrix). A sampler has mixed when snapshots k thinning intervals apart overlap no more
than snapshots of two runs of the same sequence started from independent seeds.

Pure numbers in, numbers out: no files, no figures (`report.figures.mixing_figure` draws it).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from spinscore.config import RunConfig
from spinscore.errors import SpinscoreError
from spinscore.io import Dataset
from spinscore.sampling.remc import simulate_chain

_BATCH = 1024  # sequences per vectorised block (bounds the float64 copies)


def aligned_overlap(a: np.ndarray, b: np.ndarray, length: np.ndarray | int | None = None
                    ) -> np.ndarray:
    """Aligned overlap q = (1/N) sum of the singular values of M = sum_n a_n b_n^T.

    Args:
        a, b: spins (..., L, 3) (unit vectors, dimensionless), broadcastable against each other.
        length: number of real sites N, an int or an integer array broadcastable to the leading
            shape (...); sites n >= N are ignored (padding). None: N = L.

    Returns:
        (...) float64: q in [0, 1] for unit spins, 1 exactly when b = R a with R in O(3).
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    n_sites = a.shape[-2]
    if length is None:
        n = np.asarray(float(n_sites))
    else:
        n = np.asarray(length)
        mask = np.arange(n_sites) < n[..., None]  # (..., L)
        a = a * mask[..., None]
    m = np.einsum("...ni,...nj->...ij", a, b)
    return np.linalg.svd(m, compute_uv=False).sum(axis=-1) / n


def lag_overlaps(spins: np.ndarray, length: np.ndarray) -> np.ndarray:
    """Per sequence, the mean aligned overlap of snapshots k apart, k = 1 .. n_snap - 1.

    Args:
        spins: (n_seq, n_snap, L_max, 3) snapshots of each sequence in sampling order, zero
            padded beyond each chain's length.
        length: (n_seq,) chain lengths.

    Returns:
        (n_seq, n_snap - 1) float64: entry [i, k - 1] averages q over the n_snap - k pairs
        (j, j + k) of sequence i.
    """
    n_seq, n_snap = spins.shape[:2]
    out = np.empty((n_seq, max(n_snap - 1, 0)))
    for lo in range(0, n_seq, _BATCH):
        s = np.asarray(spins[lo : lo + _BATCH], dtype=np.float64)
        n = np.asarray(length[lo : lo + _BATCH])[:, None]
        for k in range(1, n_snap):
            out[lo : lo + len(s), k - 1] = aligned_overlap(s[:, :-k], s[:, k:], n).mean(axis=1)
    return out


def independent_seed(seed: int) -> int:
    """A master seed for re-simulating a data set of master seed `seed` independently: derived
    from it (reproducible), never equal to it."""
    derived = int(np.random.SeedSequence([seed, 0x4D4958]).generate_state(1)[0])
    return derived if derived != seed else derived + 1


def simulate_sequences(config: RunConfig, types: np.ndarray, length: np.ndarray, seed: int,
                       temperatures: np.ndarray | None = None, threads: int = 1,
                       progress: bool = False) -> np.ndarray:
    """Run REMC again on given sequences with master seed `seed` and the schedule of `config`.

    Row i is chain i of a data set of master seed `seed` with its site types overridden
    (`remc.simulate_chain(..., types=...)`): with `seed = config.simulation.seed` this
    reproduces the data set's own snapshots; any other seed gives independent runs.

    Args:
        types: (n, L_max) int site types, -1 on padding; length: (n,) chain lengths.
        temperatures: (R,) ladder, hottest first (default: the config's).

    Returns:
        (n, n_snap, L_max, 3) float64 snapshots, zero padded.
    """
    sim = config.simulation.model_copy(update={"seed": int(seed)})
    n, l_max = types.shape
    out = np.zeros((n, sim.snapshots, l_max, 3))

    def one(i: int) -> np.ndarray:
        return simulate_chain(config.system, sim, i, types=types[i, : length[i]],
                              temperatures=temperatures).spins

    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        bar = tqdm(pool.map(one, range(n)), total=n, unit="chain", desc="mixing baseline",
                   disable=not progress)
        for i, spins in enumerate(bar):
            out[i, :, : length[i]] = spins
    return out


def bootstrap_mean_ci(values: np.ndarray, n_boot: int = 1000, seed: int = 0,
                      level: float = 0.95) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean over the first axis with percentile bootstrap intervals (resampling rows).

    Args:
        values: (n,) or (n, m); the same resampled rows serve every column.

    Returns:
        mean, lo, hi, each of shape values.shape[1:].
    """
    v = np.asarray(values, dtype=np.float64)
    flat = v.reshape(len(v), -1)
    n, m = flat.shape
    rng = np.random.default_rng(seed)
    means = np.empty((n_boot, m))
    block = max(1, 4_000_000 // (n * m))
    for a in range(0, n_boot, block):
        idx = rng.integers(0, n, size=(min(block, n_boot - a), n))
        means[a : a + len(idx)] = flat[idx].mean(axis=1)
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(means, [tail, 100 - tail], axis=0)
    shape = v.shape[1:]
    return flat.mean(axis=0).reshape(shape), lo.reshape(shape), hi.reshape(shape)


def mixing_audit(ds: Dataset, max_sequences: int = 200, n_boot: int = 1000, boot_seed: int = 0,
                 seed: int | None = None, threads: int = 1, progress: bool = False
                 ) -> dict[str, Any]:
    """The REMC mixing audit of a data set.

    q against lag over all sequences; the baseline q(snapshot j of the data set, snapshot j of
    an independent run of the same sequence) over its first `max_sequences` sequences
    (re-simulated with master seed `seed`, default `independent_seed(data set seed)`, the
    data set's ladder and schedule). Bootstrap 95% intervals over sequences (`n_boot`
    resamples, seed `boot_seed`). `decorrelated` holds when the paired difference
    q(lag 1) - baseline over the baseline's sequences has an interval containing 0.

    Returns:
        A JSON-ready dict: lags (k), lag_sweeps (k x thinning), q_mean, q_ci95 ([lo, hi] per
        lag), baseline {mean, ci95, sequences, seed}, lag1_minus_baseline {mean, ci95},
        lag1_within_baseline_ci, decorrelated, sequences, snapshots, thinning, bootstrap.
    """
    n_seq, n_snap = ds.n_sequences, ds.n_snapshots
    if n_snap < 2:
        raise SpinscoreError(f"{ds.path}: the mixing audit needs at least 2 snapshots per "
                             f"sequence, this data set has {n_snap}")
    if max_sequences < 1:
        raise SpinscoreError(f"max_sequences: expected a positive integer, got {max_sequences}")
    sim = ds.config.simulation
    seed = independent_seed(sim.seed) if seed is None else int(seed)
    lags = lag_overlaps(ds.spins, ds.length)  # (n_seq, n_snap - 1)
    q_mean, q_lo, q_hi = bootstrap_mean_ci(lags, n_boot, boot_seed)

    n_base = min(max_sequences, n_seq)
    other = simulate_sequences(ds.config, ds.types[:n_base], ds.length[:n_base], seed,
                               ds.temperatures, threads, progress)
    base = aligned_overlap(ds.spins[:n_base], other, ds.length[:n_base, None]).mean(axis=1)
    b_mean, b_lo, b_hi = bootstrap_mean_ci(base, n_boot, boot_seed)
    d_mean, d_lo, d_hi = bootstrap_mean_ci(lags[:n_base, 0] - base, n_boot, boot_seed)
    return {
        "lags": list(range(1, n_snap)),
        "lag_sweeps": [k * sim.thinning for k in range(1, n_snap)],
        "q_mean": q_mean.tolist(),
        "q_ci95": np.stack([q_lo, q_hi], axis=1).tolist(),
        "baseline": {"mean": float(b_mean), "ci95": [float(b_lo), float(b_hi)],
                     "sequences": n_base, "seed": seed},
        "lag1_minus_baseline": {"mean": float(d_mean), "ci95": [float(d_lo), float(d_hi)],
                                "sequences": n_base},
        "lag1_within_baseline_ci": bool(b_lo <= q_mean[0] <= b_hi),
        "decorrelated": bool(d_lo <= 0.0 <= d_hi),
        "sequences": n_seq,
        "snapshots": n_snap,
        "thinning": sim.thinning,
        "bootstrap": n_boot,
        "bootstrap_seed": boot_seed,
    }


def format_mixing(result: dict[str, Any]) -> str:
    """Human-readable lines of `mixing_audit`."""
    r, b, d = result, result["baseline"], result["lag1_minus_baseline"]
    lines = [f"mixing        aligned overlap q, {r['sequences']} sequences x {r['snapshots']} "
             f"snapshots, 95% bootstrap CI over sequences"]
    for k, sweeps, q, (lo, hi) in zip(r["lags"], r["lag_sweeps"], r["q_mean"], r["q_ci95"],
                                      strict=True):
        lines.append(f"  lag {k:>2} ({sweeps:>5} sweeps)  q = {q:.4f} [{lo:.4f}, {hi:.4f}]")
    lines.append(f"  independent runs       q = {b['mean']:.4f} [{b['ci95'][0]:.4f}, "
                 f"{b['ci95'][1]:.4f}] ({b['sequences']} sequences, seed {b['seed']})")
    verdict = "decorrelated" if r["decorrelated"] else "NOT decorrelated"
    lines.append(f"  lag 1 - independent    {d['mean']:+.4f} [{d['ci95'][0]:+.4f}, "
                 f"{d['ci95'][1]:+.4f}] (paired): {verdict}")
    return "\n".join(lines)
