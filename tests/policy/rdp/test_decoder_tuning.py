"""Nominal actions of generated demonstrations and the decoder tuning that learns from them."""
import json

import numpy as np
import pytest

from slowfast_data.nominal import chunk_source, read_nominal, write_nominal

pytestmark = pytest.mark.slow   # generates sim demonstrations and trains


def test_chunk_source_picks_the_perturbation_the_chunk_start_cannot_see():
    times = np.array([1.0, 3.0])
    actions = np.arange(2 * 100 * 7, dtype=np.float32).reshape(2, 100, 7)
    fps, h = 25.0, 16
    assert np.array_equal(chunk_source(times, actions, 10, h, fps), actions[0])       # frame 25 inside 10..25
    assert chunk_source(times, actions, 0, h, fps) is None               # frame 25 after the chunk
    assert chunk_source(times, actions, 25, h, fps) is None              # seen at the chunk start
    assert np.array_equal(chunk_source(times, actions, 70, h, fps), actions[1])
    assert chunk_source(times, actions, 80, h, fps) is None


class _Admittance:
    """A stand-in decoder whose targets move ``gain`` m per N of measured force (per axis)."""

    def __init__(self, gain):
        self.gain, self.training = gain, False

    def encode(self, chunks):
        return chunks[:, :1, :1], None

    def decode(self, latent, contact):
        import torch

        out = torch.zeros(contact.shape[0], contact.shape[1], 9)
        out[..., :3] = self.gain * contact[..., :3]
        return out

    def eval(self):
        return self

    def train(self, mode=True):
        self.training = mode


class _Identity:
    def mean_std(self, name):
        return (np.zeros(6 if name == "contact" else 9), np.ones(6 if name == "contact" else 9))


@pytest.mark.parametrize("gain,expected", [(1e-3, 1.0), (-2e-3, -2.0), (0.0, 0.0)])
def test_force_compliance_measures_the_decoders_answer_to_a_harder_push(gain, expected):
    import torch

    from policy.rdp.decoder_tuning import force_compliance

    contact = torch.zeros(5, 16, 6)
    contact[:, :, 2] = 10.0                       # 10 N along z, in contact
    contact[0, :, 2] = 0.2                        # one chunk out of contact: left out
    got = force_compliance(_Admittance(gain), _Identity(), torch.zeros(5, 16, 9), contact, num_arms=1)
    assert got == pytest.approx(expected, abs=1e-4)
    assert force_compliance(_Admittance(gain), _Identity(), torch.zeros(5, 16, 9), torch.zeros(5, 16, 6), 1) is None
    assert force_compliance(_Admittance(gain), _Identity(), torch.zeros(5, 16, 9), torch.zeros(5, 16, 30), 1) is None


def test_nominal_file_round_trip_and_bad_shapes(tmp_path):
    (tmp_path / "meta").mkdir()
    assert read_nominal(tmp_path) == {}
    eps = {3: (np.array([1.5]), np.ones((1, 20, 7), np.float32))}
    write_nominal(tmp_path, eps)
    back = read_nominal(tmp_path)
    assert list(back) == [3] and np.array_equal(back[3][1], eps[3][1]) and back[3][0].tolist() == [1.5]
    with pytest.raises(ValueError, match="does not match"):
        write_nominal(tmp_path, {0: (np.array([1.0, 2.0]), np.ones((1, 20, 7)))})
    (tmp_path / "meta" / "slowfast_nominal.npz").write_bytes(b"not an npz")
    with pytest.raises(ValueError, match="not a readable nominal-action file"):
        read_nominal(tmp_path)


@pytest.fixture(scope="module")
def nominal_dataset(tmp_path_factory):
    from sim.datagen import generate_dataset

    root = tmp_path_factory.mktemp("nominal") / "ds"
    return generate_dataset(root, task="wipe", episodes=2, seed=7, fps=25.0, camera=False, episode_seconds=5.0,
                            nominal=True)


def test_nominal_actions_follow_the_demonstration_until_the_perturbation(nominal_dataset):
    from slowfast_data.features import ACTION_KEY, EPISODE_SEEDS_PATH
    from slowfast_data.reader import LeRobotDataset

    ds = LeRobotDataset(nominal_dataset)
    meta = json.loads((nominal_dataset / EPISODE_SEEDS_PATH).read_text())
    nominal = read_nominal(nominal_dataset)
    assert sorted(nominal) == [e["episode_index"] for e in meta["episodes"]]
    for ep in meta["episodes"]:
        e = ep["episode_index"]
        times, actions = nominal[e]
        assert times.tolist() == ep["perturbation_times"] and len(times) == 2
        real = ds.data[ACTION_KEY][ds.ep_start[e]:ds.ep_end[e]]
        assert actions.shape == (2, len(real), real.shape[1])
        for k, t in enumerate(times):
            f = int(t * ds.fps)
            # the same scene and demonstrator: identical up to the cut perturbation ...
            assert np.abs(actions[k, :f] - real[:f]).max() < 1e-5
            # ... and a different path after it (the reaction to the surface step is missing)
            assert np.abs(actions[k, f:, :3] - real[f:, :3]).max() > 1e-3


def test_tune_decoder_trains_only_the_decoder_and_keeps_a_whole_rdp(nominal_dataset, tmp_path, camera_free_config):
    import torch

    from policy.rdp.checkpoint import load_checkpoint
    from policy.rdp.decoder_tuning import TUNING_FILE, tune_decoder
    from policy.rdp.export import export_checkpoint
    from policy.rdp.train import train

    torch.set_num_threads(1)

    def cfg(model_type, epochs):
        return camera_free_config(model_type, epochs, horizon=16, val_fraction=0.5)

    train("tokenizer", nominal_dataset, tmp_path / "tok", cfg("rdp_tokenizer", 3), progress=False)
    train("ldp", nominal_dataset, tmp_path / "ldp", cfg("rdp_ldp", 1), tokenizer=tmp_path / "tok", progress=False)
    logs = []
    summary = tune_decoder(nominal_dataset, tmp_path / "ldp", tmp_path / "rdp", epochs=3, patience=0, log=logs.append)
    assert summary["epochs_run"] == 3 and summary["train_chunks_spanning"] > 0 and summary["val_chunks"] > 0
    assert summary["best_val_loss"] is not None and any("validation L1 before" in m for m in logs)
    assert all(isinstance(v, float) for v in summary["compliance_mm_per_n"].values())
    before = load_checkpoint(tmp_path / "ldp" / "tokenizer", expect="rdp_tokenizer").model.state_dict()
    after = load_checkpoint(tmp_path / "rdp" / "tokenizer", expect="rdp_tokenizer").model.state_dict()
    enc = [k for k in before if k.startswith("encoder.")]
    dec = [k for k in before if not k.startswith("encoder.")]
    assert enc and all(torch.equal(before[k], after[k]) for k in enc)          # the LDP's latents stay valid
    if summary["best_epoch"] is not None:
        assert any(not torch.equal(before[k], after[k]) for k in dec)
    history = json.loads((tmp_path / "rdp" / "tokenizer" / TUNING_FILE).read_text())["history"]
    assert len(history) == 3 and (tmp_path / "rdp" / "tokenizer" / "loss.png").is_file()
    assert load_checkpoint(tmp_path / "rdp", expect="rdp_ldp").config.model_type == "rdp_ldp"
    assert not (tmp_path / "rdp" / "training_state").exists()
    export_checkpoint(tmp_path / "rdp", tmp_path / "onnx")                  # serves like any RDP
    assert (tmp_path / "onnx" / "decoder_step.onnx").is_file()

    # the oracle of a tuned decoder encodes the nominal plan where the chunk spans a perturbation
    # its start could not see (the recorded chunk holds the demonstrator's reaction, which the
    # tuned decoder adds itself); elsewhere, and for the untuned export, the recorded chunk
    from policy.rdp import contract
    from policy.rdp.replay import ReplayPolicy
    from slowfast_data.features import ACTION_KEY, POSE_KEY

    oracle = ReplayPolicy(nominal_dataset, tmp_path / "onnx")
    assert oracle.nominal.keys() == read_nominal(nominal_dataset).keys()
    ds, seeds = oracle.ds, oracle.seeds
    seed, e = next((s, e) for s, e in seeds.items() if e in oracle.nominal)
    oracle.begin_episode(seed)
    times, actions = oracle.nominal[e]
    s0, s1 = ds.ep_start[e], ds.ep_end[e]
    recorded = lambda f: contract.relative_chunk(ds.data[ACTION_KEY][s0:s1], ds.data[POSE_KEY][s0:s1], f, 16, 0,  # noqa: E731
                                                 s1 - s0)
    spans = int(times[0] * ds.fps) - 4                       # a chunk whose start cannot see the first perturbation
    plan = contract.relative_chunk(actions[0][:s1 - s0], ds.data[POSE_KEY][s0:s1], spans, 16, 0, s1 - s0)
    np.testing.assert_allclose(oracle.chunk_at(spans), plan, atol=1e-6)
    assert not np.allclose(plan, recorded(spans))
    np.testing.assert_allclose(oracle.chunk_at(0), recorded(0), atol=1e-6)    # no perturbation inside
    export_checkpoint(tmp_path / "ldp", tmp_path / "onnx_untuned")
    assert ReplayPolicy(nominal_dataset, tmp_path / "onnx_untuned").nominal == {}

    with pytest.raises(ValueError, match="would overwrite"):
        tune_decoder(nominal_dataset, tmp_path / "ldp", tmp_path / "ldp")
    with pytest.raises(ValueError, match="already holds a checkpoint"):
        tune_decoder(nominal_dataset, tmp_path / "ldp", tmp_path / "rdp")
    with pytest.raises(ValueError, match="expected 'rdp_ldp'"):
        tune_decoder(nominal_dataset, tmp_path / "tok", tmp_path / "x")
    (nominal_dataset / "meta" / "slowfast_nominal.npz").rename(tmp_path / "aside.npz")
    try:
        with pytest.raises(ValueError, match="no nominal actions"):
            tune_decoder(nominal_dataset, tmp_path / "ldp", tmp_path / "y")
        with pytest.raises(ValueError, match="tuned on nominal actions"):
            ReplayPolicy(nominal_dataset, tmp_path / "onnx")
    finally:
        (tmp_path / "aside.npz").rename(nominal_dataset / "meta" / "slowfast_nominal.npz")
