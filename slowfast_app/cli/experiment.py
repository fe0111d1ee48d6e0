"""`slowfast experiment rdp-vs-dp --task wipe|lift --out DIR`: the whole RDP-vs-DP comparison
(record, convert, train, export, evaluate over ROS 2, report), resumable; see
:mod:`slowfast_app.experiment`. `slowfast experiment report DIR` rebuilds the report."""
from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    from slowfast_app.experiment import ExperimentSettings  # noqa: PLC0415

    d = ExperimentSettings()
    p.add_argument("name", choices=("rdp-vs-dp", "report"),
                   help="rdp-vs-dp: run (or resume) the experiment; report: rebuild DIR's results.md")
    p.add_argument("--out", required=True, help="experiment folder (created; rerun the same command to resume)")
    p.add_argument("--task", default=d.task, help="wipe | lift (default wipe)")
    p.add_argument("--embodiment", default=d.embodiment,
                   help="floating (default) | arm: the Panda arm(s) under the 1 kHz Cartesian impedance controller, in "
                        "every stage")
    p.add_argument("--interface", default=d.interface,
                   help="stack (default) | ros2_control: the ROS evaluation drives the arm through robot_bridge_node "
                        "and ros2_control topics, as on a robot (--embodiment arm, wipe)")
    p.add_argument("--demos", type=int, default=d.demos, help=f"demonstrations to record (default {d.demos})")
    p.add_argument("--methods", type=lambda v: [m.strip() for m in v.split(",") if m.strip()], default=d.methods,
                   help=f"methods compared (default {','.join(d.methods)}; rdp,dp,dp_contact adds the DP fed the "
                        "force history)")
    p.add_argument("--eval-episodes", type=int, default=d.eval_episodes,
                   help=f"held-out episodes per method and condition (default {d.eval_episodes})")
    p.add_argument("--sync-episodes", type=int, default=d.sync_episodes,
                   help=f"episodes per method and condition through `slowfast evaluate` (default {d.sync_episodes}; 0 = none)")
    p.add_argument("--oracle-episodes", type=int, default=d.oracle_episodes,
                   help=f"demonstrations replayed through each method's runtime (default {d.oracle_episodes}; 0 = none)")
    p.add_argument("--demo-seed", type=int, default=d.demo_seed, help=f"first demonstration seed (default {d.demo_seed})")
    p.add_argument("--eval-seed", type=int, default=d.eval_seed, help=f"first evaluation seed (default {d.eval_seed})")
    p.add_argument("--batch", type=int, default=d.batch, help=f"episodes per record/eval run (default {d.batch})")
    p.add_argument("--fps", type=float, default=d.fps, help=f"dataset/control-step rate (default {d.fps:g})")
    p.add_argument("--tokenizer-epochs", type=int, default=d.tokenizer_epochs)
    p.add_argument("--policy-epochs", type=int, default=d.policy_epochs, help="epochs of each diffusion policy")
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--preset", default=d.preset, choices=("sim", "published"), help="model size preset")
    p.add_argument("--model-config", default=None,
                   help="JSON file of model overrides (default: the CPU sizes; '{}' file = the preset's sizes)")
    p.add_argument("--camera-hz", type=float, default=d.camera_hz)
    p.add_argument("--pose-hz", type=float, default=0.0,
                   help="sim TCP pose rate while recording/evaluating (default 0: the task's, wipe 200, lift 100)")
    p.add_argument("--tactile-hz", type=float, default=0.0,
                   help="sim tactile rate while recording/evaluating (default 0: the task's, wipe 200, lift 60)")
    p.add_argument("--control-hz", type=float, default=d.control_hz, help="fast loop rate during evaluation")
    # 0.0, not d.slow_hz: the default settings are wipe's and resolve the task's rates to wipe's
    p.add_argument("--slow-hz", type=float, default=0.0,
                   help="new chunks per second of the DP baseline (default 0: the task's best on validation seeds, "
                        "wipe 4, lift 1.5625; the published rate is one chunk per 16 steps, 1.5625)")
    p.add_argument("--rdp-slow-hz", type=float, default=0.0,
                   help="new chunks per second of RDP (default 0: the task's best on validation seeds, wipe 8, lift 1.5625)")
    p.add_argument("--handover", default=d.handover, choices=("blend", "inpaint"),
                   help=f"chunk handover for every method (rdp_slow.handover; default {d.handover})")
    p.add_argument("--device", default=d.device, help="training device: auto | cpu | cuda")
    p.add_argument("--demos-via", default=d.demos_via, choices=("record", "inprocess"),
                   help=f"inprocess: `slowfast demos`, the scripted operator through the same retargeting and safety "
                        f"filter with the synchronous sim, faster than real time; record: the scripted operator "
                        f"recorded over DDS through the teleop server, then converted (default {d.demos_via})")
    p.add_argument("--no-tune-decoder", dest="tune_decoder", action="store_false",
                   help="keep RDP's decoder as the tokenizer trained it (default: tuned on the in-process "
                        "demonstrations' nominal actions)")
    p.add_argument("--ros-domain-id", type=int, default=None,
                   help="DDS domain of the experiment's stacks (default: $ROS_DOMAIN_ID); discovery stays on this host")
    p.add_argument("--port", type=int, default=8082, help="teleop server port while recording (default 8082)")


def settings_from_args(args: argparse.Namespace):
    """The ExperimentSettings the command line asks for (the task's own rates where none is given)."""
    from slowfast_app.experiment import ExperimentSettings  # noqa: PLC0415

    kw = {k: getattr(args, k) for k in ("task", "embodiment", "interface", "demos", "eval_episodes", "demo_seed", "eval_seed", "batch", "fps",
                                       "tokenizer_epochs", "policy_epochs", "methods", "batch_size", "preset", "camera_hz",
                                       "pose_hz", "tactile_hz", "control_hz", "slow_hz", "rdp_slow_hz", "handover", "device", "demos_via",
                                       "sync_episodes", "oracle_episodes", "tune_decoder")}
    if args.model_config:
        from slowfast_data.fileio import read_json  # noqa: PLC0415
        kw["model_config"] = read_json(args.model_config)
    return ExperimentSettings(**kw)


def run(args: argparse.Namespace) -> int:
    from slowfast_app.experiment import Experiment, report  # noqa: PLC0415

    out = Path(args.out)
    if args.name == "report":
        if not (out / "experiment.json").is_file():
            raise ValueError(f"--out {out}: no experiment there (experiment.json missing)")
        res = report(out)
        print((out / "results.md").read_text(), end="")
        return 0 if res["methods"] else 1
    exp = Experiment(out, settings_from_args(args), log=lambda s: print(s, flush=True),
                     domain_id=args.ros_domain_id, port=args.port)
    exp.run()
    print((out / "results.md").read_text(), end="")
    return 0
