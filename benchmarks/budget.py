"""Train presets for the same wall-clock budget on this machine and print their test accuracy side by side.

    python benchmarks/budget.py --budget 600 --data ../shared/datasets/cifar10-jpeg \
        configs/cifar10-cpu-10min.yaml configs/cifar10-seed.yaml --seeds 0 1

Each run is an ordinary ``vitlab train --config PRESET --time-budget SECONDS`` into its own run folder.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("presets", nargs="+", help="YAML presets from configs/")
    parser.add_argument("--budget", type=float, required=True, help="seconds of training per run")
    parser.add_argument("--data", required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--out", default="runs/budget", help="parent folder of the run folders")
    args = parser.parse_args()
    rows = []
    for preset in args.presets:
        accs = []
        for seed in args.seeds:
            run = Path(args.out) / f"{Path(preset).stem}-{int(args.budget)}s-seed{seed}"
            cmd = [sys.executable, "-m", "vitlab", "train", "--config", preset, "--data", args.data, "--out", str(run),
                   "--time-budget", str(args.budget), "--seed", str(seed), "--no-report"]
            print("$", " ".join(cmd), flush=True)
            start = time.perf_counter()
            subprocess.run(cmd, check=True)
            summary = json.loads((run / "summary.json").read_text())
            accs.append(summary["test_acc"])
            print(f"{preset} seed {seed}: test {summary['test_acc']:.2%}, {summary['epochs']:.2f} epochs, "
                  f"{summary['images_per_s']:.0f} img/s, {time.perf_counter() - start:.0f} s wall", flush=True)
        rows.append((preset, accs))
    print(f"\nbudget {args.budget:.0f} s of training per run; test accuracy (median over seeds {args.seeds})")
    for preset, accs in rows:
        print(f"{preset:<40} {statistics.median(accs):.2%}   runs: {', '.join(f'{a:.2%}' for a in accs)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
