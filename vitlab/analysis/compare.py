"""``vitlab compare``: several run folders in one page: results, overlaid curves, configs side by side."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import yaml
from jinja2 import Environment, PackageLoader, select_autoescape

from vitlab.analysis import figures
from vitlab.errors import VitlabError
from vitlab.io import atomic_write_text, read_jsonl


def load_run(path: Path) -> dict[str, Any]:
    """A run folder's name, summary, per-epoch records and resolved config; one line naming what is missing."""
    if not path.is_dir():
        raise VitlabError(f"{path}: run folder not found")
    if not (path / "metrics.jsonl").is_file():
        raise VitlabError(f"{path}: no metrics.jsonl (expected a folder written by vitlab train)")
    summary_file, config_file = path / "summary.json", path / "config.yaml"
    try:
        summary = json.loads(summary_file.read_text()) if summary_file.is_file() else {}
        config = yaml.safe_load(config_file.read_text()) if config_file.is_file() else summary.get("config", {})
    except (json.JSONDecodeError, yaml.YAMLError) as e:
        raise VitlabError(f"{path}: unreadable summary.json or config.yaml ({type(e).__name__})") from None
    return {
        "path": path,
        "name": path.resolve().name,
        "summary": summary,
        "records": read_jsonl(path / "metrics.jsonl"),
        "config": config if isinstance(config, dict) else {},
    }


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def config_rows(configs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per setting found in any config (dotted key, one value per run), the differing ones first."""
    flat = [_flatten(c) for c in configs]
    keys = sorted({k for f in flat for k in f})
    rows = [
        {
            "key": k,
            "cells": [json.dumps(f[k]) if k in f else "—" for f in flat],
            "differs": len({json.dumps(f.get(k)) for f in flat}) > 1,
        }
        for k in keys
    ]
    return sorted(rows, key=lambda r: not r["differs"])


def _unique_names(runs: list[dict[str, Any]]) -> None:
    """Folder names, with their parent where two runs share one."""
    names = [r["name"] for r in runs]
    for r in runs:
        if names.count(r["name"]) > 1:
            r["name"] = f"{r['path'].resolve().parent.name}/{r['name']}"


def _result_cells(run: dict[str, Any]) -> dict[str, str]:
    s = run["summary"]
    best_val = max((r["val_acc"] for r in run["records"] if "val_acc" in r), default=None)
    return {
        "name": run["name"],
        "path": str(run["path"]),
        "test_acc": f"{s['test_acc']:.2%}" if "test_acc" in s else "—",
        "val_acc": f"{best_val:.2%}" if best_val is not None else "—",
        "train_seconds": f"{s['train_seconds']:.0f} s" if "train_seconds" in s else "—",
        "epochs": f"{s['epochs']:.2f}" if "epochs" in s else str(len(run["records"])),
        "images_per_s": f"{s['images_per_s']:.0f}" if "images_per_s" in s else "—",
        "params": f"{s['params']:,}" if "params" in s else "—",
    }


def compare_runs(run_dirs: list[str | Path], out: str | Path) -> Path:
    """Write one self-contained HTML page comparing the runs; returns its path."""
    if len(run_dirs) < 2:
        raise VitlabError("vitlab compare: give at least two run folders")
    runs = [load_run(Path(d)) for d in run_dirs]
    _unique_names(runs)
    out = Path(out)
    if out.is_dir():
        raise VitlabError("is a folder; expected an HTML file name", field="out", value=out)
    png = out.with_name(f".{out.name}.curves.png")
    try:
        figures.compare_curves([(r["name"], r["records"]) for r in runs], png)
        curves = base64.b64encode(png.read_bytes()).decode()
    finally:
        png.unlink(missing_ok=True)
    rows = config_rows([r["config"] for r in runs])
    env = Environment(loader=PackageLoader("vitlab.analysis", "templates"), autoescape=select_autoescape(["html"]))
    page = env.get_template("compare.html").render(
        runs=[_result_cells(r) for r in runs],
        curves=curves,
        made=time.strftime("%Y-%m-%d %H:%M"),
        config_rows=rows,
        differing=[r for r in rows if r["differs"]],
    )
    atomic_write_text(page, out)
    return out
