"""The `slowfast` command: a user's mistake is one clear line and a non-zero exit."""
import os
import subprocess
import sys

import pytest


def slowfast(*args, env=None, timeout=120):
    return subprocess.run([sys.executable, "-m", "slowfast_app.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def assert_one_line_error(r, *fragments):
    assert r.returncode != 0
    assert "Traceback" not in r.stderr, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    for f in fragments:
        assert f in lines[0], lines[0]


def test_help_lists_the_subcommands():
    r = slowfast("--help")
    assert r.returncode == 0
    for name in ("doctor", "sim", "up", "bench"):
        assert name in r.stdout


@pytest.mark.parametrize("args,fragments", [
    (["--task", "juggle"], ["unknown task 'juggle'", "wipe", "lift"]),
    (["--episodes", "-1"], ["--episodes", "at least 1"]),
    (["--controller", "magic"], ["unknown controller"]),
    (["--camera-hz", "-5"], ["--camera-hz"]),
    (["--interface", "ethercat"], ["unknown interface 'ethercat'", "ros2_control"]),
    (["--interface", "ros2_control"], ["--interface ros2_control", "--embodiment arm"]),
    (["--interface", "ros2_control", "--embodiment", "arm", "--task", "lift"], ["one arm", "left, right"]),
])
def test_sim_bad_arguments(tmp_path, args, fragments):
    r = slowfast("sim", "--out", str(tmp_path / "o"), *args)
    assert_one_line_error(r, *fragments)


def test_sim_unwritable_out(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = slowfast("sim", "--episodes", "1", "--out", str(blocker / "sub"))
    assert_one_line_error(r, "--out", "not writable")


def test_sim_without_a_working_gl_backend(tmp_path):
    r = slowfast("sim", "--episodes", "1", "--out", str(tmp_path / "o"),
                 env={"SLOWFAST_GL_BACKENDS": "no-such-backend", "MUJOCO_GL": "no-such-backend"})
    assert_one_line_error(r, "no working MuJoCo GL backend", "--camera-hz 0")


def test_up_unknown_profile_and_argument():
    assert_one_line_error(slowfast("up", "nope"), "unknown profile 'nope'")
    assert_one_line_error(slowfast("up", "sim-expert", "colour:=red"), "no argument(s) colour")


@pytest.mark.slow
def test_doctor_reports_each_check():
    r = slowfast("doctor", timeout=180)
    for name in ("rmw", "dds", "mujoco-gl", "onnxruntime", "realsense", "cuda"):
        assert name in r.stdout
    assert r.returncode == 0, r.stdout  # rmw, dds, GL and onnxruntime work on a set-up machine


@pytest.mark.parametrize("args,fragments", [
    (["bench", "handover", "--policy", "checkpoints/wipe", "--handovers", "splice"], ["--handovers", "blend, inpaint"]),
    (["bench", "handover", "--policy", "checkpoints/wipe", "--delays", "0,x"], ["--delays", "numbers"]),
    (["bench", "handover", "--policy", "no/such/export"], ["--policy", "no runtime.json"]),
    (["evaluate", "--policy", "checkpoints/wipe", "--set", "rdp_slow.handover=splice"], ["handover", "'splice'"]),
    (["bench", "sim", "--domain", "lab"], ["--domain", "'private' or a domain id"]),
    (["bench", "sim", "--domain", "300"], ["--domain", "outside 0..232"]),
])
def test_handover_bad_arguments(args, fragments):
    assert_one_line_error(slowfast(*args), *fragments)


@pytest.mark.slow
def test_an_export_without_the_action_encoder_still_inpaints(tmp_path):
    """An export from before action_encoder.onnx inpaints from its previous latent (shifted)."""
    import json
    import shutil

    old = tmp_path / "old"
    shutil.copytree("checkpoints/wipe", old)
    meta = json.loads((old / "runtime.json").read_text())
    meta["files"].pop("action_encoder", None)
    (old / "runtime.json").write_text(json.dumps(meta))
    (old / "action_encoder.onnx").unlink(missing_ok=True)
    r = slowfast("bench", "handover", "--policy", str(old), "--handovers", "inpaint", "--delays", "0.1",
                 "--episodes", "1", "--json", "--set", "rdp_slow.rate_hz=8", timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    cell = json.loads(r.stdout.strip().splitlines()[-1])["cells"][0]
    assert cell["handover"] == "inpaint" and cell["handovers"] > 10


def test_params_lists_every_declared_parameter_of_each_node():
    from slowfast_app import stack
    from slowfast_app.cli import params

    nodes = params._nodes()  # noqa: SLF001
    assert {"rdp_fast", "rdp_slow", "sim_node", "recorder_node"} <= set(nodes)
    for name, cls in nodes.items():
        rows = params.describe(name, cls)
        declared = stack.declared_parameters(f"slowfast_ros.nodes.{name}") - stack.ROS_NODE_PARAMETERS
        assert sorted(r["name"] for r in rows) == sorted(declared), name
        assert all(r["description"] for r in rows), name      # every parameter says what it is
    rows = {r["name"]: r for r in params.describe("rdp_fast", nodes["rdp_fast"])}
    assert rows["control_hz"]["default"] == 200.0 and rows["control_hz"]["type"] == "float"
    # the filter's limits, from policy.safety.SafetyConfig, namespaced, with their ranges
    assert rows["safety.max_speed"]["range"] == [1e-4, 3.0] and rows["safety.command_timeout"]["default"] == 0.05


def test_params_of_an_unknown_node_is_one_line():
    assert_one_line_error(slowfast("params", "nope"), "no node 'nope'", "rdp_fast")
