"""`slowfast record`: record demonstration episodes as rosbag2 (MCAP) folders.

- ``--operator scripted``: sim + scripted operator -> teleop server -> safety -> sim, one bag
  per sim episode (profile ``sim-record``); ``--episodes N`` then exit.
- ``--operator none`` (default): the recorder alone, driven by the headset buttons or the
  web page of a running `slowfast teleop` (or by ``--command`` from another terminal).
- ``--command start|stop|success|failure|discard``: send one command to a running recorder.
The recorder prints a progress line (elapsed, messages per topic, drops) every second.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

COMMANDS = ("start", "stop", "success", "failure", "discard")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="bags", help="folder of the episode bags (default ./bags)")
    p.add_argument("--task", default="wipe", help="task: the sim task with --operator scripted, "
                                                   "else a description stored with each episode")
    p.add_argument("--operator", choices=("none", "scripted"), default="none",
                   help="scripted: the sim expert drives through the teleop path (default none: a person)")
    p.add_argument("--episodes", type=int, default=1, help="episodes to record with --operator scripted")
    p.add_argument("--seed", type=int, default=0, help="seed of the first sim episode")
    p.add_argument("--perturb", action="store_true",
                   help="with --operator scripted: surface/object changes during episodes (the operator reacts)")
    from teleop_tactar.server_config import ServerConfig  # noqa: PLC0415

    p.add_argument("--port", type=int, default=ServerConfig().port, help="teleop server port with --operator scripted")
    p.add_argument("--command", choices=COMMANDS, help="send one command to a running recorder and exit")
    p.add_argument("--set", action="append", default=[], metavar="NODE.PARAM=VALUE",
                   help="override a node parameter (repeatable)")


def _send_command(cmd: str, task: str) -> int:
    import rclpy  # noqa: PLC0415
    from std_msgs.msg import String  # noqa: PLC0415

    from slowfast_ros import msgs, qos  # noqa: PLC0415

    rclpy.init()
    node = rclpy.create_node("slowfast_record_cli")
    try:
        pub = node.create_publisher(String, "recorder/command", qos.COMMAND)
        end = time.monotonic() + 5.0
        while pub.get_subscription_count() == 0 and time.monotonic() < end:
            time.sleep(0.05)
        if pub.get_subscription_count() == 0:
            raise OSError("no recorder is running (nothing subscribes to recorder/command)")
        pub.publish(msgs.json_msg({"cmd": cmd, "task": task, "source": "cli"}))
        time.sleep(0.3)
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    print(f"slowfast record: sent {cmd}")
    return 0


def _saved(out: str) -> int:
    """Bags under ``out`` closed with an outcome (success or failure in their metadata)."""
    import yaml  # noqa: PLC0415

    n = 0
    for meta in Path(out).glob("*/metadata.yaml"):
        try:
            info = yaml.safe_load(meta.read_text())["rosbag2_bagfile_information"]
        except (OSError, yaml.YAMLError, KeyError, TypeError):
            continue
        n += "success" in (info.get("custom_data") or {})
    return n


def run(args: argparse.Namespace) -> int:
    from slowfast_app import stack  # noqa: PLC0415

    if args.command:
        return _send_command(args.command, args.task)
    if args.episodes < 1:
        raise ValueError(f"--episodes: {args.episodes} must be >= 1")
    if args.operator == "scripted":
        from sim import TASKS  # noqa: PLC0415
        from teleop_tactar.retarget import default_hands  # noqa: PLC0415

        if args.task not in TASKS:
            raise ValueError(f"--task: unknown sim task {args.task!r} (choose from {', '.join(TASKS)})")
        profile = stack.load_profile("sim-record")
        arms = ["left", "right"] if args.task == "lift" else ["arm"]
        hands = default_hands(arms)
        overrides = profile.resolve({"task": args.task, "episodes": str(args.episodes), "port": str(args.port),
                                     "out_dir": args.out})
        overrides["sim_node"].update(seed=args.seed, start_delay=3.0, perturb=bool(args.perturb))
        overrides.setdefault("teleop_node", {}).update(arms=arms, hands=hands)
        overrides["safety_node"] = {"arms": arms}
        overrides["operator_node"].update(hands=hands)
        primary = "sim_node"
    else:
        profile = stack.Profile("record", "recorder", [stack.NodeSpec(
            "recorder_node", "slowfast_ros.nodes.recorder_node", ["recorder_node.yaml"])])
        overrides = {"recorder_node": {"out_dir": args.out, "task": args.task}}
        primary = "recorder_node"
    for node, params in stack.parse_sets(args.set).items():
        overrides.setdefault(node, {}).update(params)
    print(f"slowfast record: episodes into {args.out} ({args.operator} operator); Ctrl-C stops")
    before = _saved(args.out)
    with stack.Stack(profile, overrides) as s:
        name, rc = s.wait(primary)
        if primary == "sim_node":   # the recorder closes the last episode after the sim's end event
            end = time.monotonic() + 15.0
            while (time.monotonic() < end and _saved(args.out) - before < args.episodes
                   and s.procs["recorder_node"].poll() is None):
                time.sleep(0.1)
    if rc:
        print(f"slowfast record: node {name} exited with status {rc}")
        return 1
    return 0
