"""The training loop: epochs or a wall-clock budget, per-epoch validation, checkpoints, final test number."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import torch
import yaml
from tqdm import tqdm

from vitlab.config import Config, validate
from vitlab.data.augment import BatchTransform
from vitlab.data.dataset import ImageData, balanced_weights, batch_indices, load_data
from vitlab.errors import VitlabError
from vitlab.io import atomic_write_text
from vitlab.models.vit import VisionTransformer
from vitlab.train.checkpoint import read_checkpoint, save_checkpoint
from vitlab.train.evaluate import evaluate
from vitlab.train.optim import build_optimizer, lr_factor
from vitlab.train.step import forward_backward, infer_chunk_size, micro_batch_size

DEFAULT_EPOCHS = 10


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise VitlabError(f"train.device: {name} requested but no CUDA GPU is available (use cpu or auto)")
    try:
        return torch.device(name)
    except RuntimeError:
        raise VitlabError(f"train.device: expected auto, cpu, cuda or cuda:N, got {name!r}") from None


def prepare_run_dir(out: Path) -> None:
    """Create ``out`` and prove it writable before any data is read; refuse to overwrite a run."""
    if (out / "last.pt").exists():
        raise VitlabError(f"--out {out}: already holds a run (last.pt); continue it with --resume {out} or choose another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as e:
        raise VitlabError(f"--out {out}: not writable ({e.strerror or e})") from None


def max_epochs(cfg: Config) -> int:
    if cfg.train.epochs is not None:
        return cfg.train.epochs
    return DEFAULT_EPOCHS if cfg.train.time_budget is None else 10**9


class Run:
    """State of one training run; everything in ``state_dict`` goes into ``last.pt`` so ``--resume`` continues."""

    def __init__(self, cfg: Config, out: Path, data: ImageData, device: torch.device):
        self.cfg, self.out, self.data, self.device = cfg, out, data, device
        self.model = VisionTransformer(cfg.model).to(device)
        self.optimizer = build_optimizer(self.model, cfg.train)
        self.micro_batch = micro_batch_size(cfg.train.micro_batch, device)
        self.eval_batch = infer_chunk_size(cfg.train.eval_batch_size, device)
        self.eval_transform = BatchTransform(data.mean, data.std, cfg.model.img_size, device=device)
        self.train_transform = BatchTransform(
            data.mean, data.std, cfg.model.img_size,
            crop_padding=cfg.data.crop_padding, hflip=cfg.data.hflip, device=device,
        )
        # One generator orders the data, one draws the augmentation: seeded, saved and restored on resume.
        self.order_gen = torch.Generator().manual_seed(cfg.train.seed)
        self.aug_gen = torch.Generator(device=device).manual_seed(cfg.train.seed + 1)
        self.epoch = 0
        self.step = 0
        self.train_seconds = 0.0
        self.images_seen = 0
        self.best_val_acc = -1.0
        self.best_epoch = 0

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
            meta["rng"] = {
                "torch": torch.get_rng_state(),
                "order": self.order_gen.get_state(),
                "aug": self.aug_gen.get_state(),
            }
        return meta

    def restore(self, ckpt: dict[str, Any]) -> None:
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        for key in ("epoch", "step", "train_seconds", "images_seen", "best_val_acc", "best_epoch"):
            setattr(self, key, ckpt[key])
        torch.set_rng_state(ckpt["rng"]["torch"])
        self.order_gen.set_state(ckpt["rng"]["order"])
        self.aug_gen.set_state(ckpt["rng"]["aug"])

    def progress(self, elapsed: float, total_steps: int) -> float:
        p = self.step / total_steps
        if self.cfg.train.time_budget:
            p = max(p, elapsed / self.cfg.train.time_budget)
        return p

    def train_epoch(self, images: torch.Tensor, labels: torch.Tensor, total_steps: int) -> dict[str, float] | None:
        """One pass over the training data, cut short when the time budget runs out; None if no step ran."""
        t, budget = self.cfg.train, self.cfg.train.time_budget
        weights = balanced_weights(labels.cpu()) if self.cfg.data.balanced else None
        n = len(labels)
        steps = math.ceil(n / t.batch_size)
        self.model.train()
        loss_sum, correct, seen = 0.0, 0, 0
        start = time.perf_counter()
        bar = tqdm(total=steps, desc=f"epoch {self.epoch + 1}", unit="step", leave=False, disable=None)
        for idx in batch_indices(n, t.batch_size, generator=self.order_gen, weights=weights):
            elapsed = self.train_seconds + time.perf_counter() - start
            if budget and elapsed >= budget:
                break
            lr = t.lr * lr_factor(t.schedule, self.progress(elapsed, total_steps), t.warmup)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            idx = idx.to(self.device, non_blocking=True)
            x = self.train_transform(images[idx], self.aug_gen)  # (B, C, S, S)
            self.optimizer.zero_grad(set_to_none=True)
            loss, batch_correct = forward_backward(
                self.model, x, labels[idx], micro_batch=self.micro_batch, label_smoothing=t.label_smoothing
            )
            if t.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), t.grad_clip)
            self.optimizer.step()
            loss_value = loss.item()
            if not math.isfinite(loss_value):
                raise VitlabError(
                    f"training loss became {loss_value} at step {self.step + 1} (epoch {self.epoch + 1}); "
                    f"{self.out / 'last.pt'} keeps the last good state. Usual causes: a learning rate too high "
                    f"(now {t.lr:g}, try --set train.lr={t.lr / 3:.2g}) or unstable mixed precision"
                )
            self.step += 1
            seen += len(idx)
            loss_sum += loss_value * len(idx)
            correct += int(batch_correct)
            bar.update()
            bar.set_postfix(
                loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}",
                img_s=f"{seen / (time.perf_counter() - start):.0f}", lr=f"{lr:.2e}",
            )
        bar.close()
        seconds = time.perf_counter() - start
        if seen == 0:
            return None
        self.train_seconds += seconds
        self.images_seen += seen
        self.epoch += 1
        return {"train_loss": loss_sum / seen, "train_acc": correct / seen, "seconds": seconds,
                "images_per_s": seen / seconds, "lr": lr, "epoch_fraction": seen / n}


def train(cfg: Config, out: Path, *, resume: bool = False) -> dict[str, Any]:
    """Train ``cfg`` into run folder ``out`` (or continue the run there); returns the summary."""
    out = Path(out)
    ckpt = read_checkpoint(out / "last.pt") if resume else None
    if not resume:
        prepare_run_dir(out)
    validate(cfg)
    device = resolve_device(cfg.train.device)
    if cfg.train.threads > 0:
        torch.set_num_threads(cfg.train.threads)
    torch.manual_seed(cfg.train.seed)

    data = load_data(cfg.data, cfg.model.img_size, cfg.train.seed)
    if ckpt is not None and ckpt["classes"] != data.classes:
        raise VitlabError(f"--resume {out}: the data's classes {data.classes} differ from the run's {ckpt['classes']}")
    cfg.model.num_classes = len(data.classes)
    run = Run(cfg, out, data, device)
    if ckpt is not None:
        run.restore(ckpt)
    atomic_write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False), out / "config.yaml")
    print(f"model: {cfg.model.preset}, {run.model.num_params / 1e6:.2f}M parameters, device {device}, "
          f"{torch.get_num_threads()} threads")

    images = data.train.images.to(device)
    labels = data.train.labels.to(device)
    epochs = max_epochs(cfg)
    total_steps = epochs * math.ceil(len(labels) / cfg.train.batch_size)
    budget = cfg.train.time_budget
    while run.epoch < epochs and not (budget and run.train_seconds >= budget):
        stats = run.train_epoch(images, labels, total_steps)
        if stats is None:
            break
        record: dict[str, Any] = {"epoch": run.epoch, "step": run.step, **stats}
        if data.val is not None:
            val = evaluate(run.model, data.val, run.eval_transform, run.eval_batch, device)
            record.update(val_loss=val["loss"], val_acc=val["accuracy"])
        record["train_seconds"] = run.train_seconds
        improved = data.val is None or record["val_acc"] > run.best_val_acc
        if improved:
            run.best_val_acc, run.best_epoch = record.get("val_acc", -1.0), run.epoch
            save_checkpoint(out / "best.pt", run.model, cfg, run.meta(with_training_state=False))
        save_checkpoint(out / "last.pt", run.model, cfg, run.meta(with_training_state=True))
        with open(out / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        val_text = f", val loss {record['val_loss']:.3f} acc {record['val_acc']:.2%}" if data.val is not None else ""
        print(f"epoch {run.epoch}: train loss {stats['train_loss']:.3f} acc {stats['train_acc']:.2%}{val_text}, "
              f"{stats['images_per_s']:.0f} img/s, {run.train_seconds:.0f}s trained")

    if run.epoch == 0:
        raise VitlabError("no training step ran: the time budget was spent before the first step")
    return finish(run)


def finish(run: Run) -> dict[str, Any]:
    """Evaluate the best checkpoint on the test split and write ``summary.json``."""
    best = read_checkpoint(run.out / "best.pt")
    run.model.load_state_dict(best["model"])
    cfg, data = run.cfg, run.data
    test = evaluate(run.model, data.test, run.eval_transform, run.eval_batch, run.device)
    summary = {
        "test_acc": test["accuracy"],
        "test_loss": test["loss"],
        "test_n": test["n"],
        "val_acc": run.best_val_acc if data.val is not None else None,
        "best_epoch": run.best_epoch,
        "train_seconds": run.train_seconds,
        "epochs": run.images_seen / len(data.train),
        "steps": run.step,
        "params": run.model.num_params,
        "images_per_s": run.images_seen / run.train_seconds,
        "device": str(run.device),
        "classes": data.classes,
        "config": cfg.to_dict(),
    }
    atomic_write_text(json.dumps(summary, indent=2) + "\n", run.out / "summary.json")
    print(f"test: accuracy {test['accuracy']:.2%}, loss {test['loss']:.3f} on {test['n']} images "
          f"(best epoch {run.best_epoch}); run folder {run.out}")
    return summary
