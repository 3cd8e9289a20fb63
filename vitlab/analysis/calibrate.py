"""Temperature scaling (Guo et al., 2017): one scalar T fitted on the validation split so that softmax(logits / T)
is calibrated; accuracy is unchanged. Written into a new checkpoint: the input is never rewritten."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
import torch.nn.functional as F

from vitlab.analysis.metrics import calibration_bins, expected_calibration_error
from vitlab.data.dataset import load_data
from vitlab.errors import VitlabError
from vitlab.inference import Classifier
from vitlab.checkpoint import save_checkpoint

# Checkpoint entries that only resuming a run needs (or that save_checkpoint writes itself).
TRAINING_STATE = ("format", "config", "model", "optimizer", "rng", "rng_ranks", "epoch_state", "ema", "grad_scaler")


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The T > 0 minimising the cross-entropy of ``logits / T`` (optimised in log T, so T stays positive)."""
    log_t = torch.zeros((), requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200, line_search_fn="strong_wolfe")
    logits = logits.detach().float().clone()  # a normal tensor (it may come from inference mode)
    labels = labels.clone()

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    opt.step(closure)
    return float(log_t.detach().exp())


def _ece(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return expected_calibration_error(calibration_bins(logits.softmax(1).numpy(), labels.numpy()))


def calibrate(checkpoint: str | Path, out: str | Path, *, data: str | None = None, device: str = "auto") -> dict:
    """Fit T on the validation split of the checkpoint's data (or ``data``), write the checkpoint with it to
    ``out``; returns T and the validation NLL and ECE before and after."""
    checkpoint, out = Path(checkpoint), Path(out)
    if out.resolve() == checkpoint.resolve():
        raise VitlabError("is the input checkpoint; calibration writes a new file", field="out", value=out)
    # Fitted on the logits the checkpoint will be used with: its own test-time augmentation (which averages
    # logits over views and so changes their scale) included.
    clf = Classifier.from_checkpoint(checkpoint, device)
    cfg = clf.config
    ds = load_data(dataclasses.replace(cfg.data, source=data or cfg.data.source), cfg.model.img_size, cfg.train.seed)
    if ds.val is None:
        raise VitlabError(
            f"{checkpoint}: its data has no validation split to fit the temperature on (the run used "
            "data.val_fraction=0); use a data source with a val/ folder, or train with a hold-out"
        )
    if ds.classes != clf.classes:
        raise VitlabError(
            f"its classes {ds.classes[:5]}... differ from the checkpoint's {clf.classes[:5]}...", field="data"
        )
    clf.temperature = 1.0
    logits = clf.logits(ds.val.images)
    t = fit_temperature(logits, ds.val.labels)
    result = {
        "temperature": t,
        "n": len(ds.val),
        "tta": clf.tta,
        "nll_before": F.cross_entropy(logits, ds.val.labels).item(),
        "nll_after": F.cross_entropy(logits / t, ds.val.labels).item(),
        "ece_before": _ece(logits, ds.val.labels),
        "ece_after": _ece(logits / t, ds.val.labels),
    }
    # The loaded model and metadata, less any training state (a last.pt also works as input): no second read.
    keep = {k: v for k, v in clf.meta.items() if k not in TRAINING_STATE}
    save_checkpoint(out, clf.model, cfg, {**keep, "temperature": t, "calibration": result})
    return result
