"""The policy I/O contract (policy/rdp/contract.py): a training sample and the runtime's
observation built from the same recorded stream are identical.

One stream: the two-arm lift scene's measured states (pose, wrench, tactile field), taken at
the dataset rate. It goes once through the real writer path (sim.datagen's frames ->
DatasetWriter -> parquet) and is read back by the training dataset (LeRobotDataset +
ChunkSamples); and once, stamped, into the runtime's history (ArmHistory, as the evaluator
and rdp_slow fill it) for the slow planner's observation builder and the fast controller's
contact vector. The arrays must be equal, element for element."""
from types import SimpleNamespace

import numpy as np
import pytest

from policy.rdp import contract
from policy.rdp.dataset import ChunkSamples, required_keys
from policy.serving import ArmHistory, ArmSnapshot, FastController, ImageHistory, SlowPlanner
from slowfast_data.features import TACTILE_KEY, WRENCH_KEY
from slowfast_data.geometry import pose_to_pos_rot6d
from slowfast_data.reader import LeRobotDataset

FPS = 25.0
FRAMES = 24


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """(dataset folder, the stream: [(stamp, {arm: ArmState})] one per dataset frame)."""
    from sim.datagen import generate_dataset
    from sim.expert import make_expert

    stream = []

    def runner(env, on_step):
        k = int(round(1.0 / (FPS * env.dt)))
        expert = make_expert("lift", env.task_spec())
        for i in range(FRAMES):
            states = {a: env.observe(a) for a in env.arms}
            cmd = expert.act(env.time, states)
            for a, (pos, quat) in cmd.items():
                env.set_target(a, pos, quat)
            on_step(env.time, states, cmd)
            stream.append((i / FPS, states))
            env.step(k)
        return {"success": False}

    root = generate_dataset(tmp_path_factory.mktemp("contract") / "ds", task="lift", episodes=1, fps=FPS,
                            control_hz=FPS, camera=False, episode_runner=runner, label="contract")
    return root, stream


@pytest.mark.parametrize("contact,n_obs,stride,history", [("wrench", 3, 2, 4), ("tactile", 2, 3, 5)])
def test_training_sample_equals_runtime_observation(recorded, tiny_config, contact, n_obs, stride, history):
    root, stream = recorded
    cfg = tiny_config("rdp_ldp", data={"contact": contact, "n_obs_steps": n_obs, "obs_stride": stride,
                                       "contact_history": history, "tactile_pca_dim": 3})
    ds = LeRobotDataset(root, require=required_keys(cfg))
    assert ds.num_arms == 2 and len(ds) == FRAMES
    norm = ChunkSamples.fit(ds, cfg, ds.ep_ids)
    samples = ChunkSamples(ds, cfg, norm, images=False)
    arms = ds.arms

    history_buf = ArmHistory(arms)
    for stamp, states in stream:
        for a in arms:
            history_buf.add_state(a, stamp, states[a])
    meta = {"model_type": "rdp_ldp", "fps": ds.fps, "horizon": cfg.data.horizon, "compression": 1,
            "contact": contact, **contract.window_meta(cfg.data)}
    planner = SlowPlanner(SimpleNamespace(meta=meta, cameras=[], n_obs=n_obs, history=history), rate_hz=10.0)
    fast = FastController(None, {a: None for a in arms}, contract.contact_kind(meta),
                          int(cfg.shapes["contact_raw_dim"]))

    window = (n_obs - 1) * stride
    compared = 0
    for i, (stamp, states) in enumerate(stream):
        obs, why = planner.observation(stamp, history_buf, ImageHistory([]))
        if i < max(window, history - 1):
            # the runtime waits for a whole window; training repeats the episode's first frame
            assert obs is None and why == "history_incomplete", i
            continue
        assert why is None, (i, why)
        frames, tcp, contact_hist = obs
        raw = samples.raw_observation(i)
        assert frames is None
        np.testing.assert_array_equal(tcp, raw["tcp_pose"])
        np.testing.assert_array_equal(contact_hist, raw["contact"])
        assert tcp.dtype == raw["tcp_pose"].dtype == np.float32
        # the runtime looks its images up at the stamps of the frames training takes them from
        np.testing.assert_array_equal(np.round(np.array(planner.obs_times(stamp)) * FPS), raw["image_frames"])
        # ... and the normalised sample the model trains on is the runtime's raw observation normalised
        sample = samples[i]
        np.testing.assert_array_equal(sample["obs_proprio"], norm.normalize("proprio", pose_to_pos_rot6d(tcp)))
        # the fast loop's per-tick contact vector at frame i is the dataset's contact feature of frame i
        snap = {a: ArmSnapshot(pose_stamp=stamp, tcp_pos=states[a].tcp_pos, tcp_quat=states[a].tcp_quat,
                               wrench_stamp=stamp, wrench=states[a].wrench, tactile_stamp=stamp,
                               tactile=states[a].tactile) for a in arms}
        vec, vec_stamp = fast.contact(snap)
        np.testing.assert_array_equal(vec, ds.data[contract.CONTACT_FEATURES[contact]][i])
        assert vec_stamp == stamp
        compared += 1
    assert compared >= FRAMES - 8
    # the layout: arm after arm, each arm's reading flattened
    width = ds.data[WRENCH_KEY if contact == "wrench" else TACTILE_KEY].shape[1]
    assert width == contract.contact_width(contact, 2, ds.tactile_markers) == int(cfg.shapes["contact_raw_dim"])
    first = stream[-1][1][arms[0]]
    per = first.wrench if contact == "wrench" else first.tactile
    np.testing.assert_array_equal(ds.data[contract.CONTACT_FEATURES[contact]][-1][:per.size],
                                  np.asarray(per, np.float32).reshape(-1))


def test_window_times_are_the_window_offsets():
    w = contract.ObservationWindow(n_obs=3, stride=4, history=2, fps=50.0)
    assert w.obs_offsets.tolist() == [-8, -4, 0] and w.contact_offsets.tolist() == [-1, 0]
    assert w.obs_times(1.0) == [1.0 - 8 / 50.0, 1.0 - 4 / 50.0, 1.0]
    assert w.contact_times(1.0)[-1] == 1.0
    assert contract.ObservationWindow.from_config(SimpleNamespace(n_obs_steps=3, obs_stride=4, contact_history=2),
                                                  50.0) == w
    with pytest.raises(ValueError, match="contact"):
        contract.contact_width("force", 1, 0)
