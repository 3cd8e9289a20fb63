"""``vitlab bench``: training and inference images/s of vitlab's models against timm's VisionTransformer of the
same size, and the data pipeline's images/s."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from vitlab.errors import VitlabError
from vitlab.models.presets import preset_config

NAME = "bench"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(NAME, help="train and inference images/s against timm's VisionTransformer, same size")
    p.add_argument(
        "--cases",
        default="seed:512,seed:128,vit-s/4:128",
        help="comma-separated MODEL:BATCH list (default: %(default)s)",
    )
    p.add_argument(
        "--dropout",
        choices=("preset", "zero", "both"),
        default="both",
        help="the preset's dropout rates, every rate at 0, or both (default)",
    )
    p.add_argument("--repeats", type=int, default=5, help="timed repeats; the median is reported")
    p.add_argument("--steps", type=int, default=1, help="steps per timed repeat")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    p.add_argument("--json", help="also write the results to this JSON file")


def run(args: argparse.Namespace) -> int:
    import platform

    import torch

    from vitlab.bench import Case, compare, data_pipeline
    from vitlab.io import atomic_write_text

    if args.repeats < 1 or args.steps < 1:
        raise VitlabError("--repeats and --steps: expected positive integers")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    cases = []
    for item in args.cases.split(","):
        model, _, batch = item.strip().partition(":")
        if not batch.isdigit() or int(batch) <= 0:
            raise VitlabError(f"--cases {item}: expected MODEL:BATCH, e.g. seed:512")
        modes = ("preset", "zero") if args.dropout == "both" else (args.dropout,)
        if preset_config(model).dropout == 0.0:
            modes = modes[:1]  # the preset has no dropout: "zero" would measure the same model again
        cases += [Case(model, int(batch), mode) for mode in modes]
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}, "
        f"median of {args.repeats} repeats x {args.steps} step(s), fp32, images/s"
    )
    header = (
        f"{'model':<10} {'batch':>5} {'dropout':>7} | {'train vitlab':>12} {'plain':>7} {'timm':>7} {'ratio':>6} "
        f"| {'infer vitlab':>12} {'plain':>7} {'timm':>7} {'ratio':>6}"
    )
    print(header)
    print("-" * len(header))
    results = []
    for case in cases:
        r = compare(case, args.repeats, args.steps)
        results.append(r)
        print(
            f"{case.model:<10} {case.batch_size:>5} {case.dropout:>7} | {r['train_vitlab']:>12.1f} "
            f"{r['train_vitlab_plain']:>7.1f} {r['train_timm']:>7.1f} {r['train_ratio']:>5.2f}x | "
            f"{r['infer_vitlab']:>12.1f} {r['infer_vitlab_plain']:>7.1f} {r['infer_timm']:>7.1f} "
            f"{r['infer_ratio']:>5.2f}x",
            flush=True,
        )
    print(
        "vitlab: its training step and inference path (micro-batches of 64 / chunks of 32 on a CPU); plain: "
        "vitlab's model called on the whole batch like timm; ratio: vitlab / timm"
    )
    pipeline = data_pipeline()
    print(f"data pipeline (index + crop + flip + normalise, batch 512): {pipeline:.0f} images/s")
    if args.json:
        atomic_write_text(json.dumps({"cases": results, "data_pipeline": pipeline}, indent=2), Path(args.json))
    return 0
