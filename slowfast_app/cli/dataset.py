"""`slowfast dataset check DS`: per episode, what a policy must not learn from.

Reports each episode's distance from command to arm at frame 0 and over the episode, its
peak TCP speed, frozen pose stretches, and what the converter dropped as stale; exits 1
when an episode has a defect (:mod:`teleop_tactar.check`).
"""
from __future__ import annotations

import argparse
import json


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    c = sub.add_parser("check", help="check a dataset (exit 1 on defects)")
    c.add_argument("dataset", help="LeRobot-v3-layout dataset folder (slowfast convert)")
    c.add_argument("--max-step", type=float, default=None,
                   help="largest command-to-arm distance (m; default the safety filter's max_step)")
    c.add_argument("--max-speed", type=float, default=None,
                   help="TCP speed limit (m/s; default the safety filter's max_speed), 10 %% margin")
    c.add_argument("--json", action="store_true", help="print the whole report as one JSON object")


def run(args: argparse.Namespace) -> int:
    from teleop_tactar.check import check_dataset  # noqa: PLC0415

    report = check_dataset(args.dataset, max_step=args.max_step, max_speed=args.max_speed)
    eps = report["episodes"]
    if args.json:
        print(json.dumps(report))
    else:
        b = report["bounds"]
        print(f"{'episode':>7} {'frames':>6} {'start gap cm':>12} {'max gap cm':>10} {'cmd m/s':>7} {'tcp m/s':>7} "
              f"{'frozen s':>8} {'stale':>5}  defects (max_step {b['max_step_m'] * 100:g} cm, max_speed {b['max_speed_mps']:g} m/s)")
        for e in eps:
            print(f"{e['episode']:>7} {e['frames']:>6} {e['start_gap_m'] * 100:>12.2f} {e['max_gap_m'] * 100:>10.2f} "
                  f"{e['peak_command_speed_mps']:>7.3f} {e['peak_speed_mps']:>7.3f} {e['frozen_s']:>8.2f} "
                  f"{'-' if e['stale_fraction'] is None else format(e['stale_fraction'], '.0%'):>5}  "
                  f"{'; '.join(e['defects']) or 'ok'}")
        conv = report["conversion"]
        if conv:
            stale = sum(x.get("stale_frames", 0) for x in conv["bags"])
            dropped = sum(x.get("dropped_frames", 0) for x in conv["bags"])
            lag = max((v for x in conv["bags"] for v in x.get("lag_s", {}).values()), default=0.0)
            print(f"conversion: {len(conv['bags'])} bag(s), {stale} stale frame(s) ({dropped} dropped), largest "
                  f"offset of a fresh frame's sample {lag * 1e3:.1f} ms, {len(conv.get('skipped', {}))} bag(s) skipped")
        print(f"slowfast dataset check: {len(eps)} episode(s), {report['defects']} with defects")
    return 1 if report["defects"] else 0
