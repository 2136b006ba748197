"""Compiled Monte Carlo kernels for spins on any interaction graph (lattices, graphs).

The same moves, exchange step and random streams as the chain's kernels (`kernels`), on an
unpadded layout:
    spins: (R, N, 3) float64 -- R replicas of N sites;
    offsets (N + 1,), neighbours (2P,), neighbour_couplings (2P,): the interaction graph in
        compressed rows (CSR): the neighbours of site i are neighbours[offsets[i]:offsets[i+1]]
        with couplings J_ij (each pair appears once from each end);
    pair_i, pair_j, pair_couplings (P,): each pair once, for the energy.
The chain keeps its own padded kernels: they are the ones its data sets were made with.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from spinscore.sampling.kernels import _FAST, apply_move, exchange_step, record_energies


def neighbour_table(n_sites: int, pair_i: np.ndarray, pair_j: np.ndarray,
                    couplings: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The CSR neighbour table of P pairs on N sites.

    Args: pair_i, pair_j (P,) int site indices; couplings (P,) float J of each pair.
    Returns: offsets (N + 1,) int64, neighbours (2P,) int64, neighbour_couplings (2P,) float64;
        within a site, neighbours in the order the pairs are listed.
    """
    ends = np.concatenate([pair_i, pair_j]).astype(np.int64)
    other = np.concatenate([pair_j, pair_i]).astype(np.int64)
    values = np.concatenate([couplings, couplings]).astype(np.float64)
    order = np.argsort(ends, kind="stable")
    offsets = np.zeros(n_sites + 1, dtype=np.int64)
    np.cumsum(np.bincount(ends, minlength=n_sites), out=offsets[1:])
    return offsets, other[order], values[order]


@njit(nogil=True, cache=True, fastmath=_FAST)
def graph_sweep(spins, offsets, neighbours, neighbour_couplings, order, beta, s):
    """One sweep over the sites of one replica (N, 3) in `order` (N,) (colour by colour from
    the system's checked colouring); heat bath or over-relaxation at each site, in place."""
    for k in range(order.shape[0]):
        i = order[k]
        hx = hy = hz = 0.0
        for p in range(offsets[i], offsets[i + 1]):
            j = neighbours[p]
            c = neighbour_couplings[p]
            hx += c * spins[j, 0]
            hy += c * spins[j, 1]
            hz += c * spins[j, 2]
        apply_move(spins, i, hx, hy, hz, beta, s)


@njit(nogil=True, cache=True)
def graph_energy(spins, pair_i, pair_j, pair_couplings):
    """Energy -sum_p J_p S_i.S_j of one replica (N, 3); renormalises the spins first (removes
    the rounding drift of repeated over-relaxation)."""
    for i in range(spins.shape[0]):
        n = math.sqrt(spins[i, 0] ** 2 + spins[i, 1] ** 2 + spins[i, 2] ** 2)
        spins[i, 0] /= n
        spins[i, 1] /= n
        spins[i, 2] /= n
    e = 0.0
    for p in range(pair_i.shape[0]):
        i, j = pair_i[p], pair_j[p]
        e -= pair_couplings[p] * (spins[i, 0] * spins[j, 0] + spins[i, 1] * spins[j, 1]
                                  + spins[i, 2] * spins[j, 2])
    return e


@njit(nogil=True, cache=True)
def remc_graph(
    spins, offsets, neighbours, neighbour_couplings, pair_i, pair_j, pair_couplings, order,
    betas, burn_in, n_snapshots, thinning, swap_every, s,
    snapshots, swap_accepted, swap_attempted, ladder_energy, ladder_energy_sq, ladder_trace,
):  # fmt: skip
    """Replica-exchange Monte Carlo of one sample on a graph; the schedule, outputs and return
    value are those of `kernels.remc_chain`, with spins (R, N, 3) and snapshots
    (n_snapshots, N, 3)."""
    n_rep = spins.shape[0]
    perm = np.arange(n_rep)
    last_end = np.zeros(n_rep, dtype=np.int8)
    energies = np.empty(n_rep)
    phase, n_samples, trips = 0, 0, 0
    for t in range(1, burn_in + n_snapshots * thinning + 1):
        for k in range(n_rep):
            graph_sweep(spins[perm[k]], offsets, neighbours, neighbour_couplings, order,
                        betas[k], s)
        if t % swap_every == 0:
            for k in range(n_rep):
                energies[k] = graph_energy(spins[perm[k]], pair_i, pair_j, pair_couplings)
            phase, new_trips = exchange_step(betas, energies, perm, last_end, phase,
                                             swap_accepted, swap_attempted, s)
            trips += new_trips
            if t > burn_in:
                record_energies(energies, ladder_energy, ladder_energy_sq,
                                ladder_trace[n_samples])
                n_samples += 1
        if t > burn_in and (t - burn_in) % thinning == 0:
            snapshots[(t - burn_in) // thinning - 1] = spins[perm[n_rep - 1]]
    return n_samples, trips

