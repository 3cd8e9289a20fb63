"""The training loader: where a training image becomes a batch.

``TrainLoader`` owns everything between the stored uint8 images and the float batch the model takes: the epoch's
order (shuffled, or drawn in proportion to class sizes), this process's share of each global batch under
torchrun, the last-batch policy, placement on the device, the batched augmentation with its random stream, and
the position inside the epoch — all of it in ``state_dict()``, so a run resumed mid-epoch replays exactly the
batches an uninterrupted run would have seen. The training loop reads ``for x, y, idx in loader``.
"""

from __future__ import annotations

from typing import Any, Iterator

import torch

from vitlab.data.augment import BatchTransform, alternating_flips
from vitlab.data.source import image_source
from vitlab.data.stream import FileImages


def epoch_order(
    n: int, *, generator: torch.Generator | None = None, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """The order of one epoch over ``n`` items: as stored without a generator, shuffled with one, or drawn
    with replacement in proportion to ``weights`` (class balancing)."""
    if weights is not None:
        return torch.multinomial(weights, n, replacement=True, generator=generator)
    if generator is not None:
        return torch.randperm(n, generator=generator)
    return torch.arange(n)


def balanced_weights(labels: torch.Tensor) -> torch.Tensor:
    """1 / class size for every item, as the seed's ``make_weights`` for its WeightedRandomSampler."""
    counts = torch.bincount(labels).double()
    return 1.0 / counts[labels]


class TrainLoader:
    """Batches ``(x, y, idx)`` of one epoch: augmented float images (B, C, H, W) on ``device``, their labels (B,)
    and their indices into the training split (B,), this rank's share of each global batch.

    Iterating runs the rest of the current epoch; ``end_epoch()`` closes it (also when a time budget cut it
    short). ``seed`` orders the data, the same on every rank; ``aug_seed`` draws the augmentation, its own per
    rank. A last batch too small to give every rank an image is dropped.
    """

    def __init__(
        self,
        images: torch.Tensor | FileImages,
        labels: torch.Tensor,
        transform: BatchTransform,
        *,
        batch_size: int,
        device: torch.device,
        seed: int,
        aug_seed: int,
        rank: int = 0,
        world_size: int = 1,
        balanced: bool = False,
        alternate_flips: bool = False,
        memory_share: float = 0.5,
    ):
        self.images = image_source(images).placed(device, memory_share)
        self.labels = labels.to(device)
        self.transform, self.batch_size, self.device = transform, batch_size, device
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.balanced, self.alternate_flips = balanced, alternate_flips
        self.order_gen = torch.Generator().manual_seed(seed)
        self.aug_gen = torch.Generator(device=device).manual_seed(aug_seed)
        self.epoch = 0  # epochs completed: the alternating flip's phase
        self.order: torch.Tensor | None = None  # the current epoch's order, None between epochs
        self.pos = 0  # global batches of the current epoch handed out
        self.counts: torch.Tensor | None = None  # how often this rank used each image this epoch

    def __len__(self) -> int:
        """Global batches in one epoch."""
        count = -(-self.num_images // self.batch_size)
        last = self.num_images - (count - 1) * self.batch_size
        return count - 1 if last < self.world_size else count

    @property
    def num_images(self) -> int:
        return len(self.labels)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        if self.order is None:
            weights = balanced_weights(self.labels.cpu()) if self.balanced else None
            self.order = epoch_order(self.num_images, generator=self.order_gen, weights=weights)
            self.pos = 0
            self.counts = torch.zeros(self.num_images, dtype=torch.int32)
        batches = list(self.order.split(self.batch_size))[: len(self)]
        todo = [b[self.rank :: self.world_size] for b in batches[self.pos :]]  # this rank's share of each batch
        stream = self.images.batches(todo, self.device)
        try:
            for idx in todo:
                self.counts.index_add_(0, idx, torch.ones(len(idx), dtype=torch.int32))
                flip = alternating_flips(idx, self.epoch, self.seed, self.num_images) if self.alternate_flips else None
                x = self.transform(next(stream), self.aug_gen, flip)  # (B, C, H, W)
                y = self.labels[idx.to(self.labels.device, non_blocking=True)]  # (B,)
                self.pos += 1
                yield x, y, idx
        finally:
            stream.close()  # stops DataLoader workers still decoding ahead

    def end_epoch(self) -> torch.Tensor:
        """Close the current epoch; returns how often this rank used each training image in it (N,) int32."""
        counts = self.counts if self.counts is not None else torch.zeros(self.num_images, dtype=torch.int32)
        self.epoch += 1
        self.order, self.pos, self.counts = None, 0, None
        return counts

    def sample(self, n: int, seed: int) -> torch.Tensor:
        """``n`` training images drawn at random (seeded) as a uint8 tensor on the device, unaugmented. Random,
        not the first n: an ImageFolder's training images are stored class by class."""
        idx = torch.randperm(self.num_images, generator=torch.Generator().manual_seed(seed))[:n].sort().values
        return self.images.gather(idx).to(self.device)

    def state_dict(self) -> dict[str, Any]:
        """The position in the data (``epoch_state``: None between epochs) and the shared order stream. The
        augmentation stream is per rank: ``aug_rng_state()``."""
        position = None if self.order is None else {"order": self.order, "pos": self.pos, "counts": self.counts}
        return {"epoch": self.epoch, "epoch_state": position, "order_rng": self.order_gen.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch = state["epoch"]
        self.order_gen.set_state(state["order_rng"])
        position = state["epoch_state"]
        if position is None:
            self.order, self.pos, self.counts = None, 0, None
        else:
            self.order, self.pos = position["order"], position["pos"]
            self.counts = position.get("counts")
            if self.counts is None:  # a checkpoint from before per-image counts were kept
                self.counts = torch.zeros(self.num_images, dtype=torch.int32)
