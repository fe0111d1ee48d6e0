"""`slowfast bench fastloop`: the reactive stack running against the sim over DDS.

Runs sim_node + rdp_slow + rdp_fast (profile sim-rdp) and reports, per control rate: the
achieved loop rate, the period error p50/p99 (start time of each tick against its ideal
time), the contact-to-command latency p50/p99 (capture stamp of the tactile or wrench
reading -> publish of the command that used it, measured in rdp_fast), the slow policy's
inference latency, and the CPU use of each node process; and where a tick's time goes (p50/p99
of taking the readings, the executor with its decode, the safety filter, the publish and the
whole tick, split into the control thread's CPU time and its time off the CPU), which tick
source the loop used (phase-locked to the contact sensor or paced by the clock) and whether it
ran with real-time scheduling; and before each rate the host's speed (``host_reference``: a
fixed piece of Python work, scheduled as the loop, p50/p99), by which runs on a shared or
virtual machine compare, and over the window the share of each CPU's time a hypervisor stole
(``steal_percent``, from /proc/stat). Every loop figure covers exactly the
measurement window: rdp_fast's statistics are restarted when it begins (its
``~/reset_statistics`` service), after the start-up and the first chunks.

In sensor mode (phase-locked) the period error is the delay from a reading's capture to the
start of its tick less the smallest such delay of the recent ticks: how much later than it
could have a tick started. In clock mode it is the start against the ideal tick time.

Without --policy it first builds a small policy at the sim model size: expert
demonstrations from the synchronous sim, a tokenizer and a latent diffusion policy trained
for a few epochs, exported to ONNX (cached in --work). Its quality does not matter here,
only its cost. Two policies are built: one with the scene camera (for the rates with the
camera rendering) and one without (for the 1 kHz run "when the sim renders no camera").
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rates", default="200,1000", help="control rates to run, Hz (comma-separated)")
    p.add_argument("--seconds", type=float, default=15.0, help="measurement window per rate")
    p.add_argument("--policy", default=None, help="export folder to use for every rate (default: build small ones)")
    p.add_argument("--contact", default="tactile", choices=("tactile", "wrench"),
                   help="contact input of the built policy for the runs with the camera (the runs above "
                        "--camera-above-hz use the wrench, published at the loop rate)")
    p.add_argument("--work", default="out/bench_fastloop", help="where built policies are cached")
    p.add_argument("--camera-above-hz", type=float, default=500.0,
                   help="rates above this run without camera rendering (the 1 kHz case)")
    from hardware.realtime import MODES  # noqa: PLC0415

    p.add_argument("--tick-source", default="auto", choices=MODES,
                   help="rdp_fast.tick_source: on each contact reading, the clock, the clock on the sensor's phase "
                        "(locked), or auto")
    p.add_argument("--rt-priority", type=int, default=80,
                   help="rdp_fast.rt_priority: SCHED_FIFO priority of the control thread (0 = normal; "
                        "without permission the node falls back and says so)")
    p.add_argument("--sim-rt-priority", type=int, default=None,
                   help="sim_node.rt_priority: SCHED_FIFO priority of the sim's physics thread, which stands for "
                        "the robot's sensor drivers (default: 10 below --rt-priority, 0 when that is 0)")
    p.add_argument("--cpu", type=int, default=-1, help="rdp_fast.cpu: core of the control thread (-1 = none)")
    p.add_argument("--set", action="append", default=[], metavar="NODE.PARAM=VALUE",
                   help="override a parameter of sim_node, rdp_slow or rdp_fast (repeatable), "
                        "e.g. sim_node.max_lag=0.002")


def _keep_logs(logs, probe) -> str:
    """A copy of the stack's logs, with every node's diagnostics as they are now, in a folder
    that outlives the run: the evidence when chunks do not reach ``rdp_fast`` (how many
    ``rdp_slow`` published, how many ``rdp_fast`` received or refused)."""
    import json  # noqa: PLC0415
    import shutil  # noqa: PLC0415

    out = Path(tempfile.mkdtemp(prefix="slowfast-fastloop-"))
    shutil.copytree(logs, out / "logs")
    diags = probe.diagnostics({"rdp_fast", "rdp_slow", "sim_node"}, timeout=3.0)
    (out / "diagnostics.json").write_text(json.dumps(diags, indent=1, default=str))
    return str(out)


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def build_policy(work: Path, camera: bool, contact: str) -> Path:
    from policy.rdp.config import preset  # noqa: PLC0415
    from policy.rdp.export import export_checkpoint  # noqa: PLC0415
    from policy.rdp.train import train  # noqa: PLC0415
    from sim.datagen import generate_dataset  # noqa: PLC0415

    tag = f"{'cam' if camera else 'nocam'}_{contact}_v1"
    export = work / tag / "export"
    if (export / "runtime.json").is_file():
        return export
    root = work / tag
    _log(f"building the {tag} bench policy in {root} (once)...")
    import shutil  # noqa: PLC0415
    shutil.rmtree(root, ignore_errors=True)  # a build that was interrupted starts over
    ds = generate_dataset(root / "dataset", task="wipe", episodes=3, seed=1000, episode_seconds=6.0,
                          camera=camera, image_size=(96, 128))
    for kind, epochs in (("tokenizer", 3), ("ldp", 1)):
        cfg = preset("sim", {"tokenizer": "rdp_tokenizer", "ldp": "rdp_ldp"}[kind])
        cfg.data.contact = contact
        cfg.data.image_size = (96, 128)
        cfg.train.epochs = epochs
        train(kind, ds, root / kind, cfg, tokenizer=root / "tokenizer" if kind == "ldp" else None, progress=False)
    # ONNX vs torch is checked at 1e-3 here: at the sim model size float32 round-off through
    # the ResNet encoder reaches a few 1e-4 (the tests check 1e-4 on the tiny test models).
    export_checkpoint(root / "ldp", export, tolerance=1e-3)
    return export


def run_rate(hz: float, export: Path, camera: bool, seconds: float, wrench_hz: float = 200.0,
             fast: dict | None = None, sets: dict | None = None) -> dict:
    import psutil  # noqa: PLC0415

    from hardware.realtime import cpu_counters, steal_percent  # noqa: PLC0415
    from slowfast_data.fileio import read_json  # noqa: PLC0415
    from slowfast_app import stack  # noqa: PLC0415
    from slowfast_ros.topic_probe import TopicProbe  # noqa: PLC0415

    meta = read_json(export / "runtime.json")
    overrides = {
        "sim_node": {"task": "wipe", "camera_hz": 30.0 if camera else 0.0, "episode_seconds": 3600.0,
                     "perturb": True, "camera_width": 320, "camera_height": 240, "wrench_hz": float(wrench_hz)},
        "rdp_slow": {"export_dir": str(export), "arms": ["arm"]},
        "rdp_fast": {"export_dir": str(export), "arms": ["arm"], "control_hz": float(hz), **(fast or {})},
    }
    for node, values in (sets or {}).items():
        overrides[node].update(values)
    if meta.get("cameras") and not camera:
        raise ValueError(f"{export}: this policy needs camera images; it cannot run with rendering off")
    probe = TopicProbe({})
    try:
        with tempfile.TemporaryDirectory() as logs, \
                stack.Stack(stack.load_profile("sim-rdp"), overrides, log_dir=Path(logs)) as s:
            _log(f"{hz:g} Hz: waiting for chunks...")
            end = time.monotonic() + 120.0
            ready, kept = False, None
            while time.monotonic() < end:
                d = probe.diagnostics({"rdp_fast"}, timeout=2.0).get("rdp_fast", {})
                if int(d.get("chunks_received", 0)) >= 3:
                    ready = True
                    break
                if s.any_exited():
                    raise RuntimeError(f"a node exited: {s.last_line('rdp_fast')} {s.last_line('rdp_slow')}")
            procs = {name: psutil.Process(p.pid) for name, p in s.procs.items()}
            if not ready:   # measured anyway, and said: the loop then holds instead of decoding
                kept = _keep_logs(Path(logs), probe)
                _log(f"{hz:g} Hz: fewer than 3 chunks reached rdp_fast in 120 s; measuring a holding loop "
                     f"(the nodes' logs and diagnostics kept in {kept})")
            # the loop's figures cover exactly the measurement, not the start-up before it
            ok, why = probe.trigger("/rdp_fast/reset_statistics")
            if not ok:
                raise RuntimeError(f"rdp_fast did not start a statistics window: {why}")
            for p in procs.values():
                p.cpu_percent(None)
            counters = cpu_counters()
            _log(f"{hz:g} Hz: measuring for {seconds:g} s...")
            time.sleep(seconds)
            cpu = {name: round(p.cpu_percent(None) / 100.0, 3) for name, p in procs.items()}
            stolen = steal_percent(counters, cpu_counters())
            d = probe.diagnostics({"rdp_fast", "rdp_slow", "sim_node"}, timeout=5.0)
    finally:
        probe.close()
    fast, slow, sim = d.get("rdp_fast", {}), d.get("rdp_slow", {}), d.get("sim_node", {})

    def f(dct, key):
        try:
            return round(float(dct[key]), 4)
        except (KeyError, ValueError):
            return None

    ticks = {k: f(fast, f"ticks_{k}") for k in ("sensor", "deadline", "clock", "watchdog")}
    # every phase the node reports a tick time for ("tick_ms/<phase>_p50")
    phases = [k.removeprefix("tick_ms/").removesuffix("_p50") for k in fast
              if k.startswith("tick_ms/") and k.endswith("_p50")]
    window = f(fast, "window_s")
    return {
        "control_hz": hz, "camera": camera, "contact": meta.get("contact"), "sim_wrench_hz": wrench_hz,
        "chunks_before_measuring": ready, "logs_kept": kept,
        "window_s": window,
        "loop_rate_hz": round(sum(v or 0 for v in ticks.values()) / window, 2) if window else None,
        "period_error_ms_p50": f(fast, "period_error_ms_p50"), "period_error_ms_p99": f(fast, "period_error_ms_p99"),
        "overruns": f(fast, "overruns"),
        "contact_to_command_ms_p50": f(fast, "contact_to_command_ms_p50"),
        "contact_to_command_ms_p99": f(fast, "contact_to_command_ms_p99"),
        "tick_us_p50": f(fast, "tick_us_p50"), "tick_us_p99": f(fast, "tick_us_p99"),
        "tick_source": fast.get("tick_source"), "tick_source_requested": fast.get("tick_source_requested"),
        "sensor_rate_hz": f(fast, "sensor_rate_hz"),
        "lock_offset_ms": f(fast, "lock_offset_ms"), "lock_misses": f(fast, "lock_misses"),
        "ticks": ticks,
        "reading_to_tick_ms_p50": f(fast, "reading_to_tick_ms_p50"),
        "reading_to_tick_ms_p99": f(fast, "reading_to_tick_ms_p99"),
        "arrival_to_tick_ms_p50": f(fast, "arrival_to_tick_ms_p50"),
        "arrival_to_tick_ms_p99": f(fast, "arrival_to_tick_ms_p99"),
        "tick_ms": {ph: {"p50": f(fast, f"tick_ms/{ph}_p50"), "p99": f(fast, f"tick_ms/{ph}_p99")} for ph in phases},
        "realtime_scheduling": fast.get("realtime_scheduling") == "True",
        "rt_priority": f(fast, "rt_priority_active"), "cpu": f(fast, "cpu"),
        "memory_locked": fast.get("memory_locked") == "True",
        "slow_inference_ms_p50": f(slow, "inference_ms_p50"), "slow_inference_ms_p99": f(slow, "inference_ms_p99"),
        "chunks_published": f(slow, "chunks_published"), "chunks_received": f(fast, "chunks_received"),
        "chunk_subscribers": f(slow, "chunk_subscribers"), "chunk_publishers": f(fast, "chunk_publishers"),
        "slow_cycles_skipped": {k.split("/", 1)[1]: f(slow, k) for k in slow if k.startswith("skipped/")},
        "sim_real_time_factor": f(sim, "real_time_factor"),
        "sim_rt_priority": f(sim, "physics_rt_priority"),
        "cpu_cores": cpu,
        "steal_percent": stolen,
    }


def run(args: argparse.Namespace) -> dict:
    try:
        rates = [float(r) for r in str(args.rates).split(",") if r.strip()]
    except ValueError:
        raise ValueError(f"--rates {args.rates}: comma-separated rates in Hz, e.g. 200,1000") from None
    if not rates or any(not (1.0 <= r <= 1000.0) for r in rates):
        raise ValueError(f"--rates {args.rates}: each rate must be in 1..1000 Hz")
    if args.seconds <= 0:
        raise ValueError("--seconds must be > 0")
    from hardware.realtime import host_reference  # noqa: PLC0415
    from slowfast_app import stack  # noqa: PLC0415

    sets = stack.parse_sets(args.set)
    unknown = sorted(set(sets) - {"sim_node", "rdp_slow", "rdp_fast"})
    if unknown:
        raise ValueError(f"--set: node(s) {unknown} are not part of this benchmark (sim_node, rdp_slow, rdp_fast)")
    work = Path(args.work)
    results = []
    for hz in rates:
        camera = hz <= args.camera_above_hz
        # Above the camera rate limit the fast signal is force: F/T sensors sample at kHz,
        # vision-based tactile sensors at 25-60 fps (anchors.md). The sim then publishes
        # the wrench at the loop rate and the policy reads the wrench.
        contact = args.contact if camera else "wrench"
        export = Path(args.policy) if args.policy else build_policy(work, camera, contact)
        fast = {"tick_source": args.tick_source, "rt_priority": int(args.rt_priority), "cpu": int(args.cpu)}
        sim_rt = args.sim_rt_priority if args.sim_rt_priority is not None else max(0, int(args.rt_priority) - 10)
        run_sets = {k: dict(v) for k, v in sets.items()}
        run_sets["sim_node"] = {"rt_priority": int(sim_rt), **run_sets.get("sim_node", {})}
        # the host's speed now, scheduled as the loop will be: the reference to compare runs by
        reference = host_reference(2.0, int(args.rt_priority), int(args.cpu))
        results.append({**run_rate(hz, export, camera, args.seconds, wrench_hz=200.0 if camera else hz, fast=fast,
                                   sets=run_sets), "host_reference": reference})
    return {"runs": results, "sets": args.set}
