"""data.auto_augment=auto: TrivialAugment only for runs with the epochs to spend on it, chosen before the first step
and saved with the run."""

import math

import pytest
import yaml

import vitlab.data.augment as augment
import vitlab.train.trainer as trainer
from vitlab.cli import main
from vitlab.config import Config, validate
from vitlab.errors import VitlabError
from vitlab.train import load_checkpoint


def test_planned_epochs_are_the_epochs_asked_for_or_what_the_budget_allows():
    cfg = Config()
    assert trainer.planned_epochs(cfg, 45000, None) == trainer.DEFAULT_EPOCHS
    cfg.train.epochs = 7
    assert trainer.planned_epochs(cfg, 45000, 0.3) == 7
    cfg.train.epochs, cfg.train.time_budget = None, 3600.0
    # 3,600 s at 0.3 s a step of 128 images over 45,000 images: 34.1 epochs; 600 s already spent leaves 28.4.
    assert math.isclose(trainer.planned_epochs(cfg, 45000, 0.3), 3600 / 0.3 * 128 / 45000)
    assert math.isclose(trainer.planned_epochs(cfg, 45000, 0.3, spent=600), 3000 / 0.3 * 128 / 45000)
    cfg.train.epochs = 5  # both set: the run stops at whichever comes first
    assert trainer.planned_epochs(cfg, 45000, 0.3) == 5


def _record_policies(monkeypatch) -> list[str]:
    used = []
    real = augment.auto_augment
    monkeypatch.setattr(augment, "auto_augment", lambda x, policy: used.append(policy) or real(x, policy))
    return used


def _run_args(data, out) -> list[str]:
    args = ["train", "--data", str(data), "--out", str(out), "--no-report", "--model", "seed"]
    return args + ["--set", "model.depth=1", "--batch-size", "64", "--seed", "0", "--set", "data.auto_augment=auto"]


@pytest.mark.parametrize(("threshold", "chosen"), [(2, "trivialaugment"), (3, "none")])
def test_auto_chooses_trivialaugment_from_its_epoch_threshold_and_saves_the_choice(
    small_cifar, tmp_path, monkeypatch, capsys, threshold, chosen
):
    used = _record_policies(monkeypatch)
    out = tmp_path / "run"
    args = [*_run_args(small_cifar, out), "--epochs", "2", "--set", f"data.auto_augment_epochs={threshold}"]
    assert main(args) == 0
    assert f"augmentation: auto chose {chosen}, random erasing 0 (2.0 epochs planned" in capsys.readouterr().out
    # 360 training images in batches of 64: 6 steps an epoch, every one through the chosen policy or none.
    assert used == (["trivialaugment"] * 12 if chosen == "trivialaugment" else [])
    assert yaml.safe_load((out / "config.yaml").read_text())["data"]["auto_augment"] == chosen
    for name in ("last.pt", "best.pt"):  # a resumed run reads its config from last.pt: the choice stays
        assert load_checkpoint(out / name)[1]["config"].data.auto_augment == chosen


@pytest.mark.parametrize(("threshold", "chosen"), [(0.5, "trivialaugment"), (1.0, "none")])
def test_under_a_time_budget_the_step_is_timed_even_with_a_fixed_format(
    small_cifar, tmp_path, monkeypatch, capsys, threshold, chosen
):
    timed = []

    def probe(model, x, y, *, micro_batch, candidates):
        timed.append(candidates)
        return {c: 0.5 for c in candidates}

    monkeypatch.setattr(trainer, "probe_step", probe)
    args = _run_args(small_cifar, tmp_path / "run") + ["--time-budget", "2"]
    args += ["--set", f"data.auto_augment_epochs={threshold}"]
    assert main(args) == 0
    assert timed == [[("fp32", "contiguous")]]  # the config's fixed format, timed once
    out = capsys.readouterr().out
    assert "step format: fp32, contiguous (a training step took fp32 contiguous 0.500 s" in out
    # 2 s at 0.5 s a step of 64 images over 360 images: 0.71 epochs (less the probe's own few milliseconds).
    assert f"augmentation: auto chose {chosen}, random erasing 0 (0.7 epochs planned" in out


@pytest.mark.parametrize(("threshold", "erasing"), [(2, 0.0), (3, 0.25)])
def test_auto_augment_erasing_replaces_random_erasing_only_when_trivialaugment_is_chosen(
    small_cifar, tmp_path, monkeypatch, capsys, threshold, erasing
):
    used = []
    real = augment.random_erasing
    monkeypatch.setattr(augment, "random_erasing", lambda x, p, g: used.append(p) or real(x, p, g))
    out = tmp_path / "run"
    args = [*_run_args(small_cifar, out), "--epochs", "2", "--set", f"data.auto_augment_epochs={threshold}"]
    args += ["--set", "data.random_erasing=0.25", "--set", "data.auto_augment_erasing=0"]
    assert main(args) == 0
    assert f", random erasing {erasing:g} (2.0 epochs planned" in capsys.readouterr().out
    assert used == ([] if erasing == 0 else [0.25] * 12)  # 6 steps an epoch, each erasing at the chosen rate
    assert yaml.safe_load((out / "config.yaml").read_text())["data"]["random_erasing"] == erasing
    assert load_checkpoint(out / "last.pt")[1]["config"].data.random_erasing == erasing


def test_a_fixed_policy_and_an_epoch_run_need_no_probe(small_cifar, tmp_path, monkeypatch):
    monkeypatch.setattr(trainer, "probe_step", lambda *a, **k: pytest.fail("probed"))
    args = _run_args(small_cifar, tmp_path / "run") + ["--epochs", "1"]
    assert main(args) == 0
    args = _run_args(small_cifar, tmp_path / "fixed") + ["--time-budget", "1", "--set", "data.auto_augment=none"]
    assert main(args) == 0


def test_the_epoch_threshold_and_the_erasing_are_validated():
    cfg = Config()
    cfg.data.auto_augment_epochs = -1.0
    with pytest.raises(VitlabError, match=r"data.auto_augment_epochs: expected 0 or more epochs, got -1.0"):
        validate(cfg)
    cfg.data.auto_augment_epochs, cfg.data.auto_augment_erasing = 24.0, 1.5
    with pytest.raises(VitlabError, match=r"data.auto_augment_erasing: expected a probability in \[0, 1\], got 1.5"):
        validate(cfg)
