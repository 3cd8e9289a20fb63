"""Throughput of vitlab against timm's VisionTransformer of the same size, in one process, on the same inputs.

Each figure is the median of ``repeats`` timed runs after warm-up; the models alternate within every repeat so
that drift in the machine's speed (other load, thermal state) hits both alike.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from vitlab.config import ModelConfig, image_hw
from vitlab.data.augment import BatchTransform
from vitlab.errors import VitlabError
from vitlab.models import create_model, preset_config
from vitlab.train.step import chunked_forward, forward_backward, infer_chunk_size, micro_batch_size


@dataclass
class Case:
    model: str
    batch_size: int
    dropout: str  # "preset" (the model's own rates) or "zero"


def timm_twin(cfg: ModelConfig) -> nn.Module:
    """timm's VisionTransformer with ``cfg``'s dimensions and dropout at every site vitlab has one."""
    try:
        from timm.models.vision_transformer import VisionTransformer
    except ImportError:
        raise VitlabError("vitlab bench compares against timm: install it with pip install timm") from None
    d = cfg.dropout
    return VisionTransformer(
        img_size=cfg.img_size,
        patch_size=cfg.patch_size,
        in_chans=cfg.in_chans,
        num_classes=cfg.num_classes,
        embed_dim=cfg.dim,
        depth=cfg.depth,
        num_heads=cfg.heads,
        mlp_ratio=cfg.mlp_dim / cfg.dim,
        qkv_bias=cfg.qkv_bias,
        drop_rate=d,
        pos_drop_rate=d,
        proj_drop_rate=d,
        attn_drop_rate=d,
        global_pool="token",
        class_token=True,
    )


def _train_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, micro_batch: int = 0) -> Callable[[], None]:
    """One AdamW step on the whole batch; with ``micro_batch`` through vitlab's micro-batched step."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, foreach=True)
    model.train()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        if micro_batch:
            forward_backward(model, x, y, micro_batch=micro_batch)
        else:
            F.cross_entropy(model(x), y).backward()
        opt.step()

    return step


def _infer_step(model: nn.Module, x: torch.Tensor, chunk: int = 0) -> Callable[[], None]:
    model.eval()

    def step() -> None:
        with torch.inference_mode():
            chunked_forward(model, x, chunk) if chunk else model(x)

    return step


def _time(fn: Callable[[], None], steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    return time.perf_counter() - start


def compare(case: Case, repeats: int, steps: int = 1, warmup: int = 2) -> dict:
    """Median images/s of training steps and inference on one case, for three contenders:

    ``vitlab`` (vitlab's model through its training step and inference path: micro-batches on the CPU),
    ``vitlab_plain`` (vitlab's model called on the whole batch, as timm is) and ``timm``.
    """
    cfg = preset_config(case.model)
    if case.dropout == "zero":
        cfg.dropout = 0.0
    # The seed's attention has no output projection; timm's always has one. Compare like with like.
    cfg.attn_proj = True
    torch.manual_seed(0)
    x = torch.randn(case.batch_size, 3, *image_hw(cfg.img_size))
    y = torch.randint(0, cfg.num_classes, (case.batch_size,))
    fields = {
        k: getattr(cfg, k)
        for k in ("img_size", "patch_size", "dim", "depth", "heads", "mlp_dim", "dropout", "attn_proj")
    }
    ours = create_model(case.model, num_classes=cfg.num_classes, **fields)
    models = {"vitlab": ours, "vitlab_plain": ours, "timm": timm_twin(cfg)}
    result: dict = {
        "case": case.__dict__,
        "params": {k: sum(p.numel() for p in m.parameters()) for k, m in models.items()},
    }
    cpu = torch.device("cpu")
    chunks = {"train": micro_batch_size(0, cpu), "infer": infer_chunk_size(0, cpu)}
    for mode in ("train", "infer"):
        make = _train_step if mode == "train" else _infer_step
        args = {
            "vitlab": (x, y, chunks["train"]) if mode == "train" else (x, chunks["infer"]),
            "vitlab_plain": (x, y) if mode == "train" else (x,),
            "timm": (x, y) if mode == "train" else (x,),
        }
        fns = {k: make(m, *args[k]) for k, m in models.items()}
        for fn in fns.values():
            _time(fn, warmup)
        times: dict[str, list[float]] = {k: [] for k in fns}
        for _ in range(repeats):
            for k, fn in fns.items():
                times[k].append(_time(fn, steps))
        for k, ts in times.items():
            result[f"{mode}_{k}"] = case.batch_size * steps / statistics.median(ts)
        result[f"{mode}_ratio"] = result[f"{mode}_vitlab"] / result[f"{mode}_timm"]
    return result


def data_pipeline(batch_size: int = 512, img_size: int = 32, repeats: int = 5, steps: int = 20) -> float:
    """Augmented images/s of the batched uint8 pipeline alone (index, crop, flip, normalise)."""
    images = torch.randint(0, 256, (50_000, 3, img_size, img_size), dtype=torch.uint8)
    transform = BatchTransform((0.5,) * 3, (0.25,) * 3, img_size, crop_padding=4, hflip=True)
    g = torch.Generator().manual_seed(0)

    def step() -> None:
        idx = torch.randint(0, len(images), (batch_size,), generator=g)
        transform(images[idx], g)

    _time(step, 3)
    return statistics.median(batch_size * steps / _time(step, steps) for _ in range(repeats))
