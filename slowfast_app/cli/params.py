"""`slowfast params [NODE] [--json]`: the parameters a node declares, from its dataclass.

Each node module's ``PARAMS`` dataclass is the one definition of its parameters (name,
type, default, description); the node declares exactly those (``node_util.declare_params``).
This prints them, with the value the node's shipped parameter file sets where it sets one.
Without NODE: the nodes that declare parameters.
"""
from __future__ import annotations

import argparse
import importlib
import json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("node", nargs="?", help="node name (e.g. rdp_fast); omit to list the nodes")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _nodes() -> dict[str, type]:
    import pkgutil  # noqa: PLC0415

    from slowfast_ros import nodes  # noqa: PLC0415

    out = {}
    for info in pkgutil.iter_modules(nodes.__path__):
        params = getattr(importlib.import_module(f"slowfast_ros.nodes.{info.name}"), "PARAMS", None)
        if params is not None:
            out[info.name] = params
    return out


def describe(node: str, cls) -> list[dict]:
    """One dict per parameter: name, type, default, description, and ``file`` (the shipped
    parameter file's value) where the file sets it."""
    from slowfast_data.fields import flat_fields  # noqa: PLC0415
    from slowfast_app.stack import config_dir, file_parameters  # noqa: PLC0415

    path = config_dir() / f"{node}.yaml"
    in_file = file_parameters(path, node) if path.is_file() else {}
    rows = []
    for f in flat_fields(cls):
        row = {"name": f.name, "type": type(f.default).__name__, "default": f.default, "description": f.help}
        if f.range is not None:
            row["range"] = list(f.range)
        if f.name in in_file:
            row["file"] = in_file[f.name]
        rows.append(row)
    return rows


def run(args: argparse.Namespace) -> int:
    known = _nodes()
    if args.node is None:
        if args.json:
            print(json.dumps(sorted(known)))
        else:
            print("\n".join(sorted(known)))
        return 0
    if args.node not in known:
        raise ValueError(f"no node {args.node!r} (nodes: {', '.join(sorted(known))})")
    rows = describe(args.node, known[args.node])
    if args.json:
        print(json.dumps({"node": args.node, "parameters": rows}, default=str))
        return 0
    for r in rows:
        shipped = f"  [{args.node}.yaml: {r['file']!r}]" if "file" in r else ""
        rng = f", range {r['range']}" if "range" in r else ""
        print(f"{r['name']} ({r['type']}, default {r['default']!r}{rng}){shipped}\n    {r['description']}")
    return 0
