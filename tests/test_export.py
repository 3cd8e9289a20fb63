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
