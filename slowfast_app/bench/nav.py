"""`slowfast bench nav`: StreamVLN per-turn latency over a long episode through ROS 2.

The `sim-nav` stack (nav_sim_node + streamvln_nav) runs one episode of ``--turns`` turns. The
agent is :class:`policy.streamvln.bench.ExploringAgent`: a random model of the `bench vln`
sizes, sliding window and 3-D memory on, every turn computed in full by the nav node's turn
thread from the sim's RGB-D and odometry; its motion is a depth-based wander, so the episode
lasts as long as asked (a random model's own answers would stop it). The nav node reports every
turn's latency (wall and the turn thread's CPU time), cache and memory tokens in the episode's
end event, and its goal tracker's FORWARD-to-FORWARD joins of consecutive turns with the lowest
commanded and measured (odometry) speed through each: a join below 0.01 m/s is a stop-and-go.
The bench also listens to ``cmd_vel`` for full stops while the episode runs. Wall time is about
2 s per turn (the base drives at 0.3 m/s); wall latency shares two cores with the sim, so run it
on a quiet machine (the CPU time, measured with 1 torch thread, is what the turn computes).
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
    p.add_argument("--turns", type=int, default=125, help="turns of the episode (default 125: ~500 actions)")
    p.add_argument("--seed", type=int, default=0, help="nav sim episode seed (layout)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads of the nav node (default 1)")
    p.add_argument("--window", type=int, default=8, help="dialogue turns in the sliding window")
    p.add_argument("--memory-tokens", type=int, default=8 * 196, help="memory cap M")


def _median_ms(values) -> float | None:
    import numpy as np

    return round(float(np.median(values)) * 1e3, 2) if len(values) else None


def _at_bound_ratio(values, bound_turn: int | None) -> float | None:
    """p50 of the last 10 turns over p50 of the first 10 turns from ``bound_turn`` (1-based) on."""
    import numpy as np

    if bound_turn is None or len(values) - bound_turn < 19:
        return None
    return round(float(np.median(values[-10:]) / np.median(values[bound_turn - 1:bound_turn + 9])), 3)


def run(args: argparse.Namespace) -> dict:
    import numpy as np
    from geometry_msgs.msg import Twist  # noqa: PLC0415
    from std_msgs.msg import String  # noqa: PLC0415

    from slowfast_ros import msgs, qos  # noqa: PLC0415
    from slowfast_app import stack  # noqa: PLC0415
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
    print(f"sim-nav stack, one episode of {args.turns} turns (about {2 * args.turns // 60 + 1} min)...",
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
    cpu = np.asarray(end.get("turn_cpu_s") or [], float)
    cache = end.get("cache_tokens") or []
    mem = end.get("memory_tokens") or []
    n = len(lat)
    has_cpu = len(cpu) == n  # a node without per-turn CPU times (older end event) reports none
    if n < 20:
        raise RuntimeError(f"only {n} turns ran (event {end.get('event')})")
    first = lat[3:13]                 # turns 4..13: after the first calls' one-time costs
    last = lat[-10:]
    full = [k + 1 for k, c in enumerate(cache) if c == max(cache)]
    bound_turn = full[0] if full else None  # 1-based: first turn whose cache held the most tokens
    joins_cmd = np.asarray(end.get("forward_join_min_cmd") or [], float)
    joins_meas = np.asarray([v for v in end.get("forward_join_min_measured") or [] if v is not None], float)
    with lock:
        c = np.asarray(cmds, float) if cmds else np.zeros((0, 3))
    stopped = float(np.mean((np.abs(c[:, 1]) < 1e-3) & (np.abs(c[:, 2]) < 1e-3))) if len(c) else None
    return {
        "turns": n, "event": end.get("event"), "wall_s": round(wall, 1),
        "latency_ms": {"turns_4_13_p50": _median_ms(first), "turns_40_60_p50": _median_ms(lat[39:60]),
                       "last_10_p50": _median_ms(last), "all_p50": _median_ms(lat),
                       "all_p99": round(float(np.percentile(lat, 99)) * 1e3, 2), "max": round(float(lat.max()) * 1e3, 2)},
        "last_over_first": round(float(np.median(last) / np.median(first)), 3),
        # once the cache holds its bound (window full, memory at M) nothing grows any more:
        # latency over the first 10 turns at the bound against the last 10
        "cache_bound_turn": bound_turn,
        "at_bound_last_over_first": _at_bound_ratio(lat, bound_turn),
        "at_bound_cpu_last_over_first": _at_bound_ratio(cpu, bound_turn) if has_cpu else None,
        "cpu_ms": {"turns_4_13_p50": _median_ms(cpu[3:13]), "last_10_p50": _median_ms(cpu[-10:]),
                   "all_p50": _median_ms(cpu)} if has_cpu else None,
        "cpu_last_over_first": round(float(np.median(cpu[-10:]) / np.median(cpu[3:13])), 3) if has_cpu else None,
        "cache_tokens": {"turn_10": cache[9] if len(cache) > 9 else None,
                         "turn_50": cache[49] if len(cache) > 49 else None, "last": cache[-1] if cache else None,
                         "max": max(cache) if cache else None},
        "memory_tokens": {"last": mem[-1] if mem else None, "max": max(mem) if mem else None},
        # per block of 10 turns: latency p50 and the largest cache, to see where the cache stops
        # growing (the window fills, then the memory reaches its cap) and latency with it
        "per_10_turns": [{"turns": f"{k + 1}-{min(k + 10, n)}", "latency_ms_p50": _median_ms(lat[k:k + 10]),
                          "cpu_ms_p50": _median_ms(cpu[k:k + 10]),
                          "cache_tokens_max": max(cache[k:k + 10]) if cache[k:k + 10] else None}
                         for k in range(0, n, 10)],
        "goal_timeouts": end.get("goal_timeouts"),  # the wander drove into something it did not see
        # no stop-and-go: the lowest speed through each FORWARD-to-FORWARD join of two turns
        "forward_joins": int(end.get("forward_joins") or 0),
        "forward_join_stops": int(end.get("forward_join_stops") or 0),
        "forward_join_min_cmd_mps": {"min": round(float(joins_cmd.min()), 4), "p5": round(float(np.percentile(joins_cmd, 5)), 4),
                                     "p50": round(float(np.median(joins_cmd)), 4)} if len(joins_cmd) else None,
        "forward_join_min_measured_mps": round(float(joins_meas.min()), 4) if len(joins_meas) else None,
        "per_turn": {"latency_ms": [round(v * 1e3, 2) for v in lat.tolist()],
                     "cpu_ms": [round(v * 1e3, 2) for v in cpu.tolist()], "cache_tokens": list(cache)},
        "cmd_vel_full_stop_fraction": None if stopped is None else round(stopped, 4),
        "cmd_vel_messages": int(len(c)),
        "agent": "random model at `bench vln` sizes, window 8, memory refresh every 8 turns, depth-based wander "
                 "(obstacle grid from depth and pose)",
    }
