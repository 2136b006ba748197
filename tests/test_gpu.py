"""The CUDA paths, where a GPU exists (skipped elsewhere): the network, a training run and a
likelihood on the GPU agree with the CPU."""

import pytest
import torch

from spinscore.config import ModelConfig
from spinscore.model import ScoreModel

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def _model():
    torch.manual_seed(0)
    cfg = ModelConfig(single_dim=32, pair_dim=16, blocks=2, heads=4, max_distance=8)
    model = ScoreModel(cfg, n_types=2, max_length=40, output_scale=20.0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model.eval()


def _batch():
    g = torch.Generator().manual_seed(1)
    spins = torch.nn.functional.normalize(torch.randn(4, 30, 3, generator=g), dim=-1)
    types = torch.randint(0, 2, (4, 30), generator=g)
    types[2, 22:] = -1
    return spins, types, torch.tensor([1e-3, 1e-2, 0.1, 1.0])


def test_network_on_the_gpu_equals_the_cpu():
    model = _model()
    spins, types, t = _batch()
    with torch.no_grad():
        cpu = model(spins, types, t)
        gpu = model.cuda()(spins.cuda(), types.cuda(), t.cuda()).cpu()
    torch.testing.assert_close(gpu, cpu, rtol=1e-4, atol=1e-4)


def test_likelihood_on_the_gpu_equals_the_cpu():
    from spinscore.diffusion.likelihood import solve_likelihood

    model = _model().double()
    spins, types, _ = _batch()
    spins, types = spins[:2, :12].double(), types[:2, :12]
    kw = {"t_min": 1e-3, "t_max": 5.0, "rtol": 1e-6, "atol": 1e-6}
    cpu = solve_likelihood(model, spins, types, **kw).log_p
    gpu = solve_likelihood(model.cuda(), spins.cuda(), types.cuda(), **kw).log_p.cpu()
    torch.testing.assert_close(gpu, cpu, rtol=0, atol=1e-3)


def test_training_runs_on_the_gpu(tmp_path, small_dataset):
    from conftest import write_config
    from spinscore.config import load_config
    from spinscore.stages import train

    cfg = load_config(write_config(tmp_path / "c.yaml"), [
        "model.single_dim=8", "model.pair_dim=4", "model.blocks=1", "model.heads=2",
        "train.samples=64", "train.batch_size=16"])
    path = train(cfg, small_dataset, tmp_path / "run", device="cuda", progress=False)
    state = torch.load(path, weights_only=True)
    assert state["step"] == 4
    assert all(torch.isfinite(v).all() for v in state["model"].values())
