"""``vitlab export``: write a checkpoint's model to a portable file (safetensors, ONNX, TorchScript, a Hugging Face
folder, a timm state dict)."""

from __future__ import annotations

import argparse

NAME = "export"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(NAME, help="write a checkpoint's model to a portable file")
    p.add_argument("checkpoint")
    p.add_argument(
        "--format",
        default="safetensors",
        help="safetensors (weights + config metadata, the default), onnx (dynamic batch, for onnxruntime), "
        "torchscript (traced; deprecated by PyTorch), hf (a Hugging Face transformers folder), "
        "timm (a timm state dict with its create_model arguments)",
    )
    p.add_argument("--out", required=True, help="file to write (a folder for --format hf)")


def run(args: argparse.Namespace) -> int:
    from vitlab.export import export

    print(f"wrote {export(args.checkpoint, args.format, args.out)}")
    return 0
