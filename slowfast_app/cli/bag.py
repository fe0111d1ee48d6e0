"""`slowfast bag repair BAG...`: make bags a killed recorder left readable by indexed readers.

A recorder killed between flushes leaves an MCAP without its summary: linear readers (ours,
``mcap cat``) read it up to the last complete chunk, indexed readers (``ros2 bag``, rosbags,
``make_reader(f).iter_messages()``) refuse it. ``repair`` rewrites such a bag with its summary,
index and counted metadata; a complete bag is left alone. The recorder does the same to the
bags under its ``out_dir`` when it starts.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True
    r = sub.add_parser("repair", help="rewrite bags cut short with their summary and index")
    r.add_argument("bags", nargs="+", help="bag folders (metadata.yaml + MCAP), or folders of bag folders")
    r.add_argument("--compression", choices=("zstd", "lz4", "none"), default="zstd",
                   help="MCAP chunk compression of the rewrite (default zstd)")
    r.add_argument("--json", action="store_true", help="print one JSON object on the last line")


def _bag_folders(paths: list[str]) -> list[Path]:
    out = []
    for p in map(Path, paths):
        if (p / "metadata.yaml").is_file():
            out.append(p)
        elif p.is_dir() and any((c / "metadata.yaml").is_file() for c in p.iterdir()):
            out.extend(sorted(c for c in p.iterdir() if (c / "metadata.yaml").is_file()))
        else:
            raise ValueError(f"{p}: not a bag folder (no metadata.yaml) nor a folder of bags")
    return out


def run(args: argparse.Namespace) -> int:
    from teleop_tactar.bag import repair_bag  # noqa: PLC0415

    results, failed = [], 0
    for folder in _bag_folders(args.bags):
        try:
            done = repair_bag(folder, args.compression)
        except (ValueError, OSError) as exc:
            print(f"slowfast bag repair: {folder}: {exc}", file=sys.stderr)
            failed += 1
            continue
        if done is None:
            print(f"{folder}: complete, left as it is")
            results.append({"bag": str(folder), "repaired": False})
        else:
            print(f"{folder}: repaired, {done['messages']} messages ({done['seconds']:.1f} s) kept")
            results.append({**done, "repaired": True})
    if args.json:
        print(json.dumps({"bags": results, "failed": failed}))
    return 1 if failed else 0
