"""Hybrid (conv stem) and compact (sequence pooling) variants, stochastic depth, and recipe options."""

import pytest
import torch
import torch.nn.functional as F

from vitlab.models.attention import attention_rollout, last_layer_cls_attention
from vitlab.cli import main
from vitlab.data.augment import BatchTransform, auto_augment, random_erasing
from vitlab.errors import VitlabError
from vitlab.models import create_model
from vitlab.train import read_checkpoint
from vitlab.train.step import batch_mixer, forward_backward

HYBRID = dict(stem="conv", patch_size=8, stem_channels=16, dim=64, heads=4, depth=2, mlp_dim=128)


@pytest.mark.parametrize("pool,tokens", [("cls", 17), ("seq", 16), ("mean", 16)])
def test_hybrid_shapes_maps_and_embeddings(pool, tokens):
    model = create_model("seed", num_classes=5, pool=pool, **HYBRID).eval()
    x = torch.randn(3, 3, 32, 32)
    logits, maps = model.forward_attention(x)
    assert logits.shape == (3, 5) and len(maps) == 2 and maps[0].shape == (3, 4, tokens, tokens)
    assert torch.allclose(model(x), logits, atol=1e-5)  # fused and manual attention agree
    assert model.forward_head(model.forward_features(x), pre_logits=True).shape == (3, 64)
    assert model.num_prefix_tokens == (1 if pool == "cls" else 0)
    assert last_layer_cls_attention(maps, model.num_prefix_tokens).shape == (3, 16)
    assert attention_rollout(maps, model.num_prefix_tokens).shape == (3, 16)


def test_conv_stem_stages_follow_the_patch_size():
    convs = [m for m in create_model("seed", **HYBRID).patch_embed.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [16, 16, 64]  # 32 -> 16 -> 8 -> 4: three stages for patch 8
    with pytest.raises(VitlabError, match="power of two"):
        create_model("seed", stem="conv", patch_size=6, img_size=36)


def test_sequence_pooling_is_a_weighted_average_of_tokens():
    model = create_model("seed", pool="seq", **{**HYBRID, "depth": 1}).eval()
    tokens = torch.randn(2, 16, 64)
    pooled = model.forward_head(tokens, pre_logits=True)
    w = model.attn_pool(tokens).softmax(1)
    assert torch.allclose(pooled, (w * tokens).sum(1), atol=1e-6)


@pytest.mark.parametrize("pool", ["seq", "cls"])
def test_hybrid_overfits_a_small_batch(pool):
    torch.manual_seed(0)
    model = create_model("seed", num_classes=10, dropout=0.0, pool=pool, **HYBRID)
    x, y = torch.randn(20, 3, 32, 32), torch.arange(20) % 10
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(120):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    assert (model(x).argmax(1) == y).all()


def test_stochastic_depth_drops_whole_images_in_training_only():
    torch.manual_seed(0)
    model = create_model("seed", drop_path=0.5, dropout=0.0, **{**HYBRID, "depth": 4})
    rates = [getattr(b.drop_path, "p", 0.0) for b in model.blocks]
    assert rates == pytest.approx([0.0, 0.5 / 3, 1.0 / 3, 0.5])
    x = torch.randn(8, 3, 32, 32)
    model.train()
    assert not torch.equal(model(x), model(x))
    model.eval()
    assert torch.equal(model(x), model(x))


@pytest.mark.parametrize("mixup,cutmix", [(0.8, 0.0), (0.0, 1.0), (0.8, 1.0)])
def test_mixing_gives_soft_targets_that_sum_to_one(mixup, cutmix):
    torch.manual_seed(0)
    mix = batch_mixer(mixup, cutmix, num_classes=10)
    x, y = torch.randn(16, 3, 32, 32), torch.arange(16) % 10
    mixed, soft = mix(x, y)
    assert mixed.shape == x.shape and soft.shape == (16, 10)
    assert torch.allclose(soft.sum(1), torch.ones(16))
    assert (soft.max(1).values < 1).any()  # some targets really are mixtures
    assert not torch.equal(mixed, x)
    assert batch_mixer(0.0, 0.0, 10) is None
    model = create_model("seed", **HYBRID)
    loss, correct = forward_backward(model, mixed, soft, micro_batch=8)
    assert torch.isfinite(loss) and 0 <= int(correct) <= 16


def test_label_smoothing_changes_the_loss():
    model = create_model("seed", **HYBRID)
    x, y = torch.randn(4, 3, 32, 32), torch.arange(4)
    plain, _ = forward_backward(model, x, y, micro_batch=4)
    smooth, _ = forward_backward(model, x, y, micro_batch=4, label_smoothing=0.3)
    assert not torch.isclose(plain, smooth)


def test_ema_weights_are_validated_saved_and_resumed(small_cifar, tmp_path):
    out = tmp_path / "r"
    args = [
        "train",
        "--data",
        str(small_cifar),
        "--out",
        str(out),
        "--model",
        "seed",
        "--epochs",
        "1",
        "--batch-size",
        "64",
        "--no-report",
        "--set",
        "model.depth=1",
        "--set",
        "train.ema=0.9",
        "--set",
        "train.mixup=0.8",
    ]
    assert main(args) == 0
    last, best = read_checkpoint(out / "last.pt"), read_checkpoint(out / "best.pt")
    ema = {k.removeprefix("module."): v for k, v in last["ema"].items() if k.startswith("module.")}
    assert all(torch.equal(best["model"][k], ema[k]) for k in best["model"])
    assert not all(torch.equal(best["model"][k], last["model"][k]) for k in best["model"])
    assert main(["train", "--resume", str(out), "--epochs", "2", "--no-report"]) == 0
    assert read_checkpoint(out / "last.pt")["ema"]["n_averaged"].item() == 12


def test_random_erasing_zeroes_one_rectangle_per_chosen_image():
    x = torch.ones(64, 3, 32, 32)
    out = random_erasing(x, 0.5, torch.Generator().manual_seed(0))
    erased = (out == 0).all(1)  # (B, H, W): all channels of a pixel erased together
    chosen = erased.flatten(1).any(1)
    assert 10 < int(chosen.sum()) < 54  # about half the images
    for mask in erased[chosen]:
        rows, cols = mask.any(1).nonzero().flatten(), mask.any(0).nonzero().flatten()
        # one solid rectangle: every pixel inside its bounding box is erased
        assert mask[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1].all()
        area = int(mask.sum()) / (32 * 32)
        assert 0.01 <= area <= 0.4
    assert torch.equal(out[~chosen], x[~chosen])


@pytest.mark.parametrize("policy", ["trivialaugment", "randaugment"])
def test_auto_augment_changes_images_independently_and_keeps_uint8(policy):
    torch.manual_seed(0)
    x = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8)
    out = BatchTransform((0.5,) * 3, (0.25,) * 3, 32, auto_augment=policy)
    assert auto_augment(x, policy).dtype == torch.uint8
    y = out(x, torch.Generator().manual_seed(0))
    plain = BatchTransform((0.5,) * 3, (0.25,) * 3, 32)(x)
    changed = (y != plain).flatten(1).any(1)
    assert changed.sum() >= 8  # most images altered (an identity op can leave a few alone)
    assert not torch.equal(y, plain)
    assert torch.equal(out(x), plain)  # evaluation (no generator) is never augmented
