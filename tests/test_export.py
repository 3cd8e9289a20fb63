import json
import warnings

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from vitlab.cli import main
from vitlab.config import Config, image_hw
from vitlab.models import create_model
from vitlab.train import load_checkpoint, save_checkpoint


def test_safetensors_export_rebuilds_the_same_model(tmp_path, capsys):
    torch.manual_seed(0)
    model = create_model("hybrid", num_classes=4).eval()
    save_checkpoint(
        tmp_path / "m.pt",
        model,
        Config(model=model.cfg),
        {"classes": ["a", "b", "c", "d"], "mean": [0.5] * 3, "std": [0.25] * 3},
    )
    out = tmp_path / "m.safetensors"
    assert main(["export", str(tmp_path / "m.pt"), "--format", "safetensors", "--out", str(out)]) == 0
    loaded, meta = load_checkpoint(out)
    assert meta["classes"] == ["a", "b", "c", "d"] and meta["config"].model.stem == "conv"
    x = torch.randn(3, 3, 32, 32)
    assert torch.equal(model(x), loaded(x))


def test_export_errors_are_one_line(tmp_path, capsys):
    torch.manual_seed(0)
    model = create_model("seed", depth=1)
    save_checkpoint(
        tmp_path / "m.pt", model, Config(model=model.cfg), {"classes": list("ab"), "mean": [0.5] * 3, "std": [0.2] * 3}
    )
    assert main(["export", str(tmp_path / "m.pt"), "--format", "pickle", "--out", str(tmp_path / "x")]) == 2
    assert "supported formats" in capsys.readouterr().err
    save_file({"w": torch.zeros(2)}, tmp_path / "plain.safetensors")
    assert main(["eval", str(tmp_path / "plain.safetensors")]) == 2
    assert "without vitlab's metadata" in capsys.readouterr().err
    (tmp_path / "junk.safetensors").write_bytes(b"junk")
    assert main(["eval", str(tmp_path / "junk.safetensors")]) == 2
    assert "not a readable safetensors file" in capsys.readouterr().err


@pytest.mark.parametrize("preset", ["seed", "hybrid"])
def test_onnx_export_matches_pytorch_in_onnxruntime_at_any_batch_size(tmp_path, preset):
    import onnx
    import onnxruntime as ort

    torch.manual_seed(0)
    model = create_model(preset, num_classes=5, depth=2).eval()
    save_checkpoint(
        tmp_path / "m.pt",
        model,
        Config(model=model.cfg),
        {"classes": list("abcde"), "mean": [0.5] * 3, "std": [0.25] * 3},
    )
    out = tmp_path / "m.onnx"
    assert main(["export", str(tmp_path / "m.pt"), "--format", "onnx", "--out", str(out)]) == 0
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    for batch in (1, 3, 17):  # the export traced batch 2: the batch dimension is dynamic
        x = torch.randn(batch, 3, 32, 32)
        (logits,) = session.run(None, {"images": x.numpy()})
        with torch.no_grad():
            np.testing.assert_allclose(logits, model(x).numpy(), atol=1e-4, rtol=0)
    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert json.loads(props["classes"]) == list("abcde") and json.loads(props["std"]) == [0.25] * 3
    assert not list(tmp_path.glob(".*.tmp"))


def test_torchscript_export_matches_pytorch(tmp_path):
    torch.manual_seed(0)
    model = create_model("seed", num_classes=3, depth=2).eval()
    save_checkpoint(
        tmp_path / "m.pt",
        model,
        Config(model=model.cfg),
        {"classes": list("abc"), "mean": [0.5] * 3, "std": [0.25] * 3},
    )
    out = tmp_path / "m.ts"
    assert main(["export", str(tmp_path / "m.pt"), "--format", "torchscript", "--out", str(out)]) == 0
    extra = {"vitlab.json": ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scripted = torch.jit.load(str(out), _extra_files=extra)
    assert json.loads(json.loads(extra["vitlab.json"])["classes"]) == list("abc")
    x = torch.randn(5, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), model(x), atol=1e-5, rtol=0)


def _paper_checkpoint(tmp_path, **overrides):
    torch.manual_seed(0)
    model = create_model("vit-ti/4", num_classes=3, depth=2, **overrides).eval()
    with torch.no_grad():  # non-trivial values everywhere, the head included
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    save_checkpoint(
        tmp_path / "m.pt",
        model,
        Config(model=model.cfg),
        {"classes": ["cat", "dog", "=cmd"], "mean": [0.4, 0.5, 0.6], "std": [0.2, 0.25, 0.3]},
    )
    return model


@pytest.mark.parametrize("size", [32, [32, 48]], ids=["square", "rectangular"])
def test_hf_export_loads_in_transformers_with_the_same_logits(tmp_path, size):
    from transformers import ViTForImageClassification

    model = _paper_checkpoint(tmp_path, img_size=size)
    (tmp_path / "summary.json").write_text(
        json.dumps(
            {
                "test_acc": 0.8123,
                "test_n": 10000,
                "val_acc": 0.8,
                "train_seconds": 600.0,
                "epochs": 5.9,
                "device": "cpu",
                "tta": "none",
            }
        )
    )
    out = tmp_path / "hf"
    assert main(["export", str(tmp_path / "m.pt"), "--format", "hf", "--out", str(out)]) == 0
    hf = ViTForImageClassification.from_pretrained(out).eval()
    assert hf.config.id2label == {0: "cat", 1: "dog", 2: "=cmd"}
    x = torch.randn(4, 3, *image_hw(size))
    with torch.no_grad():
        assert torch.allclose(hf(pixel_values=x).logits, model(x), atol=1e-4)
    assert "81.23%" in (out / "README.md").read_text()
    assert json.loads((out / "preprocessor_config.json").read_text())["image_mean"] == [0.4, 0.5, 0.6]
    # ... and back into vitlab through the importer: the same logits again
    from vitlab.models.pretrained import load_pretrained

    back = load_pretrained(str(out))
    assert back.mean == (0.4, 0.5, 0.6) and back.config.img_size == size
    rebuilt = create_model("vit-ti/4", num_classes=3, depth=2, norm_eps=back.config.norm_eps, img_size=size).eval()
    rebuilt.load_state_dict(back.state)
    with torch.no_grad():
        assert torch.allclose(rebuilt(x), model(x), atol=1e-4)


@pytest.mark.parametrize("pool,size", [("cls", 32), ("mean", 32), ("cls", [48, 32])])
def test_timm_export_builds_the_same_model_in_timm(tmp_path, pool, size):
    from vitlab.interop import timm_model

    model = _paper_checkpoint(tmp_path, pool=pool, img_size=size)
    out = tmp_path / "m-timm.safetensors"
    assert main(["export", str(tmp_path / "m.pt"), "--format", "timm", "--out", str(out)]) == 0
    theirs = timm_model(str(out))
    x = torch.randn(4, 3, *image_hw(size))
    with torch.no_grad():
        assert torch.allclose(theirs(x), model(x), atol=1e-4)
    if pool == "cls":  # timm -> vitlab through the importer
        from vitlab.models.pretrained import load_pretrained

        back = load_pretrained(str(out), heads=model.cfg.heads)
        assert back.config.img_size == size
        rebuilt = create_model("vit-ti/4", num_classes=3, depth=2, norm_eps=back.config.norm_eps, img_size=size).eval()
        rebuilt.load_state_dict(back.state)
        with torch.no_grad():
            assert torch.allclose(rebuilt(x), model(x), atol=1e-4)


@pytest.mark.parametrize("fmt", ["hf", "timm"])
@pytest.mark.parametrize(
    "preset,why", [("seed", "no attention output projection"), ("hybrid", "conv stem"), ("air-s", "whiten stem")]
)
def test_hub_export_refuses_other_layouts_in_one_line(tmp_path, capsys, fmt, preset, why):
    model = create_model(preset, num_classes=2, depth=1)
    save_checkpoint(
        tmp_path / "m.pt", model, Config(model=model.cfg), {"classes": list("ab"), "mean": [0.5] * 3, "std": [0.2] * 3}
    )
    assert main(["export", str(tmp_path / "m.pt"), "--format", fmt, "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert why in err and len(err.strip().splitlines()) == 1 and not (tmp_path / "x").exists()
