"""Class-specific explanations that mean something: on a task whose evidence sits in one quadrant, the maps of a
trained model point there; maps of randomised weights differ (Adebayo et al., 2018); the explanation of the
predicted class differs from another class's."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from vitlab.analysis.explain import METHODS, explain
from vitlab.cli import main
from vitlab.config import Config
from vitlab.models import create_model
from vitlab.train import save_checkpoint

# In normalised units: four class colours (red, blue, green, yellow), then four distractor colours.
COLORS = torch.tensor(
    [
        [1.0, -1.0, -1.0],
        [-1.0, -1.0, 1.0],
        [-1.0, 1.0, -1.0],
        [1.0, 1.0, -1.0],
        [1.0, -1.0, 1.0],
        [-1.0, 1.0, 1.0],
        [1.0, 1.0, 1.0],
        [-1.0, -1.0, -1.0],
    ]
)
CLASSES = ["red", "blue", "green", "yellow"]


def quadrant_task(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """32x32 noise with one coloured 8x8 patch in each quadrant: the top-left one in the class's colour, the
    others in distractor colours, so the evidence for the class is there and only there."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, 32, 32, generator=g) * 0.3
    labels = torch.randint(0, 4, (n,), generator=g)
    distractors = torch.randint(4, 8, (n, 3), generator=g)
    spots = torch.randint(0, 2, (n, 4, 2), generator=g)  # which of the quadrant's 2x2 patches
    for i in range(n):
        for q in range(4):
            r = 16 * (q // 2) + 8 * int(spots[i, q, 0])
            c = 16 * (q % 2) + 8 * int(spots[i, q, 1])
            colour = labels[i] if q == 0 else distractors[i, q - 1]
            x[i, :, r : r + 8, c : c + 8] = COLORS[colour][:, None, None]
    return x, labels


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    model = create_model(
        "seed", num_classes=4, depth=2, dim=64, heads=4, mlp_dim=128, patch_size=8, dropout=0.0, attn_proj=True
    )
    x, y = quadrant_task(1024, seed=1)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.0)
    model.train()
    for step in range(300):
        idx = torch.randint(0, len(x), (64,), generator=torch.Generator().manual_seed(step))
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    test_x, test_y = quadrant_task(64, seed=2)
    with torch.no_grad():
        acc = (model(test_x).argmax(1) == test_y).float().mean().item()
    assert acc > 0.95, f"the quadrant task did not train ({acc:.0%})"
    return model, test_x, test_y


def quadrant_mass(heat: torch.Tensor) -> torch.Tensor:
    """(B, 32, 32) -> (B, 4): each quadrant's share of the map."""
    q = heat.reshape(-1, 2, 16, 2, 16).sum((2, 4)).flatten(1)
    return q / q.sum(1, keepdim=True).clamp_min(1e-12)


def peak_in_evidence(heat: torch.Tensor) -> float:
    """The share of maps whose hottest pixel is in the top-left quadrant (chance: 1/4)."""
    peak = heat.flatten(1).argmax(1)
    return ((peak // 32 < 16) & (peak % 32 < 16)).float().mean().item()


@pytest.mark.parametrize(
    "method,peaks", [("grad-rollout", 0.5), ("rollout", 0.8), ("attention", 0.8), ("gradcam", None)]
)
def test_maps_point_at_the_evidence(trained, method, peaks):
    """Measured (seed 0): grad-rollout peaks there for 64% of images and puts 0.50 of its mass there (vs 0.15-0.21
    per other quadrant); Grad-CAM on the last block is the weakest (0.39 vs 0.18-0.22, peaks 42%), as it is
    known to be on ViTs; rollout and last-layer attention peak there for over 90%."""
    model, x, _ = trained
    _, heat = explain(model, x, method)
    mass = quadrant_mass(heat).mean(0)
    assert mass[0] > 1.5 * mass[1:].max(), mass
    if peaks is not None:
        assert peak_in_evidence(heat) >= peaks


@pytest.mark.parametrize("method", METHODS)
def test_randomised_weights_change_the_maps(trained, method):
    model, x, _ = trained
    _, heat = explain(model, x[:16], method)
    torch.manual_seed(123)
    random = create_model(
        "seed", num_classes=4, depth=2, dim=64, heads=4, mlp_dim=128, patch_size=8, dropout=0.0, attn_proj=True
    )
    _, heat_random = explain(random, x[:16], method)
    assert (heat - heat_random).abs().mean() > 0.05


@pytest.mark.parametrize("method", ["gradcam", "grad-rollout"])
def test_predicted_and_other_class_explanations_differ(trained, method):
    model, x, _ = trained
    logits, predicted = explain(model, x[:16], method)
    other = (logits.argmax(1) + 1) % 4
    _, against = explain(model, x[:16], method, target=other)
    assert (predicted - against).abs().mean() > 0.05


def test_every_pooling_and_stem_gets_maps_of_the_image_size():
    x = torch.randn(2, 3, 32, 48)
    for name, overrides in (("hybrid", {"pool": "seq"}), ("air-s", {}), ("seed", {"pool": "mean"})):
        model = create_model(name, num_classes=3, img_size=[32, 48], depth=2, dropout=0.0, **overrides)
        for method in METHODS:
            logits, heat = explain(model, x, method)
            assert logits.shape == (2, 3) and heat.shape == (2, 32, 48), (name, method)
            assert heat.min() >= 0 and heat.max() <= 1


def test_explain_command_writes_one_figure_per_image(trained, tmp_path, capsys):
    model, x, _ = trained
    save_checkpoint(
        tmp_path / "m.pt", model, Config(model=model.cfg), {"classes": CLASSES, "mean": [0.5] * 3, "std": [0.25] * 3}
    )
    img = ((x[0] * 0.25 + 0.5).clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    Image.fromarray(np.ascontiguousarray(img)).save(tmp_path / "spots.png")
    explain_args = ["explain", str(tmp_path / "m.pt"), str(tmp_path / "spots.png"), "--out", str(tmp_path / "x")]
    for method in METHODS:
        assert main([*explain_args, "--method", method, "--class", "blue", "--discard", "0.5"]) == 0
        assert (tmp_path / "x" / f"spots_{method}.png").stat().st_size > 1000
    capsys.readouterr()
    assert main([*explain_args, "--class", "purple"]) == 2
    assert "--class purple: not one of the model's classes (red, blue, green, yellow)" in capsys.readouterr().err
    assert main(["attention", str(tmp_path / "m.pt"), str(tmp_path / "spots.png"), "--out", str(tmp_path / "a")]) == 0
