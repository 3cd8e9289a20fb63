"""Progressive resizing: the size schedule, every model at a smaller image, and the trainer's use of both."""

import pytest
import torch

from vitlab.cli import main
from vitlab.config import Config, image_hw, validate
from vitlab.errors import VitlabError
from vitlab.models import available_presets, create_model, preset_config
from vitlab.models.vit import resample_pos_embed, token_grid
from vitlab.train.resize import progressive_hw, resize_batch

PRESET_NAMES = [name.removesuffix("[/P]") for name in available_presets()]


def test_the_size_starts_at_its_share_grows_in_patch_steps_and_is_full_from_until():
    sizes = [progressive_hw(p / 100, (32, 32), 0.75, 0.7, 4) for p in range(101)]
    assert sizes[0] == (24, 24) and sizes[34] == (24, 24)
    assert sizes[35] == (28, 28) and sizes[69] == (28, 28)
    assert all(s == (32, 32) for s in sizes[70:])
    assert all(h % 4 == 0 and h == w for h, w in sizes)
    assert [h for h, _ in sizes] == sorted(h for h, _ in sizes)
    # Non-square images: each side on its own; a side never drops under two steps or over its full size.
    assert progressive_hw(0.0, (36, 64), 0.5, 0.5, 8) == (16, 32)
    assert progressive_hw(0.0, (32, 32), 0.1, 0.5, 4) == (8, 8)
    assert progressive_hw(0.0, (32, 30), 1.0, 0.5, 4) == (32, 30)


def test_resize_batch_keeps_the_batch_at_its_size_and_averages_when_shrinking():
    x = torch.rand(2, 3, 32, 32)
    assert resize_batch(x, (32, 32)) is x
    small = resize_batch(x, (16, 16))
    assert small.shape == (2, 3, 16, 16)
    # Antialiased halving of a constant image is the constant; of a random one it keeps the mean.
    torch.testing.assert_close(resize_batch(torch.full((1, 3, 32, 32), 0.3), (16, 16)), torch.full((1, 3, 16, 16), 0.3))
    torch.testing.assert_close(small.mean(), x.mean(), atol=1e-2, rtol=0)


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_every_preset_trains_on_a_smaller_image_with_its_position_embedding_resampled(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=5, depth=min(preset_config(name).depth, 2)).train()
    hw = progressive_hw(0.0, image_hw(model.cfg.img_size), 0.75, 0.7, model.cfg.patch_size)
    assert hw != image_hw(model.cfg.img_size)
    x = torch.randn(2, 3, *hw)
    tokens = model.forward_features(x)
    grid = token_grid(model.cfg, hw)
    assert grid != model.grid_size and tokens.shape[1] == grid[0] * grid[1] + model.num_prefix_tokens
    model.forward_head(tokens).sum().backward()
    assert model.pos_embed.grad is not None and model.pos_embed.grad.abs().sum() > 0
    assert torch.isfinite(model.pos_embed.grad).all()


def test_a_smaller_image_sees_the_position_embedding_a_model_built_for_that_size_would_be_given():
    torch.manual_seed(0)
    small = dict(stem_channels=8, dim=32, heads=2, depth=1, mlp_dim=64, bn_group=4)
    model = create_model("air-s", num_classes=10, **small).eval()
    other = create_model("air-s", num_classes=10, img_size=24, **small).eval()
    state = model.state_dict()
    state["pos_embed"] = resample_pos_embed(state["pos_embed"], other.grid_size, 0, model.grid_size)
    other.load_state_dict(state)
    x = torch.randn(3, 3, 24, 24)
    with torch.no_grad():
        torch.testing.assert_close(model(x), other(x))
        # At the model's own size nothing is resampled: the embedding is used as it is.
        full = torch.randn(3, 3, 32, 32)
        assert torch.equal(model._embed(full), model.patch_embed(full) + model.pos_embed)


def test_training_steps_go_from_the_start_size_to_the_full_size(small_cifar, tmp_path, monkeypatch):
    import vitlab.train.trainer as trainer

    sizes = []

    def recording(x, hw):
        sizes.append(tuple(hw))
        return resize_batch(x, hw)

    monkeypatch.setattr(trainer, "resize_batch", recording)
    args = ["train", "--data", str(small_cifar), "--epochs", "2", "--out", str(tmp_path / "r"), "--no-report"]
    args += ["--model", "seed", "--set", "model.depth=2", "--batch-size", "64", "--seed", "0"]
    assert main([*args, "--set", "train.resize_start=0.75", "--set", "train.resize_until=0.5"]) == 0
    # 12 steps of 360 images in batches of 64; progress = step / 12, so 24 px for steps 0-2, 28 px for 3-5.
    assert sizes == [(24, 24)] * 3 + [(28, 28)] * 3 + [(32, 32)] * 6


@pytest.mark.parametrize(("key", "value"), [("resize_start", 0.0), ("resize_start", 1.5), ("resize_until", 0.0)])
def test_resize_options_are_validated(key, value):
    cfg = Config()
    setattr(cfg.train, key, value)
    with pytest.raises(VitlabError, match=f"train.{key}: expected a share in \\(0, 1\\]"):
        validate(cfg)
