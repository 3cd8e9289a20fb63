from vitlab.bench import Case, compare, data_pipeline
from vitlab.cli import main


def test_compare_builds_twins_of_equal_size_and_measures_both():
    r = compare(Case("vit-ti/8", 4, "preset"), repeats=1)
    assert r["params"]["vitlab"] == r["params"]["timm"]
    for key in ("train_vitlab", "train_timm", "infer_vitlab", "infer_timm"):
        assert r[key] > 0
    assert r["train_ratio"] == r["train_vitlab"] / r["train_timm"]


def test_seed_twin_with_dropout_has_equal_size():
    r = compare(Case("seed", 2, "preset"), repeats=1, warmup=0)
    assert r["params"]["vitlab"] == r["params"]["timm"]


def test_data_pipeline_measures_images_per_second():
    assert data_pipeline(batch_size=8, repeats=1, steps=2) > 0


def test_bench_cli_rejects_bad_cases(capsys):
    assert main(["bench", "--cases", "seed"]) == 2
    assert "expected MODEL:BATCH" in capsys.readouterr().err
