"""``vitlab report``: every analysis of a run folder in ``RUN_DIR/report/``, gathered in one self-contained HTML page."""

from __future__ import annotations

import base64
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from jinja2 import Environment, PackageLoader, select_autoescape
from sklearn.manifold import TSNE

from vitlab.analysis import figures
from vitlab.analysis.explain import explain
from vitlab.analysis.metrics import classification_metrics, confusion, most_confused, per_class_scores
from vitlab.config import ImageSize
from vitlab.data.dataset import ImageData, Split, load_data
from vitlab.data.folder import decode_files, scan_split
from vitlab.data.source import image_source
from vitlab.errors import VitlabError
from vitlab.inference import Classifier
from vitlab.io import atomic_write_text, csv_text, read_jsonl, staged_folder


def stratified_sample(labels: torch.Tensor, count: int, seed: int = 0) -> torch.Tensor:
    """Up to ``count`` indices, the same number from each class where the classes allow."""
    if count >= len(labels):
        return torch.arange(len(labels))
    g = torch.Generator().manual_seed(seed)
    classes = labels.unique()
    per_class = max(1, count // len(classes))
    picks = [
        idx[torch.randperm(len(idx), generator=g)[:per_class]]
        for c in classes
        for idx in [(labels == c).nonzero().flatten()]
    ]
    return torch.cat(picks).sort().values


def load_extra_test(spec: str, classes: list[str], size: ImageSize) -> tuple[str, Split, list[str]]:
    """``NAME=PATH``: an ImageFolder split (``PATH/<class>/*`` or ``PATH/test/<class>/*``) of any image sizes."""
    name, sep, path = spec.partition("=")
    if not sep or not name or not path:
        raise VitlabError("expected NAME=PATH, e.g. photos=./my_photos", field="extra_tests", value=spec)
    root = Path(path)
    split_dir = root / "test" if (root / "test").is_dir() else root
    if not split_dir.is_dir():
        raise VitlabError(f"folder {root} not found", field="extra_tests", value=spec)
    files, labels, _ = scan_split(split_dir, classes)
    images, kept, skipped = decode_files(files, size, strict=False, desc=f"decoding {name}")
    if not kept:
        raise VitlabError(f"none of the {len(files)} images could be read", field="extra_tests", value=spec)
    return name, Split(images, torch.tensor(labels)[kept]), skipped


def _hwc(img: torch.Tensor) -> np.ndarray:
    return img.permute(1, 2, 0).numpy()


def _attention_rows(clf: Classifier, images, labels, preds, conf, max_classes: int = 10) -> list[dict]:
    """For each class: the most confident correct and the most confident wrong test image."""
    classes = clf.classes
    picks: list[tuple[int, str]] = []
    for c in range(min(len(classes), max_classes)):
        for correct, word in ((True, "right"), (False, "wrong")):
            sel = ((labels == c) & ((preds == labels) == correct)).nonzero().flatten()
            if len(sel):
                i = int(sel[conf[sel].argmax()])
                picks.append((i, f"{classes[c]}: {word}\npred {classes[preds[i]]} {conf[i]:.0%}"))
    if not picks:
        return []
    chosen = image_source(images).gather(torch.tensor([i for i, _ in picks]))
    _, heat = clf.attention(chosen)
    # The class-specific view: gradient-weighted rollout (Chefer et al., 2021) of the predicted class.
    _, grad = explain(clf.model, clf.transform(chosen.to(clf.device)), "grad-rollout")
    return [
        {
            "image": _hwc(chosen[k]),
            "last": heat["last"][k].numpy(),
            "rollout": heat["rollout"][k].numpy(),
            "grad": grad[k].numpy(),
            "title": t,
        }
        for k, (_, t) in enumerate(picks)
    ]


def build_report(
    run_dir: str | Path,
    *,
    data: str | None = None,
    extra_tests: list[str] = (),
    tsne_samples: int = 2000,
    train_sample: int = 5000,
    device: str = "auto",
    tta: str | None = None,
) -> Path:
    """Write ``RUN_DIR/report/`` (figures, CSVs, ``report.html``) and return the HTML file's path.

    ``tta``: test-time augmentation of every score (none, flip, full); None: the run's ``train.tta``.

    The files are written to a staging folder that replaces ``RUN_DIR/report/`` only when complete.
    """
    start = time.perf_counter()
    run_dir = Path(run_dir)
    clf, records, summary = _load_run(run_dir, device, tta)
    cfg, classes = clf.config, clf.classes

    # Built in a staging folder that replaces report/ only once complete: a failure leaves the previous report.
    with staged_folder(run_dir / "report") as out:
        ds = load_data(
            dataclasses.replace(cfg.data, source=data or cfg.data.source), cfg.model.img_size, cfg.train.seed
        )
        if ds.classes != classes:
            raise VitlabError(
                f"its classes {ds.classes[:5]}... differ from the checkpoint's {classes[:5]}...", field="data"
            )
        columns, test_logits, test_emb, skipped = _score_columns(clf, ds, extra_tests, train_sample)
        labels = ds.test.labels.numpy()
        preds = test_logits.argmax(1)
        conf = test_logits.softmax(1).gather(1, preds[:, None]).squeeze(1)
        cm = confusion(labels, preds.numpy(), len(classes))
        per_class = per_class_scores(labels, preds.numpy(), classes)
        pairs = most_confused(cm, classes)
        atomic_write_text(
            csv_text([["true \\ predicted", *classes], *([c, *row.tolist()] for c, row in zip(classes, cm))]),
            out / "confusion_matrix.csv",
        )
        figs = _figures(out, clf, ds.test, records, cm, preds, conf, test_emb, tsne_samples)
        quality = classification_metrics(test_logits.softmax(1).numpy(), labels, classes, preds.numpy())
        figs["reliability"] = figures.reliability(quality["calibration"], quality["ece"], out / "reliability.png")
        results = {
            "columns": columns,
            "per_class": per_class,
            "most_confused": pairs,
            "skipped": skipped,
            "test_metrics": quality,
        }
        atomic_write_text(json.dumps(results, indent=2) + "\n", out / "results.json")
        page = _html(
            run_dir, cfg, summary, columns, per_class, pairs, figs, skipped, time.perf_counter() - start, quality
        )
        atomic_write_text(page, out / "report.html")
    return run_dir / "report" / "report.html"


def _load_run(run_dir: Path, device: str, tta: str | None) -> tuple[Classifier, list[dict], dict]:
    """The run's best checkpoint as a classifier, its per-epoch records and its summary (empty when absent)."""
    if not run_dir.is_dir():
        raise VitlabError(f"{run_dir}: run folder not found")
    clf = Classifier.from_checkpoint(run_dir / "best.pt", device, tta=tta)
    metrics, summary = run_dir / "metrics.jsonl", run_dir / "summary.json"
    records = read_jsonl(metrics) if metrics.is_file() else []
    return clf, records, json.loads(summary.read_text()) if summary.is_file() else {}


def _scores(clf: Classifier, split: Split) -> tuple[dict, torch.Tensor, torch.Tensor]:
    """Loss and accuracy (with the classifier's test-time augmentation), logits and embeddings of a split."""
    logits, emb = clf.embed(split.images)
    if clf.tta != "none":  # the embeddings stay those of the image itself
        logits = clf.logits(split.images)
    res = {
        "loss": F.cross_entropy(logits, split.labels).item(),
        "accuracy": int((logits.argmax(1) == split.labels).sum()) / len(split),
        "n": len(split),
    }
    return res, logits, emb


def _score_columns(clf: Classifier, ds: ImageData, extra_tests: list[str], train_sample: int):
    """The results table's columns (train sample, validation, test, extra tests), the test logits and
    embeddings, and the files skipped."""
    train_idx = stratified_sample(ds.train.labels, train_sample)
    columns: dict[str, dict] = {}
    columns[f"train ({len(train_idx)}-image sample)" if len(train_idx) < len(ds.train) else "train"] = _scores(
        clf, Split(ds.train.images[train_idx], ds.train.labels[train_idx])
    )[0]
    if ds.val is not None:
        columns["validation"] = _scores(clf, ds.val)[0]
    columns["test"], test_logits, test_emb = _scores(clf, ds.test)
    skipped = list(ds.skipped)
    for spec in extra_tests:
        name, split, bad = load_extra_test(spec, clf.classes, clf.config.model.img_size)
        skipped += bad
        columns[name] = _scores(clf, split)[0]
    return columns, test_logits, test_emb, skipped


def _figures(
    out: Path,
    clf: Classifier,
    test: Split,
    records: list[dict],
    cm: np.ndarray,
    preds: torch.Tensor,
    conf: torch.Tensor,
    test_emb: torch.Tensor,
    tsne_samples: int,
) -> dict[str, Path]:
    classes = clf.classes
    figs: dict[str, Path] = {}
    if records:
        figs["curves"] = figures.curves(records, out / "curves.png")
    figs["confusion"] = figures.confusion_matrix(cm, classes, out / "confusion_matrix.png")
    pick = stratified_sample(test.labels, tsne_samples)
    emb = test_emb[pick].numpy()
    points = TSNE(
        n_components=2, init="pca", random_state=0, perplexity=min(30.0, max(2.0, (len(emb) - 1) / 3))
    ).fit_transform(emb)
    figs["tsne"] = figures.tsne(points, test.labels.numpy()[pick.numpy()], classes, out / "tsne.png")
    rows = _attention_rows(clf, test.images, test.labels, preds, conf)
    if rows:
        figs["attention"] = figures.attention_grid(rows, out / "attention.png")
    wrong = (preds != test.labels).nonzero().flatten()
    worst = wrong[conf[wrong].argsort(descending=True)[:24]]
    if len(worst):
        figs["misclassified"] = figures.image_grid(
            [_hwc(img) for img in image_source(test.images).gather(worst)],
            [f"true {classes[test.labels[i]]}\npred {classes[preds[i]]} {conf[i]:.0%}" for i in worst],
            out / "misclassified.png",
            "Most confidently wrong test images",
        )
    return figs


def _html(run_dir, cfg, summary, columns, per_class, pairs, figs, skipped, seconds, quality) -> str:
    """The page, rendered from templates/report.html (Jinja2, every value escaped) with the figures embedded."""
    names = list(columns)
    results = {
        "header": ["", *names],
        "rows": [
            ["Loss", *(f"{columns[n]['loss']:.3f}" for n in names)],
            ["Accuracy", *(f"{columns[n]['accuracy']:.2%}" for n in names)],
            ["Images", *(columns[n]["n"] for n in names)],
        ],
    }
    timing = [
        ["training time", f"{summary['train_seconds']:.0f} s" if summary else "unknown (no summary.json)"],
        ["epochs", f"{summary['epochs']:.2f}" if summary else "?"],
        ["training throughput", f"{summary['images_per_s']:.0f} images/s" if summary else "?"],
        ["parameters", f"{summary['params']:,}" if summary else "?"],
        ["device", summary.get("device", "?")],
        ["best epoch (validation)", summary.get("best_epoch", "?")],
    ]
    quality_rows = [["top-5 accuracy", f"{quality['top5']:.2%}"]] if "top5" in quality else []
    quality_rows += [
        ["macro-F1", f"{quality['macro_f1']:.4f}"],
        ["balanced accuracy", f"{quality['balanced_accuracy']:.2%}"],
        ["expected calibration error (15 bins)", f"{quality['ece']:.4f}"],
    ]
    env = Environment(loader=PackageLoader("vitlab.analysis", "templates"), autoescape=select_autoescape(["html"]))
    return env.get_template("report.html").render(
        run_name=run_dir.resolve().name,
        run_path=str(run_dir.resolve()),
        preset=cfg.model.preset,
        seconds=f"{seconds:.0f}",
        made=time.strftime("%Y-%m-%d %H:%M"),
        results=results,
        timing=timing,
        figs={k: {"name": p.name, "data": base64.b64encode(p.read_bytes()).decode()} for k, p in figs.items()},
        per_class=[
            [r["class"], f"{r['precision']:.3f}", f"{r['recall']:.3f}", f"{r['f1']:.3f}", r["support"]]
            for r in per_class
        ],
        pairs=[[p["true"], p["predicted"], p["count"], f"{p['share']:.1%}"] for p in pairs],
        quality=quality_rows,
        collapse=quality["collapse"],
        skipped=skipped,
        config=yaml.safe_dump(cfg.to_dict(), sort_keys=False),
    )
