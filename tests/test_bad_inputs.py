"""A corpus of malformed inputs, built here, run through train, eval, predict and report.

Each case must end with its clear message (no traceback reaches the user); the number handled is printed.
"""

import os
import shutil
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as skdata

from vitlab.cli import main

FAST = ["--model", "seed", "--set", "model.depth=1", "--batch-size", "64", "--epochs", "1", "--no-report"]


def png_bomb(path):
    """A valid PNG header declaring 50,000 x 50,000 pixels (2.5 gigapixels) in a few dozen bytes."""
    ihdr = struct.pack(">IIBBBBB", 50_000, 50_000, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk + b"\x00" * 32)


def odd_but_readable(folder):
    """Images in unusual modes that must be read, not skipped."""
    photo = skdata.chelsea()
    Image.fromarray(photo).convert("L").save(folder / "gray.png")
    Image.fromarray(photo).convert("CMYK").save(folder / "cmyk.jpg")
    Image.fromarray(photo).convert("P").save(folder / "palette.png")
    Image.fromarray((np.arange(96 * 64, dtype=np.uint16).reshape(64, 96) * 10)).save(folder / "sixteen_bit.png")
    Image.fromarray(np.dstack([photo, np.full(photo.shape[:2], 128, np.uint8)])).save(folder / "alpha.png")
    return 5


def broken(folder):
    """Files that cannot be images; each must be skipped and listed by name."""
    (folder / "zero.jpg").write_bytes(b"")
    full = folder / "full.jpg"
    Image.fromarray(skdata.astronaut()).save(full)
    (folder / "truncated.jpg").write_bytes(full.read_bytes()[:3000])
    full.unlink()
    (folder / "text.png").write_text("not an image at all")
    png_bomb(folder / "bomb.png")
    os.symlink("loop_b.jpg", folder / "loop_a.jpg")
    os.symlink("loop_a.jpg", folder / "loop_b.jpg")
    os.symlink("missing-target.jpg", folder / "dangling.jpg")
    return {"zero.jpg": "empty file", "truncated.jpg": "not a readable image", "text.png": "not a readable image",
            "bomb.png": "decompression-bomb limit", "loop_a.jpg": "cannot be read", "loop_b.jpg": "cannot be read",
            "dangling.jpg": "cannot be read"}


@pytest.fixture(scope="module")
def trained(small_cifar, tmp_path_factory):
    out = tmp_path_factory.mktemp("bad") / "run"
    assert main(["train", "--data", str(small_cifar), "--out", str(out), *FAST]) == 0
    return out


def test_malformed_input_corpus(trained, small_cifar, tmp_path, capsys):
    handled = 0

    def expect(argv, code, *needles, stream="err"):
        nonlocal handled
        rc = main(argv)
        captured = capsys.readouterr()
        text = captured.err if stream == "err" else captured.out
        assert rc == code, (argv, captured.err[-1500:])
        assert "Traceback" not in captured.err + captured.out
        for needle in needles:
            assert needle in text, (argv, needle, text[-1500:])
        if code == 2:
            assert text.strip().splitlines()[-1].startswith("vitlab: error:")
        handled += 1

    # -- images inside a dataset: skipped and listed, never a crash mid-epoch; fatal with data.strict
    data = tmp_path / "data"
    shutil.copytree(small_cifar, data)
    readable = odd_but_readable(data / "train" / "cat")
    bad = broken(data / "train" / "dog")
    rc = main(["train", "--data", str(data), "--out", str(tmp_path / "r1"), *FAST])
    out = capsys.readouterr().out
    assert rc == 0 and f"skipped {len(bad)} unreadable files" in out
    for name, reason in bad.items():
        line = next(line for line in out.splitlines() if name in line)
        assert reason in line, line
        handled += 1
    assert "train 365" in out or "train 364" in out  # 400 + 5 readable odd images, 10% held out
    handled += readable
    expect(["train", "--data", str(data), "--out", str(tmp_path / "r2"), *FAST, "--set", "data.strict=true",
            "--set", "data.cache_dir=" + str(tmp_path / "strict-cache")], 2, "strict")
    assert not (tmp_path / "r2" / "summary.json").exists()

    # -- the same images through predict: each reported by name, the readable ones classified
    rc = main(["predict", str(trained / "best.pt"), str(data / "train" / "dog"), "--out", str(tmp_path / "p.csv")])
    err = capsys.readouterr().err
    assert rc == 0 and all(name in err for name in bad) and "Traceback" not in err
    handled += 1

    # -- folders
    expect(["train", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "f1"), *FAST], 2, "folder not found")
    (tmp_path / "no_train" / "test" / "a").mkdir(parents=True)
    expect(["train", "--data", str(tmp_path / "no_train"), "--out", str(tmp_path / "f2"), *FAST], 2, "train/")
    empty = tmp_path / "empty_class"
    shutil.copytree(small_cifar, empty)
    (empty / "train" / "unicorn").mkdir()
    expect(["train", "--data", str(empty), "--out", str(tmp_path / "f3"), *FAST], 2, "unicorn: class folder holds no image files")
    extra = tmp_path / "extra_test_class"
    shutil.copytree(small_cifar, extra)
    shutil.copytree(extra / "test" / "cat", extra / "test" / "tiger")
    expect(["train", "--data", str(extra), "--out", str(tmp_path / "f4"), *FAST], 2, "'tiger'")
    single = tmp_path / "single"
    shutil.copytree(small_cifar / "train" / "cat", single / "train" / "cat")
    shutil.copytree(small_cifar / "test" / "cat", single / "test" / "cat")
    expect(["train", "--data", str(single), "--out", str(tmp_path / "f5"), *FAST], 2, "at least two")

    # -- checkpoints
    text_file = tmp_path / "notes.pt"
    text_file.write_text("hello")
    expect(["eval", str(text_file), "--data", str(small_cifar)], 2, "not a readable torch file")
    blob = (trained / "best.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(blob[: len(blob) // 2])
    expect(["predict", str(tmp_path / "cut.pt"), str(small_cifar / "test")], 2, "truncated")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    expect(["eval", str(tmp_path / "other.pt")], 2, "not a vitlab checkpoint")
    two = tmp_path / "two_classes"
    for split in ("train", "test"):
        for c in ("a", "b"):
            shutil.copytree(small_cifar / split / "cat", two / split / c)
    expect(["eval", str(trained / "best.pt"), "--data", str(two)], 2, "trained on 10 classes")
    expect(["report", str(trained), "--data", str(two)], 2, "differ from the checkpoint")

    # -- CLI values
    base = ["train", "--data", str(small_cifar), "--out", str(tmp_path / "v")]
    expect(base + ["--epochs", "0"], 2, "--epochs")
    expect(base + ["--epochs", "-2"], 2, "--epochs")
    expect(base + ["--batch-size", "0"], 2, "train.batch_size")
    expect(base + ["--time-budget", "0"], 2, "--time-budget")
    expect(base + ["--time-budget", "-5"], 2, "--time-budget")
    expect(base + ["--set", "model.patch_size=7"], 2, "does not divide")
    expect(base + ["--model", "vit-giant"], 2, "unknown preset")
    expect(base + ["--set", "train.learning_rate=1"], 2, "unknown key 'learning_rate'")
    expect(base + ["--set", "train.batch_size=big"], 2, "expected a value of type int")
    expect(base + ["--set", "nonsense"], 2, "key=value")
    assert not (tmp_path / "v" / "last.pt").exists()

    # -- report
    expect(["report", str(tmp_path / "no-run")], 2, "run folder not found")
    expect(["report", str(trained), "--extra-test", "oops"], 2, "expected NAME=PATH")

    print(f"handled {handled} malformed-input cases")
    assert handled >= 15
