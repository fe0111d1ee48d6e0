"""`slowfast bench TARGET [--json]`: performance figures, one JSON object on the last line.

Each target is a module exposing ``add_arguments(parser)`` and ``run(args) -> dict``; heavy
imports stay inside ``run`` so that ``slowfast --help`` stays fast. Figures come from here,
never from timed tests (the machines are shared and noisy).
"""
from __future__ import annotations

import argparse
import importlib
import json
import platform
import os

# target -> (module, help)
TARGETS: dict[str, tuple[str, str]] = {
    "sim": ("slowfast_ros.bench.sim", "physics real-time factor and sim-node topic rates"),
    "policy": ("policy.rdp.bench", "decoder step and slow-policy latency (torch, onnxruntime)"),
    "fastloop": ("slowfast_ros.bench.fastloop", "fast loop rate, jitter and tactile-to-command latency"),
    "handover": ("slowfast_ros.bench.handover", "chunk handovers under slow-policy delay: blend vs inpainting"),
    "recorder": ("slowfast_ros.bench.recorder", "recorder throughput, drops and CPU"),
    "vln": ("policy.streamvln.bench", "StreamVLN per-turn latency, KV cache size, pruning"),
    "nav": ("slowfast_ros.bench.nav", "StreamVLN per-turn latency over a long episode through ROS 2"),
}


def _module(name: str):
    try:
        return importlib.import_module(TARGETS[name][0])
    except ModuleNotFoundError:
        return None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="target", metavar="TARGET")
    sub.required = True
    for name, (_, help_text) in TARGETS.items():
        mod = _module(name)
        if mod is None:
            continue
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--json", action="store_true", help="print one JSON object on the last line")
        mod.add_arguments(p)


def machine_info() -> dict:
    return {"machine": platform.machine(), "cpus": os.cpu_count(), "python": platform.python_version(),
            "node": platform.node()}


def run(args: argparse.Namespace) -> int:
    result = _module(args.target).run(args)
    result = {"target": args.target, **result, "host": machine_info()}
    if args.json:
        print(json.dumps(result, sort_keys=False))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")
    return 0
