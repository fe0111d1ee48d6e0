"""`slowfast sim`: run simulated episodes through ROS 2 and write metrics, video and plots.

The sim node and the controller run as separate ROS 2 processes (the profile
``sim-<controller>``), exactly as `slowfast up` would start them. Outputs in --out:
``metrics.json`` (per episode and summary), ``camera_NNN.mp4``, ``force_NNN.png``,
and ``logs/<node>.log``.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

CONTROLLERS = ("expert",)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", default="wipe", help="wipe | lift (default wipe)")
    p.add_argument("--controller", default="expert", help=f"{' | '.join(CONTROLLERS)} (default expert)")
    p.add_argument("--episodes", type=int, default=1, help="number of episodes (default 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the first episode; episode k uses seed+k")
    p.add_argument("--out", default="out/sim", help="output folder (default out/sim)")
    p.add_argument("--no-perturb", action="store_true", help="no surface/object changes during episodes")
    p.add_argument("--episode-seconds", type=float, default=0.0, help="episode length (0 = task default)")
    p.add_argument("--camera-hz", type=float, default=30.0, help="camera rate; 0 = no rendering, no video")
    p.add_argument("--width", type=int, default=320, help="camera width (px)")
    p.add_argument("--height", type=int, default=240, help="camera height (px)")
    p.add_argument("--set", action="append", default=[], metavar="NODE.PARAM=VALUE",
                   help="override any node parameter (repeatable)")


def _writable_dir(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise ValueError(f"--out {path}: not writable ({exc.strerror or exc})") from None
    return path


def run(args: argparse.Namespace) -> int:
    from sim import TASKS  # noqa: PLC0415

    from slowfast_ros import stack  # noqa: PLC0415
    from slowfast_ros.checks import gl_candidates, working_gl_backend  # noqa: PLC0415

    if args.task not in TASKS:
        raise ValueError(f"--task: unknown task '{args.task}' (choose from {', '.join(TASKS)})")
    if args.controller not in CONTROLLERS:
        raise ValueError(f"--controller: unknown controller '{args.controller}' (choose from {', '.join(CONTROLLERS)})")
    if args.episodes < 1:
        raise ValueError(f"--episodes: {args.episodes} must be at least 1")
    if args.camera_hz < 0:
        raise ValueError(f"--camera-hz: {args.camera_hz} must be >= 0")
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
        task=args.task, seed=args.seed, episodes=args.episodes, perturb=not args.no_perturb,
        episode_seconds=float(args.episode_seconds), camera_hz=float(args.camera_hz),
        camera_width=args.width, camera_height=args.height, out_dir=str(out.resolve()))
    overrides.setdefault(f"{args.controller}_node", {}).update(task=args.task)
    profile = stack.load_profile(f"sim-{args.controller}")
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
    summary = json.loads(metrics_path.read_text())["summary"]
    print("summary: " + ", ".join(f"{k}={_fmt(v)}" for k, v in summary.items()))
    print(f"wrote {metrics_path}" + (", camera_*.mp4" if args.camera_hz > 0 else "") + ", force_*.png")
    return 0


def _fmt(v) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)

