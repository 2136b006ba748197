"""Opening a checkpoint never runs code: every command that takes a checkpoint refuses a pickle
that would execute something, with one error line, and the payload does not run."""

from pathlib import Path

import pytest
import torch

from conftest import assert_clean_error, run, write_config
from spinscore.checkpoints import load_checkpoint, load_model
from spinscore.errors import SpinscoreError


class _Payload:
    """Unpickling this calls open(path, "w"): it creates a file, the trace of code run."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def write_malicious_checkpoint(path: Path, marker: Path) -> Path:
    """A checkpoint with every field spinscore expects, one of which runs code when loaded."""
    torch.save({"model": {"w": torch.zeros(2)}, "ema": {"w": torch.zeros(2)}, "config": "",
                "meta": {"payload": _Payload(marker)}, "step": 1}, path)
    return path


@pytest.fixture
def evil(tmp_path):
    marker = tmp_path / "pwned"
    path = write_malicious_checkpoint(tmp_path / "evil.pt", marker)
    return path, marker


def test_the_payload_is_real(evil):
    """The file does run code under an unsafe load (so the refusals below mean something)."""
    path, marker = evil
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_library_loaders_refuse_it(evil):
    path, marker = evil
    for loader in (load_checkpoint, load_model):
        with pytest.raises(SpinscoreError, match="refused: not a weights-only checkpoint"):
            loader(path)
    assert not marker.exists()


def _commands(ckpt: Path, data: Path, tmp: Path) -> dict[str, list[str]]:
    run_dir = tmp / "run"
    run_dir.mkdir()
    (run_dir / "checkpoint.pt").write_bytes(ckpt.read_bytes())
    config = write_config(tmp / "cfg.yaml")
    return {
        "extract": ["extract", "--data", str(data), "--checkpoint", str(ckpt), "--out",
                    str(tmp / "x"), "--quiet"],
        "ood": ["ood", "--checkpoint", str(ckpt), "--data", str(data), "--ood",
                f"same={data}", "--out", str(tmp / "o"), "--quiet"],
        "partition": ["partition", "--checkpoint", str(ckpt), "--data", str(data), "--out",
                      str(tmp / "p"), "--quiet"],
        "sample": ["sample", "--checkpoint", str(ckpt), "--sequence", "ABBA", "--n", "2",
                   "--out", str(tmp / "s" / "chains.h5"), "--quiet"],
        "train --resume": ["train", "--data", str(data), "--config", str(config), "--out",
                           str(run_dir), "--resume", "--quiet"],
    }


@pytest.mark.parametrize("command", ["extract", "ood", "partition", "sample", "train --resume"])
def test_every_command_refuses_a_code_running_checkpoint(command, evil, small_dataset, tmp_path):
    path, marker = evil
    args = _commands(path, small_dataset, tmp_path)[command]
    code, out = run(args)
    assert_clean_error(code, out, "refused: not a weights-only checkpoint", "GLOBAL io.open")
    assert not marker.exists(), f"{command} ran the checkpoint's code"


def test_truncated_checkpoint_is_one_clear_error(tmp_path, small_dataset):
    good = tmp_path / "good.pt"
    torch.save({"model": {}, "ema": {}, "config": "", "meta": {}, "step": 0}, good)
    bad = tmp_path / "truncated.pt"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    code, out = run(["extract", "--data", str(small_dataset), "--checkpoint", str(bad),
                     "--out", str(tmp_path / "x"), "--quiet"])
    assert_clean_error(code, out, str(bad), "not a readable checkpoint")
    assert not (tmp_path / "x").exists()
