"""A Vision Transformer (Dosovitskiy et al., 2021), faithful to the seed's model.

image (B, C, H, W) -> p x p patches flattened in the seed's order -> linear projection -> [class token; patches]
+ learned position embedding -> dropout -> depth x pre-norm encoder block -> LayerNorm -> linear head on the
class token.

Variants share the encoder blocks: a convolutional stem instead of the linear projection (hybrid ViT / CCT; or
the whitened, batch-normalised stem of ``WhitenedConvStem``), sequence or mean pooling instead of the class token, and stochastic depth (``ModelConfig.stem``, ``pool``,
``drop_path``).

Where this differs from the seed, and why:
- Attention is scaled by 1/sqrt(head_dim) as in "Attention Is All You Need"; the seed divides by sqrt(dim),
  which flattens every head's softmax. ``attn_scale="seed"`` restores the seed's scaling.
- q, k and v share one fused weight (``qkv``, timm's layout) used as three matmuls on its thirds, so each
  result is viewed per head without copying activations (the seed has three separate layers: the same maths).
- Weights start from a truncated normal (std 0.02, as timm and big_vision do) rather than the seed's
  ``torch.randn`` class token and position embedding, whose unit scale swamps the patch embeddings;
  ``attn_init="mimetic"`` starts attention from ``mimetic_init_`` instead.
"""

from __future__ import annotations

import dataclasses
import warnings

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from vitlab.config import ModelConfig, image_hw
from vitlab.errors import VitlabError
from vitlab.models.dropout import Dropout, dropout


def _dropout(rate: float) -> nn.Module:
    # An Identity rather than Dropout(0) keeps zero-rate dropout entirely off the training step.
    return Dropout(rate) if rate > 0 else nn.Identity()


def patchify(x: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, N, C*p*p): patches row by row, each flattened channel-major like the seed's
    ``PatchGenerator`` (``img.unfold(1, p, p).unfold(2, p, p)`` then channels first)."""
    B, C, H, W = x.shape
    p = patch_size
    x = x.reshape(B, C, H // p, p, W // p, p)  # (B, C, gh, p, gw, p)
    x = x.permute(0, 2, 4, 1, 3, 5)  # (B, gh, gw, C, p, p)
    return x.reshape(B, (H // p) * (W // p), C * p * p)


class PatchEmbed(nn.Module):
    """The seed's LinearProjection: one linear map applied to every flattened patch."""

    def __init__(self, patch_size: int, in_chans: int, dim: int):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Linear(in_chans * patch_size * patch_size, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(patchify(x, self.patch_size))  # (B, N, D)


class ConvStem(nn.Module):
    """Hybrid tokenizer: each stage is a 3x3 conv, ReLU and a stride-2 max-pool (no batch norm, so micro-batches
    stay exact); log2(patch_size) stages take (B, C, H, W) to a (H/p) x (W/p) grid of dim-channel tokens."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        stages = cfg.patch_size.bit_length() - 1
        layers: list[nn.Module] = []
        channels = cfg.in_chans
        for i in range(stages):
            out = cfg.dim if i == stages - 1 else cfg.stem_channels
            layers += [
                nn.Conv2d(channels, out, 3, padding=1, bias=False),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(3, stride=2, padding=1),
            ]
            channels = out
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten(2).transpose(1, 2)  # (B, D, gh, gw) -> (B, N, D)


class GhostBatchNorm2d(nn.BatchNorm2d):
    """Batch norm over fixed groups of ``group`` images (Hoffer et al., 2017, "ghost batch norm").

    Normalising each group apart makes the maths independent of how a batch is cut up: CPU micro-batches,
    a whole batch on a GPU and each torchrun rank all normalise the same groups of the same images. The
    running statistics are updated once per group, in order.
    """

    def __init__(self, channels: int, group: int):
        super().__init__(channels)
        self.group = group

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or x.shape[0] <= self.group:
            return super().forward(x)
        parts = []
        for part in x.split(self.group):  # a loop, not a comprehension: zero-argument super() needs this scope
            parts.append(super().forward(part))
        return torch.cat(parts)


def conv_bn(cin: int, cout: int, group: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), GhostBatchNorm2d(cout, group), nn.GELU())


class WhitenedConvStem(nn.Module):
    """airbench-style tokenizer (Jordan, 2024) for Compact-Transformer-like hybrids.

    A frozen 2x2 convolution whose filters whiten the training images' 2x2 patches (fitted from data by
    ``fit_whitening``, each eigenvector with both signs so GELU keeps the information), then two stages of
    two 3x3 conv + ghost batch norm + GELU with a 2x2 max-pool after each (or between the two, airbench's
    order: ``stem_order``): (B, C, H, W) -> a ((H-1)/4) x ((W-1)/4) grid of dim-channel tokens (32 px -> 7x7 =
    49 tokens). Batch norm makes a few epochs of a convolutional stem train much faster; the image is still mixed
    across space only by attention.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        width = 2 * cfg.in_chans * 4  # +/- each of the C*2*2 eigenvectors
        # Until fitted to data: each filter passes one pixel of one channel through (with both signs).
        basis = torch.eye(cfg.in_chans * 4).view(-1, cfg.in_chans, 2, 2)
        self.register_buffer("whiten_weight", torch.cat([basis, -basis]))
        self.whiten_bias = nn.Parameter(torch.zeros(width))
        c, g = cfg.stem_channels, cfg.bn_group
        stages = [[conv_bn(width, c, g), conv_bn(c, c, g)], [conv_bn(c, 2 * c, g), conv_bn(2 * c, cfg.dim, g)]]
        at = 2 if cfg.stem_order == "conv-conv-pool" else 1  # where each stage's max-pool goes
        layers: list[nn.Module] = [nn.GELU()]
        for stage in stages:  # 31 x 31 -> 15 x 15, then -> 7 x 7
            layers += [*stage[:at], nn.MaxPool2d(2), *stage[at:]]
        self.net = nn.Sequential(*layers)

    @torch.no_grad()
    def fit_whitening(self, images: torch.Tensor, eps: float = 5e-4) -> None:
        """Set the frozen filters from normalised training images (B, C, H, W): the covariance of all their
        2x2 patches is V diag(e) V^T; filters V^T / sqrt(e + eps) map a patch to unit-variance, uncorrelated
        channels (the first half), and their negatives (the second)."""
        patches = images.float().unfold(2, 2, 1).unfold(3, 2, 1)  # (B, C, H-1, W-1, 2, 2)
        patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, images.shape[1] * 4)  # (P, C*4), channel-major
        patches = patches - patches.mean(0)
        cov = patches.T.double() @ patches.double() / len(patches)
        evals, evecs = torch.linalg.eigh(cov)  # ascending
        filters = (evecs.T / (evals[:, None] + eps).sqrt()).flip(0).float()  # strongest direction first
        filters = filters.view(-1, images.shape[1], 2, 2)
        self.whiten_weight.copy_(torch.cat([filters, -filters]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.conv2d(x, self.whiten_weight, self.whiten_bias)  # (B, 24, H-1, W-1)
        return self.net(x).flatten(2).transpose(1, 2)  # (B, D, gh, gw) -> (B, N, D)


def token_grid(cfg: ModelConfig, hw: tuple[int, int] | None = None) -> tuple[int, int]:
    """(rows, columns) of the token grid the stem makes from an image of ``hw`` pixels (default ``cfg.img_size``)."""
    h, w = hw if hw is not None else image_hw(cfg.img_size)
    if cfg.stem == "whiten":  # the 2x2 whitening conv takes a pixel, each of the two pools halves (rounding down)
        return (h - 1) // 4, (w - 1) // 4
    if cfg.stem == "conv":  # each stage's padded stride-2 pool halves, rounding up
        stages = cfg.patch_size.bit_length() - 1
        return -(-h // 2**stages), -(-w // 2**stages)
    return h // cfg.patch_size, w // cfg.patch_size


def resample_pos_embed(
    pos_embed: torch.Tensor,
    new_grid: int | tuple[int, int],
    num_prefix_tokens: int = 1,
    old_grid: int | tuple[int, int] | None = None,
) -> torch.Tensor:
    """(1, prefix + gh*gw, D) -> (1, prefix + new_h*new_w, D): the grid part resized bicubically, the class token
    kept apart. Grids are (rows, columns) or one side for a square; ``old_grid`` defaults to the square the
    embedding holds. The same grid returns the tensor itself."""
    prefix, grid = pos_embed[:, :num_prefix_tokens], pos_embed[:, num_prefix_tokens:]
    side = int(round(grid.shape[1] ** 0.5))
    old_h, old_w = image_hw(old_grid if old_grid is not None else side)
    new_h, new_w = image_hw(new_grid)
    if old_h * old_w != grid.shape[1]:
        raise VitlabError(f"position embedding: {grid.shape[1]} grid tokens are not a {old_h} x {old_w} grid")
    if (old_h, old_w) == (new_h, new_w):
        return pos_embed
    D = grid.shape[-1]
    grid = grid.reshape(1, old_h, old_w, D).permute(0, 3, 1, 2).float()  # (1, D, gh, gw)
    grid = F.interpolate(grid, size=(new_h, new_w), mode="bicubic", antialias=True, align_corners=False)
    grid = grid.permute(0, 2, 3, 1).reshape(1, new_h * new_w, D).to(pos_embed.dtype)  # (1, new_h*new_w, D)
    return torch.cat([prefix, grid], dim=1)


class DropPath(nn.Module):
    """Stochastic depth: skip a residual branch for a random subset of the images in the batch."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = x.new_empty(x.shape[0], 1, 1).bernoulli_(1.0 - self.p)  # one draw per image
        return x * keep / (1.0 - self.p)


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.heads = cfg.heads
        self.head_dim = cfg.dim // cfg.heads
        self.scale = (self.head_dim if cfg.attn_scale == "head_dim" else cfg.dim) ** -0.5
        self.qkv = nn.Linear(cfg.dim, 3 * cfg.dim, bias=cfg.qkv_bias)
        self.attn_drop = cfg.dropout
        self.proj = nn.Linear(cfg.dim, cfg.dim) if cfg.attn_proj else nn.Identity()
        self.proj_drop = _dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, return_attention: bool = False, cls_only: bool = False):
        """(B, N, D) -> (B, N, D), or (B, 1, D) with ``cls_only``: the first token's output alone, which is all
        the last block needs to give for a class-token head (its keys and values still come from every token)."""
        B, _, D = x.shape
        # The fused q|k|v weight used as three matmuls on its thirds rather than one matmul split afterwards:
        # each result is then viewed (B, h, T, hd) without a copy, and no pass re-lays out activations.
        dim = self.heads * self.head_dim  # a constant, not x's traced shape (keeps torch.jit.trace exact)
        ws = self.qkv.weight.split(dim)
        bs = self.qkv.bias.split(dim) if self.qkv.bias is not None else (None, None, None)

        def heads(i: int, tokens: torch.Tensor) -> torch.Tensor:
            return F.linear(tokens, ws[i], bs[i]).view(B, -1, self.heads, self.head_dim).transpose(1, 2)

        q = heads(0, x[:, :1] if cls_only else x)  # (B, h, 1 or N, hd)
        k, v = heads(1, x), heads(2, x)
        attn = None
        dropping = self.training and self.attn_drop > 0
        if return_attention or dropping:
            # The exact manual path: the same maths as the fused kernel, with the maps at hand. Dropout on
            # the weights needs them materialised anyway, and vitlab's dropout draws far fewer random numbers.
            attn = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1)  # (B, h, N, N)
            x = dropout(attn, self.attn_drop, self.training) @ v
        else:
            x = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        x = x.transpose(1, 2).reshape(B, q.shape[2], D)  # heads back side by side
        return self.proj_drop(self.proj(x)), (attn if return_attention else None)


@torch.no_grad()
def mimetic_init_(attn: Attention, qk: tuple[float, float] = (0.7, 0.7), vo: tuple[float, float] = (0.4, 0.4)) -> None:
    """Mimetic initialisation (Trockman & Kolter, ICML 2023) of one attention layer, in place.

    Each head's query and key weights come from the SVD of alpha Z + beta I (Z Gaussian with variance 1/D), so
    W_q^T W_k is that matrix's best rank-head_dim approximation; the value path gets alpha Z - beta I, split
    between value and output projection when there is one. (alpha, beta): the paper's 0.7/0.7 and 0.4/0.4.
    """
    dim, hd = attn.qkv.in_features, attn.head_dim

    def target(alpha: float, beta: float) -> torch.Tensor:  # (D, D)
        return alpha * torch.randn(dim, dim) / dim**0.5 + beta * torch.eye(dim)

    w = attn.qkv.weight  # (3D, D): rows of q, then k, then v; head h owns rows h*hd:(h+1)*hd of each third
    for h in range(attn.heads):
        u, s, vt = torch.linalg.svd(target(*qk))
        root = s[:hd].sqrt()[:, None]  # (hd, 1)
        w[h * hd : (h + 1) * hd] = root * u[:, :hd].T  # q = x W_q^T, so W_q^T W_k = U_k S_k V_k^T
        w[dim + h * hd : dim + (h + 1) * hd] = root * vt[:hd]
    value = target(vo[0], -vo[1])
    if isinstance(attn.proj, nn.Linear):
        u, s, vt = torch.linalg.svd(value)
        attn.proj.weight.copy_(u * s.sqrt())  # W_o W_v = U S V^T
        value = s.sqrt()[:, None] * vt
    w[2 * dim :] = value


class Block(nn.Module):
    """Pre-norm encoder block: x + MSA(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, cfg: ModelConfig, drop_path: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.dim, eps=cfg.norm_eps)
        self.attn = Attention(cfg)
        self.norm2 = nn.LayerNorm(cfg.dim, eps=cfg.norm_eps)
        self.mlp = nn.Sequential(
            nn.Linear(cfg.dim, cfg.mlp_dim),
            nn.GELU(),
            _dropout(cfg.dropout),
            nn.Linear(cfg.mlp_dim, cfg.dim),
            _dropout(cfg.dropout),
        )
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, cls_only: bool = False) -> torch.Tensor:
        """(B, N, D) -> (B, N, D), or (B, 1, D) with ``cls_only``."""
        return self._forward(x, False, cls_only)[0]

    def forward_attention(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The block's output and its attention maps (B, heads, N, N), by the exact manual path."""
        return self._forward(x, True, False)

    def _forward(self, x: torch.Tensor, return_attention: bool, cls_only: bool):
        y, attn = self.attn(self.norm1(x), return_attention, cls_only)
        if cls_only:
            x = x[:, :1]  # (B, 1, D)
        x = x + self.drop_path(y)
        x = x + self.drop_path(self.mlp(self.norm2(x)))
        return x, attn


class VisionTransformer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = dataclasses.replace(cfg)
        self.grid_size = token_grid(cfg)  # (rows, columns) of patch tokens, as timm's patch_embed.grid_size
        num_patches = self.grid_size[0] * self.grid_size[1]
        self.num_prefix_tokens = 1 if cfg.pool == "cls" else 0
        stems = {
            "linear": lambda: PatchEmbed(cfg.patch_size, cfg.in_chans, cfg.dim),
            "conv": lambda: ConvStem(cfg),
            "whiten": lambda: WhitenedConvStem(cfg),
        }
        self.patch_embed = stems[cfg.stem]()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.dim)) if cfg.pool == "cls" else None
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + self.num_prefix_tokens, cfg.dim))
        self.pos_drop = _dropout(cfg.dropout)
        rates = [cfg.drop_path * i / max(cfg.depth - 1, 1) for i in range(cfg.depth)]
        self.blocks = nn.ModuleList(Block(cfg, rate) for rate in rates)
        self.norm = nn.LayerNorm(cfg.dim, eps=cfg.norm_eps)
        # Sequence pooling (Hassani et al., 2021): a learned softmax weight per token, then a weighted average.
        self.attn_pool = nn.Linear(cfg.dim, 1) if cfg.pool == "seq" else None
        self.head = nn.Linear(cfg.dim, cfg.num_classes)
        # Activation checkpointing per block (timm's set_grad_checkpointing): less memory, about a third more compute.
        self.grad_checkpointing = False
        self._init_weights()

    def _init_weights(self) -> None:
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        if self.cls_token is not None:
            nn.init.normal_(self.cls_token, std=1e-6)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        if self.cfg.attn_init == "mimetic":
            for block in self.blocks:
                mimetic_init_(block.attn)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    def no_weight_decay(self) -> set[str]:
        """Parameter names that weight decay would only pull towards zero for no benefit."""
        return {"pos_embed", "cls_token"} if self.cls_token is not None else {"pos_embed"}

    def reset_classifier(self, num_classes: int) -> None:
        """A fresh head for ``num_classes`` classes (fine-tuning on a new label set)."""
        self.cfg.num_classes = num_classes
        self.head = nn.Linear(self.cfg.dim, num_classes).to(self.pos_embed.device)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) -> normalised tokens (B, T, D), T = N (+1 with a class token)."""
        return self._encode(x)

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        hw = x.shape[-2:]
        x = self.patch_embed(x)  # (B, N, D)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)  # (B, 1+N, D)
        # Another image size (progressive resizing trains on smaller images first) gets the position embedding
        # resized to its grid, differentiably, so the one embedding of cfg.img_size's grid learns from every size.
        # A traced export keeps the size it was traced at (its shapes are not Python numbers there).
        pos, grid = self.pos_embed, None if torch.jit.is_tracing() else token_grid(self.cfg, tuple(hw))
        if grid is not None and grid != self.grid_size:
            pos = resample_pos_embed(pos, grid, self.num_prefix_tokens, self.grid_size)
        return self.pos_drop(x + pos)

    def _encode(self, x: torch.Tensor, cls_only: bool = False) -> torch.Tensor:
        x = self._embed(x)
        for i, block in enumerate(self.blocks):
            last = cls_only and i == len(self.blocks) - 1
            if self.grad_checkpointing and self.training and torch.is_grad_enabled():
                # Keep only each block's input; its activations are recomputed in the backward pass.
                x = checkpoint(block, x, last, use_reentrant=False)
            else:
                x = block(x, last)
        return self.norm(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Tokens (B, T, D) -> logits (B, classes), or the pooled embedding (B, D) with pre_logits."""
        if self.cfg.pool == "cls":
            x = x[:, 0]
        elif self.cfg.pool == "seq":
            weights = self.attn_pool(x).softmax(dim=1)  # (B, T, 1)
            x = (weights.transpose(1, 2) @ x).squeeze(1)  # (B, D)
        else:
            x = x.mean(dim=1)
        return x if pre_logits else self.head(x)

    def forward_attention(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits (B, classes) and every block's attention maps, a list of ``depth`` (B, heads, T, T), computed by
        the exact manual attention path (the same logits as ``forward`` to about 1e-5)."""
        x = self._embed(x)
        maps: list[torch.Tensor] = []
        for block in self.blocks:
            x, attn = block.forward_attention(x)
            maps.append(attn)
        return self.forward_head(self.norm(x)), maps

    def forward(self, x: torch.Tensor, return_attention: bool = False) -> torch.Tensor:
        """Logits (B, classes). ``return_attention=True`` is the deprecated spelling of ``forward_attention``."""
        if return_attention:
            # FutureWarning, not DeprecationWarning: shown by default (the call arrives through nn.Module's
            # wrappers, so a DeprecationWarning would be attributed to torch and hidden).
            warnings.warn(
                "model(x, return_attention=True) is deprecated; use model.forward_attention(x)",
                FutureWarning,
                stacklevel=2,
            )
            return self.forward_attention(x)
        # A class-token head reads one token: the last block computes that token alone (the same logits,
        # without the other tokens' final attention outputs and MLPs, which nothing would read).
        return self.forward_head(self._encode(x, cls_only=self.cfg.pool == "cls"))

    @property
    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


def check_weights(
    weights: object, cfg: ModelConfig, where: str, *, partial: bool = False, field: str | None = None
) -> None:
    """Refuse, in one line naming ``where``, weights that are not a mapping of tensors with exactly the names and
    shapes ``cfg``'s model has (a subset with ``partial``): checked on the meta device, before any allocation.
    ``field``: the error names this field with ``where`` as its value (``VitlabError``'s ``field``/``value``)."""

    def refuse(problem: str) -> VitlabError:
        return VitlabError(problem, field=field, value=where) if field else VitlabError(f"{where}: {problem}")

    with torch.device("meta"):  # shapes only: no memory is allocated for the weights
        expected = {k: tuple(v.shape) for k, v in VisionTransformer(cfg).state_dict().items()}
    if not isinstance(weights, dict) or not all(isinstance(v, torch.Tensor) for v in weights.values()):
        raise refuse("expected the weights as a mapping of names to tensors")
    odd = sorted(set(weights) - set(expected)) + ([] if partial else sorted(set(expected) - set(weights)))
    if odd:
        raise refuse(
            f"weights do not match the model its config describes (missing or unexpected: {', '.join(odd[:3])})"
        )
    for name, tensor in weights.items():
        if tuple(tensor.shape) != expected[name]:
            raise refuse(
                f"weights do not match the model its config describes ({name} has shape "
                f"{tuple(tensor.shape)}, the config implies {expected[name]})"
            )
