"""Training loop, optimizer and schedules, checkpoints, evaluation."""

from vitlab.checkpoint import save_checkpoint
from vitlab.models.loading import load_checkpoint, read_checkpoint
from vitlab.train.evaluate import evaluate, predict_logits
from vitlab.train.trainer import train

__all__ = ["load_checkpoint", "read_checkpoint", "save_checkpoint", "evaluate", "predict_logits", "train"]
