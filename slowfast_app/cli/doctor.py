"""`slowfast doctor`: is this machine ready? One line per check, OK or the fix to apply."""
from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the results as one JSON object")


def run(args: argparse.Namespace) -> int:
    import json  # noqa: PLC0415

    from slowfast_app.checks import ALL_CHECKS  # noqa: PLC0415

    results = []
    for check in ALL_CHECKS:
        c = check()
        results.append(c)
        if not args.json:
            print(c.line(), flush=True)
    if args.json:
        print(json.dumps({c.name: {"ok": c.ok, "detail": c.detail, "fix": c.fix} for c in results}))
    failed = [c for c in results if not c.ok and not c.optional]
    return 1 if failed else 0
