import pytest
import torch
import torch.nn.functional as F

import vitlab
from vitlab.errors import VitlabError
from vitlab.models.dropout import Dropout
from vitlab.models import available_presets, create_model, patchify, preset_config


def seed_patch_generator(img: torch.Tensor, patch_size: int) -> torch.Tensor:
    """The seed's PatchGenerator.__call__, verbatim, on one (C, H, W) image."""
    num_channels = img.size(0)
    patches = (
        img.unfold(1, patch_size, patch_size)
        .unfold(2, patch_size, patch_size)
        .reshape(num_channels, -1, patch_size, patch_size)
    )
    patches = patches.permute(1, 0, 2, 3)
    num_patch = patches.size(0)
    return patches.reshape(num_patch, -1)


def test_patch_order_matches_seed_unfold():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    ours = patchify(x, 4)
    assert ours.shape == (2, 4, 48)
    for b in range(2):
        assert torch.equal(ours[b], seed_patch_generator(x[b], 4))


@pytest.mark.parametrize("name", ["seed", "vit-ti/8"])
def test_shapes_and_attention_maps(name):
    model = create_model(name, num_classes=7).eval()
    cfg = model.cfg
    x = torch.randn(3, 3, cfg.img_size, cfg.img_size)
    tokens = 1 + (cfg.img_size // cfg.patch_size) ** 2
    logits = model(x)
    assert logits.shape == (3, 7)
    logits2, maps = model.forward_attention(x)
    assert len(maps) == cfg.depth
    for m in maps:
        assert m.shape == (3, cfg.heads, tokens, tokens)
        assert torch.allclose(m.sum(-1), torch.ones(3, cfg.heads, tokens), atol=1e-5)
    feats = model.forward_features(x)
    assert feats.shape == (3, tokens, cfg.dim)
    assert model.forward_head(feats, pre_logits=True).shape == (3, cfg.dim)


@pytest.mark.parametrize("overrides", [{}, {"attn_scale": "seed"}, {"attn_proj": True, "qkv_bias": False}])
def test_fused_and_manual_attention_give_same_logits(overrides):
    torch.manual_seed(0)
    model = create_model("seed", **overrides).eval()
    x = torch.randn(4, 3, 32, 32)
    fused = model(x)
    manual, _ = model.forward_attention(x)
    assert torch.allclose(fused, manual, atol=1e-5, rtol=0)


def test_attention_scale_flag_changes_the_model():
    torch.manual_seed(0)
    a = create_model("seed").eval()
    b = create_model("seed", attn_scale="seed").eval()
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 3, 32, 32)
    assert not torch.allclose(a(x), b(x))
    assert a.blocks[0].attn.scale == pytest.approx(16**-0.5)  # head_dim = 128 / 8
    assert b.blocks[0].attn.scale == pytest.approx(128**-0.5)


def test_seed_preset_is_the_seeds_hyper_parameters():
    cfg = preset_config("seed")
    assert (cfg.img_size, cfg.patch_size, cfg.dim, cfg.depth, cfg.heads, cfg.mlp_dim, cfg.dropout) == (
        32,
        4,
        128,
        12,
        8,
        64,
        0.01,
    )
    model = create_model("seed")
    assert sum(isinstance(m, Dropout) for m in model.modules()) == 1 + 3 * 12  # embeddings + 3 per block


def test_zero_dropout_override_removes_every_dropout():
    model = create_model("seed", num_classes=10, dropout=0.0).train()
    assert not any(isinstance(m, Dropout) for m in model.modules())
    assert model.blocks[0].attn.attn_drop == 0.0
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(model(x), model(x))  # deterministic in train mode


def test_paper_presets_and_patch_suffix():
    s4 = preset_config("vit-s/4")
    assert (s4.dim, s4.depth, s4.heads, s4.mlp_dim, s4.patch_size, s4.img_size) == (384, 12, 6, 1536, 4, 32)
    b = preset_config("vit-b")
    assert (b.patch_size, b.img_size, b.attn_proj) == (16, 224, True)
    with pytest.raises(VitlabError, match="unknown preset"):
        preset_config("vit-xl")
    with pytest.raises(VitlabError, match="patch size"):
        preset_config("vit-s/x")


def test_patch_size_must_divide_image_size():
    with pytest.raises(VitlabError, match="does not divide model.img_size"):
        create_model("seed", patch_size=5)


def test_no_weight_decay_and_reset_classifier():
    model = create_model("seed")
    assert model.no_weight_decay() == {"pos_embed", "cls_token"}
    model.reset_classifier(3)
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 3)
    assert model.cfg.num_classes == 3
    assert torch.count_nonzero(model.head.weight) == 0


def test_overfits_a_small_batch():
    torch.manual_seed(0)
    model = create_model("seed", num_classes=10, dropout=0.0)
    x = torch.randn(20, 3, 32, 32)
    y = torch.arange(20) % 10
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for _ in range(150):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    assert (model(x).argmax(1) == y).float().mean().item() == 1.0


def test_public_api():
    model = vitlab.create_model("seed", num_classes=10)
    assert isinstance(model, vitlab.VisionTransformer)


@pytest.mark.parametrize("overrides", [dict(), dict(attn_proj=True, qkv_bias=False), dict(drop_path=0.1)])
def test_class_token_shortcut_gives_the_full_encoders_logits_and_gradients(overrides):
    """forward() computes the last block for the class token alone; nothing the head reads may change."""
    torch.manual_seed(0)
    model = create_model("seed", num_classes=10, depth=3, dropout=0.0, **overrides)
    x = torch.randn(6, 3, 32, 32)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), model.forward_head(model.forward_features(x)), atol=1e-5, rtol=0)
    model.train()
    grads = []
    for full in (False, True):
        model.zero_grad()
        torch.manual_seed(1)  # the same drop-path draws for both
        logits = model.forward_head(model.forward_features(x)) if full else model(x)
        F.cross_entropy(logits, torch.arange(6)).backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for name, g in grads[1].items():
        torch.testing.assert_close(grads[0][name], g, atol=1e-5, rtol=1e-4, msg=name)


PRESET_NAMES = [name.removesuffix("[/P]") for name in available_presets()]


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_every_preset_forward_backward_attention_and_checkpoint(name, tmp_path):
    """timm's test matrix for vitlab: every preset at its default patch, cut to one or two blocks."""
    from vitlab.config import Config, image_hw
    from vitlab.train import load_checkpoint, save_checkpoint

    torch.manual_seed(0)
    model = create_model(name, num_classes=5, depth=min(preset_config(name).depth, 2)).train()
    x = torch.randn(2, 3, *image_hw(model.cfg.img_size))
    logits = model(x)
    assert logits.shape == (2, 5)
    logits.sum().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    model.eval()
    with torch.no_grad():
        plain = model(x)
        with_maps, maps = model.forward_attention(x)
    tokens = model.grid_size[0] * model.grid_size[1] + model.num_prefix_tokens
    assert len(maps) == model.cfg.depth and maps[0].shape == (2, model.cfg.heads, tokens, tokens)
    torch.testing.assert_close(with_maps, plain, atol=1e-4, rtol=1e-4)
    save_checkpoint(
        tmp_path / "m.pt",
        model,
        Config(model=model.cfg),
        {"classes": list("abcde"), "mean": [0.5] * 3, "std": [0.25] * 3},
    )
    loaded, _ = load_checkpoint(tmp_path / "m.pt")
    with torch.no_grad():
        assert torch.equal(loaded(x), plain)


def test_return_attention_flag_is_deprecated_but_still_works():
    torch.manual_seed(0)
    model = create_model("seed", depth=2).eval()
    x = torch.randn(2, 3, 32, 32)
    with pytest.warns(FutureWarning, match="forward_attention"):
        logits, maps = model(x, return_attention=True)
    assert torch.equal(logits, model.forward_attention(x)[0]) and len(maps) == 2
    assert isinstance(model(x), torch.Tensor)
