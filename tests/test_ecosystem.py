"""What users of timm and Hugging Face expect: activation checkpointing, fp16 with a gradient scaler,
class-weighted loss, TensorBoard logging, non-square images."""

import json

import pytest
import torch
import torch.nn.functional as F

from PIL import Image

from vitlab.cli import main
from vitlab.config import Config, set_value, validate
from vitlab.data.images import fit_image
from vitlab.errors import VitlabError
from vitlab.models import create_model
from vitlab.models.pretrained import resample_pos_embed
from vitlab.train import read_checkpoint
from vitlab.train.step import class_weights, forward_backward

FAST = ["--no-report", "--model", "seed", "--set", "model.depth=2", "--batch-size", "64", "--seed", "0"]


def grads(model):
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


@pytest.mark.parametrize(
    "name,overrides",
    [("seed", {"dropout": 0.0}), ("seed", {"dropout": 0.1, "drop_path": 0.2}), ("air-s", {"depth": 2})],
)
def test_grad_checkpointing_gives_the_plain_paths_gradients(name, overrides):
    x, y = torch.randn(8, 3, 32, 32), torch.arange(8) % 10
    results = []
    for ckpt in (False, True):
        torch.manual_seed(0)
        model = create_model(name, num_classes=10, **overrides).train()
        model.set_grad_checkpointing(ckpt)
        torch.manual_seed(1)  # the same dropout masks: checkpointing replays the random state when recomputing
        loss, _ = forward_backward(model, x, y, micro_batch=8)
        results.append((loss, grads(model)))
    assert torch.allclose(results[0][0], results[1][0], atol=1e-6)
    assert torch.allclose(results[0][1], results[1][1], atol=1e-6)


def test_fp16_step_scales_the_loss_and_gives_close_gradients():
    torch.manual_seed(0)
    model = create_model("seed", num_classes=10, depth=2, dropout=0.0).train()
    x, y = torch.randn(8, 3, 32, 32), torch.arange(8) % 10
    forward_backward(model, x, y, micro_batch=8)
    ref = grads(model).clone()
    model.zero_grad()
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    loss, _ = forward_backward(model, x, y, micro_batch=8, precision="fp16", scaler=scaler)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    scaled = grads(model)
    assert torch.allclose(scaled / 1024.0, ref, atol=2e-3, rtol=0.05)  # the backward pass saw the loss x 1024


def test_fp16_training_run_saves_the_scaler_and_resumes(small_cifar, tmp_path):
    out = tmp_path / "r"
    assert (
        main(
            [
                "train",
                "--data",
                str(small_cifar),
                "--epochs",
                "1",
                "--out",
                str(out),
                *FAST,
                "--set",
                "train.precision=fp16",
            ]
        )
        == 0
    )
    state = read_checkpoint(out / "last.pt")
    assert state["config"]["train"]["precision"] == "fp16" and "scale" in state["grad_scaler"]
    assert main(["train", "--resume", str(out), "--epochs", "2", "--no-report"]) == 0
    assert read_checkpoint(out / "last.pt")["epoch"] == 2


def test_balanced_class_weights_and_weighted_loss():
    labels = torch.tensor([0] * 6 + [1] * 3 + [2] * 1)
    w = class_weights("balanced", labels, ["a", "b", "c"], torch.device("cpu"))
    assert torch.allclose(w, torch.tensor([10 / 18, 10 / 9, 10 / 3]))
    assert torch.allclose(w[labels].sum(), torch.tensor(10.0))  # the average image weighs 1
    torch.manual_seed(0)
    model = create_model("seed", num_classes=3, depth=1, dropout=0.0)
    x = torch.randn(10, 3, 32, 32)
    loss, _ = forward_backward(model, x, labels, micro_batch=4, class_weights=w)
    with torch.no_grad():
        per_image = F.cross_entropy(model(x), labels, reduction="none")
    assert torch.allclose(loss, (per_image * w[labels]).sum() / 10, atol=1e-5)


def test_class_weights_from_a_file_and_bad_files(tmp_path):
    classes = ["cat", "dog"]
    f = tmp_path / "w.json"
    f.write_text(json.dumps({"dog": 3}))
    assert class_weights(str(f), torch.tensor([0, 1]), classes, torch.device("cpu")).tolist() == [1.0, 3.0]
    f.write_text(json.dumps([0.5, 2]))
    assert class_weights(str(f), torch.tensor([0, 1]), classes, torch.device("cpu")).tolist() == [0.5, 2.0]
    for bad, why in [([1], "expected 2 numbers"), ({"cow": 1}, "unknown classes"), ([1, -1], "expected 2 numbers")]:
        f.write_text(json.dumps(bad))
        with pytest.raises(VitlabError, match=why):
            class_weights(str(f), torch.tensor([0, 1]), classes, torch.device("cpu"))
    with pytest.raises(VitlabError, match="readable JSON"):
        class_weights(str(tmp_path / "missing.json"), torch.tensor([0, 1]), classes, torch.device("cpu"))


def test_tensorboard_logs_the_metrics_fields(small_cifar, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "r"
    assert (
        main(
            [
                "train",
                "--data",
                str(small_cifar),
                "--epochs",
                "2",
                "--out",
                str(out),
                *FAST,
                "--tensorboard",
                "--set",
                "train.class_weights=balanced",
            ]
        )
        == 0
    )
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    assert {"train_loss", "val_acc", "lr", "images_per_s"} <= set(events.Tags()["scalars"])
    val = events.Scalars("val_acc")
    assert [e.step for e in val] == [r["step"] for r in records]
    assert [e.value for e in val] == pytest.approx([r["val_acc"] for r in records])


@pytest.mark.parametrize(
    "value,expected",
    [
        ("32x48", [32, 48]),
        ("48,32", [48, 32]),
        ("32x32", 32),
        (" 24 ", 24),
        ([16, 40], [16, 40]),
        ([32, 32], 32),
        (64, 64),
    ],
)
def test_img_size_is_a_side_or_height_by_width(value, expected):
    cfg = Config()
    set_value(cfg, "model.img_size", value)
    assert cfg.model.img_size == expected
    assert Config.from_dict(cfg.to_dict()).model.img_size == expected  # as saved in config.yaml and checkpoints


@pytest.mark.parametrize(
    "value,why",
    [
        ("32x", "height x width"),
        ("1x2x3", "height x width"),
        ([32.5, 8], "height x width"),
        ("30x48", "does not divide"),
        ("32x0", "positive"),
        ("8x32", "at least 9 px"),
        ("32x5000", "at most 4096"),
    ],
)
def test_bad_img_sizes_are_refused_in_one_line(value, why):
    cfg = Config()
    if why == "at least 9 px":
        set_value(cfg, "model.stem", "whiten")
    with pytest.raises(VitlabError, match=why):
        set_value(cfg, "model.img_size", value)
        validate(cfg)


@pytest.mark.parametrize("name", ["seed", "hybrid", "air-s", "vit-ti/4"])
def test_every_model_runs_on_rectangular_images(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, img_size=[32, 48], depth=2).eval()
    rows, cols = model.grid_size
    p = model.cfg.patch_size
    assert (rows, cols) == ((7, 11) if name == "air-s" else (32 // p, 48 // p))
    assert model.pos_embed.shape[1] == rows * cols + model.num_prefix_tokens
    x = torch.randn(2, 3, 32, 48)
    with torch.no_grad():
        logits, maps = model.forward_attention(x)
        features = model.forward_features(x)
    assert logits.shape == (2, 10) and torch.allclose(logits, model(x), atol=1e-5)
    assert features.shape == (2, rows * cols + model.num_prefix_tokens, model.cfg.dim)
    assert maps[0].shape[-1] == rows * cols + model.num_prefix_tokens


def test_position_embedding_resampling_to_a_rectangular_grid():
    torch.manual_seed(0)
    cols = torch.arange(4.0).repeat(4)  # a 4x4 grid whose value is the column index
    pe = torch.cat([torch.randn(1, 1, 2), torch.stack([cols, torch.zeros(16)], -1)[None]], dim=1)  # (1, 17, 2)
    wide = resample_pos_embed(pe, (4, 7), 1)
    assert wide.shape == (1, 1 + 28, 2) and torch.equal(wide[:, 0], pe[:, 0])
    grid = wide[0, 1:, 0].reshape(4, 7)
    assert torch.allclose(grid, grid[:1].expand(4, 7), atol=1e-5)  # rows stay alike: the columns were stretched
    assert (grid[0, 1:] >= grid[0, :-1] - 1e-5).all() and grid[0, -1] > grid[0, 0]  # still rising left to right
    back = resample_pos_embed(wide, 4, 1, old_grid=(4, 7))
    assert back.shape == pe.shape
    assert resample_pos_embed(wide, (4, 7), 1, old_grid=(4, 7)) is wide
    with pytest.raises(VitlabError, match="not a 5 x 5 grid"):
        resample_pos_embed(pe, 3, 1, old_grid=(5, 5))


def test_images_are_cropped_to_the_aspect_ratio_then_resized():
    img = torch.zeros(3, 40, 40, dtype=torch.uint8)
    img[:, :10] = 255  # a white band at the top, cut off by a 1:2 (height:width) crop of the centre
    out = fit_image(img, [20, 40])
    assert out.shape == (3, 20, 40) and out.max() == 0
    assert fit_image(img, [40, 20]).float().mean() > 0  # a 2:1 crop keeps the full height, band included
    strip = torch.full((3, 1, 300_000), 7, dtype=torch.uint8)  # an extreme aspect ratio stays cheap
    assert torch.equal(fit_image(strip, 32), torch.full((3, 32, 32), 7, dtype=torch.uint8))


def test_square_checkpoint_fine_tunes_on_rectangular_images(small_cifar, tmp_path):
    square = tmp_path / "square"
    assert main(["train", "--data", str(small_cifar), "--epochs", "1", "--out", str(square), *FAST]) == 0
    wide = tmp_path / "wide"
    assert (
        main(
            [
                "finetune",
                "--weights",
                str(square / "best.pt"),
                "--data",
                str(small_cifar),
                "--img-size",
                "32x48",
                "--epochs",
                "1",
                "--batch-size",
                "64",
                "--out",
                str(wide),
                "--no-report",
            ]
        )
        == 0
    )
    state = read_checkpoint(wide / "best.pt")
    assert state["config"]["model"]["img_size"] == [32, 48]
    assert state["model"]["pos_embed"].shape[1] == 1 + 8 * 12
    photo = tmp_path / "photo.png"
    Image.new("RGB", (300, 120), (200, 30, 30)).save(photo)
    assert main(["predict", str(wide / "best.pt"), str(photo), "--out", str(tmp_path / "p.csv")]) == 0
    assert main(["attention", str(wide / "best.pt"), str(photo), "--out", str(tmp_path / "att")]) == 0
    assert (tmp_path / "att" / "photo_attention.png").is_file()
    assert main(["eval", str(wide / "best.pt"), "--data", str(small_cifar)]) == 0
