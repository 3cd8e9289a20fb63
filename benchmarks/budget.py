"""Train presets for given wall-clock budgets on this machine; print test accuracy side by side, and plot
time to accuracy.

    # one budget, median over seeds (the 10-minute preset's figure):
    python benchmarks/budget.py --budget 600 --data ../shared/datasets/cifar10-jpeg configs/cifar10-cpu-10min.yaml --seeds 0 1 2
    # time to accuracy: the same recipes at 2, 5, 10 and 20 minutes, as a table and a PNG:
    python benchmarks/budget.py --budget 120 300 600 1200 --data ../shared/datasets/cifar10-jpeg \\
        configs/cifar10-cpu-10min.yaml configs/cifar10-seed.yaml --plot benchmarks/time_to_accuracy.png

Each run is an ordinary ``vitlab train --config PRESET --time-budget SECONDS --seed S`` into its own run folder
under --out; a folder that already holds a finished run (summary.json) is reused, not retrained, so a long
series can be continued or extended. Run it alone on the machine: anything else on the cores slows the runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path


def run_one(preset: str, budget: float, seed: int, data: str, out: Path) -> dict:
    run = out / f"{Path(preset).stem}-{int(budget)}s-seed{seed}"
    if not (run / "summary.json").is_file():
        cmd = [
            sys.executable,
            "-m",
            "vitlab",
            "train",
            "--config",
            preset,
            "--data",
            data,
            "--out",
            str(run),
            "--time-budget",
            str(budget),
            "--seed",
            str(seed),
            "--no-report",
            "--overwrite",
        ]
        print("$", " ".join(cmd), flush=True)
        start = time.perf_counter()
        subprocess.run(cmd, check=True)
        print(f"{time.perf_counter() - start:.0f} s wall", flush=True)
    s = json.loads((run / "summary.json").read_text())
    return {
        "preset": preset,
        "budget": budget,
        "seed": seed,
        "test_acc": s["test_acc"],
        "test_acc_no_tta": s.get("test_acc_no_tta", s["test_acc"]),
        "val_acc": s.get("val_acc"),
        "epochs": s["epochs"],
        "images_per_s": s["images_per_s"],
        "run": str(run),
    }


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for preset in dict.fromkeys(r["preset"] for r in rows):
        mine = [r for r in rows if r["preset"] == preset]
        budgets = sorted({r["budget"] for r in mine})
        med = [100 * statistics.median(r["test_acc"] for r in mine if r["budget"] == b) for b in budgets]
        (line,) = ax.plot([b / 60 for b in budgets], med, marker="o", label=Path(preset).stem)
        ax.scatter(
            [r["budget"] / 60 for r in mine],
            [100 * r["test_acc"] for r in mine],
            s=12,
            alpha=0.5,
            color=line.get_color(),
        )
    ax.set_xscale("log")
    ax.minorticks_off()  # only the budgets themselves are labelled
    ticks = sorted({r["budget"] / 60 for r in rows})
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.set_xlabel("training budget (minutes on this CPU)")
    ax.set_ylabel("CIFAR-10 test accuracy (%)")
    ax.set_title("Time to accuracy (line: median over seeds; dots: runs)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("presets", nargs="+", help="YAML presets from configs/")
    parser.add_argument("--budget", type=float, nargs="+", required=True, help="seconds of training per run")
    parser.add_argument("--data", required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--out", default="runs/budget", help="parent folder of the run folders")
    parser.add_argument("--plot", help="also draw accuracy against budget into this PNG")
    parser.add_argument("--json", help="also write every run's figures to this JSON file")
    parser.add_argument(
        "--with",
        dest="earlier",
        nargs="+",
        default=[],
        metavar="JSON",
        help="also table and plot the runs of earlier --json files (e.g. other presets or budgets)",
    )
    args = parser.parse_args()
    rows = [run_one(p, b, s, args.data, Path(args.out)) for p in args.presets for b in args.budget for s in args.seeds]
    mine = {r["run"] for r in rows}
    for earlier in args.earlier:
        rows += [r for r in json.loads(Path(earlier).read_text()) if r["run"] not in mine]
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    print("\ntest accuracy (TTA as the preset sets it; without TTA in brackets), median over the seeds run")
    for preset, budget in dict.fromkeys((r["preset"], r["budget"]) for r in rows):
        group = [r for r in rows if r["preset"] == preset and r["budget"] == budget]
        runs = ", ".join(f"{r['test_acc']:.2%} ({r['test_acc_no_tta']:.2%}, {r['epochs']:.1f} ep)" for r in group)
        print(
            f"{preset:<36} {budget:>6.0f} s  median {statistics.median(r['test_acc'] for r in group):.2%}  runs: {runs}"
        )
    if args.plot:
        plot(rows, Path(args.plot))
        print(f"plot: {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
