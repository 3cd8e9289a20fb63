import re
import typing

import pytest

from vitlab.config import Config, load_yaml, parse_set, set_value, validate
from vitlab.models.presets import apply_config_file
from vitlab.errors import VitlabError


def test_set_converts_types():
    cfg = Config()
    set_value(cfg, "model.dim", "256")
    set_value(cfg, "train.lr", "3e-4")
    set_value(cfg, "data.hflip", "false")
    set_value(cfg, "train.epochs", "none")
    assert (cfg.model.dim, cfg.train.lr, cfg.data.hflip, cfg.train.epochs) == (256, 3e-4, False, None)


@pytest.mark.parametrize(
    "key,value,match",
    [
        ("model.depthh", "3", "unknown key 'depthh'"),
        ("optim.lr", "1", "unknown section"),
        ("lr", "1", "section.field"),
        ("model.dim", "big", "expected a value of type int"),
        ("model.dim", "1.5", "expected a value of type int"),
        ("data.hflip", "maybe", "expected a value of type bool"),
    ],
)
def test_set_rejects_bad_keys_and_values(key, value, match):
    with pytest.raises(VitlabError, match=match):
        set_value(Config(), key, value)


def test_parse_set_needs_equals():
    assert parse_set(["train.lr=0.1"]) == [("train.lr", "0.1")]
    with pytest.raises(VitlabError, match="key=value"):
        parse_set(["train.lr"])


def test_yaml_applies_preset_then_fields(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("model:\n  preset: vit-ti/4\n  depth: 2\ntrain:\n  lr: 0.01\n")
    cfg = Config()
    apply_config_file(cfg, load_yaml(f), str(f))
    assert (cfg.model.dim, cfg.model.depth, cfg.model.patch_size, cfg.train.lr) == (192, 2, 4, 0.01)


def test_yaml_errors_name_the_file(tmp_path):
    with pytest.raises(VitlabError, match="file not found"):
        load_yaml(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed")
    with pytest.raises(VitlabError, match="bad.yaml: not valid YAML"):
        load_yaml(bad)


def test_round_trip_through_dict():
    cfg = Config()
    set_value(cfg, "model.preset", "custom")
    set_value(cfg, "model.dim", "64")
    set_value(cfg, "model.heads", "4")
    assert Config.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    "key,value,match",
    [
        ("train.epochs", 0, "train.epochs: expected a positive integer"),
        ("train.batch_size", -1, "train.batch_size"),
        ("train.time_budget", 0, "train.time_budget: expected a positive number of seconds"),
        ("model.heads", 3, "does not divide model.dim"),
        ("train.optimizer", "lion", "adamw, adam, sgd or muon"),
        ("train.time_budget", "nan", "train.time_budget: expected a finite number"),
        ("train.lr", "inf", "train.lr: expected a finite number"),
        ("train.mixup", "nan", "train.mixup: expected a finite number"),
        ("data.mean", "0.5,nan,0.5", "data.mean: expected a finite number"),
        ("train.precision", "fp8", "fp32, bf16, fp16 or auto"),
    ],
)
def test_validate_names_the_option(key, value, match):
    cfg = Config()
    with pytest.raises(VitlabError, match=match):  # choice fields already refuse when set, the rest in validate
        set_value(cfg, key, value)
        validate(cfg)


def test_every_shipped_preset_file_resolves():
    from pathlib import Path

    files = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))
    assert files
    for f in files:
        text = f.read_text()
        assert text.startswith("#") and "Command:" in text, f"{f.name}: header must state the command"
        cfg = Config()
        apply_config_file(cfg, load_yaml(f), str(f))
        validate(cfg)


LITERAL_FIELDS = [
    (section, name, typing.get_args(typ))
    for section in ("model", "data", "train")
    for name, typ in typing.get_type_hints(type(getattr(Config(), section))).items()
    if typing.get_origin(typ) is typing.Literal
]


@pytest.mark.parametrize("section,name,choices", LITERAL_FIELDS, ids=[f"{s}.{n}" for s, n, _ in LITERAL_FIELDS])
def test_every_choice_field_lists_its_values_when_set_and_when_validated(section, name, choices):
    listed = f"expected {', '.join(choices[:-1])} or {choices[-1]}, got 'bogus'"
    with pytest.raises(VitlabError, match=re.escape(f"{section}.{name}: {listed}")):
        set_value(Config(), f"{section}.{name}", "bogus")
    cfg = Config()
    setattr(getattr(cfg, section), name, "bogus")  # a tree built in Python skips set_value
    with pytest.raises(VitlabError, match=re.escape(f"{section}.{name}: {listed}")):
        validate(cfg)
    for value in choices:
        cfg = Config()
        set_value(cfg, f"{section}.{name}", value)
        assert getattr(getattr(cfg, section), name) == value
