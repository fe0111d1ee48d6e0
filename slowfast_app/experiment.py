"""The RDP-vs-DP experiment: demonstrations -> dataset -> four models -> evaluation over ROS 2.

Every stage runs the same `slowfast` subcommand a user would type (logged, in order, to
``DIR/commands.sh``), so the experiment is the documented pipeline, not a second one:

1. ``record``: scripted-operator demonstrations through the teleop server and safety_node,
   in batches (``DIR/bags/batch_NNN``), perturbations on (the operator reacts to them).
   With ``demos_via="inprocess"``: ``slowfast demos`` runs the same chain with the
   synchronous sim and writes the successful episodes to ``DIR/dataset`` directly.
2. ``convert``: successful episodes -> ``DIR/dataset`` (LeRobot v3 layout); then
   ``slowfast dataset check`` stops the experiment on defective demonstrations.
3. ``train``: the asymmetric tokenizer, the latent diffusion policy on it, the Diffusion
   Policy baseline, and the baseline fed the force/tactile history as an observation. With
   in-process demonstrations (written with their nominal actions, ``slowfast demos
   --nominal``) the RDP's fast decoder is then tuned on them (``slowfast train decoder``:
   the latent of what the demonstrator planned plus the measured contact -> what it did),
   unless ``tune_decoder`` is off.
4. ``export``: ONNX for each policy.
5. ``eval``: each policy through the ROS 2 runtime (``slowfast sim --controller rdp|dp``) on
   held-out seeds, perturbations on and off, in batches (``DIR/eval/<method>/<cond>/batch_NNN``).
6. ``report``: ``DIR/results.json``, ``DIR/results.md`` and force plots.

Resuming: a finished step leaves a marker in ``DIR/done/``; a rerun skips it. A batch cut
short is recorded or evaluated again from its first episode (its folder is replaced); an
interrupted training continues from its last epoch checkpoint (``--resume``). The settings
are stored in ``DIR/experiment.json``; resuming with different settings is refused.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from slowfast_app import stack

METHODS = ("rdp", "dp", "dp_contact")
#: what the experiment compares unless told: RDP against the DP baseline. DP with the force
#: history as an observation is an ablation (`--methods rdp,dp,dp_contact`): a third model to
#: train and two more evaluation cells, about 25 min more on 2 cores.
DEFAULT_METHODS = ("rdp", "dp")
LABELS = {"rdp": "RDP (force)", "dp": "Diffusion Policy", "dp_contact": "DP + force embedding"}
CONDITIONS = ("perturbed", "unperturbed")

#: Model sizes for the 2-core CPU run (about 1 h per task with the default counts). The
#: published sizes are `--preset published` with an empty --model-config (see docs/results.md).
CPU_MODEL_CONFIG = {
    "data": {"image_size": [48, 64], "horizon": 32, "contact": "wrench"},
    "obs": {"image_width": 16, "image_feature_dim": 32},
    "unet": {"down_dims": [32, 64, 128]},
    # Noise on the decoder's contact input: without it the decoder reads the path off the
    # force trace, and the oracle replay of the demonstrations' own latents wiped 1/20 (20/20
    # with it; docs/results.md, "Where the losses are").
    "tokenizer": {"contact_noise": 1.0},
    # A few thousand steps, not the published hundreds of thousands: a larger rate and a
    # short warm-up (with 1e-4 the tokenizer's L1 stayed at 0.18 and the policies at 0.3).
    "train": {"lr": 1e-3, "warmup_steps": 100, "patience": 8},
}
#: What an embodiment changes in CPU_MODEL_CONFIG. The arm's actions carry a live orientation:
#: its demonstrator tilts the tool against the contact torque that the arm's rotational
#: compliance lets in (the relative rotation's 6-D entries vary with std up to 0.11, the
#: floating tool's up to 0.02). With 4 latent channels per latent step, the arm tokenizer
#: reconstructed positions to 3.5 mm on average (p95 10 mm) and the demonstrations replayed
#: through it wiped 3/20; with 8, 20/20 (docs/results.md, "Wipe on the Panda arm"). Its latent
#: policy predicts the clean latent chunk rather than the noise: on 60 validation seeds the
#: arm's learned RDP wiped 60/60 that way and 49/60 predicting the noise (same tokenizer and decoder).
EMBODIMENT_MODEL_CONFIG = {"floating": {}, "arm": {"tokenizer": {"latent_dim": 8},
                                                   "diffusion": {"prediction_type": "sample"}}}


def cpu_model_config(embodiment: str) -> dict:
    """CPU_MODEL_CONFIG with what ``embodiment`` changes (a new dict)."""
    cfg = json.loads(json.dumps(CPU_MODEL_CONFIG))
    for section, values in EMBODIMENT_MODEL_CONFIG.get(embodiment, {}).items():
        cfg.setdefault(section, {}).update(values)
    return cfg


#: Sim sensor rates per task. Wipe keeps the sim's 200 Hz. Lift has two arms, so twice the
#: streams: at 200 Hz each, its record stack (sim, teleop, operator, safety, recorder) needs
#: more than two cores and the sim falls behind real time, its readings arrive stamped late
#: and the safety filter holds (most demonstrations failed). 100 Hz poses and 60 Hz tactile
#: images are the floors of the topic table in docs/architecture.md (real vision-based tactile sensors give
#: 25-60 fps); the wrench, which the lift policies read, stays at 200 Hz.
DEMO_SOURCES = ("record", "inprocess")
TASK_SENSOR_HZ = {"wipe": {"pose_hz": 200.0, "tactile_hz": 200.0},
                  "lift": {"pose_hz": 100.0, "tactile_hz": 60.0}}
#: RDP's new chunks per second per task, each its best on validation seeds (below).
TASK_RDP_HZ = {"wipe": 8.0, "lift": 1.5625}
#: ... and the DP baseline's, chosen the same way (below).
TASK_DP_HZ = {"wipe": 4.0, "lift": 1.5625}


#: what an experiment folder made before a setting existed did (every run recorded its
#: demonstrations over DDS, and trained and evaluated all three methods)
BEFORE_THE_SETTING = {"demos_via": "record", "methods": list(METHODS)}


@dataclasses.dataclass
class ExperimentSettings:
    task: str = "wipe"
    # What holds the tools in every stage (demonstrations, oracle, both evaluations): the
    # floating tools, or the Panda arm(s) under the 1 kHz Cartesian impedance controller.
    embodiment: str = "floating"
    # How the ROS evaluation's controllers meet the sim: "stack" (its own topics) or, with the
    # arm on one-arm tasks, "ros2_control": the policy through robot_bridge_node and a real
    # arm's ros2_control topics, as profile robot-rdp runs it on a robot (`slowfast sim --interface`).
    interface: str = "stack"
    # 60 in-process demonstrations: the recipe of the shipped checkpoints (docs/results.md).
    demos: int = 60
    methods: list = dataclasses.field(default_factory=lambda: list(DEFAULT_METHODS))
    eval_episodes: int = 20
    # Episodes per method and condition through the synchronous evaluator (`slowfast evaluate`,
    # the same seeds from eval_seed on); the ROS evaluation (eval_episodes) confirms them.
    sync_episodes: int = 200
    # Demonstrations replayed through each method's runtime (the oracle; in-process demos only).
    oracle_episodes: int = 20
    demo_seed: int = 10_000
    eval_seed: int = 20_000
    batch: int = 10
    fps: float = 25.0
    tokenizer_epochs: int = 40
    policy_epochs: int = 30
    batch_size: int = 64
    preset: str = "sim"
    # PolicyConfig overrides for every model; None: cpu_model_config(embodiment).
    model_config: dict | None = None
    camera_hz: float = 30.0
    # Sim sensor rates while recording and evaluating (0 = the task's default below).
    pose_hz: float = 0.0
    tactile_hz: float = 0.0
    control_hz: float = 200.0
    # New chunks per second of the DP baseline (0 = the task's, TASK_DP_HZ) and of RDP
    # (rdp_slow_hz, 0 = TASK_RDP_HZ): each method at the rate that served it best on validation
    # seeds, never on the held-out ones. The published comparison commits a DP chunk every 16
    # control steps (24 Hz): 1.5 Hz; at our 25 steps/s that is 25/16 = 1.5625 Hz.
    # Wipe (30000-30039, 40 episodes a cell, inpainted handover): RDP 11/40 perturbed at 1.5625
    # Hz, 24 at 2.5, 32 at 4, 29 at 6, 30 at 8 (33/40 unperturbed), 26 at 12. DP (clean-chunk
    # prediction) unperturbed 31/40 at 1.5625 Hz, 38 at 2.5, 40 at 3.125 and 4; perturbed 26/40
    # at 2.5, 33 at 3.125, 38 at 4. A latent chunk is ~20 ms of inference on one core here, so
    # 8 Hz costs a sixth of a core.
    # Lift (validation seeds 30000-30019, perturbed): RDP 1/20 at 8, 9/20 at 4, 20/20 at 1.5625:
    # each new chunk planned from "squeezed, at rest" restarts the slow-starting lift; DP 20/20
    # at 1.5625.
    slow_hz: float = 0.0
    rdp_slow_hz: float = 0.0
    # How a new chunk takes over from the executing one, the same for every method
    # (rdp_slow.handover: "blend", or "inpaint": Real-Time Chunking's frozen prefix, pulled
    # 0.16 s past it). Chosen on wipe's validation seeds 30000-30019: RDP at 8 Hz 19/20 with
    # either (perturbed and unperturbed), DP at 1.5625 Hz unperturbed 18/20 inpainted, 17/20
    # blended; the earlier epsilon-prediction DP at 4 Hz unperturbed 15/20 inpainted, 5/20
    # blended (docs/results.md).
    handover: str = "inpaint"
    device: str = "auto"
    # Where the demonstrations come from: "record" (the scripted operator through the teleop
    # server, recorded over DDS and converted) or "inprocess" (`slowfast demos`: the same chain
    # stepped with the synchronous sim; no stalled sensor streams).
    demos_via: str = "inprocess"
    # Tune RDP's fast decoder on the demonstrations' nominal actions (in-process demos only):
    # without it the decoder hardly reads the force (+2 N at the wrist moved the wipe policy's
    # last action 0.04 mm) and RDP wiped 171/200 perturbed held-out episodes, with it 188/200.
    tune_decoder: bool = True

    def method_hz(self, method: str) -> float:
        """New chunks per second ``method`` is served at."""
        return float(self.rdp_slow_hz if method == "rdp" else self.slow_hz)

    def __post_init__(self) -> None:
        from sim import TASKS  # noqa: PLC0415

        if self.task not in TASKS:
            raise ValueError(f"--task: unknown task {self.task!r} (choose from {', '.join(TASKS)})")
        from sim.config import EMBODIMENT_TASKS  # noqa: PLC0415
        if self.embodiment not in EMBODIMENT_TASKS or self.task not in EMBODIMENT_TASKS[self.embodiment]:
            raise ValueError(f"--embodiment: {self.embodiment!r} has no {self.task} scene (choose from "
                             f"{', '.join(e for e, t in EMBODIMENT_TASKS.items() if self.task in t)})")
        from slowfast_app.cli.sim import check_interface  # noqa: PLC0415
        check_interface(self.interface, self.embodiment, self.task)
        for name, lo in (("demos", 1), ("eval_episodes", 1), ("sync_episodes", 0), ("oracle_episodes", 0),
                         ("batch", 1), ("tokenizer_epochs", 1),
                         ("policy_epochs", 1), ("batch_size", 1)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ValueError(f"--{name.replace('_', '-')}: {v!r} must be an integer >= {lo}")
        for name in ("demo_seed", "eval_seed"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < 2**31:
                raise ValueError(f"--{name.replace('_', '-')}: {v!r} must be an integer in [0, 2**31)")
        if abs(self.demo_seed - self.eval_seed) < max(self.demos, 2 * self.eval_episodes, self.sync_episodes):
            raise ValueError(f"--demo-seed {self.demo_seed} and --eval-seed {self.eval_seed}: the demonstration "
                             "and evaluation seed ranges overlap (evaluation must be on held-out seeds)")
        if not 1.0 <= float(self.fps) <= 500.0:
            raise ValueError(f"--fps: {self.fps} outside 1..500")
        if not 1.0 <= float(self.camera_hz) <= 120.0:
            raise ValueError(f"--camera-hz: {self.camera_hz} outside 1..120 (the policies see the camera)")
        for name, lo in (("pose_hz", 100.0), ("tactile_hz", 25.0)):
            v = float(getattr(self, name))
            if v == 0.0:
                setattr(self, name, float(TASK_SENSOR_HZ[self.task][name]))
            elif not lo <= v <= 1000.0:
                raise ValueError(f"--{name.replace('_', '-')}: {v:g} outside {lo:g}..1000 (0 = the task's default)")
        if float(self.rdp_slow_hz) == 0.0:
            self.rdp_slow_hz = TASK_RDP_HZ[self.task]
        if float(self.slow_hz) == 0.0:
            self.slow_hz = TASK_DP_HZ[self.task]
        for name in ("slow_hz", "rdp_slow_hz"):
            if not 0.2 <= float(getattr(self, name)) <= 30.0:
                raise ValueError(f"--{name.replace('_', '-')}: {getattr(self, name)} outside 0.2..30")
        if self.preset not in ("sim", "published"):
            raise ValueError(f"--preset: {self.preset!r} is not sim or published")
        if self.model_config is None:
            self.model_config = cpu_model_config(self.embodiment)
        if not isinstance(self.model_config, dict):
            raise ValueError("--model-config: must be a JSON object")
        from policy.rdp.handover import HANDOVERS  # noqa: PLC0415
        if self.handover not in HANDOVERS:
            raise ValueError(f"--handover: {self.handover!r} is not one of {', '.join(HANDOVERS)}")
        self.methods = list(self.methods)
        if not self.methods or any(m not in METHODS for m in self.methods) or len(set(self.methods)) != len(self.methods) \
                or self.methods[:2] != ["rdp", "dp"]:
            raise ValueError(f"--methods: {','.join(map(str, self.methods))!r} must be rdp,dp optionally followed by "
                             f"dp_contact (RDP is compared with the DP baseline)")
        if self.demos_via not in DEMO_SOURCES:
            raise ValueError(f"--demos-via: {self.demos_via!r} is not one of {', '.join(DEMO_SOURCES)}")


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of a success rate k/n."""
    if n <= 0:
        return (0.0, 1.0)
    p = k / n
    d = 1.0 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (max(0.0, c - h), min(1.0, c + h))


def mean_ci(values) -> tuple[float | None, float | None]:
    """Mean and the half-width of its 95 % normal interval (None when there are no values)."""
    v = np.asarray([x for x in values if x is not None], float)
    if v.size == 0:
        return None, None
    half = 1.96 * float(v.std(ddof=1)) / math.sqrt(v.size) if v.size > 1 else float("nan")
    return float(v.mean()), half


class Experiment:
    def __init__(self, out: str | Path, settings: ExperimentSettings, log=print,
                 slowfast: list[str] | None = None, domain_id: int | None = None, port: int = 8082) -> None:
        self.out = Path(out)
        self.s = settings
        self.log = log
        # The stacks this experiment starts talk on their own DDS domain, kept to this host:
        # two experiments (or a robot) on one network must not hear each other's topics.
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
        if domain_id is not None:
            if not 0 <= domain_id <= 232:
                raise ValueError(f"--ros-domain-id: {domain_id} outside 0..232")
            self.env["ROS_DOMAIN_ID"] = str(domain_id)
        if not 1024 <= port <= 65535:
            raise ValueError(f"--port: {port} outside 1024..65535")
        self.port = port
        self.slowfast = slowfast or [sys.executable, "-m", "slowfast_app.cli"]
        self.done_dir = self.out / "done"

    # ------------------------------------------------------------------ bookkeeping
    def _check_settings(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        path = self.out / "experiment.json"
        mine = dataclasses.asdict(self.s)
        if path.is_file():
            try:
                stored = json.loads(path.read_text())
            except json.JSONDecodeError:
                raise ValueError(f"{path}: not JSON; remove it or use another --out") from None
            # a setting added since the folder was made counts at the value every run had then
            defaults = {**dataclasses.asdict(ExperimentSettings(task=self.s.task)), **BEFORE_THE_SETTING}
            diff = sorted(k for k in set(stored) | set(mine) if stored.get(k, defaults.get(k)) != mine.get(k))
            if diff:
                raise ValueError(f"{self.out} holds an experiment with other settings ({', '.join(diff)}): "
                                 "rerun with the same settings to resume, or use another --out")
        else:
            path.write_text(json.dumps(mine, indent=2))
            (self.out / "model_config.json").write_text(json.dumps(self.s.model_config, indent=2))
        self.done_dir.mkdir(exist_ok=True)

    def _done(self, step: str) -> bool:
        return (self.done_dir / step).is_file()

    def _mark(self, step: str) -> None:
        (self.done_dir / step).write_text(time.strftime("%Y-%m-%dT%H:%M:%S\n"))

    def _run(self, args: list[str], step: str) -> None:
        cmd = [*self.slowfast, *args]
        shown = "slowfast " + " ".join(shlex.quote(a) for a in args)
        with open(self.out / "commands.sh", "a") as fh:
            fh.write(shown + "\n")
        self.log(f"[{step}] {shown}")
        t0 = time.monotonic()
        with open(self.out / "logs" / f"{step}.log", "w") as logf:
            proc = stack.start_child(cmd, stdout=logf, stderr=subprocess.STDOUT, env=self.env)
            try:
                rc = proc.wait()
            except BaseException:
                # interrupted (Ctrl-C, SIGTERM): the step's command stops its own nodes first
                stack.stop_children([proc], grace=stack.STOP_GRACE_S + 2.0)
                raise
        if rc != 0:
            tail = (self.out / "logs" / f"{step}.log").read_text().strip().splitlines()[-3:]
            raise ValueError(f"step {step} failed (status {rc}); see {self.out / 'logs' / (step + '.log')}: "
                             + " | ".join(tail))
        self.log(f"[{step}] done in {time.monotonic() - t0:.0f} s")

    def _sensor_sets(self, camera: bool) -> list[str]:
        """`--set` overrides of the sim's sensor rates (`slowfast sim` has its own --camera-hz)."""
        sets = {"pose_hz": self.s.pose_hz, "tactile_hz": self.s.tactile_hz}
        if camera:
            sets["camera_hz"] = self.s.camera_hz
        return [a for k, v in sets.items() for a in ("--set", f"sim_node.{k}={v:g}")]

    def _embodiment(self, flag: bool) -> list[str]:
        """The embodiment for a command: `--embodiment` (`slowfast demos`, `slowfast sim`) or a
        sim_node `--set` (`slowfast record`, `slowfast evaluate`); nothing for the default."""
        if self.s.embodiment == "floating":
            return []
        return ["--embodiment", self.s.embodiment] if flag else ["--set", f"sim_node.embodiment={self.s.embodiment}"]

    def _batches(self, total: int):
        for b in range(0, total, self.s.batch):
            yield b // self.s.batch, b, min(self.s.batch, total - b)

    # ------------------------------------------------------------------ stages
    def record(self) -> None:
        if self.s.demos_via == "inprocess":
            if not self._done("demos"):
                shutil.rmtree(self.out / "dataset", ignore_errors=True)
                self._run(["demos", "--task", self.s.task, "--episodes", str(self.s.demos),
                           "--seed", str(self.s.demo_seed), "--fps", f"{self.s.fps:g}", "--only-success",
                           "--workers", str(self._workers()), *self._embodiment(flag=True),
                           *(["--nominal"] if self.s.tune_decoder else []),
                           "--out", str(self.out / "dataset")], "demos")
                self._mark("demos")
            return
        for k, first, n in self._batches(self.s.demos):
            step = f"record_{k:03d}"
            if self._done(step):
                continue
            folder = self.out / "bags" / f"batch_{k:03d}"
            shutil.rmtree(folder, ignore_errors=True)
            self._run(["record", "--task", self.s.task, "--operator", "scripted", "--perturb",
                       "--episodes", str(n), "--seed", str(self.s.demo_seed + first), "--port", str(self.port),
                       "--out", str(folder), *self._sensor_sets(camera=True), *self._embodiment(flag=False)], step)
            self._mark(step)

    def convert(self) -> None:
        if self._done("convert") or self.s.demos_via == "inprocess":   # `slowfast demos` wrote the dataset
            return
        ds = self.out / "dataset"
        shutil.rmtree(ds, ignore_errors=True)
        batches = [str(b) for b in sorted((self.out / "bags").glob("batch_*"))]
        self._run(["convert", *batches, "--out", str(ds), "--fps", f"{self.s.fps:g}",
                   "--only-success"], "convert")
        self._mark("convert")

    def check(self) -> None:
        """No training on defective demonstrations: lunges, speeding, frozen streams stop here."""
        if self._done("check"):
            return
        self._run(["dataset", "check", str(self.out / "dataset")], "check")
        self._mark("check")

    def _train(self, name: str, model: str, epochs: int, extra: list[str]) -> None:
        step = f"train_{name}"
        if self._done(step):
            return
        ckpt = self.out / "checkpoints" / name
        args = ["train", model, "--dataset", str(self.out / "dataset"), "--out", str(ckpt),
                "--epochs", str(epochs), "--device", self.s.device, "--no-progress"]
        if (ckpt / "config.json").is_file() and (ckpt / "training_state").exists():
            args.append("--resume")
        else:
            shutil.rmtree(ckpt, ignore_errors=True)
            args += ["--preset", self.s.preset, "--config", str(self.out / "model_config.json"), "--batch-size", str(self.s.batch_size),
                     "--seed", "0", *extra]
        self._run(args, step)
        self._mark(step)

    def train(self) -> None:
        ck = self.out / "checkpoints"
        self._train("tokenizer", "tokenizer", self.s.tokenizer_epochs, [])
        tuned = self.s.tune_decoder and self.s.demos_via == "inprocess"
        self._train("ldp" if tuned else "rdp", "ldp", self.s.policy_epochs, ["--tokenizer", str(ck / "tokenizer")])
        if tuned and not self._done("train_decoder"):
            shutil.rmtree(ck / "rdp", ignore_errors=True)
            self._run(["train", "decoder", "--dataset", str(self.out / "dataset"), "--init", str(ck / "ldp"),
                       "--out", str(ck / "rdp"), "--no-progress"], "train_decoder")
            self._mark("train_decoder")
        self._train("dp", "dp", self.s.policy_epochs, [])
        if "dp_contact" in self.s.methods:
            self._train("dp_contact", "dp", self.s.policy_epochs, ["--obs-contact"])

    def export(self) -> None:
        for m in self.s.methods:
            step = f"export_{m}"
            if self._done(step):
                continue
            dst = self.out / "export" / m
            shutil.rmtree(dst, ignore_errors=True)
            self._run(["export", str(self.out / "checkpoints" / m), "--out", str(dst), "--tolerance", "1e-3"], step)
            self._mark(step)

    def evaluate(self) -> None:
        for cond in CONDITIONS:
            for m in self.s.methods:
                for k, first, n in self._batches(self.s.eval_episodes):
                    step = f"eval_{m}_{cond}_{k:03d}"
                    if self._done(step):
                        continue
                    folder = self.out / "eval" / m / cond / f"batch_{k:03d}"
                    shutil.rmtree(folder, ignore_errors=True)
                    args = ["sim", "--task", self.s.task, "--controller", "rdp" if m == "rdp" else "dp",
                            "--policy", str(self.out / "export" / m), "--episodes", str(n),
                            "--seed", str(self.s.eval_seed + first), "--out", str(folder),
                            "--camera-hz", f"{self.s.camera_hz:g}", "--control-hz", f"{self.s.control_hz:g}",
                            "--set", f"rdp_slow.rate_hz={self.s.method_hz(m):g}",
                            "--set", f"rdp_slow.handover={self.s.handover}", *self._sensor_sets(camera=False),
                            *self._embodiment(flag=True)]
                    if self.s.interface != "stack":
                        args += ["--interface", self.s.interface]
                    if cond == "unperturbed":
                        args.append("--no-perturb")
                    self._run(args, step)
                    self._mark(step)

    @staticmethod
    def _workers() -> int:
        """Processes of the in-process stages (demonstrations, synchronous evaluation)."""
        return max(1, min(2, os.cpu_count() or 1))

    def _evaluate_args(self, m: str) -> list[str]:
        return ["evaluate", "--task", self.s.task, "--policy", str(self.out / "export" / m), "--quiet",
                "--workers", str(self._workers()),
                "--set", f"rdp_slow.rate_hz={self.s.method_hz(m):g}", "--set", f"rdp_fast.control_hz={self.s.control_hz:g}",
                "--set", f"rdp_slow.handover={self.s.handover}",
                *self._sensor_sets(camera=True), *self._embodiment(flag=False)]

    def oracle(self) -> None:
        """Each method's runtime serving the demonstrations' own chunks on their own seeds:
        what the runtime loses against the demonstrator (`slowfast demos` datasets only)."""
        from slowfast_data.features import EPISODE_SEEDS_PATH  # noqa: PLC0415

        seeds_file = self.out / "dataset" / EPISODE_SEEDS_PATH
        if not self.s.oracle_episodes or not seeds_file.is_file():
            return
        seeds = sorted(int(r["seed"]) for r in json.loads(seeds_file.read_text())["episodes"])[:self.s.oracle_episodes]
        for m in self.s.methods:
            step = f"oracle_{m}"
            if self._done(step):
                continue
            self._run([*self._evaluate_args(m), "--oracle", str(self.out / "dataset"),
                       "--seeds", ",".join(map(str, seeds)), "--json", str(self.out / "oracle" / f"{m}.json")], step)
            self._mark(step)

    def evaluate_sync(self) -> None:
        for cond in CONDITIONS:
            for m in self.s.methods:
                step = f"sync_{m}_{cond}"
                if not self.s.sync_episodes or self._done(step):
                    continue
                args = [*self._evaluate_args(m), "--episodes", str(self.s.sync_episodes),
                        "--seed", str(self.s.eval_seed), "--json", str(self.out / "eval_sync" / m / f"{cond}.json")]
                if cond == "unperturbed":
                    args.append("--no-perturb")
                self._run(args, step)
                self._mark(step)

    def run(self) -> dict:
        import fcntl  # noqa: PLC0415

        self.out.mkdir(parents=True, exist_ok=True)
        lock = open(self.out / ".lock", "w")  # noqa: SIM115 - held for the whole run
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.close()
            raise ValueError(f"{self.out}: another experiment is running in this folder") from None
        try:
            return self._run_locked()
        finally:
            lock.close()

    def _run_locked(self) -> dict:
        self._check_settings()
        (self.out / "logs").mkdir(exist_ok=True)
        t0 = time.monotonic()
        for stage in (self.record, self.convert, self.check, self.train, self.export, self.oracle,
                      self.evaluate_sync, self.evaluate):
            stage()
        results = report(self.out)
        self.log(f"experiment {self.s.task}: finished in {time.monotonic() - t0:.0f} s -> {self.out / 'results.md'}")
        return results


# ---------------------------------------------------------------------- report
def _episodes(folder: Path) -> list[dict]:
    eps = []
    for m in sorted(folder.glob("batch_*/metrics.json")):
        for e in json.loads(m.read_text())["episodes"]:
            e["_dir"] = str(m.parent)
            eps.append(e)
    return eps


def summarize_method(eps: list[dict]) -> dict:
    n = len(eps)
    k = sum(bool(e.get("success")) for e in eps)
    out = {"episodes": n, "successes": k, "success_rate": k / n if n else None, "success_ci95": wilson(k, n)}
    for key in ("rms_force_error", "time_in_band", "peak_force"):
        mean, half = mean_ci(e.get(key) for e in eps)
        out[key] = mean
        out[key + "_ci95"] = half
    rec = [r for e in eps for r in (e.get("recovery_times") or [])]
    mean, half = mean_ci(r for r in rec if r is not None)
    out["recovery_time"] = mean
    out["recovery_time_ci95"] = half
    out["perturbations"] = len(rec)
    out["unrecovered"] = sum(r is None for r in rec)
    from sim.realtime import slowed_factors  # noqa: PLC0415

    rt, slowed = slowed_factors(eps)
    if rt:   # real-time episodes (over ROS 2): did the machine hold the stack's rates?
        out["real_time_factor_min"] = min(rt)
        out["slowed_episodes"] = len(slowed)
        rates = [e["policy_chunks"] / e["duration"] for e in eps if e.get("policy_chunks") and e.get("duration")]
        out["chunks_per_s"] = float(np.mean(rates)) if rates else None
    return out


def report(out: str | Path) -> dict:
    """Aggregate ``DIR/eval`` into ``results.json``, ``results.md`` and force plots."""
    out = Path(out)
    settings = json.loads((out / "experiment.json").read_text())
    task = settings["task"]
    results: dict = {"task": task, "settings": settings, "methods": {}}
    for m in METHODS:
        for cond in CONDITIONS:
            eps = _episodes(out / "eval" / m / cond)
            if eps:
                results["methods"].setdefault(m, {})[cond] = summarize_method(eps)
    for m in METHODS:
        for cond in CONDITIONS:
            f = out / "eval_sync" / m / f"{cond}.json"
            if f.is_file():
                results.setdefault("sync", {}).setdefault(m, {})[cond] = json.loads(f.read_text())["summary"]
        f = out / "oracle" / f"{m}.json"
        if f.is_file():
            results.setdefault("oracle", {})[m] = json.loads(f.read_text())["summary"]
    demos = _demo_counts(out, settings)
    results["demonstrations"] = demos
    cmp = {}
    for cond in CONDITIONS:
        # the synchronous cells (hundreds of episodes) when there are, else the ROS ones
        src = results.get("sync") or results["methods"]
        r, d = (src.get(x, {}).get(cond) for x in ("rdp", "dp"))
        if r and d:
            cmp[cond] = {"rdp_minus_dp": r["success_rate"] - d["success_rate"], "episodes": r["episodes"],
                         "intervals_overlap": not (r["success_ci95"][0] > d["success_ci95"][1]
                                                   or d["success_ci95"][0] > r["success_ci95"][1])}
    results["comparison"] = cmp
    plot = _plot_typical(out, task)
    results["plot"] = plot
    (out / "results.json").write_text(json.dumps(results, indent=2))
    (out / "results.md").write_text(results_markdown(results))
    return results


def _demo_counts(out: Path, settings: dict) -> dict:
    info = out / "dataset" / "meta" / "info.json"
    if settings.get("demos_via", "record") == "inprocess":
        recorded = settings["demos"]          # `slowfast demos` ran every seed, wrote the successes
    else:
        recorded = len(list((out / "bags").glob("batch_*/episode_*")))
    used = json.loads(info.read_text())["total_episodes"] if info.is_file() else None
    return {"recorded": recorded, "successful_used": used, "via": settings.get("demos_via", "record")}


def _plot_typical(out: Path, task: str) -> str | None:
    """Force against time on one held-out perturbed seed, one panel per method: the same
    seed, so the same perturbations, for every method; the first seed (in order) on which
    every method touched the surface, whatever it did next - not a chosen one."""
    traces = {}
    first = out / "eval" / METHODS[0] / "perturbed"
    for f in sorted(first.glob("batch_*/force_*.npz")):   # batch by batch, seed by seed
        rel = f.relative_to(first)
        cand = {m: dict(np.load(g)) for m in METHODS if (g := out / "eval" / m / "perturbed" / rel).is_file()}
        if cand and all(float(np.max(d["force"], initial=0.0)) >= 1.0 for d in cand.values()):
            traces = cand
            break
    if not traces:
        return None
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure  # noqa: PLC0415

    fig = Figure(figsize=(8, 2.2 * len(traces)), dpi=100)
    axes = fig.subplots(len(traces), 1, sharex=True, squeeze=False)[:, 0]
    ylabel = "squeeze force [N]" if task == "lift" else "normal force [N]"
    for ax, (m, d) in zip(axes, traces.items()):
        band = d["band"]
        ax.axhspan(band[0], band[1], color="tab:green", alpha=0.15)
        ax.plot(d["t"], d["force"], lw=1.0, color="tab:blue")
        for tp in d["perturbation_times"]:
            ax.axvline(tp, color="tab:red", ls="--", lw=1.0)
        ax.set_ylabel(ylabel)
        ax.set_title(LABELS[m], fontsize=9)
    axes[-1].set_xlabel("time [s]  (green: force band, red: perturbation)")
    fig.tight_layout()
    path = out / f"force_{task}_perturbed.png"
    fig.savefig(path)
    return path.name


def _fmt(v, digits=2) -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def _pm(s: dict, key: str, digits=2) -> str:
    mean, half = s.get(key), s.get(key + "_ci95")
    if mean is None:
        return "—"
    return _fmt(mean, digits) + ("" if half is None or math.isnan(half) else f" ± {_fmt(half, digits)}")


def _real_time(r: dict) -> str:
    """A ROS cell's real-time record: the slowest episode's real-time factor, how many ran
    slower than real time, the slow policy's chunks per second."""
    if r.get("real_time_factor_min") is None:
        return "—"
    rate = r.get("chunks_per_s")
    return (f"{r['real_time_factor_min']:.3f}, {r['slowed_episodes']}/{r['episodes']}, "
            f"{'—' if rate is None else f'{rate:.1f}'}")


def results_markdown(results: dict) -> str:
    task = results["task"]
    s = results["settings"]
    lines = [f"### {task}", ""]
    d = results.get("demonstrations", {})
    how = "generated in process" if d.get("via") == "inprocess" else "recorded"
    lines.append(f"Demonstrations: {d.get('recorded')} {how} with perturbations (seeds {s['demo_seed']}.."
                 f"{s['demo_seed'] + s['demos'] - 1}), {d.get('successful_used')} successful ones used. "
                 f"Evaluation: {s['eval_episodes']} held-out seeds per condition ({s['eval_seed']}.."
                 f"{s['eval_seed'] + s['eval_episodes'] - 1}), the same seeds for every method. New chunks "
                 f"per second: RDP {s.get('rdp_slow_hz', s['slow_hz']):g} Hz, the DP baselines {s['slow_hz']:g} Hz; "
                 f"handover: {s.get('handover', 'blend')}. Embodiment: {s.get('embodiment', 'floating')}"
                 + (f"; over ROS 2 through robot_bridge_node ({s['interface']} topics)."
                    if s.get("interface", "stack") != "stack" else "."))
    lines.append("")
    lines.append("| method | condition | success (95 % CI) | RMS force error [N] | time in band | peak force [N] | "
                 "recovery [s] (unrecovered) | real time: slowest episode, slowed episodes, chunks/s |")
    lines.append("|---|---|---|---|---|---|---|---|")
    for m in METHODS:
        for cond in CONDITIONS:
            r = results["methods"].get(m, {}).get(cond)
            if not r:
                continue
            lo, hi = r["success_ci95"]
            rec = _pm(r, "recovery_time") + (f" ({r['unrecovered']}/{r['perturbations']})" if r["perturbations"] else "")
            lines.append(f"| {LABELS[m]} | {cond} | {r['successes']}/{r['episodes']} = {_fmt(r['success_rate'])} "
                         f"[{_fmt(lo)}, {_fmt(hi)}] | {_pm(r, 'rms_force_error')} | {_pm(r, 'time_in_band')} | "
                         f"{_pm(r, 'peak_force', 1)} | {rec if cond == 'perturbed' else '—'} | {_real_time(r)} |")
    lines.append("")
    slowed = sum(r.get("slowed_episodes", 0) for c in results["methods"].values() for r in c.values())
    if slowed:
        lines += [f"**{slowed} ROS 2 episode(s) ran slower than real time** (the sim slowed its world down "
                  "because the machine could not hold the stack's rates): those cells are no real-time "
                  "confirmation of the synchronous ones.", ""]
    if results.get("sync"):
        lines += ["Synchronous evaluator (`slowfast evaluate`, the same seeds from "
                  f"{s['eval_seed']} on):", "",
                  "| method | condition | success (95 % CI) | time in band | peak force [N] |", "|---|---|---|---|---|"]
        for m in METHODS:
            for cond in CONDITIONS:
                r = results["sync"].get(m, {}).get(cond)
                if r:
                    lo, hi = r["success_ci95"]
                    lines.append(f"| {LABELS[m]} | {cond} | {r['successes']}/{r['episodes']} = {_fmt(r['success_rate'])} "
                                 f"[{_fmt(lo)}, {_fmt(hi)}] | {_pm(r, 'time_in_band')} | {_pm(r, 'peak_force', 1)} |")
        lines.append("")
    if results.get("oracle"):
        lines += ["Oracle: the demonstrations' own chunks through each method's runtime, on their own seeds "
                  "(the demonstrator succeeded on every one of them):", "",
                  "| runtime of | success (95 % CI) |", "|---|---|"]
        for m, r in results["oracle"].items():
            lo, hi = r["success_ci95"]
            lines.append(f"| {LABELS[m]} | {r['successes']}/{r['episodes']} = {_fmt(r['success_rate'])} "
                         f"[{_fmt(lo)}, {_fmt(hi)}] |")
        lines.append("")
    for cond, c in results.get("comparison", {}).items():
        lines.append(f"- {cond} ({c.get('episodes')} episodes per cell): RDP − DP success = {c['rdp_minus_dp']:+.2f}; 95 % intervals "
                     f"{'overlap' if c['intervals_overlap'] else 'do not overlap'}.")
    if results.get("plot"):
        lines += ["", f"![force against time, {task}, first perturbed held-out seed]({results['plot']})"]
    return "\n".join(lines) + "\n"
