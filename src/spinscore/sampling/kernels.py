"""Compiled Monte Carlo kernels (Numba) on preallocated arrays.

Layout used by every kernel of one chain:
    spins: (R, L + 2K, 3) float64 -- R replicas, the L real sites at rows K..K+L-1 and K rows of
           zero padding at each end, so the local-field loop needs no boundary branches;
    bonds: (K, L + 2K) float64 -- bonds[r-1, p] couples padded rows p and p + r (zero when
           either is padding).

Layout of the graph kernels (lattices, graphs; the chain keeps its padded kernels, the ones its
data sets were made with):
    spins: (R, N, 3) float64 -- R replicas of N sites;
    offsets (N + 1,), neighbours (2P,), neighbour_couplings (2P,): the interaction graph in
        compressed rows (CSR): the neighbours of site i are neighbours[offsets[i]:offsets[i+1]]
        with couplings J_ij (each pair appears once from each end);
    pair_i, pair_j, pair_couplings (P,): each pair once, for the energy.

Every compiled function and all it calls live in this file: Numba's cache is invalidated only by
edits of the file that defines a cached function (a helper elsewhere would stay stale).

Randomness is explicit: a xoshiro256** state (4 uint64, seeded from NumPy's SeedSequence per
chain) is passed to every kernel, so a chain's trajectory depends only on its own seed and never
on the thread that runs it. xoshiro is used instead of a NumPy Generator inside the kernels
because its next() inlines (about 1 ns a draw against 7 ns through the Generator interface,
measured on this machine), and the kernel draws about two numbers per spin update.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, uint64

_TWO_PI = 2.0 * math.pi
_INV_2_53 = 1.0 / 9007199254740992.0  # 2**-53
_LOW_53 = uint64((1 << 53) - 1)
_FAST = {"contract", "afn", "arcp", "nsz"}  # no reassociation: results stay reproducible


# --- random numbers: xoshiro256** (Blackman & Vigna 2018) -------------------------------------


@njit(inline="always")
def _rotl(x, k):
    return (x << uint64(k)) | (x >> uint64(64 - k))


@njit(inline="always")
def next_u64(s):
    """Next 64-bit output of xoshiro256**; advances the state `s` (4 uint64) in place."""
    result = _rotl(s[1] * uint64(5), 7) * uint64(9)
    t = s[1] << uint64(17)
    s[2] ^= s[0]
    s[3] ^= s[1]
    s[1] ^= s[2]
    s[0] ^= s[3]
    s[2] ^= t
    s[3] = _rotl(s[3], 45)
    return result


@njit(inline="always")
def uniform(s):
    """Uniform double in (0, 1] (never 0, so its logarithm is finite)."""
    return (float(next_u64(s) >> uint64(11)) + 1.0) * _INV_2_53


# --- single-spin moves -----------------------------------------------------------------------


@njit(inline="always")
def _unit_disk_angle(s):
    """(cos phi, sin phi) of a uniform angle without trigonometry: a uniform point (x, y) in the
    unit disk by rejection, then the doubled angle (x^2 - y^2, 2xy) / (x^2 + y^2) (von Neumann)."""
    while True:
        x = 2.0 * uniform(s) - 1.0
        y = 2.0 * uniform(s) - 1.0
        r2 = x * x + y * y
        if 0.0 < r2 <= 1.0:
            return (x * x - y * y) / r2, 2.0 * x * y / r2


@njit(inline="always")
def heat_bath_draw(hx, hy, hz, beta, u, s):
    """Draw a spin from p(S) ~ exp(beta h.S) (von Mises-Fisher, kappa = beta |h|).

    `u` is a uniform number in (0, 1]: cos(theta) = 1 - v with
    v = -log(u + (1-u) e^{-2 kappa}) / kappa (the stable form of SPEC §3) for kappa <= 1, and by
    exact rejection from Exp(kappa) above; the azimuth is uniform
    in a right-handed orthonormal frame around h built without a pole (Duff et al. 2017,
    "Building an orthonormal basis, revisited"). Returns the new spin (x, y, z).
    """
    hn = math.sqrt(hx * hx + hy * hy + hz * hz)
    kappa = beta * hn
    cos_p, sin_p = _unit_disk_angle(s)
    if kappa < 1e-12:  # no field: uniform on the sphere
        z = 2.0 * u - 1.0
        r = math.sqrt(max(0.0, 1.0 - z * z))
        return r * cos_p, r * sin_p, z
    if kappa > 1.0:
        # v = 1 - cos(theta) is Exp(kappa) truncated to [0, 2]: rejection from the plain
        # exponential is exact and avoids exp(); it accepts with probability 1 - e^{-2 kappa}.
        v = -math.log(u) / kappa
        while v > 2.0:
            v = -math.log(uniform(s)) / kappa
    else:
        v = min(-math.log(u + (1.0 - u) * math.exp(-2.0 * kappa)) / kappa, 2.0)
    cos_t = 1.0 - v
    sin_t = math.sqrt(max(0.0, v * (2.0 - v)))
    inv = 1.0 / hn
    nx, ny, nz = hx * inv, hy * inv, hz * inv
    sign = math.copysign(1.0, nz)
    a = -1.0 / (sign + nz)
    b = nx * ny * a
    e1x, e1y, e1z = 1.0 + sign * nx * nx * a, sign * b, -sign * nx
    e2x, e2y, e2z = b, sign + ny * ny * a, -ny
    c = sin_t * cos_p
    d = sin_t * sin_p
    return (
        cos_t * nx + c * e1x + d * e2x,
        cos_t * ny + c * e1y + d * e2y,
        cos_t * nz + c * e1z + d * e2z,
    )


@njit(inline="always")
def over_relax(sx, sy, sz, hx, hy, hz):
    """Reflect S about the field axis: S <- 2 (S.h) h / |h|^2 - S (keeps h.S, hence the local
    energy, exactly; microcanonical). Returns the new spin."""
    hh = hx * hx + hy * hy + hz * hz
    if hh == 0.0:
        return sx, sy, sz
    f = 2.0 * (sx * hx + sy * hy + sz * hz) / hh
    return f * hx - sx, f * hy - sy, f * hz - sz


@njit(inline="always")
def _field(spins, bonds, i, n_range):
    hx = hy = hz = 0.0
    for r in range(1, n_range + 1):
        jf = bonds[r - 1, i]
        jb = bonds[r - 1, i - r]
        hx += jf * spins[i + r, 0] + jb * spins[i - r, 0]
        hy += jf * spins[i + r, 1] + jb * spins[i - r, 1]
        hz += jf * spins[i + r, 2] + jb * spins[i - r, 2]
    return hx, hy, hz


@njit(inline="always", fastmath=_FAST)
def _update_site(spins, bonds, i, n_range, beta, s):
    """Heat bath with probability 1/2, otherwise over-relaxation, at padded row i (SPEC §3)."""
    hx, hy, hz = _field(spins, bonds, i, n_range)
    apply_move(spins, i, hx, hy, hz, beta, s)


@njit(inline="always", fastmath=_FAST)
def apply_move(spins, i, hx, hy, hz, beta, s):
    """Row i of `spins` given its local field h: a heat-bath draw with probability 1/2,
    otherwise the over-relaxation reflection (SPEC §3); in place."""
    bits = next_u64(s)  # the top bit chooses the move, the low 53 bits feed the heat bath
    if bits >> uint64(63):
        u = (float(bits & _LOW_53) + 1.0) * _INV_2_53
        x, y, z = heat_bath_draw(hx, hy, hz, beta, u, s)
    else:
        x, y, z = over_relax(spins[i, 0], spins[i, 1], spins[i, 2], hx, hy, hz)
    spins[i, 0] = x
    spins[i, 1] = y
    spins[i, 2] = z


@njit(nogil=True, cache=True, fastmath=_FAST)
def sweep(spins, bonds, order, beta, s):
    """One sweep over the real sites of one replica, one site at a time, in `order`.

    The order comes from the system's colouring (`SpinSystem.sweep_order`): sites colour by
    colour, so consecutive updates share no bond, do not wait for each other and the CPU
    overlaps them (about 1.5x faster than in chain order for the chain's i mod K+1). Any fixed
    visiting order is a valid sequential Gibbs sweep.

    spins: (L + 2K, 3) padded rows of one replica, updated in place; bonds: (K, L + 2K);
    order: (L,) int64 padded rows (site + K) in the order of the sweep.
    """
    n_range = bonds.shape[0]
    end = spins.shape[0] - n_range
    for k in range(order.shape[0]):
        i = order[k]
        # Always true for a valid order; it tells the compiler that i - r >= 0, so the
        # negative-index checks of the field loop go (8 % of the sweep's time, measured).
        if n_range <= i < end:
            _update_site(spins, bonds, i, n_range, beta, s)


@njit(nogil=True, cache=True)
def chain_energy(spins, bonds):
    """Energy of one padded replica (L + 2K, 3); renormalises the spins as it goes (removes
    the rounding drift of repeated over-relaxation)."""
    n_range = bonds.shape[0]
    for i in range(n_range, spins.shape[0] - n_range):
        n = math.sqrt(spins[i, 0] ** 2 + spins[i, 1] ** 2 + spins[i, 2] ** 2)
        spins[i, 0] /= n
        spins[i, 1] /= n
        spins[i, 2] /= n
    e = 0.0
    for i in range(n_range, spins.shape[0] - n_range):
        for r in range(1, n_range + 1):
            e -= bonds[r - 1, i] * (
                spins[i, 0] * spins[i + r, 0]
                + spins[i, 1] * spins[i + r, 1]
                + spins[i, 2] * spins[i + r, 2]
            )
    return e


@njit(nogil=True, cache=True)
def random_spins(spins, n_range, s):
    """Fill the real rows of (R, L + 2K, 3) with independent uniform unit vectors."""
    for k in range(spins.shape[0]):
        for i in range(n_range, spins.shape[1] - n_range):
            z = 2.0 * uniform(s) - 1.0
            phi = _TWO_PI * uniform(s)
            r = math.sqrt(max(0.0, 1.0 - z * z))
            spins[k, i, 0] = r * math.cos(phi)
            spins[k, i, 1] = r * math.sin(phi)
            spins[k, i, 2] = z


@njit(nogil=True, cache=True)
def heat_bath_samples(h, beta, n, s):
    """n heat-bath draws for a fixed field h (3,), shape (n, 3): for testing the move."""
    out = np.empty((n, 3))
    for k in range(n):
        out[k, 0], out[k, 1], out[k, 2] = heat_bath_draw(h[0], h[1], h[2], beta, uniform(s), s)
    return out


# --- replica exchange --------------------------------------------------------------------------


@njit(inline="always")
def exchange_step(betas, energies, perm, last_end, phase, swap_accepted, swap_attempted,
                  counted, s):
    """Propose swaps of neighbouring temperatures (a, a + 1) for a = phase, phase + 2, ...
    (Metropolis on (beta_a - beta_a+1)(E_a - E_a+1)), then update the round-trip bookkeeping.

    perm (R,): slot at each temperature; energies (R,) at each temperature; last_end (R,) per
    slot: 0 none, 1 hottest, 2 coldest; counters (R-1,), incremented only when `counted` (after
    burn-in). All updated in place.
    Returns (next phase, round trips completed by this step).
    """
    n_rep = perm.shape[0]
    for a in range(phase, n_rep - 1, 2):
        swap_attempted[a] += counted
        delta = (betas[a] - betas[a + 1]) * (energies[a] - energies[a + 1])
        if delta >= 0.0 or uniform(s) < math.exp(delta):
            swap_accepted[a] += counted
            perm[a], perm[a + 1] = perm[a + 1], perm[a]
            energies[a], energies[a + 1] = energies[a + 1], energies[a]
    trips = 0
    if n_rep > 1:
        last_end[perm[0]] = 1
        if last_end[perm[n_rep - 1]] == 1:
            trips = 1
        last_end[perm[n_rep - 1]] = 2
    return 1 - phase, trips


@njit(inline="always")
def swap_step(measured, betas, energies, perm, last_end, phase, n_samples, trips,
              swap_accepted, swap_attempted, ladder_energy, ladder_energy_sq, ladder_trace, s):
    """`exchange_step`, then, once `measured` (after burn-in), the round trips it completed and
    the energies at each temperature: E and E^2 added to the sums (R,), E copied into row
    `n_samples` of the trace. Returns (phase, n_samples, trips) updated."""
    phase, new_trips = exchange_step(betas, energies, perm, last_end, phase, swap_accepted,
                                     swap_attempted, measured, s)
    if measured:
        trips += new_trips
        for k in range(energies.shape[0]):
            ladder_energy[k] += energies[k]
            ladder_energy_sq[k] += energies[k] * energies[k]
            ladder_trace[n_samples, k] = energies[k]
        n_samples += 1
    return phase, n_samples, trips


@njit(nogil=True, cache=True)
def remc_chain(
    spins, bonds, order, betas, burn_in, n_snapshots, thinning, swap_every, s,
    snapshots, swap_accepted, swap_attempted, ladder_energy, ladder_energy_sq, ladder_trace,
):  # fmt: skip
    """Replica-exchange Monte Carlo of one chain (SPEC §3); all outputs preallocated.

    Args:
        spins: (R, L + 2K, 3) initial replicas (modified). bonds: (K, L + 2K). order: (L,)
            padded rows in the order of a sweep (see `sweep`). betas: (R,) inverse
            temperatures, ascending (index 0 hottest, R-1 the target temperature).
        burn_in, n_snapshots, thinning, swap_every: schedule in sweeps. A sweep updates every
            site of every replica once; swaps of neighbouring temperatures are proposed every
            `swap_every` sweeps, even pairs and odd pairs alternately.
        s: xoshiro256** state (4,) uint64.
    Outputs (filled in place):
        snapshots: (n_snapshots, L, 3) the coldest replica after sweep burn_in + (k+1) thinning.
        swap_accepted, swap_attempted: (R-1,) counts per neighbouring pair after burn-in.
        ladder_energy, ladder_energy_sq: (R,) sums of E and E^2 at each temperature over the
            swap steps after burn-in (divide by the returned count).
        ladder_trace: (n_measurements, R) E at each temperature after each of those swap steps,
            in order; it must have exactly `measurement_count` rows (Numba does not check the
            bounds).
    Returns:
        (n_energy_samples, round_trips): round trips counts walkers that reached the coldest
        temperature after burn-in, having come from the hottest (which they may have visited
        during burn-in).
    """
    n_rep = spins.shape[0]
    n_range = bonds.shape[0]
    length = spins.shape[1] - 2 * n_range
    perm = np.arange(n_rep)  # perm[k]: replica slot currently at temperature k
    last_end = np.zeros(n_rep, dtype=np.int8)  # per slot: 0 none, 1 hottest, 2 coldest
    energies = np.empty(n_rep)
    phase, n_samples, trips = 0, 0, 0
    for t in range(1, burn_in + n_snapshots * thinning + 1):
        for k in range(n_rep):
            sweep(spins[perm[k]], bonds, order, betas[k], s)
        if t % swap_every == 0:
            for k in range(n_rep):
                energies[k] = chain_energy(spins[perm[k]], bonds)
            phase, n_samples, trips = swap_step(
                t > burn_in, betas, energies, perm, last_end, phase, n_samples, trips,
                swap_accepted, swap_attempted, ladder_energy, ladder_energy_sq, ladder_trace, s)
        if t > burn_in and (t - burn_in) % thinning == 0:
            snap = (t - burn_in) // thinning - 1
            cold = spins[perm[n_rep - 1]]
            for i in range(length):
                for c in range(3):
                    snapshots[snap, i, c] = cold[n_range + i, c]
    return n_samples, trips


# --- any interaction graph (lattices, graphs): the same moves on an unpadded layout -----------

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
            phase, n_samples, trips = swap_step(
                t > burn_in, betas, energies, perm, last_end, phase, n_samples, trips,
                swap_accepted, swap_attempted, ladder_energy, ladder_energy_sq, ladder_trace, s)
        if t > burn_in and (t - burn_in) % thinning == 0:
            snapshots[(t - burn_in) // thinning - 1] = spins[perm[n_rep - 1]]
    return n_samples, trips

