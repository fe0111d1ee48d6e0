"""`slowfast nav eval`: evaluate a navigation policy in the MuJoCo navigation sim (no ROS).

    slowfast nav eval --episodes 50 --out out/nav_eval --checkpoint ckpt/vln     # a StreamVLN checkpoint
    slowfast nav eval --episodes 50 --out out/nav_random --policy random         # baselines: random, forward
    slowfast nav eval --episodes 5 --out out/nav_expert --policy expert          # the shortest-path expert

Episodes are drawn from ``--seed`` on (one procedurally generated layout per episode; the
default 100000 keeps them apart from the layouts `slowfast train vln` generates data on, 0..).
Each turn the policy sees the RGB-D frame and answers up to 4 actions, executed at once
(the synchronous mode; `slowfast up sim-nav` runs the same sim in real time over ROS 2).
Writes ``episode_NNN.json`` (metrics, actions, path) and ``episode_NNN.png`` (top-down path
against the reference) per episode, and ``summary.json`` (means of NE, SR, OS, SPL, nDTW).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

POLICIES = ("agent", "random", "forward", "expert")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=("eval",), help="eval: run episodes and write metrics")
    p.add_argument("--episodes", type=int, default=20, help="number of episodes (default 20)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--policy", choices=POLICIES, default="agent",
                   help="agent (needs --checkpoint) | random | forward | expert (default agent)")
    p.add_argument("--checkpoint", help="StreamVLN checkpoint folder (for --policy agent)")
    p.add_argument("--seed", type=int, default=100000, help="seed of the first episode (default 100000: held out)")
    p.add_argument("--max-steps", type=int, default=300, help="actions per episode before it is cut (default 300)")
    from sim.nav.env import NavConfig  # noqa: PLC0415

    d = NavConfig()
    p.add_argument("--width", type=int, default=d.camera_width, help="camera width (default %(default)s)")
    p.add_argument("--height", type=int, default=d.camera_height, help="camera height (default %(default)s)")
    p.add_argument("--context", choices=("sliding", "tumbling", "recompute"), default="sliding",
                   help="agent context mode (default sliding)")
    p.add_argument("--device", default="cpu", help="torch device for the agent (default cpu)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNGs")
    p.add_argument("--no-progress", action="store_true", help="no progress line")


def build_policy(args, env):
    from sim.nav.rollout import ExpertPolicy, ForwardPolicy, RandomPolicy

    if args.policy == "random":
        return RandomPolicy(seed=args.seed)
    if args.policy == "forward":
        return ForwardPolicy()
    if args.policy == "expert":
        return ExpertPolicy(env)
    if not args.checkpoint:
        raise ValueError("--policy agent needs --checkpoint DIR (or choose --policy random|forward|expert)")
    folder = Path(args.checkpoint)
    if not folder.is_dir():
        raise ValueError(f"--checkpoint {folder}: no such folder")
    from policy.streamvln.train import load_agent

    return load_agent(folder, device=args.device, context_mode=args.context)


def run(args: argparse.Namespace) -> int:
    import sys

    if args.episodes < 1:
        raise ValueError(f"--episodes {args.episodes}: must be at least 1")
    if args.max_steps < 1:
        raise ValueError(f"--max-steps {args.max_steps}: must be at least 1")
    if args.policy != "agent" and args.checkpoint:
        raise ValueError("--checkpoint applies to --policy agent only")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from sim.nav import NavConfig, NavEnv, make_episode
    from sim.nav.metrics import summarize
    from sim.nav.report import plot_episode
    from sim.nav.rollout import run_episode

    env = NavEnv(NavConfig(camera_width=args.width, camera_height=args.height))
    policy = build_policy(args, env)
    results = []
    for k in range(args.episodes):
        ep = make_episode(args.seed + k)
        m = run_episode(env, ep, policy, max_steps=args.max_steps, render=args.policy == "agent")
        m.update({"episode": k, "seed": ep.seed, "instruction": ep.instruction, "goal_name": ep.goal_name})
        (out / f"episode_{k:03d}.json").write_text(json.dumps({**m, "episode_spec": ep.to_dict()}, indent=1))
        if not args.no_plots:
            plot_episode(out / f"episode_{k:03d}.png", env.layout, ep, m["path"], m, f"{args.policy} episode {k}")
        results.append(m)
        if not args.no_progress:
            s = summarize(results)
            print(f"\r[{k + 1}/{args.episodes}] SR {s['SR']:.2f} SPL {s['SPL']:.2f} NE {s['NE']:.2f}",
                  end="", file=sys.stderr, flush=True)
    if not args.no_progress:
        print(file=sys.stderr)
    summary = {"policy": args.policy, "checkpoint": args.checkpoint, "seed": args.seed, **summarize(results),
               "turn_latency_s_p50": float(sorted(r["turn_latency_s_p50"] for r in results)[len(results) // 2])}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    env.close()
    print(json.dumps(summary))
    return 0
