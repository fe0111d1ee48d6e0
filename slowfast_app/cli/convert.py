"""`slowfast convert BAGS... --out DATASET`: recorded episodes -> LeRobot-v3-layout dataset.

Every stream is resampled by capture stamp to ``--fps`` (TCP pose, wrench, tactile: nearest
sample; images: newest frame at or before each frame time); actions are the commanded
target (``--action target``) or the next measured TCP pose (``--action next_pose``);
normalizer statistics are fitted on the data (meta/stats.json). A folder that holds episode
folders is expanded. A bag that cannot be read is named with the reason and skipped.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def whole_fps(text: str) -> int:
    """An argparse type: a whole number of frames per second (LeRobot stores an integer fps)."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (v > 0 and v == round(v)):
        raise argparse.ArgumentTypeError(f"{text!r}: a whole number of frames per second > 0 (LeRobot stores an integer)")
    return int(round(v))


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("bags", nargs="+", help="episode bag folders (or folders of them)")
    p.add_argument("--out", required=True, help="dataset folder (created; must be empty unless --overwrite)")
    p.add_argument("--fps", type=whole_fps, default=50, help="dataset frame rate in whole frames per second (LeRobot stores an integer), videos included (default 50)")
    p.add_argument("--action", choices=("target", "next_pose"), default="target",
                   help="action: the commanded target (default) or the next measured TCP pose")
    p.add_argument("--only-success", action="store_true", help="skip episodes not marked a success")
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty --out")
    p.add_argument("--drop-stale", action="store_true",
                   help="drop the frames where a stream's sample is older than its bound (half a frame for "
                        "pose/wrench/tactile, 1.5 periods for camera and command) instead of marking them; the "
                        "fresh runs between them become episodes of their own")
    p.add_argument("--min-run", type=float, default=0.5,
                   help="with --drop-stale: shortest fresh run kept as an episode (s, default 0.5)")


def expand(paths) -> list[Path]:
    out = []
    for p in map(Path, paths):
        if not p.exists():
            raise OSError(f"{p}: no such bag folder")
        if p.is_dir() and not (p / "metadata.yaml").exists() and any(c.is_dir() for c in p.iterdir()):
            out += sorted(c for c in p.iterdir() if c.is_dir())
        else:
            out.append(p)
    return out


def run(args: argparse.Namespace) -> int:
    from teleop_tactar.convert import convert_bags  # noqa: PLC0415

    result = convert_bags(expand(args.bags), args.out, fps=args.fps, action=args.action,
                          only_success=args.only_success, overwrite=args.overwrite,
                          drop_stale=args.drop_stale, min_run_s=args.min_run)
    for bag in result["not_success"]:
        print(f"slowfast convert: left out {bag}: not marked a success")
    for bag, why in result["errors"].items():
        print(f"slowfast convert: skipped {bag}: {why}", file=sys.stderr)
    truncated = [e for e in result["episodes"] if e["truncated"]]
    for e in truncated:
        of = f" of {e['recorded_s']:.1f} s recorded" if e.get("recorded_s") else ""
        print(f"slowfast convert: truncated {e['bag']}: kept {e['seconds']:.1f} s{of} "
              f"(the bag ends early: was its recorder killed?)", file=sys.stderr)
    n = len(result["episodes"])
    if result["dataset"] is None:
        raise ValueError("no episode could be converted")
    frames = sum(e["frames"] for e in result["episodes"])
    stale = sum(e["stale_frames"] for e in result["episodes"])
    parts = sum(e["parts"] for e in result["episodes"])
    split = f", split into {parts} at stream gaps" if parts != n else ""
    what = "dropped" if args.drop_stale else "marked (feature 'stale')"
    print(f"slowfast convert: {n} episode(s){split}, {frames} frames at {args.fps:g} fps -> {result['dataset']} "
          f"(largest offset of a fresh frame's sample {result['max_lag_s'] * 1e3:.1f} ms; {stale} stale frame(s) "
          f"{what}: some stream's sample farther from the frame time than its bound)")
    return 1 if result["errors"] or truncated else 0
