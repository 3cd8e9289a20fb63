"""The air-s / air-m recipe's parts: whitened batch-norm stem, ghost batch norm, reflect crops, the linear
schedule and test-time augmentation."""

import pytest
import torch

from vitlab.data.augment import random_crop
from vitlab.errors import VitlabError
from vitlab.models import create_model
from vitlab.models.vit import GhostBatchNorm2d, WhitenedConvStem
from vitlab.train.evaluate import tta_logits, tta_views
from vitlab.train.optim import lr_factor
from vitlab.train.step import forward_backward

SMALL_AIR = dict(stem_channels=8, dim=32, heads=2, depth=1, mlp_dim=64, bn_group=4)


@pytest.mark.parametrize("name", ["air-s", "air-m"])
def test_air_presets_make_49_tokens_and_attention_maps(name):
    model = create_model(name, num_classes=10).eval()
    x = torch.randn(2, 3, 32, 32)
    logits, maps = model.forward_attention(x)
    assert logits.shape == (2, 10) and len(maps) == 3 and maps[0].shape == (2, 4, 49, 49)
    assert torch.allclose(model(x), logits, atol=1e-5)


def test_whitening_filters_decorrelate_patches():
    g = torch.Generator().manual_seed(0)
    # Correlated, unequal-variance channels: neighbouring pixels alike, as in photos.
    base = torch.randn(64, 3, 17, 17, generator=g)
    images = torch.nn.functional.avg_pool2d(base, 2, stride=1) * torch.tensor([3.0, 1.0, 0.2]).view(1, 3, 1, 1)
    stem = WhitenedConvStem(create_model("air-s").cfg)
    stem.fit_whitening(images, eps=0.0)
    out = torch.nn.functional.conv2d(images, stem.whiten_weight)  # (B, 24, 15, 15)
    first = out[:, :12].permute(0, 2, 3, 1).reshape(-1, 12)
    cov = torch.cov(first.T)
    assert torch.allclose(cov, torch.eye(12), atol=2e-3)
    assert torch.equal(out[:, 12:], -out[:, :12])  # each filter with both signs
    assert not stem.whiten_weight.requires_grad  # frozen: a buffer, not a parameter
    assert "whiten_weight" not in dict(stem.named_parameters())


def test_ghost_batch_norm_normalises_fixed_groups():
    bn = GhostBatchNorm2d(3, group=4).train()
    x = torch.randn(8, 3, 5, 5) * 3 + 1
    y = bn(x)
    for part in y.split(4):  # each group of 4 has zero mean and unit variance per channel on its own
        assert torch.allclose(part.mean((0, 2, 3)), torch.zeros(3), atol=1e-5)
        assert torch.allclose(part.var((0, 2, 3), unbiased=False), torch.ones(3), atol=1e-3)
    assert not torch.allclose(y, torch.nn.BatchNorm2d(3).train()(x), atol=1e-3)  # not the whole batch's statistics


def test_micro_batches_and_whole_batch_give_the_same_update():
    """Ghost batch norm keeps a CPU's micro-batches and a GPU's whole batch the same maths."""
    grads, stats = [], []
    for micro in (4, 16):
        torch.manual_seed(0)
        model = create_model("air-s", num_classes=10, **SMALL_AIR).train()
        x, y = torch.randn(16, 3, 32, 32, generator=torch.Generator().manual_seed(1)), torch.arange(16) % 10
        forward_backward(model, x, y, micro_batch=micro)
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
        stats.append(torch.cat([b.flatten() for n, b in model.named_buffers() if "running" in n]))
    assert torch.allclose(grads[0], grads[1], atol=1e-5, rtol=1e-4)
    assert torch.allclose(stats[0], stats[1], atol=1e-6)


def test_channels_last_batches_give_the_same_update_and_logits_and_reach_the_stem_in_that_layout():
    """train.memory_format only changes how a batch is laid out for the convolutions, never the maths."""
    from vitlab.data.augment import BatchTransform
    from vitlab.train.evaluate import predict_logits

    grads, logits, seen = [], [], []
    for layout in ("contiguous", "channels_last"):
        torch.manual_seed(0)
        model = create_model("air-s", num_classes=10, **SMALL_AIR).train()
        conv = model.patch_embed.net[1][0]
        hook = conv.register_forward_pre_hook(lambda m, args: seen.append(args[0].is_contiguous()))
        x, y = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(1)), torch.arange(8)
        forward_backward(model, x, y, micro_batch=4, memory_format=layout)
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
        assert all(p.grad.is_contiguous() for p in model.parameters() if p.grad is not None)  # Muon views them
        images = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
        transform = BatchTransform((0.5,) * 3, (0.25,) * 3, 32, device=torch.device("cpu"))
        logits.append(predict_logits(model, images, transform, 4, torch.device("cpu"), "full", layout))
        hook.remove()
    assert seen[:2] == [True, True] and not any(seen[-4:])  # two training micro-batches each, then inference
    assert torch.allclose(grads[0], grads[1], atol=1e-5, rtol=1e-4)
    assert torch.allclose(logits[0], logits[1], atol=1e-4, rtol=1e-4)


def test_reflect_crop_takes_windows_of_the_mirrored_image():
    x = torch.randint(0, 256, (6, 3, 8, 8), dtype=torch.uint8)
    out = random_crop(x, 2, torch.Generator().manual_seed(0), mode="reflect")
    padded = torch.nn.functional.pad(x.float(), (2,) * 4, mode="reflect").to(torch.uint8)
    assert out.dtype == torch.uint8 and out.shape == x.shape
    for img, pad in zip(out, padded):
        windows = [pad[:, i : i + 8, j : j + 8] for i in range(5) for j in range(5)]
        assert any(torch.equal(img, w) for w in windows)
    assert (out != 0).float().mean() > 0.99  # no zero borders


def test_linear_schedule_warms_up_then_decays_to_zero():
    assert lr_factor("linear", 0.0, 0.1) == 0.0
    assert lr_factor("linear", 0.05, 0.1) == pytest.approx(0.5)
    assert lr_factor("linear", 0.1, 0.1) == pytest.approx(1.0)
    assert lr_factor("linear", 0.55, 0.1) == pytest.approx(0.5)
    assert lr_factor("linear", 1.0, 0.1) == 0.0


def test_tta_averages_the_views_logits():
    torch.manual_seed(0)
    model = create_model("air-s", num_classes=10, **SMALL_AIR).eval()
    x = torch.randn(3, 3, 32, 32)
    views = tta_views(x, "full")
    assert len(views) == 6 and all(v.shape == x.shape for v in views)
    assert torch.equal(views[1][..., 1:, 1:], x[..., :-1, :-1])  # shifted by one pixel down-right
    assert torch.equal(views[3], x.flip(3))
    with torch.no_grad():
        expected = torch.stack([model(v) for v in views]).mean(0)
        assert torch.allclose(tta_logits(model, x, "full"), expected, atol=1e-5)
        assert torch.equal(tta_logits(model, x, "none"), model(x))
        assert not torch.allclose(tta_logits(model, x, "flip"), model(x), atol=1e-4)


def test_tta_leaves_a_flip_symmetric_model_unchanged():
    torch.manual_seed(0)
    inner = create_model("air-s", num_classes=10, **SMALL_AIR).eval()

    def symmetric(v: torch.Tensor) -> torch.Tensor:
        return (inner(v) + inner(v.flip(3))) / 2

    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(tta_logits(symmetric, x, "flip"), symmetric(x), atol=1e-5)


def test_whiten_stem_options_are_validated():
    with pytest.raises(VitlabError, match="model.patch_size"):
        create_model("air-s", patch_size=8)
    with pytest.raises(VitlabError, match="model.bn_group"):
        create_model("air-s", bn_group=1)


def test_muon_takes_exactly_the_encoder_blocks_matrices():
    from vitlab.config import TrainConfig
    from vitlab.train.optim import build_optimizer, muon_params

    model = create_model("air-s", num_classes=10, **SMALL_AIR)
    opt = build_optimizer(model, TrainConfig(optimizer="muon", lr=1e-3))
    names = {id(p): n for n, p in model.named_parameters()}
    in_muon = {names[id(p)] for g in opt.muon.param_groups for p in g["params"]}
    assert (
        in_muon
        == set(muon_params(model))
        == {n for n, p in model.named_parameters() if p.ndim == 2 and n.startswith("blocks.")}
    )
    assert {"blocks.0.attn.qkv.weight", "blocks.0.mlp.0.weight", "blocks.0.mlp.3.weight"} <= in_muon
    in_adamw = {names[id(p)] for g in opt.adamw.param_groups for p in g["params"]}
    assert not in_muon & in_adamw and in_muon | in_adamw == set(names.values())
    x, y = torch.randn(8, 3, 32, 32), torch.arange(8)
    forward_backward(model.train(), x, y, micro_batch=8)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt.step()
    assert all(not torch.equal(before[n], p) for n, p in model.named_parameters() if p.grad is not None)
    state = opt.state_dict()
    opt.load_state_dict(state)  # round trip for checkpoints


def test_alternating_flip_mirrors_each_image_on_alternate_epochs():
    from vitlab.data.augment import BatchTransform, alternating_flips

    idx = torch.tensor([5, 0, 7, 3, 9, 1, 2, 8])
    masks = [alternating_flips(idx, epoch, seed=0, n=10) for epoch in range(4)]
    assert torch.equal(masks[1], ~masks[0]) and torch.equal(masks[2], masks[0]) and torch.equal(masks[3], ~masks[0])
    assert 0 < masks[0].sum() < len(idx)  # a random side to start with, not all the same
    full = alternating_flips(torch.arange(10), 0, seed=0, n=10)
    assert torch.equal(full[idx], masks[0])  # a property of the image, not of its place in the batch
    x = torch.randint(0, 256, (8, 3, 4, 4), dtype=torch.uint8)
    t = BatchTransform([0.5] * 3, [0.5] * 3, 4, hflip=True)
    out = t(x, torch.Generator().manual_seed(0), masks[1])
    plain = t(x)
    for i in range(8):
        assert torch.equal(out[i], plain[i].flip(2) if masks[1][i] else plain[i])


def _qk_and_value_paths(block):
    """Per head W_q^T W_k (D, D), and the value path W_o W_v (D, D) (W_v alone without an output projection)."""
    attn = block.attn
    dim, hd = attn.qkv.in_features, attn.head_dim
    wq, wk, wv = attn.qkv.weight.detach().split(dim)
    qk = [wq[h * hd : (h + 1) * hd].T @ wk[h * hd : (h + 1) * hd] for h in range(attn.heads)]
    value = attn.proj.weight.detach() @ wv if isinstance(attn.proj, torch.nn.Linear) else wv
    return qk, value


@pytest.mark.parametrize(("name", "overrides"), [("air-s", {}), ("air-s", {"attn_proj": True}), ("seed", {"depth": 2})])
def test_mimetic_init_makes_qk_near_identity_and_value_path_near_minus_identity(name, overrides):
    torch.manual_seed(0)
    model = create_model(name, attn_init="mimetic", **overrides)
    dim = model.cfg.dim
    for block in model.blocks:
        qk, value = _qk_and_value_paths(block)
        # For a random token x, x^T P x has mean trace(P) and x^T P y (y another random token) spread ||P||_F:
        # under the rank-head_dim part of 0.7 Z + 0.7 I a token's logit with itself stands out by over 2 spreads.
        for p in qk:
            assert p.trace() > 2 * p.norm()
        # -0.4 I + 0.4 Z exactly (full rank): diagonal about -0.4, off-diagonal spread about 0.4 / sqrt(D).
        assert value.diagonal().mean() == pytest.approx(-0.4, abs=0.05)
        off = value - torch.diag(value.diagonal())
        assert off.std() == pytest.approx(0.4 / dim**0.5, rel=0.2)
    torch.manual_seed(0)
    again = create_model(name, attn_init="mimetic", **overrides)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))


def test_default_attention_init_has_no_identity_bias():
    torch.manual_seed(0)
    qk, value = _qk_and_value_paths(create_model("air-s").blocks[0])
    # std-0.02 weights: traces of about 0.1, where mimetic initialisation gives air-s about 40
    assert all(p.trace().abs() < 1 for p in qk) and abs(value.diagonal().mean()) < 0.01


def test_muon_convs_updates_each_stem_filter_bank_as_its_matrix():
    """With train.muon_convs the stem's 3x3 filters go to Muon as (c_out, c_in*9) matrices sharing their storage:
    the step equals torch's Muon on the flattened gradient, and zero_grad clears the filters' own gradients."""
    from vitlab.config import TrainConfig
    from vitlab.train.optim import Muon, build_optimizer, muon_params

    torch.manual_seed(0)
    model = create_model("air-s", num_classes=10, **SMALL_AIR)
    convs = {n for n, p in model.named_parameters() if p.ndim == 4}
    assert convs and convs <= set(muon_params(model, convs=True)) and not convs & set(muon_params(model))
    opt = build_optimizer(model, TrainConfig(optimizer="muon", muon_convs=True, lr=1e-2, momentum=0.9))
    in_adamw = {id(p) for g in opt.adamw.param_groups for p in g["params"]}
    filters = {n: p for n, p in model.named_parameters() if n in convs}
    assert not {id(p) for p in filters.values()} & in_adamw
    x, y = torch.randn(8, 3, 32, 32), torch.arange(8)
    forward_backward(model.train(), x, y, micro_batch=4)
    expected = {}
    for n, p in filters.items():
        ref = torch.nn.Parameter(p.detach().clone().view(p.shape[0], -1))
        ref.grad = p.grad.detach().clone().view(ref.shape)
        Muon([ref], lr=1e-2, weight_decay=0.05, momentum=0.9, ns_dtype=opt.muon.ns_dtype).step()
        expected[n] = ref.detach().view(p.shape)
    opt.step()
    for n, p in filters.items():
        assert torch.allclose(p, expected[n], atol=1e-6), n
    opt.zero_grad(set_to_none=True)
    assert all(p.grad is None for p in model.parameters())


def test_muon_convs_needs_the_muon_optimizer():
    from vitlab.config import Config, validate

    cfg = Config()
    cfg.train.muon_convs = True
    with pytest.raises(VitlabError, match="train.muon_convs"):
        validate(cfg)


def test_step_probe_skips_bf16_where_the_cpu_has_no_bf16_kernels(monkeypatch):
    import vitlab.train.step as step

    ran = []
    real = step.forward_backward
    monkeypatch.setattr(step, "has_bf16_kernels", lambda device: False)
    monkeypatch.setattr(
        step,
        "forward_backward",
        lambda *a, precision, memory_format, **k: (
            ran.append((precision, memory_format)) or real(*a, precision=precision, memory_format=memory_format, **k)
        ),
    )
    model = create_model("air-s", num_classes=10, **SMALL_AIR)
    candidates = [(p, layout) for p in ("fp32", "bf16") for layout in ("contiguous", "channels_last")]
    timings = step.probe_step(model, torch.randn(4, 3, 32, 32), torch.arange(4), micro_batch=4, candidates=candidates)
    assert list(timings) == candidates
    assert timings["bf16", "contiguous"] == timings["bf16", "channels_last"] == float("inf")
    assert timings["fp32", "contiguous"] > 0 and timings["fp32", "channels_last"] > 0
    # the timed candidates take turns (a warm-up round, then one step each per round), so drift hits them alike
    assert ran == [("fp32", "contiguous"), ("fp32", "channels_last")] * 6
    assert step.fastest(timings) in {("fp32", "contiguous"), ("fp32", "channels_last")}


def test_the_probe_keeps_its_first_candidate_unless_another_is_clearly_faster():
    from vitlab.train.step import fastest

    first, cl, bf16 = ("fp32", "contiguous"), ("fp32", "channels_last"), ("bf16", "contiguous")
    assert fastest({first: 1.0, cl: 0.97, bf16: 0.99}) == first  # within the margin: the plain choice stays
    assert fastest({first: 1.0, cl: 0.80, bf16: 0.78}) == cl  # bf16 is not clearly faster than channels_last
    assert fastest({first: 1.0, cl: 0.80, bf16: 0.70}) == bf16
    assert fastest({first: 1.0, cl: 0.9, bf16: float("inf")}) == cl


@pytest.mark.parametrize("stem", ["linear", "whiten"])
def test_memory_format_auto_times_channels_last_only_for_a_model_with_convolutions(stem):
    from vitlab.config import Config
    from vitlab.train.trainer import probe_candidates

    cfg = Config()
    assert cfg.train.memory_format == "contiguous"  # two runs of one seed alike unless a config asks for auto
    cfg.model.stem, cfg.train.memory_format = stem, "auto"
    model = create_model("air-s", num_classes=10, **SMALL_AIR) if stem == "whiten" else create_model("seed")
    layouts = ["contiguous", "channels_last"] if stem == "whiten" else ["contiguous"]
    assert probe_candidates(cfg, model) == [("fp32", layout) for layout in layouts]
    cfg.train.precision = "auto"
    assert probe_candidates(cfg, model) == [(p, layout) for p in ("fp32", "bf16") for layout in layouts]
    cfg.train.memory_format = "channels_last"
    assert probe_candidates(cfg, model) == [("fp32", "channels_last"), ("bf16", "channels_last")]


def test_muon_in_bf16_is_torchs_muon_and_in_fp32_orthogonalises_too():
    """vitlab's Muon with bf16 Newton-Schulz updates exactly as torch's over several steps; in fp32 (its choice on a
    CPU without bf16 kernels) it stays within bf16's rounding of it, and a step's update has singular values
    near 1 (what the iteration is for: about 0.5 to 1.5 with these coefficients)."""
    from vitlab.train.optim import Muon, newton_schulz

    g = torch.Generator().manual_seed(0)
    start = torch.randn(48, 80, generator=g)
    grads = [torch.randn(48, 80, generator=g) for _ in range(3)]
    runs = {}
    for kind in ("torch", "bf16", "fp32"):
        p = torch.nn.Parameter(start.clone())
        args = dict(lr=0.02, weight_decay=0.1, momentum=0.9)
        if kind == "torch":
            opt = torch.optim.Muon([p], adjust_lr_fn="match_rms_adamw", **args)
        else:
            opt = Muon([p], ns_dtype=torch.bfloat16 if kind == "bf16" else torch.float32, **args)
        for grad in grads:
            p.grad = grad.clone()
            opt.step()
        runs[kind] = p.detach()
    assert torch.equal(runs["bf16"], runs["torch"])
    assert torch.allclose(runs["fp32"], runs["torch"], atol=2e-3) and not torch.equal(runs["fp32"], runs["torch"])
    given = start.clone()
    s = torch.linalg.svdvals(newton_schulz(given, (3.4445, -4.7750, 2.0315), 5, 1e-7, torch.float32))
    assert 0.5 < s.min() and s.max() < 1.5
    assert torch.equal(given, start)  # the input (a momentum buffer without Nesterov) is left as it was


@pytest.mark.parametrize("kernels, dtype", [(True, torch.bfloat16), (False, torch.float32)])
def test_muon_orthogonalises_in_bf16_only_where_bf16_has_kernels(monkeypatch, kernels, dtype):
    import vitlab.train.optim as optim
    from vitlab.config import TrainConfig

    monkeypatch.setattr(optim, "has_bf16_kernels", lambda device: kernels)
    model = create_model("air-s", num_classes=10, **SMALL_AIR)
    assert optim.build_optimizer(model, TrainConfig(optimizer="muon")).muon.ns_dtype == dtype


def test_stem_order_conv_pool_conv_keeps_the_tokens_and_weights_and_runs_the_second_convs_at_a_quarter_of_the_pixels():
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.randn(2, 3, 32, 32)
    flops, shapes, names = {}, {}, {}
    for order in ("conv-conv-pool", "conv-pool-conv"):
        model = create_model("air-s", num_classes=10, stem_order=order).eval()
        convs = [m for m in model.patch_embed.net.modules() if isinstance(m, torch.nn.Conv2d)]
        sizes = []
        hooks = [c.register_forward_hook(lambda m, a, out, sizes=sizes: sizes.append(out.shape[-1])) for c in convs]
        with FlopCounterMode(display=False) as counter:
            tokens = model.patch_embed(x)
        flops[order], shapes[order] = counter.get_total_flops(), (tokens.shape, sizes)
        names[order] = [n for n, _ in model.named_parameters()]
        for h in hooks:
            h.remove()
    assert shapes["conv-conv-pool"] == ((2, 49, 128), [31, 31, 15, 15])
    assert shapes["conv-pool-conv"] == ((2, 49, 128), [31, 15, 15, 7])
    assert flops["conv-pool-conv"] < 0.5 * flops["conv-conv-pool"]
    # the default keeps the layer indices, so checkpoints saved before the option existed still load
    stem_weights = [f"patch_embed.net.{i}.0.weight" for i in (1, 2, 4, 5)]  # [GELU, cb, cb, pool, cb, cb, pool]
    assert all(n in names["conv-conv-pool"] for n in stem_weights)
    assert len(names["conv-pool-conv"]) == len(names["conv-conv-pool"])
