"""One way to use a trained model: load a checkpoint once, then classify, embed or show the attention of images.

``Classifier`` owns what every consumer of a checkpoint needs: the model in eval mode on its device, the class
names, the input transform (resize to the model's size and the training normalisation), the inference batch
size and the test-time augmentation. ``vitlab eval``, ``predict``, ``attention`` and ``report`` use it; so can
any Python caller:

    clf = Classifier.from_checkpoint("runs/c10/best.pt")
    probs = clf.predict(torch.stack([clf.read("cat.jpg")]))  # (1, classes)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from vitlab.models.attention import attention_overlays
from vitlab.config import Config
from vitlab.data.augment import BatchTransform
from vitlab.data.dataset import Split
from vitlab.data.images import read_image
from vitlab.device import resolve_device
from vitlab.models.vit import VisionTransformer
from vitlab.models.loading import load_checkpoint
from vitlab.train.evaluate import logit_scores, predict_logits
from vitlab.train.step import infer_chunk_size


@dataclass
class Classifier:
    model: VisionTransformer
    config: Config
    classes: list[str]
    transform: BatchTransform
    device: torch.device
    batch_size: int
    tta: str = "none"
    meta: dict[str, Any] = field(default_factory=dict)  # the checkpoint's other entries (mean, std, step ...)
    # Softmax temperature fitted by ``vitlab calibrate`` (1: none); it changes probabilities, never the ranking.
    temperature: float = 1.0

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, device: str | torch.device = "auto", *, batch_size: int = 0, tta: str | None = None
    ) -> "Classifier":
        """``batch_size`` 0: 32 on a CPU, 1024 on a GPU;
        ``tta`` None: the config's ``train.tta``."""
        dev = resolve_device(device)
        model, meta = load_checkpoint(path, dev)
        cfg: Config = meta["config"]
        transform = BatchTransform(meta["mean"], meta["std"], cfg.model.img_size, device=dev)
        return cls(
            model,
            cfg,
            list(meta["classes"]),
            transform,
            dev,
            infer_chunk_size(batch_size, dev),
            tta or cfg.train.tta,
            meta,
            float(meta.get("temperature", 1.0)),
        )

    def read(self, path: str | Path) -> torch.Tensor:
        """One image file as (3, H, W) uint8 at the model's size; raises ImageError naming the file."""
        return read_image(Path(path), self.config.model.img_size)

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """(N, classes) on the CPU for uint8 images (N, 3, H, W), averaged over the test-time views and divided by
        the calibrated temperature."""
        layout = self.config.train.memory_format  # the training run's measured choice
        logits = predict_logits(self.model, images, self.transform, self.batch_size, self.device, self.tta, layout)
        return logits / self.temperature if self.temperature != 1.0 else logits

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """Class probabilities (N, classes) on the CPU."""
        return self.logits(images).softmax(1)

    def evaluate(self, split: Split) -> dict[str, float]:
        """``{"accuracy", "loss", "n"}`` on a labelled split."""
        return logit_scores(self.logits(split.images), split.labels)

    def scores(self, split: Split) -> dict[str, Any]:
        """Accuracy, loss, image count and ``classification_metrics``' (top-5, macro-F1, balanced accuracy, ECE and
        its bins, a collapse warning), from one inference pass."""
        from vitlab.analysis.metrics import classification_metrics  # scikit-learn: imported only when needed

        logits = self.logits(split.images)
        metrics = classification_metrics(
            logits.softmax(1).numpy(), split.labels.numpy(), self.classes, logits.argmax(1).numpy()
        )
        metrics.pop("accuracy")  # the same figure as logit_scores'
        return {**logit_scores(logits, split.labels), **metrics}

    @torch.inference_mode()
    def embed(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (N, classes; over the temperature) and pooled embeddings (N, D) of the images themselves (no
        test-time views)."""
        self.model.eval()
        logits, embeddings = [], []
        for chunk in images.split(self.batch_size):
            features = self.model.forward_features(self.transform(chunk.to(self.device)))
            emb = self.model.forward_head(features, pre_logits=True)
            embeddings.append(emb.float().cpu())
            logits.append(self.model.head(emb).float().cpu() / self.temperature)
        empty = torch.empty(0)
        return (torch.cat(logits), torch.cat(embeddings)) if logits else (empty, empty)

    def attention(self, images: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Logits (B, classes) of uint8 images (B, 3, H, W) and heatmaps (B, H, W) in [0, 1] on the CPU:
        ``{"last": last-layer class-token attention, "rollout": attention rollout}``."""
        logits, heat = attention_overlays(self.model, images, self.transform)
        return logits / self.temperature, heat
