"""`slowfast up PROFILE`: start the nodes of a stack profile as processes, without `ros2 launch`.

The same profiles back the launch files in launch/, so `slowfast up sim-expert` and
`ros2 launch slowfast_ros sim_expert.launch.py` run the same nodes with the same parameters.
"""
from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("profile", nargs="?", help="profile name (see --list)")
    p.add_argument("arguments", nargs="*", metavar="NAME:=VALUE",
                   help="profile arguments, as with ros2 launch (e.g. task:=lift)")
    p.add_argument("--set", action="append", default=[], metavar="NODE.PARAM=VALUE",
                   help="override a node parameter (repeatable)")
    p.add_argument("--list", action="store_true", help="list the profiles and exit")
    p.add_argument("--print", action="store_true", help="print the node commands and exit")


def run(args: argparse.Namespace) -> int:
    from slowfast_app import stack  # noqa: PLC0415

    if args.list or not args.profile:
        for name in stack.available_profiles():
            prof = stack.load_profile(name)
            print(f"{name:16s} {prof.description}")
            for a in prof.arguments:
                print(f"{'':16s}   {a.name}:={a.default}  {a.description}")
        return 0
    profile = stack.load_profile(args.profile)
    values = {}
    for item in args.arguments:
        name, sep, value = item.partition(":=")
        if not sep or not name:
            raise ValueError(f"argument {item!r}: expected NAME:=VALUE")
        values[name] = value
    overrides = profile.resolve(values)
    for node, params in stack.parse_sets(args.set).items():
        overrides.setdefault(node, {}).update(params)
    with_sets = stack.Stack(profile, overrides)
    if args.print:
        for name, cmd in with_sets.commands.items():
            print(f"{name}: {' '.join(cmd)}")
        return 0
    print(f"slowfast up {profile.name}: {', '.join(with_sets.commands)} (Ctrl-C stops)")
    with with_sets as s:
        name, rc = s.wait()
    if rc:
        print(f"slowfast up: node {name} exited with status {rc}")
        return 1
    return 0
