"""``slowfast bench vln``: per-turn latency of the KV strategies, cache size, 3-D pruning.

A random model of the StreamVLN architecture (sizes below; real weights cannot be fetched here)
runs on CPU over a synthetic RGB-D episode: a box room, a rectangular loop driven again and
again (places are revisited), 4 actions per turn, so a 400-step episode is 100 turns. The model's
own answers are ignored for motion (it is random); the trajectory is scripted, and every mode
sees the same frames and decodes the same number of tokens per turn.

Modes: ``sliding`` (ours), ``tumbling`` (the published reset every window), ``recompute`` (the
same tokens as sliding, re-encoded from scratch every turn; timed on every 10th turn on a copy
of the sliding agent's state). Modes run interleaved turn by turn, and both wall-clock and
process CPU time are reported: the machines are shared, and CPU time is far less sensitive to
other people's load. Progress goes to stderr.
"""
from __future__ import annotations

import argparse
import sys
import time
from collections import deque

import numpy as np


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--steps", type=int, default=400, help="episode length in actions (4 per turn)")
    parser.add_argument("--window", type=int, default=8, help="dialogue turns in the fast context")
    parser.add_argument("--memory-tokens", type=int, default=8 * 196, help="memory cap M")
    parser.add_argument("--modes", default="sliding,tumbling,recompute", help="comma-separated modes to run")
    parser.add_argument("--repeats", type=int, default=3,
                        help="episodes; per-turn latency is the median over repeats")
    parser.add_argument("--hidden", type=int, default=256, help="decoder hidden size")
    parser.add_argument("--layers", type=int, default=4, help="decoder layers")
    parser.add_argument("--heads", type=int, default=4, help="decoder attention heads")
    parser.add_argument("--kv-heads", type=int, default=2, help="decoder key/value heads")
    parser.add_argument("--intermediate", type=int, default=1024, help="decoder MLP width")
    parser.add_argument("--vision-hidden", type=int, default=64, help="SigLIP hidden size")
    parser.add_argument("--vision-layers", type=int, default=2, help="SigLIP layers")
    parser.add_argument("--answer-tokens", type=int, default=5, help="tokens decoded per turn (4 actions + end)")
    parser.add_argument("--width", type=int, default=160, help="synthetic frame width, px")
    parser.add_argument("--height", type=int, default=120, help="synthetic frame height, px")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (1: CPU time per turn ~ latency on an idle core)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random model")


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _episode_frames(steps: int, width: int, height: int):
    from .synthetic import BoxRoom, camera_pose, loop_actions, pinhole, rollout

    room = BoxRoom()
    K = pinhole(width, height)
    states = rollout(loop_actions(steps))[:steps]
    out = []
    for x, y, yaw in states:
        pose = camera_pose(x, y, yaw)
        rgb, depth = room.render(pose, K, width, height)
        out.append((rgb, depth, K, pose))
    return out


def bench_model(args):
    """The random model of the bench sizes in ``args`` (this module's arguments): (model, tokenizer)."""
    from .tiny import build_tiny_model, build_tiny_tokenizer

    tok = build_tiny_tokenizer()
    model = build_tiny_model(
        tok, seed=args.seed, image_size=384,
        text_kwargs=dict(hidden_size=args.hidden, num_layers=args.layers, num_heads=args.heads,
                         num_kv_heads=args.kv_heads, intermediate_size=args.intermediate),
        vision_kwargs=dict(hidden_size=args.vision_hidden, num_layers=args.vision_layers, num_heads=2,
                           intermediate_size=4 * args.vision_hidden))
    return model, tok


def _pruning_all_steps(frames, side: int, mem_cfg) -> dict:
    """Geometry only: every step's frame into the 3-D pruning (features are placeholders)."""
    import torch

    from .memory import SpatialMemory, backproject_tokens

    mem = SpatialMemory(mem_cfg)
    for t, (_, depth, K, pose) in enumerate(frames):
        geo = backproject_tokens(depth, K, pose, side, mem_cfg)
        mem.add(t, torch.zeros(side * side, 1), geo)
    mem.add(len(frames) + mem_cfg.block_frames, torch.zeros(side * side, 1), geo)  # close the last block
    st = mem.stats
    return {"frames": len(frames), "valid_tokens": st.pruned_valid_tokens, "kept_tokens": st.pruned_kept_tokens,
            "removed_fraction": round(st.pruning_ratio, 4), "frames_dropped": st.frames_dropped}


def _as_recompute(agent, cfg):
    """A copy of ``agent`` (model and tokenizer shared) switched to ``recompute``: its next step
    re-encodes exactly the tokens the sliding agent will hold, from scratch. Timing recompute this
    way on sampled turns costs a few turns instead of a whole slow episode, and the two are timed
    back to back under the same machine load."""
    import copy

    memo = {id(agent.model): agent.model, id(agent.tokenizer): agent.tokenizer}
    clone = copy.deepcopy(agent, memo)
    clone.config = cfg
    return clone


def run(args: argparse.Namespace) -> dict:
    import numpy as np
    import torch

    from .agent import StreamVLNAgent
    from .config import AgentConfig, MemoryConfig

    torch.set_num_threads(max(1, args.threads))
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if args.steps < 4:
        raise SystemExit("--steps must be >= 4")
    model, tok = bench_model(args)
    _log(f"model: decoder {args.layers}x{args.hidden}, vision {args.vision_layers}x{args.vision_hidden}, "
         f"{model.tokens_per_frame} tokens/frame; rendering {args.steps} frames")
    all_frames = _episode_frames(args.steps, args.width, args.height)
    turn_frames = all_frames[::4]
    n_turns = len(turn_frames)
    mem_cfg = MemoryConfig(max_tokens=args.memory_tokens)

    # Turns from which the cache should be flat: the window is full and the memory has reached
    # its cap (memory frames only exist once older than the window).
    steady_from = max(2 * args.window, n_turns // 4)
    report_turns = [k for k in (1, 10, 50, 100) if k <= n_turns]
    # recompute is timed on these turns only (see _as_recompute); every 10th turn + the reported ones
    shadow_turns = sorted(set(report_turns) | set(range(10, n_turns + 1, 10)))
    loop_modes = [m for m in modes if m != "recompute"]
    if "recompute" in modes and "sliding" not in loop_modes:
        loop_modes.insert(0, "sliding")  # recompute shadows the sliding agent's state
    cfgs = {m: AgentConfig(window_turns=args.window, memory_refresh_turns=args.window, context_mode=m,
                           max_new_tokens=args.answer_tokens, stop_on_eos=False, memory=mem_cfg)
            for m in ("sliding", "tumbling", "recompute")}
    for m in loop_modes:  # first calls pay one-time costs: not measured
        warm = StreamVLNAgent(model, tok, cfgs[m])
        warm.reset("warm up")
        for rgb, depth, K, pose in turn_frames[:3]:
            warm.step(rgb, depth, K, pose)

    reps = max(1, args.repeats)
    wall = {m: np.full((reps, n_turns), np.nan) for m in modes}
    cpu = {m: np.full((reps, n_turns), np.nan) for m in modes}
    cache = {m: np.zeros(n_turns, dtype=np.int64) for m in modes}
    prefill = {m: np.zeros(n_turns, dtype=np.int64) for m in modes}
    peak = {m: 0 for m in modes}
    agents: dict = {}
    for rep in range(reps):
        agents = {m: StreamVLNAgent(model, tok, cfgs[m]) for m in loop_modes}
        for a in agents.values():
            a.reset("Walk along the red wall, turn left at the corner and stop by the door.")
        t0 = time.perf_counter()
        for t, frame in enumerate(turn_frames):
            jobs = [(m, agents[m]) for m in loop_modes]
            if "recompute" in modes and t + 1 in shadow_turns:
                jobs.insert(0, ("recompute", _as_recompute(agents["sliding"], cfgs["recompute"])))
            for m, agent in jobs:  # modes interleaved turn by turn: load changes hit them alike
                w0, c0 = time.perf_counter(), time.process_time()
                agent.step(*frame)
                w1, c1 = time.perf_counter(), time.process_time()
                if m not in modes:
                    continue
                wall[m][rep, t], cpu[m][rep, t] = w1 - w0, c1 - c0
                cache[m][t] = agent.stats.cache_tokens
                prefill[m][t] = agent.stats.last_prefill_tokens
                peak[m] = max(peak[m], agent.stats.peak_cache_tokens)
        _log(f"episode {rep + 1}/{reps}: {n_turns} turns of {', '.join(modes)} in {time.perf_counter() - t0:.1f} s")

    def ms(x) -> float | None:
        return None if x is None or not np.isfinite(x) else round(float(x) * 1e3, 2)

    results: dict = {}
    for m in modes:
        w_med, c_med = np.median(wall[m], axis=0), np.median(cpu[m], axis=0)
        timed = np.flatnonzero(np.isfinite(w_med))
        refresh = [t for t in timed if t > 0 and t % args.window == 0]
        other = [t for t in timed if t > args.window and t % args.window != 0]
        steady = [t for t in timed if t >= steady_from]
        results[m] = {
            "timed_turns": "all" if len(timed) == n_turns else [int(t) + 1 for t in timed],
            "latency_ms_at_turn": {str(k): ms(w_med[k - 1]) for k in report_turns},
            "cpu_ms_at_turn": {str(k): ms(c_med[k - 1]) for k in report_turns},
            "latency_ms_mean": ms(np.mean(w_med[timed])),
            "latency_ms_p95": ms(np.percentile(w_med[timed], 95)),
            "latency_ms_max": ms(np.max(w_med[timed])),
            "latency_ms_mean_refresh_turns": ms(np.mean(w_med[refresh])) if refresh else None,
            "latency_ms_mean_other_turns": ms(np.mean(w_med[other])) if other else None,
            "cpu_ms_mean_refresh_turns": ms(np.mean(c_med[refresh])) if refresh else None,
            "cpu_ms_mean_other_turns": ms(np.mean(c_med[other])) if other else None,
            "prefill_tokens_at_turn": {str(k): int(prefill[m][k - 1]) for k in report_turns},
            "cache_tokens_at_turn": {str(k): int(cache[m][k - 1]) for k in report_turns},
            "peak_cache_tokens": int(peak[m]),
            "cache_tokens_min_max_steady": [int(cache[m][steady].min()), int(cache[m][steady].max())] if steady else None,
        }
    if "sliding" in agents:
        st = agents["sliding"].stats
        mst = st.memory
        results["pruning_agent_memory"] = {
            "frames": mst.frames_added, "valid_tokens": mst.pruned_valid_tokens,
            "kept_tokens": mst.pruned_kept_tokens, "removed_fraction": round(mst.pruning_ratio, 4),
            "frames_dropped": mst.frames_dropped, "candidates_before_cap_last": mst.last_candidate_tokens,
            "memory_tokens_last": mst.last_memory_tokens, "memory_frames_last": mst.last_memory_frames,
            "parse_failures": st.parse_failures}

    _log("pruning over every step of the trajectory")
    results["pruning_every_step"] = _pruning_all_steps(all_frames, model.pooled_side, mem_cfg)

    summary: dict = {}
    if "sliding" in modes:
        for key in ("latency_ms_at_turn", "cpu_ms_at_turn"):
            s = results["sliding"][key]
            if "10" in s and "100" in s:
                summary[f"sliding_turn100_over_turn10_{key[:-8]}"] = round(s["100"] / s["10"], 3)
            if "recompute" in results and "100" in s:
                summary[f"recompute_over_sliding_turn100_{key[:-8]}"] = round(
                    results["recompute"][key]["100"] / s["100"], 2)
        summary["sliding_cache_tokens_min_max_steady"] = results["sliding"]["cache_tokens_min_max_steady"]
        summary["sliding_refresh_turn_ms_mean"] = results["sliding"]["latency_ms_mean_refresh_turns"]
        summary["sliding_other_turn_ms_mean"] = results["sliding"]["latency_ms_mean_other_turns"]
        if "tumbling" in results:
            summary["tumbling_reset_turn_ms_mean"] = results["tumbling"]["latency_ms_mean_refresh_turns"]
            summary["tumbling_other_turn_ms_mean"] = results["tumbling"]["latency_ms_mean_other_turns"]
        summary["pruning_removed_fraction_agent_memory"] = results["pruning_agent_memory"]["removed_fraction"]
    summary["pruning_removed_fraction_every_step"] = results["pruning_every_step"]["removed_fraction"]

    return {
        "config": {"steps": args.steps, "steady_from_turn": steady_from + 1, "turns": n_turns, "window_turns": args.window,
                   "memory_tokens_cap": args.memory_tokens, "tokens_per_frame": model.tokens_per_frame,
                   "decoder": f"{args.layers} layers x {args.hidden} (heads {args.heads}/{args.kv_heads}, "
                              f"mlp {args.intermediate})",
                   "vision": f"{args.vision_layers} layers x {args.vision_hidden}, 384 px, patch 14",
                   "answer_tokens": args.answer_tokens, "repeats": reps, "threads": args.threads,
                   "tokenizer": "byte-level (text ~1 token per byte; Qwen2's is ~4x denser)",
                   "voxel_size": mem_cfg.voxel_size, "block_frames": mem_cfg.block_frames,
                   "min_keep_fraction": mem_cfg.min_keep_fraction, "seed": args.seed},
        "summary": summary,
        **results,
    }


class ExploringAgent:
    """The agent `slowfast bench nav` runs through ROS: a real :class:`StreamVLNAgent` (random
    model of the bench sizes, 3-D memory on) whose every turn is computed in full, while the motion
    comes from a depth-based wander (a random model's own answers would stop or spin, and the
    episode must last as long as asked; the per-turn cost is the model's).

    The wander keeps the obstacles it has seen: every frame's depth is back-projected with the
    frame's pose, points between ``min_height`` and ``max_height`` above the floor (world z = 0)
    mark cells of a world grid. The nav node chains a turn's actions after the goals still
    queued, so the wander plans from where its previous answer ends (while the base is on its way
    there; else from the base): it drives forward as far as the robot's corridor along that
    heading is free less ``margin_m``, at most 4 steps, or else turns 45 degrees toward the side
    with more room. Obstacles below the camera's view close to the base stay known from earlier
    frames. If two FORWARD answers in a row left the base where it was, it turns."""

    cell = 0.1  # m, obstacle grid
    grid_cells = 512  # per side: 51.2 m, centred on the episode's first pose
    look_m = 4.0  # clearance is searched this far (a constant cost per turn)
    half_width = 0.3  # m: robot radius 0.2 + 0.1
    min_height, max_height = 0.05, 1.3  # m above the floor
    margin_m = 0.45

    def __init__(self, agent):
        self.agent = agent
        self.reset_motion()

    def reset_motion(self) -> None:
        self.grid = np.zeros((self.grid_cells, self.grid_cells), bool)  # occupied cells
        self.origin: np.ndarray | None = None  # world xy of cell (0, 0)
        self.history: deque[tuple[np.ndarray, bool]] = deque(maxlen=2)  # (base xy, answered FORWARD), last turns
        self.plan_end: tuple[np.ndarray, float] | None = None  # (xy, yaw) where the last answer ends

    @property
    def stats(self):
        return self.agent.stats

    def reset(self, instruction: str) -> None:
        self.agent.reset(instruction)
        self.reset_motion()

    def _add_obstacles(self, depth, K, T) -> None:
        h, w = depth.shape
        step = max(1, w // 80)  # about 80 x 60 samples whatever the image size
        v, u = np.mgrid[0:h:step, 0:w:step]
        z = np.asarray(depth, float)[v, u]
        ok = np.isfinite(z) & (z > 0.1) & (z < 8.0)
        u, v, z = u[ok], v[ok], z[ok]
        cam = np.stack([(u - K[0, 2]) / K[0, 0] * z, (v - K[1, 2]) / K[1, 1] * z, z])
        world = T[:3, :3] @ cam + T[:3, 3:4]
        keep = (world[2] > self.min_height) & (world[2] < self.max_height)
        if self.origin is None:
            self.origin = T[:2, 3] - self.grid_cells * self.cell / 2
        ij = np.floor((world[:2, keep] - self.origin[:, None]) / self.cell).astype(np.int64)
        inside = ((ij >= 0) & (ij < self.grid_cells)).all(axis=0)
        self.grid[ij[0, inside], ij[1, inside]] = True

    def _clearance(self, xy, yaw: float) -> float:
        """Free distance (m) along ``yaw`` in the robot's corridor, from the known obstacles."""
        if self.origin is None:
            return self.look_m
        r = int(self.look_m / self.cell)
        c = np.floor((xy - self.origin) / self.cell).astype(np.int64)
        lo = np.maximum(c - r, 0)
        i, j = np.nonzero(self.grid[lo[0]:c[0] + r + 1, lo[1]:c[1] + r + 1])
        pts = (np.stack([i + lo[0], j + lo[1]], axis=1) + 0.5) * self.cell + self.origin - xy
        fwd = pts @ np.array([np.cos(yaw), np.sin(yaw)])
        lat = pts @ np.array([-np.sin(yaw), np.cos(yaw)])
        ahead = fwd[(fwd > -0.1) & (np.abs(lat) < self.half_width)]
        return float(ahead.min() - self.cell / 2) if ahead.size else self.look_m

    def step(self, rgb, depth, intrinsics, pose_world_from_camera):
        from .actions import Action
        from .nav_control import STEP_M, next_pose, wrap

        if not self.agent.step(rgb, depth, intrinsics, pose_world_from_camera):
            return []
        T = np.asarray(pose_world_from_camera, float)
        self._add_obstacles(depth, np.asarray(intrinsics, float), T)
        yaw = float(np.arctan2(T[1, 2], T[0, 2]))  # the optical axis, projected on the floor
        xy = T[:2, 3] - 0.1 * np.array([np.cos(yaw), np.sin(yaw)])  # the base origin, 0.1 m behind the camera
        stuck = (len(self.history) == 2 and all(f for _, f in self.history)
                 and np.hypot(*(xy - self.history[0][0])) < 0.05)
        start, heading = xy, yaw
        if self.plan_end is not None and not stuck:
            end, end_yaw = self.plan_end
            ahead = (end - xy) @ np.array([np.cos(yaw), np.sin(yaw)])
            if np.hypot(*(end - xy)) < 0.75 and ahead > -0.05 and abs(wrap(end_yaw - yaw)) < np.radians(50):
                start, heading = end, end_yaw  # still on the way: the new goals chain after the queued ones
        n = 0 if stuck else int(min(4, max(0.0, (self._clearance(start, heading) - self.margin_m) / STEP_M)))
        self.history.append((xy, n > 0))
        if n:
            answer = [Action.MOVE_FORWARD] * n
        else:
            left = self._clearance(start, heading + np.pi / 4) >= self._clearance(start, heading - np.pi / 4)
            answer = [Action.TURN_LEFT if left else Action.TURN_RIGHT] * 3
        x, y = start
        for a in answer:  # where the nav node's goals for this answer will end
            x, y, heading = next_pose(x, y, heading, a)
        self.plan_end = (np.array([x, y]), heading)
        return answer


def exploring_agent():
    """``agent_factory`` of `slowfast bench nav` (streamvln_nav imports it by name): the bench
    model sizes from ``$SLOWFAST_BENCH_NAV`` (JSON of this module's argument names), else defaults."""
    import json
    import os

    import torch

    from .agent import StreamVLNAgent
    from .config import AgentConfig, MemoryConfig

    p = argparse.ArgumentParser()
    add_arguments(p)
    args = p.parse_args([])
    for k, v in json.loads(os.environ.get("SLOWFAST_BENCH_NAV", "{}")).items():
        setattr(args, k, v)
    torch.set_num_threads(max(1, args.threads))
    model, tok = bench_model(args)
    cfg = AgentConfig(window_turns=args.window, memory_refresh_turns=args.window, max_new_tokens=args.answer_tokens,
                      stop_on_eos=False, memory=MemoryConfig(max_tokens=args.memory_tokens))
    return ExploringAgent(StreamVLNAgent(model, tok, cfg))
