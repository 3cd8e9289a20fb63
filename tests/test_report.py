"""The HTML report of a short real run: figures, tables and numbers that agree with summary.json."""

import base64
import csv
import io
import json
import re
import shutil
import subprocess

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as skdata

from vitlab.models.attention import attention_rollout, last_layer_cls_attention, to_heatmap
from vitlab.analysis.metrics import classification_metrics
from vitlab.cli import main

FIGURES = ("curves.png", "confusion_matrix.png", "tsne.png", "attention.png", "misclassified.png", "reliability.png")


@pytest.fixture(scope="module")
def extra_photos(tmp_path_factory):
    """A third test set like the seed's: photos of other sizes, in class folders."""
    root = tmp_path_factory.mktemp("photos")
    (root / "cat").mkdir()
    (root / "airplane").mkdir()
    Image.fromarray(skdata.chelsea()).save(root / "cat" / "chelsea.jpg")
    Image.fromarray(skdata.cat()).save(root / "cat" / "cat.png")
    Image.fromarray(skdata.rocket()).save(root / "airplane" / "rocket.jpg")
    return root


@pytest.fixture(scope="module")
def reported_run(small_cifar, extra_photos, tmp_path_factory):
    out = tmp_path_factory.mktemp("report-run") / "r"
    args = [
        "train",
        "--data",
        str(small_cifar),
        "--epochs",
        "2",
        "--out",
        str(out),
        "--model",
        "seed",
        "--set",
        "model.depth=2",
        "--batch-size",
        "64",
    ]
    assert main(args) == 0  # the report is made at the end of training
    assert (out / "report" / "report.html").is_file()
    assert main(["report", str(out), "--extra-test", f"photos={extra_photos}", "--tsne-samples", "100"]) == 0
    return out


def test_every_figure_is_a_valid_png(reported_run):
    for name in FIGURES:
        path = reported_run / "report" / name
        assert path.stat().st_size > 1000, name
        with Image.open(path) as img:
            img.verify()
            assert img.format == "PNG"


def test_confusion_matrix_counts_match_the_test_accuracy(reported_run):
    rows = list(csv.reader((reported_run / "report" / "confusion_matrix.csv").open()))
    classes = rows[0][1:]
    cm = np.array([[int(v) for v in row[1:]] for row in rows[1:]])
    assert [r[0] for r in rows[1:]] == classes and cm.shape == (10, 10)
    summary = json.loads((reported_run / "summary.json").read_text())
    assert cm.sum() == summary["test_n"] == 100
    assert np.trace(cm) / cm.sum() == pytest.approx(summary["test_acc"], abs=1e-9)
    assert (cm.sum(1) == 10).all()  # 10 test images per class


def test_html_holds_every_section_and_the_summary_numbers(reported_run):
    page = (reported_run / "report" / "report.html").read_text()
    for name in FIGURES:
        assert f'data-file="{name}"' in page, name
    assert page.count('src="data:image/png;base64,') == len(FIGURES)
    assert "http://" not in page and "https://" not in page  # self-contained
    summary = json.loads((reported_run / "summary.json").read_text())
    table = re.search(r'<table class="results">.*?</table>', page, re.S).group(0)
    for header in ("validation", "test", "photos", "train"):
        assert header in table
    assert f"{summary['test_acc']:.2%}" in table and f"{summary['test_loss']:.3f}" in table
    assert f"{summary['val_acc']:.2%}" in table
    for heading in (
        "Loss and accuracy",
        "Confusion matrix",
        "Most confused pairs",
        "Beyond accuracy",
        "t-SNE",
        "Attention maps",
        "Misclassified examples",
        "Config",
    ):
        assert heading in page, heading


def test_extra_test_set_of_other_sizes_is_scored(reported_run):
    results = json.loads((reported_run / "report" / "results.json").read_text())
    assert results["columns"]["photos"]["n"] == 3
    assert len(results["per_class"]) == 10 and {"precision", "recall", "f1"} <= set(results["per_class"][0])


def test_attention_command_writes_one_png_per_image(reported_run, extra_photos, tmp_path):
    assert main(["attention", str(reported_run / "best.pt"), str(extra_photos), "--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.glob("*.png")) == [
        "cat_attention.png",
        "chelsea_attention.png",
        "rocket_attention.png",
    ]


def test_rollout_of_identity_attention_is_uniform_over_patches():
    tokens = 1 + 16
    identity = [torch.eye(tokens).expand(2, 4, tokens, tokens) for _ in range(3)]
    roll = attention_rollout(identity)
    assert roll.shape == (2, 16)
    assert torch.allclose(roll, roll[:, :1].expand_as(roll))
    uniform = [torch.full((2, 4, tokens, tokens), 1.0 / tokens) for _ in range(3)]
    roll = attention_rollout(uniform)
    assert torch.allclose(roll, roll[:, :1].expand_as(roll)) and (roll > 0).all()


def test_rollout_multiplies_through_the_layers():
    """Two layers where the class token looks only at patch 1, which looks only at patch 2."""
    t = 4
    a = torch.zeros(1, 1, t, t)
    a[0, 0, 0, 1] = 1.0
    b = torch.eye(t)[None, None].clone()
    b[0, 0, 1] = torch.tensor([0.0, 0.0, 1.0, 0.0])
    # layer 1 = b (patch 1 -> patch 2), layer 2 = a (cls -> patch 1): rollout reaches patch 2 through patch 1
    roll = attention_rollout([b, a])
    assert roll[0, 1] > 0 and roll[0, 0] > 0  # patch 1 and, through it, patch 2
    assert last_layer_cls_attention([b, a])[0].tolist() == [1.0, 0.0, 0.0]
    heat = to_heatmap(torch.tensor([[0.0, 1.0, 2.0, 3.0]]), (2, 2), (8, 8))
    assert heat.shape == (1, 8, 8) and heat.min() == 0 and heat.max() == 1


@pytest.mark.browser
def test_report_loads_in_headless_chromium(reported_run, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.fail("the browser test needs Debian's chromium (apt-get install chromium)")
    page = reported_run / "report" / "report.html"
    # Chromium serialises the DOM after load: each embedded image reports whether it decoded.
    probe = tmp_path / "probe.html"
    probe.write_text(
        page.read_text().replace(
            "</body>",
            "<script>window.addEventListener('load',()=>{const s=[...document.images].map(i=>i.complete&&i.naturalWidth>0);"
            "document.body.setAttribute('data-loaded',s.filter(Boolean).length+'/'+s.length);});</script></body>",
        )
    )
    res = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--virtual-time-budget=5000",
            "--dump-dom",
            probe.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    m = re.search(r'data-loaded="(\d+)/(\d+)"', res.stdout)
    assert m, res.stderr[-2000:]
    assert m.group(1) == m.group(2) == str(len(FIGURES))


def test_calibration_balance_and_collapse_metrics():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), 20)
    preds = labels.copy()
    wrong = rng.choice(200, 60, replace=False)
    preds[wrong] = (labels[wrong] + 1) % 10
    probs = np.full((200, 10), 0.01)
    probs[wrong, labels[wrong]] = 0.05  # the true class second when wrong: always in the top 5
    probs[np.arange(200), preds] = 0.9  # right 70% of the time, always 90% sure
    m = classification_metrics(probs, labels)
    assert m["accuracy"] == pytest.approx(0.7) and m["top5"] == 1.0
    assert m["ece"] == pytest.approx(0.2)  # every image in one bin: |0.9 - 0.7|
    assert m["balanced_accuracy"] == pytest.approx(0.7)  # equal classes: the mean recall is the accuracy
    assert [b["count"] for b in m["calibration"] if b["count"]] == [200]
    assert m["collapse"] is None
    piled = np.zeros((200, 10))
    piled[:, 3] = 1.0
    collapsed = classification_metrics(piled, labels)
    assert (
        "class 3 takes 100%" in collapsed["collapse"] and "9 of 10 classes are never predicted" in collapsed["collapse"]
    )
    assert collapsed["macro_f1"] < 0.05 and collapsed["balanced_accuracy"] == pytest.approx(0.1)


def test_compare_overlays_runs_and_highlights_config_differences(small_cifar, tmp_path, capsys):
    fast = ["--no-report", "--model", "seed", "--set", "model.depth=1", "--batch-size", "64", "--epochs", "2"]
    runs = []
    for lr in ("1e-3", "3e-3"):
        runs.append(tmp_path / f"lr{lr}")
        assert main(["train", "--data", str(small_cifar), "--out", str(runs[-1]), *fast, "--lr", lr]) == 0
    out = tmp_path / "cmp.html"
    assert main(["compare", *map(str, runs), "--out", str(out)]) == 0
    page = out.read_text()
    assert "lr1e-3" in page and "lr3e-3" in page and "http" not in page
    diff_rows = re.findall(r'<tr class="diff"><td>([^<]+)</td>', page)
    assert "train.lr" in diff_rows and "model.depth" not in diff_rows
    png = base64.b64decode(re.search(r'src="data:image/png;base64,([^"]+)"', page).group(1))
    assert Image.open(io.BytesIO(png)).format == "PNG"
    for summary in (json.loads((r / "summary.json").read_text()) for r in runs):
        assert f"{summary['test_acc']:.2%}" in page
    capsys.readouterr()
    assert main(["compare", str(runs[0]), str(tmp_path / "nowhere"), "--out", str(out)]) == 2
    assert "nowhere: run folder not found" in capsys.readouterr().err
    assert main(["compare", str(runs[0]), "--out", str(out)]) == 2
