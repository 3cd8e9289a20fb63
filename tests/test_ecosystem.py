"""What users of timm and Hugging Face expect: activation checkpointing, fp16 with a gradient scaler,
class-weighted loss, TensorBoard logging."""

import json

import pytest
import torch
import torch.nn.functional as F

from vitlab.cli import main
from vitlab.errors import VitlabError
from vitlab.models import create_model
from vitlab.train import read_checkpoint
from vitlab.train.step import class_weights, forward_backward

FAST = ["--no-report", "--model", "seed", "--set", "model.depth=2", "--batch-size", "64", "--seed", "0"]


def grads(model):
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


@pytest.mark.parametrize("name,overrides", [("seed", {"dropout": 0.0}), ("seed", {"dropout": 0.1, "drop_path": 0.2}),
                                            ("air-s", {"depth": 2})])
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
    assert main(["train", "--data", str(small_cifar), "--epochs", "1", "--out", str(out), *FAST,
                 "--set", "train.precision=fp16"]) == 0
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
    assert main(["train", "--data", str(small_cifar), "--epochs", "2", "--out", str(out), *FAST, "--tensorboard",
                 "--set", "train.class_weights=balanced"]) == 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    assert {"train_loss", "val_acc", "lr", "images_per_s"} <= set(events.Tags()["scalars"])
    val = events.Scalars("val_acc")
    assert [e.step for e in val] == [r["step"] for r in records]
    assert [e.value for e in val] == pytest.approx([r["val_acc"] for r in records])
