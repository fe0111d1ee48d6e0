"""`slowfast sim`: run simulated episodes through ROS 2 and write metrics, video and plots.

The sim node and the controller run as separate ROS 2 processes (the profile
``sim-expert`` or ``sim-rdp``), exactly as `slowfast up` would start them. With
``--interface ros2_control`` the sim offers the simulated Panda behind a real arm's ros2_control
topics and the controller drives it through ``robot_bridge_node``, as on a robot (profiles
``sim-robot``, ``sim-robot-rdp``). Outputs in --out:
``metrics.json`` (per episode and summary), ``camera_NNN.mp4``, ``force_NNN.png``,
and ``logs/<node>.log``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

CONTROLLERS = ("expert", "rdp", "dp")
PROFILES = {("stack", "expert"): "sim-expert", ("stack", "rdp"): "sim-rdp", ("stack", "dp"): "sim-rdp",
            ("ros2_control", "expert"): "sim-robot", ("ros2_control", "rdp"): "sim-robot-rdp",
            ("ros2_control", "dp"): "sim-robot-rdp"}
MODEL_TYPES = {"rdp": "rdp_ldp", "dp": "dp"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", default="wipe", help="wipe | lift (default wipe)")
    p.add_argument("--controller", default="expert",
                   help="expert (scripted), rdp (Reactive Diffusion Policy) or dp (Diffusion Policy baseline)")
    p.add_argument("--policy", "--checkpoint", dest="policy", default=None,
                   help="rdp/dp: an export folder (slowfast export) or a checkpoint folder (exported into --out)")
    p.add_argument("--control-hz", type=float, default=200.0, help="rdp/dp: fast loop rate (Hz)")
    p.add_argument("--episodes", type=int, default=1, help="number of episodes (default 1)")
    p.add_argument("--out", default="out/sim", help="output folder (default out/sim)")
    p.add_argument("--camera-hz", type=float, default=30.0, help="camera rate; 0 = no rendering, no video")
    p.add_argument("--interface", default="stack",
                   help="stack (default): the controller on the sim's own topics | ros2_control: the sim's Panda "
                        "behind a real arm's ros2_control topics, driven through robot_bridge_node "
                        "(--embodiment arm, one-arm tasks)")
    add_episode_arguments(p)
    p.add_argument("--set", action="append", default=[], metavar="NODE.PARAM=VALUE",
                   help="override any node parameter (repeatable)")


def add_episode_arguments(p: argparse.ArgumentParser) -> None:
    """The sim episode options every command that runs sim episodes shares."""
    p.add_argument("--embodiment", default="floating",
                   help="floating (default) | arm: Franka Panda arms under a 1 kHz Cartesian impedance controller")
    p.add_argument("--seed", type=int, default=0, help="seed of the first episode; episode k uses seed+k")
    p.add_argument("--no-perturb", action="store_true", help="no surface/object changes during episodes")
    p.add_argument("--episode-seconds", type=float, default=0.0, help="episode length (0 = task default)")
    p.add_argument("--width", type=int, default=320, help="camera width (px, default 320)")
    p.add_argument("--height", type=int, default=240, help="camera height (px, default 240)")


def _writable_dir(path: Path) -> Path:
    from slowfast_data.fileio import writable_folder  # noqa: PLC0415

    try:
        return writable_folder(path)
    except OSError as exc:
        raise ValueError(f"--out {exc}") from None


def run(args: argparse.Namespace) -> int:
    from sim import TASKS  # noqa: PLC0415

    from slowfast_app import stack  # noqa: PLC0415
    from slowfast_app.checks import gl_candidates, working_gl_backend  # noqa: PLC0415

    if args.task not in TASKS:
        raise ValueError(f"--task: unknown task '{args.task}' (choose from {', '.join(TASKS)})")
    if args.controller not in CONTROLLERS:
        raise ValueError(f"--controller: unknown controller '{args.controller}' (choose from {', '.join(CONTROLLERS)})")
    if args.episodes < 1:
        raise ValueError(f"--episodes: {args.episodes} must be at least 1")
    if args.camera_hz < 0:
        raise ValueError(f"--camera-hz: {args.camera_hz} must be >= 0")
    check_interface(args.interface, args.embodiment, args.task)
    out = _writable_dir(Path(args.out))
    env = {}
    if args.camera_hz > 0:
        backend = working_gl_backend()
        if backend is None:
            raise ValueError(f"no working MuJoCo GL backend (tried {', '.join(gl_candidates())}): install "
                             "libegl1 or libosmesa6 (run `slowfast doctor`), or pass --camera-hz 0")
        env = {"MUJOCO_GL": backend, "PYOPENGL_PLATFORM": backend}

    overrides = stack.parse_sets(args.set)
    overrides.setdefault("sim_node", {}).update(
        task=args.task, embodiment=args.embodiment, seed=args.seed, episodes=args.episodes,
        perturb=not args.no_perturb,
        episode_seconds=float(args.episode_seconds), camera_hz=float(args.camera_hz),
        camera_width=args.width, camera_height=args.height, out_dir=str(out.resolve()))
    if args.controller == "expert":
        overrides.setdefault("expert_node", {}).update(task=args.task)
    else:
        export, arms = _policy_for_sim(args, out)
        overrides.setdefault("rdp_slow", {}).update(export_dir=str(export), arms=list(arms))
        overrides.setdefault("rdp_fast", {}).update(export_dir=str(export), arms=list(arms),
                                                    control_hz=float(args.control_hz))
    profile = stack.load_profile(PROFILES[args.interface, args.controller])
    (out / "metrics.json").unlink(missing_ok=True)

    budget = args.episodes * ((args.episode_seconds or 30.0) + 15.0) + 60.0
    reported = 0
    log = out / "logs" / "sim_node.log"
    t0 = time.monotonic()

    def progress() -> None:
        nonlocal reported
        try:
            lines = [ln for ln in log.read_text().splitlines() if "done: success=" in ln]
        except OSError:
            return
        for ln in lines[reported:]:
            reported += 1
            print(f"  episode {reported}/{args.episodes}: {ln.split(': ', 2)[-1]} "
                  f"({time.monotonic() - t0:.0f} s)", flush=True)

    print(f"slowfast sim: {args.task}, controller {args.controller}, {args.episodes} episode(s), "
          f"seed {args.seed} -> {out}", flush=True)
    with stack.Stack(profile, overrides, log_dir=out / "logs", env=env) as s:
        name, rc = s.wait(primary="sim_node", timeout=budget, poll=progress)
        progress()
        if name == "timeout":
            raise ValueError(f"episodes did not finish within {budget:.0f} s (see {out / 'logs'})")
        if rc != 0:
            raise ValueError(f"node {name} stopped (status {rc}): {s.last_line(name)}")
    metrics_path = out / "metrics.json"
    if not metrics_path.is_file():
        raise ValueError(f"the sim wrote no metrics (see {out / 'logs' / 'sim_node.log'})")
    result = json.loads(metrics_path.read_text())
    summary = result["summary"]
    print("summary: " + ", ".join(f"{k}={_fmt(v)}" for k, v in summary.items()))
    from sim.realtime import slowed_factors  # noqa: PLC0415

    _, slowed = slowed_factors(result.get("episodes", []))
    if slowed:
        print(f"slowfast sim: warning: {len(slowed)} of {len(result['episodes'])} episode(s) ran slower than real "
              f"time (real-time factor down to {min(slowed):.2f}): this machine did not hold the stack's rates, so "
              "they are no real-time result", file=sys.stderr)
    print(f"wrote {metrics_path}" + (", camera_*.mp4" if args.camera_hz > 0 else "") + ", force_*.png")
    if args.controller != "expert":
        blind = [str(e.get("seed", i)) for i, e in enumerate(result.get("episodes", []))
                 if e.get("policy_chunks", 1) == 0]
        if blind:
            print(f"slowfast sim: error: no policy chunk reached the robot in the episode(s) of seed "
                  f"{', '.join(blind)}: the arm only held still (see {out / 'logs' / 'rdp_slow.log'})",
                  file=sys.stderr)
            return 1
    return 0


def check_interface(interface: str, embodiment: str, task: str) -> None:
    """--interface ros2_control drives one Panda through robot_bridge_node: refused for anything else."""
    from slowfast_ros.arm_io import INTERFACES  # noqa: PLC0415

    if interface not in INTERFACES:
        raise ValueError(f"--interface: unknown interface '{interface}' (choose from {', '.join(INTERFACES)})")
    if interface == "stack":
        return
    if embodiment != "arm":
        raise ValueError("--interface ros2_control: needs --embodiment arm (joints under a Cartesian controller)")
    from sim import scene_spaces  # noqa: PLC0415

    arms = scene_spaces(task, embodiment).arms
    if len(arms) != 1:
        raise ValueError(f"--interface ros2_control: drives one arm; task {task} has {len(arms)} ({', '.join(arms)})")


def _policy_for_sim(args, out: Path):
    """The export folder to run, checked against the sim's spaces before anything starts."""
    from policy.rdp.contract import contact_kind, contact_width  # noqa: PLC0415
    from sim import scene_spaces  # noqa: PLC0415
    from slowfast_data.fileio import read_json  # noqa: PLC0415

    if not args.policy:
        raise ValueError(f"--policy: required with --controller {args.controller} (an export or checkpoint folder)")
    src = Path(args.policy)
    if (src / "runtime.json").is_file():
        export = src
    elif (src / "config.json").is_file():
        from policy.rdp.export import export_checkpoint  # noqa: PLC0415
        export = out / "export"
        print(f"exporting {src} to ONNX in {export}", flush=True)
        export_checkpoint(src, export)
    else:
        raise ValueError(f"--policy {src}: neither an export folder (runtime.json) nor a checkpoint (config.json)")
    meta = read_json(export / "runtime.json")
    want = MODEL_TYPES[args.controller]
    if meta.get("model_type") != want:
        raise ValueError(f"--policy {src}: a {meta.get('model_type')!r} model; --controller {args.controller} "
                         f"needs a {want!r} export")
    scene = scene_spaces(args.task, args.embodiment)
    shapes = meta.get("shapes", {})
    arms = scene.arms
    if int(shapes.get("num_arms", -1)) != len(arms):
        raise ValueError(f"--policy {src}: drives {shapes.get('num_arms')} arm(s); task {args.task} has "
                         f"{len(arms)} ({', '.join(arms)})")
    missing = [c for c in meta.get("cameras", []) if c not in scene.cameras]
    if missing:
        raise ValueError(f"--policy {src}: needs camera(s) {missing}; the sim has {list(scene.cameras)}")
    if meta.get("cameras") and args.camera_hz <= 0:
        raise ValueError(f"--policy {src}: the policy sees camera images; --camera-hz must be > 0")
    kind = contact_kind(meta)
    contact_dim = contact_width(kind, len(arms), scene.markers)
    if int(shapes.get("contact_raw_dim", -1)) != contact_dim:
        raise ValueError(f"--policy {src}: contact input of {shapes.get('contact_raw_dim')} values; the sim's "
                         f"{kind} gives {contact_dim}")
    return export.resolve(), arms


def _fmt(v) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)

