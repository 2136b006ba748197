"""Generated configurations against REMC: sample configurations of one sequence (a chain's, or the
site types of a lattice or graph) from the model, draw REMC snapshots of the same sequence,
compare energies and (chains only) helix domain walls."""

from __future__ import annotations

import time

import numpy as np
import torch

from spinscore.checkpoints import check_sites
from spinscore.config import GenerationConfig
from spinscore.diffusion.generate import energy_comparison, sample_chains
from spinscore.physics.hamiltonian import chirality_reversals, system_couplings, system_energy
from spinscore.sampling.remc import simulate_chain
from spinscore.systems import Chain, system_from_config


def compare_with_remc(model, config, types: np.ndarray, n: int, *,
                      settings: GenerationConfig | None = None, seed: int = 0,
                      reference_snapshots: int = 200, progress: bool = False
                      ) -> tuple[np.ndarray, np.ndarray, dict]:
    """Generate n chains of `types` and compare them with REMC of the same sequence.

    model, config (RunConfig): from `checkpoints.load_model`. types: (L,) int site
    types. settings: the sampler (default config.generation). REMC: the config's schedule and
    ladder with `reference_snapshots` snapshots of the coldest replica. Returns (spins (n, L, 3)
    float32, energies (n,), summary dict: energy statistics, chirality reversals (chains only,
    None otherwise), the sampler settings, timings in seconds).
    """
    g = config.generation if settings is None else settings
    system, diffusion = config.system, config.diffusion
    types = np.asarray(types, dtype=np.int64)
    check_sites(model, len(types), "sequence")
    sites = system_from_config(system)
    couplings = system_couplings(sites, types, system.coupling_table())  # (K, L) or (P,)
    chain = isinstance(sites, Chain)

    tick = time.perf_counter()
    gen = torch.Generator().manual_seed(seed)
    spins = sample_chains(model, torch.as_tensor(types), n, t_min=diffusion.t_min,
                          t_max=diffusion.t_max, method=g.method, steps=g.steps,
                          predictor=g.predictor, corrector_steps=g.corrector_steps, snr=g.snr,
                          final_corrector_steps=g.final_corrector_steps,
                          zero_time=g.zero_time,
                          corrector_max_step=g.corrector_max_step, generator=gen,
                          progress=progress).numpy().astype(np.float32)
    e_gen = system_energy(sites, spins.astype(np.float64), couplings)
    sample_s = time.perf_counter() - tick

    tick = time.perf_counter()
    sim = config.simulation.model_copy(update={"snapshots": reference_snapshots, "seed": seed})
    ref = simulate_chain(system, sim, 0, types=types)
    e_ref = system_energy(sites, ref.spins, couplings)
    remc_s = time.perf_counter() - tick
    result = {
        "sequence": system.sequence_text(types), "length": len(types),
        "temperature": system.temperature, "method": g.method, "steps": g.steps, "seed": seed,
        "generation": g.model_dump(),
        **energy_comparison(e_gen, e_ref),
        "energy_per_spin_generated": float(e_gen.mean() / len(types)),
        "energy_per_spin_reference": float(e_ref.mean() / len(types)),
        # helix defects: domain walls between the senses of rotation (chirality_reversals),
        # a chain's notion (along i, i + 1): None on a lattice or graph
        "chirality_reversals_generated": float(chirality_reversals(spins).mean()) if chain
        else None,
        "chirality_reversals_reference": float(chirality_reversals(ref.spins).mean()) if chain
        else None,
        "sample_seconds": sample_s, "remc_seconds": remc_s,
        "energies_reference": e_ref.tolist(),
    }
    return spins, e_gen, result
