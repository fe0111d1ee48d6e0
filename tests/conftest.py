"""Test-wide settings.

DDS isolation: every pytest process takes a ROS 2 domain of its own (a lock file per domain
id, held for the whole run) and limits discovery to localhost, so two test runs on one
machine never hear each other and nothing leaves the machine. This happens at import time,
before any test imports rclpy.
"""
from __future__ import annotations

import os
import socket
import sys

import pytest

from slowfast_app.stack import claim_domain

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.pop("ROS_LOCALHOST_ONLY", None)
os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")

os.environ["ROS_DOMAIN_ID"] = str(claim_domain())


def pytest_collection_modifyitems(config, items):
    """A test that needs a trained model (a tiny checkpoint, an overfit tokenizer, a learnt
    BPE) is slow: it pays for the training when it is the first to ask. `make test-quick`
    leaves the slow and the DDS tests out."""
    for item in items:
        if {"trained", "overfit", "corpus_tok"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _restore_switch_interval():
    """A control loop started in this process lowers the GIL switch interval process-wide
    (hardware.realtime.bound_gil_wait), right for a node, wrong for the rest of a test run:
    every later thread would then pay a GIL hand-over each 0.1 ms."""
    before = sys.getswitchinterval()
    yield
    sys.setswitchinterval(before)


@pytest.fixture
def free_port():
    """A callable returning a TCP port on 127.0.0.1 that is free right now."""
    def get() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]
    return get


# ---------------------------------------------------------------- tiny RDP models
# Small synthetic datasets and tiny trained checkpoints, built once per run (the policy tests
# and the CLI's bad-file tests use them).

TINY = {  # tiny sizes so the whole folder runs in well under a minute on 2 cores
    "data": {"horizon": 16, "image_size": [32, 48]},
    "unet": {"down_dims": [16, 32], "step_embed_dim": 16},
    "obs": {"image_width": 8, "image_feature_dim": 16},
    "train": {"epochs": 2, "batch_size": 32, "lr": 2e-3, "warmup_steps": 0},
}


def _tiny_config(model_type: str, **over):
    from policy.rdp.config import PolicyConfig, preset

    d = preset("sim", model_type).to_dict()
    for k, v in TINY.items():
        d[k].update(v)
    for k, v in over.items():
        d[k].update(v)
    return PolicyConfig.from_dict(d)


def _camera_free_config(model_type: str, epochs: int, horizon: int = 32, val_fraction: float = 0.0):
    """Small models without cameras, for policies trained on a few sim demonstrations."""
    from policy.rdp.config import PolicyConfig, preset

    d = preset("sim", model_type).to_dict()
    d["data"].update(horizon=horizon, cameras=[], val_fraction=val_fraction)
    d["unet"].update(down_dims=[16, 32], step_embed_dim=16)
    d["train"].update(epochs=epochs, batch_size=32, lr=3e-3, warmup_steps=0)
    return PolicyConfig.from_dict(d)


@pytest.fixture(scope="session")
def camera_free_config():
    """camera_free_config(model_type, epochs, horizon=32, val_fraction=0.0) -> PolicyConfig."""
    return _camera_free_config


@pytest.fixture(scope="session")
def tiny_config():
    """tiny_config(model_type, **section_overrides) -> PolicyConfig with test sizes."""
    return _tiny_config


@pytest.fixture(scope="session")
def dataset(tmp_path_factory):
    from policy.rdp.synthetic import make_dataset

    return make_dataset(tmp_path_factory.mktemp("ds") / "synthetic", episodes=5, length=48, seed=0)


@pytest.fixture(scope="session")
def trained(tmp_path_factory, dataset):
    """Tokenizer, LDP and DP checkpoints trained for two short epochs, plus their exports."""
    import torch

    from policy.rdp.export import export_checkpoint
    from policy.rdp.train import train

    torch.set_num_threads(1)

    root = tmp_path_factory.mktemp("ckpt")
    train("tokenizer", dataset, root / "tok", _tiny_config("rdp_tokenizer"), progress=False)
    train("ldp", dataset, root / "ldp", _tiny_config("rdp_ldp"), tokenizer=root / "tok", progress=False)
    train("dp", dataset, root / "dp", _tiny_config("dp", obs={"use_contact": True}), progress=False)
    for name in ("tok", "ldp", "dp"):
        export_checkpoint(root / name, root / f"onnx_{name}")
    return root


@pytest.hookimpl(trylast=True)
def pytest_runtest_logreport(report):
    """A DDS test that failed once and passed on its rerun (--reruns) shows only "RERUN" in
    the summary; its first failure is printed here, so that it can be fixed in the test
    (Makefile: a rerun seen is not left to the rerun)."""
    if report.outcome == "rerun" and report.longrepr is not None:
        sys.stderr.write(f"\n---- first failure of {report.nodeid} (rerun) ----\n{report.longreprtext}\n"
                         f"{report.capstderr[-4000:]}\n---- end ----\n")
