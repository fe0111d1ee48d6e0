"""Tactile fields as a marker tracker gives them: lost markers are NaN rows. They are filled
(last valid row, then the neighbours' displacement) so one lost marker does not stop a tactile
policy; a field with too few markers holds the arm."""
import numpy as np
import pytest

from policy.serving import ArmHistory, ArmSnapshot, FastController, MarkerFiller


def _field(n=8, shift=0.0):
    xy = np.stack(np.meshgrid(np.arange(4) * 2e-3, np.arange(2) * 2e-3), -1).reshape(-1, 2)[:n]
    return np.concatenate([xy, np.full((n, 2), shift)], 1).astype(np.float32)


def test_a_lost_marker_takes_its_last_row_then_its_neighbours_displacement():
    mf = MarkerFiller(hold_s=0.1, min_valid=0.5, neighbours=3)
    np.testing.assert_array_equal(mf.fill(0.0, _field(shift=1e-4)), _field(shift=1e-4))
    f = _field(shift=2e-4)
    f[3] = np.nan
    out = mf.fill(0.05, f)                       # lost 0.05 s: its last valid row
    np.testing.assert_allclose(out[3], _field(shift=1e-4)[3])
    np.testing.assert_allclose(np.delete(out, 3, 0), np.delete(f, 3, 0))
    assert mf.fill(0.05, f) is out and mf.counts["filled_last"] == 1   # one stamp, filled once
    out = mf.fill(0.2, f)                        # lost for longer than hold_s: neighbours
    np.testing.assert_allclose(out[3, :2], _field()[3, :2])
    np.testing.assert_allclose(out[3, 2:], [2e-4, 2e-4], atol=1e-9)
    assert mf.counts["filled_neighbours"] == 1 and np.isfinite(out).all()


def test_too_few_markers_or_a_marker_never_seen_is_refused():
    mf = MarkerFiller(min_valid=0.5)
    f = _field()
    f[:5] = np.nan                               # 3 of 8 valid
    assert mf.fill(0.0, f) is None and mf.counts["refused_too_few"] == 1
    g = _field()
    g[0] = np.nan                                # valid share fine, but marker 0 never seen
    assert mf.fill(0.01, g) is None


def test_history_keeps_filled_fields_and_drops_refused_ones():
    h = ArmHistory(["arm"])
    h.add("arm", "tactile", 0.0, _field())
    f = _field(shift=3e-4)
    f[2] = np.nan
    h.add("arm", "tactile", 0.01, f)
    got = h.at("tactile", 0.01, 0.001)[0]
    assert np.isfinite(got).all()
    bad = _field()
    bad[:6] = np.nan
    h.add("arm", "tactile", 0.02, bad)
    assert h.at("tactile", 0.02, 0.001) is None                 # the refused field is not kept
    assert h.at("tactile", 0.02, 0.015)[0] is got


@pytest.fixture(scope="module")
def tactile_decoder(tmp_path_factory, dataset, tiny_config):
    import torch

    from policy.rdp.export import export_checkpoint
    from policy.rdp.runtime import DecoderRuntime
    from policy.rdp.train import train

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("tactile")
    train("tokenizer", dataset, root / "tok", tiny_config("rdp_tokenizer", data={"contact": "tactile"}), progress=False)
    export_checkpoint(root / "tok", root / "onnx")
    return DecoderRuntime(root / "onnx", threads=1)


def test_a_tactile_policy_keeps_commanding_with_a_lost_marker_and_holds_without_enough(tactile_decoder):
    from policy.reactive import Chunk, ReactiveExecutor
    from policy.safety import SafetyConfig, SafetyFilter

    dec = tactile_decoder
    ex = ReactiveExecutor(dec, dec.horizon, 0.02, blend_s=0.0)
    sf = SafetyFilter(SafetyConfig())
    fc = FastController(ex, {"arm": sf}, "tactile", dec.contact_dim)
    pos, quat = np.array([0.0, 0.0, 0.1]), np.array([0.0, 0.0, 0.0, 1.0])

    def snap(t, field):
        return {"arm": ArmSnapshot(pose_stamp=t, tcp_pos=pos, tcp_quat=quat, tcp_linvel=np.zeros(3),
                                   tcp_angvel=np.zeros(3), wrench_stamp=t, wrench=np.zeros(6),
                                   tactile_stamp=t, tactile=field)}
    fc.restart(snap(0.0, _field()))
    latent = np.zeros((dec.latent_steps, dec.latent_dim), np.float32)
    assert ex.submit(Chunk("latent", latent, 0.0, np.concatenate([pos, quat])), 0.0) is None
    assert fc.tick(0.005, snap(0.005, _field())).produced
    one_lost = _field(shift=1e-4)
    one_lost[5] = np.nan
    res = prev = fc.tick(0.01, snap(0.01, one_lost))
    assert res.produced and np.isfinite(res.commands["arm"][0]).all()
    assert fc.markers["arm"].counts["filled_last"] == 1
    most_lost = _field()
    most_lost[:6] = np.nan
    res = fc.tick(0.015, snap(0.015, most_lost))
    assert not res.produced and fc.markers["arm"].counts["refused_too_few"] == 1
    np.testing.assert_allclose(res.commands["arm"][0], prev.commands["arm"][0], atol=1e-9)   # held
