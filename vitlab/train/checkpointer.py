"""A run folder: proving it writable, its checkpoints (last, prev, best) and reading them back to resume.

``last.pt`` is refreshed during training and holds everything ``--resume`` needs; the file it replaces stays as
``prev.pt`` until the new one is complete, so a crash mid-write always leaves one whole checkpoint. ``best.pt``
holds the weights of the epoch with the best validation accuracy (the last epoch without validation). Every file
is written atomically (a temporary file renamed into place).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from torch import nn

from vitlab.checkpoint import save_checkpoint
from vitlab.config import Config
from vitlab.errors import VitlabError
from vitlab.io import atomic_write_text, read_jsonl
from vitlab.models.loading import read_checkpoint

# What a run writes into its folder: removed by ``overwrite=True`` before a new run starts there (with the
# report/ and tensorboard/ folders).
RUN_FILES = ("last.pt", "prev.pt", "best.pt", "metrics.jsonl", "summary.json", "config.yaml")


class Checkpointer:
    def __init__(self, out: Path):
        self.out = Path(out)

    def prepare(self, overwrite: bool = False) -> None:
        """Create the folder and prove it writable before any data is read.

        A folder holding a run is refused unless ``overwrite``: then that run's own files (``RUN_FILES`` and its
        report) are removed, and anything else the user keeps there is left alone.
        """
        out = self.out
        if (out / "last.pt").exists() and not overwrite:
            raise VitlabError(
                f"already holds a run (last.pt); continue it with vitlab train --resume {out}, "
                "replace it with --overwrite, or choose another folder",
                field="out",
                value=out,
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
            raise VitlabError(f"not writable ({e.strerror or e})", field="out", value=out) from None

    def save_last(self, model: nn.Module, cfg: Config, meta: dict[str, Any]) -> None:
        last = self.out / "last.pt"
        if last.exists():
            os.replace(last, self.out / "prev.pt")
        save_checkpoint(last, model, cfg, meta)

    def save_best(self, model: nn.Module, cfg: Config, meta: dict[str, Any]) -> None:
        save_checkpoint(self.out / "best.pt", model, cfg, meta)

    def read_best(self) -> dict[str, Any]:
        return read_checkpoint(self.out / "best.pt")

    def resume(self) -> dict[str, Any]:
        """``last.pt``, or ``prev.pt`` when last.pt is missing or damaged; weights checked against its config."""
        try:
            return read_checkpoint(self.out / "last.pt")
        except VitlabError as e:
            if not (self.out / "prev.pt").is_file():
                raise VitlabError(str(e), field="resume", value=self.out) from None
            print(f"vitlab: {e}; resuming from the previous checkpoint {self.out / 'prev.pt'}")
            return read_checkpoint(self.out / "prev.pt")

    def tidy_after_crash(self, epochs_done: int) -> None:
        """Before a resumed run goes on: drop metrics lines of epochs the checkpoint does not include (written
        just before a crash) and a torn last line, and half-written files of a process killed mid-save."""
        path = self.out / "metrics.jsonl"
        if path.is_file():
            records = read_jsonl(path)
            keep = [r for r in records if isinstance(r.get("epoch"), int) and r["epoch"] <= epochs_done]
            text = "".join(json.dumps(r) + "\n" for r in keep)
            if text != path.read_text(errors="replace"):
                atomic_write_text(text, path)
        for stale in self.out.glob(".*.tmp"):
            stale.unlink()
