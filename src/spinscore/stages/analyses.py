"""Stages that read a trained model: extract, ood, generate, partition. Each loads its inputs
(checkpoint, data sets), calls the libraries and writes its JSON and figures."""

from __future__ import annotations

import time
from pathlib import Path

import h5py
import numpy as np

from spinscore import __version__, checkpoints
from spinscore.config import AnalysisConfig, PartitionSettings, TrustSettings
from spinscore.errors import SpinscoreError
from spinscore.io import Dataset, atomic_path, read_dataset
from spinscore.stages.data import write_json
from spinscore.systems import shell_basis

_ANALYSIS = AnalysisConfig()  # the defaults


def extract(data: str | Path, out: str | Path, method: str = "network",
            checkpoint: str | Path | None = None, t_eval: float | None = None,
            n_boot: int = _ANALYSIS.bootstrap, batch_size: int = _ANALYSIS.batch_size,
            per_config: bool = False, progress: bool = True,
            t_extrapolate: list[float] | None = None, shells: int | None = None) -> dict:
    """`spinscore extract`: extraction.json (and for the network the interaction profile, PNG +
    JSON, and with `per_config` the OOD flag of every snapshot, per_config.json) in `out`.

    The network is read at `t_eval` (OLS and direct-W; default: the checkpoint's
    `analysis.t_eval`, else its smallest training time) and at each of `t_extrapolate`
    (default: the checkpoint's `analysis.t_extrapolate`, else `default_readout_times` of its
    smallest training time; [] for none), whose OLS estimates are extrapolated to t = 0
    (`result["extrapolated"]`).
    `result["warnings"]` lists readout times outside the model's training range.

    `shells`: a basis of couplings up to that shell, zero beyond the true range;
    `result["shell_profile"]` (`coupling_profile`) gives them by shell. For the oracle and the
    classical estimators: how far below the couplings the data pin those beyond the range;
    for the network: the couplings its force carries (`network_shell_profile`)."""
    from spinscore.analysis import baselines
    from spinscore.analysis import extract as ex
    from spinscore.analysis.batches import CouplingsMemo
    from spinscore.analysis.readout import identifiability

    ds = read_dataset(data)
    out = Path(out)
    true_range, wide = ds.config.system.max_range, None
    if shells is not None and method == "network" and t_extrapolate is not None \
            and len(t_extrapolate) < 2:
        raise SpinscoreError("--shells: the network's couplings by shell are extrapolated to "
                             "t = 0 from two readout times; give two with --t-extrapolate")
    if shells is not None:
        try:
            extended = shell_basis(ds.config.system, shells)
        except SpinscoreError as err:
            raise SpinscoreError(f"--shells {shells}: {err}") from None
        wide = Dataset(ds.path, ds.config.model_copy(update={"system": extended}), ds.arrays,
                       ds.attrs)
        if method != "network":  # the network is read on its own basis, then on the wide one
            ds = wide
    # the classical estimators read `wide` itself (ds is wide), the network both bases
    for basis in [ds] if wide is None or wide is ds else [ds, wide]:
        missing = ex.absent_classes(basis)
        if missing:
            raise SpinscoreError(f"{data}: no pair of the data set is in the coupling "
                                 f"classes {', '.join(missing)}: their values cannot be read "
                                 f"(a fixed site pattern or short chains leave them out)")
    system = ds.config.system
    profile, eqs = None, None
    if method == "network":
        if checkpoint is None:
            raise SpinscoreError("--method network needs --checkpoint")
        model, run_config, meta = checkpoints.load_model(checkpoint)
        model = CouplingsMemo(model)  # nine walks over the test set at three times
        checkpoints.check_compatible(meta, system.types, system.max_range, str(data))
        checkpoints.check_geometry(run_config.system, system, str(data))
        t_eval, t_extrapolate = _readout_times(run_config.analysis, meta, t_eval, t_extrapolate)
        result, profile = _network_extraction(model, meta, ds, t_eval, n_boot, batch_size,
                                              progress, t_extrapolate, wide, true_range)
        result.update(checkpoint=str(checkpoint), checkpoint_format=meta["format"],
                      trained_t=meta["trained_t"])
        if per_config:
            _per_config(model, ds, t_eval, batch_size, progress, out)
    elif method == "oracle":
        eqs = ex.accumulate(ds, ex.oracle_force(ds), batch_size, progress)
        result = ex.summarise(eqs, ds, "oracle", n_boot)
    elif method == "score-matching":
        _, eqs = baselines.score_matching(ds, batch_size, progress)
        result = ex.summarise(eqs, ds, "score-matching", n_boot, unit=system.beta,
                              with_r2=False)
    elif method == "pseudolikelihood":
        theta, info = baselines.pseudo_likelihood(ds, batch_size, progress)
        xtx = info.pop("xtx")
        result = ex.describe(theta / system.beta, None, ds, "pseudolikelihood", system.beta, xtx)
        result["optimiser"] = info
    else:
        raise SpinscoreError(f"--method: unknown method {method!r}")
    if eqs is not None:
        result["identifiability"] = identifiability(eqs.total("xtx"), system.parameter_vector(),
                                                    ds.n_sequences * ds.n_snapshots)
    if shells is not None and method != "network":
        se = result.get("bootstrap_se", {}).get("estimate")
        result["shell_profile"] = ex.coupling_profile(result["estimate"], se,
                                                      len(system.type_pairs()), true_range)
    result["data"] = str(data)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "extraction.json", result)
    if profile is not None:
        from spinscore.report.figures import profile_figure, save_figure

        write_json(out / "interaction_profile.json", profile)
        save_figure(profile_figure(profile), out / "interaction_profile.png")
    return result


def _readout_times(analysis: AnalysisConfig, meta: dict, t_eval: float | None,
                   t_extrapolate: list[float] | None) -> tuple[float, list[float] | None]:
    """The readout times of a checkpoint: those given, else its run config's
    `analysis.t_eval` / `analysis.t_extrapolate` (what `reproduce` read it at), else the
    smallest training time (None for t_extrapolate: `default_readout_times`)."""
    if t_eval is None:
        t_eval = analysis.eval_time(meta["trained_t"])
    if t_extrapolate is None and analysis.t_extrapolate is not None:
        t_extrapolate = list(analysis.t_extrapolate)
    return t_eval, t_extrapolate


def _network_extraction(model, meta, ds, t_eval, n_boot, batch_size, progress, t_extrapolate,
                        wide=None, true_range=None):
    """The network's readouts (analysis.extract): OLS and direct-W at t_eval, OLS against t,
    the extrapolation to t = 0, identifiability; and the interaction profile. With `wide` (the
    data set on a basis past the true range) also the couplings its force carries by shell."""
    from spinscore.analysis import extract as ex
    from spinscore.analysis.readout import identifiability

    system = ds.config.system
    extra = ex.default_readout_times(meta["trained_t"][0]) if t_extrapolate is None \
        else sorted(t_extrapolate)
    times = sorted({t_eval, *extra})
    all_eqs, direct = ex.network_readout(model, ds, times, t_eval, batch_size, progress)
    eqs = all_eqs[times.index(t_eval)]
    result = ex.summarise(eqs, ds, "network", n_boot, t_eval=t_eval)
    result["direct_w"] = {"t_eval": t_eval, **direct.metrics(system.beta)}
    result["readout_by_t"] = ex.readout_by_time(all_eqs, times, ds)
    if len(extra) >= 2:
        picked = [all_eqs[times.index(t)] for t in extra]
        result["extrapolated"] = ex.summarise_extrapolated(picked, extra, ds, n_boot)
    warnings = [checkpoints.time_range_warning(meta, [t_eval], "--t-eval"),
                checkpoints.time_range_warning(meta, extra, "--t-extrapolate")]
    result["warnings"] = [w for w in warnings if w]
    result["identifiability"] = identifiability(eqs.total("xtx"), system.parameter_vector(),
                                                ds.n_sequences * ds.n_snapshots)
    t_zero = (extra[0], extra[1]) if len(extra) >= 2 else None
    if wide is not None:
        result["shell_profile"] = ex.network_shell_profile(model, wide, t_zero, true_range,
                                                           batch_size, progress)
    return result, ex.interaction_profile(model, ds, t_eval, t_zero, batch_size=batch_size)


def _per_config(model, ds, t_eval, batch_size, progress, out: Path) -> None:
    from spinscore.analysis.ood import explained_variance

    system = ds.config.system
    ev = explained_variance(model, ds, system.types, system.max_range, t_eval, batch_size,
                            progress)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "per_config.json", {
        "flag": "explained variance of the network's force on the local basis",
        "t_eval": t_eval, "median": float(np.median(ev)),
        "explained_variance": ev.tolist()})  # (n_seq, n_snap)


def ood(checkpoint, data, ood_paths: dict[str, str], out, t_eval: float | None = None,
        progress: bool = True, *, trust: TrustSettings | None = None,
        early_checkpoint: str | Path | None = None) -> dict:
    """`spinscore ood`: ood.json (EVs summarised, AUCs) and ood.png in `out`; the network is
    read at `t_eval` (default: the checkpoint's `analysis.t_eval`, else its smallest training
    time). With `trust` also the
    trust-flag pool (`analysis.trust`; the under-trained set from `early_checkpoint`, read
    with its raw weights): ood.json's "trust" and trust.png."""
    from spinscore.analysis.batches import CouplingsMemo
    from spinscore.analysis.ood import ood_report
    from spinscore.report.figures import ood_figure, save_figure

    model, run_config, meta = checkpoints.load_model(checkpoint)
    t_eval = _readout_times(run_config.analysis, meta, t_eval, None)[0]
    in_data = read_dataset(data)
    sets = {name: read_dataset(path) for name, path in ood_paths.items()}
    checkpoints.check_geometry(run_config.system, in_data.config.system, str(data))
    for name, ds in sets.items():
        checkpoints.check_geometry(run_config.system, ds.config.system, str(ood_paths[name]))
    summary, flags = ood_report(CouplingsMemo(model), meta, in_data, sets, t_eval, progress)
    summary["checkpoint"] = str(checkpoint)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if trust is not None:
        summary["trust"] = _trust(model, meta, in_data, sets, t_eval, trust, early_checkpoint,
                                  out / "trust.png")
    write_json(out / "ood.json", summary)
    save_figure(ood_figure(flags, summary), out / "ood.png")
    return summary


def _trust(model, meta, in_data, sets, t_eval, settings, early_checkpoint, png: Path) -> dict:
    from spinscore.analysis.trust import trust_pool, trust_summary
    from spinscore.report.diffusion_figures import trust_figure
    from spinscore.report.figures import save_figure

    early = None
    if early_checkpoint is not None:
        early = checkpoints.load_model(early_checkpoint, ema=False)[0]
    tick = time.perf_counter()
    pool = trust_pool(model, meta, in_data, sets, t_eval, settings, early)
    summary = trust_summary(pool)
    summary.update(settings=settings.model_dump(), seconds=time.perf_counter() - tick,
                   early_checkpoint=None if early_checkpoint is None else str(early_checkpoint))
    save_figure(trust_figure(pool, summary), png)
    return summary


def generate(model, config, types: np.ndarray, n: int, out: str | Path, *,
             settings=None, seed: int = 0,
             reference_snapshots: int = 200, progress: bool = False,
             png: str | Path | None = None, summary: str | Path | None = None) -> dict:
    """Generated chains of `types` against REMC (`analysis.generation.compare_with_remc`):
    the chains in `out` (HDF5), the energy histograms in `png` (default OUT.png), the summary
    in `summary` (default OUT.json). `settings`: the sampler (a GenerationConfig; default
    config.generation). Returns the summary."""
    from spinscore.analysis.generation import compare_with_remc
    from spinscore.report.diffusion_figures import energy_histogram_figure
    from spinscore.report.figures import save_figure

    out = Path(out)
    png = Path(png) if png else out.with_suffix(".png")
    summary = Path(summary) if summary else out.with_suffix(".json")
    for path in (out, png, summary):
        path.parent.mkdir(parents=True, exist_ok=True)  # now, not after the sampling
    spins, e_gen, result = compare_with_remc(model, config, types, n, settings=settings,
                                             seed=seed,
                                             reference_snapshots=reference_snapshots,
                                             progress=progress)
    e_ref = np.asarray(result.pop("energies_reference"))
    diffusion = config.diffusion
    _write_chains(out, spins, np.asarray(types), e_gen, {
        "sequence": result["sequence"], "method": result["method"],
        "steps": -1 if result["steps"] is None else result["steps"],
        "seed": seed, "t_min": diffusion.t_min, "t_max": diffusion.t_max,
        "system": config.to_yaml(("system",)), "spinscore_version": __version__})
    result["chains"] = str(out)
    sequence = result["sequence"]  # a lattice's 64-81 sites overflow the figure's width
    shown = sequence if len(sequence) <= 40 else f"{sequence[:37]}..."
    title = (f"{shown} (L = {len(types)}), T = {config.system.temperature:g}, "
             f"{result['method']}")
    save_figure(energy_histogram_figure(e_gen, e_ref, title=title), png)
    write_json(summary, result)
    return result


def _write_chains(path: Path, spins: np.ndarray, types: np.ndarray, energies: np.ndarray,
                  attrs: dict) -> None:
    """HDF5 with spins float32 (n, L, 3), types int8 (L,), energy float64 (n,), attrs; written
    beside PATH and renamed, so a crash never leaves a partial file at PATH."""
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("spins", data=spins.astype(np.float32))
        f.create_dataset("types", data=types.astype(np.int8))
        f.create_dataset("energy", data=energies)
        for key, value in attrs.items():
            f.attrs[key] = value


def generate_for_test_sequence(checkpoint: str | Path, data: str | Path, sequence_index: int,
                               n: int, out_dir: str | Path, **options) -> dict:
    """`generate` for test sequence `sequence_index` of the data set `data`: OUT_DIR/
    generated.h5, generate.png and generate.json."""
    model, config, _, _, types = checkpoints.load_model_for_sequence(checkpoint, data,
                                                                      sequence_index)
    out = Path(out_dir)
    return generate(model, config, types, n, out / "generated.h5",
                    png=out / "generate.png", summary=out / "generate.json", **options)


def partition(checkpoint: str | Path, data: str | Path, sequence_index: int,
              out_dir: str | Path, settings: PartitionSettings | None = None, *,
              threads: int = 2, progress: bool = False) -> dict:
    """`analysis.partition.partition_analysis` for test sequence `sequence_index` of `data`,
    checked against the checkpoint (couplings, max_length): OUT_DIR/partition.png and
    partition.json. Returns the summary (without the per-configuration points)."""
    from spinscore.analysis.partition import partition_analysis
    from spinscore.report.diffusion_figures import partition_figure_of
    from spinscore.report.figures import save_figure

    settings = settings or PartitionSettings()
    model, config, meta, ds, types = checkpoints.load_model_for_sequence(checkpoint, data,
                                                                         sequence_index)
    if ds.config.system.coupling_table().tolist() != config.system.coupling_table().tolist():
        raise SpinscoreError(f"{data}: couplings differ from those the checkpoint was trained on")
    checkpoints.check_sites(model, len(types), f"{data}: sequence {sequence_index}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result = partition_analysis(model, config, types, settings, threads=threads,
                                progress=progress)
    result = {"checkpoint": str(checkpoint), "data": str(data), "sequence_index": sequence_index,
              **result}
    fig = partition_figure_of(result, title=f"sequence {sequence_index} of {Path(data).name} "
                                            f"(L = {result['length']}), {settings.divergence} "
                                            "divergence")
    save_figure(fig, out / "partition.png")
    write_json(out / "partition.json", result)
    return {k: v for k, v in result.items() if k != "points"}
