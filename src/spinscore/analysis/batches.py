"""One way through a data set's snapshots, and one way to ask a network for its field on them.

Every analysis that reads all snapshots (extraction, classical estimators, OOD flags, the
interaction profile) walks `snapshot_batches`: batches of similar chain length, each cropped to
its longest chain (a lattice or graph: all N sites, never cropped), with a progress bar. Every
analysis that reads a network asks `network_field`; every analysis that needs the data set's
spin system builds it with `dataset_system`. A stage whose readouts walk the same snapshots at
the same times more than once hands them a `CouplingsMemo` of its model.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from spinscore.config import SystemConfig
from spinscore.geometry.sphere import tangent_project
from spinscore.io import Dataset
from spinscore.systems import SpinSystem, system_from_config


@dataclass
class SnapshotBatch:
    """Snapshots of a batch: seq, snap (B,) indices into the data set; spins (B, N, 3) float64,
    types (B, N) int64 with -1 on padding, N the longest chain of the batch (a lattice or
    graph: its N sites)."""

    seq: np.ndarray
    snap: np.ndarray
    spins: np.ndarray
    types: np.ndarray

    @property
    def mask(self) -> np.ndarray:
        """(B, N) real sites."""
        return self.types >= 0


def dataset_system(system: SystemConfig, max_range: int | None = None) -> SpinSystem:
    """The `SpinSystem` of a data set's `system` config, with couplings up to shell
    `max_range` (default: the config's own; a model's Hamiltonian class may reach farther or
    less far than the Hamiltonian that made the data). Only the shells count, not the values.
    Raises SpinscoreError where the geometry has no such shells (`system_from_config`)."""
    if max_range is not None and max_range != system.max_range:
        zero = dict.fromkeys(system.couplings[system.max_range], 0.0)
        shells = {r: zero for r in range(1, max_range + 1)}
        system = system.model_copy(update={"couplings": shells})
    return system_from_config(system)


def snapshot_batches(ds: Dataset, batch_size: int = 128, progress: bool = False,
                     desc: str = "snapshots") -> Iterator[SnapshotBatch]:
    """All snapshots of `ds` in batches of similar chain length, cropped to the longest chain
    of each batch, with a progress bar (in snapshots) when `progress`. A lattice or graph
    (every sample has the same N sites) is never cropped: its batches hold all N sites."""
    seq = np.repeat(np.arange(ds.n_sequences), ds.n_snapshots)
    snap = np.tile(np.arange(ds.n_snapshots), ds.n_sequences)
    order = np.argsort(ds.length[seq], kind="stable")
    with tqdm(total=len(order), unit="snapshot", desc=desc, disable=not progress) as bar:
        for a in range(0, len(order), batch_size):
            s, k = seq[order[a : a + batch_size]], snap[order[a : a + batch_size]]
            n = int(ds.length[s].max())  # a lattice's or graph's samples all have N sites
            yield SnapshotBatch(s, k, ds.spins[s, k, :n].astype(np.float64),
                                ds.types[s, :n].astype(np.int64))
            bar.update(len(s))


@torch.no_grad()
def network_field(model, spins: np.ndarray, types: np.ndarray, t: float,
                  device: str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """The network at diffusion time t on a batch, in float32 as it runs: (W (B, N, N),
    score (B, N, 3) = P_i sum_j W_ij S_j, exactly the model's forward pass) as CPU tensors.
    spins (B, N, 3), types (B, N) with -1 on padding."""
    x = torch.as_tensor(spins, dtype=torch.float32, device=device)
    ty = torch.as_tensor(types, dtype=torch.int64, device=device)
    w = model.couplings(x, ty, torch.full((len(x),), float(t), device=device))
    return w.cpu(), tangent_project(x, w @ x).cpu()


class CouplingsMemo:
    """A model whose couplings are computed once per distinct batch (spins, types, t).

    The extract stage reads the network at three times and walks the test snapshots nine
    times (OLS readout, shell readout, W profile, per-configuration flag); the ood stage reads
    each set twice (EV, theta). Behind this view each (batch, t) runs the network once; the
    result is bit-identical, since the network is deterministic in eval mode. W (float32) is
    kept up to `max_bytes` in all (later batches are computed, not kept), and only without
    gradients. `set_system` passes through and empties the memo where the model's system changes;
    every other attribute, and calling it, is the model's.
    """

    def __init__(self, model, max_bytes: int = 1 << 30):
        self.model, self.max_bytes = model, max_bytes
        self._memo: dict[bytes, torch.Tensor] = {}
        self._bytes = 0

    def couplings(self, spins: torch.Tensor, types: torch.Tensor, t: torch.Tensor
                  ) -> torch.Tensor:
        """As `ScoreModel.couplings`: W (B, N, N)."""
        if torch.is_grad_enabled():
            return self.model.couplings(spins, types, t)
        digest = hashlib.blake2b(digest_size=16)
        for a in (spins, types, t):
            digest.update(str((a.dtype, tuple(a.shape))).encode())
            digest.update(a.detach().cpu().contiguous().numpy().tobytes())
        key = digest.digest()
        if key in self._memo:
            return self._memo[key]
        w = self.model.couplings(spins, types, t)
        size = w.element_size() * w.nelement()
        if self._bytes + size <= self.max_bytes:
            self._memo[key], self._bytes = w, self._bytes + size
        return w

    def set_system(self, system: SpinSystem) -> None:
        before = getattr(self.model, "system", None)
        if hasattr(self.model, "set_system"):  # the published model reads chains only
            self.model.set_system(system)
        if getattr(self.model, "system", None) is not before:  # a chain model keeps its own
            self._memo.clear()
            self._bytes = 0

    def __call__(self, *args, **kwargs):
        return self.model(*args, **kwargs)

    def __getattr__(self, name: str):
        return getattr(self.model, name)
