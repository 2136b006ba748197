"""Closed-form results used as oracles (SPEC §2).

For a nearest-neighbour chain with open ends the bonds decouple: with K_b = beta J_b,
    Z = 4 pi prod_b [4 pi sinh(K_b) / K_b],   <S_i . S_{i+1}> = L(K_b) = coth K_b - 1/K_b,
    <E> = - sum_b J_b L(K_b),                  C = sum_b [1 - K_b^2 / sinh^2 K_b].
A chain with only range-r bonds splits into r independent nearest-neighbour chains, which makes
these formulas exact oracles for any single range too. A ring (a periodic nearest-neighbour
chain) has the closed form of `ring_log_z`.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import ive, logsumexp

LOG_4PI = math.log(4 * math.pi)  # ln Z of a free unit spin: the log of the area of S^2


def langevin(k):
    """L(K) = coth K - 1/K, stable for small |K| (odd in K). Array in, array out."""
    k = np.asarray(k, dtype=float)
    small = np.abs(k) < 1e-2  # the series to k^5 is exact to 1e-15 there; coth - 1/K cancels
    ks = np.where(small, 1.0, k)
    big = 1.0 / np.tanh(ks) - 1.0 / ks
    return np.where(small, k / 3.0 - k**3 / 45.0 + 2.0 * k**5 / 945.0, big)


def log_sinhc(k):
    """log(sinh K / K), stable for all K (even in K)."""
    k = np.abs(np.asarray(k, dtype=float))
    small = k < 1e-2  # the series to k^4 is exact to 1e-11 there; the closed form cancels
    ks = np.where(small, 1.0, k)
    big = ks + np.log1p(-np.exp(-2.0 * ks)) - np.log(2.0) - np.log(ks)
    return np.where(small, k**2 / 6.0 - k**4 / 180.0, big)


def chain_bonds_by_range(bonds: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """Split the bonds of a single-range chain into its independent nearest-neighbour chains.

    Args:
        bonds: (K, L) bond couplings of one chain (from `bond_couplings`) in which only one
            range r has non-zero entries.
    Returns:
        list of (r, J) with J the (n_bonds,) couplings along each sub-chain i, i+r, i+2r, ...
    """
    nonzero = [r for r in range(bonds.shape[0]) if np.any(bonds[r] != 0)]
    if len(nonzero) != 1:
        raise ValueError("exact results need a chain with a single interaction range")
    r = nonzero[0] + 1
    length = bonds.shape[1]
    return [(r, bonds[r - 1, start : length - r : r]) for start in range(r)]


def nn_chain_log_z(bond_j, beta: float) -> float:
    """ln Z of an open nearest-neighbour chain with couplings `bond_j` (n_bonds,) at `beta`."""
    k = beta * np.asarray(bond_j, dtype=float)
    return float((len(k) + 1) * LOG_4PI + np.sum(log_sinhc(k)))


def ring_log_z(bond_j: np.ndarray, beta: float) -> float:
    """Exact ln Z of a ring of unit spins with couplings `bond_j` (N,) around the loop at `beta`:
    (4 pi)^N sum_l (2l + 1) prod_b i_l(beta J_b), from exp(K cos t) = sum_l (2l + 1) i_l(K)
    P_l(cos t) and the addition theorem around the loop (i_l the modified spherical Bessel
    functions, l < `_ring_terms`). Summed in logarithms with exponentially scaled Bessel
    functions, so strong couplings do not overflow. A frustrated ring (prod_b J_b < 0: the terms
    alternate in sign and cancel to ~e^{-c K} of the largest) is summed by mpmath at a precision
    that carries the cancellation."""
    k = beta * np.asarray(bond_j, dtype=float)
    n_terms = _ring_terms(k)
    if np.prod(np.sign(k)) < 0:
        return len(k) * LOG_4PI + _frustrated_ring_log_sum(k, n_terms)
    ell = np.arange(n_terms)[:, None]
    ak = np.abs(k)[None, :]
    safe = np.where(ak > 0, ak, 1.0)
    # ln i_l(K) = ln sqrt(pi / 2K) + ln I_{l+1/2}(K) e^{-K} + K; i_l(0) = [l = 0]
    with np.errstate(divide="ignore"):
        log_i = np.where(ak > 0, 0.5 * np.log(np.pi / (2 * safe)) + np.log(ive(ell + 0.5, safe))
                         + safe, np.where(ell == 0, 0.0, -np.inf))
    # i_l(-K) = (-1)^l i_l(K): with an even number of negative bonds every term is positive
    log_terms = np.log(2 * ell[:, 0] + 1) + log_i.sum(axis=1)
    return len(k) * LOG_4PI + float(logsumexp(log_terms))


def _ring_terms(k: np.ndarray) -> int:
    """Terms l < L of the ring's sum: i_l(K) / i_0(K) ~ exp(-l^2 / 2K) once l > sqrt(K), so
    10 sqrt(max |K|) leaves < e^-50 of the sum out."""
    return 80 + int(10 * math.sqrt(float(np.max(np.abs(k), initial=0.0))))


def _frustrated_ring_log_sum(k: np.ndarray, n_terms: int) -> float:
    """ln sum_l (2l + 1) prod_b i_l(K_b) for K (N,) with prod_b K_b < 0, in mpmath with ~30
    digits beyond the cancellation (the largest terms exceed the sum by up to ~e^{sum |K|})."""
    import mpmath  # only this oracle needs it

    with mpmath.workdps(30 + int(np.sum(np.abs(k)) / math.log(10))):
        kk = [mpmath.mpf(float(x)) for x in k]
        total = mpmath.mpf(0)
        for ell in range(n_terms):
            term = mpmath.mpf(2 * ell + 1)
            for x in kk:  # every K_b != 0 here: a zero bond leaves prod_b K_b = 0
                term *= _spherical_i(ell, x)
            total += term
        if total <= 0:
            raise ArithmeticError(f"ring_log_z: the alternating sum came out {total}; "
                                  "raise the precision")
        return float(mpmath.log(total))


def _spherical_i(ell: int, x):
    """i_l(x) = sqrt(pi / 2x) I_{l+1/2}(x) in mpmath, odd/even in x as (-1)^l."""
    import mpmath

    value = mpmath.sqrt(mpmath.pi / (2 * abs(x))) * mpmath.besseli(ell + 0.5, abs(x))
    return -value if x < 0 and ell % 2 else value


def nn_chain_mean_energy(bond_j, beta: float) -> float:
    """<E> of an open nearest-neighbour chain."""
    j = np.asarray(bond_j, dtype=float)
    return float(-np.sum(j * langevin(beta * j)))


def nn_chain_bond_correlation(bond_j, beta: float) -> np.ndarray:
    """<S_i . S_{i+1}> for each bond, shape (n_bonds,)."""
    return langevin(beta * np.asarray(bond_j, dtype=float))


def nn_chain_heat_capacity(bond_j, beta: float) -> float:
    """Heat capacity C = d<E>/dT (k_B = 1) of an open nearest-neighbour chain."""
    k = np.abs(beta * np.asarray(bond_j, dtype=float))
    ks = np.where(k < 1e-4, 1.0, k)
    k_over_sinh = 2.0 * ks * np.exp(-ks) / -np.expm1(-2.0 * ks)  # K / sinh K, no overflow
    term = np.where(k < 1e-4, k**2 / 3.0, 1.0 - k_over_sinh**2)
    return float(np.sum(term))


def helix_ground_state(j1: float, j2: float) -> tuple[float, float]:
    """Ground state of the uniform infinite J1-J2 chain.

    Returns:
        (q, e): pitch angle q in radians between neighbouring spins (cos q = -J1 / (4 J2) when
        J2 < -|J1|/4, else the collinear state) and the energy per site e = -J1 cos q - J2 cos 2q.
    """
    if j2 < 0 and abs(j1) < -4 * j2:
        q = float(np.arccos(-j1 / (4 * j2)))
    else:
        q = 0.0 if j1 >= 0 else float(np.pi)
    return q, float(-j1 * np.cos(q) - j2 * np.cos(2 * q))


def triangular_high_t_energy(j: float, beta: float, n_sites: int) -> tuple[float, float]:
    """<E> of the periodic triangular lattice (uniform nearest-neighbour J, N sites) by the
    high-temperature (loop) expansion, and the size of its first omitted order.

    Each bond's Boltzmann factor is (sinh K / K)(1 + 3 u S_i.S_j + ...), u = L(K), K = beta J.
    A closed loop of l bonds carrying the first harmonic contributes 3 u^l to ln Z (each site of
    the loop integrates to a factor 1/3); the triangular lattice has 3N bonds, 2N triangles and
    3N rhombi (its only 4-cycles), so
        ln Z / N = ln 4 pi + 3 ln(sinh K / K) + 6 u^3 + 9 u^4 + O(u^5),
        <E> / N = -J [3 u + (18 u^2 + 36 u^3) u'],   u' = 1/K^2 - 1/sinh^2 K.
    Returns (<E>, |J| N 90 u^4 |u'|): the second number is the omitted u^5 term (6N
    pentagons, 3 u^5 each, differentiated), the tolerance of the series at small K.
    """
    k = beta * j
    u = float(langevin(k))
    du = 1.0 / k**2 - 1.0 / math.sinh(k) ** 2 if abs(k) > 1e-4 else 1.0 / 3.0
    mean = -j * n_sites * (3 * u + (18 * u**2 + 36 * u**3) * du)
    return mean, abs(j) * n_sites * 90 * u**4 * abs(du)
