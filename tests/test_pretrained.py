"""Pretrained weights: timm, Hugging Face and original .npz files load with the same logits; resampling; finetune."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from vitlab.cli import main
from vitlab.errors import VitlabError
from vitlab.models.pretrained import (
    load_pretrained,
    patch_resize_matrix,
    resample_patch_embed,
    resample_pos_embed,
)
from vitlab.models.vit import VisionTransformer
from vitlab.train import load_checkpoint, read_checkpoint


def randomize(model: torch.nn.Module) -> torch.nn.Module:
    """Perturb every weight (biases and norms included) so that a wrongly mapped tensor cannot go unnoticed."""
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model.eval()


def vitlab_logits(source: str, x: torch.Tensor, **kw) -> torch.Tensor:
    pre = load_pretrained(source, **kw)
    model = VisionTransformer(pre.config).eval()
    model.load_state_dict(pre.state)
    with torch.no_grad():
        return model(x)


@pytest.fixture(scope="module")
def timm_vit():
    return randomize(timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=64, num_classes=5))


@pytest.mark.parametrize("fmt", ["safetensors", "pth"])
def test_timm_state_dict_gives_timm_logits(timm_vit, tmp_path, fmt):
    path = tmp_path / f"w.{fmt}"
    state = {k: v.contiguous() for k, v in timm_vit.state_dict().items()}
    save_file(state, str(path)) if fmt == "safetensors" else torch.save(state, path)
    x = torch.randn(4, 3, 64, 64)
    with torch.no_grad():
        expected = timm_vit(x)
    torch.testing.assert_close(vitlab_logits(str(path), x), expected, atol=1e-4, rtol=0)
    assert load_pretrained(str(path)).config.heads == 3  # ViT-Ti's head count, from the paper sizes


def test_huggingface_directory_gives_transformers_logits(tmp_path):
    from transformers import ViTConfig, ViTForImageClassification

    hf = randomize(
        ViTForImageClassification(
            ViTConfig(
                hidden_size=64,
                num_hidden_layers=3,
                num_attention_heads=4,
                intermediate_size=128,
                image_size=32,
                patch_size=8,
                num_labels=6,
            )
        )
    )
    hf.save_pretrained(tmp_path / "hf")
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        expected = hf(pixel_values=x).logits
    torch.testing.assert_close(vitlab_logits(str(tmp_path / "hf"), x), expected, atol=1e-4, rtol=0)


def write_original_npz(model, path) -> None:
    """A timm ViT in google-research/vision_transformer's .npz layout: Flax Dense kernels are (in, out), the
    patch embedding kernel HWIO, attention kernels (D, heads, head_dim) and (heads, head_dim, D)."""
    sd = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    D, H = model.embed_dim, model.blocks[0].attn.num_heads
    w = {
        "embedding/kernel": sd["patch_embed.proj.weight"].transpose(2, 3, 1, 0),
        "embedding/bias": sd["patch_embed.proj.bias"],
        "cls": sd["cls_token"],
        "Transformer/posembed_input/pos_embedding": sd["pos_embed"],
        "Transformer/encoder_norm/scale": sd["norm.weight"],
        "Transformer/encoder_norm/bias": sd["norm.bias"],
        "head/kernel": sd["head.weight"].T,
        "head/bias": sd["head.bias"],
    }
    for i in range(len(model.blocks)):
        b, t = f"Transformer/encoderblock_{i}/", f"blocks.{i}."
        q, k, v = np.split(sd[t + "attn.qkv.weight"], 3)
        qb, kb, vb = np.split(sd[t + "attn.qkv.bias"], 3)
        for name, wt, bias in (("query", q, qb), ("key", k, kb), ("value", v, vb)):
            w[f"{b}MultiHeadDotProductAttention_1/{name}/kernel"] = wt.T.reshape(D, H, D // H)
            w[f"{b}MultiHeadDotProductAttention_1/{name}/bias"] = bias.reshape(H, D // H)
        w[f"{b}MultiHeadDotProductAttention_1/out/kernel"] = sd[t + "attn.proj.weight"].T.reshape(H, D // H, D)
        w[f"{b}MultiHeadDotProductAttention_1/out/bias"] = sd[t + "attn.proj.bias"]
        for ln, ours in (("LayerNorm_0", "norm1"), ("LayerNorm_2", "norm2")):
            w[f"{b}{ln}/scale"], w[f"{b}{ln}/bias"] = sd[t + ours + ".weight"], sd[t + ours + ".bias"]
        for r, fc in ((0, "fc1"), (1, "fc2")):
            w[f"{b}MlpBlock_3/Dense_{r}/kernel"] = sd[f"{t}mlp.{fc}.weight"].T
            w[f"{b}MlpBlock_3/Dense_{r}/bias"] = sd[f"{t}mlp.{fc}.bias"]
    np.savez(path, **w)


def test_original_npz_gives_the_same_logits(tmp_path):
    source = randomize(
        timm.create_model("vit_small_patch16_224", pretrained=False, img_size=32, patch_size=8, depth=2, num_classes=4)
    )
    path = tmp_path / "ViT-S_8.npz"
    write_original_npz(source, path)
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        expected = source(x)
    # The file is in the layout timm's own .npz reader expects ...
    check = timm.create_model(
        "vit_small_patch16_224", pretrained=False, img_size=32, patch_size=8, depth=2, num_classes=4
    ).eval()
    check.load_pretrained(str(path))
    with torch.no_grad():
        torch.testing.assert_close(check(x), expected, atol=1e-4, rtol=0)
    # ... and vitlab reads it to the same logits, the head count coming from the kernels' shape.
    torch.testing.assert_close(vitlab_logits(str(path), x), expected, atol=1e-4, rtol=0)
    assert load_pretrained(str(path)).config.heads == 6


def test_position_embedding_resampling():
    pe = torch.randn(1, 1 + 16, 8)
    assert resample_pos_embed(pe, 4) is pe  # the same grid: the identity
    bigger = resample_pos_embed(pe, 6)
    assert bigger.shape == (1, 1 + 36, 8)
    assert torch.equal(bigger[:, 0], pe[:, 0])  # the class token is kept apart
    # A constant grid stays constant: the resampling only interpolates between positions.
    flat = torch.cat([pe[:, :1], torch.ones(1, 16, 8)], dim=1)
    torch.testing.assert_close(resample_pos_embed(flat, 7)[:, 1:], torch.ones(1, 49, 8))


def test_patch_embedding_resampling_keeps_tokens_of_resized_patches():
    torch.manual_seed(0)
    w = torch.randn(5, 3 * 4 * 4)  # (D, C*p*p), 4-px patches
    assert resample_patch_embed(w, 3, 4, 4) is w
    w8 = resample_patch_embed(w, 3, 4, 8)
    patches = torch.randn(10, 3, 4, 4)
    enlarged = F.interpolate(patches.double(), size=(8, 8), mode="bilinear", antialias=True, align_corners=False)
    torch.testing.assert_close(
        enlarged.float().reshape(10, -1) @ w8.T, patches.reshape(10, -1) @ w.T, atol=1e-4, rtol=1e-4
    )
    assert patch_resize_matrix(4, 8).shape == (64, 16)


def test_unsupported_and_missing_sources_are_named(tmp_path):
    with pytest.raises(VitlabError, match="no such file"):
        load_pretrained(str(tmp_path / "missing.safetensors"))
    ls = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, depth=1, init_values=1e-5)
    save_file({k: v.contiguous() for k, v in ls.state_dict().items()}, str(tmp_path / "ls.safetensors"))
    with pytest.raises(VitlabError, match="layer scale"):
        load_pretrained(str(tmp_path / "ls.safetensors"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(VitlabError, match="config.json"):
        load_pretrained(str(tmp_path / "empty"))


def test_timm_hub_name_offline_gives_one_clear_error(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf-home")}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "vitlab",
            "finetune",
            "--weights",
            "timm:vit_tiny_patch16_224.augreg_in21k",
            "--data",
            "cifar10",
            "--out",
            str(tmp_path / "r"),
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "timm:vit_tiny_patch16_224.augreg_in21k" in lines[0] and "offline" in lines[0]
    assert not (tmp_path / "r").exists()


def test_finetune_and_linear_probe_on_real_images(timm_vit, small_cifar, tmp_path, capsys):
    """Weights of a 64-px, patch-16 ViT (4x4 grid) fine-tuned on CIFAR images at 48 px with 8-px patches (6x6
    grid: both the patch and the position embedding resampled); a linear probe keeps every backbone weight."""
    weights = tmp_path / "vit_tiny.safetensors"
    save_file({k: v.contiguous() for k, v in timm_vit.state_dict().items()}, str(weights))
    common = [
        "--weights",
        str(weights),
        "--data",
        str(small_cifar),
        "--img-size",
        "48",
        "--epochs",
        "1",
        "--batch-size",
        "64",
        "--no-report",
        "--set",
        "model.patch_size=8",
    ]
    assert main(["finetune", "--out", str(tmp_path / "ft"), "--model", "vit-ti", *common]) == 0
    ckpt = read_checkpoint(tmp_path / "ft" / "last.pt")
    cfg = ckpt["config"]
    assert cfg["model"]["img_size"] == 48 and cfg["model"]["patch_size"] == 8 and cfg["model"]["heads"] == 3
    assert cfg["train"]["optimizer"] == "sgd" and cfg["train"]["weight_decay"] == 0.0
    assert ckpt["model"]["pos_embed"].shape == (1, 1 + 36, 192)
    assert cfg["data"]["mean"] == [0.5, 0.5, 0.5]  # the weights' normalisation, not the data's

    assert main(["finetune", "--out", str(tmp_path / "probe"), "--freeze-backbone", *common]) == 0
    probe = read_checkpoint(tmp_path / "probe" / "last.pt")["model"]
    loaded = load_pretrained(str(weights))
    for key, value in loaded.state.items():
        if key.startswith("blocks."):
            assert torch.equal(probe[key], value), key
    assert probe["head.weight"].abs().sum() > 0  # the zero-initialised head learned
    assert load_checkpoint(tmp_path / "probe" / "best.pt")[1]["config"].train.freeze_backbone
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "probe" / "best.pt")]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["n"] == 100
