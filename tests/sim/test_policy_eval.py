"""The synchronous evaluator and the oracle replay (sim/policy_eval.py, policy/rdp/replay.py):
demonstrations generated here, a tiny DP and tokenizer trained on them, served in process."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

pytestmark = pytest.mark.slow

SEEDS = [300, 301]


@pytest.fixture(scope="module")
def served(tmp_path_factory, camera_free_config):
    import torch

    from policy.rdp.export import export_checkpoint
    from policy.rdp.train import train
    from sim.datagen import generate_dataset

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("policy_eval")
    demo = {}
    ds = generate_dataset(root / "ds", task="wipe", episodes=len(SEEDS), seed=SEEDS[0], fps=25.0, camera=False,
                          episode_seconds=4.0, progress=lambda ep, m: demo.__setitem__(SEEDS[ep], m))

    cfg = camera_free_config
    train("tokenizer", ds, root / "tok", cfg("rdp_tokenizer", 100), progress=False)
    train("dp", ds, root / "dp", cfg("dp", 1), progress=False)
    export_checkpoint(root / "tok", root / "onnx_tok")
    export_checkpoint(root / "dp", root / "onnx_dp")
    return root, ds, demo


def _timing(**kw):
    from sim.policy_eval import ServingTiming

    return ServingTiming(**{"control_hz": 200.0, "rate_hz": 25 / 16, "sensor_hz": 200.0, "camera_hz": 30.0,
                            "camera_width": 64, "camera_height": 48, "blend_s": 0.1, "image_tolerance": 0.05,
                            "chunk_pose_tolerance": 0.01, "handover": "blend", "inpaint_soft_s": 0.16,
                            "embodiment": "floating", "splice": False, **kw})


def _safety():
    from policy.safety import SafetyConfig

    return SafetyConfig(command_timeout=0.05)   # rdp_fast's (its parameter default)


def test_generated_dataset_records_each_episodes_seed(served):
    from policy.rdp.replay import episode_seeds

    _, ds, _ = served
    assert episode_seeds(ds) == {SEEDS[0]: 0, SEEDS[1]: 1}


@pytest.mark.parametrize("export,handover", [("onnx_dp", "blend"), ("onnx_tok", "blend"), ("onnx_dp", "inpaint")])
def test_oracle_replay_reproduces_its_demonstrations(served, export, handover):
    """The demonstrations' own chunks through the runtime (raw for DP, through the tokenizer's
    encoder and the exported decoder for RDP) wipe what the demonstrator wiped. The raw replay
    must match closely; the latent one carries the reconstruction error of a tokenizer trained
    for a minute on two episodes (5-8 mm), and its decoder reacts to the live wrench. With
    inpainted handovers the replay serves the same chunks (there is nothing to inpaint)."""
    from policy.rdp.replay import ReplayPolicy
    from sim.policy_eval import evaluate

    root, ds, demo = served
    eps = evaluate(root / export, "wipe", SEEDS, _safety(), _timing(handover=handover), episode_seconds=4.0,
                   slow_factory=lambda: ReplayPolicy(ds, root / export))
    tol = 0.08 if export == "onnx_dp" else 0.2
    for m in eps:
        ref = demo[m["seed"]]
        assert m["chunks"] >= 5 and not m["chunks_rejected"], m
        assert abs(m["coverage"] - ref["coverage"]) < tol, (export, m["coverage"], ref["coverage"])
        if export == "onnx_dp":   # 1 mm of depth is 1 N: the tiny tokenizer's error shows in the force band
            assert abs(m["time_in_band"] - ref["time_in_band"]) < tol, (m["time_in_band"], ref["time_in_band"])


def test_evaluation_is_deterministic_per_seed_whatever_ran_before(served):
    from sim.policy_eval import evaluate

    root, _, _ = served
    a = evaluate(root / "onnx_dp", "wipe", [SEEDS[1]], _safety(), _timing(), episode_seconds=2.0)
    b = evaluate(root / "onnx_dp", "wipe", [SEEDS[0], SEEDS[1]], _safety(), _timing(), episode_seconds=2.0)
    assert a[0]["coverage"] == b[1]["coverage"] and a[0]["peak_force"] == b[1]["peak_force"]
    assert a[0]["chunks"] == b[1]["chunks"] > 0
    assert a[0]["safety"] == b[1]["safety"]          # per-episode interventions, not a running total


def test_the_episodes_run_on_the_embodiment_the_sim_node_is_set_to(served):
    """`--set sim_node.embodiment=arm` puts the served policy on the Panda arm (it was ignored:
    the episodes ran on the floating tool whatever the setting said)."""
    from sim.policy_eval import evaluate

    root, _, _ = served
    (m,) = evaluate(root / "onnx_dp", "wipe", SEEDS[:1], _safety(), _timing(embodiment="arm"), episode_seconds=1.0)
    assert m["embodiment"] == "arm" and m["chunks"] > 0


def test_a_seed_without_demonstration_is_refused(served):
    from policy.rdp.replay import ReplayPolicy

    root, ds, _ = served
    oracle = ReplayPolicy(ds, root / "onnx_dp")
    with pytest.raises(ValueError, match="no demonstration of seed 5"):
        oracle.begin_episode(5)


def test_evaluate_cli_writes_json_and_refuses_bad_input(served, tmp_path):
    root, ds, _ = served

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "slowfast_app.cli", "evaluate", *args], capture_output=True,
                              text=True, timeout=300, env=dict(os.environ))

    out = tmp_path / "eval.json"
    r = cli("--task", "wipe", "--policy", str(root / "onnx_dp"), "--oracle", str(ds), "--seeds",
            ",".join(map(str, SEEDS)), "--episode-seconds", "2", "--json", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    data = json.loads(out.read_text())
    assert [e["seed"] for e in data["episodes"]] == SEEDS and data["summary"]["episodes"] == 2
    assert data["timing"]["control_hz"] == 200.0            # from rdp_fast.yaml
    for args, msg in ((["--policy", str(tmp_path)], "not an export folder"),
                      (["--policy", str(root / "onnx_dp"), "--set", "rdp_fast.max_sped=1"], "max_sped"),
                      (["--policy", str(root / "onnx_dp"), "--task", "lift"], "arms"),
                      (["--policy", str(root / "onnx_dp"), "--workers", "0"], "--workers: 0 outside 1.."),
                      (["--policy", str(root / "onnx_dp"), "--oracle-anchor", "demonstration"],
                       "--oracle-anchor: only with --oracle"),
                      (["--policy", str(root / "onnx_dp"), "--oracle", str(ds), "--seed", "5", "--episodes", "1"],
                       "no demonstration of seed 5")):
        r = cli(*args)
        assert r.returncode == 2 and "Traceback" not in r.stderr and msg in r.stderr, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_the_world_anchor_serves_the_demonstrators_targets_from_where_the_arm_is(served):
    """An arm 3 cm behind the demonstration: the demonstration anchor serves the recorded moves
    from where the arm is (the lag stays), the world anchor the demonstrator's own targets."""
    from policy.rdp.replay import ReplayPolicy
    from slowfast_data.features import POSE_KEY
    from slowfast_data.geometry import relative_to_absolute

    root, ds, _ = served
    demo, world = ReplayPolicy(ds, root / "onnx_dp", anchor="demonstration"), ReplayPolicy(ds, root / "onnx_dp")
    for o in (demo, world):
        o.begin_episode(SEEDS[0])
    frame = 20
    pose = demo.ds.data[POSE_KEY][demo.ds.ep_start[demo.episode] + frame].astype(np.float64)
    lagging = pose.copy()
    lagging[0] -= 0.03
    recorded = demo.chunk_at(frame)
    np.testing.assert_allclose(demo.chunk_at(frame, lagging), recorded)
    targets = relative_to_absolute(recorded, pose)
    np.testing.assert_allclose(relative_to_absolute(world.chunk_at(frame, lagging), lagging), targets, atol=1e-5)
    np.testing.assert_allclose(world.chunk_at(frame, pose), recorded, atol=1e-5)
    with pytest.raises(ValueError, match="anchor: 'tool' is not one of world, demonstration"):
        ReplayPolicy(ds, root / "onnx_dp", anchor="tool")


def test_a_lunging_policy_is_bounded_by_the_safety_filter(served, monkeypatch):
    """Chunks that put the target 20 cm further on each time (each from where the arm is: the
    demonstration anchor): the evaluator's filter (the node's) limits the speed, clamps to the
    workspace and counts both."""
    from policy.rdp.replay import ReplayPolicy
    from sim.policy_eval import evaluate

    root, ds, _ = served
    chunk_at = ReplayPolicy.chunk_at

    def lunge(self, frame, measured_pose=None):
        rel = chunk_at(self, frame, measured_pose).copy()
        rel[:, 0] += 0.2
        return rel

    monkeypatch.setattr(ReplayPolicy, "chunk_at", lunge)
    m = evaluate(root / "onnx_dp", "wipe", SEEDS[:1], _safety(), _timing(), episode_seconds=2.0,
                 slow_factory=lambda: ReplayPolicy(ds, root / "onnx_dp", anchor="demonstration"))[0]
    counts = m["safety"]["arm"]
    assert counts["interventions/speed"] > 0 and counts["interventions/workspace"] > 0, counts
