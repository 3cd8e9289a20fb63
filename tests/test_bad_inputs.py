"""A corpus of malformed inputs, built here, run through train, eval, predict and report.

Each case must end with its clear message (no traceback reaches the user).
"""

import io
import json
import os
import re
import shutil
import struct
import time
import zipfile
import zlib
from pathlib import Path

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
    return {
        "zero.jpg": "empty file",
        "truncated.jpg": "not a readable image",
        "text.png": "not a readable image",
        "bomb.png": "decompression-bomb limit",
        "loop_a.jpg": "cannot be read",
        "loop_b.jpg": "cannot be read",
        "dangling.jpg": "cannot be read",
    }


@pytest.fixture(scope="module")
def trained(small_cifar, tmp_path_factory):
    out = tmp_path_factory.mktemp("bad") / "run"
    assert main(["train", "--data", str(small_cifar), "--out", str(out), *FAST]) == 0
    return out


def test_malformed_input_corpus(trained, small_cifar, tmp_path, capsys):
    def expect(argv, code, *needles, stream="err"):
        rc = main(argv)
        captured = capsys.readouterr()
        text = captured.err if stream == "err" else captured.out
        assert rc == code, (argv, captured.err[-1500:])
        assert "Traceback" not in captured.err + captured.out
        for needle in needles:
            assert needle in text, (argv, needle, text[-1500:])
        if code == 2:
            assert text.strip().splitlines()[-1].startswith("vitlab: error:")

    # -- images inside a dataset: skipped and listed, never a crash mid-epoch; fatal with data.strict
    data = tmp_path / "data"
    shutil.copytree(small_cifar, data)
    odd_but_readable(data / "train" / "cat")
    bad = broken(data / "train" / "dog")
    rc = main(["train", "--data", str(data), "--out", str(tmp_path / "r1"), *FAST])
    out = capsys.readouterr().out
    assert rc == 0 and f"skipped {len(bad)} unreadable files" in out
    for name, reason in bad.items():
        line = next(line for line in out.splitlines() if name in line)
        assert reason in line, line
    assert "train 365" in out or "train 364" in out  # 400 + 5 readable odd images, 10% held out
    expect(
        [
            "train",
            "--data",
            str(data),
            "--out",
            str(tmp_path / "r2"),
            *FAST,
            "--set",
            "data.strict=true",
            "--set",
            "data.cache_dir=" + str(tmp_path / "strict-cache"),
        ],
        2,
        "strict",
    )
    assert not (tmp_path / "r2" / "summary.json").exists()

    # -- the same images through predict: each reported by name, the readable ones classified
    rc = main(["predict", str(trained / "best.pt"), str(data / "train" / "dog"), "--out", str(tmp_path / "p.csv")])
    err = capsys.readouterr().err
    assert rc == 0 and all(name in err for name in bad) and "Traceback" not in err

    # -- folders
    expect(["train", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "f1"), *FAST], 2, "folder not found")
    (tmp_path / "no_train" / "test" / "a").mkdir(parents=True)
    expect(["train", "--data", str(tmp_path / "no_train"), "--out", str(tmp_path / "f2"), *FAST], 2, "train/")
    empty = tmp_path / "empty_class"
    shutil.copytree(small_cifar, empty)
    (empty / "train" / "unicorn").mkdir()
    expect(
        ["train", "--data", str(empty), "--out", str(tmp_path / "f3"), *FAST],
        2,
        "unicorn: class folder holds no image files",
    )
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


# ---------------------------------------------------------------------------------------------------------------
# Hostile inputs, one class each (issue 12): every command runs in its own process under a memory limit
# calibrated from the same command on good input (+1 GiB) and a generous time limit; each must answer with its
# one-line message (or succeed where the input is merely odd), never a traceback, and leave the user's files alone.

RUNNER = """
import resource, sys
limit = int(sys.argv[1])
if limit:
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
from vitlab.cli import main
try:
    rc = main(sys.argv[2:])
finally:
    peak = next(line for line in open("/proc/self/status") if line.startswith("VmPeak"))
    print("VMPEAK", int(peak.split()[1]) * 1024, file=sys.stderr)
sys.exit(rc)
"""
HEADROOM = 2**30
HANG_SECONDS = 180


def run_cli(argv, limit=0, cwd=None):
    """(exit code, stdout, stderr, peak virtual memory) of ``vitlab ARGV`` in a fresh process."""
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", RUNNER, str(limit), *map(str, argv)],
        capture_output=True,
        timeout=HANG_SECONDS,
        cwd=cwd,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
    )
    err = proc.stderr.decode(errors="replace")
    found = re.search(r"VMPEAK (\d+)", err)
    peak = int(found.group(1)) if found else 0
    return proc.returncode, proc.stdout.decode(errors="replace"), err, peak


def tiny_folder(root, classes=("cat", "dog"), per_class=12, test=4):
    """A small ImageFolder of real photos' crops (distinct per image), written as PNG."""
    photo = skdata.astronaut()
    for split, n in (("train", per_class), ("test", test)):
        for c, name in enumerate(classes):
            d = root / split / name
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                y, x = 8 * i, 40 * c + 3 * i
                Image.fromarray(photo[y : y + 32, x : x + 32]).save(d / f"{i}.png")
    return root


def lying_jpeg(path, side=20_000):
    """A real JPEG of a few hundred bytes whose frame header claims side x side pixels."""
    buf = io.BytesIO()
    Image.fromarray(skdata.astronaut()[:16, :16]).save(buf, "JPEG", quality=50)
    data = bytearray(buf.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", side, side)
    path.write_bytes(bytes(data))


def npz_bomb(path, declared=2**31):
    """An .npz of about 2 MB holding one float64 array of ``declared`` bytes of zeros (deflate: ~1000:1)."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (declared // 8,)})
    chunk = bytes(2**24)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        with z.open("embedding/kernel.npy", "w", force_zip64=True) as f:
            f.write(header.getvalue())
            for _ in range(declared // len(chunk)):
                f.write(chunk)


def rewrite_safetensors(path, **changes):
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(path), framework="pt") as f:
        meta, tensors = dict(f.metadata()), {k: f.get_tensor(k) for k in f.keys()}
    for key, value in changes.items():
        if value is None:
            meta.pop(key)
        else:
            meta[key] = value
    save_file(tensors, str(path), metadata=meta)


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """A tiny trained run, its exported file, a good image, and each command's calibrated memory limit."""
    root = tmp_path_factory.mktemp("hostile")
    data = tiny_folder(root / "data")
    run = root / "run"
    fast = ["--model", "seed", "--set", "model.depth=1", "--batch-size", "16", "--epochs", "1", "--seed", "0"]
    assert main(["train", "--data", str(data), "--out", str(run), *fast]) == 0  # with its report
    assert main(["export", str(run / "best.pt"), "--out", str(root / "m.safetensors")]) == 0
    good = root / "good.png"
    Image.fromarray(skdata.chelsea()).save(good)
    good_runs = {
        "predict": ["predict", run / "best.pt", good, "--out", root / "good.csv"],
        # with its report and a cold data cache: the most any train case below does
        "train": [
            "train",
            "--data",
            data,
            "--out",
            root / "good-run",
            *fast,
            "--set",
            f"data.cache_dir={root / 'cold'}",
        ],
        "report": ["report", run],
        "finetune": [
            "finetune",
            "--weights",
            run / "best.pt",
            "--data",
            data,
            "--out",
            root / "good-ft",
            "--epochs",
            "1",
            "--batch-size",
            "16",
            "--no-report",
        ],
        "attention": ["attention", run / "best.pt", good, "--out", root / "good-att"],
    }
    limits = {}
    for command, argv in good_runs.items():
        rc, _, err, peak = run_cli(argv)
        assert rc == 0 and peak > 0, err[-2000:]
        limits[command] = peak + HEADROOM
    return {"root": root, "data": data, "run": run, "fast": fast, "good": good, "limits": limits}


def _header_lies(h, tmp):
    lying_jpeg(tmp / "huge.jpg")
    shutil.copy(h["good"], tmp / "ok.png")
    return (
        ["predict", h["run"] / "best.pt", tmp, "--out", tmp / "p.csv"],
        0,
        ["huge.jpg: 400,000,000 pixels", "decompression-bomb limit"],
    )


def _aspect_ratio(h, tmp):
    Image.new("RGB", (3_000_000, 1), (90, 120, 200)).save(tmp / "strip.png")
    return ["predict", h["run"] / "best.pt", tmp / "strip.png", "--out", tmp / "p.csv"], 0, ["wrote 1 predictions"]


def _checkpoint(field, value, message):
    def make(h, tmp):
        ckpt = torch.load(h["run"] / "best.pt", weights_only=True)
        ckpt["config"]["model"][field] = value
        torch.save(ckpt, tmp / "evil.pt")
        return ["predict", tmp / "evil.pt", h["good"]], 2, [message]

    return make


def _safetensors(message, **changes):
    def make(h, tmp):
        shutil.copy(h["root"] / "m.safetensors", tmp / "m.safetensors")
        rewrite_safetensors(tmp / "m.safetensors", **changes)
        return ["predict", tmp / "m.safetensors", h["good"]], 2, [message]

    return make


def _hf_config(h, tmp):
    (tmp / "hf").mkdir()
    (tmp / "hf" / "config.json").write_text('{"model_type": "vit", ')
    (tmp / "hf" / "model.safetensors").write_bytes(b"")
    return ["finetune", "--weights", tmp / "hf", "--data", h["data"], "--out", tmp / "ft"], 2, ["not valid JSON"]


def _npz(h, tmp):
    npz_bomb(tmp / "ViT-B_16.npz")
    assert (tmp / "ViT-B_16.npz").stat().st_size < 5 * 2**20
    return ["finetune", "--weights", tmp / "ViT-B_16.npz", "--data", h["data"], "--out", tmp / "ft"], 2, ["zip bomb"]


def _special_predict(h, tmp):
    os.mkfifo(tmp / "a.jpg")
    os.symlink("/dev/zero", tmp / "zero.jpg")
    shutil.copy(h["good"], tmp / "ok.png")
    return (
        ["predict", h["run"] / "best.pt", tmp, "--out", tmp / "p.csv"],
        0,
        ["a.jpg: not a regular file (a pipe)", "zero.jpg: not a regular file (a device", "wrote 1 predictions"],
    )


def _special_train(h, tmp):
    shutil.copytree(h["data"], tmp / "d")
    os.mkfifo(tmp / "d" / "train" / "cat" / "fifo.jpg")
    os.symlink("/dev/zero", tmp / "d" / "train" / "dog" / "zero.png")
    return (
        ["train", "--data", tmp / "d", "--out", tmp / "r", *h["fast"], "--no-report"],
        0,
        ["fifo.jpg: not a regular file (a pipe)", "zero.png: not a regular file"],
    )


def _names(h, tmp):
    tiny_folder(tmp / "d", classes=("$\\foo$", "=1+1"), per_class=10, test=3)
    bad_name = os.fsencode(tmp / "d" / "train" / "$\\foo$") + b"/\xff\xfe.png"
    shutil.copy(h["good"], os.fsdecode(bad_name))
    return ["train", "--data", tmp / "d", "--out", tmp / "r", *h["fast"]], 0, ["report:"]


def _names_predict(h, tmp):
    (tmp / "in").mkdir()
    shutil.copy(h["good"], os.fsdecode(os.fsencode(tmp / "in") + b"/\xff.png"))
    shutil.copy(h["good"], tmp / "in" / "=HYPERLINK(1).png")
    shutil.copy(h["good"], tmp / "in" / "$\\alpha$.png")
    return ["predict", h["run"] / "best.pt", ".", "--out", tmp / "p.csv"], 0, ["wrote 3 predictions"]


def _names_attention(h, tmp):
    shutil.copy(h["good"], tmp / "$\\foo$.png")
    return ["attention", h["run"] / "best.pt", tmp / "$\\foo$.png", "--out", tmp / "att"], 0, []


def _overwrite_checkpoint(h, tmp):
    shutil.copy(h["run"] / "best.pt", tmp / "m.pt")
    return ["predict", tmp / "m.pt", h["good"], "--out", tmp / "m.pt"], 2, ["is one of the inputs"]


def _overwrite_report(h, tmp):
    shutil.copytree(h["run"], tmp / "r")
    return ["report", tmp / "r", "--extra-test", f"x={tmp / 'nowhere'}"], 2, ["nowhere"]


def _torn_report(h, tmp):
    shutil.copytree(h["run"], tmp / "r")
    with open(tmp / "r" / "metrics.jsonl", "a") as f:
        f.write('{"epoch": 2, "step": 9, "train_lo')
    return ["report", tmp / "r"], 0, ["metrics.jsonl:2: left out a line"]


def _torn_resume(h, tmp):
    shutil.copytree(h["run"], tmp / "r")
    with open(tmp / "r" / "metrics.jsonl", "a") as f:
        f.write('{"epoch": 2, "st')
    return ["train", "--resume", tmp / "r", "--epochs", "2", "--no-report"], 0, ["epoch 2:"]


def _value(setting, message):
    def make(h, tmp):
        flag = setting.split("=", 1) if setting.startswith("--") else ["--set", setting]
        return ["train", "--data", h["data"], "--out", tmp / "r", *h["fast"], "--no-report", *flag], 2, [message]

    return make


def _empty_validation(h, tmp):
    return (
        ["train", "--data", h["data"], "--out", tmp / "r", *h["fast"], "--no-report", "--set", "data.val_max=0"],
        0,
        ["val 0 (none: the hold-out would be empty"],
    )


def _cache(kind):
    def make(h, tmp):
        cache = tmp / "cache"
        argv = [
            "train",
            "--data",
            h["data"],
            "--out",
            tmp / "r",
            *h["fast"],
            "--no-report",
            "--overwrite",
            "--set",
            f"data.cache_dir={cache}",
        ]
        if kind == "unwritable":
            (tmp / "file").write_text("not a folder")
            argv[-1] = f"data.cache_dir={tmp / 'file' / 'cache'}"
            return argv, 0, ["warning: could not write the data cache"]
        assert main([str(a) for a in argv]) == 0
        (cached,) = (cache / "folders").glob("*.pt")
        if kind == "structure":
            torch.save({"splits": [1, 2, 3]}, cached)
            return argv, 0, ["rebuilding the data cache", "unexpected structure"]
        data = torch.load(cached, weights_only=True)
        data["splits"]["train"][0][0, 0, 0, 0] ^= 1  # one altered pixel
        torch.save(data, cached)
        return argv, 0, ["rebuilding the data cache", "checksum mismatch"]

    return make


CASES = {
    "1-header-lies": _header_lies,
    "2-aspect-ratio": _aspect_ratio,
    "3-checkpoint-depth": _checkpoint("depth", 10**6, "model.depth: expected at most 1,024"),
    "3-checkpoint-img-size": _checkpoint("img_size", 10**6, "model.img_size: expected at most 4096"),
    "3-checkpoint-dim": _checkpoint("dim", 10**6, "model.dim: expected at most 16,384"),
    "3-checkpoint-heads": _checkpoint("heads", 0, "model.heads: expected a positive integer"),
    "3-checkpoint-shapes": _checkpoint("mlp_dim", 96, "weights do not match the model its config describes"),
    "4-safetensors-config": _safetensors("'config' is not valid JSON", config="{not json"),
    "4-safetensors-classes": _safetensors("no 'classes' entry", classes=None),
    "4-safetensors-count": _safetensors("expected 2 class names", classes='["a", "b", "c"]'),
    "4-hf-config": _hf_config,
    "4-npz-bomb": _npz,
    "5-special-predict": _special_predict,
    "5-special-train": _special_train,
    "6-names-train-report": _names,
    "6-names-predict": _names_predict,
    "6-names-attention": _names_attention,
    "7-overwrite-checkpoint": _overwrite_checkpoint,
    "7-overwrite-report": _overwrite_report,
    "8-torn-report": _torn_report,
    "8-torn-resume": _torn_resume,
    "9-time-budget-nan": _value("--time-budget=nan", "train.time_budget: expected a finite number"),
    "9-lr-nan": _value("train.lr=nan", "train.lr: expected a finite number"),
    "9-label-smoothing": _value("train.label_smoothing=2", "train.label_smoothing: expected a share in [0, 1)"),
    "9-crop-padding": _value("data.crop_padding=100000", "data.crop_padding: expected at most the image side"),
    "9-img-size": _value("model.img_size=1000000", "model.img_size: expected at most 4096"),
    "9-stem-channels": _value("model.stem_channels=-1", "model.stem_channels: expected a positive integer"),
    "9-weight-decay": _value("train.weight_decay=-1", "train.weight_decay: expected 0"),
    "9-mixup": _value("train.mixup=nan", "train.mixup: expected a finite number"),
    "9-empty-validation": _empty_validation,
    "10-cache-structure": _cache("structure"),
    "10-cache-checksum": _cache("checksum"),
    "10-cache-unwritable": _cache("unwritable"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_input(case, hostile, tmp_path):
    argv, code, needles = CASES[case](hostile, tmp_path)
    protected = {
        p: p.read_bytes()
        for p in map(Path, argv[1:])
        if isinstance(p, Path) and p.is_file() and p.suffix in (".pt", ".safetensors")
    }
    cwd = tmp_path / "in" if (tmp_path / "in").is_dir() else tmp_path
    start = time.perf_counter()
    rc, out, err, peak = run_cli(argv, limit=hostile["limits"][argv[0]], cwd=cwd)
    if os.environ.get("VITLAB_HOSTILE_LOG"):  # for benchmarks/RESULTS.md: memory over the good run, and time
        with open(os.environ["VITLAB_HOSTILE_LOG"], "a") as f:
            f.write(
                json.dumps(
                    {
                        "case": case,
                        "rc": rc,
                        "seconds": round(time.perf_counter() - start, 1),
                        "peak_over_good_mib": round((peak - hostile["limits"][argv[0]] + HEADROOM) / 2**20),
                    }
                )
                + "\n"
            )
    text = out + err
    assert "Traceback" not in text, text[-3000:]
    assert rc == code, (rc, text[-3000:])
    for needle in needles:
        assert needle in text, (needle, text[-3000:])
    if code == 2:
        lines = [line for line in err.splitlines() if line.startswith("vitlab: error:")]
        assert len(lines) == 1, err
    for path, content in protected.items():
        assert path.read_bytes() == content, f"{path} was changed"
    _check_outputs(case, tmp_path, hostile)


def _check_outputs(case, tmp, h):
    """What each case must (or must not) leave on disk."""
    if case == "6-names-train-report":
        rows = (tmp / "r" / "report" / "confusion_matrix.csv").read_text().splitlines()
        assert "'=1+1" in rows[0] and "$\\foo$" in rows[0]
        assert (tmp / "r" / "report" / "report.html").is_file()
    if case == "6-names-predict":
        text = (tmp / "p.csv").read_text()
        assert "\\xff.png" in text and "'=HYPERLINK(1).png" in text and "$\\alpha$.png" in text
    if case == "7-overwrite-report":
        report = tmp / "r" / "report"
        assert (report / "report.html").read_bytes() == (h["run"] / "report" / "report.html").read_bytes()
        assert not [p for p in (tmp / "r").iterdir() if p.name.startswith(".report")]
    if case == "8-torn-resume":
        lines = (tmp / "r" / "metrics.jsonl").read_text().splitlines()
        assert [json.loads(line)["epoch"] for line in lines] == [1, 2]
