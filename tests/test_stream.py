"""Datasets larger than memory: images streamed from disk by DataLoader workers give the in-memory path's results."""

import json
import shutil

import pytest
import torch

from vitlab.cli import main
from vitlab.config import DataConfig
from vitlab.data import folder as folder_module
from vitlab.data import load_data
from vitlab.data.stream import FileImages
from vitlab.errors import VitlabError
from vitlab.train import read_checkpoint

ARGS = [
    "--model",
    "seed",
    "--set",
    "model.depth=2",
    "--batch-size",
    "64",
    "--epochs",
    "2",
    "--seed",
    "0",
    "--no-report",
]


def test_disk_storage_reads_the_same_pixels_and_statistics(small_cifar):
    memory = load_data(DataConfig(source=str(small_cifar), storage="memory"), 32, seed=0, verbose=False)
    disk = load_data(DataConfig(source=str(small_cifar), storage="disk", workers=2), 32, seed=0, verbose=False)
    assert disk.storage == "disk" and memory.storage == "memory"
    assert isinstance(disk.train.images, FileImages) and disk.train.images.shape == memory.train.images.shape
    assert disk.mean == memory.mean and disk.std == memory.std  # to the last bit
    for name in ("train", "val", "test"):
        a, b = getattr(memory, name), getattr(disk, name)
        assert torch.equal(a.labels, b.labels)
        assert torch.equal(torch.cat(list(b.images.split(32))), a.images)  # the held-out split too


def test_training_from_disk_matches_training_from_memory(small_cifar, tmp_path, capsys):
    assert (
        main(
            ["train", "--data", str(small_cifar), "--out", str(tmp_path / "mem"), *ARGS, "--set", "data.storage=memory"]
        )
        == 0
    )
    assert "held in memory as uint8" in capsys.readouterr().out
    assert (
        main(
            [
                "train",
                "--data",
                str(small_cifar),
                "--out",
                str(tmp_path / "disk"),
                *ARGS,
                "--set",
                "data.storage=disk",
                "--set",
                "data.workers=2",
            ]
        )
        == 0
    )
    assert "streamed from disk" in capsys.readouterr().out
    mem, disk = read_checkpoint(tmp_path / "mem" / "last.pt"), read_checkpoint(tmp_path / "disk" / "last.pt")
    for key, value in mem["model"].items():
        assert torch.equal(disk["model"][key], value), key
    summary = json.loads((tmp_path / "disk" / "summary.json").read_text())
    assert summary["test_acc"] == json.loads((tmp_path / "mem" / "summary.json").read_text())["test_acc"]
    # A checkpoint of a streamed run evaluates from disk too.
    assert main(["eval", str(tmp_path / "disk" / "best.pt")]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["accuracy"] == summary["test_acc"]


def test_auto_streams_when_the_images_would_not_fit(small_cifar, monkeypatch):
    monkeypatch.setattr(folder_module, "physical_memory", lambda: 1_000_000)  # 1 MB of "RAM"
    data = load_data(DataConfig(source=str(small_cifar), memory_share=0.5), 32, seed=0, verbose=False)
    assert data.storage == "disk"
    monkeypatch.setattr(folder_module, "physical_memory", lambda: 10**12)
    assert load_data(DataConfig(source=str(small_cifar)), 32, seed=0, verbose=False).storage == "memory"


def test_unreadable_files_are_skipped_and_listed_when_streaming(small_cifar, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(small_cifar, root)
    (root / "train" / "cat" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    data = load_data(DataConfig(source=str(root), storage="disk", workers=2), 32, seed=0, verbose=False)
    assert len(data.train) + len(data.val) == 400
    assert any("broken.jpg" in msg for msg in data.skipped)
    with pytest.raises(VitlabError, match=r"broken.jpg.*\(data.strict is on\)"):
        load_data(
            DataConfig(source=str(root), storage="disk", strict=True, cache_dir=str(tmp_path / "c2")),
            32,
            seed=0,
            verbose=False,
        )


def test_scanning_more_files_than_the_open_file_limit(cifar_root):
    """The scan's results must not hold one shared-memory file per image (60,000 images broke it once)."""
    import resource

    from vitlab.data.stream import scan_files

    files = sorted((cifar_root / "test").rglob("*.jpg"))[:3000]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(1024, hard), hard))
    try:
        kept, skipped, sums, squares = scan_files(files, 32, 2, "scan")
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert kept == list(range(3000)) and not skipped and sums.shape == squares.shape == (3000, 3)
