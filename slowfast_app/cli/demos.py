"""`slowfast demos --task wipe --episodes N --out DATASET`: scripted demonstrations generated in
one process, faster than real time, straight into a dataset.

``--via teleop`` (default) runs the same chain as ``slowfast record --operator scripted``
(expert -> scripted operator -> the app's JSON -> clutch retargeting -> the safety filter
with safety_node's parameter file limits) with the synchronous sim: no DDS, no stalled sensor
streams, deterministic per seed. ``--via expert`` lets the expert command the arm directly.
Prints one line per episode and a summary; exit 1 when an episode failed its task (with
``--only-success`` failed episodes are left out of the dataset instead).
"""
from __future__ import annotations

import argparse
import time

from slowfast_app.cli.convert import whole_fps


def add_arguments(p: argparse.ArgumentParser) -> None:
    from slowfast_app.cli.sim import add_episode_arguments  # noqa: PLC0415

    p.add_argument("--task", default="wipe", help="sim task: wipe | lift (default wipe)")
    p.add_argument("--episodes", type=int, default=10, help="episodes (default 10)")
    p.add_argument("--out", required=True, help="dataset folder to write (must be empty or absent)")
    p.add_argument("--via", choices=("teleop", "expert"), default="teleop",
                   help="teleop: through the operator, retargeting and safety filter (default); "
                        "expert: the expert commands the arm directly")
    p.add_argument("--fps", type=whole_fps, default=50, help="dataset frame rate, whole frames per second (divides 200 Hz; default 50)")
    p.add_argument("--no-camera", action="store_true", help="write no camera images")
    p.add_argument("--only-success", action="store_true",
                   help="write only the episodes that succeeded (exit 0 while at least one did)")
    p.add_argument("--nominal", action="store_true",
                   help="also replay each perturbed episode without its perturbations and keep the nominal actions "
                        "(for `slowfast train decoder`; one more sim run per perturbation)")
    p.add_argument("--workers", type=int, default=1,
                   help="processes, each with its own sim (default 1; at most the cores); the dataset is the same")
    add_episode_arguments(p)


def safety_node_limits():
    """The SafetyConfig that safety_node runs with from its shipped parameter file."""
    from slowfast_app import stack  # noqa: PLC0415

    return stack.node_params("safety_node", "slowfast_ros.nodes.safety_node").safety


def run(args: argparse.Namespace) -> int:
    from sim import TASKS  # noqa: PLC0415
    from sim.datagen import generate_dataset  # noqa: PLC0415

    if args.task not in TASKS:
        raise ValueError(f"--task: unknown task '{args.task}' (choose from {', '.join(TASKS)})")
    if args.episodes < 1:
        raise ValueError(f"--episodes: {args.episodes} must be at least 1")
    from sim.parallel import check_workers  # noqa: PLC0415

    check_workers(args.workers)
    runner = None
    if args.via == "teleop":
        from teleop_tactar.demonstrator import TeleopEpisodeRunner  # noqa: PLC0415
        runner = TeleopEpisodeRunner(safety_node_limits())
    results = []
    t0 = time.monotonic()

    def progress(ep, metrics):
        results.append(bool(metrics.get("success")))
        keys = ("coverage", "time_in_band", "max_lift", "hold_time", "peak_force")
        figures = ", ".join(f"{k}={metrics[k]:.3g}" for k in keys if isinstance(metrics.get(k), (int, float)))
        print(f"  episode {ep + 1}/{args.episodes} (seed {args.seed + ep}): success={metrics.get('success')} "
              f"({figures}) {time.monotonic() - t0:.0f} s", flush=True)

    print(f"slowfast demos: {args.task}, {args.episodes} episode(s) via {args.via}, seed {args.seed} -> {args.out}",
          flush=True)
    root = generate_dataset(args.out, task=args.task, episodes=args.episodes, seed=args.seed, fps=args.fps,
                            image_size=(args.height, args.width), perturb=not args.no_perturb,
                            embodiment=args.embodiment,
                            episode_seconds=args.episode_seconds or None, camera=not args.no_camera,
                            progress=progress, episode_runner=runner, label=f"scripted {args.via}",
                            only_success=args.only_success, nominal=args.nominal, workers=args.workers)
    n_ok = sum(results)
    kept = f", {n_ok} written" if args.only_success else ""
    print(f"slowfast demos: {n_ok}/{len(results)} succeeded{kept} -> {root} ({time.monotonic() - t0:.0f} s)")
    return 0 if n_ok == len(results) or args.only_success else 1
