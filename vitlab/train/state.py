"""A run's counters and the running statistics of the epoch in progress: what, with the model, optimizer and
loader states, ``last.pt`` holds so that ``--resume`` continues exactly."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

COUNTERS = ("step", "train_seconds", "images_seen", "best_val_acc", "best_epoch")


@dataclass
class TrainState:
    step: int = 0
    train_seconds: float = 0.0  # training time spent, summed over runs of a resumed run
    images_seen: int = 0
    best_val_acc: float = -1.0
    best_epoch: int = 0
    # Running sums of the epoch in progress (loss_sum, correct, seen, seconds, step_loss).
    epoch_stats: dict[str, Any] = field(default_factory=dict)

    def start_epoch(self) -> None:
        self.epoch_stats = {"loss_sum": 0.0, "correct": 0, "seen": 0, "seconds": 0.0, "step_loss": []}

    def record_step(self, loss_sum: float, correct: float, seen: float, seconds: float) -> None:
        """Count one step's sums (over every rank) into the run's counters and the epoch's statistics."""
        s = self.epoch_stats
        self.step += 1
        self.train_seconds += seconds
        self.images_seen += int(seen)
        s["seconds"] += seconds
        s["seen"] += int(seen)
        s["loss_sum"] += loss_sum
        s["correct"] += int(correct)
        s["step_loss"].append(round(loss_sum / seen, 5))

    def state_dict(self) -> dict[str, Any]:
        """The counters (the epoch's statistics travel with the loader's position: see ``Trainer.meta``)."""
        return {k: getattr(self, k) for k in COUNTERS}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key in COUNTERS:
            setattr(self, key, state[key])

    def epoch_summary(self) -> dict[str, Any]:
        s = self.epoch_stats
        return {
            "train_loss": s["loss_sum"] / s["seen"],
            "train_acc": s["correct"] / s["seen"],
            "seconds": s["seconds"],
            "images_per_s": s["seen"] / s["seconds"],
        }
