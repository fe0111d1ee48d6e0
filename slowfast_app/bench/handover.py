"""`slowfast bench handover`: chunk handovers under slow-policy delay, blend against inpainting.

For each export (``--policy``, repeatable: an RDP and a DP export, say), each handover
(``rdp_slow.handover``: blend, inpaint) and each injected slow-policy delay (``--delays``,
seconds added to the policy's own latency ``--latency`` from a cycle's start to its chunk in
the fast loop), the same held-out seeds run
through the synchronous evaluator (``slowfast evaluate``: the nodes' serving cores and
parameter files, the sim stepped in the same process). Reported per cell: success with its
95 % Wilson interval, and the seam at each handover (the distance between the old and the new
chunk's commands at the tick the new one takes over, before any blending): the largest over
all handovers and the median of the episodes' medians, in mm, and the largest rotation
between the two commands there (``handover_turn_deg_max``); and, with ``rdp_fast.splice``
(the default; ``--set rdp_fast.splice=false`` to compare), how many latent chunks the fast
loop spliced onto the executing one and how long a splice took (median of the episodes'
medians, largest).

``--delay-kind compute`` (default): the delay is inference time, the slow side is busy for it
and starts one inference at a time, so a 0.36 s latency allows at most ~2.8 chunks per second
whatever ``rate_hz`` says (the inpainting pull stretches with that cycle: ``inpaint_pull_s``,
against ``inpaint_soft_s`` at the asked rate). ``transport``: the chunk is computed in
``--latency`` and travels for the delay (a policy server across a network); cycles overlap and
the re-plan rate stays.
"""
from __future__ import annotations

import argparse
import sys
import time


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--policy", action="append", required=True, help="export folder (repeat for several)")
    p.add_argument("--task", default="wipe", help="sim task (default wipe)")
    p.add_argument("--delays", default="0,0.1,0.3",
                   help="slow-policy delays injected on top of --latency, s (default 0,0.1,0.3)")
    from sim.policy_eval import ServingTiming  # noqa: PLC0415

    p.add_argument("--latency", type=float, default=ServingTiming.latency_s,
                   help="the slow policy's own latency (inference + transport) that the delays add to, s "
                        "(default %(default)g, as `slowfast evaluate`)")
    p.add_argument("--handovers", default="blend,inpaint", help="rdp_slow.handover values (default blend,inpaint)")
    p.add_argument("--episodes", type=int, default=20, help="episodes per cell (default 20)")
    p.add_argument("--seed", type=int, default=20000, help="first seed (default 20000: the held-out range)")
    p.add_argument("--delay-kind", choices=("compute", "transport"), default="compute",
                   help="compute: the slow side is busy for the delay (one inference at a time, so fewer "
                        "chunks per second); transport: the chunk travels that long after a --latency "
                        "inference (cycles overlap, the re-plan rate stays)")
    p.add_argument("--no-perturb", action="store_true", help="no surface/object changes during episodes")
    p.add_argument("--set", action="append", default=[], metavar="NODE.PARAM=VALUE",
                   help="node parameter for every cell (rdp_slow, rdp_fast, sim_node), as for `slowfast evaluate`")
    p.add_argument("--workers", type=int, default=1, help="processes per cell (default 1)")


def _floats(text: str, what: str) -> list[float]:
    try:
        out = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"--{what} {text!r}: comma-separated numbers expected") from None
    if not out:
        raise ValueError(f"--{what}: give at least one value")
    return out


def _median(values: list) -> float | None:
    """The median of the values that are not None (None when none is)."""
    import numpy as np  # noqa: PLC0415

    got = [v for v in values if v is not None]
    return round(float(np.median(got)), 4) if got else None


def _largest(values: list) -> float | None:
    """The largest of the values that are not None (None when none is)."""
    got = [v for v in values if v is not None]
    return round(float(max(got)), 3) if got else None


def _splice_ms(episodes: list[dict]) -> dict:
    """The fast loop's splice times over a cell's episodes (rdp_fast.splice), ms."""
    import numpy as np  # noqa: PLC0415

    per = [m["splice_s"] for m in episodes if m.get("splice_s", {}).get("count")]
    if not per:
        return {"splices": 0, "splice_ms_p50": None, "splice_ms_max": None}
    return {"splices": int(sum(x["count"] for x in per)),
            "splice_ms_p50": round(float(np.median([x["p50"] for x in per])) * 1e3, 2),
            "splice_ms_max": round(max(x["max"] for x in per) * 1e3, 2)}


def run(args: argparse.Namespace) -> dict:
    import os  # noqa: PLC0415
    from pathlib import Path  # noqa: PLC0415

    import numpy as np  # noqa: PLC0415

    from policy.rdp.handover import HANDOVERS  # noqa: PLC0415
    from slowfast_app.cli.evaluate import run_episodes, serving_setup  # noqa: PLC0415
    from slowfast_app.experiment import summarize_method  # noqa: PLC0415

    delays = _floats(args.delays, "delays")
    if any(not 0.0 <= d <= 4.0 for d in delays):
        raise ValueError(f"--delays {args.delays}: each delay must be in [0, 4] s")
    if not 0.0 <= args.latency <= 1.0:
        raise ValueError(f"--latency {args.latency}: outside [0, 1] s")
    handovers = [h.strip() for h in args.handovers.split(",") if h.strip()]
    bad = [h for h in handovers if h not in HANDOVERS]
    if bad or not handovers:
        raise ValueError(f"--handovers {args.handovers!r}: each must be one of {', '.join(HANDOVERS)}")
    if args.episodes < 1:
        raise ValueError(f"--episodes: {args.episodes} must be at least 1")
    if not 1 <= args.workers <= max(1, os.cpu_count() or 1):
        raise ValueError(f"--workers: {args.workers} outside 1..{os.cpu_count()}")
    for pol in args.policy:
        if not (Path(pol) / "runtime.json").is_file():
            raise ValueError(f"--policy {pol}: not an export folder (no runtime.json; run `slowfast export`)")
    seeds = list(range(args.seed, args.seed + args.episodes))
    cells = []
    for pol in args.policy:
        for handover in handovers:
            for delay in delays:
                timing, safety = serving_setup(args.task, pol, [*args.set, f"rdp_slow.handover={handover}"],
                                               args.latency + delay,
                                               transport=delay if args.delay_kind == "transport" else 0.0)
                spec = {"policy": pol, "task": args.task, "safety": safety, "timing": timing,
                        "perturb": not args.no_perturb, "oracle": "", "tokenizer": "", "raw": False,
                        "episode_seconds": 0.0}
                episodes: list[dict] = []
                t0 = time.monotonic()
                run_episodes(spec, seeds, args.workers, episodes.append)
                s = summarize_method(episodes)
                seams = [m["handover_jump_m"] for m in episodes if m["handover_jump_m"]["count"]]
                cell = {"policy": pol, "handover": handover, "delay_s": delay, "delay_kind": args.delay_kind,
                        "latency_s": timing.latency_s,
                        "rate_hz": timing.rate_hz, "inpaint_soft_s": timing.inpaint_soft_s,
                        "inpaint_pull_s": _median([m.get("inpaint_pull_s") for m in episodes]),
                        "successes": s["successes"], "episodes": s["episodes"], "success_rate": s["success_rate"],
                        "success_ci95": s["success_ci95"],
                        "handover_jump_mm_max": _largest([x["max"] * 1e3 for x in seams]),
                        "handover_jump_mm_p50": (round(float(np.median([x["p50"] for x in seams])) * 1e3, 3)
                                                 if seams else None),
                        "handover_turn_deg_max": _largest([(m.get("handover_turn_deg") or {}).get("max")
                                                           for m in episodes]),
                        "handovers": int(sum(x["count"] for x in seams)), "splice": timing.splice,
                        **_splice_ms(episodes), "wall_s": round(time.monotonic() - t0, 1)}
                print(f"{Path(pol).name} {handover} delay {delay:g} s: {cell['successes']}/{cell['episodes']}, "
                      f"largest seam {cell['handover_jump_mm_max']} mm (median {cell['handover_jump_mm_p50']} mm), "
                      f"{cell['handover_turn_deg_max']} deg, "
                      f"{cell['wall_s']} s", file=sys.stderr, flush=True)
                cells.append(cell)
    return {"task": args.task, "perturbed": not args.no_perturb, "seeds": [seeds[0], seeds[-1]], "cells": cells}
