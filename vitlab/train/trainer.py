"""The training engine: epochs or a wall-clock budget, per-epoch validation, checkpoints, the final test number.

``Trainer`` holds one run: the model (wrapped by DDP under torchrun), optimizer, weight average, the loader that
owns the data's order and augmentation (vitlab/data/loader.py), the counters (``TrainState``) and the run
folder's checkpoints (``Checkpointer``). ``train_epoch`` reads like DeiT's ``train_one_epoch``: for each batch
the loader hands out, one ``train_step``, then the step's bookkeeping.
"""

from __future__ import annotations

import copy
import json
import math
import time
from pathlib import Path
from typing import Any

import torch
import yaml
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from vitlab.config import Config, validate
from vitlab.data.augment import BatchTransform
from vitlab.data.dataset import ImageData, Split, load_data
from vitlab.data.loader import TrainLoader
from vitlab.device import resolve_device
from vitlab.errors import Interrupted, VitlabError
from vitlab.io import append_jsonl, atomic_write_text
from vitlab.models.pretrained import Pretrained, apply_pretrained, load_pretrained
from vitlab.models.vit import VisionTransformer
from vitlab.train.checkpointer import Checkpointer
from vitlab.train.distributed import (
    World,
    all_sum,
    all_sum_tensor,
    destroy_process_group,
    gather_objects,
    init_process_group,
    main_first,
    world_from_env,
)
from vitlab.train.evaluate import evaluate
from vitlab.train.hooks import progress_bar, stop_on_signals
from vitlab.train.optim import build_optimizer, lr_factor
from vitlab.train.resize import progressive_hw, resize_batch
from vitlab.train.state import TrainState
from vitlab.train.step import (
    batch_mixer,
    class_weights,
    fastest,
    forward_backward,
    infer_chunk_size,
    micro_batch_size,
    probe_step,
)
from vitlab.train.tensorboard import TensorBoardLog

DEFAULT_EPOCHS = 10
# Training images whose 2x2 patches fit the whitening filters of a "whiten" stem.
WHITENING_SAMPLE = 5000


def max_epochs(cfg: Config) -> int:
    if cfg.train.epochs is not None:
        return cfg.train.epochs
    return DEFAULT_EPOCHS if cfg.train.time_budget is None else 10**9


def build_model(cfg: Config, fresh: bool, pretrained: Pretrained | None) -> VisionTransformer:
    """The run's model: initialised from ``train.init_weights`` when set (a resumed run takes every weight from
    its checkpoint instead), with the backbone frozen on request."""
    model = VisionTransformer(cfg.model)
    if fresh and cfg.train.init_weights:
        apply_pretrained(model, pretrained or load_pretrained(cfg.train.init_weights, heads=cfg.model.heads))
    if cfg.train.freeze_backbone:
        for name, param in model.named_parameters():
            param.requires_grad_(name.startswith("head."))
    if cfg.train.grad_checkpointing:
        model.set_grad_checkpointing()
    return model


def train_transform(cfg: Config, data: ImageData, device: torch.device) -> BatchTransform:
    d = cfg.data
    return BatchTransform(
        data.mean,
        data.std,
        cfg.model.img_size,
        crop_padding=d.crop_padding,
        crop_mode=d.crop_mode,
        hflip=d.hflip,
        auto_augment=d.auto_augment,
        random_erasing=d.random_erasing,
        device=device,
    )


def stepping_model(model: torch.nn.Module, world: World, device: torch.device, use_compile: bool) -> torch.nn.Module:
    """The model the training step calls: wrapped by DDP under torchrun, compiled on request; it shares its
    parameters with ``model``, which is what gets saved."""
    net = model
    if world.distributed:
        net = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
    # Static shapes, one graph a size: progressive resizing feeds a few image sizes, and with automatic dynamic
    # shapes the recompile for the second failed (torch 2.14: the position embedding's antialiased bicubic
    # resize has no symbolic-size backward, an internal assert).
    return torch.compile(net, dynamic=False) if use_compile else net


class Trainer:
    """One training run; ``meta(with_training_state=True)`` goes into ``last.pt`` so ``--resume`` continues."""

    def __init__(
        self,
        cfg: Config,
        out: Path,
        data: ImageData,
        device: torch.device,
        world: World | None = None,
        *,
        fresh: bool = True,
        pretrained: Pretrained | None = None,
    ):
        self.cfg, self.data, self.device, self.world = cfg, data, device, world or World()
        self.checkpoints = Checkpointer(out)
        t = cfg.train
        self.model = build_model(cfg, fresh, pretrained).to(device)
        self.train_model = stepping_model(self.model, self.world, device, t.compile)
        self.optimizer = build_optimizer(self.model, t)
        # fp16 needs loss scaling (its range is narrow); bf16 has fp32's range and does not.
        self.scaler = torch.amp.GradScaler(device.type) if t.precision == "fp16" else None
        self.class_weights = class_weights(t.class_weights, data.train.labels, data.classes, device)
        self.mixer = batch_mixer(t.mixup, t.cutmix, cfg.model.num_classes)
        self.ema = (
            AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(t.ema), use_buffers=True) if t.ema > 0 else None
        )
        # What is validated, tested and saved as best.pt: the weight average when there is one.
        self.eval_model = self.ema.module if self.ema is not None else self.model
        self.micro_batch = micro_batch_size(t.micro_batch, device)
        if cfg.model.stem == "whiten":  # whole batch-norm groups per micro-batch, so the groups stay the same
            self.micro_batch = -(-self.micro_batch // cfg.model.bn_group) * cfg.model.bn_group
        self.eval_batch = infer_chunk_size(t.eval_batch_size, device)
        self.eval_transform = BatchTransform(data.mean, data.std, cfg.model.img_size, device=device)
        self.loader = TrainLoader(
            data.train.images,
            data.train.labels,
            train_transform(cfg, data, device),
            batch_size=t.batch_size,
            device=device,
            seed=t.seed,
            aug_seed=self._aug_seed(),
            rank=self.world.rank,
            world_size=self.world.size,
            balanced=cfg.data.balanced,
            alternate_flips=cfg.data.hflip and cfg.data.flip_mode == "alternate",
            memory_share=cfg.data.memory_share,
        )
        if fresh and not t.init_weights and cfg.model.stem == "whiten":
            sample = self.loader.sample(WHITENING_SAMPLE, t.seed)
            self.model.patch_embed.fit_whitening(self.eval_transform(sample))
        self.state = TrainState()
        # Progressive resizing's current training image size (None while it is off); sides move in patch steps.
        self.train_hw: tuple[int, int] | None = None
        self.step_px = cfg.model.patch_size
        self.stop_signal: str | None = None
        self.tensorboard: TensorBoardLog | None = None  # opened by the caller on rank 0 when asked for

    @property
    def out(self) -> Path:
        return self.checkpoints.out

    @property
    def epoch(self) -> int:
        return self.loader.epoch

    def _aug_seed(self) -> int:
        return self.cfg.train.seed + 1 + 1_000_003 * self.world.rank

    def _rng_state(self) -> dict[str, Any]:
        state = {"torch": torch.get_rng_state(), "aug": self.loader.aug_gen.get_state()}
        if self.device.type == "cuda":
            state["cuda"] = torch.cuda.get_rng_state(self.device)
        return state

    def meta(self, with_training_state: bool) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "classes": self.data.classes,
            "mean": list(self.data.mean),
            "std": list(self.data.std),
            "epoch": self.epoch,
            **self.state.state_dict(),
        }
        if not with_training_state:
            return meta
        meta["optimizer"] = self.optimizer.state_dict()
        if self.scaler is not None:
            meta["grad_scaler"] = self.scaler.state_dict()
        if self.ema is not None:
            meta["ema"] = self.ema.state_dict()
        loader = self.loader.state_dict()
        position = loader["epoch_state"]
        meta["epoch_state"] = None if position is None else {**position, "partial": dict(self.state.epoch_stats)}
        # Every rank's random streams (collected by save_last under torchrun), the shared data order once.
        meta["rng"] = {"order": loader["order_rng"], **self._rng_state()}
        return meta

    def restore(self, ckpt: dict[str, Any]) -> None:
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        if self.scaler is not None and "grad_scaler" in ckpt:
            self.scaler.load_state_dict(ckpt["grad_scaler"])
        if self.ema is not None:
            self.ema.load_state_dict(ckpt["ema"])
        self.state.load_state_dict(ckpt)
        position = ckpt.get("epoch_state")
        self.loader.load_state_dict(
            {"epoch": ckpt["epoch"], "epoch_state": position, "order_rng": ckpt["rng"]["order"]}
        )
        if position is not None:
            self.state.epoch_stats = dict(position["partial"])
            self.state.epoch_stats.setdefault("step_loss", [])  # (a checkpoint written before they were kept)
        ranks = ckpt.get("rng_ranks") or [ckpt["rng"]]
        if len(ranks) != self.world.size:
            # Resumed with another number of processes: the data order continues exactly, each rank's
            # augmentation and dropout streams start afresh.
            print(
                f"vitlab: the run was saved by {len(ranks)} process(es) and continues on {self.world.size}; "
                "augmentation and dropout draw new random streams"
            )
            torch.manual_seed(self.cfg.train.seed + self.state.step + self.world.rank)
            self.loader.aug_gen.manual_seed(self._aug_seed() + self.state.step)
            return
        mine = ranks[self.world.rank]
        torch.set_rng_state(mine["torch"])
        if "cuda" in mine and self.device.type == "cuda":
            torch.cuda.set_rng_state(mine["cuda"], self.device)
        self.loader.aug_gen.set_state(mine["aug"])

    def progress(self, total_steps: int) -> float:
        """The share of training done: steps over planned steps, or the share of the time budget if larger."""
        t = self.cfg.train
        progress = self.state.step / total_steps
        if t.time_budget:
            progress = max(progress, self.state.train_seconds / t.time_budget)
        return progress

    def set_lr(self, progress: float) -> float:
        """The schedule's learning rate at ``progress``, set on every parameter group."""
        t = self.cfg.train
        lr = t.lr * lr_factor(t.schedule, progress, t.warmup)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def score(self, split: Split, tta: str = "none") -> dict[str, float]:
        """Accuracy and loss of the evaluated model (the weight average when there is one) on ``split``."""
        return evaluate(
            self.eval_model,
            split,
            self.eval_transform,
            self.eval_batch,
            self.device,
            tta,
            memory_format=self.cfg.train.memory_format,
        )

    def resized(self, x: torch.Tensor, progress: float) -> torch.Tensor:
        """The batch at ``train.resize_start``'s progressive size for ``progress`` (itself when that is off)."""
        t = self.cfg.train
        if t.resize_start >= 1.0:
            return x
        self.train_hw = progressive_hw(progress, tuple(x.shape[-2:]), t.resize_start, t.resize_until, self.step_px)
        return resize_batch(x, self.train_hw)

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One update on a batch: mixing, forward and backward in micro-batches, clipping, the optimizer step
        (through the gradient scaler under fp16, which skips steps that overflowed), the weight average.
        Returns (mean loss, number correct) as tensors."""
        t = self.cfg.train
        if self.mixer is not None:
            x, y = self.mixer(x, y)  # y becomes (B, K) class shares
        self.optimizer.zero_grad(set_to_none=True)
        loss, correct = forward_backward(
            self.train_model,
            x,
            y,
            micro_batch=self.micro_batch,
            label_smoothing=t.label_smoothing,
            precision=t.precision,
            scaler=self.scaler,
            class_weights=self.class_weights,
            memory_format=t.memory_format,
        )
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        if t.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), t.grad_clip)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        return loss, correct

    def train_epoch(self, total_steps: int) -> dict[str, Any] | None:
        """Finish the current epoch (or run a new one), cut short when the time budget runs out.

        Returns the epoch's statistics, or None if no step ran. Under torchrun every rank runs this on its own
        slice of each global batch; the statistics are summed over ranks, so all ranks return the same.
        """
        t, world = self.cfg.train, self.world
        if self.loader.order is None:
            self.state.start_epoch()
        self.model.train()
        bar = progress_bar(len(self.loader), self.loader.pos, self.epoch, world.is_main)
        last_save = self.state.train_seconds
        lr = self.optimizer.param_groups[0]["lr"]
        tick = time.perf_counter()  # waiting for data counts as training time
        for x, y, idx in self.loader:
            progress = self.progress(total_steps)
            lr = self.set_lr(progress)
            loss, correct = self.train_step(self.resized(x, progress), y)
            # One small all-reduce: every rank then sees the same loss, clock and stop request.
            sums = [loss.item() * len(idx), float(correct), float(len(idx)), time.perf_counter() - tick]
            *sums, stops = all_sum([*sums, float(self.stop_signal is not None)], world, self.device)
            self.record_step(*sums)
            bar.update()
            bar.set_postfix(self.postfix(lr))
            if stops > 0:
                bar.close()
                self.stop()
            if t.checkpoint_every > 0 and self.state.train_seconds - last_save >= t.checkpoint_every:
                self.save_last()
                last_save = self.state.train_seconds
            if t.time_budget and self.state.train_seconds >= t.time_budget:
                break
            tick = time.perf_counter()
        bar.close()
        return self.end_epoch(lr)

    def record_step(self, loss_sum: float, correct: float, seen: float, seconds: float) -> None:
        """Count a step's sums over all ranks (``seconds`` summed too: each rank's clock, averaged here)."""
        loss = loss_sum / seen
        if not math.isfinite(loss):
            t = self.cfg.train
            raise VitlabError(
                f"training loss became {loss} at step {self.state.step + 1} (epoch {self.epoch + 1}); "
                f"{self.out / 'last.pt'} keeps the last good state. Usual causes: a learning rate too high "
                f"(now {t.lr:g}, try train.lr={t.lr / 3:.2g}) or unstable mixed precision"
            )
        self.state.record_step(loss_sum, correct, seen, seconds / self.world.size)

    def postfix(self, lr: float) -> dict[str, str]:
        s = self.state.epoch_stats
        return {
            "loss": f"{s['loss_sum'] / s['seen']:.3f}",
            "acc": f"{s['correct'] / s['seen']:.3f}",
            "img_s": f"{s['seen'] / s['seconds']:.0f}",
            "lr": f"{lr:.2e}",
            **({"px": "x".join(map(str, self.train_hw))} if self.train_hw else {}),
        }

    def stop(self) -> None:
        """Save and stop after a signal to this or another rank."""
        self.stop_signal = self.stop_signal or "a signal to another rank"
        self.save_last()
        raise Interrupted(
            f"stopped by {self.stop_signal} after step {self.state.step}; {self.out / 'last.pt'} holds the run: "
            f"continue it with vitlab train --resume {self.out}"
        )

    def end_epoch(self, lr: float) -> dict[str, Any] | None:
        """Close the epoch in progress; its statistics (None if no step ran)."""
        s = self.state.epoch_stats
        if s["seen"] == 0:
            return None
        counts = all_sum_tensor(self.loader.end_epoch().to(self.device), self.world)
        return {
            **self.state.epoch_summary(),
            "lr": lr,
            "epoch_fraction": s["seen"] / self.loader.num_images,
            "images": s["seen"],
            "distinct_images": int((counts > 0).sum()),
            "step_loss": list(s["step_loss"]),
        }

    def save_last(self) -> None:
        """Refresh ``last.pt`` (``Checkpointer.save_last``). Under torchrun every rank calls this (its random
        streams are gathered into the file); rank 0 writes."""
        meta = self.meta(with_training_state=True)
        if self.world.distributed:
            meta["rng_ranks"] = gather_objects(self._rng_state(), self.world)
        if self.world.is_main:
            self.checkpoints.save_last(self.model, self.cfg, meta)

    def save_best(self) -> None:
        self.checkpoints.save_best(self.eval_model, self.cfg, self.meta(with_training_state=False))


def train(
    cfg: Config,
    out: Path,
    *,
    resume: bool = False,
    pretrained: Pretrained | None = None,
    overwrite: bool = False,
    checkpoint: dict[str, Any] | None = None,
) -> dict[str, Any] | None:
    """Train ``cfg`` into run folder ``out`` (or continue the run there); returns the summary.

    Launched by ``torchrun``, every rank calls this; rank 0 returns the summary, the others None.
    ``pretrained``: the weights ``cfg.train.init_weights`` names, when the caller has already read them.
    ``overwrite``: replace a run already in ``out`` (otherwise refused). ``checkpoint``: with ``resume``, the
    run's checkpoint when the caller has already read it (``Checkpointer(out).resume()``).
    """
    out = Path(out)
    cfg = copy.deepcopy(cfg)  # the run resolves num_classes and precision=auto in its own copy, saved with it
    world = world_from_env()
    ckpt = (checkpoint or Checkpointer(out).resume()) if resume else None
    validate(cfg)  # before an overwrite removes anything
    if cfg.train.tensorboard and world.is_main:
        TensorBoardLog.check_installed()
    if not resume and world.is_main:
        Checkpointer(out).prepare(overwrite)
    device = resolve_device(cfg.train.device)
    if world.distributed:
        device = init_process_group(world, device)
    try:
        return _train(cfg, out, ckpt, device, world, pretrained)
    finally:
        destroy_process_group()


def _train(
    cfg: Config,
    out: Path,
    ckpt: dict[str, Any] | None,
    device: torch.device,
    world: World,
    pretrained: Pretrained | None,
) -> dict[str, Any] | None:
    if cfg.train.threads > 0:
        torch.set_num_threads(cfg.train.threads)
    torch.manual_seed(cfg.train.seed)
    with main_first(world):  # rank 0 decodes into the cache, the others read it
        data = load_data(cfg.data, cfg.model.img_size, cfg.train.seed)
    if ckpt is not None and ckpt["classes"] != data.classes:
        raise VitlabError(
            f"the data's classes {data.classes} differ from the run's {ckpt['classes']}", field="resume", value=out
        )
    cfg.model.num_classes = len(data.classes)
    trainer = Trainer(cfg, out, data, device, world, fresh=ckpt is None, pretrained=pretrained)
    if world.distributed:
        torch.manual_seed(cfg.train.seed + world.rank)  # after the shared initialisation: own dropout masks
    if ckpt is not None:
        trainer.restore(ckpt)
        if world.is_main:
            trainer.checkpoints.tidy_after_crash(trainer.epoch)
    if cfg.train.tensorboard and world.is_main:
        trainer.tensorboard = TensorBoardLog(out)
    resolve_auto_choices(trainer)
    if world.is_main:
        atomic_write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False), out / "config.yaml")
    processes = f", {world.size} processes (DDP), global batch {cfg.train.batch_size}" if world.distributed else ""
    print(
        f"model: {cfg.model.preset}, {trainer.model.num_params / 1e6:.2f}M parameters, device {device}, "
        f"{torch.get_num_threads()} threads{processes}"
    )
    fit(trainer)
    return finish(trainer) if world.is_main else None


def fit(trainer: Trainer) -> None:
    """Epochs until ``train.epochs`` or the time budget is spent, each closed by ``end_of_epoch``."""
    cfg = trainer.cfg
    epochs, budget = max_epochs(cfg), cfg.train.time_budget
    total_steps = epochs * math.ceil(trainer.loader.num_images / cfg.train.batch_size)
    with stop_on_signals(trainer):
        while trainer.epoch < epochs and not (budget and trainer.state.train_seconds >= budget):
            stats = trainer.train_epoch(total_steps)
            if stats is None:
                break
            end_of_epoch(trainer, stats)
    if trainer.tensorboard is not None:
        trainer.tensorboard.close()
    if trainer.epoch == 0:
        raise VitlabError("no training step ran: the time budget was spent before the first step")


def probe_candidates(cfg: Config, model: torch.nn.Module) -> list[tuple[str, str]]:
    """The (precision, memory format) pairs ``train.precision`` and ``train.memory_format`` leave open, fp32 and
    contiguous first; channels_last only for a model with convolutions (the only layers it changes)."""
    t = cfg.train
    precisions = ["fp32", "bf16"] if t.precision == "auto" else [t.precision]
    convolutional = any(isinstance(m, torch.nn.Conv2d) for m in model.modules())
    if t.memory_format != "auto":
        layouts = [t.memory_format]
    else:
        layouts = ["contiguous", "channels_last"] if convolutional else ["contiguous"]
    return [(p, layout) for p in precisions for layout in layouts]


def resolve_auto_choices(trainer: Trainer) -> None:
    """Settle the config's run-time choices (``train.precision``, ``train.memory_format``, ``data.auto_augment``
    set to auto) before the first step; a resumed run's config holds them settled already."""
    t, d = trainer.cfg.train, trainer.cfg.data
    # Under a time budget, auto augmentation needs the step's time even when the format is fixed.
    timed = d.auto_augment == "auto" and t.time_budget is not None
    step_seconds = choose_step_format(trainer, timed) if "auto" in (t.precision, t.memory_format) or timed else None
    if d.auto_augment == "auto":
        choose_auto_augment(trainer, step_seconds)


def planned_epochs(cfg: Config, num_images: int, step_seconds: float | None, spent: float = 0.0) -> float:
    """The epochs a run will get: ``max_epochs``, or what is left of the time budget (``spent`` already used) at
    ``step_seconds`` a step of ``train.batch_size`` images, whichever is fewer."""
    t = cfg.train
    epochs = float(max_epochs(cfg))
    if t.time_budget is not None and step_seconds:
        epochs = min(epochs, (t.time_budget - spent) / step_seconds * t.batch_size / num_images)
    return epochs


def choose_auto_augment(trainer: Trainer, step_seconds: float | None) -> None:
    """Resolve ``data.auto_augment=auto`` from the epochs the run will get (``planned_epochs``) and hand the choice
    to the loader's transform, with ``data.auto_augment_erasing`` as the erasing probability when it chooses
    trivialaugment; both go into the saved config, so a resumed run keeps them. The probe times the step at full
    size without augmentation, so the threshold is in those epochs (progressive resizing adds more)."""
    d = trainer.cfg.data
    epochs = planned_epochs(trainer.cfg, trainer.loader.num_images, step_seconds, trainer.state.train_seconds)
    d.auto_augment = "trivialaugment" if epochs >= d.auto_augment_epochs else "none"
    if d.auto_augment != "none" and d.auto_augment_erasing is not None:
        d.random_erasing = d.auto_augment_erasing
    trainer.loader.transform.auto_augment = d.auto_augment
    trainer.loader.transform.random_erasing = d.random_erasing
    print(
        f"augmentation: auto chose {d.auto_augment}, random erasing {d.random_erasing:g} ({epochs:.1f} epochs "
        f"planned; trivialaugment from data.auto_augment_epochs={d.auto_augment_epochs:g})"
    )


def choose_step_format(trainer: Trainer, timed: bool = False) -> float | None:
    """Resolve ``train.precision=auto`` and ``train.memory_format=auto`` by timing the open candidates on one real
    batch; the probe's time counts as training time, and the choice goes into the saved config (so a resumed run
    keeps it). Under torchrun the ranks' timings are summed, so all ranks choose alike. Returns the chosen
    format's seconds a step, or None when nothing was timed (a single candidate and ``timed`` not asked for)."""
    t, world = trainer.cfg.train, trainer.world
    candidates = probe_candidates(trainer.cfg, trainer.model)
    if len(candidates) == 1 and not timed:
        t.precision, t.memory_format = candidates[0]
        return None
    x = trainer.eval_transform(trainer.loader.sample(max(1, t.batch_size // world.size), t.seed))
    y = torch.zeros(len(x), dtype=torch.long, device=trainer.device)  # the labels do not change the step's cost
    start = time.perf_counter()
    timings = probe_step(trainer.model, x, y, micro_batch=trainer.micro_batch, candidates=candidates)
    *summed, seconds = all_sum([*timings.values(), time.perf_counter() - start], world, trainer.device)
    timings = {c: s / world.size for c, s in zip(timings, summed)}
    t.precision, t.memory_format = fastest(timings)
    trainer.state.train_seconds += seconds / world.size
    taken = ", ".join(f"{p} {layout} {s:.3f} s" for (p, layout), s in timings.items() if math.isfinite(s))
    if not all(math.isfinite(s) for s in timings.values()):
        taken += ", not timed in bf16: no bf16 kernels here"
    print(
        f"step format: {'auto chose ' if len(candidates) > 1 else ''}{t.precision}, {t.memory_format} "
        f"(a training step took {taken}; probe {seconds / world.size:.1f} s, counted as training time)"
    )
    return timings[t.precision, t.memory_format]


def end_of_epoch(trainer: Trainer, stats: dict[str, Any]) -> None:
    """Validate, log the epoch to metrics.jsonl, then refresh best.pt and last.pt (rank 0 alone under torchrun)."""
    data, state = trainer.data, trainer.state
    if not trainer.world.is_main:
        trainer.save_last()  # a collective: gives rank 0 this rank's random streams
        return
    record: dict[str, Any] = {"epoch": trainer.epoch, "step": state.step, **stats}
    if data.val is not None:
        val = trainer.score(data.val)
        record.update(val_loss=val["loss"], val_acc=val["accuracy"])
    record["train_seconds"] = state.train_seconds
    if data.val is None or record["val_acc"] > state.best_val_acc:
        state.best_val_acc, state.best_epoch = record.get("val_acc", -1.0), trainer.epoch
        trainer.save_best()
    append_jsonl(trainer.out / "metrics.jsonl", record)
    if trainer.tensorboard is not None:
        trainer.tensorboard.log(record)
    trainer.save_last()
    val_text = f", val loss {record['val_loss']:.3f} acc {record['val_acc']:.2%}" if data.val is not None else ""
    print(
        f"epoch {trainer.epoch}: train loss {stats['train_loss']:.3f} acc {stats['train_acc']:.2%}{val_text}, "
        f"{stats['images_per_s']:.0f} img/s, {state.train_seconds:.0f}s trained"
    )


def finish(trainer: Trainer) -> dict[str, Any]:
    """Evaluate the best checkpoint on the test split and write ``summary.json``."""
    trainer.eval_model.load_state_dict(trainer.checkpoints.read_best()["model"])
    cfg, data, state = trainer.cfg, trainer.data, trainer.state

    def test(tta: str) -> dict[str, Any]:
        return trainer.score(data.test, tta)

    result = test(cfg.train.tta)
    summary = {
        "test_acc": result["accuracy"],
        "test_loss": result["loss"],
        "test_n": result["n"],
        "tta": cfg.train.tta,
        "val_acc": state.best_val_acc if data.val is not None else None,
        "best_epoch": state.best_epoch,
        "train_seconds": state.train_seconds,
        "epochs": state.images_seen / len(data.train),
        "steps": state.step,
        "params": trainer.model.num_params,
        "images_per_s": state.images_seen / state.train_seconds,
        "device": str(trainer.device),
        "processes": trainer.world.size,
        "classes": data.classes,
        "config": cfg.to_dict(),
    }
    tta_text = ""
    if cfg.train.tta != "none":  # the plain figure too, so the views' gain is on record
        plain = test("none")
        summary["test_acc_no_tta"] = plain["accuracy"]
        tta_text = f" with {cfg.train.tta} test-time augmentation ({plain['accuracy']:.2%} without)"
    atomic_write_text(json.dumps(summary, indent=2) + "\n", trainer.out / "summary.json")
    print(
        f"test: accuracy {result['accuracy']:.2%}{tta_text}, loss {result['loss']:.3f} on {result['n']} images "
        f"(best epoch {state.best_epoch}); run folder {trainer.out}"
    )
    return summary
