"""Where a model's FLOPs go (stem vs encoder blocks vs head) and how much of the CPU's fp32 peak a training step
achieves.

    python benchmarks/flops.py air-s air-m hybrid seed --batch 128 --repeats 5

FLOPs are counted by ``torch.utils.flop_counter`` (matrix multiplications and convolutions; one multiply-add is
2 FLOPs), forward for one image and forward + backward for a training step. The achieved rate is the step's
counted FLOPs over its median wall time (vitlab's own step: micro-batches of 64 on a CPU, AdamW). The peak is
cores x FLOPs per cycle x the clock /proc/cpuinfo reports, with 64 fp32 FLOPs per cycle per core for AVX-512
(two 512-bit FMA pipes, as on AMD Zen 5) and 32 for AVX2: an upper bound, since clocks vary under load.
Run it alone on the machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from vitlab.config import image_hw
from vitlab.models import create_model
from vitlab.train.step import forward_backward, micro_batch_size


def cpu_peak_gflops() -> tuple[float, str]:
    info = open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""
    mhz = [float(line.split(":")[1]) for line in info.splitlines() if line.startswith("cpu MHz")]
    flags = next((line for line in info.splitlines() if line.startswith("flags")), "")
    per_cycle = 64 if "avx512f" in flags else 32 if "avx2" in flags else 8
    cores = torch.get_num_threads()
    if not mhz:
        return float("nan"), "unknown clock"
    ghz = statistics.median(mhz) / 1000
    return cores * per_cycle * ghz, f"{cores} cores x {per_cycle} FLOP/cycle x {ghz:.2f} GHz"


def flop_split(model: torch.nn.Module) -> dict[str, float]:
    """Forward MFLOPs of one 32-px image by part of the model."""
    model.eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.randn(1, 3, *image_hw(model.cfg.img_size)))
    counts = counter.get_flop_counts()
    total = counter.get_total_flops()

    def part(prefix: str) -> float:
        return sum(sum(v.values()) for k, v in counts.items() if k == f"VisionTransformer.{prefix}")

    blocks = sum(part(f"blocks.{i}") for i in range(len(model.blocks)))
    stem = part("patch_embed")
    return {"total": total / 1e6, "stem": stem / 1e6, "blocks": blocks / 1e6, "rest": (total - stem - blocks) / 1e6}


def train_rate(model: torch.nn.Module, batch: int, repeats: int) -> tuple[float, float]:
    """(training FLOPs per image, median seconds per step) of vitlab's training step at ``batch``."""
    model.train()
    x, y = torch.randn(batch, 3, *image_hw(model.cfg.img_size)), torch.randint(0, 10, (batch,))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    micro = micro_batch_size(0, torch.device("cpu"))
    with FlopCounterMode(display=False) as counter:
        forward_backward(model, x, y, micro_batch=micro)
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        forward_backward(model, x, y, micro_batch=micro)
        opt.step()
        times.append(time.perf_counter() - start)
    return counter.get_total_flops() / batch, statistics.median(times[1:])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    peak, how = cpu_peak_gflops()
    print(f"torch {torch.__version__}; fp32 peak {peak:.0f} GFLOP/s ({how})")
    print(
        f"{'model':<8} {'fwd MFLOP/img':>13} {'stem':>6} {'blocks':>6} {'rest':>5} | {'train MFLOP/img':>15} "
        f"{'img/s':>6} {'GFLOP/s':>7} {'of peak':>7}"
    )
    for name in args.models:
        model = create_model(name, num_classes=10)
        split = flop_split(model)
        per_image, seconds = train_rate(model, args.batch, args.repeats)
        rate = per_image * args.batch / seconds / 1e9
        print(
            f"{name:<8} {split['total']:>13.1f} {split['stem'] / split['total']:>6.0%} "
            f"{split['blocks'] / split['total']:>6.0%} {split['rest'] / split['total']:>5.0%} | "
            f"{per_image / 1e6:>15.1f} {args.batch / seconds:>6.0f} {rate:>7.1f} {rate / peak:>7.0%}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
