"""The policies committed under checkpoints/ (what `make demo` runs) load, match their sim
task, and produce finite chunks and actions from a real sim observation."""
import json
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2] / "checkpoints"
SHIPPED = sorted(p for p in ROOT.glob("*") if (p / "runtime.json").is_file()) if ROOT.is_dir() else []


QUALITY = json.loads((ROOT / "quality.json").read_text())["policies"] if ROOT.is_dir() else {}


def sim_of(name: str) -> tuple[str, str]:
    """(task, embodiment) a shipped policy is for, as checkpoints/quality.json states it."""
    q = QUALITY[name]
    sets = dict(item.split("=", 1) for item in q["sets"])
    return q.get("task", name), sets.get("sim_node.embodiment", "floating")


def test_a_policy_ships_for_every_task():
    from sim import TASKS

    for task in TASKS:
        assert (ROOT / task / "runtime.json").is_file(), f"make demo runs checkpoints/{task}"


@pytest.mark.parametrize("export", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_policy_runs_on_a_sim_observation(export):
    from policy.rdp.runtime import DecoderRuntime, SlowPolicyRuntime
    from sim import SimConfig, SimEnv

    meta = json.loads((export / "runtime.json").read_text())
    assert meta["model_type"] == "rdp_ldp"
    size = sum(f.stat().st_size for f in export.rglob("*") if f.is_file())
    assert size < 12e6, f"{export} is {size / 1e6:.1f} MB: keep shipped policies small"
    task, embodiment = sim_of(export.name)
    env = SimEnv(SimConfig(task=task, embodiment=embodiment, render=True, camera_width=320, camera_height=240))
    env.reset(0)
    assert len(env.arms) == meta["shapes"]["num_arms"]
    slow = SlowPolicyRuntime(export, threads=1, seed=0)
    fast = DecoderRuntime(export)
    st = {a: env.observe(a) for a in env.arms}
    pose = np.concatenate([np.concatenate([st[a].tcp_pos, st[a].tcp_quat]) for a in env.arms]).astype(np.float32)
    wrench = np.concatenate([st[a].wrench for a in env.arms]).astype(np.float32)
    frame = env.render("camera")                      # full size: the runtime resizes it
    images = {c: np.stack([frame] * slow.n_obs) for c in slow.cameras}
    chunk = slow.predict(images, np.stack([pose] * slow.n_obs), np.stack([wrench] * slow.history), seed=0)
    assert chunk.shape == (fast.latent_steps, fast.latent_dim) and np.isfinite(chunk).all()
    state = None
    for k in range(4):
        action, state = fast.step(chunk.astype(np.float32), k, wrench, state)
        assert np.isfinite(action).all()
    env.close()
