"""Data sources, splits and batched augmentation."""

from vitlab.data.augment import BatchTransform
from vitlab.data.dataset import ImageData, Split, load_data
from vitlab.data.images import ImageError, read_image
from vitlab.data.loader import TrainLoader, balanced_weights, epoch_order

__all__ = [
    "BatchTransform",
    "ImageData",
    "Split",
    "balanced_weights",
    "epoch_order",
    "load_data",
    "ImageError",
    "read_image",
    "TrainLoader",
]
