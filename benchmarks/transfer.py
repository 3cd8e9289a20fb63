"""Pre-train -> fine-tune on real data made here, against training the same model from scratch for the same time.

    python benchmarks/transfer.py --data ../shared/datasets/cifar10-jpeg --pretrain 300 --finetune 150

No pretrained weights can be downloaded on the project's machine, so the pre-training happens here too: the
``hybrid`` model is trained on CIFAR-10's six animal classes at 32 px, then fine-tuned (``vitlab finetune``) on
the four vehicle classes -- images it has never seen, labels it has never had -- at 40 px, so the position
embedding is resampled from a 4x4 to a 5x5 grid. The same model trained from scratch on the vehicles at 40 px
for the same fine-tuning time is the comparison. The class subsets are folders of symbolic links made under
--out, so nothing is copied.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ANIMALS = ["bird", "cat", "deer", "dog", "frog", "horse"]
VEHICLES = ["airplane", "automobile", "ship", "truck"]


def class_subset(data: Path, classes: list[str], dest: Path) -> Path:
    """An ImageFolder of ``classes`` only, whose class folders are links to the originals."""
    for split in ("train", "test"):
        (dest / split).mkdir(parents=True, exist_ok=True)
        for name in classes:
            link = dest / split / name
            if not link.exists():
                link.symlink_to((data / split / name).resolve(), target_is_directory=True)
    return dest


def vitlab(*args: str) -> dict:
    cmd = [sys.executable, "-m", "vitlab", *args, "--no-report"]
    print("$", " ".join(cmd), flush=True)
    start = time.perf_counter()
    subprocess.run(cmd, check=True)
    out = Path(args[args.index("--out") + 1])
    summary = json.loads((out / "summary.json").read_text())
    summary["wall"] = time.perf_counter() - start
    print(
        f"  test {summary['test_acc']:.2%}, {summary['epochs']:.2f} epochs, {summary['images_per_s']:.0f} img/s, "
        f"{summary['wall']:.0f} s wall",
        flush=True,
    )
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="CIFAR-10 as an ImageFolder (train/, test/)")
    parser.add_argument("--pretrain", type=float, default=300, help="seconds of pre-training on the animals")
    parser.add_argument("--finetune", type=float, default=150, help="seconds of fine-tuning, and of the scratch run")
    parser.add_argument("--img-size", type=int, default=40, help="fine-tuning resolution (pre-training is at 32)")
    parser.add_argument("--out", default="runs/transfer")
    parser.add_argument(
        "--finetune-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra --set for the fine-tuning run (e.g. train.optimizer=adamw)",
    )
    args = parser.parse_args()
    data, out = Path(args.data), Path(args.out)
    animals = class_subset(data, ANIMALS, out / "data-animals")
    vehicles = class_subset(data, VEHICLES, out / "data-vehicles")
    recipe = ["--config", "configs/cifar10-cpu-10min.yaml"]

    pre = vitlab(
        "train", *recipe, "--data", str(animals), "--out", str(out / "pretrain"), "--time-budget", str(args.pretrain)
    )
    sets = [x for kv in args.finetune_set for x in ("--set", kv)]
    ft = vitlab(
        "finetune",
        "--weights",
        str(out / "pretrain" / "best.pt"),
        "--data",
        str(vehicles),
        "--out",
        str(out / "finetune"),
        "--img-size",
        str(args.img_size),
        "--time-budget",
        str(args.finetune),
        *sets,
    )
    scratch = vitlab(
        "train",
        *recipe,
        "--data",
        str(vehicles),
        "--out",
        str(out / "scratch"),
        "--set",
        f"model.img_size={args.img_size}",
        "--time-budget",
        str(args.finetune),
    )
    print(f"\npre-training on {len(ANIMALS)} animal classes, {args.pretrain:.0f} s: test {pre['test_acc']:.2%}")
    print(f"vehicles at {args.img_size} px, {args.finetune:.0f} s of training each:")
    print(f"  fine-tuned from the animal model: {ft['test_acc']:.2%}  ({ft['epochs']:.2f} epochs)")
    print(f"  from scratch:                     {scratch['test_acc']:.2%}  ({scratch['epochs']:.2f} epochs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
