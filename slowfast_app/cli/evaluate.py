"""`slowfast evaluate --task wipe --policy EXPORT --episodes 200`: the synchronous evaluator.

The served policy and the simulator in one process (``sim.policy_eval``): the nodes' own
cores (slow planner, reactive executor, decoder, safety filter) with the nodes' own
parameter files (``rdp_slow.yaml``, ``rdp_fast.yaml``, ``sim_node.yaml``, changed with
``--set NODE.PARAM=VALUE`` as for ``slowfast sim``), stepped in simulated time with the
slow policy's latency modelled (``--latency``). Deterministic per seed; ``--workers``
processes share the seeds.

``--oracle DATASET`` serves the demonstrations of a ``slowfast demos`` dataset instead of the
model (``policy.rdp.replay``; ``--tokenizer CKPT`` for an RDP export): on the
demonstrations' own seeds, what the runtime loses.

Prints one line per episode (unless ``--quiet``) and the success rate with its 95 % Wilson
interval; ``--json FILE`` writes every episode's metrics and the summary.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

_WORKER = {}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", default="wipe", help="sim task: wipe | lift (default wipe)")
    p.add_argument("--policy", required=True, help="export folder (`slowfast export CKPT --out DIR`)")
    p.add_argument("--episodes", type=int, default=20, help="episodes (default 20)")
    p.add_argument("--seed", type=int, default=0, help="seed of the first episode; episode k uses seed+k")
    p.add_argument("--seeds", default="", help="explicit comma-separated seeds instead of --seed/--episodes")
    p.add_argument("--no-perturb", action="store_true", help="no surface/object changes during episodes")
    p.add_argument("--episode-seconds", type=float, default=0.0, help="episode length (0 = task default)")
    from sim.policy_eval import ServingTiming  # noqa: PLC0415

    p.add_argument("--latency", type=float, default=ServingTiming.latency_s,
                   help="seconds from a slow cycle's start to its chunk in the fast loop: inference "
                        "plus transport (default %(default)g)")
    p.add_argument("--set", action="append", default=[], metavar="NODE.PARAM=VALUE",
                   help="override a node parameter (rdp_slow, rdp_fast, sim_node), as for `slowfast sim`")
    p.add_argument("--oracle", default="", metavar="DATASET",
                   help="serve this dataset's demonstrations (same seeds) instead of the model")
    p.add_argument("--tokenizer", default="", metavar="CKPT",
                   help="with --oracle and an RDP export: the tokenizer checkpoint whose encoder makes the latent")
    p.add_argument("--oracle-raw", action="store_true",
                   help="with --oracle: serve the relative actions open loop (the DP's chunk kind) whatever the export")
    from policy.rdp.replay import ANCHORS  # noqa: PLC0415

    p.add_argument("--oracle-anchor", choices=ANCHORS, default=ANCHORS[0],
                   help="with --oracle: world (default): the demonstrator's targets where it sent them, re-expressed "
                        "from the measured pose; demonstration: each recorded chunk relative to the measured pose, so "
                        "a lag behind the demonstration stays (policy.rdp.replay)")
    p.add_argument("--workers", type=int, default=1, help="processes (default 1; at most the cores)")
    p.add_argument("--json", default="", help="write every episode's metrics and the summary here")
    p.add_argument("--quiet", action="store_true", help="only the summary")


def serving_setup(task: str, policy: str, sets: list[str], latency: float, transport: float = 0.0):
    """(ServingTiming, SafetyConfig) from the nodes' parameter files and ``--set`` overrides."""
    from sim.policy_eval import ServingTiming  # noqa: PLC0415

    from slowfast_app import stack  # noqa: PLC0415

    over = stack.parse_sets(sets)
    unknown = sorted(set(over) - {"rdp_slow", "rdp_fast", "sim_node"})
    if unknown:
        raise ValueError(f"--set: node(s) {unknown} are not part of an evaluation (rdp_slow, rdp_fast, sim_node)")
    slow = stack.node_params("rdp_slow", "slowfast_ros.nodes.rdp_slow", {**over.get("rdp_slow", {}), "export_dir": policy})
    fast = stack.node_params("rdp_fast", "slowfast_ros.nodes.rdp_fast", {**over.get("rdp_fast", {}), "export_dir": policy})
    simp = stack.node_params("sim_node", "slowfast_ros.nodes.sim_node", {**over.get("sim_node", {}), "task": task})
    timing = ServingTiming(control_hz=fast.control_hz, rate_hz=slow.rate_hz, sensor_hz=min(simp.pose_hz, simp.wrench_hz),
                           camera_hz=simp.camera_hz, camera_width=simp.camera_width, camera_height=simp.camera_height,
                           blend_s=fast.blend_s, image_tolerance=slow.image_tolerance,
                           chunk_pose_tolerance=fast.chunk_pose_tolerance, handover=slow.handover,
                           inpaint_soft_s=slow.inpaint_soft_s, embodiment=simp.embodiment, splice=fast.splice,
                           force=fast.force, latency_s=float(latency), transport_s=float(transport))
    return timing, fast.safety


def _init(spec: dict) -> None:
    import os  # noqa: PLC0415

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from sim.policy_eval import PolicyEvaluator  # noqa: PLC0415

    slow = None
    if spec["oracle"]:
        from policy.rdp.replay import ReplayPolicy  # noqa: PLC0415
        slow = ReplayPolicy(spec["oracle"], spec["policy"], spec["tokenizer"] or None, raw=spec["raw"],
                            anchor=spec["anchor"])
    _WORKER["ev"] = PolicyEvaluator(spec["policy"], spec["task"], spec["safety"], spec["timing"], spec["perturb"],
                                    slow=slow, episode_seconds=spec["episode_seconds"] or None)


def _run(seed: int) -> dict:
    return _WORKER["ev"].run(seed)


def _close() -> None:
    _WORKER.pop("ev").close()


def run_episodes(spec: dict, seeds: list[int], workers: int, show) -> None:
    """The episodes of ``seeds`` served as ``spec`` says, in this process or ``workers``
    processes; ``show(metrics)`` is called with each episode's metrics in seed order."""
    from sim.parallel import in_seed_order  # noqa: PLC0415

    for m in in_seed_order(_init, _run, _close, spec, seeds, workers):
        show(m)


def run(args: argparse.Namespace) -> int:
    from sim import TASKS  # noqa: PLC0415
    from sim.report import jsonable  # noqa: PLC0415

    from slowfast_app.experiment import summarize_method  # noqa: PLC0415

    if args.task not in TASKS:
        raise ValueError(f"--task: unknown task '{args.task}' (choose from {', '.join(TASKS)})")
    if not (Path(args.policy) / "runtime.json").is_file():
        raise ValueError(f"--policy {args.policy}: not an export folder (no runtime.json; run `slowfast export`)")
    if args.seeds:
        try:
            seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
        except ValueError:
            raise ValueError(f"--seeds {args.seeds!r}: comma-separated integers expected") from None
    else:
        if args.episodes < 1:
            raise ValueError(f"--episodes: {args.episodes} must be at least 1")
        seeds = list(range(args.seed, args.seed + args.episodes))
    from sim.parallel import check_workers  # noqa: PLC0415

    check_workers(args.workers)
    from policy.rdp.replay import ANCHORS  # noqa: PLC0415

    if (args.tokenizer or args.oracle_raw or args.oracle_anchor != ANCHORS[0]) and not args.oracle:
        what = "tokenizer" if args.tokenizer else "oracle-raw" if args.oracle_raw else "oracle-anchor"
        raise ValueError(f"--{what}: only with --oracle")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    timing, safety = serving_setup(args.task, args.policy, args.set, args.latency)
    spec = {"policy": args.policy, "task": args.task, "safety": safety, "timing": timing,
            "perturb": not args.no_perturb, "oracle": args.oracle, "tokenizer": args.tokenizer, "raw": args.oracle_raw,
            "anchor": args.oracle_anchor, "episode_seconds": args.episode_seconds}
    what = (f"oracle replay ({'raw' if args.oracle_raw else 'as served'}, anchored at the "
            f"{args.oracle_anchor}) of {args.oracle}") if args.oracle else args.policy
    print(f"slowfast evaluate: {args.task}, {what}, {len(seeds)} episode(s) from seed {seeds[0]}, "
          f"{'un' if args.no_perturb else ''}perturbed, chunk every {1 / timing.rate_hz:.3g} s, "
          f"latency {timing.latency_s:g} s, {args.workers} worker(s)", flush=True)
    t0 = time.monotonic()
    episodes = []

    def show(m: dict) -> None:
        episodes.append(m)
        if not args.quiet:
            keys = ("coverage", "time_in_band", "max_lift", "hold_time", "peak_force")
            figures = ", ".join(f"{k}={m[k]:.3g}" for k in keys if isinstance(m.get(k), (int, float)))
            print(f"  seed {m['seed']}: success={m['success']} ({figures}, {m['chunks']} chunks) "
                  f"{time.monotonic() - t0:.0f} s", flush=True)

    run_episodes(spec, seeds, args.workers, show)
    wall = time.monotonic() - t0
    summary = summarize_method(episodes)
    blind = [m["seed"] for m in episodes if m["chunks"] == 0]
    print(f"summary: {summary['successes']}/{summary['episodes']} succeeded = {summary['success_rate']:.3f} "
          f"[{summary['success_ci95'][0]:.3f}, {summary['success_ci95'][1]:.3f}] (95 % Wilson); "
          f"{wall:.0f} s, {wall / len(seeds):.2f} s per episode", flush=True)
    if args.json:
        import dataclasses  # noqa: PLC0415
        Path(args.json).write_text(json.dumps(jsonable({
            "task": args.task, "policy": args.policy, "oracle": args.oracle or None, "perturbed": not args.no_perturb,
            "timing": dataclasses.asdict(timing), "seeds": seeds, "summary": summary, "wall_s": wall,
            "episodes": episodes}), indent=1))
        print(f"wrote {args.json}")
    if blind:
        print(f"slowfast evaluate: error: no chunk reached the fast loop in the episode(s) of seed "
              f"{', '.join(map(str, blind))}", file=sys.stderr)
        return 1
    return 0
