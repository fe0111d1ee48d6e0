"""`slowfast teleop`: serve the TactAR headset protocol and the WebXR page.

Starts teleop_node and safety_node (profile ``teleop``), or with ``--sim`` the MuJoCo sim as
well (profile ``sim-teleop``). The server binds to localhost unless ``--host`` says
otherwise; a LAN bind needs ``--token`` and serves HTTPS with a self-signed certificate.

With ``--sim`` an episode lasts until the operator ends it (an outcome button on the headset:
right B success, left X failure, left Y discard; or the page's buttons, "New episode"
included) or ``--episode-minutes`` pass, not the task's scripted length; a reset releases a
held clutch and says so on the headset's log (UDP 10003) and the page.
"""
from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sim", action="store_true", help="also run the MuJoCo sim (profile sim-teleop)")
    p.add_argument("--task", default="wipe", help="sim task with --sim: wipe | lift (default wipe)")
    p.add_argument("--episode-minutes", type=float, default=None, metavar="MIN",
                   help="with --sim: the longest episode, in minutes (default: sim_node's max_episode_minutes, "
                        "30); the operator ends one before")
    from slowfast_data.fields import flat_fields  # noqa: PLC0415
    from teleop_tactar.server_config import ServerConfig  # noqa: PLC0415

    f = {fl.name: fl for fl in flat_fields(ServerConfig)}   # teleop_node's server.* parameters
    p.add_argument("--host", default=f["host"].default, help=f"{f['host'].help} (default {f['host'].default})")
    p.add_argument("--port", type=int, default=f["port"].default, help=f"{f['port'].help} (default {f['port'].default})")
    p.add_argument("--token", default=f["token"].default, help=f["token"].help)
    p.add_argument("--trusted", action="append", default=[], metavar="IP", help=f["trusted_clients"].help)
    p.add_argument("--set", action="append", default=[], metavar="NODE.PARAM=VALUE",
                   help="override a node parameter (repeatable)")


def run(args: argparse.Namespace) -> int:
    from slowfast_app import stack  # noqa: PLC0415
    from teleop_tactar.server_config import ServerConfig  # noqa: PLC0415

    ServerConfig(host=args.host, port=args.port, token=args.token, trusted_clients=args.trusted)  # validates
    if args.sim:
        from sim import TASKS  # noqa: PLC0415

        if args.task not in TASKS:
            raise ValueError(f"--task: unknown sim task {args.task!r} (choose from {', '.join(TASKS)})")
    elif args.episode_minutes is not None:
        raise ValueError("--episode-minutes: only with --sim (a robot's episodes are the recorder's)")
    profile = stack.load_profile("sim-teleop" if args.sim else "teleop")
    overrides = {"teleop_node": {"server.host": args.host, "server.port": args.port, "server.token": args.token,
                                 "server.trusted_clients": args.trusted or [""]}}
    if args.sim:
        from teleop_tactar.retarget import default_hands  # noqa: PLC0415
        arms = ["left", "right"] if args.task == "lift" else ["arm"]
        hands = default_hands(arms)
        overrides["sim_node"] = {"task": args.task}
        if args.episode_minutes is not None:
            overrides["sim_node"]["max_episode_minutes"] = args.episode_minutes
            try:   # the node's own check, before anything starts
                stack.node_params("sim_node", "slowfast_ros.nodes.sim_node", overrides["sim_node"])
            except ValueError as exc:
                raise ValueError(f"--episode-minutes: {exc}") from None
        overrides["teleop_node"].update(arms=arms, hands=hands)
        overrides["safety_node"] = {"arms": arms}
    for node, params in stack.parse_sets(args.set).items():
        overrides.setdefault(node, {}).update(params)
    scheme = "http" if ServerConfig(host=args.host, port=args.port, token=args.token).loopback else "https"
    print(f"slowfast teleop: {scheme}://{args.host}:{args.port}/ (headset app: POST /unity); Ctrl-C stops")
    with stack.Stack(profile, overrides) as s:
        name, rc = s.wait()
    if rc:
        print(f"slowfast teleop: node {name} exited with status {rc}")
        return 1
    return 0
