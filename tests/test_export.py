import json
import warnings

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from vitlab.cli import main
from vitlab.config import Config
from vitlab.models import create_model
from vitlab.train import load_checkpoint, save_checkpoint


def test_safetensors_export_rebuilds_the_same_model(tmp_path, capsys):
    torch.manual_seed(0)
    model = create_model("hybrid", num_classes=4).eval()
    save_checkpoint(tmp_path / "m.pt", model, Config(model=model.cfg),
                    {"classes": ["a", "b", "c", "d"], "mean": [0.5] * 3, "std": [0.25] * 3})
    out = tmp_path / "m.safetensors"
    assert main(["export", str(tmp_path / "m.pt"), "--format", "safetensors", "--out", str(out)]) == 0
    loaded, meta = load_checkpoint(out)
    assert meta["classes"] == ["a", "b", "c", "d"] and meta["config"].model.stem == "conv"
    x = torch.randn(3, 3, 32, 32)
    assert torch.equal(model(x), loaded(x))


def test_export_errors_are_one_line(tmp_path, capsys):
    torch.manual_seed(0)
    model = create_model("seed", depth=1)
    save_checkpoint(tmp_path / "m.pt", model, Config(model=model.cfg), {"classes": list("ab"), "mean": [0.5] * 3, "std": [0.2] * 3})
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
    save_checkpoint(tmp_path / "m.pt", model, Config(model=model.cfg),
                    {"classes": list("abcde"), "mean": [0.5] * 3, "std": [0.25] * 3})
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
    save_checkpoint(tmp_path / "m.pt", model, Config(model=model.cfg),
                    {"classes": list("abc"), "mean": [0.5] * 3, "std": [0.25] * 3})
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
