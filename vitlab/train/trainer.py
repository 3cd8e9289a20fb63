"""The training loop: epochs or a wall-clock budget, per-epoch validation, checkpoints, final test number."""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import torch
import yaml
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from vitlab.config import Config, validate
from vitlab.data.augment import BatchTransform, alternating_flips
from vitlab.data.dataset import ImageData, balanced_weights, epoch_order, iterate_batches, load_data, place_images
from vitlab.data.stream import FileImages
from vitlab.device import resolve_device
from vitlab.errors import Interrupted, VitlabError
from vitlab.io import append_jsonl, atomic_write_text, read_jsonl
from vitlab.models.pretrained import Pretrained, apply_pretrained, load_pretrained
from vitlab.models.vit import VisionTransformer
from vitlab.train.checkpoint import read_checkpoint, save_checkpoint
from vitlab.train.distributed import (
    World,
    all_sum,
    all_sum_tensor,
    destroy_process_group,
    gather_objects,
    init_process_group,
    main_first,
    rank_slice,
    world_from_env,
)
from vitlab.train.evaluate import evaluate
from vitlab.train.optim import build_optimizer, lr_factor
from vitlab.train.tensorboard import TensorBoardLog
from vitlab.train.step import (
    BF16_MARGIN,
    batch_mixer,
    class_weights,
    forward_backward,
    infer_chunk_size,
    micro_batch_size,
    probe_precision,
)

DEFAULT_EPOCHS = 10


# What a run writes into its folder: removed by ``overwrite=True`` before a new run starts there (with the
# report/ and tensorboard/ folders).
RUN_FILES = ("last.pt", "prev.pt", "best.pt", "metrics.jsonl", "summary.json", "config.yaml")


def prepare_run_dir(out: Path, overwrite: bool = False) -> None:
    """Create ``out`` and prove it writable before any data is read.

    A folder holding a run is refused unless ``overwrite``: then that run's own files (``RUN_FILES`` and its
    report) are removed, and anything else the user keeps there is left alone.
    """
    if (out / "last.pt").exists() and not overwrite:
        raise VitlabError(
            f"--out {out}: already holds a run (last.pt); continue it with --resume {out}, "
            "replace it with --overwrite, or choose another --out"
        )
    if overwrite and out.is_dir():
        for name in RUN_FILES:
            (out / name).unlink(missing_ok=True)
        for folder in ("report", "tensorboard"):
            shutil.rmtree(out / folder, ignore_errors=True)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as e:
        raise VitlabError(f"--out {out}: not writable ({e.strerror or e})") from None


# Training images whose 2x2 patches fit the whitening filters of a "whiten" stem.
WHITENING_SAMPLE = 5000


def sample_images(images: torch.Tensor | FileImages, n: int, seed: int) -> torch.Tensor:
    """``n`` images drawn at random (seeded) as a uint8 tensor, from memory or decoded from disk. Random, not the
    first n: an ImageFolder's training images are stored class by class."""
    idx = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:n].sort().values
    return images[idx].load() if isinstance(images, FileImages) else images[idx]


def max_epochs(cfg: Config) -> int:
    if cfg.train.epochs is not None:
        return cfg.train.epochs
    return DEFAULT_EPOCHS if cfg.train.time_budget is None else 10**9


class Run:
    """State of one training run; ``meta(with_training_state=True)`` goes into ``last.pt`` so ``--resume`` continues."""

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
        self.cfg, self.out, self.data, self.device, self.world = cfg, out, data, device, world or World()
        self.model = VisionTransformer(cfg.model)
        if fresh and cfg.train.init_weights:  # a resumed run takes every weight from its checkpoint instead
            apply_pretrained(self.model, pretrained or load_pretrained(cfg.train.init_weights, heads=cfg.model.heads))
        if cfg.train.freeze_backbone:
            for name, param in self.model.named_parameters():
                param.requires_grad_(name.startswith("head."))
        self.model.to(device)
        # The model the training step calls: wrapped by DDP under torchrun, compiled on request; it shares its
        # parameters with self.model, which is what gets saved.
        net: torch.nn.Module = self.model
        if self.world.distributed:
            net = DistributedDataParallel(self.model, device_ids=[device] if device.type == "cuda" else None)
        self.train_model = torch.compile(net) if cfg.train.compile else net
        self.optimizer = build_optimizer(self.model, cfg.train)
        # fp16 needs loss scaling (its range is narrow); bf16 has fp32's range and does not.
        self.scaler = torch.amp.GradScaler(device.type) if cfg.train.precision == "fp16" else None
        self.class_weights = class_weights(cfg.train.class_weights, data.train.labels, data.classes, device)
        if cfg.train.grad_checkpointing:
            self.model.set_grad_checkpointing()
        self.mixer = batch_mixer(cfg.train.mixup, cfg.train.cutmix, cfg.model.num_classes)
        self.ema = (
            AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(cfg.train.ema), use_buffers=True)
            if cfg.train.ema > 0
            else None
        )
        # What is validated, tested and saved as best.pt: the weight average when there is one.
        self.eval_model = self.ema.module if self.ema is not None else self.model
        self.micro_batch = micro_batch_size(cfg.train.micro_batch, device)
        if cfg.model.stem == "whiten":  # whole batch-norm groups per micro-batch, so the groups stay the same
            self.micro_batch = -(-self.micro_batch // cfg.model.bn_group) * cfg.model.bn_group
        self.eval_batch = infer_chunk_size(cfg.train.eval_batch_size, device)
        self.eval_transform = BatchTransform(data.mean, data.std, cfg.model.img_size, device=device)
        self.train_transform = BatchTransform(
            data.mean,
            data.std,
            cfg.model.img_size,
            crop_padding=cfg.data.crop_padding,
            crop_mode=cfg.data.crop_mode,
            hflip=cfg.data.hflip,
            auto_augment=cfg.data.auto_augment,
            random_erasing=cfg.data.random_erasing,
            device=device,
        )
        if fresh and not cfg.train.init_weights and cfg.model.stem == "whiten":
            sample = sample_images(data.train.images, WHITENING_SAMPLE, cfg.train.seed).to(device)
            self.model.patch_embed.fit_whitening(self.eval_transform(sample))
        # One generator orders the data (the same on every rank), one draws the augmentation (its own per rank):
        # seeded, saved and restored on resume.
        self.order_gen = torch.Generator().manual_seed(cfg.train.seed)
        self.aug_gen = torch.Generator(device=device).manual_seed(self._aug_seed())
        self.epoch = 0
        self.step = 0
        self.train_seconds = 0.0
        self.images_seen = 0
        self.best_val_acc = -1.0
        self.best_epoch = 0
        # Position inside the current epoch: its data order, batches done, and its running statistics.
        self.epoch_order: torch.Tensor | None = None
        self.epoch_pos = 0
        self.partial: dict[str, Any] = {}
        # How often each training image was used this epoch, summed over ranks at the epoch's end.
        self.epoch_counts: torch.Tensor | None = None
        self.stop_signal: str | None = None
        self.tensorboard: TensorBoardLog | None = None  # opened by the caller on rank 0 when asked for

    def _aug_seed(self) -> int:
        return self.cfg.train.seed + 1 + 1_000_003 * self.world.rank

    def _rng_state(self) -> dict[str, Any]:
        state = {"torch": torch.get_rng_state(), "aug": self.aug_gen.get_state()}
        if self.device.type == "cuda":
            state["cuda"] = torch.cuda.get_rng_state(self.device)
        return state

    def meta(self, with_training_state: bool) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "classes": self.data.classes,
            "mean": list(self.data.mean),
            "std": list(self.data.std),
            "epoch": self.epoch,
            "step": self.step,
            "train_seconds": self.train_seconds,
            "images_seen": self.images_seen,
            "best_val_acc": self.best_val_acc,
            "best_epoch": self.best_epoch,
        }
        if with_training_state:
            meta["optimizer"] = self.optimizer.state_dict()
            if self.scaler is not None:
                meta["grad_scaler"] = self.scaler.state_dict()
            if self.ema is not None:
                meta["ema"] = self.ema.state_dict()
            meta["epoch_state"] = (
                None
                if self.epoch_order is None
                else {
                    "order": self.epoch_order,
                    "pos": self.epoch_pos,
                    "partial": dict(self.partial),
                    "counts": self.epoch_counts,
                }
            )
            # Every rank's random streams (collected by the caller under torchrun), the shared data order once.
            meta["rng"] = {"order": self.order_gen.get_state(), **self._rng_state()}
        return meta

    def restore(self, ckpt: dict[str, Any]) -> None:
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        if self.scaler is not None and "grad_scaler" in ckpt:
            self.scaler.load_state_dict(ckpt["grad_scaler"])
        if self.ema is not None:
            self.ema.load_state_dict(ckpt["ema"])
        for key in ("epoch", "step", "train_seconds", "images_seen", "best_val_acc", "best_epoch"):
            setattr(self, key, ckpt[key])
        state = ckpt.get("epoch_state")
        if state is not None:
            self.epoch_order, self.epoch_pos, self.partial = state["order"], state["pos"], dict(state["partial"])
            self.epoch_counts = state.get("counts")
        self.order_gen.set_state(ckpt["rng"]["order"])
        ranks = ckpt.get("rng_ranks") or [ckpt["rng"]]
        if len(ranks) != self.world.size:
            # Resumed with another number of processes: the data order continues exactly, each rank's
            # augmentation and dropout streams start afresh.
            print(
                f"vitlab: the run was saved by {len(ranks)} process(es) and continues on {self.world.size}; "
                "augmentation and dropout draw new random streams"
            )
            torch.manual_seed(self.cfg.train.seed + self.step + self.world.rank)
            self.aug_gen.manual_seed(self._aug_seed() + self.step)
            return
        mine = ranks[self.world.rank]
        torch.set_rng_state(mine["torch"])
        if "cuda" in mine and self.device.type == "cuda":
            torch.cuda.set_rng_state(mine["cuda"], self.device)
        self.aug_gen.set_state(mine["aug"])

    def progress(self, elapsed: float, total_steps: int) -> float:
        """Share of training done: steps over planned steps, or the share of the time budget if larger."""
        p = self.step / total_steps
        if self.cfg.train.time_budget:
            p = max(p, elapsed / self.cfg.train.time_budget)
        return p

    def train_epoch(self, images: torch.Tensor, labels: torch.Tensor, total_steps: int) -> dict[str, float] | None:
        """Finish the current epoch (or run a new one), cut short when the time budget runs out.

        The epoch's data order and position in it are part of the run's state, so a run resumed from a
        checkpoint written mid-epoch replays exactly the batches an uninterrupted run would have seen.
        Returns the epoch's statistics, or None if no step ran. Under torchrun every rank runs this on its own
        slice of each global batch; the statistics are summed over ranks, so all ranks return the same.
        """
        t, budget, world = self.cfg.train, self.cfg.train.time_budget, self.world
        n = len(labels)
        if self.epoch_order is None:
            weights = balanced_weights(labels.cpu()) if self.cfg.data.balanced else None
            self.epoch_order = epoch_order(n, generator=self.order_gen, weights=weights)
            self.epoch_pos = 0
            self.partial = {"loss_sum": 0.0, "correct": 0, "seen": 0, "seconds": 0.0, "step_loss": []}
            self.epoch_counts = torch.zeros(n, dtype=torch.int32)
        batches = list(self.epoch_order.split(t.batch_size))
        if len(batches[-1]) < world.size:
            batches.pop()  # a last batch too small to give every rank an image
        self.model.train()
        p = self.partial
        p.setdefault("step_loss", [])  # (a checkpoint written before per-step losses were kept)
        bar = tqdm(
            total=len(batches),
            initial=self.epoch_pos,
            desc=f"epoch {self.epoch + 1}",
            unit="step",
            leave=False,
            disable=None if world.is_main else True,
        )
        last_save = self.train_seconds
        lr = self.optimizer.param_groups[0]["lr"]
        todo = [rank_slice(b, world) for b in batches[self.epoch_pos :]]  # this rank's share of each batch
        stream = iterate_batches(images, todo, self.device)
        for idx in todo:
            if budget and self.train_seconds >= budget:
                break
            step_start = time.perf_counter()  # waiting for data counts as training time
            lr = t.lr * lr_factor(t.schedule, self.progress(self.train_seconds, total_steps), t.warmup)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            self.epoch_counts.index_add_(0, idx, torch.ones(len(idx), dtype=torch.int32))
            flip = (
                alternating_flips(idx, self.epoch, self.cfg.train.seed, n)
                if self.cfg.data.flip_mode == "alternate"
                else None
            )
            x = self.train_transform(next(stream), self.aug_gen, flip)  # (B, C, S, S)
            y = labels[idx.to(labels.device, non_blocking=True)]
            if self.mixer is not None:
                x, y = self.mixer(x, y)  # y becomes (B, K) class shares
            self.optimizer.zero_grad(set_to_none=True)
            loss, batch_correct = forward_backward(
                self.train_model,
                x,
                y,
                micro_batch=self.micro_batch,
                label_smoothing=t.label_smoothing,
                precision=t.precision,
                scaler=self.scaler,
                class_weights=self.class_weights,
            )
            self.optimizer_step()
            if self.ema is not None:
                self.ema.update_parameters(self.model)
            # One small all-reduce: every rank then sees the same loss, clock and stop request.
            loss_sum, correct, seen, seconds, stops = all_sum(
                [
                    loss.item() * len(idx),
                    float(batch_correct),
                    float(len(idx)),
                    time.perf_counter() - step_start,
                    float(self.stop_signal is not None),
                ],
                world,
                self.device,
            )
            seconds /= world.size
            loss_value = loss_sum / seen
            if not math.isfinite(loss_value):
                raise VitlabError(
                    f"training loss became {loss_value} at step {self.step + 1} (epoch {self.epoch + 1}); "
                    f"{self.out / 'last.pt'} keeps the last good state. Usual causes: a learning rate too high "
                    f"(now {t.lr:g}, try --set train.lr={t.lr / 3:.2g}) or unstable mixed precision"
                )
            self.step += 1
            self.epoch_pos += 1
            self.train_seconds += seconds
            self.images_seen += int(seen)
            p["seconds"] += seconds
            p["seen"] += int(seen)
            p["loss_sum"] += loss_sum
            p["correct"] += int(correct)
            p["step_loss"].append(round(loss_value, 5))
            bar.update()
            bar.set_postfix(
                loss=f"{p['loss_sum'] / p['seen']:.3f}",
                acc=f"{p['correct'] / p['seen']:.3f}",
                img_s=f"{p['seen'] / p['seconds']:.0f}",
                lr=f"{lr:.2e}",
            )
            if stops > 0:
                self.stop_signal = self.stop_signal or "a signal to another rank"
                bar.close()
                self.save_last()
                raise Interrupted(
                    f"stopped by {self.stop_signal} after step {self.step}; {self.out / 'last.pt'} holds the run: "
                    f"continue it with vitlab train --resume {self.out}"
                )
            if t.checkpoint_every > 0 and self.train_seconds - last_save >= t.checkpoint_every:
                self.save_last()
                last_save = self.train_seconds
        bar.close()
        stream.close()  # stops DataLoader workers still decoding ahead
        if p["seen"] == 0:
            return None
        counts = all_sum_tensor(self.epoch_counts.to(self.device), world)
        self.epoch += 1
        self.epoch_order = None
        return {
            "train_loss": p["loss_sum"] / p["seen"],
            "train_acc": p["correct"] / p["seen"],
            "seconds": p["seconds"],
            "images_per_s": p["seen"] / p["seconds"],
            "lr": lr,
            "epoch_fraction": p["seen"] / n,
            "images": p["seen"],
            "distinct_images": int((counts > 0).sum()),
            "step_loss": list(p["step_loss"]),
        }

    def optimizer_step(self) -> None:
        """Clip and apply the accumulated gradient; under fp16 through the gradient scaler, which unscales it
        first and skips the step when it overflowed."""
        t = self.cfg.train
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        if t.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), t.grad_clip)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()

    def save_last(self) -> None:
        """Refresh ``last.pt``; the one it replaces stays as ``prev.pt`` until the new one is complete.

        Under torchrun every rank calls this (its random streams are gathered into the file); rank 0 writes.
        """
        meta = self.meta(with_training_state=True)
        if self.world.distributed:
            meta["rng_ranks"] = gather_objects(self._rng_state(), self.world)
        if not self.world.is_main:
            return
        last = self.out / "last.pt"
        if last.exists():
            os.replace(last, self.out / "prev.pt")
        save_checkpoint(last, self.model, self.cfg, meta)


def train(
    cfg: Config, out: Path, *, resume: bool = False, pretrained: Pretrained | None = None, overwrite: bool = False
) -> dict[str, Any] | None:
    """Train ``cfg`` into run folder ``out`` (or continue the run there); returns the summary.

    Launched by ``torchrun``, every rank calls this; rank 0 returns the summary, the others None.
    ``pretrained``: the weights ``cfg.train.init_weights`` names, when the caller has already read them.
    ``overwrite``: replace a run already in ``out`` (otherwise refused).
    """
    out = Path(out)
    world = world_from_env()
    ckpt = resume_checkpoint(out) if resume else None
    validate(cfg)  # before an overwrite removes anything
    if cfg.train.tensorboard and world.is_main:
        TensorBoardLog.check_installed()
    if not resume and world.is_main:
        prepare_run_dir(out, overwrite)
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
        raise VitlabError(f"--resume {out}: the data's classes {data.classes} differ from the run's {ckpt['classes']}")
    cfg.model.num_classes = len(data.classes)
    run = Run(cfg, out, data, device, world, fresh=ckpt is None, pretrained=pretrained)
    if world.distributed:
        torch.manual_seed(cfg.train.seed + world.rank)  # after the shared initialisation: own dropout masks
    if ckpt is not None:
        run.restore(ckpt)
        if world.is_main:
            _truncate_metrics(out / "metrics.jsonl", run.epoch)
            for stale in out.glob(".*.tmp"):  # half-written files of a process that was killed mid-save
                stale.unlink()
    if cfg.train.tensorboard and world.is_main:
        run.tensorboard = TensorBoardLog(out)
    if cfg.train.precision == "auto":
        choose_precision(run)
    if world.is_main:
        atomic_write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False), out / "config.yaml")
    processes = f", {world.size} processes (DDP), global batch {cfg.train.batch_size}" if world.distributed else ""
    print(
        f"model: {cfg.model.preset}, {run.model.num_params / 1e6:.2f}M parameters, device {device}, "
        f"{torch.get_num_threads()} threads{processes}"
    )

    images = place_images(data.train.images, device, cfg.data.memory_share)
    labels = data.train.labels.to(device)
    epochs = max_epochs(cfg)
    total_steps = epochs * math.ceil(len(labels) / cfg.train.batch_size)
    budget = cfg.train.time_budget
    with _stop_on_signals(run):
        while run.epoch < epochs and not (budget and run.train_seconds >= budget):
            stats = run.train_epoch(images, labels, total_steps)
            if stats is None:
                break
            end_of_epoch(run, stats)
    if run.tensorboard is not None:
        run.tensorboard.close()
    if run.epoch == 0:
        raise VitlabError("no training step ran: the time budget was spent before the first step")
    return finish(run) if world.is_main else None


def choose_precision(run: Run) -> None:
    """Resolve ``train.precision=auto`` by timing both on one real batch; the probe's time counts as training
    time, and the choice goes into the saved config (so a resumed run keeps it). Under torchrun the ranks'
    timings are summed, so all ranks choose alike."""
    t, n = run.cfg.train, max(1, run.cfg.train.batch_size // run.world.size)
    x = run.eval_transform(sample_images(run.data.train.images, n, run.cfg.train.seed).to(run.device))
    y = torch.zeros(len(x), dtype=torch.long, device=run.device)  # the labels do not change the step's cost
    start = time.perf_counter()
    _, timings = probe_precision(run.model, x, y, micro_batch=run.micro_batch)
    fp32, bf16, seconds = all_sum(
        [timings["fp32"], timings["bf16"], time.perf_counter() - start], run.world, run.device
    )
    t.precision = "bf16" if bf16 < BF16_MARGIN * fp32 else "fp32"
    run.train_seconds += seconds / run.world.size
    print(
        f"precision: auto chose {t.precision} (a training step took {fp32 / run.world.size:.3f} s in fp32, "
        f"{bf16 / run.world.size:.3f} s in bf16; probe {seconds / run.world.size:.1f} s, counted as training time)"
    )


def end_of_epoch(run: Run, stats: dict[str, Any]) -> None:
    """Validate, log the epoch to metrics.jsonl, then refresh best.pt and last.pt (rank 0 alone under torchrun)."""
    cfg, data, out = run.cfg, run.data, run.out
    if not run.world.is_main:
        run.save_last()  # a collective: gives rank 0 this rank's random streams
        return
    record: dict[str, Any] = {"epoch": run.epoch, "step": run.step, **stats}
    if data.val is not None:
        val = evaluate(run.eval_model, data.val, run.eval_transform, run.eval_batch, run.device)
        record.update(val_loss=val["loss"], val_acc=val["accuracy"])
    record["train_seconds"] = run.train_seconds
    improved = data.val is None or record["val_acc"] > run.best_val_acc
    if improved:
        run.best_val_acc, run.best_epoch = record.get("val_acc", -1.0), run.epoch
        save_checkpoint(out / "best.pt", run.eval_model, cfg, run.meta(with_training_state=False))
    append_jsonl(out / "metrics.jsonl", record)
    if run.tensorboard is not None:
        run.tensorboard.log(record)
    run.save_last()
    val_text = f", val loss {record['val_loss']:.3f} acc {record['val_acc']:.2%}" if data.val is not None else ""
    print(
        f"epoch {run.epoch}: train loss {stats['train_loss']:.3f} acc {stats['train_acc']:.2%}{val_text}, "
        f"{stats['images_per_s']:.0f} img/s, {run.train_seconds:.0f}s trained"
    )


def resume_checkpoint(out: Path) -> dict[str, Any]:
    """``last.pt``, or ``prev.pt`` when last.pt is missing or damaged."""
    try:
        return read_checkpoint(out / "last.pt")
    except VitlabError as e:
        if not (out / "prev.pt").is_file():
            raise VitlabError(f"--resume {out}: {e}") from None
        print(f"vitlab: {e}; resuming from the previous checkpoint {out / 'prev.pt'}")
        return read_checkpoint(out / "prev.pt")


def _truncate_metrics(path: Path, epochs_done: int) -> None:
    """Drop metrics lines of epochs the checkpoint does not include (written just before a crash), and a torn
    last line, rewriting the file whole."""
    if path.is_file():
        records = read_jsonl(path)
        keep = [r for r in records if isinstance(r.get("epoch"), int) and r["epoch"] <= epochs_done]
        text = "".join(json.dumps(r) + "\n" for r in keep)
        if text != path.read_text(errors="replace"):
            atomic_write_text(text, path)


@contextlib.contextmanager
def _stop_on_signals(run: Run) -> Iterator[None]:
    """SIGINT/SIGTERM ask the run to stop after the step in flight (and save); a second SIGINT stops at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        if run.stop_signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        run.stop_signal = signal.Signals(signum).name
        print(f"\nvitlab: {run.stop_signal} received, stopping after this step and saving last.pt", flush=True)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def finish(run: Run) -> dict[str, Any]:
    """Evaluate the best checkpoint on the test split and write ``summary.json``."""
    best = read_checkpoint(run.out / "best.pt")
    run.eval_model.load_state_dict(best["model"])
    cfg, data = run.cfg, run.data
    test = evaluate(run.eval_model, data.test, run.eval_transform, run.eval_batch, run.device, cfg.train.tta)
    summary = {
        "test_acc": test["accuracy"],
        "test_loss": test["loss"],
        "test_n": test["n"],
        "tta": cfg.train.tta,
        "val_acc": run.best_val_acc if data.val is not None else None,
        "best_epoch": run.best_epoch,
        "train_seconds": run.train_seconds,
        "epochs": run.images_seen / len(data.train),
        "steps": run.step,
        "params": run.model.num_params,
        "images_per_s": run.images_seen / run.train_seconds,
        "device": str(run.device),
        "processes": run.world.size,
        "classes": data.classes,
        "config": cfg.to_dict(),
    }
    tta_text = ""
    if cfg.train.tta != "none":  # the plain figure too, so the views' gain is on record
        plain = evaluate(run.eval_model, data.test, run.eval_transform, run.eval_batch, run.device)
        summary["test_acc_no_tta"] = plain["accuracy"]
        tta_text = f" with {cfg.train.tta} test-time augmentation ({plain['accuracy']:.2%} without)"
    atomic_write_text(json.dumps(summary, indent=2) + "\n", run.out / "summary.json")
    print(
        f"test: accuracy {test['accuracy']:.2%}{tta_text}, loss {test['loss']:.3f} on {test['n']} images "
        f"(best epoch {run.best_epoch}); run folder {run.out}"
    )
    return summary
