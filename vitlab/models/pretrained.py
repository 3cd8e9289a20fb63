"""Pretrained ViT weights from timm, Hugging Face ``transformers`` and Google's original ``.npz``, mapped exactly.

Every source becomes the same thing: a vitlab ``ModelConfig`` describing the architecture the weights belong
to, a state dict under vitlab's parameter names, and the normalisation the weights were trained with. The
mapping is exact (the same logits as the source model, tested to 1e-4); what vitlab's model cannot express
(layer scale, register tokens, average pooling with fc_norm, ...) is refused by name rather than dropped.

``adapt_state`` then fits the weights to a target config: the position embedding is resampled (bicubic,
class token kept apart) when the token grid changes, the patch embedding is resampled (FlexiViT's
pseudo-inverse resize) when the patch size changes, and the head is left out so a new one starts at zero.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from vitlab.config import ModelConfig, image_hw, parse_image_size, validate_model
from vitlab.errors import VitlabError
from vitlab.io import safe_torch_load
from vitlab.models.vit import check_weights, resample_pos_embed, token_grid
from vitlab.checkpoint import FORMAT as CHECKPOINT_FORMAT, SAFETENSORS_FORMAT, check_checkpoint, read_safetensors

# (dim, depth) -> heads of the ViT paper's sizes, for timm state dicts that carry no head count.
PAPER_HEADS = {(192, 12): 3, (384, 12): 6, (768, 12): 12, (1024, 24): 16, (1280, 32): 16}
HALF = (0.5, 0.5, 0.5)
# The field that errors about pretrained weights name, with the file, folder or timm name at fault as its value.
WEIGHTS = "train.init_weights"
# A Hugging Face ViTLayer's sub-module names (under encoder.layer.N.) -> vitlab's (under blocks.N.), for the layers
# that map one to one (query/key/value are fused into qkv apart).
HF_LAYER_NAMES = {
    "attention.output.dense": "attn.proj",
    "intermediate.dense": "mlp.0",
    "output.dense": "mlp.3",
    "layernorm_before": "norm1",
    "layernorm_after": "norm2",
}


@dataclass
class Pretrained:
    config: ModelConfig
    state: dict[str, torch.Tensor]  # vitlab parameter names
    mean: tuple[float, ...] = HALF
    std: tuple[float, ...] = HALF
    source: str = ""


def load_pretrained(source: str, heads: int | None = None) -> Pretrained:
    """``timm:MODEL_NAME``, a Hugging Face ViT directory, an original ``.npz``, a timm state-dict file, or a
    vitlab checkpoint / export (any variant: its own config comes with it).

    ``heads`` is needed only for timm state-dict files of non-paper sizes (their weights do not record it).
    The architecture read from the weights passes the training config's rules, and every tensor has its shape.
    """
    try:
        pre = _load_pretrained(source, heads)
    except KeyError as e:
        raise VitlabError(
            f"no entry {e} (not the layout these weights should have)", field=WEIGHTS, value=source
        ) from None
    try:
        validate_model(pre.config)
    except VitlabError as e:
        raise VitlabError(f"the architecture they describe: {e}", field=WEIGHTS, value=source) from None
    check_weights(pre.state, pre.config, source, partial=True, field=WEIGHTS)
    return pre


def _load_pretrained(source: str, heads: int | None) -> Pretrained:
    if source.startswith("timm:"):
        return _from_timm_hub(source[len("timm:") :])
    path = Path(source)
    if not path.exists():
        raise VitlabError(
            "no such file or directory (expected a timm .safetensors/.pth/.bin file, a Hugging Face model "
            "directory, an original .npz, or timm:MODEL_NAME)",
            field=WEIGHTS,
            value=source,
        )
    if path.is_dir():
        return _from_hf_dir(path)
    if path.suffix == ".npz":
        return _from_npz(path)
    raw = _read_weights_file(path)
    if raw.get("format") == CHECKPOINT_FORMAT:  # written by vitlab train / vitlab export
        cfg = check_checkpoint(raw, path).model
        check_weights(raw.get("model"), cfg, str(path))
        return Pretrained(cfg, raw["model"], tuple(raw["mean"]), tuple(raw["std"]), str(path))
    state = _state_dict(raw, path)
    if any(k.startswith(("vit.", "embeddings.")) for k in state):
        raise VitlabError(
            "a Hugging Face checkpoint; pass its directory (with config.json) instead", field=WEIGHTS, value=path
        )
    exported = _timm_export_metadata(path)  # a file written by vitlab export --format timm knows more
    pre = _from_timm_state(state, heads, source=str(path), img_size=exported.get("img_size"))
    if exported:
        pre.config.norm_eps = exported["norm_eps"]
        pre.mean, pre.std = exported["mean"], exported["std"]
    return pre


def _timm_export_metadata(path: Path) -> dict[str, Any]:
    """What a ``vitlab export --format timm`` file's metadata adds (image size, LayerNorm epsilon, normalisation),
    else {}."""
    if path.suffix != ".safetensors":
        return {}
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if not {"timm_kwargs", "norm_eps", "mean", "std"} <= set(meta):
        return {}
    try:
        kwargs = json.loads(meta["timm_kwargs"])
        out = {
            "img_size": kwargs.get("img_size"),
            "norm_eps": float(meta["norm_eps"]),
            "mean": tuple(float(v) for v in json.loads(meta["mean"])),
            "std": tuple(float(v) for v in json.loads(meta["std"])),
        }
    except (json.JSONDecodeError, AttributeError, TypeError, ValueError) as e:
        raise VitlabError(
            f"its timm-export metadata is malformed ({type(e).__name__}: {e})", field=WEIGHTS, value=path
        ) from None
    return out


def _read_weights_file(path: Path) -> dict[str, Any]:
    """A torch or safetensors file read once, safely (no code can run); a vitlab export comes back as a checkpoint."""
    if path.suffix != ".safetensors":
        raw = safe_torch_load(path)  # weights_only
        if not isinstance(raw, dict):
            raise VitlabError("expected a state dict of tensors", field=WEIGHTS, value=path)
        return raw
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            if (f.metadata() or {}).get("format") == SAFETENSORS_FORMAT:
                return read_safetensors(path)
            return {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise VitlabError(f"not a readable safetensors file ({e})", field=WEIGHTS, value=path) from None


def _state_dict(raw: dict[str, Any], path: Path) -> dict[str, torch.Tensor]:
    state = raw
    for key in ("state_dict", "model", "module"):  # training checkpoints that wrap the weights
        if isinstance(state.get(key), dict):
            state = state[key]
    if not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise VitlabError("expected a state dict of tensors", field=WEIGHTS, value=path)
    return {k.removeprefix("module."): v for k, v in state.items()}


def _config(
    dim: int,
    depth: int,
    heads: int,
    mlp_dim: int,
    patch: int,
    grid: tuple[int, int],
    in_chans: int,
    num_classes: int,
    qkv_bias: bool,
    eps: float,
) -> ModelConfig:
    size = parse_image_size([grid[0] * patch, grid[1] * patch], "weights' image size")
    return dataclasses.replace(
        ModelConfig(),
        preset="pretrained",
        img_size=size,
        patch_size=patch,
        in_chans=in_chans,
        num_classes=max(num_classes, 1),
        dim=dim,
        depth=depth,
        heads=heads,
        mlp_dim=mlp_dim,
        dropout=0.0,
        qkv_bias=qkv_bias,
        attn_proj=True,
        norm_eps=eps,
    )


def _grid(tokens: int, prefix: int, source: str, img_size: Any = None, patch: int = 1) -> tuple[int, int]:
    """(rows, columns) of a position embedding: from the image size the weights declare, else a square."""
    if img_size is not None:
        if isinstance(patch, bool) or not isinstance(patch, int) or patch <= 0:
            raise VitlabError(f"expected a positive patch size, got {patch!r}", field=WEIGHTS, value=source)
        try:
            h, w = image_hw(parse_image_size(img_size, "image size"))
        except VitlabError as e:
            raise VitlabError(str(e), field=WEIGHTS, value=source) from None
        grid = (h // patch, w // patch)
    else:
        side = int(round((tokens - prefix) ** 0.5))
        grid = (side, side)
    if grid[0] * grid[1] + prefix != tokens:
        raise VitlabError(
            f"a position embedding of {tokens} tokens is not a "
            f"{grid[0]} x {grid[1]} grid{' plus a class token' if prefix else ''}",
            field=WEIGHTS,
            value=source,
        )
    return grid


def _check_timm_state(sd: dict[str, torch.Tensor], source: str) -> None:
    """Refuse, in one line, a timm state dict that is no plain ViT with a class token (what vitlab's ViT is)."""
    if "patch_embed.proj.weight" not in sd:
        hint = (
            " (a hybrid timm ViT with a ResNet stem is not supported)" if "patch_embed.backbone" in " ".join(sd) else ""
        )
        raise VitlabError(
            f"not a timm vit_* state dict (no patch_embed.proj.weight){hint}", field=WEIGHTS, value=source
        )
    unsupported = {
        "reg_token": "register tokens",
        ".ls1.": "layer scale",
        "fc_norm.weight": "average pooling with fc_norm",
        "attn_pool.": "attention pooling head",
        "norm_pre.weight": "a pre-norm before the blocks",
        "q_norm.weight": "q/k normalisation",
    }
    for marker, what in unsupported.items():
        if any(marker in k for k in sd):
            raise VitlabError(
                f"this timm ViT uses {what}, which vitlab's ViT does not have", field=WEIGHTS, value=source
            )
    if "cls_token" not in sd:
        raise VitlabError("a timm ViT without a class token is not supported", field=WEIGHTS, value=source)


def _from_timm_state(
    sd: dict[str, torch.Tensor],
    heads: int | None,
    source: str,
    mean: tuple[float, ...] = HALF,
    std: tuple[float, ...] = HALF,
    img_size: Any = None,
) -> Pretrained:
    _check_timm_state(sd, source)
    conv = sd["patch_embed.proj.weight"]  # (D, C, p, p)
    dim, in_chans, patch = conv.shape[0], conv.shape[1], conv.shape[2]
    depth = 1 + max(int(m.group(1)) for k in sd if (m := re.match(r"blocks\.(\d+)\.", k)))
    if heads is None:
        heads = PAPER_HEADS.get((dim, depth), max(dim // 64, 1))
    grid = _grid(sd["pos_embed"].shape[1], 1, source, img_size, patch)
    has_head = sd.get("head.weight") is not None and sd["head.weight"].ndim == 2
    cfg = _config(
        dim,
        depth,
        heads,
        sd["blocks.0.mlp.fc1.weight"].shape[0],
        patch,
        grid,
        in_chans,
        sd["head.weight"].shape[0] if has_head else 1,
        "blocks.0.attn.qkv.bias" in sd,
        1e-6,
    )
    out = {
        "patch_embed.proj.weight": conv.reshape(dim, -1),
        "patch_embed.proj.bias": sd["patch_embed.proj.bias"],
        "cls_token": sd["cls_token"],
        "pos_embed": sd["pos_embed"],
        "norm.weight": sd["norm.weight"],
        "norm.bias": sd["norm.bias"],
    }
    names = {
        "norm1": "norm1",
        "attn.qkv": "attn.qkv",
        "attn.proj": "attn.proj",
        "norm2": "norm2",
        "mlp.fc1": "mlp.0",
        "mlp.fc2": "mlp.3",
    }
    for i in range(depth):
        for theirs, ours in names.items():
            for kind in ("weight", "bias"):
                key = f"blocks.{i}.{theirs}.{kind}"
                if key in sd:
                    out[f"blocks.{i}.{ours}.{kind}"] = sd[key]
    if has_head:
        out["head.weight"], out["head.bias"] = sd["head.weight"], sd["head.bias"]
    return Pretrained(cfg, out, tuple(mean), tuple(std), source)


def _from_timm_hub(name: str) -> Pretrained:
    """Download through timm (its Hugging Face hub cache makes a second call work offline)."""
    source = f"timm:{name}"
    try:
        import timm
    except ImportError:
        raise VitlabError("needs timm (pip install 'vitlab[timm]')", field=WEIGHTS, value=source) from None
    try:
        model = timm.create_model(name, pretrained=True)
    except RuntimeError as e:
        if "Unknown model" in str(e):
            raise VitlabError("timm has no model of that name", field=WEIGHTS, value=source) from None
        raise VitlabError(
            f"could not get the weights ({str(e).splitlines()[0]}); "
            "offline, download them on a connected machine and pass the file instead",
            field=WEIGHTS,
            value=source,
        ) from None
    except Exception as e:  # network and hub errors come in many types
        raise VitlabError(
            f"could not download the weights ({type(e).__name__}); offline, "
            "save model.state_dict() of timm.create_model(name, pretrained=True) on a connected "
            "machine and pass that file instead",
            field=WEIGHTS,
            value=source,
        ) from None
    cfg = model.pretrained_cfg
    heads = model.blocks[0].attn.num_heads
    return _from_timm_state(
        model.state_dict(),
        heads,
        source,
        tuple(cfg.get("mean", HALF)),
        tuple(cfg.get("std", HALF)),
        img_size=list(model.patch_embed.img_size),
    )


def _hf_config(path: Path) -> dict:
    """The directory's config.json, checked to describe a ViT that vitlab's model can hold."""
    config_file = path / "config.json"
    if not config_file.is_file():
        raise VitlabError(
            "a directory without config.json (expected a Hugging Face ViT model directory)", field=WEIGHTS, value=path
        )
    try:
        c = json.loads(config_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise VitlabError(f"not valid JSON ({e})", field=WEIGHTS, value=config_file) from None
    if not isinstance(c, dict):
        raise VitlabError("expected a JSON object", field=WEIGHTS, value=config_file)
    if c.get("model_type") != "vit":
        raise VitlabError(
            f"config.json describes model_type {c.get('model_type')!r}; expected 'vit'", field=WEIGHTS, value=path
        )
    if c.get("hidden_act", "gelu") != "gelu":
        raise VitlabError(f"hidden_act {c['hidden_act']!r}; vitlab's ViT uses exact GELU", field=WEIGHTS, value=path)
    return c


def _from_hf_dir(path: Path) -> Pretrained:
    c = _hf_config(path)
    weights = next((path / f for f in ("model.safetensors", "pytorch_model.bin") if (path / f).is_file()), None)
    if weights is None:
        raise VitlabError("no model.safetensors or pytorch_model.bin in the directory", field=WEIGHTS, value=path)
    sd = {k.removeprefix("vit."): v for k, v in _state_dict(_read_weights_file(weights), weights).items()}
    dim, depth = c["hidden_size"], c["num_hidden_layers"]
    patch, e = c["patch_size"], "embeddings."
    grid = _grid(sd[e + "position_embeddings"].shape[1], 1, str(path), c["image_size"], patch)
    has_head = "classifier.weight" in sd
    cfg = _config(
        dim,
        depth,
        c["num_attention_heads"],
        c["intermediate_size"],
        patch,
        grid,
        c.get("num_channels", 3),
        sd["classifier.weight"].shape[0] if has_head else 1,
        c.get("qkv_bias", True),
        c.get("layer_norm_eps", 1e-12),
    )
    out = {
        "patch_embed.proj.weight": sd[e + "patch_embeddings.projection.weight"].reshape(dim, -1),
        "patch_embed.proj.bias": sd[e + "patch_embeddings.projection.bias"],
        "cls_token": sd[e + "cls_token"],
        "pos_embed": sd[e + "position_embeddings"],
        "norm.weight": sd["layernorm.weight"],
        "norm.bias": sd["layernorm.bias"],
    }
    for i in range(depth):
        L, o = f"encoder.layer.{i}.", f"blocks.{i}."
        att = L + "attention.attention."
        out[o + "attn.qkv.weight"] = torch.cat([sd[f"{att}{n}.weight"] for n in ("query", "key", "value")])
        if cfg.qkv_bias:
            out[o + "attn.qkv.bias"] = torch.cat([sd[f"{att}{n}.bias"] for n in ("query", "key", "value")])
        for theirs, ours in HF_LAYER_NAMES.items():
            out[f"{o}{ours}.weight"], out[f"{o}{ours}.bias"] = sd[f"{L}{theirs}.weight"], sd[f"{L}{theirs}.bias"]
    if has_head:
        out["head.weight"], out["head.bias"] = sd["classifier.weight"], sd["classifier.bias"]
    mean, std = HALF, HALF
    pre = path / "preprocessor_config.json"
    if pre.is_file():
        p = json.loads(pre.read_text())
        mean, std = tuple(p.get("image_mean", HALF)), tuple(p.get("image_std", HALF))
    return Pretrained(cfg, out, mean, std, str(path))


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """The arrays of an .npz, each one's size read from its header first: a small file that declares a huge
    array (a zip bomb: zeros compress about a thousandfold) is refused before anything is decompressed."""
    limit = max(10 * path.stat().st_size, 64 * 2**20)
    try:
        with zipfile.ZipFile(path) as z:
            members = z.infolist()
            declared = sum(m.file_size for m in members)
            if declared > limit:
                raise VitlabError(
                    f"its arrays declare {declared:,} bytes, over the {limit:,} "
                    f"a {path.stat().st_size:,}-byte file can hold (a zip bomb?)",
                    field=WEIGHTS,
                    value=path,
                )
            for m in members:
                with z.open(m) as f:
                    major, _ = np.lib.format.read_magic(f)
                    read_header = (
                        np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
                    )
                    shape, _, dtype = read_header(f)
                if dtype.hasobject or math.prod(shape) * dtype.itemsize > m.file_size:
                    raise VitlabError(f"array {m.filename} declares more data than it holds", field=WEIGHTS, value=path)
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, RuntimeError, NotImplementedError) as e:
        raise VitlabError(f"not a readable .npz ({e})", field=WEIGHTS, value=path) from None


def _npz_prefix(w: dict[str, np.ndarray], path: Path) -> str:
    """Where the model's arrays sit in an original ``.npz`` (at the top, or under a training state's key)."""
    prefix = next((p for p in ("", "opt/target/", "params/") if f"{p}embedding/kernel" in w), None)
    if prefix is None:
        raise VitlabError(
            "no embedding/kernel (expected the original vision_transformer .npz layout)", field=WEIGHTS, value=path
        )
    if f"{prefix}Transformer/encoderblock_0/LayerNorm_0/scale" not in w:
        raise VitlabError(
            "expected per-block keys Transformer/encoderblock_N/... (the original vision_transformer layout)",
            field=WEIGHTS,
            value=path,
        )
    return prefix


def _from_npz(path: Path) -> Pretrained:
    """The ``google-research/vision_transformer`` layout: Flax kernels are (in, out), attention (D, heads, hd)."""
    w = _read_npz(path)
    prefix = _npz_prefix(w, path)

    def t(key: str) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(w[prefix + key])).float()

    kernel = t("embedding/kernel")  # (p, p, C, D)
    patch, _, in_chans, dim = kernel.shape
    depth = sum(1 for k in w if k.startswith(f"{prefix}Transformer/encoderblock_") and k.endswith("LayerNorm_0/scale"))
    blk = "Transformer/encoderblock_{}/"
    heads = w[prefix + blk.format(0) + "MultiHeadDotProductAttention_1/query/kernel"].shape[1]
    pos = t("Transformer/posembed_input/pos_embedding")
    head_kernel = w.get(prefix + "head/kernel")
    # A representation layer (pre_logits) between the class token and the head: the head cannot be reproduced.
    has_head = head_kernel is not None and head_kernel.size > 0 and prefix + "pre_logits/kernel" not in w
    cfg = _config(
        dim,
        depth,
        heads,
        w[prefix + blk.format(0) + "MlpBlock_3/Dense_0/kernel"].shape[1],
        patch,
        _grid(pos.shape[1], 1, str(path)),
        in_chans,
        head_kernel.shape[1] if has_head else 1,
        prefix + blk.format(0) + "MultiHeadDotProductAttention_1/query/bias" in w,
        1e-6,
    )
    out = {
        "patch_embed.proj.weight": kernel.permute(3, 2, 0, 1).reshape(dim, -1),
        "patch_embed.proj.bias": t("embedding/bias"),
        "cls_token": t("cls"),
        "pos_embed": pos,
        "norm.weight": t("Transformer/encoder_norm/scale"),
        "norm.bias": t("Transformer/encoder_norm/bias"),
    }
    for i in range(depth):
        b, o = blk.format(i), f"blocks.{i}."
        mha = b + "MultiHeadDotProductAttention_1/"
        out[o + "attn.qkv.weight"] = torch.cat(
            [t(f"{mha}{n}/kernel").reshape(dim, dim).T for n in ("query", "key", "value")]
        )
        if cfg.qkv_bias:
            out[o + "attn.qkv.bias"] = torch.cat([t(f"{mha}{n}/bias").reshape(-1) for n in ("query", "key", "value")])
        out[o + "attn.proj.weight"] = t(f"{mha}out/kernel").reshape(dim, dim).T
        out[o + "attn.proj.bias"] = t(f"{mha}out/bias")
        for theirs, ours in {"LayerNorm_0": "norm1", "LayerNorm_2": "norm2"}.items():
            out[f"{o}{ours}.weight"], out[f"{o}{ours}.bias"] = t(f"{b}{theirs}/scale"), t(f"{b}{theirs}/bias")
        for r, ours in ((0, "mlp.0"), (1, "mlp.3")):
            out[f"{o}{ours}.weight"] = t(f"{b}MlpBlock_3/Dense_{r}/kernel").T
            out[f"{o}{ours}.bias"] = t(f"{b}MlpBlock_3/Dense_{r}/bias")
    if has_head:
        out["head.weight"], out["head.bias"] = t("head/kernel").T, t("head/bias")
    return Pretrained(cfg, {k: v.contiguous() for k, v in out.items()}, HALF, HALF, str(path))


def patch_resize_matrix(old: int, new: int) -> torch.Tensor:
    """R (new*new, old*old): the bilinear resize of an old x old patch to new x new, as a matrix."""
    basis = torch.eye(old * old, dtype=torch.float64).reshape(old * old, 1, old, old)
    resized = F.interpolate(basis, size=(new, new), mode="bilinear", antialias=True, align_corners=False)
    return resized.reshape(old * old, new * new).T


def resample_patch_embed(weight: torch.Tensor, in_chans: int, old: int, new: int) -> torch.Tensor:
    """(D, C*old*old) -> (D, C*new*new) by FlexiViT's pseudo-inverse resize: a patch resized from old to new px
    gives (in the least-squares sense; exactly when enlarging) the token the old weights gave the old patch."""
    if old == new:
        return weight
    R = patch_resize_matrix(old, new)  # (new^2, old^2)
    w = weight.reshape(weight.shape[0] * in_chans, old * old).double()  # one row per (output, channel) kernel
    resampled = w @ torch.linalg.pinv(R)  # solves R^T w_new = w_old
    return resampled.reshape(weight.shape[0], in_chans * new * new).to(weight.dtype)


def adapt_state(pre: Pretrained, target: ModelConfig) -> dict[str, torch.Tensor]:
    """The pretrained weights fitted to ``target`` (same architecture; any image size, and any patch size for a
    linear patch embedding), head left out."""
    src = pre.config
    for name in ("dim", "depth", "heads", "mlp_dim", "in_chans", "qkv_bias", "attn_proj", "stem", "pool"):
        if getattr(src, name) != getattr(target, name):
            raise VitlabError(
                f"model.{name}: the weights {pre.source} have {name} {getattr(src, name)}, "
                f"the model asks for {getattr(target, name)}"
            )
    if target.stem != "linear" and target.patch_size != src.patch_size:
        raise VitlabError(
            f"model.patch_size: a conv stem's depth is fixed by its patch size ({src.patch_size} in "
            f"{pre.source}); change model.img_size instead"
        )
    state = {k: v for k, v in pre.state.items() if not k.startswith("head.")}
    prefix = 1 if target.pool == "cls" else 0
    state["pos_embed"] = resample_pos_embed(state["pos_embed"], token_grid(target), prefix, token_grid(src))
    if target.stem == "linear":
        state["patch_embed.proj.weight"] = resample_patch_embed(
            state["patch_embed.proj.weight"], src.in_chans, src.patch_size, target.patch_size
        )
    return state


def apply_pretrained(model: torch.nn.Module, pre: Pretrained) -> None:
    """Load ``pre`` into ``model`` (built from a config sharing its width and depth): every weight but the head,
    which is reset to zeros for the model's classes."""
    missing, unexpected = model.load_state_dict(adapt_state(pre, model.cfg), strict=False)
    missing = [k for k in missing if not k.startswith("head.")]
    if missing or unexpected:
        raise VitlabError(
            f"weights do not fit the model (missing {missing[:3]}, unexpected {unexpected[:3]})",
            field=WEIGHTS,
            value=pre.source,
        )
    model.reset_classifier(model.cfg.num_classes)
