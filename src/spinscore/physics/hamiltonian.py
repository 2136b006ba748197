"""The Hamiltonian of a sequence-dependent chain of O(3) spins: the one source of truth for H.

    H(S) = - sum_r sum_i J_r(sigma_i, sigma_{i+r}) S_i . S_{i+r}

Every function works on NumPy arrays and torch tensors alike (through `array_api_compat`),
batched over any leading dimensions, with padding marked by type -1 (padded spins are ignored).
Energies are in units of the couplings J; temperatures in the same units (k_B = 1).
"""

from __future__ import annotations

import numpy as np
from array_api_compat import array_namespace


def bond_couplings(types, table):
    """Coupling of every bond of every range.

    Args:
        types: (..., L) integer site types, -1 on padding.
        table: (K, n_types, n_types) couplings `table[r-1, a, b]` (NumPy array or same library
            as `types`).
    Returns:
        (..., K, L) array: entry [..., r-1, i] is J_r(sigma_i, sigma_{i+r}) for the bond (i, i+r),
        zero where i + r >= L or either site is padding. Float dtype of `table`.
    """
    xp = array_namespace(types)
    table = _like(table, types)
    n_range, length = table.shape[0], types.shape[-1]
    valid = types >= 0
    safe = xp.astype(xp.where(valid, types, xp.zeros_like(types)), xp.int64)
    out = xp.zeros((*types.shape[:-1], n_range, length), dtype=table.dtype)
    for r in range(1, min(n_range, length - 1) + 1):
        j = table[r - 1][safe[..., :-r], safe[..., r:]]
        both = xp.astype(valid[..., :-r] & valid[..., r:], table.dtype)
        out[..., r - 1, : length - r] = j * both
    return out


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


def pair_index_table(n_types: int) -> np.ndarray:
    """(n_types, n_types) index of each unordered type pair in the canonical parameter order
    (like pairs first, then unlike pairs lexicographically; see `SystemConfig.type_pairs`)."""
    table = np.zeros((n_types, n_types), dtype=np.int64)
    pairs = [(a, a) for a in range(n_types)]
    pairs += [(a, b) for a in range(n_types) for b in range(a + 1, n_types)]
    for k, (a, b) in enumerate(pairs):
        table[a, b] = table[b, a] = k
    return table


def bond_classes(types: np.ndarray, n_types: int, max_range: int) -> np.ndarray:
    """Parameter index of every bond: (..., K, L) int64, entry [..., r-1, i] is the index of
    J_r(sigma_i, sigma_{i+r}) in the parameter vector, -1 where there is no bond."""
    types = np.asarray(types)
    pairs = pair_index_table(n_types)
    n_pairs = pairs.max() + 1
    length = types.shape[-1]
    out = np.full((*types.shape[:-1], max_range, length), -1, dtype=np.int64)
    valid = types >= 0
    safe = np.where(valid, types, 0)
    for r in range(1, min(max_range, length - 1) + 1):
        cls = (r - 1) * n_pairs + pairs[safe[..., :-r], safe[..., r:]]
        out[..., r - 1, : length - r] = np.where(valid[..., :-r] & valid[..., r:], cls, -1)
    return out
