"""torchrun --nproc_per_node 2 on the CPU (gloo): a real two-process DDP run, its checkpoint, and its resume."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from vitlab.cli import main
from vitlab.train import read_checkpoint

ARGS = [
    "--model",
    "seed",
    "--set",
    "model.depth=2",
    "--batch-size",
    "32",
    "--seed",
    "0",
    "--no-report",
    "--set",
    "train.checkpoint_every=1e-9",
]  # refresh last.pt after every step


TORCHRUN = [
    sys.executable,
    "-m",
    "torch.distributed.run",
    "--standalone",
    "--nproc_per_node",
    "2",
    "-m",
    "vitlab",
    "train",
]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def torchrun(*args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([*TORCHRUN, *args], capture_output=True, text=True, env=ENV, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc


def metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def ddp_run(small_cifar, tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp") / "run"
    proc = torchrun("--data", str(small_cifar), "--out", str(out), "--epochs", "2", *ARGS)
    return out, proc


def test_two_ranks_see_every_training_image_once_per_epoch(ddp_run):
    out, proc = ddp_run
    summary = json.loads((out / "summary.json").read_text())
    assert summary["processes"] == 2
    n_train = 360  # small_cifar: 400 training images, 10% held out for validation
    for record in metrics(out):
        assert record["images"] == n_train  # both ranks' images, summed
        assert record["distinct_images"] == n_train  # ... and no image twice
    # Rank 0 alone reports: one line per epoch, not two.
    assert proc.stdout.count("epoch 1: train loss") == 1
    assert "2 processes (DDP), global batch 32" in proc.stdout


def test_ddp_checkpoint_loads_and_evaluates(ddp_run, capsys):
    out, _ = ddp_run
    ckpt = read_checkpoint(out / "last.pt")
    assert ckpt["epoch"] == 2 and len(ckpt["rng_ranks"]) == 2
    assert main(["eval", str(out / "best.pt")]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    summary = json.loads((out / "summary.json").read_text())
    assert result["n"] == summary["test_n"] and result["accuracy"] == pytest.approx(summary["test_acc"])


def test_ddp_stopped_and_resumed_matches_an_uninterrupted_run(ddp_run, small_cifar, tmp_path):
    """SIGTERM to torchrun after the first epoch: both ranks stop at the same step, rank 0 saves every rank's
    random streams, and a torchrun --resume ends with exactly the weights of the uninterrupted run."""
    out, _ = ddp_run
    part = tmp_path / "part"
    cmd = [*TORCHRUN, "--data", str(small_cifar), "--out", str(part), "--epochs", "2", *ARGS]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    deadline = time.monotonic() + 300
    while not (part / "metrics.jsonl").exists():
        assert proc.poll() is None, proc.stderr.read()[-4000:]
        assert time.monotonic() < deadline, "timed out waiting for the first epoch"
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert f"vitlab train --resume {part}" in err
    stopped = read_checkpoint(part / "last.pt")
    assert 0 < stopped["step"] < read_checkpoint(out / "last.pt")["step"]

    torchrun("--resume", str(part))
    resumed, whole = read_checkpoint(part / "last.pt"), read_checkpoint(out / "last.pt")
    assert resumed["step"] == whole["step"]
    for key, value in whole["model"].items():
        assert torch.equal(resumed["model"][key], value), key
