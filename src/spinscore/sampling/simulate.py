"""`spinscore simulate`: a data set of equilibrium snapshots, resumable, local or on Dask."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from spinscore.config import RunConfig
from spinscore.errors import SpinscoreError
from spinscore.io import ChunkStore, write_dataset
from spinscore.sampling.remc import (
    chunk_ranges,
    run_chunks_local,
    simulate_chunk,
    temperature_ladder,
)


def simulate_dataset(
    config: RunConfig,
    out: str | Path,
    threads: int | None = None,
    scheduler: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Simulate `config.simulation.sequences` chains and write the HDF5 data set `out`.

    Chunks of `simulation.chunk_size` chains are the unit of work and of checkpointing: a
    rerun after a crash recomputes only the missing chunks (without `overwrite`, which
    deletes an existing `out` and every finished chunk before it starts). `threads`
    (default: all cores) or a Dask `scheduler` address choose where chunks run; the result is
    the same file either way.
    """
    out = Path(out)
    if out.exists() and not overwrite:
        raise SpinscoreError(f"{out}: exists; pass --overwrite to replace it")
    client = _connect(scheduler) if scheduler is not None else None  # before anything is deleted
    out.parent.mkdir(parents=True, exist_ok=True)
    store = ChunkStore(out, config)
    if overwrite:  # the old file goes first: a killed overwrite then resumes without --overwrite
        out.unlink(missing_ok=True)
        store.remove()
    store.open()
    sim = config.simulation
    chunks = chunk_ranges(sim.sequences, sim.chunk_size)
    todo = [c for c in chunks if not store.done(c)]
    done = sim.sequences - sum(len(c) for c in todo)
    bar = tqdm(total=sim.sequences, initial=done, unit="chain", desc="simulate",
               disable=not progress, smoothing=0.1)
    with bar:
        for chunk, arrays in _run(config, todo, threads, client):
            store.save(chunk, arrays)
            bar.update(len(chunk))
    temperatures = temperature_ladder(config.system.temperature, sim.t_max, sim.replicas)
    write_dataset(out, config, store, chunks, temperatures)
    store.remove()
    return out


def _connect(scheduler: str):
    """A Dask client of the scheduler at `scheduler`; one clear error where there is none."""
    try:
        from distributed import Client
    except ImportError:
        raise SpinscoreError("--scheduler needs Dask: pip install 'spinscore[dask]'") from None
    try:
        return Client(scheduler, timeout="20s")
    except (OSError, ValueError, TypeError) as exc:
        raise SpinscoreError(f"--scheduler {scheduler}: cannot connect ({exc})") from None


def _run(config: RunConfig, chunks: list[range], threads: int | None,
         client) -> Iterator[tuple[range, dict[str, np.ndarray]]]:
    if client is None:
        yield from run_chunks_local(config, chunks, threads or os.cpu_count() or 1)
        return
    from distributed import as_completed

    with client:
        futures = {client.submit(simulate_chunk, config, c, pure=False): c for c in chunks}
        for fut in as_completed(futures):
            yield futures[fut], fut.result()
