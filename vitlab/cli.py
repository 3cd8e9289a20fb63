"""The ``vitlab`` command line: train, eval, predict."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, get_args

from vitlab.config import TTA, Config, apply_mapping, load_yaml, parse_set, set_value, size_label
from vitlab.errors import Interrupted, VitlabError
from vitlab.models.presets import available_presets, preset_config

if TYPE_CHECKING:
    from vitlab.models.pretrained import Pretrained


def _add_tta_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--tta",
        choices=get_args(TTA),
        default=None,
        help="test-time augmentation: logits averaged over the image and its mirror (flip), also shifted "
        "one pixel each way (full: 6 views); default: the checkpoint's train.tta",
    )


def _add_run_flags(p: argparse.ArgumentParser) -> None:
    """The flags ``train`` and ``finetune`` share, declared once."""
    p.add_argument("--data", help="cifar10, cifar100, or an ImageFolder root with train/ and test/ (default: cifar10)")
    p.add_argument("--epochs", type=int, help="number of epochs (default 10, or unlimited with --time-budget)")
    p.add_argument(
        "--time-budget",
        type=float,
        metavar="SECONDS",
        help="stop training after this many seconds; the learning-rate schedule is fitted to it",
    )
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--device", help="auto (default), cpu, cuda or cuda:N")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any config field, e.g. --set model.dim=256 --set train.label_smoothing=0.1",
    )
    p.add_argument(
        "--no-report", action="store_true", help="skip the HTML report at the end (vitlab report makes it later)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace a run already in --out (otherwise refused)")
    p.add_argument(
        "--tensorboard",
        action="store_true",
        help="also log the metrics to TensorBoard in RUN_DIR/tensorboard (pip install 'vitlab[tensorboard]')",
    )


def _add_train_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model; writes checkpoints, metrics and a summary to --out")
    _add_run_flags(p)
    p.add_argument("--model", help=f"model preset: {', '.join(available_presets())} (default: seed)")
    p.add_argument("--config", help="YAML file with model/data/train sections (a preset from configs/)")
    p.add_argument("--out", help="run folder for checkpoints, metrics.jsonl and summary.json")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last.pt")
    p.add_argument("--balanced", action="store_true", help="class-balanced sampling (the seed's WeightedRandomSampler)")


def _add_finetune_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("finetune", help="fine-tune pretrained ViT weights (timm, Hugging Face, original .npz)")
    _add_run_flags(p)
    p.add_argument(
        "--weights",
        required=True,
        metavar="SOURCE",
        help="timm:MODEL_NAME, a timm .safetensors/.pth/.bin state dict, a Hugging Face ViT directory "
        "(config.json + model.safetensors), or an original vision_transformer .npz",
    )
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument(
        "--model",
        help="the weights' paper size, e.g. vit-b/16: checked against them, and gives the head "
        "count that a timm state dict does not record",
    )
    p.add_argument(
        "--img-size",
        metavar="SIZE",
        help="train at this resolution, a side or HEIGHTxWIDTH (e.g. 224 or "
        "224x320; default: the weights' own); the position embedding "
        "is resampled to the new grid",
    )
    p.add_argument("--freeze-backbone", action="store_true", help="train the new head alone (a linear probe)")


def _add_eval_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="accuracy and loss of a checkpoint on a data split")
    p.add_argument("checkpoint")
    p.add_argument("--data", help="data source (default: the one the checkpoint was trained on)")
    p.add_argument("--split", choices=("test", "val", "train"), default="test")
    _add_tta_flag(p)
    p.add_argument("--batch-size", type=int, default=0, help="images per inference pass (default: automatic)")
    p.add_argument("--device", default="auto")


def _add_predict_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="classify image files and folders; CSV with one probability column per class")
    p.add_argument("checkpoint")
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files and/or folders (searched recursively)")
    p.add_argument("--out", help="CSV file to write (default: print the CSV)")
    p.add_argument("--top-k", type=int, default=1, help="also list the next K-1 most likely labels")
    _add_tta_flag(p)
    p.add_argument("--batch-size", type=int, default=0, help="images per inference pass (default: automatic)")
    p.add_argument("--device", default="auto")


def _add_report_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="curves, confusion matrix, t-SNE, attention maps: RUN_DIR/report/report.html")
    p.add_argument("run_dir")
    p.add_argument("--data", help="data source (default: the one the run was trained on)")
    p.add_argument(
        "--extra-test",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="another test set: an ImageFolder split of photos of any size (repeatable)",
    )
    p.add_argument("--tsne-samples", type=int, default=2000, help="test images in the t-SNE (default %(default)s)")
    _add_tta_flag(p)
    p.add_argument("--device", default="auto")


def _add_attention_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("attention", help="attention maps (last layer and rollout) of any images")
    p.add_argument("checkpoint")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files and/or folders")
    p.add_argument("--out", required=True, help="folder for one PNG per image")
    p.add_argument("--device", default="auto")


def _add_explain_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "explain",
        help="class-specific explanations of any images (Grad-CAM, gradient-weighted "
        "rollout, rollout, attention), one PNG each",
    )
    p.add_argument("checkpoint")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files and/or folders")
    p.add_argument("--out", required=True, help="folder for one PNG per image")
    p.add_argument(
        "--method",
        choices=("grad-rollout", "gradcam", "rollout", "attention"),
        default="grad-rollout",
        help="default %(default)s (Chefer et al., 2021); rollout and attention do not depend on the class",
    )
    p.add_argument("--class", dest="class_name", metavar="NAME", help="explain this class (default: the predicted one)")
    p.add_argument(
        "--head-fusion",
        choices=("mean", "max", "min"),
        default="mean",
        help="how rollout and attention combine the heads (default %(default)s; the gradient methods "
        "weigh the heads by their gradients instead)",
    )
    p.add_argument(
        "--discard",
        type=float,
        default=0.0,
        help="rollout only: share of the lowest attention weights to drop in each layer (e.g. 0.9)",
    )
    p.add_argument("--device", default="auto")


def _add_serve_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="a local web page and JSON API on a checkpoint (pip install 'vitlab[serve]')")
    p.add_argument("checkpoint")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    _add_tta_flag(p)
    p.add_argument("--max-mb", type=float, default=10.0, help="largest upload accepted, in MB (default %(default)s)")
    p.add_argument("--device", default="auto")


def _add_calibrate_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("calibrate", help="fit a softmax temperature on the validation split; write a new checkpoint")
    p.add_argument("checkpoint")
    p.add_argument("--out", required=True, help="the calibrated checkpoint to write (never the input)")
    p.add_argument("--data", help="data source with the validation split (default: the run's own)")
    p.add_argument("--device", default="auto")


def _add_compare_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="several runs in one HTML page: results, overlaid curves, configs side by side")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--out", required=True, help="HTML file to write")


def _add_export_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write a checkpoint's model to a portable file")
    p.add_argument("checkpoint")
    p.add_argument(
        "--format",
        default="safetensors",
        help="safetensors (weights + config metadata, the default), onnx (dynamic batch, for onnxruntime), "
        "torchscript (traced; deprecated by PyTorch), hf (a Hugging Face transformers folder), "
        "timm (a timm state dict with its create_model arguments)",
    )
    p.add_argument("--out", required=True, help="file to write (a folder for --format hf)")


def _add_bench_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="train and inference images/s against timm's VisionTransformer, same size")
    p.add_argument(
        "--cases",
        default="seed:512,seed:128,vit-s/4:128",
        help="comma-separated MODEL:BATCH list (default: %(default)s)",
    )
    p.add_argument(
        "--dropout",
        choices=("preset", "zero", "both"),
        default="both",
        help="the preset's dropout rates, every rate at 0, or both (default)",
    )
    p.add_argument("--repeats", type=int, default=5, help="timed repeats; the median is reported")
    p.add_argument("--steps", type=int, default=1, help="steps per timed repeat")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    p.add_argument("--json", help="also write the results to this JSON file")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vitlab", description="Vision Transformers for image classification.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_train_parser(sub)
    _add_finetune_parser(sub)
    _add_eval_parser(sub)
    _add_predict_parser(sub)
    _add_report_parser(sub)
    _add_attention_parser(sub)
    _add_explain_parser(sub)
    _add_calibrate_parser(sub)
    _add_serve_parser(sub)
    _add_compare_parser(sub)
    _add_export_parser(sub)
    _add_bench_parser(sub)
    return parser


def _version() -> str:
    from vitlab import __version__

    return __version__


def run_flag_values(args: argparse.Namespace) -> dict[str, object]:
    """The config fields that ``_add_run_flags``' flags set (None where a flag was not given)."""
    return {
        "data.source": args.data,
        "train.epochs": args.epochs,
        "train.time_budget": args.time_budget,
        "train.batch_size": args.batch_size,
        "train.lr": args.lr,
        "train.seed": args.seed,
        "train.device": args.device,
        "train.tensorboard": True if args.tensorboard else None,
    }


def apply_overrides(cfg: Config, flags: dict[str, object], sets: list[str]) -> Config:
    """The flags that were given (not None), then every --set KEY=VALUE, onto ``cfg``."""
    for key, value in flags.items():
        if value is not None:
            set_value(cfg, key, value)
    for key, value in parse_set(sets):
        set_value(cfg, key, value)
    return cfg


def train_and_report(
    cfg: Config,
    run_dir: Path,
    *,
    resume: bool,
    report: bool,
    pretrained: Pretrained | None = None,
    overwrite: bool = False,
) -> None:
    from vitlab.train.trainer import train

    summary = train(cfg, run_dir, resume=resume, pretrained=pretrained, overwrite=overwrite)
    if summary is not None and report:  # None: a torchrun rank other than 0
        from vitlab.analysis.report import build_report

        print(f"report: {build_report(run_dir, device=cfg.train.device)}")


def train_config(args: argparse.Namespace) -> Config:
    """Defaults -> --config YAML -> --model -> flags -> --set (later wins)."""
    cfg = Config()
    if args.config:
        apply_mapping(cfg, load_yaml(args.config), f"--config {args.config}")
    if args.model:
        cfg.model = preset_config(args.model)
    flags = {**run_flag_values(args), "data.balanced": True if args.balanced else None}
    return apply_overrides(cfg, flags, args.set)


def cmd_train(args: argparse.Namespace) -> int:
    from vitlab.train.trainer import resume_checkpoint

    if args.resume:
        run_dir = Path(args.resume)
        cfg = Config.from_dict(resume_checkpoint(run_dir)["config"], origin=f"{run_dir}/last.pt")
        for key, value in {"train.epochs": args.epochs, "train.time_budget": args.time_budget}.items():
            if value is not None:
                set_value(cfg, key, value)
        if args.data:
            set_value(cfg, "data.source", args.data)
    else:
        if not args.out:
            raise VitlabError("--out: a run folder is required (or --resume RUN_DIR to continue a run)")
        run_dir, cfg = Path(args.out), train_config(args)
    if args.resume and args.overwrite:
        raise VitlabError(
            "--overwrite: cannot be combined with --resume (one continues the run, the other replaces it)"
        )
    train_and_report(cfg, run_dir, resume=bool(args.resume), report=not args.no_report, overwrite=args.overwrite)
    return 0


# The ViT paper's fine-tuning recipe (Dosovitskiy et al., 2021, appendix B.1.1): SGD with momentum 0.9, no weight
# decay, gradient clipping at norm 1, warm-up then cosine decay; lr 0.01 is the middle of its sweep.
FINETUNE_RECIPE = {
    "train.optimizer": "sgd",
    "train.momentum": 0.9,
    "train.weight_decay": 0.0,
    "train.grad_clip": 1.0,
    "train.schedule": "cosine",
    "train.warmup": 0.05,
    "train.lr": 0.01,
    "train.label_smoothing": 0.0,
}


def finetune_config(args: argparse.Namespace) -> tuple[Config, Pretrained]:
    """(config, the loaded weights, read once). Config: the weights' architecture -> the fine-tuning recipe ->
    flags -> --set (later wins)."""
    from vitlab.models.pretrained import load_pretrained

    heads = preset_config(args.model).heads if args.model else None
    pre = load_pretrained(args.weights, heads=heads)
    cfg = Config()
    cfg.model = dataclasses.replace(pre.config, preset=args.model or pre.config.preset)
    if args.model:
        expected = preset_config(args.model)
        for name in ("dim", "depth", "mlp_dim"):
            if getattr(expected, name) != getattr(pre.config, name):
                raise VitlabError(
                    f"--model {args.model}: {name} {getattr(expected, name)}, but the weights "
                    f"{args.weights} have {name} {getattr(pre.config, name)}"
                )
    for key, value in FINETUNE_RECIPE.items():
        set_value(cfg, key, value)
    cfg.data.mean, cfg.data.std = list(pre.mean), list(pre.std)
    flags = {
        **run_flag_values(args),
        "model.img_size": args.img_size,
        "train.init_weights": args.weights,
        "train.freeze_backbone": True if args.freeze_backbone else None,
    }
    return apply_overrides(cfg, flags, args.set), pre


def cmd_finetune(args: argparse.Namespace) -> int:
    cfg, pre = finetune_config(args)
    print(
        f"weights: {args.weights}: ViT dim {cfg.model.dim}, depth {cfg.model.depth}, heads {cfg.model.heads}, "
        f"patch {cfg.model.patch_size}, training at {size_label(cfg.model.img_size)} px"
        f"{', backbone frozen (linear probe)' if cfg.train.freeze_backbone else ''}"
    )
    train_and_report(
        cfg, Path(args.out), resume=False, report=not args.no_report, pretrained=pre, overwrite=args.overwrite
    )
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from vitlab.data.dataset import load_data
    from vitlab.inference import Classifier

    clf = Classifier.from_checkpoint(args.checkpoint, args.device, batch_size=args.batch_size, tta=args.tta)
    cfg: Config = clf.config
    data_cfg = dataclasses.replace(cfg.data, source=args.data or cfg.data.source)
    # The training seed reproduces the training run's validation hold-out.
    data = load_data(data_cfg, cfg.model.img_size, cfg.train.seed)
    if data.classes != clf.classes:
        raise VitlabError(
            f"{args.checkpoint}: trained on {len(clf.classes)} classes {clf.classes[:5]}..., "
            f"but --data {data_cfg.source} has {len(data.classes)} classes {data.classes[:5]}..."
        )
    split = getattr(data, args.split)
    if split is None:
        raise VitlabError(f"--split {args.split}: {data_cfg.source} has no validation split (data.val_fraction is 0)")
    result = clf.scores(split)
    views = f" ({clf.tta} test-time augmentation)" if clf.tta != "none" else ""
    print(f"{args.split}: accuracy {result['accuracy']:.2%}, loss {result['loss']:.4f} on {result['n']} images{views}")
    top5 = f"top-5 {result['top5']:.2%}, " if "top5" in result else ""
    print(
        f"{args.split}: {top5}macro-F1 {result['macro_f1']:.4f}, balanced accuracy {result['balanced_accuracy']:.2%}, "
        f"expected calibration error {result['ece']:.4f}"
    )
    if result["collapse"]:
        print(f"vitlab: warning: {result['collapse']}", file=sys.stderr)
    result.pop("calibration")
    print(json.dumps(result))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from vitlab.predict import predict

    predict(
        args.checkpoint,
        args.paths,
        out=args.out,
        top_k=args.top_k,
        batch_size=args.batch_size,
        device=args.device,
        tta=args.tta,
    )
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from vitlab.analysis.report import build_report

    if args.tsne_samples < 10:
        raise VitlabError(f"--tsne-samples: expected at least 10, got {args.tsne_samples}")
    path = build_report(
        args.run_dir,
        data=args.data,
        extra_tests=args.extra_test,
        tsne_samples=args.tsne_samples,
        device=args.device,
        tta=args.tta,
    )
    print(f"report: {path}")
    return 0


def cmd_attention(args: argparse.Namespace) -> int:
    from vitlab.analysis.attention_cli import attention_maps

    from vitlab.data.images import display_path

    for path in attention_maps(args.checkpoint, args.images, Path(args.out), device=args.device):
        print(display_path(path))
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    from vitlab.analysis.attention_cli import explain_files
    from vitlab.data.images import display_path

    for path in explain_files(
        args.checkpoint,
        args.images,
        Path(args.out),
        method=args.method,
        class_name=args.class_name,
        fusion=args.head_fusion,
        discard=args.discard,
        device=args.device,
    ):
        print(display_path(path))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from vitlab.serve import serve

    if not 0 < args.port < 65536:
        raise VitlabError(f"--port: expected 1 to 65535, got {args.port}")
    if not args.max_mb > 0:
        raise VitlabError(f"--max-mb: expected a positive size, got {args.max_mb}")
    serve(args.checkpoint, host=args.host, port=args.port, device=args.device, tta=args.tta, max_upload_mb=args.max_mb)
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from vitlab.analysis.calibrate import calibrate

    r = calibrate(args.checkpoint, args.out, data=args.data, device=args.device)
    print(
        f"calibrate: temperature {r['temperature']:.3f} fitted on {r['n']} validation images: expected calibration "
        f"error {r['ece_before']:.4f} -> {r['ece_after']:.4f}, loss {r['nll_before']:.4f} -> {r['nll_after']:.4f}; "
        f"wrote {args.out}"
    )
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from vitlab.analysis.compare import compare_runs

    print(f"compare: {compare_runs(args.run_dirs, args.out)}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from vitlab.export import export

    print(f"wrote {export(args.checkpoint, args.format, args.out)}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    import platform

    import torch

    from vitlab.bench import Case, compare, data_pipeline
    from vitlab.io import atomic_write_text

    if args.repeats < 1 or args.steps < 1:
        raise VitlabError("--repeats and --steps: expected positive integers")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    cases = []
    for item in args.cases.split(","):
        model, _, batch = item.strip().partition(":")
        if not batch.isdigit() or int(batch) <= 0:
            raise VitlabError(f"--cases {item}: expected MODEL:BATCH, e.g. seed:512")
        modes = ("preset", "zero") if args.dropout == "both" else (args.dropout,)
        if preset_config(model).dropout == 0.0:
            modes = modes[:1]  # the preset has no dropout: "zero" would measure the same model again
        cases += [Case(model, int(batch), mode) for mode in modes]
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}, "
        f"median of {args.repeats} repeats x {args.steps} step(s), fp32, images/s"
    )
    header = (
        f"{'model':<10} {'batch':>5} {'dropout':>7} | {'train vitlab':>12} {'plain':>7} {'timm':>7} {'ratio':>6} "
        f"| {'infer vitlab':>12} {'plain':>7} {'timm':>7} {'ratio':>6}"
    )
    print(header)
    print("-" * len(header))
    results = []
    for case in cases:
        r = compare(case, args.repeats, args.steps)
        results.append(r)
        print(
            f"{case.model:<10} {case.batch_size:>5} {case.dropout:>7} | {r['train_vitlab']:>12.1f} "
            f"{r['train_vitlab_plain']:>7.1f} {r['train_timm']:>7.1f} {r['train_ratio']:>5.2f}x | "
            f"{r['infer_vitlab']:>12.1f} {r['infer_vitlab_plain']:>7.1f} {r['infer_timm']:>7.1f} "
            f"{r['infer_ratio']:>5.2f}x",
            flush=True,
        )
    print(
        "vitlab: its training step and inference path (micro-batches of 64 / chunks of 32 on a CPU); plain: "
        "vitlab's model called on the whole batch like timm; ratio: vitlab / timm"
    )
    pipeline = data_pipeline()
    print(f"data pipeline (index + crop + flip + normalise, batch 512): {pipeline:.0f} images/s")
    if args.json:
        atomic_write_text(json.dumps({"cases": results, "data_pipeline": pipeline}, indent=2), Path(args.json))
    return 0


COMMANDS = {
    "train": cmd_train,
    "finetune": cmd_finetune,
    "eval": cmd_eval,
    "predict": cmd_predict,
    "report": cmd_report,
    "explain": cmd_explain,
    "calibrate": cmd_calibrate,
    "serve": cmd_serve,
    "compare": cmd_compare,
    "attention": cmd_attention,
    "export": cmd_export,
    "bench": cmd_bench,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from vitlab.train.distributed import is_main_process

    if not is_main_process():  # under torchrun, rank 0 alone reports progress; errors still reach stderr
        sys.stdout = open(os.devnull, "w")
    try:
        return COMMANDS[args.command](args)
    except Interrupted as e:
        print(f"vitlab: {e}", file=sys.stderr)
        return 130
    except VitlabError as e:
        print(f"vitlab: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # disk full, permission denied ... while writing outputs
        where = f"{e.filename}: " if e.filename else ""
        print(f"vitlab: error: {where}{e.strerror or e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("vitlab: interrupted", file=sys.stderr)
        return 130
