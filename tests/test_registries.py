"""Registries of named factories: their names are exactly the config's choices, and an unknown name is an error
that lists the known ones."""

import re
from typing import get_args

import pytest
import torch
from torch import nn
from torchvision.transforms import v2

from vitlab import config
from vitlab.config import TrainConfig
from vitlab.data.augment import AUTO_AUGMENT, auto_augment, lookup_auto_augment
from vitlab.errors import VitlabError
from vitlab.models.presets import available_presets, preset_config
from vitlab.train.optim import OPTIMIZERS, SCHEDULES, build_optimizer, lookup_optimizer, lookup_schedule, lr_factor


def test_registries_match_config_choices():
    assert set(get_args(config.Optimizer)) == set(OPTIMIZERS)
    assert set(get_args(config.Schedule)) == set(SCHEDULES)
    # "none" is the config's off switch and "auto" a run-time choice between it and trivialaugment, not policies.
    assert set(get_args(config.AutoAugment)) == {"none", "auto", *AUTO_AUGMENT}


@pytest.mark.parametrize(
    "lookup, registry, prefix",
    [
        (lookup_optimizer, OPTIMIZERS, "train.optimizer: unknown optimizer 'lion'"),
        (lookup_schedule, SCHEDULES, "train.schedule: unknown schedule 'lion'"),
        (lookup_auto_augment, AUTO_AUGMENT, "data.auto_augment: unknown policy 'lion'"),
    ],
)
def test_unknown_name_lists_the_known_ones(lookup, registry, prefix):
    with pytest.raises(VitlabError, match=re.escape(f"{prefix} (known: {', '.join(registry)}")):
        lookup("lion")
    assert all(lookup(name) is registry[name] for name in registry)


def test_public_functions_go_through_the_registries():
    # A tree built in Python skips set_value's check of the choice.
    with pytest.raises(VitlabError, match=re.escape("known: adamw, adam, sgd, muon")):
        build_optimizer(nn.Linear(2, 2), TrainConfig(optimizer="lion"))
    with pytest.raises(VitlabError, match=re.escape("known: cosine, linear, onecycle, constant")):
        lr_factor("lion", 0.5, 0.1)
    with pytest.raises(VitlabError, match=re.escape("known: trivialaugment, randaugment")):
        auto_augment(torch.zeros(1, 3, 8, 8, dtype=torch.uint8), "lion")
    assert isinstance(lookup_auto_augment("randaugment")(), v2.RandAugment)


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(VitlabError, match=re.escape(f"unknown preset (known: {', '.join(available_presets())})")):
        preset_config("vit-xl")


@pytest.mark.parametrize(
    "name, kind", [("adamw", torch.optim.AdamW), ("adam", torch.optim.Adam), ("sgd", torch.optim.SGD)]
)
def test_optimizers_decay_matrices_only(name, kind):
    model = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4))  # one matrix; a bias, a norm weight and a norm bias
    opt = build_optimizer(model, TrainConfig(optimizer=name, lr=0.1, weight_decay=0.05, momentum=0.8))
    assert type(opt) is kind
    assert [g["weight_decay"] for g in opt.param_groups] == [0.05, 0.0]
    assert [len(g["params"]) for g in opt.param_groups] == [1, 3]
    assert all(g["lr"] == 0.1 for g in opt.param_groups)
    if name == "sgd":
        assert all(g["momentum"] == 0.8 and g["nesterov"] for g in opt.param_groups)


def test_schedules_warm_up_only_where_they_should():
    assert lr_factor("cosine", 0.025, 0.05) == pytest.approx(0.5)  # halfway through the warm-up
    assert lr_factor("cosine", 0.05, 0.05) == pytest.approx(1.0)
    assert lr_factor("cosine", 1.0, 0.05) == pytest.approx(0.0, abs=1e-12)
    assert lr_factor("constant", 0.0, 0.1) == 1.0  # no warm-up
    assert lr_factor("onecycle", 0.0, 0.5) == pytest.approx(1 / 25)  # its own rise, whatever train.warmup says
    assert lr_factor("onecycle", 0.3, 0.5) == pytest.approx(1.0)
    assert lr_factor("linear", -1.0, 0.1) == 0.0  # progress is clamped to [0, 1]
