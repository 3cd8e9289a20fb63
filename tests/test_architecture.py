"""The shape of the code: layers that import only downwards, and the training loader that owns the data path."""

from __future__ import annotations

import ast
import itertools
from pathlib import Path

import pytest
import torch

from vitlab.config import Config, DataConfig
from vitlab.data import TrainLoader, load_data
from vitlab.data.augment import BatchTransform
from vitlab.data.source import TensorImages, image_source
from vitlab.errors import VitlabError
from vitlab.train.checkpointer import Checkpointer
from vitlab.train.state import TrainState

PACKAGE = Path(__file__).resolve().parents[1] / "vitlab"

# Layers, top to bottom (README "How the code is laid out"); a module may import from its own layer or below.
LAYERS = [
    ("vitlab.cli", "vitlab.__main__"),
    ("vitlab.commands",),
    (
        "vitlab.train",
        "vitlab.analysis",
        "vitlab.export",
        "vitlab.interop",
        "vitlab.predict",
        "vitlab.serve",
        "vitlab.bench",
        "vitlab.inference",
    ),
    ("vitlab.models", "vitlab.data"),
    ("vitlab.config", "vitlab.checkpoint", "vitlab.io", "vitlab.device", "vitlab.errors"),
]


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _layer(module: str) -> int | None:
    for depth, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return depth
    return None  # the package's own __init__: the public API, above everything


def _imports() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            found |= {t for t in targets if t in modules and t != name}
        graph[name] = found
    return graph


def test_every_module_has_a_layer():
    assert [m for m in _imports() if m != "vitlab" and _layer(m) is None] == []


def test_no_module_imports_from_a_layer_above_its_own():
    upward = [
        f"{module} -> {target}"
        for module, targets in _imports().items()
        for target in targets
        if module != "vitlab" and _layer(target) is not None and _layer(target) < _layer(module)
    ]
    assert upward == []


def test_no_import_cycles():
    graph = _imports()
    # Package __init__ files re-export their submodules: importing one is not an edge back to its parent.
    edges = {m: {t for t in ts if not m.startswith(t + ".")} for m, ts in graph.items()}
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in edges[node]:
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def _loader(images, labels, **kwargs) -> TrainLoader:
    transform = BatchTransform((0.5,) * 3, (0.25,) * 3, 8, crop_padding=1, hflip=True)  # random: aug_gen matters
    args = dict(batch_size=4, device=torch.device("cpu"), seed=0, aug_seed=1)
    return TrainLoader(images, labels, transform, **{**args, **kwargs})


def _images(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, 3, 8, 8), dtype=torch.uint8, generator=g), torch.arange(n) % 3


def test_loader_covers_an_epoch_once_in_a_shuffled_order_and_keeps_x_y_idx_together():
    images, labels = _images(10)
    loader = _loader(images, labels)
    seen = []
    for x, y, idx in loader:
        assert x.dtype == torch.float32 and x.shape == (len(idx), 3, 8, 8)
        assert torch.equal(y, labels[idx])
        seen.append(idx)
    order = torch.cat(seen)
    assert sorted(order.tolist()) == list(range(10)) and order.tolist() != list(range(10))
    assert [len(i) for i in seen] == [4, 4, 2] and len(loader) == 3
    counts = loader.end_epoch()
    assert counts.tolist() == [1] * 10 and loader.epoch == 1 and loader.order is None
    second = torch.cat([idx for _, _, idx in loader])
    assert not torch.equal(second, order)  # a new order each epoch


def test_loader_gives_each_rank_its_share_of_every_global_batch():
    images, labels = _images(11)
    per_rank = [[idx for _, _, idx in _loader(images, labels, rank=r, world_size=2)] for r in range(2)]
    # The same global batches on both ranks (same seed), every other image each; the last batch of 3 is kept.
    assert [len(b) for b in per_rank[0]] == [2, 2, 2] and [len(b) for b in per_rank[1]] == [2, 2, 1]
    together = torch.cat([torch.cat([a, b]) for a, b in zip(*per_rank)])
    assert sorted(together.tolist()) == list(range(11))
    # A last global batch too small to give every rank an image is dropped: 9 images, batches of 4, 4 and 1.
    images, labels = _images(9)
    assert len(_loader(images, labels, world_size=2)) == 2


def test_loader_resumes_mid_epoch_with_the_same_batches_and_augmentation():
    images, labels = _images(12)
    whole = [(x, idx) for x, _, idx in _loader(images, labels)]
    first = _loader(images, labels)
    batches = iter(first)
    next(batches)
    state, aug = first.state_dict(), first.aug_gen.get_state()
    batches.close()
    resumed = _loader(images, labels, seed=5, aug_seed=7)  # different streams until the state is loaded
    resumed.load_state_dict(state)
    resumed.aug_gen.set_state(aug)
    rest = [(x, idx) for x, _, idx in resumed]
    assert len(rest) == len(whole) - 1
    for (xa, ia), (xb, ib) in zip(whole[1:], rest):
        assert torch.equal(ia, ib) and torch.equal(xa, xb)


def test_balanced_loader_draws_classes_evenly():
    labels = torch.tensor([0] * 90 + [1] * 10)
    images = torch.zeros(100, 3, 8, 8, dtype=torch.uint8)
    loader = _loader(images, labels, batch_size=100, balanced=True, seed=3)
    _, y, _ = next(iter(loader))
    assert 30 <= int((y == 1).sum()) <= 70  # about half, where shuffling would give 10


def test_both_storages_serve_the_loader_the_same_images(small_cifar):
    memory = load_data(DataConfig(source=str(small_cifar), storage="memory"), 32, seed=0, verbose=False)
    disk = load_data(DataConfig(source=str(small_cifar), storage="disk", workers=1), 32, seed=0, verbose=False)
    idx = torch.tensor([3, 0, 17])
    assert isinstance(image_source(memory.train.images), TensorImages)
    assert torch.equal(image_source(disk.train.images).gather(idx), image_source(memory.train.images).gather(idx))
    a = [x for x, _, _ in itertools.islice(_loader(memory.train.images, memory.train.labels), 3)]
    b = [x for x, _, _ in itertools.islice(_loader(disk.train.images, disk.train.labels), 3)]
    assert len(a) == len(b) == 3
    assert all(torch.equal(p, q) for p, q in zip(a, b))


def test_train_state_round_trips_its_counters():
    state = TrainState()
    state.start_epoch()
    state.record_step(loss_sum=6.0, correct=2, seen=4, seconds=0.5)
    assert (state.step, state.images_seen, state.epoch_stats["step_loss"]) == (1, 4, [1.5])
    other = TrainState()
    other.load_state_dict(state.state_dict())
    assert (
        other.state_dict()
        == state.state_dict()
        == {
            "step": 1,
            "train_seconds": 0.5,
            "images_seen": 4,
            "best_val_acc": -1.0,
            "best_epoch": 0,
        }
    )


def test_checkpointer_keeps_the_previous_last_and_refuses_a_used_folder(tmp_path):
    model = torch.nn.Linear(2, 2)
    ckpt = Checkpointer(tmp_path / "run")
    ckpt.prepare()
    cfg = Config()
    meta = {"classes": [str(i) for i in range(cfg.model.num_classes)], "mean": [0.5] * 3, "std": [0.5] * 3}
    ckpt.save_last(model, cfg, meta)
    ckpt.save_last(model, cfg, meta)
    assert (tmp_path / "run" / "last.pt").is_file() and (tmp_path / "run" / "prev.pt").is_file()
    with pytest.raises(VitlabError, match="already holds a run"):
        Checkpointer(tmp_path / "run").prepare()
    Checkpointer(tmp_path / "run").prepare(overwrite=True)
    assert not (tmp_path / "run" / "last.pt").exists()
