"""`slowfast up PROFILE`: start the nodes of a stack profile as processes, without `ros2 launch`.

The same profiles back the launch files in launch/, so `slowfast up sim-expert` and
`ros2 launch slowfast_ros sim_expert.launch.py` run the same nodes with the same parameters.
"""
from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("profile", nargs="?", help="profile name (see --list)")
    p.add_argument("--set", action="append", default=[], metavar="NODE.PARAM=VALUE",
                   help="override a node parameter (repeatable)")
    p.add_argument("--list", action="store_true", help="list the profiles and exit")
    p.add_argument("--print", action="store_true", help="print the node commands and exit")


def run(args: argparse.Namespace) -> int:
    from slowfast_ros import stack  # noqa: PLC0415

    if args.list or not args.profile:
        for name in stack.available_profiles():
            print(f"{name:16s} {stack.load_profile(name).description}")
        return 0
    profile = stack.load_profile(args.profile)
    with_sets = stack.Stack(profile, stack.parse_sets(args.set))
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
