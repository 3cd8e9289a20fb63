"""Config as data: one dataclass tree is the single source of truth for a run.

Resolution order (later wins): dataclass defaults -> YAML file (``--config``) -> ``--model`` preset ->
dedicated CLI flags (``--epochs``, ``--time-budget`` ...) -> ``--set key=value``. The resolved tree is
saved as ``config.yaml`` in every run folder and inside every checkpoint, so a model can be rebuilt
from the checkpoint alone.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml

from vitlab.errors import VitlabError

# The choice fields: each name's values, in one place (validated when set, and again by ``validate``).
Stem = Literal["linear", "conv", "whiten"]
StemOrder = Literal["conv-conv-pool", "conv-pool-conv"]
Pool = Literal["cls", "seq", "mean"]
AttnScale = Literal["head_dim", "seed"]
AttnInit = Literal["trunc_normal", "mimetic"]
CropMode = Literal["zeros", "reflect"]
FlipMode = Literal["random", "alternate"]
AutoAugment = Literal["none", "trivialaugment", "randaugment", "auto"]
Storage = Literal["auto", "memory", "disk"]
Optimizer = Literal["adamw", "adam", "sgd", "muon"]
Schedule = Literal["cosine", "linear", "onecycle", "constant"]
Precision = Literal["fp32", "bf16", "fp16", "auto"]
MemoryFormat = Literal["auto", "contiguous", "channels_last"]
TTA = Literal["none", "flip", "full"]

# An image size: one side for square images, or [height, width] (YAML list, or "HxW" / "H,W" on the command line).
ImageSize = Union[int, list[int]]
MAX_IMAGE_SIDE = 4096  # bounds every per-image buffer whatever a config or checkpoint claims
# Bounds on sizes, so that no config or checkpoint can ask for absurd memory (ViT-H/14 is 632M parameters).
MAX_PARAMS = 4_000_000_000
MAX_TOKENS = 16384  # attention's memory grows with the square of the token count
MAX_SIZES = {
    "model.depth": 1024,
    "model.dim": 16384,
    "model.mlp_dim": 65536,
    "model.heads": 1024,
    "model.num_classes": 1_000_000,
    "model.in_chans": 64,
    "model.stem_channels": 4096,
    "model.bn_group": 65536,
    "train.batch_size": 1_000_000,
    "train.micro_batch": 1_000_000,
    "train.eval_batch_size": 1_000_000,
}


@dataclass
class ModelConfig:
    """Architecture of a Vision Transformer. Defaults are the seed's exact hyper-parameters."""

    preset: str = "seed"
    # Square side in pixels, or [height, width] for rectangular images (token grids and position embeddings
    # follow; a square checkpoint fine-tunes on rectangular images by resampling its position embedding).
    img_size: ImageSize = 32
    patch_size: int = 4
    in_chans: int = 3
    num_classes: int = 10
    dim: int = 128
    depth: int = 12
    heads: int = 8
    mlp_dim: int = 64
    # One rate for every dropout site, as in the seed: embeddings, attention weights,
    # attention output and both MLP layers.
    dropout: float = 0.01
    qkv_bias: bool = True
    # The seed's attention concatenates heads with no output projection (W_O); the ViT paper has one.
    attn_proj: bool = False
    # "head_dim": softmax(q k^T / sqrt(head_dim)) as in the ViT paper.
    # "seed": the seed divides by sqrt(dim) instead; kept to reproduce its results.
    attn_scale: AttnScale = "head_dim"
    # Tokenizer. "linear": the seed's projection of flattened patches. "conv": a hybrid stem (ViT paper 3.1,
    # Compact Transformers): log2(patch_size) stages of 3x3 conv + ReLU + stride-2 max-pool, the last stage
    # producing dim channels, so the token grid is still img_size / patch_size.
    # "whiten": a frozen 2x2 patch-whitening conv fitted to the training data, then 3x3 conv + batch norm + GELU
    # stages (stem_channels, then twice that) down to a (img_size-1)/4 grid (airbench / CCT; patch_size 4).
    stem: Stem = "linear"
    stem_channels: int = 64
    # Each of the "whiten" stem's two stages: "conv-conv-pool" (both 3x3 convs at the stage's full resolution) or
    # "conv-pool-conv" (airbench's order: the second conv after the max-pool, on a quarter of the pixels: the
    # stem's arithmetic falls from 128 to 59 MFLOP per 32-px image). The token grid is the same.
    stem_order: StemOrder = "conv-conv-pool"
    # Images per batch-norm group of the "whiten" stem (ghost batch norm): fixed so that CPU micro-batches, a GPU's
    # whole batch and every torchrun rank normalise the same images together.
    bn_group: int = 64
    # What the head reads: "cls" (class token), "seq" (CCT's attention-weighted sequence pooling), "mean".
    pool: Pool = "cls"
    # Stochastic depth: probability of skipping the last block's residual branches, rising linearly from 0.
    drop_path: float = 0.0
    # LayerNorm epsilon: torch's 1e-5 (the seed); pretrained weights bring their own (timm 1e-6, HF 1e-12).
    norm_eps: float = 1e-5
    # How attention weights start. "trunc_normal": std 0.02 like every other matrix. "mimetic" (Trockman & Kolter,
    # 2023): each head's W_q^T W_k close to the identity and the value path (W_o W_v) close to minus it, as in
    # pre-trained ViTs, so attention starts out favouring each token's own and similar tokens.
    attn_init: AttnInit = "trunc_normal"


@dataclass
class DataConfig:
    """Where images come from and how they are split and augmented."""

    # "cifar10", "cifar100", or a path to an ImageFolder root holding train/ and test/ (optional val/).
    source: str = "cifar10"
    # Decoded uint8 caches and torchvision downloads live here; "" means $VITLAB_CACHE or ~/.cache/vitlab.
    cache_dir: str = ""
    val_fraction: float = 0.1
    val_max: int = 5000
    crop_padding: int = 4
    # What the random crop's padding holds: "zeros", or "reflect" (the image mirrored at its border).
    crop_mode: CropMode = "zeros"
    hflip: bool = True
    # "random": each image mirrored with probability 1/2 every epoch; "alternate": a random side for each image in
    # the first epoch, then the other side every other epoch (airbench).
    flip_mode: FlipMode = "random"
    # "none", "trivialaugment" or "randaugment" (torchvision's policies, applied to each training image); "auto":
    # trivialaugment when the run gets at least auto_augment_epochs epochs (train.epochs, or under a time budget
    # the full-size epochs the step probe's time allows), else none; the choice is saved in the config. Heavy
    # augmentation underfits a short run and pays only once there are epochs to spend on it (benchmarks/RESULTS.md).
    auto_augment: AutoAugment = "none"
    auto_augment_epochs: float = 24.0
    # Probability of erasing a random rectangle of each training image (0: off).
    random_erasing: float = 0.0
    # random_erasing's value when auto chooses trivialaugment (None: random_erasing stays): the two regularisers
    # together underfit an epoch-limited run (benchmarks/RESULTS.md). Settled before the first step and saved.
    auto_augment_erasing: Optional[float] = None
    # Draw training batches with probability inversely proportional to class size (the seed's
    # WeightedRandomSampler): each epoch then sees the classes equally often.
    balanced: bool = False
    # Fail on the first unreadable image instead of skipping and listing it.
    strict: bool = False
    # Where an ImageFolder's decoded images live: "memory" (one uint8 tensor, augmented in batches on the device),
    # "disk" (decoded batch by batch in DataLoader worker processes), or "auto": memory unless the decoded images
    # would take more than memory_share of the RAM.
    storage: Storage = "auto"
    memory_share: float = 0.5
    workers: int = 0  # DataLoader processes for data.storage=disk; 0: up to 4, one per core
    # Per-channel normalisation; None: the training images' own statistics. Pretrained weights bring theirs.
    mean: Optional[list[float]] = None
    std: Optional[list[float]] = None


@dataclass
class TrainConfig:
    """Optimisation recipe."""

    # None: 10 epochs, or as many as fit in time_budget when one is set.
    epochs: Optional[int] = None
    # Wall-clock seconds of training; the learning-rate schedule is fitted to it.
    time_budget: Optional[float] = None
    batch_size: int = 128
    # Images per forward/backward pass inside a batch (same update, cache-sized pieces); 0: 64 on a CPU, the
    # whole batch on a GPU.
    micro_batch: int = 0
    # Images per inference pass; 0: 32 on a CPU, 1024 on a GPU.
    eval_batch_size: int = 0
    # adamw | adam | sgd | muon (torch's Muon for the encoder blocks' matrices, AdamW for the rest; uses momentum)
    optimizer: Optimizer = "adamw"
    # With optimizer muon: also Muon for the convolutional stem's filters (each as a c_out x c_in*k*k matrix).
    muon_convs: bool = False
    lr: float = 1e-3
    weight_decay: float = 0.05
    momentum: float = 0.9
    # cosine (linear warm-up then cosine) | linear (warm-up, then linear to 0) | onecycle | constant
    schedule: Schedule = "cosine"
    warmup: float = 0.05  # share of training spent warming up
    label_smoothing: float = 0.0
    # Batch mixing with soft targets (torchvision.transforms.v2): Beta(alpha, alpha) of mixup and of cutmix;
    # 0 turns each off; with both on, every batch uses one of them at random.
    mixup: float = 0.0
    cutmix: float = 0.0
    # Exponential moving average of the weights (decay per step, e.g. 0.999): the average is what is validated,
    # tested and saved as best.pt. 0 turns it off.
    ema: float = 0.0
    grad_clip: float = 1.0  # max gradient norm; 0 disables clipping
    # Test-time augmentation of the final test number and the report: none | flip | full (flip x 1-px shifts).
    tta: TTA = "none"
    seed: int = 0
    # Also refresh last.pt mid-epoch after this many seconds of training (0: only at the end of each epoch).
    checkpoint_every: float = 300.0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    # "fp32"; "bf16": the training forward pass under bfloat16 autocast; "auto": a few timed steps of each at the
    # start (counted in the time budget) pick the faster on this machine, and the choice is saved in the config.
    # "fp16": float16 autocast with a gradient scaler (for GPUs without bf16, e.g. T4/V100).
    precision: Precision = "fp32"
    # Layout of the image batches fed to the model: "contiguous" (N, C, H, W) or "channels_last" (N, H, W, C,
    # oneDNN's and cuDNN's native layout for convolutions: the same maths up to rounding, often faster); "auto":
    # for a model with convolutions, a few timed training steps of each at the start (with precision=auto's,
    # counted in the time budget) pick the faster, saved in the config; a model without convolutions stays
    # contiguous, untimed. The default keeps two runs of one seed alike; the CPU presets use auto.
    memory_format: MemoryFormat = "contiguous"
    # Progressive resizing (vitlab/train/resize.py): train at this share of the image side at first (0.75: 24 px
    # of 32), growing in steps of the patch size to the full size at share resize_until of training. 1 is off.
    resize_start: float = 1.0
    resize_until: float = 0.7
    # Recompute each block's activations in the backward pass instead of keeping them (less memory, ~1/3 more compute).
    grad_checkpointing: bool = False
    # Per-class loss weights for imbalanced data: none | balanced (n / (classes * n_class)) | a JSON file with one
    # weight per class (a list, or {class name: weight}). --balanced resamples instead; use one or the other.
    class_weights: str = "none"
    # Also log metrics.jsonl's fields to TensorBoard in RUN_DIR/tensorboard (pip install 'vitlab[tensorboard]').
    tensorboard: bool = False
    # torch.compile the training model (an option for GPUs: it did not speed this model up on the 2-core CPU).
    compile: bool = False
    threads: int = 0  # torch intra-op threads on CPU; 0 keeps torch's default (all cores)
    # Start from pretrained weights (vitlab finetune sets it): timm:NAME, a timm state-dict file, a Hugging Face
    # ViT directory or an original .npz; the head starts at zero. "" trains from scratch.
    init_weights: str = ""
    # Train the head alone (a linear probe on the pretrained features).
    freeze_backbone: bool = False


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], origin: str = "config") -> "Config":
        """Rebuild a resolved tree (from a checkpoint or config.yaml): ``model.preset`` is only a label here."""
        cfg = cls()
        apply_mapping(cfg, d, origin)
        return cfg


def _field_types(obj: Any) -> dict[str, Any]:
    hints = typing.get_type_hints(type(obj))
    return {f.name: hints[f.name] for f in dataclasses.fields(obj)}


def image_hw(size: ImageSize) -> tuple[int, int]:
    """(height, width) of an image size given as one side or [height, width]."""
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def size_label(size: ImageSize) -> str:
    """``32`` for a square size, ``32x48`` (height x width) for a rectangular one."""
    h, w = image_hw(size)
    return str(h) if h == w else f"{h}x{w}"


def parse_image_size(value: Any, key: str) -> ImageSize:
    """``32``, ``"32"``, ``"32x48"``, ``"32,48"`` or ``[32, 48]`` -> 32 or [32, 48] (a square size stays one int)."""
    items = value
    if isinstance(value, str):
        items = [v.strip() for v in value.lower().replace("x", ",").split(",")]
    if not isinstance(items, (list, tuple)):
        items = [items]
    try:
        if len(items) not in (1, 2) or any(
            isinstance(v, bool) or isinstance(v, float) and not v.is_integer() for v in items
        ):
            raise ValueError
        sides = [int(v) for v in items]
    except (TypeError, ValueError):
        raise VitlabError(
            f"{key}: expected a side in pixels or height x width (e.g. 32 or 32x48), got {value!r}"
        ) from None
    return sides[0] if len(sides) == 1 or sides[0] == sides[1] else sides


def _coerce(value: Any, typ: Any, key: str) -> Any:
    """Convert ``value`` (from YAML or a ``--set`` string) to the field's declared type."""
    if typ == ImageSize:
        return parse_image_size(value, key)
    if typing.get_origin(typ) is Literal:
        choices = typing.get_args(typ)
        if value not in choices:
            raise VitlabError(f"{key}: expected {_choice_text(choices)}, got {value!r}")
        return value
    origin = typing.get_origin(typ)
    if origin is typing.Union:  # Optional[X]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
            return None
        inner = [a for a in typing.get_args(typ) if a is not type(None)][0]
        return _coerce(value, inner, key)
    try:
        if typ is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on"):
                return True
            if isinstance(value, str) and value.lower() in ("false", "0", "no", "off"):
                return False
            raise ValueError
        if typ is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if typ is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if typ is str:
            if not isinstance(value, (str, int, float)) or isinstance(value, bool):
                raise ValueError
            return str(value)
        if origin is list:  # a YAML list, or "0.5,0.5,0.5" from --set
            items = value.split(",") if isinstance(value, str) else value
            if not isinstance(items, (list, tuple)):
                raise ValueError
            return [_coerce(v.strip() if isinstance(v, str) else v, typing.get_args(typ)[0], key) for v in items]
    except ValueError:
        pass
    else:
        raise VitlabError(f"{key}: unsupported field type {typ}")
    name = getattr(typ, "__name__", str(typ))
    raise VitlabError(f"{key}: expected a value of type {name}, got {value!r}")


def set_value(cfg: Config, dotted: str, value: Any) -> None:
    """Set ``section.field`` on the tree, checking the key exists and converting the value's type."""
    parts = dotted.split(".")
    if len(parts) != 2:
        raise VitlabError("keys look like section.field, e.g. train.lr or model.dim", field=dotted)
    section, name = parts
    if section not in _field_types(cfg):
        raise VitlabError(f"unknown section {section!r} (expected one of model, data, train)", field=dotted)
    node = getattr(cfg, section)
    types = _field_types(node)
    if name not in types:
        raise VitlabError(f"unknown key {name!r} in {section} (known: {', '.join(types)})", field=dotted)
    setattr(node, name, _coerce(value, types[name], dotted))


def apply_mapping(cfg: Config, d: dict[str, Any], origin: str) -> None:
    """Apply a nested mapping onto ``cfg``, field by field; ``model.preset`` is only a label here (a YAML file that
    names a preset to expand goes through ``vitlab.models.presets.apply_config_file``)."""
    if not isinstance(d, dict):
        raise VitlabError(f"{origin}: expected a mapping with sections model, data, train")
    for section, values in d.items():
        if section not in ("model", "data", "train"):
            raise VitlabError(f"{origin}: unknown section {section!r} (expected model, data, train)")
        if not isinstance(values, dict):
            raise VitlabError(f"{origin}: section {section!r} must be a mapping")
        for name, value in values.items():
            set_value(cfg, f"{section}.{name}", value)


def parse_set(items: list[str]) -> list[tuple[str, str]]:
    out = []
    for item in items:
        if "=" not in item:
            raise VitlabError("expected key=value, e.g. train.lr=3e-4", field="set", value=item)
        key, value = item.split("=", 1)
        out.append((key.strip(), value.strip()))
    return out


def load_yaml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise VitlabError("file not found", field="config", value=p)
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise VitlabError(f"not valid YAML ({str(e).splitlines()[0]})", field="config", value=p) from None
    return data or {}


def _check_finite(cfg: Config) -> None:
    """NaN and infinity pass every ``<`` and ``>`` test below (``--time-budget nan`` would train forever)."""
    for section in ("model", "data", "train"):
        node = getattr(cfg, section)
        for f in dataclasses.fields(node):
            value = getattr(node, f.name)
            values = value if isinstance(value, list) else [value]
            if any(isinstance(v, float) and not math.isfinite(v) for v in values):
                raise VitlabError(f"{section}.{f.name}: expected a finite number, got {value}")


def validate_model(m: ModelConfig) -> None:
    """The model section's rules alone (for an architecture read from pretrained weights)."""
    _check_sizes(Config(model=m))
    _check_model(m)


def _check_sizes(cfg: Config) -> None:
    """Each size under its bound, and the model's weight count (dominated by the blocks' matrices) under MAX_PARAMS."""
    for key, bound in MAX_SIZES.items():
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        if value > bound:
            raise VitlabError(f"{key}: expected at most {bound:,}, got {value:,}")
    m = cfg.model
    height, width = image_hw(m.img_size)
    if max(height, width) > MAX_IMAGE_SIDE:
        raise VitlabError(f"model.img_size: expected at most {MAX_IMAGE_SIDE} px a side, got {size_label(m.img_size)}")
    tokens = (height // max(m.patch_size, 1)) * (width // max(m.patch_size, 1))
    if tokens > MAX_TOKENS:
        raise VitlabError(
            f"model.img_size / model.patch_size: {tokens:,} patch tokens, over the {MAX_TOKENS:,} "
            "attention can hold in memory"
        )
    params = (
        m.depth * (4 * m.dim * m.dim + 2 * m.dim * m.mlp_dim)
        + m.dim * m.num_classes
        + m.in_chans * m.patch_size**2 * m.dim
        + (tokens + 1) * m.dim
    )  # + patch and position embeddings
    if params > MAX_PARAMS:
        raise VitlabError(
            f"model.depth / model.dim / model.mlp_dim: about {params:,} weights, over the {MAX_PARAMS:,} vitlab builds"
        )


def validate(cfg: Config, *, check_files: bool = True) -> None:
    """Reject values that cannot work, naming the option, before any data is read. ``check_files``: also check
    that files the config names exist (off for a stored config, trained elsewhere)."""
    _check_finite(cfg)
    _check_choices(cfg)
    _check_sizes(cfg)
    _check_model(cfg.model)
    _check_train(cfg.train, check_files)
    _check_data(cfg.data, cfg.model)


def _choice_text(choices: tuple[str, ...]) -> str:
    return f"{', '.join(choices[:-1])} or {choices[-1]}"


def _check_choices(cfg: Config) -> None:
    """Every ``Literal`` field holds one of its values (a tree built in Python skips ``set_value``'s check)."""
    for section in ("model", "data", "train"):
        node = getattr(cfg, section)
        for name, typ in _field_types(node).items():
            if typing.get_origin(typ) is Literal and getattr(node, name) not in typing.get_args(typ):
                raise VitlabError(
                    f"{section}.{name}: expected {_choice_text(typing.get_args(typ))}, got {getattr(node, name)!r}"
                )


def _check_range(key: str, value: float, low: float, high: float, what: str, *, high_open: bool = True) -> None:
    """``low <= value < high`` (``<= high`` with ``high_open=False``)."""
    if not (low <= value and (value < high if high_open else value <= high)):
        raise VitlabError(f"{key}: expected {what} in [{low:g}, {high:g}{')' if high_open else ']'}, got {value}")


def _check_model(m: ModelConfig) -> None:
    height, width = image_hw(m.img_size)
    positive = {
        "model.img_size": min(height, width),
        "model.patch_size": m.patch_size,
        "model.dim": m.dim,
        "model.depth": m.depth,
        "model.heads": m.heads,
        "model.mlp_dim": m.mlp_dim,
        "model.num_classes": m.num_classes,
        "model.in_chans": m.in_chans,
        "model.stem_channels": m.stem_channels,
    }
    for key, v in positive.items():
        if v <= 0:
            raise VitlabError(f"{key}: expected a positive integer, got {v}")
    if max(height, width) > MAX_IMAGE_SIDE:
        raise VitlabError(f"model.img_size: expected at most {MAX_IMAGE_SIDE} px a side, got {size_label(m.img_size)}")
    if m.stem == "whiten" and m.patch_size != 4:
        raise VitlabError(
            f"model.patch_size: the whiten stem reduces the image 4x (2x2 conv, two 2x2 pools); "
            f"set 4, got {m.patch_size}"
        )
    if m.stem == "whiten" and min(height, width) < 9:
        raise VitlabError(f"model.img_size: the whiten stem needs at least 9 px a side, got {size_label(m.img_size)}")
    if m.bn_group < 2:
        raise VitlabError(f"model.bn_group: expected at least 2 images per batch-norm group, got {m.bn_group}")
    if m.stem == "conv" and (m.patch_size < 2 or m.patch_size & (m.patch_size - 1)):
        raise VitlabError(
            f"model.patch_size: a conv stem halves the grid per stage, so it must be a power of two >= 2, got {m.patch_size}"
        )
    if (height % m.patch_size or width % m.patch_size) and m.stem != "whiten":
        raise VitlabError(f"model.patch_size: {m.patch_size} does not divide model.img_size {size_label(m.img_size)}")
    if m.dim % m.heads:
        raise VitlabError(f"model.heads: {m.heads} does not divide model.dim {m.dim}")
    _check_range("model.drop_path", m.drop_path, 0, 1, "a rate")
    _check_range("model.dropout", m.dropout, 0, 1, "a rate")
    if m.norm_eps <= 0:
        raise VitlabError(f"model.norm_eps: expected a positive number, got {m.norm_eps}")


def _check_train(t: TrainConfig, check_files: bool) -> None:
    if t.epochs is not None and t.epochs <= 0:
        raise VitlabError(f"expected a positive integer, got {t.epochs}", field="train.epochs")
    if t.time_budget is not None and t.time_budget <= 0:
        raise VitlabError(f"expected a positive number of seconds, got {t.time_budget}", field="train.time_budget")
    if t.batch_size <= 0:
        raise VitlabError(f"train.batch_size: expected a positive integer, got {t.batch_size}")
    nonnegative = {
        "train.micro_batch": t.micro_batch,
        "train.eval_batch_size": t.eval_batch_size,
        "train.weight_decay": t.weight_decay,
        "train.grad_clip": t.grad_clip,
        "train.checkpoint_every": t.checkpoint_every,
        "train.threads": t.threads,
        "train.mixup": t.mixup,
        "train.cutmix": t.cutmix,
    }
    for key, v in nonnegative.items():
        if v < 0:
            raise VitlabError(f"{key}: expected 0 (off or automatic) or more, got {v}")
    if t.lr <= 0:
        raise VitlabError(f"train.lr: expected a positive number, got {t.lr}")
    if t.optimizer == "muon" and t.freeze_backbone:
        raise VitlabError(
            "train.optimizer: muon updates the encoder blocks' matrices, which train.freeze_backbone "
            "freezes; use adamw or sgd for a linear probe"
        )
    if t.muon_convs and t.optimizer != "muon":
        raise VitlabError(f"train.muon_convs: needs train.optimizer=muon, got train.optimizer={t.optimizer}")
    if check_files and t.class_weights not in ("none", "balanced") and not Path(t.class_weights).is_file():
        raise VitlabError(
            f"train.class_weights: expected none, balanced or a JSON file, got {t.class_weights!r} (no such file)"
        )
    _check_range("train.ema", t.ema, 0, 1, "a decay (0 is off)")
    _check_range("train.warmup", t.warmup, 0, 1, "a share")
    _check_range("train.label_smoothing", t.label_smoothing, 0, 1, "a share")
    _check_range("train.momentum", t.momentum, 0, 1, "a coefficient")
    for key, v in {"train.resize_start": t.resize_start, "train.resize_until": t.resize_until}.items():
        if not 0 < v <= 1:
            raise VitlabError(f"{key}: expected a share in (0, 1], got {v}")


def _check_data(d: DataConfig, m: ModelConfig) -> None:
    _check_range("data.val_fraction", d.val_fraction, 0, 1, "a share")
    if d.val_max < 0:
        raise VitlabError(f"data.val_max: expected 0 or more images, got {d.val_max}")
    for key, v in {"data.mean": d.mean, "data.std": d.std}.items():
        if v is not None and len(v) != m.in_chans:
            raise VitlabError(f"{key}: expected {m.in_chans} values (one per channel), got {v}")
    if (d.mean is None) != (d.std is None):
        raise VitlabError("data.mean / data.std: set both (one value per channel) or neither")
    if d.std is not None and min(d.std) <= 0:
        raise VitlabError(f"data.std: expected positive values, got {d.std}")
    if not 0.0 < d.memory_share <= 1.0:
        raise VitlabError(f"data.memory_share: expected a share in (0, 1], got {d.memory_share}")
    if d.workers < 0:
        raise VitlabError(f"data.workers: expected 0 (automatic) or a positive number, got {d.workers}")
    _check_range("data.random_erasing", d.random_erasing, 0, 1, "a probability", high_open=False)
    if d.auto_augment_erasing is not None:
        _check_range("data.auto_augment_erasing", d.auto_augment_erasing, 0, 1, "a probability", high_open=False)
    if d.auto_augment_epochs < 0:
        raise VitlabError(f"data.auto_augment_epochs: expected 0 or more epochs, got {d.auto_augment_epochs}")
    side = min(image_hw(m.img_size))
    if d.crop_padding < 0:
        raise VitlabError(f"data.crop_padding: expected 0 or more pixels, got {d.crop_padding}")
    if d.crop_padding > side:
        raise VitlabError(f"data.crop_padding: expected at most the image side ({side} px), got {d.crop_padding}")
    if d.crop_mode == "reflect" and d.crop_padding >= min(side, 32):
        raise VitlabError(
            f"data.crop_padding: reflection padding must be smaller than the image "
            f"(under {min(side, 32)} px), got {d.crop_padding}"
        )
