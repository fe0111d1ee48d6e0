"""`slowfast export CKPT --out DIR`: ONNX graphs for the fast and slow loops.

Writes decoder_step.onnx (tokenizer, ldp), obs_encoder.onnx and denoiser.onnx (ldp, dp) and
runtime.json, each checked against torch; policy.rdp.runtime.DecoderRuntime and
SlowPolicyRuntime load the folder. Prints a JSON summary.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="checkpoint folder (rdp_tokenizer, rdp_ldp or dp)")
    p.add_argument("--out", required=True, help="folder for the ONNX files and runtime.json")
    p.add_argument("--tolerance", type=float, default=1e-4,
                   help="largest allowed |onnxruntime - torch| on the check inputs (default 1e-4)")


def run(args: argparse.Namespace) -> int:
    from policy.rdp.export import export_checkpoint

    ckpt = Path(args.checkpoint)
    if not ckpt.is_dir():
        raise ValueError(f"checkpoint {ckpt}: no such folder")
    if not args.tolerance > 0:
        raise ValueError(f"--tolerance {args.tolerance}: must be > 0")
    meta = export_checkpoint(ckpt, args.out, tolerance=args.tolerance)
    print(json.dumps({"out": str(Path(args.out)), "model_type": meta["model_type"], "files": meta["files"],
                      "max_abs_error": meta["max_abs_error"]}))
    return 0
