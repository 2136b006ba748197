"""Replica-exchange Monte Carlo of many independent chains: ladders, seeding, chunks.

Each chain i has its own random stream, `SeedSequence(seed, spawn_key=(i,))`: its length and
site types are drawn from it with NumPy, then it seeds the compiled kernel's xoshiro state. A
chain's result therefore depends only on (config, i), never on chunking, threads or workers.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from spinscore.config import RunConfig, SimulationConfig, SystemConfig
from spinscore.physics.hamiltonian import (
    bond_couplings,
    pair_couplings,
    system_couplings,
    system_energy,
)
from spinscore.sampling import kernels
from spinscore.systems import Chain, SpinSystem, system_from_config


def temperature_ladder(t_min: float, t_max: float, n: int) -> np.ndarray:
    """Geometric ladder of n temperatures from t_max (index 0) down to t_min (index n-1)."""
    if n == 1:
        return np.array([t_min])
    return t_max * (t_min / t_max) ** (np.arange(n) / (n - 1))


def chain_seed(seed: int, index: int) -> np.random.SeedSequence:
    """The random stream of chain `index` of a data set with master seed `seed`."""
    return np.random.SeedSequence(seed, spawn_key=(index,))


def draw_sequence(system: SystemConfig, rng: np.random.Generator) -> np.ndarray:
    """The site types of one sample of `system` (`SpinSystem.draw_types`), (N,) int8."""
    return system_from_config(system).draw_types(rng)


def padded_bonds(types: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Bond couplings in the kernels' padded layout, shape (K, L + 2K) float64."""
    n_range = table.shape[0]
    bonds = np.zeros((n_range, len(types) + 2 * n_range))
    bonds[:, n_range : n_range + len(types)] = bond_couplings(types, table)
    return bonds


@dataclass
class ChainResult:
    """REMC output of one chain. Shapes: types (L,), spins (n_snap, L, 3) float64,
    swap_acceptance (R-1,), ladder_energy_mean/var (R,), ladder_energies (n_measurements, R)
    the energy at each temperature after every swap step past burn-in (`kernels.remc_chain`;
    kept in memory for estimators such as MBAR, not written to data sets)."""

    types: np.ndarray
    spins: np.ndarray
    swap_acceptance: np.ndarray
    ladder_energy_mean: np.ndarray
    ladder_energy_var: np.ndarray
    round_trips: int
    ladder_energies: np.ndarray


def simulate_chain(
    system: SystemConfig,
    sim: SimulationConfig,
    index: int,
    types: np.ndarray | None = None,
    temperatures: np.ndarray | None = None,
) -> ChainResult:
    """Run REMC for chain `index` of a data set (SPEC §3).

    `types` overrides the drawn sequence (the random stream is the same either way) and
    `temperatures` (R,) overrides the ladder, index 0 hottest (e.g. for thermodynamic
    integration or tests at one temperature).
    """
    seq = chain_seed(sim.seed, index)
    rng = np.random.default_rng(seq)
    sites = system_from_config(system)
    drawn = sites.draw_types(rng)
    types = drawn if types is None else np.asarray(types, dtype=np.int8)
    if temperatures is None:
        temperatures = temperature_ladder(system.temperature, sim.t_max, sim.replicas)
    betas = 1.0 / np.asarray(temperatures, dtype=float)
    table = system.coupling_table()
    state = rng.bit_generator.random_raw(4).astype(np.uint64) | np.uint64(1)
    run = _remc_on_chain if isinstance(sites, Chain) else _remc_on_graph
    snaps = np.empty((sim.snapshots, len(types), 3))
    accepted = np.zeros(max(len(betas) - 1, 0), dtype=np.int64)
    attempted = np.zeros_like(accepted)
    e_sum, e_sq = np.zeros(len(betas)), np.zeros(len(betas))
    trace = np.empty((measurement_count(sim.burn_in, sim.snapshots, sim.thinning,
                                                sim.swap_every), len(betas)))
    schedule = (betas, sim.burn_in, sim.snapshots, sim.thinning, sim.swap_every, state,
                snaps, accepted, attempted, e_sum, e_sq, trace)
    n_samples, trips = run(sites, types, table, schedule)
    n = max(n_samples, 1)
    mean = e_sum / n
    return ChainResult(
        types=types,
        spins=snaps,
        swap_acceptance=accepted / np.maximum(attempted, 1),
        ladder_energy_mean=mean,
        ladder_energy_var=np.maximum(e_sq / n - mean**2, 0.0),
        round_trips=int(trips),
        ladder_energies=trace,
    )


def _remc_on_chain(chain: Chain, types: np.ndarray, table: np.ndarray, schedule: tuple):
    """`kernels.remc_chain` on the chain's padded bond layout; returns (n_samples, trips)."""
    n_range, n_rep, length = table.shape[0], len(schedule[0]), len(types)
    bonds = padded_bonds(types, table)
    order = chain.sweep_order(length) + n_range  # padded rows, colour by colour (checked)
    spins = np.zeros((n_rep, length + 2 * n_range, 3))
    kernels.random_spins(spins, n_range, schedule[5])
    return kernels.remc_chain(spins, bonds, order, *schedule)


def _remc_on_graph(sites: SpinSystem, types: np.ndarray, table: np.ndarray, schedule: tuple):
    """`kernels.remc_graph` on the system's pairs; returns (n_samples, trips)."""
    n_sites = len(types)
    pairs = sites.pairs(n_sites)
    couplings = pair_couplings(types.astype(np.int64), pairs, table)
    offsets, neighbours, neighbour_couplings = neighbour_table(
        n_sites, pairs.i, pairs.j, couplings)
    spins = np.zeros((len(schedule[0]), n_sites, 3))
    kernels.random_spins(spins, 0, schedule[5])
    return kernels.remc_graph(spins, offsets, neighbours, neighbour_couplings, pairs.i,
                                    pairs.j, couplings, sites.sweep_order(n_sites), *schedule)


def simulate_chunk(config: RunConfig, indices: list[int] | range) -> dict[str, np.ndarray]:
    """Simulate the chains `indices` one after the other and pack them (`pack_chunk`)."""
    return pack_chunk(config, indices,
                      [simulate_chain(config.system, config.simulation, i) for i in indices])


def pack_chunk(config: RunConfig, indices: list[int] | range,
               results: list[ChainResult]) -> dict[str, np.ndarray]:
    """Pack the results of chains `indices` as zero-padded arrays (the data-set layout).

    Returns a dict: spins float32 (n, n_snap, L_max, 3), types int8 (n, L_max) with -1 padding,
    length int32 (n,), energy float64 (n, n_snap) of the stored float32 spins, swap_acceptance
    (n, R-1), ladder_energy_mean/var (n, R), round_trips int32 (n,), index int64 (n,).
    """
    system, sim = config.system, config.simulation
    sites = system_from_config(system)
    n, l_max, n_rep = len(indices), sites.max_sites, sim.replicas
    out = {
        "spins": np.zeros((n, sim.snapshots, l_max, 3), dtype=np.float32),
        "types": np.full((n, l_max), -1, dtype=np.int8),
        "length": np.zeros(n, dtype=np.int32),
        "energy": np.zeros((n, sim.snapshots)),
        "swap_acceptance": np.zeros((n, max(n_rep - 1, 0))),
        "ladder_energy_mean": np.zeros((n, n_rep)),
        "ladder_energy_var": np.zeros((n, n_rep)),
        "round_trips": np.zeros(n, dtype=np.int32),
        "index": np.asarray(list(indices), dtype=np.int64),
    }
    table = system.coupling_table()
    for row, res in enumerate(results):
        length = len(res.types)
        out["types"][row, :length] = res.types
        out["length"][row] = length
        out["spins"][row, :, :length] = res.spins
        out["swap_acceptance"][row] = res.swap_acceptance
        out["ladder_energy_mean"][row] = res.ladder_energy_mean
        out["ladder_energy_var"][row] = res.ladder_energy_var
        out["round_trips"][row] = res.round_trips
    # The energy of the spins as stored (float32), from the one definition of H.
    couplings = system_couplings(sites, out["types"], table)
    out["energy"] = system_energy(sites, out["spins"].astype(np.float64), couplings[:, None])
    return out


def chunk_ranges(n_sequences: int, chunk_size: int) -> list[range]:
    """Split 0..n_sequences-1 into consecutive chunks of at most chunk_size chains."""
    return [range(a, min(a + chunk_size, n_sequences)) for a in range(0, n_sequences, chunk_size)]


def run_chunks_local(config: RunConfig, chunks: list[range], threads: int):
    """Yield (chunk, arrays) chunk after chunk, the chains running on `threads` threads.

    The chains of the next chunk are queued before the current one is packed, so every core
    stays busy across chunk boundaries.
    """
    system, sim = config.system, config.simulation
    with ThreadPoolExecutor(max_workers=threads) as pool:
        queued: deque = deque()
        for chunk in [*chunks, None]:
            if chunk is not None:
                queued.append((chunk, [pool.submit(simulate_chain, system, sim, i) for i in chunk]))
            if len(queued) > 1 or (chunk is None and queued):
                done, futures = queued.popleft()
                yield done, pack_chunk(config, done, [f.result() for f in futures])


def measurement_count(burn_in: int, n_snapshots: int, thinning: int, swap_every: int) -> int:
    """Number of swap steps after burn-in in a REMC run (`remc_chain`, `remc_graph`): the
    rows of its energy trace, one per sweep t in (burn_in, burn_in + n_snapshots thinning]
    with t a multiple of swap_every."""
    return (burn_in + n_snapshots * thinning) // swap_every - burn_in // swap_every


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
