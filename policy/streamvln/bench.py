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

Sizes come from ``--preset`` (``default``: the CPU sizes below; ``tiny``: a quick run;
``published``: the StreamVLN architecture, Qwen2-7B decoder + SigLIP so400m tower, 8 B random
parameters, for a GPU); any size flag overrides its preset value. ``--device cuda --dtype bf16``
runs on a GPU: the KV cache is then static with a captured decode step and the refresh prepared
incrementally (``--kv-cache`` / ``--refresh`` choose explicitly), the agents are warmed up
before the episode (reported apart as ``warm_up_s``) and peak GPU memory is reported.
"""
from __future__ import annotations

import argparse
import sys
import time
from collections import deque

import numpy as np


# model sizes per preset: decoder, vision tower, vocabulary (None: the byte tokenizer's)
PRESETS: dict[str, dict] = {
    "default": dict(hidden=256, layers=4, heads=4, kv_heads=2, intermediate=1024, vision_hidden=64,
                    vision_layers=2, vision_heads=2, vision_intermediate=256, vocab=None),
    "tiny": dict(hidden=64, layers=2, heads=4, kv_heads=2, intermediate=256, vision_hidden=32,
                 vision_layers=1, vision_heads=2, vision_intermediate=128, vocab=None),
    # Qwen2-7B decoder; SigLIP so400m/14 at 384 px less its last layer (as LLaVA uses it)
    "published": dict(hidden=3584, layers=28, heads=28, kv_heads=4, intermediate=18944, vision_hidden=1152,
                      vision_layers=26, vision_heads=16, vision_intermediate=4304, vocab=152064),
}
DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", choices=sorted(PRESETS), default="default",
                        help="model sizes (size flags override): default / tiny for CPU, published for a GPU")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
    parser.add_argument("--kv-cache", choices=("auto", "dynamic", "static"), default="auto",
                        help="auto: static on cuda, dynamic on cpu")
    parser.add_argument("--refresh", choices=("auto", "inline", "incremental"), default="auto",
                        help="sliding's memory refresh; auto: incremental on cuda, inline on cpu")
    parser.add_argument("--steps", type=int, default=400, help="episode length in actions (4 per turn)")
    parser.add_argument("--window", type=int, default=8, help="dialogue turns in the fast context")
    parser.add_argument("--memory-tokens", type=int, default=8 * 196, help="memory cap M")
    parser.add_argument("--modes", default="sliding,tumbling,recompute", help="comma-separated modes to run")
    parser.add_argument("--repeats", type=int, default=3,
                        help="episodes; per-turn latency is the median over repeats")
    parser.add_argument("--hidden", type=int, help="decoder hidden size")
    parser.add_argument("--layers", type=int, help="decoder layers")
    parser.add_argument("--heads", type=int, help="decoder attention heads")
    parser.add_argument("--kv-heads", type=int, help="decoder key/value heads")
    parser.add_argument("--intermediate", type=int, help="decoder MLP width")
    parser.add_argument("--vision-hidden", type=int, help="SigLIP hidden size")
    parser.add_argument("--vision-layers", type=int, help="SigLIP layers")
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


def sizes(args) -> dict:
    """The preset's model sizes with the size flags given in ``args`` applied over them."""
    out = dict(PRESETS[getattr(args, "preset", None) or "default"])
    for k in out:
        if getattr(args, k, None) is not None:
            out[k] = getattr(args, k)
    return out


def check_device(args) -> None:
    """One clear line and a non-zero exit when the device asked for is not there."""
    import torch

    if getattr(args, "device", "cpu") == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench vln: --device cuda needs a CUDA GPU, and torch sees none "
                         f"(torch {torch.__version__}); run without --device cuda for the CPU figures")


def kv_options(args) -> dict:
    """The agent's KV options for ``args``: ``auto`` takes the device's (``device_agent_options``)."""
    from .config import AgentConfig, device_agent_options

    auto = {"kv_cache": AgentConfig.kv_cache, "refresh": AgentConfig.refresh,
            **device_agent_options(getattr(args, "device", "cpu"))}
    asked = {"kv_cache": getattr(args, "kv_cache", "auto"), "refresh": getattr(args, "refresh", "auto")}
    return {k: auto[k] if v == "auto" else v for k, v in asked.items()}


def bench_model(args):
    """The random model of the bench sizes in ``args`` (this module's arguments): (model, tokenizer),
    on ``args.device`` in ``args.dtype``."""
    import torch

    from .tiny import build_tiny_model, build_tiny_tokenizer

    check_device(args)
    z = sizes(args)
    tok = build_tiny_tokenizer()
    with torch.device(getattr(args, "device", "cpu")):
        model = build_tiny_model(
            tok, seed=args.seed, image_size=384, vocab_size=z["vocab"],
            dtype=getattr(torch, DTYPES[getattr(args, "dtype", "fp32")]),
            text_kwargs=dict(hidden_size=z["hidden"], num_layers=z["layers"], num_heads=z["heads"],
                             num_kv_heads=z["kv_heads"], intermediate_size=z["intermediate"]),
            vision_kwargs=dict(hidden_size=z["vision_hidden"], num_layers=z["vision_layers"],
                               num_heads=z["vision_heads"], intermediate_size=z["vision_intermediate"]))
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


def _as_recompute(agent, recompute_agent):
    """A copy of ``agent`` (model and tokenizer shared) switched to ``recompute``: its next step
    re-encodes exactly the tokens the sliding agent will hold, from scratch. Timing recompute this
    way on sampled turns costs a few turns instead of a whole slow episode, and the two are timed
    back to back under the same machine load. The copy runs in ``recompute_agent``'s (warmed-up)
    KV window; the sliding agent's refresh preparation is not copied."""
    import copy

    memo = {id(agent.model): agent.model, id(agent.tokenizer): agent.tokenizer,
            id(agent.window): recompute_agent.window, id(agent._shadow): None, id(agent._prep): None}
    clone = copy.deepcopy(agent, memo)
    clone.config = recompute_agent.config
    return clone


def run(args: argparse.Namespace) -> dict:
    import numpy as np
    import torch

    from .agent import StreamVLNAgent
    from .config import AgentConfig, MemoryConfig

    check_device(args)
    torch.set_num_threads(max(1, args.threads))
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if args.steps < 4:
        raise SystemExit("--steps must be >= 4")
    cuda = args.device == "cuda"
    z, kv = sizes(args), kv_options(args)
    t_build = time.perf_counter()
    model, tok = bench_model(args)
    n_params = sum(p.numel() for p in model.parameters())
    _log(f"model: decoder {z['layers']}x{z['hidden']}, vision {z['vision_layers']}x{z['vision_hidden']}, "
         f"{n_params / 1e9:.3f} B parameters on {args.device} ({args.dtype}, built in "
         f"{time.perf_counter() - t_build:.1f} s), {model.tokens_per_frame} tokens/frame, KV {kv}; "
         f"rendering {args.steps} frames")
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
                           max_new_tokens=args.answer_tokens, stop_on_eos=False, memory=mem_cfg, **kv)
            for m in ("sliding", "tumbling", "recompute")}

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    # One agent per mode for the whole run, warmed up first: first-use costs (allocations, kernel
    # choice, the decode step's capture) are paid and timed here, never by a measured turn.
    agents = {m: StreamVLNAgent(model, tok, cfgs[m]) for m in loop_modes}
    recompute_agent = StreamVLNAgent(model, tok, cfgs["recompute"]) if "recompute" in modes else None
    warm_up_s = {m: round(a.warm_up(), 3) for m, a in agents.items()}
    if recompute_agent is not None:
        warm_up_s["recompute"] = round(recompute_agent.warm_up(), 3)
    decode_path = {m: a.window.decode_path for m, a in agents.items()}
    _log(f"warm-up (s): {warm_up_s}; decode steps: {decode_path}")

    reps = max(1, args.repeats)
    wall = {m: np.full((reps, n_turns), np.nan) for m in modes}
    cpu = {m: np.full((reps, n_turns), np.nan) for m in modes}
    cache = {m: np.zeros(n_turns, dtype=np.int64) for m in modes}
    prefill = {m: np.zeros(n_turns, dtype=np.int64) for m in modes}
    peak = {m: 0 for m in modes}
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    for rep in range(reps):
        for a in agents.values():
            a.reset("Walk along the red wall, turn left at the corner and stop by the door.")
        t0 = time.perf_counter()
        for t, frame in enumerate(turn_frames):
            jobs = [(m, agents[m]) for m in loop_modes]
            if "recompute" in modes and t + 1 in shadow_turns:
                jobs.insert(0, ("recompute", _as_recompute(agents["sliding"], recompute_agent)))
            for m, agent in jobs:  # modes interleaved turn by turn: load changes hit them alike
                sync()
                w0, c0 = time.perf_counter(), time.process_time()
                agent.step(*frame)
                sync()
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
            "latency_ms_p50": ms(np.percentile(w_med[timed], 50)),
            "latency_ms_p95": ms(np.percentile(w_med[timed], 95)),
            "latency_ms_p99": ms(np.percentile(w_med[timed], 99)),
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
        sl = results["sliding"]
        summary["sliding_latency_ms_p50_p99"] = [sl["latency_ms_p50"], sl["latency_ms_p99"]]
        if sl["latency_ms_p50"]:
            summary["sliding_max_turn_over_p50"] = round(sl["latency_ms_max"] / sl["latency_ms_p50"], 2)
        for key in ("latency", "cpu"):
            r, o = sl[f"{key}_ms_mean_refresh_turns"], sl[f"{key}_ms_mean_other_turns"]
            if r and o:
                summary[f"sliding_refresh_over_other_turns_{key}"] = round(r / o, 2)
        if "tumbling" in results:
            summary["tumbling_reset_turn_ms_mean"] = results["tumbling"]["latency_ms_mean_refresh_turns"]
            summary["tumbling_other_turn_ms_mean"] = results["tumbling"]["latency_ms_mean_other_turns"]
        summary["pruning_removed_fraction_agent_memory"] = results["pruning_agent_memory"]["removed_fraction"]
    summary["pruning_removed_fraction_every_step"] = results["pruning_every_step"]["removed_fraction"]
    summary["warm_up_s"] = warm_up_s
    summary["decode_path"] = decode_path
    if cuda:
        summary["peak_gpu_memory_gb"] = round(torch.cuda.max_memory_allocated() / 1e9, 2)

    return {
        "config": {"steps": args.steps, "steady_from_turn": steady_from + 1, "turns": n_turns, "window_turns": args.window,
                   "memory_tokens_cap": args.memory_tokens, "tokens_per_frame": model.tokens_per_frame,
                   "preset": args.preset, "device": args.device, "dtype": args.dtype, **kv,
                   "parameters": n_params,
                   "decoder": f"{z['layers']} layers x {z['hidden']} (heads {z['heads']}/{z['kv_heads']}, "
                              f"mlp {z['intermediate']}, vocab {z['vocab'] or len(tok)})",
                   "vision": f"{z['vision_layers']} layers x {z['vision_hidden']}, 384 px, patch 14",
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
                      stop_on_eos=False, memory=MemoryConfig(max_tokens=args.memory_tokens), **kv_options(args))
    return ExploringAgent(StreamVLNAgent(model, tok, cfg))
