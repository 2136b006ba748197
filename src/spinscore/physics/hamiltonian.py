"""The Hamiltonian of a system of typed O(3) spins: the one source of truth for H.

    H(S) = - sum_{pairs (i, j)} J_k(sigma_i, sigma_j) S_i . S_j

over the interacting pairs of a `SpinSystem`, pair (i, j) in neighbour shell k. Two layouts:
per pair (`pair_couplings`, `pair_local_field`, `pair_energy`: any system, (..., P) over the
system's `Pairs`), and the chain's bond layout (`bond_couplings`, `local_field`, `energy`,
`tangent_force`: (..., K, L), entry [..., k-1, i] for the pair (i, i + k), vectorised per shell;
the fast path of chains, with the results the data sets were made with).

Every function works on NumPy arrays and torch tensors alike (through `array_api_compat`),
batched over any leading dimensions, with padding marked by type -1 (padded spins are ignored).
Energies are in units of the couplings J; temperatures in the same units (k_B = 1).
"""

from __future__ import annotations

import numpy as np
from array_api_compat import array_namespace, device

from spinscore.systems import Chain, Pairs, SpinSystem


def pair_couplings(types, pairs: Pairs, table):
    """Coupling J_k(sigma_i, sigma_j) of every interacting pair.

    Args:
        types: (..., N) integer site types, -1 on padding.
        pairs: the system's interacting pairs of N sites (P of them).
        table: (K, n_types, n_types) couplings `table[k-1, a, b]` (NumPy array or same library
            as `types`).
    Returns:
        (..., P) couplings, zero where either site is padding. Float dtype of `table`.
    """
    xp = array_namespace(types)
    table = _like(table, types)
    where = device(types)
    i, j, k = (xp.asarray(a, device=where) for a in (pairs.i, pairs.j, pairs.shell - 1))
    valid = types >= 0
    safe = xp.astype(xp.where(valid, types, xp.zeros_like(types)), xp.int64)
    both = xp.astype(valid[..., i] & valid[..., j], table.dtype)
    return table[k, safe[..., i], safe[..., j]] * both


def pair_local_field(spins, pairs: Pairs, couplings):
    """Local field h_i = sum_j J_ij S_j from per-pair couplings.

    Args:
        spins: (..., N, 3) unit spins; pairs: P interacting pairs of the N sites;
        couplings: (..., P) from `pair_couplings`.
    Returns:
        (..., N, 3) local field, units of J.
    """
    xp = array_namespace(spins)
    where = device(spins)
    i, j = xp.asarray(pairs.i, device=where), xp.asarray(pairs.j, device=where)
    h = xp.zeros_like(spins)
    # both ends of every pair, as one scatter-add over the site axis
    h_of = xp.concat([couplings[..., None] * spins[..., j, :],
                      couplings[..., None] * spins[..., i, :]], axis=-2)  # (..., 2P, 3)
    ends = xp.concat([i, j])
    if isinstance(h, np.ndarray):
        np.add.at(np.moveaxis(h, -2, 0), ends, np.moveaxis(h_of, -2, 0))
        return h
    return h.index_add(-2, ends, h_of)


def pair_energy(spins, pairs: Pairs, couplings):
    """Total energy H(S) = -sum_pairs J_p S_i . S_j of each sample.

    Args:
        spins: (..., N, 3); pairs: P interacting pairs; couplings: (..., P) from
            `pair_couplings`.
    Returns:
        (...,) energy, units of J.
    """
    xp = array_namespace(spins)
    where = device(spins)
    i, j = xp.asarray(pairs.i, device=where), xp.asarray(pairs.j, device=where)
    return -xp.sum(couplings * xp.sum(spins[..., i, :] * spins[..., j, :], axis=-1), axis=-1)


def system_couplings(system: SpinSystem, types, table):
    """Couplings of samples of `system` in its layout: the chain's bond layout (..., K, L)
    (`bond_couplings`) for a `Chain`, per pair (..., P) of `system.pairs(N)` otherwise.

    Args: types (..., N) integer site types, -1 on padding; table (K, n_types, n_types).
    """
    if isinstance(system, Chain):
        return bond_couplings(types, table)
    return pair_couplings(types, system.pairs(types.shape[-1]), table)


def system_energy(system: SpinSystem, spins, couplings):
    """H(S) of samples (..., N, 3) of `system`, couplings from `system_couplings`
    (broadcastable over the leading dimensions). Returns (...,), units of J."""
    if isinstance(system, Chain):
        return energy(spins, couplings)
    return pair_energy(spins, system.pairs(spins.shape[-2]), couplings)


def system_local_field(system: SpinSystem, spins, couplings):
    """h_i = sum_j J_ij S_j of samples (..., N, 3) of `system`, couplings from
    `system_couplings`. Returns (..., N, 3), units of J."""
    if isinstance(system, Chain):
        return local_field(spins, couplings)
    return pair_local_field(spins, system.pairs(spins.shape[-2]), couplings)


def bond_couplings(types, table):
    """Coupling of every bond of every range, in the chain's bond layout.

    Args:
        types: (..., L) integer site types, -1 on padding.
        table: (K, n_types, n_types) couplings `table[r-1, a, b]` (NumPy array or same library
            as `types`).
    Returns:
        (..., K, L) array: entry [..., r-1, i] is J_r(sigma_i, sigma_{i+r}) for the bond (i, i+r),
        zero where i + r >= L or either site is padding. Float dtype of `table`.
    """
    n_range, n_types, length = table.shape[0], table.shape[1], types.shape[-1]
    chain = Chain(n_types, n_range, (length, length))
    return chain.bond_layout(pair_couplings(types, chain.pairs(length), table), length)


def local_field(spins, bonds):
    """Local field h_i = sum_j J_ij S_j.

    Args:
        spins: (..., L, 3) unit spins (padding arbitrary: its bonds are zero).
        bonds: (..., K, L) from `bond_couplings`.
    Returns:
        (..., L, 3) local field, units of J.
    """
    xp = array_namespace(spins)
    h = xp.zeros_like(spins)
    length = spins.shape[-2]
    for r in range(1, min(bonds.shape[-2], length - 1) + 1):
        j = bonds[..., r - 1, : length - r, None]
        h[..., : length - r, :] += j * spins[..., r:, :]
        h[..., r:, :] += j * spins[..., : length - r, :]
    return h


def energy(spins, bonds):
    """Total energy H(S) of each chain.

    Args:
        spins: (..., L, 3); bonds: (..., K, L) from `bond_couplings`.
    Returns:
        (...,) energy, units of J.
    """
    xp = array_namespace(spins)
    length = spins.shape[-2]
    total = xp.zeros(spins.shape[:-2], dtype=spins.dtype)
    for r in range(1, min(bonds.shape[-2], length - 1) + 1):
        dots = xp.sum(spins[..., : length - r, :] * spins[..., r:, :], axis=-1)
        total = total - xp.sum(bonds[..., r - 1, : length - r] * dots, axis=-1)
    return total


def chirality_reversals(spins):
    """Reversals of the vector chirality k_i = S_i x S_{i+1} along each chain.

    Counts the i with k_i . k_{i+1} < 0: zero for a helix that turns one way in one plane, one
    per domain wall between the two senses of rotation (a frozen-in defect of a frustrated
    chain; the energy cost of each is read off in `spinscore sample`'s comparison). Thermal
    fluctuations also produce soft reversals where the helix plane tilts. Args: spins
    (..., L, 3) unit vectors, no padding. Returns (...,) integer counts.
    """
    xp = array_namespace(spins)
    a, b, c = spins[..., :-2, :], spins[..., 1:-1, :], spins[..., 2:, :]
    # k_i . k_{i+1} = (a x b) . (b x c) = (a . b)(b . c) - (a . c)(b . b)
    ab, bc = xp.sum(a * b, axis=-1), xp.sum(b * c, axis=-1)
    ac, bb = xp.sum(a * c, axis=-1), xp.sum(b * b, axis=-1)
    return xp.sum(xp.astype(ab * bc - ac * bb < 0, xp.int64), axis=-1)


def tangent_force(spins, bonds):
    """Tangent force F_i = h_i - (h_i . S_i) S_i = -grad_{S_i} H projected on the tangent plane.

    The zero-noise score of the Boltzmann distribution is beta * F. Returns (..., L, 3).
    """
    xp = array_namespace(spins)
    h = local_field(spins, bonds)
    return h - xp.sum(h * spins, axis=-1, keepdims=True) * spins


def _like(table, ref):
    """`table` as an array of the same library (and device) as `ref`."""
    if isinstance(table, np.ndarray) and not isinstance(ref, np.ndarray):
        import torch

        dtype = torch.float64 if table.dtype == np.float64 else torch.float32
        return torch.as_tensor(table, dtype=dtype, device=ref.device)
    return table


def bond_classes(types: np.ndarray, n_types: int, max_range: int) -> np.ndarray:
    """Parameter index of every bond: (..., K, L) int64, entry [..., r-1, i] is the index of
    J_r(sigma_i, sigma_{i+r}) in the parameter vector, -1 where there is no bond."""
    types = np.asarray(types)
    length = types.shape[-1]
    chain = Chain(n_types, max_range, (length, length))
    return chain.bond_layout(chain.pair_classes(types), length, fill=-1)


def system_tangent_force(system: SpinSystem, spins, couplings):
    """Tangent force (..., N, 3) of samples of `system`, couplings from `system_couplings`."""
    xp = array_namespace(spins)
    h = system_local_field(system, spins, couplings)
    return h - xp.sum(h * spins, axis=-1, keepdims=True) * spins


def system_classes(system: SpinSystem, types: np.ndarray) -> np.ndarray:
    """Parameter class of every interacting pair in the layout of `system`: the chain's bond
    layout (..., K, L) (`bond_classes`) for a `Chain`, per pair (..., P) otherwise; -1 where
    there is no pair (padding, or beyond a chain's end)."""
    if isinstance(system, Chain):
        return bond_classes(types, system.n_types, system.n_shells)
    return system.pair_classes(types)
