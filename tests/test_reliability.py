"""Crash safety: a run killed at any point and resumed ends with exactly the weights of an uninterrupted run."""

import json
import os
import random
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
    "64",
    "--epochs",
    "3",
    "--seed",
    "0",
    "--no-report",
    "--set",
    "train.checkpoint_every=1e-9",
]  # refresh last.pt after every step


@pytest.fixture(scope="module")
def reference(small_cifar, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "r"
    assert main(["train", "--data", str(small_cifar), "--out", str(out), *ARGS]) == 0
    return read_checkpoint(out / "last.pt")


# A model with batch norm (the whitened stem of air-s): its running statistics must resume exactly too.
AIR_ARGS = [
    "--model",
    "air-s",
    "--set",
    "model.depth=1",
    "--set",
    "model.stem_channels=8",
    "--set",
    "model.dim=32",
    "--set",
    "model.bn_group=32",
    *ARGS[4:],
]


def start(small_cifar, out: Path, args: list[str] = ARGS) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "vitlab", "train", "--data", str(small_cifar), "--out", str(out), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(cond, proc, timeout=120.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        if proc.poll() is not None:
            pytest.fail(f"training ended before the kill point: {proc.stderr.read()[-2000:]}")
        time.sleep(0.002)
    proc.kill()
    pytest.fail("timed out waiting for the kill point")


def writing_checkpoint(out: Path) -> bool:
    return any(p.name.startswith(".last.pt.") for p in out.glob(".last.pt.*"))


def saves_done(out: Path) -> int:
    return read_checkpoint(out / "last.pt")["step"] if (out / "last.pt").exists() else 0


KILL_POINTS = {
    "early": lambda out: (out / "prev.pt").exists(),  # after the second step's save
    "during-write": lambda out: (out / "prev.pt").exists() and writing_checkpoint(out),
    "after-epoch-1": lambda out: (out / "metrics.jsonl").exists(),
}


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_sigkill_then_resume_gives_identical_weights(point, reference, small_cifar, tmp_path):
    out = tmp_path / "r"
    proc = start(small_cifar, out)
    wait_for(lambda: KILL_POINTS[point](out), proc)
    if point != "during-write":
        time.sleep(random.Random(point).uniform(0, 0.05))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "summary.json").exists()
    if point == "during-write":
        assert writing_checkpoint(out)  # the half-written temporary file is still there: killed mid-write
    assert main(["train", "--resume", str(out), "--no-report"]) == 0
    assert not writing_checkpoint(out)
    final = read_checkpoint(out / "last.pt")
    assert final["step"] == reference["step"] == 18  # 3 epochs of 6 batches (360 images)
    assert all(torch.equal(final["model"][k], reference["model"][k]) for k in reference["model"])
    epochs = [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2, 3]


def test_sigint_saves_and_exits_then_resumes_exactly(reference, small_cifar, tmp_path):
    out = tmp_path / "r"
    proc = start(small_cifar, out)
    wait_for(lambda: (out / "prev.pt").exists(), proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "SIGINT" in err and "--resume" in err and "Traceback" not in err
    state = read_checkpoint(out / "last.pt")
    assert 2 <= state["step"] < 18
    assert main(["train", "--resume", str(out), "--no-report"]) == 0
    final = read_checkpoint(out / "last.pt")
    assert all(torch.equal(final["model"][k], reference["model"][k]) for k in reference["model"])


# Muon + AdamW (the CPU presets' optimizer): the schedule must reach the groups a resume loads. With the stem's
# filters too: the matrices Muon updates share the filters' storage, also after a resume loads them.
MUON = ["--set", "train.optimizer=muon"]
MUON_CONVS = [*MUON, "--set", "train.muon_convs=true"]


@pytest.mark.parametrize("optimizer", [[], MUON, MUON_CONVS], ids=["adamw", "muon", "muon-convs"])
def test_batch_norm_model_resumes_bit_identical(optimizer, small_cifar, tmp_path):
    args = [*AIR_ARGS, *optimizer]
    ref = tmp_path / "ref"
    assert main(["train", "--data", str(small_cifar), "--out", str(ref), *args]) == 0
    reference = read_checkpoint(ref / "last.pt")
    assert any("running_mean" in k for k in reference["model"])
    out = tmp_path / "r"
    proc = start(small_cifar, out, args)
    wait_for(lambda: (out / "prev.pt").exists(), proc)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)
    assert proc.returncode == 130 and read_checkpoint(out / "last.pt")["step"] < reference["step"]
    assert main(["train", "--resume", str(out), "--no-report"]) == 0
    final = read_checkpoint(out / "last.pt")
    assert all(torch.equal(final["model"][k], reference["model"][k]) for k in reference["model"])


def test_resume_falls_back_to_prev_when_last_is_damaged(small_cifar, tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["train", "--data", str(small_cifar), "--out", str(out), *ARGS, "--epochs", "1"]) == 0
    data = (out / "last.pt").read_bytes()
    (out / "last.pt").write_bytes(data[: len(data) // 3])
    assert main(["train", "--resume", str(out), "--epochs", "2"]) == 0
    assert "resuming from the previous checkpoint" in capsys.readouterr().out
    assert read_checkpoint(out / "last.pt")["epoch"] == 2


def test_unwritable_output_fails_before_training(small_cifar, tmp_path, capsys):
    if os.geteuid() == 0:
        target = Path("/proc/vitlab-run")  # not creatable even for root
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        target = locked / "run"
    assert main(["train", "--data", str(small_cifar), "--out", str(target), *ARGS]) == 2
    err = capsys.readouterr().err
    assert "not writable" in err and "Traceback" not in err


def test_non_finite_loss_stops_naming_the_step(small_cifar, tmp_path, capsys):
    out = tmp_path / "r"
    args = [
        "train",
        "--data",
        str(small_cifar),
        "--out",
        str(out),
        *ARGS,
        "--set",
        "train.lr=1e30",
        "--set",
        "train.grad_clip=0",
        "--set",
        "train.warmup=0",
    ]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "training loss became" in err and "at step" in err and "learning rate" in err
    assert "Traceback" not in err and not (out / "summary.json").exists()
