import torch

from vitlab.bench import Case, compare, data_pipeline, timm_twin
from vitlab.cli import main
from vitlab.models import create_model, preset_config


def test_compare_builds_twins_of_equal_size_and_measures_both():
    r = compare(Case("vit-ti/8", 4, "preset"), repeats=1)
    assert r["params"]["vitlab"] == r["params"]["timm"]
    for key in ("train_vitlab", "train_timm", "infer_vitlab", "infer_timm"):
        assert r[key] > 0
    assert r["train_timm"] != r["train_vitlab"]  # two separate measurements, not one number reused


def test_timm_twin_is_the_same_network():
    """Like with like: given vitlab's weights, the timm twin computes vitlab's logits (up to LayerNorm epsilon)."""
    from vitlab.interop import to_timm_state

    cfg = preset_config("vit-ti/8")
    cfg.dropout = 0.0
    torch.manual_seed(0)
    ours = create_model("vit-ti/8", num_classes=cfg.num_classes, dropout=0.0).eval()
    twin = timm_twin(cfg).eval()
    for module in twin.modules():
        if isinstance(module, torch.nn.LayerNorm):
            module.eps = cfg.norm_eps
    twin.load_state_dict(to_timm_state(cfg, ours.state_dict()))
    assert sum(p.numel() for p in twin.parameters()) == ours.num_params
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(twin(x), ours(x), atol=1e-4, rtol=0)


def test_seed_twin_with_dropout_has_equal_size():
    r = compare(Case("seed", 2, "preset"), repeats=1, warmup=0)
    assert r["params"]["vitlab"] == r["params"]["timm"]


def test_data_pipeline_measures_images_per_second():
    assert data_pipeline(batch_size=8, repeats=1, steps=2) > 0


def test_bench_cli_rejects_bad_cases(capsys):
    assert main(["bench", "--cases", "seed"]) == 2
    assert "expected MODEL:BATCH" in capsys.readouterr().err
