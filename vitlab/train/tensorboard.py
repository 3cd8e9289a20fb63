"""Optional TensorBoard logging: the same per-epoch fields as metrics.jsonl, under RUN_DIR/tensorboard."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vitlab.errors import VitlabError


class TensorBoardLog:
    def __init__(self, out: Path):
        self.check_installed()
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(out / "tensorboard"))

    @staticmethod
    def check_installed() -> None:
        try:
            import tensorboard  # noqa: F401
        except ImportError:
            raise VitlabError(
                "train.tensorboard: needs the tensorboard package (pip install 'vitlab[tensorboard]')"
            ) from None

    def log(self, record: dict[str, Any]) -> None:
        """One metrics.jsonl record: every numeric field as a scalar at the record's global step."""
        for key, value in record.items():
            if key not in ("epoch", "step") and isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(key, value, record["step"])
        losses = record.get("step_loss", [])
        for i, loss in enumerate(losses):  # the epoch's per-step training losses, each at its own step
            self.writer.add_scalar("train_loss_step", loss, record["step"] - len(losses) + 1 + i)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
