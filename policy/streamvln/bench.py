"""``slowfast bench vln``: per-turn latency of the KV strategies, cache size, 3-D pruning.

A random model of the StreamVLN architecture (sizes below; real weights cannot be fetched here)
runs on CPU over a synthetic RGB-D episode: a box room, a rectangular loop driven again and
again (places are revisited), 4 actions per turn, so a 400-step episode is 100 turns. The model's
own answers are ignored for motion (it is random); the trajectory is scripted, and every mode
sees the same frames and decodes the same number of tokens per turn.

Modes: ``sliding`` (ours), ``tumbling`` (the published reset every window), ``recompute`` (the
same tokens as sliding, re-encoded from scratch every turn). Progress goes to stderr.
"""
from __future__ import annotations

import argparse
import sys
import time


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--steps", type=int, default=400, help="episode length in actions (4 per turn)")
    parser.add_argument("--window", type=int, default=8, help="dialogue turns in the fast context")
    parser.add_argument("--memory-tokens", type=int, default=8 * 196, help="memory cap M")
    parser.add_argument("--modes", default="sliding,tumbling,recompute", help="comma-separated modes to run")
    parser.add_argument("--repeats", type=int, default=3,
                        help="episodes per mode (recompute: 1, it is slow and its noise small); "
                             "per-turn latency is the median over repeats")
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
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
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


def run(args: argparse.Namespace) -> dict:
    import numpy as np
    import torch

    from .agent import StreamVLNAgent
    from .config import AgentConfig, MemoryConfig
    from .tiny import build_tiny_model, build_tiny_tokenizer

    torch.set_num_threads(max(1, args.threads))
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if args.steps < 4:
        raise SystemExit("--steps must be >= 4")
    tok = build_tiny_tokenizer()
    model = build_tiny_model(
        tok, seed=args.seed, image_size=384,
        text_kwargs=dict(hidden_size=args.hidden, num_layers=args.layers, num_heads=args.heads,
                         num_kv_heads=args.kv_heads, intermediate_size=args.intermediate),
        vision_kwargs=dict(hidden_size=args.vision_hidden, num_layers=args.vision_layers, num_heads=2,
                           intermediate_size=4 * args.vision_hidden))
    _log(f"model: decoder {args.layers}x{args.hidden}, vision {args.vision_layers}x{args.vision_hidden}, "
         f"{model.tokens_per_frame} tokens/frame; rendering {args.steps} frames")
    all_frames = _episode_frames(args.steps, args.width, args.height)
    turn_frames = all_frames[::4]
    n_turns = len(turn_frames)
    mem_cfg = MemoryConfig(max_tokens=args.memory_tokens)

    # Turns from which the cache should be flat: the window is full and the memory has reached
    # its cap (memory frames only exist once older than the window).
    steady_from = max(2 * args.window, n_turns // 4)
    results: dict = {}
    for mode in modes:
        cfg = AgentConfig(window_turns=args.window, memory_refresh_turns=args.window, context_mode=mode,
                          max_new_tokens=args.answer_tokens, stop_on_eos=False, memory=mem_cfg)
        warm = StreamVLNAgent(model, tok, cfg)  # first calls pay one-time costs: not measured
        warm.reset("warm up")
        for rgb, depth, K, pose in turn_frames[:3]:
            warm.step(rgb, depth, K, pose)
        repeats = 1 if mode == "recompute" else max(1, args.repeats)
        lat = np.zeros((repeats, n_turns))
        cache = np.zeros(n_turns, dtype=np.int64)
        prefill = np.zeros(n_turns, dtype=np.int64)
        agent = None
        for rep in range(repeats):
            agent = StreamVLNAgent(model, tok, cfg)
            agent.reset("Walk along the red wall, turn left at the corner and stop by the door.")
            t0 = time.perf_counter()
            for t, (rgb, depth, K, pose) in enumerate(turn_frames):
                agent.step(rgb, depth, K, pose)
                lat[rep, t] = agent.stats.last_turn_latency_s
                cache[t] = agent.stats.cache_tokens
                prefill[t] = agent.stats.last_prefill_tokens
            _log(f"{mode}: episode {rep + 1}/{repeats}, {n_turns} turns in {time.perf_counter() - t0:.1f} s")
        med = np.median(lat, axis=0)
        at = {str(k): round(float(med[k - 1]) * 1e3, 2) for k in (1, 10, 50, 100) if k <= n_turns}
        refresh_turns = [t for t in range(1, n_turns) if t % args.window == 0]
        steady = [t for t in range(args.window + 1, n_turns) if t % args.window != 0]
        st = agent.stats
        results[mode] = {
            "latency_ms_at_turn": at,
            "latency_ms_mean": round(float(med.mean()) * 1e3, 2),
            "latency_ms_p95": round(float(np.percentile(med, 95)) * 1e3, 2),
            "latency_ms_max": round(float(med.max()) * 1e3, 2),
            "latency_ms_mean_refresh_turns": round(float(med[refresh_turns].mean()) * 1e3, 2) if refresh_turns else None,
            "latency_ms_mean_other_turns": round(float(med[steady].mean()) * 1e3, 2) if steady else None,
            "prefill_tokens_at_turn": {k: int(prefill[int(k) - 1]) for k in at},
            "cache_tokens_at_turn": {k: int(cache[int(k) - 1]) for k in at},
            "peak_cache_tokens": int(st.peak_cache_tokens),
            "repeats": repeats,
            "cache_tokens_max_steady": int(cache[steady_from:].max()) if n_turns > steady_from else None,
            "cache_tokens_min_steady": int(cache[steady_from:].min()) if n_turns > steady_from else None,
            "memory_tokens_last": int(st.memory_tokens),
            "parse_failures": int(st.parse_failures),
        }
        if mode == "sliding":
            ms = st.memory
            results["pruning_agent_memory"] = {
                "frames": ms.frames_added, "valid_tokens": ms.pruned_valid_tokens,
                "kept_tokens": ms.pruned_kept_tokens, "removed_fraction": round(ms.pruning_ratio, 4),
                "frames_dropped": ms.frames_dropped, "candidates_before_cap_last": ms.last_candidate_tokens,
                "memory_tokens_last": ms.last_memory_tokens, "memory_frames_last": ms.last_memory_frames}

    _log("pruning over every step of the trajectory")
    results["pruning_every_step"] = _pruning_all_steps(all_frames, model.pooled_side, mem_cfg)

    summary: dict = {}
    if "sliding" in results:
        s = results["sliding"]["latency_ms_at_turn"]
        if "10" in s and "100" in s:
            summary["sliding_turn100_over_turn10"] = round(s["100"] / s["10"], 3)
        if "recompute" in results and "100" in s:
            summary["recompute_over_sliding_turn100"] = round(
                results["recompute"]["latency_ms_at_turn"]["100"] / s["100"], 2)
        summary["sliding_cache_tokens_steady_min_max"] = (
            results["sliding"]["cache_tokens_min_steady"], results["sliding"]["cache_tokens_max_steady"])
        summary["sliding_refresh_turn_ms_mean"] = results["sliding"]["latency_ms_mean_refresh_turns"]
        if "tumbling" in results:
            summary["tumbling_reset_turn_ms_mean"] = results["tumbling"]["latency_ms_mean_refresh_turns"]
        summary["pruning_removed_fraction_agent_memory"] = results["pruning_agent_memory"]["removed_fraction"]
    summary["pruning_removed_fraction_every_step"] = results["pruning_every_step"]["removed_fraction"]

    return {
        "config": {"steps": args.steps, "steady_from_turn": steady_from + 1, "turns": n_turns, "window_turns": args.window,
                   "memory_tokens_cap": args.memory_tokens, "tokens_per_frame": model.tokens_per_frame,
                   "decoder": f"{args.layers} layers x {args.hidden} (heads {args.heads}/{args.kv_heads}, "
                              f"mlp {args.intermediate})",
                   "vision": f"{args.vision_layers} layers x {args.vision_hidden}, 384 px, patch 14",
                   "answer_tokens": args.answer_tokens, "repeats": args.repeats, "threads": args.threads,
                   "tokenizer": "byte-level (text ~1 token per byte; Qwen2's is ~4x denser)",
                   "voxel_size": mem_cfg.voxel_size, "block_frames": mem_cfg.block_frames,
                   "min_keep_fraction": mem_cfg.min_keep_fraction, "seed": args.seed},
        "summary": summary,
        **results,
    }
