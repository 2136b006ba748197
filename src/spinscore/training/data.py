"""Training data: the snapshots of a data set in memory and a deterministic sample stream.

Sample k of training (k = 0, 1, ...) is a function of (seed, k) only: epoch e = k // n_seq
visits every sequence once in a random order, with one random snapshot each (the paper's
recipe). Resuming at any step, or splitting a batch over processes, replays the same stream.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from spinscore.errors import DataError
from spinscore.io import Dataset


@dataclass
class TrainingData:
    """spins (n_seq, n_snap, L_max, 3) float32, types (n_seq, L_max) int64, length (n_seq,)."""

    spins: torch.Tensor
    types: torch.Tensor
    length: np.ndarray
    seed: int

    @classmethod
    def from_dataset(cls, ds: Dataset, seed: int) -> TrainingData:
        if ds.n_sequences == 0:
            raise DataError(f"{ds.path}: the data set is empty")
        return cls(torch.from_numpy(ds.spins), torch.from_numpy(ds.types.astype(np.int64)),
                   ds.length.astype(np.int64), seed)

    @property
    def n_sequences(self) -> int:
        return self.spins.shape[0]

    def _epoch(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(1, epoch)))
        return rng.permutation(self.n_sequences), rng.integers(0, self.spins.shape[1],
                                                               self.n_sequences)

    def sample_ids(self, start: int, count: int) -> tuple[np.ndarray, np.ndarray]:
        """(sequence, snapshot) indices of stream samples start .. start+count-1."""
        seq, snap = np.empty(count, np.int64), np.empty(count, np.int64)
        k = 0
        while k < count:
            epoch, pos = divmod(start + k, self.n_sequences)
            order, snaps = self._epoch(epoch)
            take = min(count - k, self.n_sequences - pos)
            seq[k : k + take] = order[pos : pos + take]
            snap[k : k + take] = snaps[order[pos : pos + take]]
            k += take
        return seq, snap


def micro_batches(lengths: np.ndarray, token_budget: int) -> list[np.ndarray]:
    """Split a batch into micro-batches of similar length for cropped forward passes.

    Sorts by length and cuts greedily so that each micro-batch's size x (its longest chain)^2
    stays within `token_budget` (at least one chain each). Returns index arrays into the batch.
    """
    order = np.argsort(lengths, kind="stable")
    groups, current = [], []
    for idx in order:
        longest = lengths[idx]  # sorted: the newcomer is the longest
        if current and (len(current) + 1) * longest**2 > token_budget:
            groups.append(np.array(current))
            current = []
        current.append(idx)
    groups.append(np.array(current))
    return groups
