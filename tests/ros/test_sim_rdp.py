"""The whole stack in sim over DDS: expert demonstrations -> tiny models trained here ->
ONNX -> sim node + rdp_slow + rdp_fast as separate processes -> metrics, video, plot."""
import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.dds


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    import torch

    from policy.rdp.config import PolicyConfig, preset
    from policy.rdp.export import export_checkpoint
    from policy.rdp.train import train
    from sim.datagen import generate_dataset

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("simrdp")
    ds = generate_dataset(root / "ds", task="wipe", episodes=2, seed=100, image_size=(48, 64), episode_seconds=4.0)

    def cfg(model_type, epochs, **obs):
        d = preset("sim", model_type).to_dict()
        d["data"].update(horizon=32, image_size=[48, 64])
        d["unet"].update(down_dims=[16, 32], step_embed_dim=16)
        d["obs"].update(image_width=8, image_feature_dim=16, **obs)
        d["train"].update(epochs=epochs, batch_size=64, lr=3e-3, warmup_steps=0)
        return PolicyConfig.from_dict(d)

    train("tokenizer", ds, root / "tok", cfg("rdp_tokenizer", 5), progress=False)
    train("ldp", ds, root / "ldp", cfg("rdp_ldp", 2), tokenizer=root / "tok", progress=False)
    train("dp", ds, root / "dp", cfg("dp", 2), progress=False)
    export_checkpoint(root / "ldp", root / "onnx_ldp")
    return root


def slowfast(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "slowfast_app.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ))


@pytest.mark.parametrize("controller,policy", [("rdp", "onnx_ldp"), ("dp", "dp")])
def test_policy_runs_an_episode_in_sim_over_dds(exports, tmp_path, controller, policy):
    out = tmp_path / controller
    r = slowfast("sim", "--task", "wipe", "--controller", controller, "--policy", str(exports / policy),
                 "--episodes", "1", "--seed", "7", "--episode-seconds", "3", "--out", str(out))
    assert r.returncode == 0, r.stdout + r.stderr + (out / "logs" / "rdp_fast.log").read_text()
    m = json.loads((out / "metrics.json").read_text())
    assert m["episodes"][0]["seed"] == 7 and m["summary"]["episodes"] == 1
    assert (out / "camera_000.mp4").is_file() and (out / "force_000.png").is_file()
    fast_log = (out / "logs" / "rdp_fast.log").read_text()
    assert "executor at 200 Hz" in fast_log
    if policy == "dp":
        assert (out / "export" / "runtime.json").is_file()   # a checkpoint is exported on the way


def test_policy_that_does_not_match_the_sim_is_refused(exports, tmp_path):
    r = slowfast("sim", "--task", "lift", "--controller", "rdp", "--policy", str(exports / "onnx_ldp"),
                 "--episodes", "1", "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "drives 1 arm(s); task lift has 2" in r.stderr
    r = slowfast("sim", "--task", "wipe", "--controller", "dp", "--policy", str(exports / "onnx_ldp"),
                 "--episodes", "1", "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "needs a 'dp' export" in r.stderr


def test_a_policy_that_outputs_nan_never_moves_the_arm_and_the_run_fails(exports, tmp_path):
    """NaN weights in a valid ONNX file: every chunk is dropped by rdp_slow (logged as an
    error), the arm holds, and `slowfast sim` says so and exits non-zero."""
    import shutil

    import numpy as np
    import onnx
    from onnx import numpy_helper

    bad = tmp_path / "nan_export"
    shutil.copytree(exports / "onnx_ldp", bad)
    model = onnx.load(str(bad / "denoiser.onnx"))
    for init in model.graph.initializer:
        arr = numpy_helper.to_array(init)
        if arr.dtype.kind == "f" and arr.size > 1:
            init.CopyFrom(numpy_helper.from_array(np.full_like(arr, np.nan), init.name))
    onnx.save(model, str(bad / "denoiser.onnx"))
    out = tmp_path / "nan"
    r = slowfast("sim", "--task", "wipe", "--controller", "rdp", "--policy", str(bad), "--episodes", "1",
                 "--episode-seconds", "3", "--out", str(out))
    assert r.returncode == 1, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    assert "no policy chunk reached the robot" in r.stderr
    assert json.loads((out / "metrics.json").read_text())["episodes"][0]["policy_chunks"] == 0
    assert "non-finite chunk" in (out / "logs" / "rdp_slow.log").read_text()
