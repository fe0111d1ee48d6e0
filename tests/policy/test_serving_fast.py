"""rdp_fast's logic without ROS (policy.serving): its export check, its settings, the clock-jump
guard, the chunk inbox and the diagnostics values. rclpy is never imported."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from hardware.realtime import PhaseTimes
from policy.safety import SafetyConfig, SafetyFilter
from policy.serving import (ChunkInbox, FastController, FastLoopConfig, MarkerFiller, fast_diagnostics,
                            load_fast_export)

Q = np.array([0.0, 0.0, 0.0, 1.0])


def test_serving_imports_no_ros():
    code = "import sys, policy.serving; print(sorted(m for m in sys.modules if m.split('.')[0] in " \
           "('rclpy', 'slowfast_ros', 'std_msgs', 'geometry_msgs')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


class _Executor:
    """Stands in for policy.reactive.ReactiveExecutor where only its bookkeeping is read."""

    def __init__(self):
        self.resets = 0
        self.last_step_index = 7
        self.rejected = {"stale": 2, "no_pose_at_stamp": 1}

    def reset(self):
        self.resets += 1


def _write_meta(tmp_path, **meta):
    base = {"model_type": "dp", "horizon": 16, "fps": 10.0, "shapes": {"num_arms": 1, "contact_raw_dim": 6},
            "files": {}}
    base.update(meta)
    (tmp_path / "runtime.json").write_text(json.dumps(base))
    return str(tmp_path)


# ------------------------------------------------------------------ the export


def test_load_fast_export_reads_an_open_loop_export(tmp_path):
    ex = load_fast_export(_write_meta(tmp_path), ["arm"])
    assert (ex.model_type, ex.contact_kind, ex.decoder, ex.fps, ex.horizon, ex.contact_dim) == \
        ("dp", "wrench", None, 10.0, 16, 6)
    ex = load_fast_export(_write_meta(tmp_path, contact="tactile"), ["arm"])
    assert ex.contact_kind == "tactile"


@pytest.mark.parametrize(("meta", "arms", "message"), [
    (None, ["arm"], "has no runtime.json"),
    ({}, ["left", "right"], "the model drives 1 arm(s), got 2"),
    ({"model_type": "rdp_ldp"}, ["arm"], "a 'rdp_ldp' export has no decoder_step.onnx"),
    ({"fps": 0}, ["arm"], "gives no dataset fps"),
    ({"fps": None}, ["arm"], "gives no dataset fps"),
])
def test_load_fast_export_says_what_is_wrong(tmp_path, meta, arms, message):
    folder = str(tmp_path) if meta is None else _write_meta(tmp_path, **meta)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_fast_export(folder, arms)


# ------------------------------------------------------------------ settings


def test_fast_loop_config_validates():
    assert FastLoopConfig(export_dir="x").tick_source == "auto"
    for kw, message in [({}, "export_dir: required"), ({"tick_source": "tock"}, "tick_source"),
                        ({"rt_priority": 99}, "rt_priority"), ({"cpu": -2}, "cpu")]:
        with pytest.raises(ValueError, match=message):
            FastLoopConfig(**{"export_dir": "x", **kw} if kw else {})


# ------------------------------------------------------------------ the clock-jump guard


def test_clock_jump_drops_every_chunk_and_counts():
    ex = _Executor()
    c = FastController(ex, {"arm": SafetyFilter(SafetyConfig())}, "wrench", 6)
    assert not c.clock_jumped(10.0)                  # the first tick: nothing to compare with
    assert not c.clock_jumped(10.005)
    assert not c.clock_jumped(10.505)                # 0.5 s: a slow tick, not a jump
    assert (ex.resets, c.clock_jumps) == (0, 0)
    assert c.clock_jumped(10.0)                      # backwards
    assert c.clock_jumped(11.0)                      # a leap (> 0.5 s)
    assert not c.clock_jumped(11.001)                # from the new time on
    assert (ex.resets, c.clock_jumps) == (2, 2)


# ------------------------------------------------------------------ the inbox


def test_inbox_keeps_the_newest_chunk_and_counts():
    box = ChunkInbox()
    assert (box.chunk, box.estop, box.received, box.malformed) == (None, None, 0, 0)
    box.put((1.0, "latent", "a"))
    box.put((2.0, "latent", "b"))
    box.set_estop(True)
    assert box.chunk == (2.0, "latent", "b") and box.received == 2 and box.estop is True
    box.set_estop(False)
    assert box.estop is False


# ------------------------------------------------------------------ diagnostics

PHASES = ("executor", "decode", "safety", "publish", "contact_to_command", "arrival_to_tick")


def _report(times):
    """What TickLoop.report() gives for these phases (only the keys fast_diagnostics rewrites
    and one it keeps)."""
    out = {"loop_rate_hz": 200.0}
    for name in PHASES:
        out[f"tick_ms/{name}_p50"], out[f"tick_ms/{name}_p99"] = times.percentiles(name, scale=1e3)
    return out


def test_fast_diagnostics_values_and_level():
    times = PhaseTimes(PHASES)
    for i in range(100):
        times.record(times.index["contact_to_command"], 0.002)
        times.record(times.index["decode"], 50e-6)
        times.record(times.index["arrival_to_tick"], 0.0001 * (i + 1))
    sf = SafetyFilter(SafetyConfig())
    sf.reset(np.array([0.0, 0.0, 0.3]), Q)
    c = FastController(_Executor(), {"arm": sf}, "tactile", 6)
    c.clock_jumped(1.0)
    c.clock_jumped(0.0)
    c.markers["arm"] = MarkerFiller()
    c.markers["arm"].counts["filled_last"] = 3
    box = ChunkInbox()
    box.put((1.0, "latent", None))
    box.malformed = 4
    values, level = fast_diagnostics(_report(times), times, c, box, sensor_rejected=5)
    assert level == "ok"
    assert values["loop_rate_hz"] == 200.0
    assert not any(k.startswith("tick_ms/contact_to_command") or k.startswith("tick_ms/arrival") for k in values)
    assert values["contact_to_command_ms_p50"] == pytest.approx(2.0, abs=0.002)   # 2 us bins
    assert values["tick_us_p99"] == pytest.approx(50.0, abs=2.0)
    assert values["arrival_to_tick_ms_p99"] == pytest.approx(9.9, abs=0.002)   # the 99th of 0.1 .. 10 ms
    assert values["tick_ms/decode_p50"] == pytest.approx(0.05, abs=0.002)     # the loop's own keys stay
    assert (values["step_index"], values["chunks_received"], values["chunks_malformed"],
            values["clock_jumps"], values["sensor_messages_rejected"]) == (7, 1, 4, 1, 5)
    assert values["chunks_rejected/stale"] == 2 and values["chunks_rejected/no_pose_at_stamp"] == 1
    assert values["tactile_markers/arm/filled_last"] == 3
    assert values["arm/estop"] is False and "arm/interventions/no_command" in values

    # an arm holding (no command came): warn; the loop failed: error, with why
    sf.filter(0.0, None, None, None, np.array([0.0, 0.0, 0.3]), Q)
    assert sf.holding
    assert fast_diagnostics(_report(times), times, c, box)[1] == "warn"
    values, level = fast_diagnostics(_report(times), times, c, box, failure=RuntimeError("boom"))
    assert level == "error" and values["failure"] == "RuntimeError('boom')"


def test_fast_diagnostics_reports_markers_only_for_tactile():
    times = PhaseTimes(PHASES)
    c = FastController(_Executor(), {"arm": SafetyFilter(SafetyConfig())}, "wrench", 6)
    values, _ = fast_diagnostics(_report(times), times, c, ChunkInbox())
    assert not any(k.startswith("tactile_markers/") for k in values)
    assert np.isnan(values["contact_to_command_ms_p50"])
