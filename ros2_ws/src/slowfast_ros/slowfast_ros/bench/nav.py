"""`slowfast bench nav`: StreamVLN per-turn latency over a long episode through ROS 2.

The `sim-nav` stack (nav_sim_node + streamvln_nav) runs one episode of ``--turns`` turns. The
agent is :class:`policy.streamvln.bench.ExploringAgent`: a random model of the `bench vln`
sizes, sliding window and 3-D memory on, every turn computed in full by the nav node's turn
thread from the sim's RGB-D and odometry; its motion is a depth-based wander, so the episode
lasts as long as asked (a random model's own answers would stop it). The nav node reports every
turn's latency, cache and memory tokens in the episode's end event; the bench also listens to
``cmd_vel`` for full stops while the episode runs. Wall time is about 3 s per turn (the base
drives at 0.3 m/s); per-turn latency is process wall time, so run it on a quiet machine.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--turns", type=int, default=125, help="turns of the episode (default 125: ~450 actions)")
    p.add_argument("--seed", type=int, default=0, help="nav sim episode seed (layout)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads of the nav node (default 1)")
    p.add_argument("--window", type=int, default=8, help="dialogue turns in the sliding window")
    p.add_argument("--memory-tokens", type=int, default=8 * 196, help="memory cap M")


def _median_ms(values) -> float | None:
    import numpy as np

    return round(float(np.median(values)) * 1e3, 2) if len(values) else None


def run(args: argparse.Namespace) -> dict:
    import numpy as np
    from geometry_msgs.msg import Twist  # noqa: PLC0415
    from std_msgs.msg import String  # noqa: PLC0415

    from slowfast_ros import msgs, qos, stack  # noqa: PLC0415
    from slowfast_ros.topic_probe import TopicProbe  # noqa: PLC0415

    if not 20 <= args.turns <= 5000:
        raise ValueError(f"--turns {args.turns}: outside 20..5000")
    overrides = {"streamvln_nav": {"agent_factory": "policy.streamvln.bench:exploring_agent",
                                   "max_turns": args.turns},
                 "nav_sim_node": {"episodes": 1, "seed": args.seed, "episode_seconds": 6.0 * args.turns + 60.0}}
    env = {"SLOWFAST_BENCH_NAV": json.dumps({"threads": args.threads, "window": args.window,
                                             "memory_tokens": args.memory_tokens})}
    probe = TopicProbe({})
    lock = threading.Lock()
    ends, cmds = [], []

    def on_status(m: String) -> None:
        try:
            ev = msgs.json_from_msg(m)
        except ValueError:
            return
        if ev.get("event") not in (None, "start"):
            with lock:
                ends.append(ev)

    def on_cmd(m: Twist) -> None:
        with lock:
            cmds.append((time.monotonic(), m.linear.x, m.angular.z))

    probe.node.create_subscription(String, "/nav/status", on_status, qos.LATCHED)
    probe.node.create_subscription(Twist, "/cmd_vel", on_cmd, qos.COMMAND)
    print(f"sim-nav stack, one episode of {args.turns} turns (about {3 * args.turns // 60 + 1} min)...",
          file=sys.stderr, flush=True)
    t0 = time.monotonic()
    try:
        with tempfile.TemporaryDirectory() as logs, \
                stack.Stack(stack.load_profile("sim-nav"), overrides, log_dir=Path(logs), env=env) as s:
            deadline = time.monotonic() + 6.0 * args.turns + 180.0
            while time.monotonic() < deadline and not s.any_exited():
                with lock:
                    if ends:
                        break
                time.sleep(0.5)
            with lock:
                end = ends[0] if ends else None
            if end is None:
                raise RuntimeError("the episode did not end: " + (s.last_line("streamvln_nav") or "no log"))
    finally:
        probe.close()
    wall = time.monotonic() - t0
    lat = np.asarray(end.get("turn_latency_s") or [], float)
    cache = end.get("cache_tokens") or []
    mem = end.get("memory_tokens") or []
    n = len(lat)
    if n < 20:
        raise RuntimeError(f"only {n} turns ran (event {end.get('event')})")
    first = lat[3:13]                 # turns 4..13: after the first calls' one-time costs
    last = lat[-10:]
    with lock:
        c = np.asarray(cmds, float) if cmds else np.zeros((0, 3))
    stopped = float(np.mean((np.abs(c[:, 1]) < 1e-3) & (np.abs(c[:, 2]) < 1e-3))) if len(c) else None
    return {
        "turns": n, "event": end.get("event"), "wall_s": round(wall, 1),
        "latency_ms": {"turns_4_13_p50": _median_ms(first), "turns_40_60_p50": _median_ms(lat[39:60]),
                       "last_10_p50": _median_ms(last), "all_p50": _median_ms(lat),
                       "all_p99": round(float(np.percentile(lat, 99)) * 1e3, 2), "max": round(float(lat.max()) * 1e3, 2)},
        "last_over_first": round(float(np.median(last) / np.median(first)), 3),
        "cache_tokens": {"turn_10": cache[9] if len(cache) > 9 else None,
                         "turn_50": cache[49] if len(cache) > 49 else None, "last": cache[-1] if cache else None,
                         "max": max(cache) if cache else None},
        "memory_tokens": {"last": mem[-1] if mem else None, "max": max(mem) if mem else None},
        # per block of 10 turns: latency p50 and the largest cache, to see where the cache stops
        # growing (the window fills, then the memory reaches its cap) and latency with it
        "per_10_turns": [{"turns": f"{k + 1}-{min(k + 10, n)}", "latency_ms_p50": _median_ms(lat[k:k + 10]),
                          "cache_tokens_max": max(cache[k:k + 10]) if cache[k:k + 10] else None}
                         for k in range(0, n, 10)],
        "cmd_vel_full_stop_fraction": None if stopped is None else round(stopped, 4),
        "cmd_vel_messages": int(len(c)),
        "agent": "random model at `bench vln` sizes, window 8, memory refresh every 8 turns, depth-based wander",
    }
