"""The GPU fast path's options run, on the CPU, through the same code."""

import json

import torch

from vitlab.cli import main
from vitlab.models import create_model
from vitlab.train.step import forward_backward

FAST = ["--model", "seed", "--set", "model.depth=1", "--batch-size", "64", "--epochs", "1", "--no-report"]


def test_bf16_autocast_step_gives_fp32_loss_and_gradients():
    torch.manual_seed(0)
    model = create_model("seed", depth=2)
    x, y = torch.randn(8, 3, 32, 32), torch.arange(8)
    loss, _ = forward_backward(model, x, y, micro_batch=4, precision="bf16")
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in model.parameters())
    model.zero_grad()
    ref, _ = forward_backward(model, x, y, micro_batch=4)
    assert abs(ref.item() - loss.item()) < 0.05  # bf16 rounding, same computation


def test_training_run_with_bf16_and_compile(small_cifar, tmp_path, capsys):
    out = tmp_path / "r"
    args = [
        "train",
        "--data",
        str(small_cifar),
        "--out",
        str(out),
        *FAST,
        "--set",
        "train.precision=bf16",
        "--set",
        "train.compile=true",
    ]
    assert main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["train"]["compile"] is True
    capsys.readouterr()
    # The compiled run's checkpoint loads into a plain model that scores the test set as the run did (to one
    # image: compiled and eager kernels may round differently).
    assert main(["eval", str(out / "best.pt")]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["n"] == summary["test_n"] and abs(result["accuracy"] - summary["test_acc"]) <= 1 / result["n"] + 1e-9


def test_compiled_training_survives_progressive_resizing(small_cifar, tmp_path):
    # Each new image size recompiles the model; with inductor's automatic dynamic shapes the second size crashed
    # (torch 2.14 on the CPU), hours into a run. 2 epochs of 3 batches, the first at 24 px, the second at 28 (the change that crashed).
    out = tmp_path / "r"
    args = ["train", "--data", str(small_cifar), "--out", str(out), "--model", "air-s", "--set", "model.depth=1"]
    args += ["--batch-size", "128", "--epochs", "2", "--no-report", "--set", "data.val_fraction=0"]
    args += ["--set", "train.compile=true", "--set", "train.resize_start=0.75", "--set", "train.resize_until=1"]
    assert main(args) == 0
    assert json.loads((out / "summary.json").read_text())["epochs"] == 2
