"""Health and content of a simulated data set: swap rates, round trips, energies, bond order."""

from __future__ import annotations

from typing import Any

import numpy as np

from spinscore.io import Dataset
from spinscore.physics.hamiltonian import system_couplings, system_tangent_force
from spinscore.systems import system_from_config


def bond_dots_by_class(ds: Dataset) -> dict[str, np.ndarray]:
    """S_i . S_j of every interacting pair of every snapshot, grouped by parameter name (e.g.
    'J1_AB'); within a name ordered by sequence, snapshot, then the system's pair order."""
    system = ds.config.system
    sites = system_from_config(system)
    pairs = sites.pairs(ds.types.shape[-1])
    classes = sites.pair_classes(ds.types)  # (n, P)
    spins = ds.spins.astype(np.float64)
    dots = np.sum(spins[:, :, pairs.i] * spins[:, :, pairs.j], axis=-1)  # (n, snap, P)
    cls = np.broadcast_to(classes[:, None], dots.shape)
    return {name: dots[cls == k] for k, name in enumerate(system.parameter_names())}


def tangent_force_magnitudes(ds: Dataset) -> np.ndarray:
    """|F_i| of every real site of every snapshot (units of J), flattened; F the tangent force
    of the data set's system (a chain's bonds, or the pairs of a lattice or graph)."""
    sites = system_from_config(ds.config.system)
    couplings = system_couplings(sites, ds.types, ds.config.system.coupling_table())[:, None]
    force = system_tangent_force(sites, ds.spins.astype(np.float64), couplings)
    return np.linalg.norm(force, axis=-1)[np.broadcast_to(ds.valid[:, None], force.shape[:-1])]


def dataset_summary(ds: Dataset) -> dict[str, Any]:
    """JSON-ready summary: sizes, system, temperatures, swap rates, energy per spin, bond order."""
    system, sim = ds.config.system, ds.config.simulation
    n_spins = ds.length.astype(float)[:, None]
    e_per_spin = ds.energy / n_spins
    acc = ds.swap_acceptance
    dots = bond_dots_by_class(ds)
    return {
        "file": str(ds.path),
        "sequences": ds.n_sequences,
        "snapshots_per_sequence": ds.n_snapshots,
        "spins_total": int(ds.length.sum() * ds.n_snapshots),
        "length_min_mean_max": [int(ds.length.min()), float(ds.length.mean()),
                                int(ds.length.max())],
        "geometry": _geometry_text(system),
        "types": list(system.types),
        "couplings": dict(zip(system.parameter_names(), system.parameter_vector().tolist(),
                              strict=True)),
        "temperature": system.temperature,
        "beta": system.beta,
        "temperatures": ds.temperatures.tolist(),
        "swap_acceptance_mean": acc.mean(axis=0).tolist() if acc.size else [],
        "swap_acceptance_min": float(acc.min()) if acc.size else None,
        "round_trips_mean": float(ds.round_trips.mean()),
        "energy_per_spin_mean": float(e_per_spin.mean()),
        "energy_per_spin_std": float(e_per_spin.std()),
        "bond_correlation_mean": {k: float(v.mean()) for k, v in dots.items() if v.size},
        "schedule": {"replicas": sim.replicas, "burn_in": sim.burn_in,
                     "thinning": sim.thinning, "swap_every": sim.swap_every, "seed": sim.seed},
        "spinscore_version": str(ds.attrs.get("spinscore_version", "")),
        "git_commit": str(ds.attrs.get("git_commit", "")),
    }


def _geometry_text(system) -> str:
    """"chain", "square lattice 8x8, periodic" or "graph of N sites, P pairs (FILE)"."""
    if system.lattice is not None:
        lat = system.lattice
        return f"{lat.kind} lattice {'x'.join(map(str, lat.size))}, {lat.boundary}"
    if system.graph is not None:
        g = system.graph
        return f"graph of {g.sites} sites, {len(g.pairs)} pairs" + (f" ({g.file})" if g.file else "")
    return "chain"


def format_summary(summary: dict[str, Any]) -> str:
    """Human-readable text of `dataset_summary`."""
    s = summary
    lo, mean, hi = s["length_min_mean_max"]
    chain = s.get("geometry", "chain").startswith("chain")
    sites = f"length {lo}..{hi} (mean {mean:.1f})" if chain else f"{lo} sites per sample"
    lines = [
        f"data set      {s['file']}",
        f"size          {s['sequences']} {'sequences' if chain else 'samples'} x "
        f"{s['snapshots_per_sequence']} snapshots = {s['spins_total']} spins; {sites}",
        f"geometry      {s.get('geometry', 'chain')}",
        f"system        types {s['types']}, T = {s['temperature']:g} (beta = {s['beta']:g})",
        "couplings     " + ", ".join(f"{k} = {v:+g}" for k, v in s["couplings"].items()),
        f"energy/spin   {s['energy_per_spin_mean']:.5f} +- {s['energy_per_spin_std']:.5f} (std)",
        "<S.S'>        " + ", ".join(f"{k} {v:+.4f}" for k, v in
                                     s["bond_correlation_mean"].items()),
    ]
    if s["swap_acceptance_mean"]:
        rates = " ".join(f"{a:.2f}" for a in s["swap_acceptance_mean"])
        lines.append(f"swap rates    {rates} (hot -> cold pairs; min over chains "
                     f"{s['swap_acceptance_min']:.2f})")
        lines.append(f"round trips   {s['round_trips_mean']:.1f} per chain (mean)")
    lines.append(f"provenance    spinscore {s['spinscore_version']} ({s['git_commit']}), "
                 f"seed {s['schedule']['seed']}")
    return "\n".join(lines)
