"""The `slowfast` command: one dispatcher, one module per subcommand.

Each subcommand lives in ``slowfast_app/cli/<name>.py`` and defines
``add_arguments(parser)`` and ``run(args) -> int``. Modules are imported only when their
subcommand runs, so ``slowfast train`` never loads rclpy and ``slowfast doctor`` never
loads torch.

A user's mistake (bad argument, missing file, invalid configuration) surfaces as
:class:`UserError`, ``ValueError`` or ``OSError`` and prints one line, exit status 2.
Set ``SLOWFAST_DEBUG=1`` to see the traceback.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
import threading

# name -> (module, one-line help). Order is the order of `slowfast --help`.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "doctor": ("doctor", "check ROS 2, DDS, MuJoCo rendering, ONNX Runtime, cameras, CUDA"),
    "sim": ("sim", "run simulated episodes over ROS 2 and write metrics, video and plots"),
    "up": ("up", "start a stack profile (the nodes of a launch file) without ros2 launch"),
    "params": ("params", "a node's parameters: name, type, default, description, the shipped file's value"),
    "lifecycle": ("lifecycle", "switch a running managed node: activate, deactivate (the arm holds), get its state"),
    "teleop": ("teleop", "serve the TactAR headset protocol and the WebXR page"),
    "record": ("record", "record demonstration episodes as rosbag2 (MCAP) folders"),
    "demos": ("demos", "generate scripted demonstrations in process (teleop path, faster than real time)"),
    "bag": ("bag", "repair bags a killed recorder left without their index"),
    "convert": ("convert", "convert recorded bags to a LeRobot-v3-layout dataset"),
    "dataset": ("dataset", "check a converted dataset for lunges, speeding, frozen and stale streams"),
    "train": ("train", "train a tokenizer, latent diffusion policy, DP baseline or VLN model"),
    "export": ("export", "export a checkpoint to ONNX"),
    "evaluate": ("evaluate", "evaluate an exported policy (or the oracle replay) in process, faster than real time"),
    "bench": ("bench", "measure performance; --json prints one JSON object on the last line"),
    "nav": ("nav", "vision-language navigation: evaluate in the navigation sim"),
    "experiment": ("experiment", "end-to-end experiments (record, train, evaluate)"),
}


class UserError(Exception):
    """A mistake in what the user asked for: printed as one line, exit status 2."""


def _available(name: str) -> bool:
    return importlib.util.find_spec(f"slowfast_app.cli.{SUBCOMMANDS[name][0]}") is not None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="slowfast",
        description="slowfast: slow policies plan, fast loops react (ROS 2 + MuJoCo).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (module, help_text) in SUBCOMMANDS.items():
        if not _available(name):
            continue
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        mod = importlib.import_module(f"slowfast_app.cli.{module}")
        mod.add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    from slowfast_ros.qos import transport_env  # noqa: PLC0415
    from slowfast_app.stack import Stop, install_stop_handlers  # noqa: PLC0415

    os.environ.update(transport_env())  # this process's own nodes and every child use them

    if threading.current_thread() is threading.main_thread():
        install_stop_handlers()  # SIGTERM/SIGHUP unwind like Ctrl-C: every node started is stopped
    parser = build_parser()
    args = parser.parse_args(argv)
    mod = importlib.import_module(f"slowfast_app.cli.{args._module}")
    try:
        return int(mod.run(args) or 0)
    except KeyboardInterrupt:
        print(f"slowfast {args.command}: interrupted", file=sys.stderr)
        return 130
    except Stop as stop:
        print(f"slowfast {args.command}: stopped by {stop}", file=sys.stderr)
        return 128 + stop.signum
    except (UserError, ValueError, OSError, KeyError) as exc:
        if os.environ.get("SLOWFAST_DEBUG"):
            raise
        msg = str(exc) if not isinstance(exc, KeyError) else f"missing key {exc}"
        print(f"slowfast {args.command}: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
