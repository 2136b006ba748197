"""The molecular generation stage: Langevin dynamics with the learned force against the MD that
followed the same frames, on the Ramachandran plane and in the bond lengths and angles."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from spinscore.errors import SpinscoreError
from spinscore.stages.data import write_json


def angle_triplets(bonds: np.ndarray) -> np.ndarray:
    """(n_angles, 3) atom triplets (i, j, k), i < k, with i-j and j-k bonded: the bond angles."""
    neighbours: dict[int, set[int]] = {}
    for a, b in np.asarray(bonds, dtype=int):
        neighbours.setdefault(int(a), set()).add(int(b))
        neighbours.setdefault(int(b), set()).add(int(a))
    return np.array([(i, j, k) for j in sorted(neighbours) for i in sorted(neighbours[j])
                     for k in sorted(neighbours[j]) if i < k], dtype=int)


def bond_and_angle_values(positions: np.ndarray, bonds: np.ndarray, angles: np.ndarray
                          ) -> tuple[np.ndarray, np.ndarray]:
    """Bond lengths (..., n_bonds) nm and bond angles (..., n_angles) degrees."""
    from spinscore.molecules.validation import bond_lengths

    x = np.asarray(positions, dtype=np.float64)
    r = bond_lengths(x, bonds)
    u = x[..., angles[:, 0], :] - x[..., angles[:, 1], :]
    v = x[..., angles[:, 2], :] - x[..., angles[:, 1], :]
    cos = (u * v).sum(-1) / (np.linalg.norm(u, axis=-1) * np.linalg.norm(v, axis=-1))
    return r, np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def start_frames(n_trajectories: int, n_frames: int, length: int, chains: int) -> list[tuple[int, int]]:
    """(trajectory, frame) of each chain's start: round robin over the trajectories, evenly
    spaced in [0, n_frames - 1 - length] so that `length` MD frames follow every start."""
    last = n_frames - 1 - length
    if last < 0:
        raise SpinscoreError(f"generate.picoseconds: {length} frames do not fit in trajectories "
                             f"of {n_frames} frames")
    per = -(-chains // n_trajectories)
    slots = np.linspace(0, last, per).round().astype(int)
    return [(c % n_trajectories, int(slots[c // n_trajectories])) for c in range(chains)]


def _distribution_summary(generated: np.ndarray, md: np.ndarray) -> dict:
    """Per-coordinate means and stds (over frames and chains) of generated against MD."""
    g = generated.reshape(-1, generated.shape[-1])
    m = md.reshape(-1, md.shape[-1])
    dmean = np.abs(g.mean(0) - m.mean(0))
    rstd = np.abs(g.std(0) / m.std(0) - 1.0)
    return {"mean_difference": {"median": float(np.median(dmean)), "worst": float(dmean.max())},
            "std_relative_difference": {"median": float(np.median(rstd)), "worst": float(rstd.max())}}


def generate_molecule(checkpoint: str | Path, data_path: str | Path, out_dir: str | Path, *,
                      chains: int = 64, picoseconds: float = 5.0, seed: int = 0,
                      friction_per_ps: float | None = None) -> dict:
    """Generation for a molecule: generation.json and generation.png in `out_dir`.

    `chains` chains start from frames of the held-out trajectories and run `picoseconds` of
    BAOAB Langevin dynamics with the learned force (score / beta at the smallest training
    noise), the data's time step and frame spacing, and its friction unless `friction_per_ps`
    is given. The MD frames that followed the same starts are the reference: Ramachandran maps
    and their Jensen-Shannon divergence (with the sampling floor: the divergence between the
    even and the odd MD chains, scaled to the sizes compared: the histograms' estimate is biased
    up by ~ 1/n1 + 1/n2, twice as much for two halves as for model vs MD), basin populations,
    bond-length and angle distributions.
    Returns generation.json's numbers.
    """
    from spinscore.molecules import backbone_dihedrals, basin_populations, read_molecule_data
    from spinscore.molecules.generation import js_divergence, model_score, score_langevin
    from spinscore.molecules.ramachandran import ramachandran_histogram
    from spinscore.report.figures import save_figure
    from spinscore.report.molecule_figures import generation_figure
    from spinscore.stages.molecule_readout import smallest_sigma
    from spinscore.stages.molecule_training import load_molecule_model

    model, config = load_molecule_model(checkpoint)
    data = read_molecule_data(data_path)
    held = config.train.holdout_trajectories
    attrs = data.attrs
    frame_ps = attrs["timestep_fs"] * attrs["steps_per_frame"] * 1e-3
    friction = attrs["friction_per_ps"] if friction_per_ps is None else friction_per_ps
    length = max(1, int(round(picoseconds / frame_ps)))
    positions = data.positions[-held:]  # (T, F, n, 3)
    starts = start_frames(held, positions.shape[1], length, chains)
    x0 = np.stack([positions[t, f] for t, f in starts])
    md = np.stack([positions[t, f + 1:f + 1 + length] for t, f in starts], axis=1)  # (L, B, n, 3)
    clock = time.perf_counter()
    run = score_langevin(model_score(model, smallest_sigma(config)), x0, data.masses,
                         temperature_K=attrs["temperature_K"], timestep_fs=attrs["timestep_fs"],
                         friction_per_ps=friction,
                         steps=length * int(attrs["steps_per_frame"]),
                         record_every=int(attrs["steps_per_frame"]), seed=seed)
    generated = run.positions
    seconds = time.perf_counter() - clock

    dihedrals = {"model": backbone_dihedrals(generated), "md": backbone_dihedrals(md)}
    maps = {k: ramachandran_histogram(*v) for k, v in dihedrals.items()}
    even, odd = (backbone_dihedrals(md[:, 0::2]), backbone_dihedrals(md[:, 1::2]))
    populations = {k: basin_populations(phi.T, psi.T) for k, (phi, psi) in dihedrals.items()}
    angles = angle_triplets(data.bonds)
    values = {k: bond_and_angle_values(v, data.bonds, angles) for k, v in
              (("model", generated), ("md", md))}
    result = {
        "checkpoint": str(checkpoint), "data": str(data_path), "chains": chains,
        "friction_per_ps": friction,
        "picoseconds": length * frame_ps, "frames_per_chain": length,
        "seconds": seconds, "ns_per_day": length * frame_ps * 1e-3 * chains / (seconds / 86400),
        "kinetic_temperature": {"model": float(run.kinetic_temperature.mean()),
                                "stderr": float(run.kinetic_temperature.mean(0).std(ddof=1)
                                                / np.sqrt(chains)),
                                "bath": float(attrs["temperature_K"])},
        "js_divergence": js_divergence(maps["model"], maps["md"]),
        "js_md_halves": js_divergence(ramachandran_histogram(*even), ramachandran_histogram(*odd)),
        "js_floor_scale": (1 / dihedrals["model"][0].size + 1 / dihedrals["md"][0].size)
        / (1 / even[0].size + 1 / odd[0].size),
        "populations": {k: p.as_dict() for k, p in populations.items()},
        "bond_lengths_nm": _distribution_summary(values["model"][0], values["md"][0]),
        "angles_deg": _distribution_summary(values["model"][1], values["md"][1]),
    }
    result["js_floor"] = result["js_md_halves"] * result["js_floor_scale"]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_figure(generation_figure(dihedrals, values, result), out / "generation.png")
    write_json(out / "generation.json", result)
    return result
