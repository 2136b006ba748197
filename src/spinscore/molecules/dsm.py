"""Denoising score matching for molecules in centred coordinates, and a resumable trainer.

Noise lives in the translation-free subspace (eps centred over atoms), so the learned score is
that of the centred configurations. With sigma below the thermal amplitude of the stiffest
mode (sigma <~ 3e-4 nm for X-H bonds at 300 K) the score of the noised density is still
beta * F to relative O(sigma^2 beta k). Antithetic pairs (eps, -eps) cancel the O(1/sigma)
noise of the plain estimator: the pair's loss is |eps|^2 + 2 sigma^2 (eps^T J eps + |s|^2 / 2)
+ O(sigma^4), J the Jacobian of s, which in expectation is the implicit (Hyvarinen) objective.

The defaults (`DSMSettings`: 3000 steps of batch 32, lr 2e-3 with 100 warm-up steps and cosine
decay, "score" weighting, sigma log-uniform in 3e-5..3e-4 nm) with the default `AtomScoreModel`
reach cosine 0.993 with beta F on alanine dipeptide in vacuum (held-out frames, EMA score at
sigma = 3e-5 nm) in 6.7 min on 2 CPU threads (~7.4 steps/s); 0.99 is passed at ~1300 steps.

Pure library: nothing is written to disk; `MoleculeTrainer.state_dict` is for the caller.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn


def centre(x: Tensor) -> Tensor:
    """x minus its unweighted mean over atoms (not the centre of mass): (..., n, 3) -> same."""
    return x - x.mean(dim=-2, keepdim=True)


@dataclass(frozen=True)
class DSMSettings:
    """Training settings. Noise levels (nm) are drawn per sample, uniformly from `sigma_set`
    when it is not empty, else log-uniformly in `sigma_range` (equal ends: one level).
    `ema_decay` is warmed up as min(decay, (1 + n) / (10 + n)) after n updates; `grad_clip`
    is the largest gradient norm (0: no clipping). `weighting` as `dsm_loss`. The learning
    rate rises linearly over `warmup` steps, then with `schedule` "cosine" falls as
    lr * max(min_lr_factor, (1 + cos(pi n / steps)) / 2) (the factor multiplies both), with
    "constant" stays at lr."""

    steps: int = 3000
    batch_size: int = 32
    lr: float = 2e-3
    sigma_range: tuple[float, float] = (3e-5, 3e-4)
    sigma_set: tuple[float, ...] = ()
    ema_decay: float = 0.999
    seed: int = 0
    grad_clip: float = 1.0
    weighting: str = "score"
    warmup: int = 100
    schedule: str = "cosine"
    min_lr_factor: float = 0.02

    def __post_init__(self) -> None:
        lo, hi = self.sigma_range
        checks = {
            "steps": self.steps >= 0, "batch_size": self.batch_size >= 1, "lr": self.lr > 0,
            "sigma_range": 0 < lo <= hi and math.isfinite(hi),
            "sigma_set": all(0 < s < math.inf for s in self.sigma_set),
            "ema_decay": 0 <= self.ema_decay < 1, "grad_clip": self.grad_clip >= 0,
            "weighting": self.weighting in WEIGHTINGS, "warmup": self.warmup >= 0,
            "schedule": self.schedule in ("cosine", "constant"),
            "min_lr_factor": 0 <= self.min_lr_factor <= 1,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"DSMSettings: invalid {', '.join(bad)}: {self}")


WEIGHTINGS = ("noise", "score")


def draw_sigmas(settings: DSMSettings, batch: int, generator: torch.Generator) -> Tensor:
    """(batch,) float64 noise levels in nm, drawn with `generator` as `DSMSettings` says."""
    if settings.sigma_set:
        choice = torch.randint(len(settings.sigma_set), (batch,), generator=generator)
        return torch.tensor(settings.sigma_set, dtype=torch.float64)[choice]
    lo, hi = (math.log(s) for s in settings.sigma_range)
    u = torch.rand(batch, generator=generator, dtype=torch.float64)
    return torch.exp(lo + (hi - lo) * u)


def dsm_loss(model: nn.Module, x0: Tensor, sigmas: Tensor, generator: torch.Generator,
             weighting: str = "noise") -> Tensor:
    """Antithetic denoising score-matching loss, a scalar per degree of freedom.

    For each sample, eps ~ N(0, 1) centred over atoms, and both x0 + sigma eps and
    x0 - sigma eps are scored with residuals r = ±eps + sigma s(x0 ± sigma eps, sigma).

    weighting "noise": 1/2 |r|^2 averaged over the 2B noised samples and divided by the
    3 (n - 1) degrees of freedom of centred coordinates (1/2 for the zero score). Its gradient
    scales as sigma^2, so the largest noise levels of a batch dominate it.
    weighting "score": (1/2 |r|^2 - 1/2 |eps|^2) / sigma^2, the same per degree of freedom: the
    pair's summed loss is then 2 eps^T J eps + |s|^2 + O(sigma^2), the implicit (Hyvarinen)
    objective, whose mean is E|s - s_data|^2 - E|s_data|^2; the value returned, averaged over
    the 2B samples, is half of that (nm^-2 per degree of freedom; 0 for the zero score).
    Every noise level weighs the same and the value is a direct monitor of the error.

    Args:
        model: score(x (B, n, 3) nm, sigma (B,) nm) -> (B, n, 3) nm^-1.
        x0: (B, n, 3) nm, clean positions, centred or not.
        sigmas: (B,) nm, noise level per sample.
        generator: CPU torch.Generator for eps (draws are device-independent).
        weighting: "noise" or "score", as above.
    """
    if weighting not in WEIGHTINGS:
        raise ValueError(f"dsm_loss: weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    b, n, _ = x0.shape
    eps = centre(torch.randn(b, n, 3, generator=generator, dtype=x0.dtype)).to(x0.device)
    sigma = sigmas.to(dtype=x0.dtype, device=x0.device)
    step = sigma[:, None, None] * eps
    x = torch.cat([x0 + step, x0 - step])  # (2B, n, 3)
    sigma2 = torch.cat([sigma, sigma])
    s = model(x, sigma2)
    signed = torch.cat([eps, -eps])
    if weighting == "score":
        # 1/2 |±eps + sigma s|^2 - 1/2 |eps|^2 = sigma (±eps . s) + sigma^2 |s|^2 / 2, over sigma^2
        per = (signed * s).sum(dim=(1, 2)) / sigma2 + 0.5 * s.pow(2).sum(dim=(1, 2))
        return per.mean() / (3 * (n - 1))
    residual = signed + sigma2[:, None, None] * s
    return 0.5 * residual.pow(2).sum(dim=(1, 2)).mean() / (3 * (n - 1))


class MoleculeTrainer:
    """Adam on `dsm_loss` with an EMA copy of the model, resumable bit for bit.

    Args:
        model: an `AtomScoreModel` (or any score(x, sigma) module); trained in place.
        positions: (M, n, 3) nm training configurations (numpy or tensor), stored centred in
            the model's dtype and device.
        settings: `DSMSettings`.

    Batches, noise levels and eps come from one CPU generator seeded with settings.seed, so a
    run restored from `state_dict()` continues exactly as the uninterrupted run.
    """

    def __init__(self, model: nn.Module, positions: np.ndarray | Tensor, settings: DSMSettings):
        param = next(model.parameters())
        data = torch.as_tensor(positions)
        if data.ndim != 3 or data.shape[0] < 1 or data.shape[2] != 3 or not data.is_floating_point():
            raise ValueError(f"positions: expected a float array of shape (M, n, 3) nm, got "
                             f"{data.dtype} {tuple(data.shape)}")
        n_atoms = getattr(model, "n_atoms", data.shape[1])
        if data.shape[1] != n_atoms:
            raise ValueError(f"positions: {data.shape[1]} atoms, the model has {n_atoms}")
        if not bool(torch.isfinite(data).all()):
            raise ValueError("positions: non-finite value (NaN or inf)")
        self.model, self.settings = model, settings
        self.data = centre(data.to(dtype=param.dtype, device=param.device))
        self.ema = copy.deepcopy(model).requires_grad_(False)
        self.optimiser = torch.optim.Adam(model.parameters(), lr=settings.lr)
        self.generator = torch.Generator().manual_seed(settings.seed)
        self.step_count = 0

    def lr_at(self, n: int) -> float:
        """The learning rate of update n (0-based), as `DSMSettings` says."""
        s = self.settings
        factor = min(1.0, (n + 1) / s.warmup) if s.warmup > 0 else 1.0
        if s.schedule == "cosine" and s.steps > 0:
            cosine = 0.5 * (1.0 + math.cos(math.pi * min(1.0, n / s.steps)))
            factor *= max(s.min_lr_factor, cosine)
        return s.lr * factor

    def step(self) -> float:
        """One optimiser step on a fresh batch; returns the loss (per degree of freedom)."""
        s, g = self.settings, self.generator
        for group in self.optimiser.param_groups:
            group["lr"] = self.lr_at(self.step_count)
        index = torch.randint(self.data.shape[0], (s.batch_size,), generator=g)
        sigmas = draw_sigmas(s, s.batch_size, g)
        self.model.train()
        loss = dsm_loss(self.model, self.data[index.to(self.data.device)], sigmas, g, s.weighting)
        self.optimiser.zero_grad(set_to_none=True)
        loss.backward()
        if s.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.model.parameters(), s.grad_clip)
        self.optimiser.step()
        self._update_ema()
        self.step_count += 1
        return float(loss.detach())

    def run(self, steps: int | None = None) -> list[float]:
        """Step until `steps` (default settings.steps) steps are done in all; the losses."""
        target = self.settings.steps if steps is None else steps
        return [self.step() for _ in range(max(0, target - self.step_count))]

    @torch.no_grad()
    def _update_ema(self) -> None:
        n = float(self.step_count)
        decay = min(self.settings.ema_decay, (1.0 + n) / (10.0 + n))
        for a, p in zip(self.ema.parameters(), self.model.parameters(), strict=True):
            a.lerp_(p, 1.0 - decay)

    def state_dict(self) -> dict[str, Any]:
        """Everything a bit-identical resume needs: model, EMA, optimiser, generator state,
        step count, and the settings (checked on load)."""
        return {"model": self.model.state_dict(), "ema": self.ema.state_dict(),
                "optimiser": self.optimiser.state_dict(), "generator": self.generator.get_state(),
                "step": self.step_count, "settings": asdict(self.settings)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a `state_dict()` of a trainer with the same settings (ValueError if not)."""
        mine = asdict(self.settings)
        theirs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in state["settings"].items()}
        if theirs != mine:
            diff = sorted(k for k in mine if theirs.get(k) != mine[k])
            raise ValueError(f"trainer state: saved with other settings ({', '.join(diff)})")
        self.model.load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])
        self.optimiser.load_state_dict(state["optimiser"])
        self.generator.set_state(state["generator"])
        self.step_count = int(state["step"])
