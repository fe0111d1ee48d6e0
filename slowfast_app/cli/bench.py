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
    "sim": ("slowfast_app.bench.sim", "physics real-time factor and sim-node topic rates"),
    "policy": ("policy.rdp.bench", "decoder step and slow-policy latency (torch, onnxruntime)"),
    "fastloop": ("slowfast_app.bench.fastloop", "fast loop rate, jitter and tactile-to-command latency"),
    "handover": ("slowfast_app.bench.handover", "chunk handovers under slow-policy delay: blend vs inpainting"),
    "recorder": ("slowfast_app.bench.recorder", "recorder throughput, drops and CPU"),
    "vln": ("policy.streamvln.bench", "StreamVLN per-turn latency, KV cache size, pruning"),
    "nav": ("slowfast_app.bench.nav", "StreamVLN per-turn latency over a long episode through ROS 2"),
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
        p.add_argument("--domain", default="private",
                       help="ROS_DOMAIN_ID of the stacks the benchmark starts: 'private' (default) claims one "
                            "no other slowfast process uses, so that no other stack's topics mix in; or a number")
        mod.add_arguments(p)


def machine_info() -> dict:
    return {"machine": platform.machine(), "cpus": os.cpu_count(), "python": platform.python_version(),
            "node": platform.node()}


def run(args: argparse.Namespace) -> int:
    from slowfast_app.stack import claim_domain  # noqa: PLC0415

    if args.domain == "private":
        domain = claim_domain()
    else:
        try:
            domain = int(args.domain)
        except ValueError:
            raise ValueError(f"--domain {args.domain!r}: 'private' or a domain id 0..232") from None
        if not 0 <= domain <= 232:
            raise ValueError(f"--domain {domain}: outside 0..232")
    os.environ["ROS_DOMAIN_ID"] = str(domain)   # before any node of this process or its children
    result = _module(args.target).run(args)
    result = {"target": args.target, **result, "host": machine_info(), "ros_domain_id": domain}
    if args.json:
        print(json.dumps(result, sort_keys=False))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")
    return 0
