"""End-to-end CLI runs on a small real subset of the CIFAR-10 copy."""

import csv
import json
import pickle
import subprocess
import sys

import pytest
import torch
from PIL import Image
from skimage import data as skdata

from vitlab.cli import error_text, main
from vitlab.config import Config, DataConfig
from vitlab.data.dataset import load_data
from vitlab.errors import VitlabError
from vitlab.models import create_model
from vitlab.models.presets import preset_config
from vitlab.train import load_checkpoint, read_checkpoint, save_checkpoint

FAST = ["--no-report", "--model", "seed", "--set", "model.depth=2", "--batch-size", "64", "--seed", "0"]


@pytest.fixture(scope="module")
def run_dir(small_cifar, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "r"
    assert main(["train", "--data", str(small_cifar), "--epochs", "2", "--out", str(out), *FAST]) == 0
    return out


def test_train_writes_metrics_checkpoints_and_summary(run_dir):
    for name in ("best.pt", "last.pt", "metrics.jsonl", "summary.json", "config.yaml"):
        assert (run_dir / name).is_file(), name
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2]
    for key in ("epoch", "step", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "seconds", "images_per_s"):
        assert key in lines[0], key
    assert lines[1]["step"] == 2 * 6  # 360 training images in batches of 64
    assert [len(r["step_loss"]) for r in lines] == [6, 6]  # every step's training loss, for the curves
    sizes = [64] * 5 + [40]
    weighted = sum(loss * n for loss, n in zip(lines[0]["step_loss"], sizes)) / 360
    assert weighted == pytest.approx(lines[0]["train_loss"], rel=1e-4)
    summary = json.loads((run_dir / "summary.json").read_text())
    for key in ("test_acc", "test_loss", "val_acc", "train_seconds", "epochs", "params", "images_per_s", "config"):
        assert key in summary, key
    assert summary["test_n"] == 100 and 0.0 <= summary["test_acc"] <= 1.0
    assert summary["config"]["model"]["depth"] == 2


def test_checkpoint_rebuilds_the_model_alone(run_dir):
    model, meta = load_checkpoint(run_dir / "best.pt")
    assert meta["classes"][0] == "airplane" and len(meta["mean"]) == 3
    assert meta["config"].model.depth == 2 and not model.training
    assert "optimizer" in read_checkpoint(run_dir / "last.pt")


def test_reload_gives_identical_logits(tmp_path):
    torch.manual_seed(0)
    model = create_model("seed", num_classes=10).eval()
    cfg = Config(model=model.cfg)
    save_checkpoint(tmp_path / "m.pt", model, cfg, {"classes": list("abcdefghij"), "mean": [0.5] * 3, "std": [0.2] * 3})
    loaded, _ = load_checkpoint(tmp_path / "m.pt")
    x = torch.randn(5, 3, 32, 32)
    assert torch.equal(model(x), loaded(x))


def test_eval_reproduces_the_summary(run_dir, small_cifar, capsys):
    assert main(["eval", str(run_dir / "best.pt"), "--data", str(small_cifar)]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    summary = json.loads((run_dir / "summary.json").read_text())
    assert result["n"] == 100
    assert result["accuracy"] == pytest.approx(summary["test_acc"], abs=1e-9)
    assert result["loss"] == pytest.approx(summary["test_loss"], rel=1e-5)
    assert main(["eval", str(run_dir / "best.pt"), "--split", "val"]) == 0
    val = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert val["n"] == 40 and val["accuracy"] == pytest.approx(summary["val_acc"], abs=1e-9)


def test_predict_on_photos_of_other_sizes(run_dir, tmp_path, capsys):
    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    Image.fromarray(skdata.chelsea()).save(photos / "chelsea.jpg")
    Image.fromarray(skdata.astronaut()).save(photos / "sub" / "astronaut.png")
    Image.fromarray(skdata.rocket()).convert("L").save(photos / "rocket.png")
    (photos / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    out = tmp_path / "preds.csv"
    assert main(["predict", str(run_dir / "best.pt"), str(photos), "--out", str(out), "--top-k", "3"]) == 0
    assert "broken.jpg" in capsys.readouterr().err
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 3
    assert {r["path"].split("/")[-1] for r in rows} == {"chelsea.jpg", "astronaut.png", "rocket.png"}
    classes = load_checkpoint(run_dir / "best.pt")[1]["classes"]
    assert list(rows[0])[:7] == ["path", "label", "confidence", "label_2", "confidence_2", "label_3", "confidence_3"]
    for r in rows:
        probs = [float(r[c]) for c in classes]
        assert sum(probs) == pytest.approx(1.0, abs=1e-4)
        assert r["label"] == classes[max(range(10), key=probs.__getitem__)]
        assert float(r["confidence"]) >= float(r["confidence_2"]) >= float(r["confidence_3"])


def test_predict_matches_eval_on_the_test_images(run_dir, small_cifar, tmp_path):
    """The CSV's labels on the test folder agree with the in-memory evaluation path."""
    out = tmp_path / "test.csv"
    assert main(["predict", str(run_dir / "best.pt"), str(small_cifar / "test"), "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    correct = sum(r["label"] == r["path"].split("/")[-2] for r in rows)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert correct / len(rows) == pytest.approx(summary["test_acc"], abs=1e-9)


def test_resume_continues_the_run(small_cifar, tmp_path):
    out = tmp_path / "r"
    assert main(["train", "--data", str(small_cifar), "--epochs", "1", "--out", str(out), *FAST]) == 0
    assert main(["train", "--resume", str(out), "--epochs", "2"]) == 0
    epochs = [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2]
    assert read_checkpoint(out / "last.pt")["step"] == 12


def test_seeded_runs_are_repeatable(small_cifar, tmp_path):
    for name in ("a", "b"):
        assert main(["train", "--data", str(small_cifar), "--epochs", "1", "--out", str(tmp_path / name), *FAST]) == 0
    a, b = (read_checkpoint(tmp_path / n / "last.pt")["model"] for n in ("a", "b"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_time_budget_stops_training(small_cifar, tmp_path):
    out = tmp_path / "r"
    args = ["train", "--data", str(small_cifar), "--time-budget", "1.5", "--out", str(out), *FAST]
    assert main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["train_seconds"] < 1.5 + 2.0  # the step in flight when the budget ran out finishes
    assert summary["steps"] >= 1


def error_of(capsys, argv):
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err and err.startswith("vitlab: error:")
    assert len(err.strip().splitlines()) == 1
    return err


def test_bad_inputs_give_one_clear_line(run_dir, small_cifar, tmp_path, capsys):
    assert "folder not found" in error_of(
        capsys, ["train", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "x")]
    )
    assert not (tmp_path / "x" / "summary.json").exists()
    assert "does not divide model.img_size" in error_of(
        capsys, ["train", "--data", str(small_cifar), "--set", "model.patch_size=5", "--out", str(tmp_path / "y")]
    )
    assert "already holds a run" in error_of(capsys, ["train", "--data", str(small_cifar), "--out", str(run_dir)])
    assert "--epochs" in error_of(
        capsys, ["train", "--data", str(small_cifar), "--epochs", "0", "--out", str(tmp_path / "z")]
    )
    assert "unknown preset" in error_of(capsys, ["train", "--model", "vit-q", "--out", str(tmp_path / "w")])
    assert "file not found" in error_of(capsys, ["eval", str(tmp_path / "nope.pt")])


def test_library_errors_name_config_fields_and_the_cli_names_its_flags(tmp_path, capsys):
    with pytest.raises(VitlabError) as info:
        preset_config("nope")
    e = info.value
    assert (e.field, e.value) == ("model.preset", "nope") and e.reason.startswith("unknown preset")
    assert str(e).startswith("model.preset=nope: unknown preset") and "--model" not in str(e)
    missing = tmp_path / "missing"
    with pytest.raises(VitlabError) as info:
        load_data(DataConfig(source=str(missing)), 32, 0, verbose=False)
    assert (info.value.field, info.value.value) == ("data.source", missing)
    assert str(info.value).startswith(f"data.source={missing}: folder not found") and "--data" not in str(info.value)
    # The same problems through the command line: the flags the user typed, as before.
    assert "--model nope: unknown preset (known:" in error_of(
        capsys, ["train", "--model", "nope", "--out", str(tmp_path / "r")]
    )
    assert f"--data {missing}: folder not found" in error_of(
        capsys, ["train", "--data", str(missing), "--out", str(tmp_path / "x")]
    )


def test_error_text_and_its_translation_to_flags():
    plain = VitlabError("something is wrong")
    assert str(plain) == plain.reason == "something is wrong" and plain.field is None and plain.value is None
    assert error_text(plain) == "something is wrong"
    top_k = VitlabError("expected 1 to 10, got 0", field="top_k")
    assert str(top_k) == "top_k: expected 1 to 10, got 0" and error_text(top_k) == "--top-k: expected 1 to 10, got 0"
    out = VitlabError("is a folder", field="out", value="preds")
    assert str(out) == "out=preds: is a folder" and error_text(out) == "--out preds: is a folder"
    no_flag = VitlabError("bad", field="model.dim", value=3)  # a field no flag sets: the library's own text
    assert error_text(no_flag) == str(no_flag) == "model.dim=3: bad"
    again = pickle.loads(pickle.dumps(out))  # e.g. from a DataLoader worker process
    assert (str(again), again.field, again.value, again.reason) == (str(out), "out", "preds", "is a folder")


def test_checkpoint_from_another_model_is_refused(run_dir, small_cifar, tmp_path, capsys):
    foreign = tmp_path / "foreign.pt"
    torch.save(create_model("seed").state_dict(), foreign)
    assert "not a vitlab checkpoint" in error_of(capsys, ["eval", str(foreign), "--data", str(small_cifar)])

    ckpt = read_checkpoint(run_dir / "best.pt")
    ckpt["config"]["model"]["dim"] = 64
    torch.save(ckpt, tmp_path / "mismatch.pt")
    assert "weights do not match" in error_of(capsys, ["eval", str(tmp_path / "mismatch.pt")])

    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"definitely not a checkpoint")
    assert "not a readable torch file" in error_of(capsys, ["predict", str(garbage), str(small_cifar / "test")])

    other = tmp_path / "other"
    for split in ("train", "test"):
        for c in ("x", "y"):
            (other / split / c).mkdir(parents=True)
            Image.fromarray(skdata.chelsea()).save(other / split / c / "a.jpg")
    assert "trained on 10 classes" in error_of(capsys, ["eval", str(run_dir / "best.pt"), "--data", str(other)])


def test_console_entry_points(tmp_path):
    res = subprocess.run(
        [sys.executable, "-m", "vitlab", "eval", str(tmp_path / "none.pt")], capture_output=True, text=True
    )
    assert res.returncode == 2 and "none.pt: file not found" in res.stderr and "Traceback" not in res.stderr
    res = subprocess.run(["vitlab", "--help"], capture_output=True, text=True)
    assert res.returncode == 0 and "predict" in res.stdout


def test_overwrite_replaces_a_run_and_keeps_other_files(small_cifar, tmp_path, capsys):
    out = tmp_path / "r"
    args = ["train", "--data", str(small_cifar), "--epochs", "2", "--out", str(out), *FAST]
    assert main(args) == 0
    (out / "notes.txt").write_text("mine")
    before = (out / "best.pt").read_bytes()
    assert "--overwrite" in error_of(capsys, args)  # refused without it, nothing touched
    assert (out / "best.pt").read_bytes() == before
    assert "--resume" in error_of(capsys, ["train", "--resume", str(out), "--overwrite"])
    assert main([*args[:3], "--epochs", "1", *args[5:], "--overwrite"]) == 0
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1]  # the old run's epochs are gone, not appended to
    assert (out / "notes.txt").read_text() == "mine"


def test_classifier_is_the_one_inference_path(run_dir, small_cifar, capsys):
    """``Classifier`` gives what ``vitlab eval`` and ``vitlab predict`` print, and embeddings and attention maps."""
    from vitlab.data.dataset import load_data
    from vitlab.inference import Classifier

    clf = Classifier.from_checkpoint(run_dir / "best.pt", "cpu", tta="none")
    assert clf.classes[0] == "airplane" and clf.device.type == "cpu" and not clf.model.training
    data = load_data(clf.config.data, clf.config.model.img_size, clf.config.train.seed, verbose=False)
    result = clf.evaluate(data.test)
    assert main(["eval", str(run_dir / "best.pt"), "--data", str(small_cifar), "--tta", "none"]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {k: printed[k] for k in result} == pytest.approx(result)
    for key in ("top5", "macro_f1", "balanced_accuracy", "ece"):
        assert 0.0 <= printed[key] <= 1.0, key
    images = data.test.images[:4]
    probs = clf.predict(images)
    assert probs.shape == (4, 10) and torch.allclose(probs.sum(1), torch.ones(4))
    logits, emb = clf.embed(images)
    assert emb.shape == (4, clf.config.model.dim) and torch.allclose(logits.softmax(1), probs, atol=1e-5)
    heat_logits, heat = clf.attention(images)
    assert heat["rollout"].shape == (4, 32, 32) and torch.allclose(heat_logits, logits, atol=1e-4)
    assert float(heat["last"].min()) == 0.0 and float(heat["last"].max()) == 1.0


def test_temperature_scaling_recovers_a_known_temperature():
    from vitlab.analysis.calibrate import fit_temperature

    g = torch.Generator().manual_seed(0)
    true_logits = torch.randn(4000, 10, generator=g) * 2
    labels = torch.multinomial(true_logits.softmax(1), 1, generator=g).flatten()
    assert fit_temperature(true_logits * 4.0, labels) == pytest.approx(4.0, rel=0.1)  # 4x overconfident


def test_calibrate_writes_a_new_checkpoint_and_keeps_the_ranking(run_dir, tmp_path, capsys):
    from vitlab.inference import Classifier

    before = (run_dir / "best.pt").read_bytes()
    out = tmp_path / "calibrated.pt"
    assert main(["calibrate", str(run_dir / "best.pt"), "--out", str(out)]) == 0
    assert "temperature" in capsys.readouterr().out and (run_dir / "best.pt").read_bytes() == before
    plain = Classifier.from_checkpoint(run_dir / "best.pt", "cpu", tta="none")
    calibrated = Classifier.from_checkpoint(out, "cpu", tta="none")
    assert calibrated.temperature != 1.0 and "optimizer" not in read_checkpoint(out)
    x = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    assert torch.equal(plain.logits(x).argmax(1), calibrated.logits(x).argmax(1))
    torch.testing.assert_close(calibrated.logits(x), plain.logits(x) / calibrated.temperature)
    assert main(["calibrate", str(out), "--out", str(out)]) == 2
    assert "is the input checkpoint" in capsys.readouterr().err
