"""Inpainted handovers (policy.rdp.handover, SlowPolicyRuntime.predict(guide=...)), the
latency-aware slow schedule (SlowPlanner) and the latent path of the reactive executor."""
import bisect

import numpy as np
import pytest

from slowfast_data.geometry import absolute_to_relative, relative_to_absolute
from policy.rdp.handover import Issued, action_guide, build_guide, handover_step, rtc_weights

START = np.array([0.1, 0.0, 0.3, 0.0, 0.0, 0.0, 1.0])


def _yawed(pose, yaw):
    out = np.array(pose, float)
    out[3:] = [0.0, 0.0, np.sin(yaw / 2), np.cos(yaw / 2)]
    return out


# ---------------------------------------------------------------------------- weights, geometry


def test_rtc_weights_freeze_then_decay_then_free():
    w = rtc_weights(16, frozen=4, overlap=12)
    assert (w[:4] == 1).all() and (w[12:] == 0).all()
    assert (np.diff(w[3:13]) < 0).all() and 0 < w[4] < 1 and 0 < w[11] < 0.2
    assert (rtc_weights(8, 3, 2)[:3] == 1).all()              # overlap shorter than the frozen part
    assert rtc_weights(8, 0, 0).sum() == 0


def test_handover_step_counts_the_steps_executed_before_arrival():
    assert handover_step(10.0, 10.0, 0.04) == 1               # arrives at once: step 0 and the one it moves to
    assert handover_step(10.0, 10.30, 0.04) == 9              # 300 ms = 7.5 steps: 0..8 frozen
    assert handover_step(10.0, 10.08, 0.04) == 3


def test_action_guide_keeps_the_previous_chunk_in_the_world_frame():
    """The previous chunk's poses, seen from a new start pose 0.12 s later (moved and yawed),
    are the same world poses at the same times."""
    h, dt = 32, 0.04
    world = np.tile(START, (h, 1))
    world[:, 0] += 0.1 * dt * np.arange(h)                    # along x at 0.1 m/s
    world[:, 1] += 0.02 * np.sin(np.arange(h) * 0.2)
    world = np.stack([_yawed(p, 0.01 * i) for i, p in enumerate(world)])
    prev = absolute_to_relative(world, START)
    new_start = _yawed(START + [0.013, 0.002, -0.001, 0, 0, 0, 0], 0.05)
    rel, covered = action_guide(prev, 5.0, START, 5.12, new_start, dt)
    assert covered == h - 3
    back = relative_to_absolute(rel, new_start)
    np.testing.assert_allclose(back[:covered, :3], world[3:, :3], atol=1e-6)
    dots = np.abs((back[:covered, 3:] * world[3:, 3:]).sum(1))
    assert dots.min() > 1 - 1e-6                              # same orientation (float32 rows)
    # a fractional offset interpolates between the previous chunk's steps
    rel, covered = action_guide(prev, 5.0, START, 5.02, START, dt)
    np.testing.assert_allclose(relative_to_absolute(rel, START)[0, 0], (world[0, 0] + world[1, 0]) / 2, atol=1e-9)
    assert covered == h - 1
    # a previous chunk that ended before the new one starts covers nothing
    assert action_guide(prev, 5.0, START, 6.5, START, dt)[1] == 0


# ---------------------------------------------------------------------------- guided sampling


def _obs(slow, rng):
    images = {c: rng.integers(0, 255, (slow.n_obs, *slow.image_size, 3), dtype=np.uint8) for c in slow.cameras} or None
    pose = np.tile(START.astype(np.float32), (slow.n_obs, slow.num_arms))
    contact = rng.standard_normal((slow.history, slow.contact_dim)).astype(np.float32)
    return images, pose, contact


def test_inpainted_dp_chunk_keeps_its_frozen_rows(trained):
    from policy.rdp.runtime import SlowPolicyRuntime

    slow = SlowPolicyRuntime(trained / "onnx_dp", threads=1)
    rng = np.random.default_rng(0)
    images, pose, contact = _obs(slow, rng)
    free = slow.predict(images, pose, contact, seed=3)
    values = slow.predict(images, pose, contact, seed=11)     # another chunk the model could say
    w = rtc_weights(slow.target_len, frozen=5, overlap=12)
    guided = slow.predict(images, pose, contact, seed=3, guide=(values, w))
    np.testing.assert_allclose(guided[:5], values[:5], atol=1e-4)
    assert np.abs(free[:5] - values[:5]).max() > 1e-3          # not by accident
    # the soft rows lie between: closer to the values than the free chunk is
    assert np.abs(guided[5:9] - values[5:9]).mean() < np.abs(free[5:9] - values[5:9]).mean()
    with pytest.raises(ValueError, match="guide"):
        slow.predict(images, pose, contact, seed=3, guide=(values[:4], w))
    with pytest.raises(ValueError, match="weights"):
        slow.predict(images, pose, contact, seed=3, guide=(values, w * 2))


def test_inpainted_latent_chunk_continues_the_previous_one(trained):
    """RDP: the previous latent chunk decoded with the contact readings, moved to the new
    start frame and encoded; the new chunk's frozen latent rows equal those, and its decoded
    command at the handover is closer to the previous chunk's than an unguided chunk's."""
    from policy.rdp.runtime import DecoderRuntime, SlowPolicyRuntime

    slow = SlowPolicyRuntime(trained / "onnx_ldp", threads=1)
    dec = DecoderRuntime(trained / "onnx_ldp")
    dt = 1.0 / float(slow.meta["fps"])
    c = dec.compression
    rng = np.random.default_rng(1)
    seams = {"free": [], "guided": []}
    for seed in range(6):
        images, pose, contact = _obs(slow, rng)
        prev = Issued("latent", slow.predict(images, pose, contact, seed=100 + seed), 2.0, START.copy())
        t_obs, arrival = 2.0 + 2 * dt, 2.0 + 5 * dt
        new_start = START + np.r_[0.004, -0.002, 0.0, np.zeros(4)]
        live = contact[-1]
        guide = build_guide(prev, t_obs, new_start, arrival, dt, dec.horizon, c, dec, None, live)
        values, w = guide
        assert values.shape == (dec.latent_steps, dec.latent_dim)
        frozen = int((w == 1).sum())
        assert frozen == -(-handover_step(t_obs, arrival, dt) // c)
        guided = slow.predict(images, pose, contact, seed=seed, guide=guide)
        free = slow.predict(images, pose, contact, seed=seed)
        # frozen rows come out as the guide says (within the sampler's clip of the clean sample)
        clip = float(slow.meta["diffusion"]["clip_sample"])
        want = np.clip(values[:frozen], slow.mean - clip * slow.std, slow.mean + clip * slow.std)
        np.testing.assert_allclose(guided[:frozen], want, atol=1e-4)
        # the command each would give at the handover step (3 steps into the new chunk)
        old = relative_to_absolute(dec.decode_chunk(prev.data, np.tile(live, (6, 1)))[5], START)
        for name, lat in (("guided", guided), ("free", free)):
            cmd = relative_to_absolute(dec.decode_chunk(lat, np.tile(live, (4, 1)))[3], new_start)
            seams[name].append(np.linalg.norm(cmd[:3] - old[:3]))
    assert np.mean(seams["guided"]) < np.mean(seams["free"])


def test_export_without_an_action_encoder_is_named_and_inpaints_from_its_last_latent(trained, tmp_path):
    import json
    import shutil

    from policy.rdp.runtime import DecoderRuntime

    d = tmp_path / "old_export"
    shutil.copytree(trained / "onnx_ldp", d)
    meta = json.loads((d / "runtime.json").read_text())
    del meta["files"]["action_encoder"]
    (d / "runtime.json").write_text(json.dumps(meta))
    dec = DecoderRuntime(d)
    assert not dec.has_encoder
    with pytest.raises(ValueError, match="action_encoder.onnx"):
        dec.encode(np.zeros((dec.horizon, dec.action_dim), np.float32))
    # the guide then starts from the previous latent shifted by the rows between observations
    rng = np.random.default_rng(3)
    prev = Issued("latent", rng.standard_normal((dec.latent_steps, dec.latent_dim)).astype(np.float32), 1.0, START)
    dt, c = 0.02, dec.compression
    live = np.zeros(dec.contact_dim, np.float32)
    values, w = build_guide(prev, 1.0 + c * dt, START, 1.0 + (c + 1) * dt, dt, dec.horizon, c, dec, None, live)
    frozen = int((w == 1).sum())
    np.testing.assert_array_equal(values[frozen:-1], prev.data[frozen + 1:])      # shifted by one row


# ---------------------------------------------------------------------------- the slow schedule


class _FakePolicy:
    """A slow policy whose chunk says where it was called (row 0 = the call count)."""

    def __init__(self, horizon=32, fps=25.0):
        self.meta = {"model_type": "dp", "fps": fps, "horizon": horizon}
        self.cameras, self.n_obs, self.history = [], 2, 2
        self.calls, self.guides = 0, []
        self.horizon = horizon

    def predict(self, frames, tcp, contact, num_inference_steps=None, guide=None):
        self.calls += 1
        self.guides.append(guide)
        return np.tile(absolute_to_relative(np.tile(START, (1, 1)), START), (self.horizon, 1))


def _history(t_end, dt=0.005):
    from policy.serving import ArmHistory

    h = ArmHistory(["arm"])
    for t in np.arange(0.0, t_end + 1e-9, dt):
        h.add("arm", "pose", t, START.copy())
        h.add("arm", "wrench", t, np.zeros(6))
    return h


def test_planner_starts_early_enough_for_its_latency():
    """At 0.5 Hz a 1.28 s chunk would run out long before the next one; with 0.3 s of latency
    the planner starts the next cycle so the chunk lands a row before the last one ends."""
    from policy.serving import SlowPlanner

    pol = _FakePolicy()
    pl = SlowPlanner(pol, rate_hz=0.5)
    pl.modelled_latency_s = 0.3
    hist = _history(2.5)
    chunk, why = pl.plan(1.0, 1.0, hist, None)
    assert why is None
    runs_out = 1.0 + (32 - 1) / 25.0
    assert pl.next_due + 0.3 + 1.0 / pl.POLL_HZ <= runs_out - 1 / 25.0 + 1e-9
    assert pl.next_due < 1.0 + 2.0                      # earlier than the rate says
    # at a rate that is fast enough on its own, the rate decides
    fast = SlowPlanner(_FakePolicy(), rate_hz=8.0)
    fast.modelled_latency_s = 0.02
    fast.plan(1.0, 1.0, hist, None)
    assert fast.next_due == pytest.approx(1.125)
    # one inference at a time: with 0.3 s of latency an 8 Hz planner is busy until its chunk is out
    busy = SlowPlanner(_FakePolicy(), rate_hz=8.0)
    busy.modelled_latency_s = 0.3
    busy.plan(1.0, 1.0, hist, None)
    assert busy.next_due == pytest.approx(1.3)
    # ... unless most of the latency is transport after the inference: cycles overlap
    remote = SlowPlanner(_FakePolicy(), rate_hz=8.0)
    remote.modelled_latency_s, remote.transport_s = 0.36, 0.3
    remote.plan(1.0, 1.0, hist, None)
    assert remote.next_due == pytest.approx(1.125)
    # the estimate follows the observed latencies (90th percentile)
    for lat in [0.02] * 9 + [0.5] * 3:
        fast.observe_latency(lat)
    assert 0.02 < fast.latency_estimate() <= 0.5


def test_planner_inpaints_from_its_last_chunk_and_forgets_it_at_an_episode_start():
    from policy.serving import SlowPlanner

    pol = _FakePolicy()
    pl = SlowPlanner(pol, rate_hz=8.0, handover="inpaint")
    pl.modelled_latency_s = 0.1
    hist = _history(2.5)
    pl.plan(1.0, 1.0, hist, None)
    pl.plan(1.2, 1.2, hist, None)
    assert pol.guides[0] is None and pol.guides[1] is not None
    values, w = pol.guides[1]
    assert (w[:handover_step(1.2, 1.3, 0.04)] == 1).all() and w[-1] == 0
    pl.restart()
    pl.plan(2.0, 2.0, hist, None)
    assert pol.guides[2] is None
    with pytest.raises(ValueError, match="handover"):
        SlowPlanner(pol, rate_hz=8.0, handover="splice")


def test_the_inpainting_pull_stretches_with_a_cycle_the_inference_stretches():
    """inpaint_soft_s holds at the asked rate; when the inference is longer than a period (the
    slow side busy, chunks that much further apart) the pull past the frozen steps is longer
    by the same factor. Transport after the inference does not stretch the cycle."""
    from policy.serving import SlowPlanner

    def pulled(latency, transport=0.0):
        pol = _FakePolicy()
        pl = SlowPlanner(pol, rate_hz=8.0, handover="inpaint", inpaint_soft_s=0.16)
        pl.modelled_latency_s, pl.transport_s = latency, transport
        hist = _history(2.5)
        pl.plan(1.0, 1.0, hist, None)
        pl.plan(1.0 + max(0.125, latency - transport), 1.0 + max(0.125, latency - transport), hist, None)
        _, w = pol.guides[1]
        frozen = int((w == 1).sum())
        return frozen, int((w > 0).sum()) - frozen, pl.soft_steps()

    # 0.16 s at 25 fps: 4 steps past the frozen ones, with decaying weights
    frozen, soft, steps = pulled(0.06)
    assert steps == soft == 4
    frozen_busy, soft_busy, steps_busy = pulled(0.36)      # 0.36 s between chunks, not 0.125
    assert steps_busy == soft_busy == round(0.16 * 0.36 / 0.125 / 0.04) == 12
    assert frozen_busy > frozen
    assert pulled(0.36, transport=0.3)[2] == 4              # cycles overlap: the rate holds
    assert SlowPlanner(_FakePolicy(), rate_hz=8.0, handover="inpaint").soft_steps() is None
    busy = SlowPlanner(_FakePolicy(), rate_hz=8.0, handover="inpaint", inpaint_soft_s=0.16)
    busy.observe_latency(0.36)
    assert busy.inpaint_pull_s() == pytest.approx(12 * 0.04)   # what rdp_slow's diagnostics report
    assert SlowPlanner(_FakePolicy(), rate_hz=8.0, inpaint_soft_s=0.16).inpaint_pull_s() is None   # blend


# ---------------------------------------------------------------------------- latent executor path


def test_late_latent_chunk_rolls_forward_over_the_recorded_contacts(trained):
    """A latent chunk entered 5 steps late gives, from then on, exactly what decoding the
    whole chunk with the contact readings recorded at each step's time gives."""
    from policy.rdp.runtime import DecoderRuntime
    from policy.reactive import Chunk, ReactiveExecutor

    dec = DecoderRuntime(trained / "onnx_ldp")
    dt = 0.04
    rng = np.random.default_rng(4)
    latent = rng.standard_normal((dec.latent_steps, dec.latent_dim)).astype(np.float32)
    contacts = rng.standard_normal((dec.horizon, dec.contact_dim)).astype(np.float32)
    ex = ReactiveExecutor(dec, dec.horizon, dt, blend_s=0.0)
    for k in range(dec.horizon):
        ex.add_contact(1.0 + k * dt, contacts[k])
    now = 1.0 + 5 * dt
    assert ex.submit(Chunk("latent", latent, 1.0, START), now) is None
    ref = dec.decode_chunk(latent, contacts, START)
    for k in range(5, 9):
        got = ex.tick(1.0 + k * dt, contacts[k])
        np.testing.assert_allclose(got, ref[k], atol=1e-5)
    assert ex.last_step_index == 8


def test_latent_handover_records_its_seam_and_refuses_old_and_future_chunks(trained):
    from policy.rdp.runtime import DecoderRuntime
    from policy.reactive import Chunk, ReactiveExecutor

    dec = DecoderRuntime(trained / "onnx_ldp")
    dt = 0.04
    rng = np.random.default_rng(5)
    lat = lambda: rng.standard_normal((dec.latent_steps, dec.latent_dim)).astype(np.float32)  # noqa: E731
    c = np.zeros(dec.contact_dim, np.float32)
    ex = ReactiveExecutor(dec, dec.horizon, dt, blend_s=0.08)
    assert ex.submit(Chunk("latent", lat(), 1.0, START), 1.0) is None
    first = ex.tick(1.0, c)
    assert ex.submit(Chunk("latent", lat(), 0.9, START), 1.05) == "older_than_current"
    assert ex.submit(Chunk("latent", lat(), 1.2, START), 1.05) == "from_the_future"
    second = Chunk("latent", lat(), 1.1, START + np.r_[0.01, 0, 0, 0, 0, 0, 0])
    assert ex.submit(second, 1.15) is None
    cmd = ex.tick(1.15, c)
    assert len(ex.handover_jumps) == 1 and ex.handover_jumps[0] > 0
    assert np.isfinite(cmd).all() and np.isfinite(first).all()
    # the blended command's rotation stays a unit quaternion between two chunks' rotations
    assert abs(np.linalg.norm(cmd[3:]) - 1) < 1e-9
    # A new episode starting at 2.0: a chunk planned at 1.95 (the last episode's, still in
    # flight) would replay that episode's motion from the new start; it is refused, the first
    # chunk of the new episode is taken.
    ex.reset(not_before=2.0)
    assert ex.submit(Chunk("latent", lat(), 1.95, START), 2.02) == "before_episode_start"
    assert ex.tick(2.02, c) is None                         # nothing to run: hold
    assert ex.submit(Chunk("latent", lat(), 2.01, START), 2.03) is None
    assert ex.rejected["before_episode_start"] == 1


def test_torch_loop_on_the_device_matches_onnx_with_a_guide(trained):
    """The torch runtime's device-resident loop (diffusers' coefficients as constants, the
    inpainting pull inside) gives what the onnxruntime loop over diffusers' step gives."""
    from policy.rdp.runtime import SlowPolicyRuntime, TorchSlowPolicy

    ort, tch = SlowPolicyRuntime(trained / "onnx_dp", threads=1), TorchSlowPolicy(trained / "dp")
    rng = np.random.default_rng(7)
    images, pose, contact = _obs(ort, rng)
    values = ort.predict(images, pose, contact, seed=21)
    guide = (values, rtc_weights(ort.target_len, 4, 10))
    a = ort.predict(images, pose, contact, seed=2, guide=guide)
    b = tch.predict(images, pose, contact, seed=2, guide=guide)
    assert np.abs(a - b).max() < 1e-4 * max(1.0, float(np.abs(a).max()))
    with pytest.raises(ValueError, match="CUDA"):
        TorchSlowPolicy(trained / "dp", cuda_graph=True)


def test_fitting_the_frozen_rows_through_the_decoder_beats_the_encoder(trained):
    """What the executor decodes over the frozen steps is closer to the previous chunk after
    the fit than with the encoder's latent alone (the tokenizer's reconstruction error)."""
    from policy.rdp.handover import fit_latent_prefix
    from policy.rdp.runtime import DecoderRuntime

    dec = DecoderRuntime(trained / "onnx_ldp")
    rng = np.random.default_rng(9)
    gains = []
    for _ in range(5):
        contacts = rng.standard_normal((dec.horizon, dec.contact_dim)).astype(np.float32)
        target = dec.decode_chunk(rng.standard_normal((dec.latent_steps, dec.latent_dim)).astype(np.float32), contacts)
        enc = dec.encode(target)
        n, rows = 2 * dec.compression, 2
        fit = fit_latent_prefix(dec, enc, target[:n], contacts[:n], rows)
        np.testing.assert_array_equal(fit[rows:], enc[rows:])            # only the frozen rows move
        err = lambda lat: np.abs(dec.decode_chunk(lat, contacts[:n]) - target[:n])[:, :3].max()  # noqa: E731
        gains.append(err(enc) - err(fit))
    assert min(gains) >= 0 and max(gains) > 0


# ---------------------------------------------------------------------------- splice at arrival


class _ContactGainDecoder:
    """A recurrent decoder whose answer to contact depends on the latent (as a trained
    tokenizer decoder's does): position = P z + (1 + g.z) Q c + state, state' = 0.8 state +
    (0.5 + h.z) R c; rotation fixed. Small enough to see, with the runtime's interface."""

    latent_steps, latent_dim, compression, contact_dim, hidden = 4, 4, 4, 6, 3
    horizon = 16

    def __init__(self, seed=0):
        r = np.random.default_rng(seed)
        self.P = 0.01 * r.standard_normal((3, self.latent_dim))
        self.Q = 0.0005 * r.standard_normal((3, self.contact_dim))
        self.R = 0.0005 * r.standard_normal((3, self.contact_dim))
        self.g, self.h = 0.5 * r.standard_normal(self.latent_dim), 0.5 * r.standard_normal(self.latent_dim)

    def initial_state(self, batch=1):
        return np.zeros((batch, self.hidden), np.float32)

    def step(self, latent, k, contact, state=None):
        lat = np.asarray(latent, np.float32)
        single = lat.ndim == 2
        z = (lat[None] if single else lat)[:, k // self.compression]
        c = np.asarray(contact, np.float32).reshape(len(z), -1)
        state = self.initial_state(len(z)) if state is None else state
        pos = z @ self.P.T + (1 + z @ self.g)[:, None] * (c @ self.Q.T) + state + 0.002 * k
        rot = np.tile([1.0, 0.0, 0.0, 0.0, 1.0, 0.0], (len(z), 1))
        new_state = 0.8 * state + (0.5 + z @ self.h)[:, None] * (c @ self.R.T)
        a = np.concatenate([pos, rot], 1).astype(np.float32)
        return (a[0] if single else a), new_state.astype(np.float32)

    def decode_chunk(self, latent, contacts):
        state, out = None, []
        for k in range(len(contacts)):
            a, state = self.step(latent, k, contacts[k], state)
            out.append(a)
        return np.stack(out)


def test_splicing_at_arrival_removes_the_seam_a_contact_change_made():
    """The contact steps while the next chunk is computed (a surface step): decoded with the
    real contacts, the inpainted chunk and the executing one part at the handover (the
    decoder answers contact through the latent). Splicing at arrival, with the contacts the
    executor decodes with (policy.serving.Splicer), makes them meet again and leaves the rows
    after the fitted steps as they were."""
    from policy.rdp.handover import fit_latent_prefix
    from policy.reactive import Chunk, ReactiveExecutor, StampedBuffer
    from policy.serving import Splicer

    dec = _ContactGainDecoder()
    dt, h = 0.04, dec.horizon
    rng = np.random.default_rng(11)
    c0 = rng.standard_normal(dec.contact_dim).astype(np.float32)
    c1 = (c0 + 3.0 * rng.standard_normal(dec.contact_dim)).astype(np.float32)
    z = rng.standard_normal(dec.latent_dim).astype(np.float32)
    old = Chunk("latent", np.tile(z, (dec.latent_steps, 1)), 1.0, START)
    t_new, arrival = 1.08, 1.28
    hist = StampedBuffer()                                   # c0, then c1 from 1.12: after t_new, before arrival
    for t in np.arange(0.8, 1.6, 0.01):
        hist.add(float(t), c0 if t < 1.12 else c1)
    # the next chunk as the slow side inpaints it at t_new: the old one's motion under the
    # contact it last saw (c0), from another latent (moved along the null space of P: the same
    # motion, another answer to contact)
    old_c0 = dec.decode_chunk(old.data, np.repeat(c0[None], h, 0))
    start_new = relative_to_absolute(old_c0[2:3], START)[0]
    target, covered = action_guide(old_c0, 1.0, START, t_new, start_new, dt)
    other = np.tile(z + 3.0 * np.linalg.svd(dec.P)[2][-1], (dec.latent_steps, 1)).astype(np.float32)
    planned = fit_latent_prefix(dec, other, target[:covered], np.repeat(c0[None], covered, 0), dec.latent_steps,
                                iterations=6)
    assert np.abs(dec.decode_chunk(planned, np.repeat(c0[None], covered, 0)) - target[:covered])[:, :3].max() < 1e-3
    new = Chunk("latent", planned, t_new, start_new)

    def seam(chunk):
        ex = ReactiveExecutor(dec, h, dt, blend_s=0.08)
        ex.history = hist
        assert ex.submit(old, 1.0) is None
        for t in np.arange(1.0, arrival, 0.01):
            ex.tick(float(t), hist.before(float(t)))
        assert ex.submit(chunk, arrival) is None
        ex.tick(arrival, c1)
        return ex.handover_jumps[-1]

    splicer = Splicer(dec, dt, h)
    spliced, was = splicer.run(new, old, arrival, hist, c1)
    assert was and splicer.spliced == 1 and spliced.obs_stamp == new.obs_stamp
    before, after = seam(new), seam(spliced)
    assert before > 1e-3, before                             # the contact change parted them (> 1 mm)
    assert after < 0.02 * before, (before, after)
    k_fit = int((arrival - t_new) / dt + 1e-9) + 2
    rows = -(-k_fit // dec.compression)
    np.testing.assert_array_equal(spliced.data[rows:], new.data[rows:])
    # an executing chunk that ends before the handover leaves the new one as it came
    late = Chunk("latent", new.data, 1.0 + h * dt, start_new)
    assert splicer.run(late, old, late.obs_stamp + 0.01, hist, c1) == (late, False) and splicer.unspliced == 1


def test_the_fast_loop_splices_in_a_child_process_and_keeps_the_old_chunk_meanwhile(trained):
    """rdp_fast's splice: the tick that takes the new chunk hands it off (a child process fits
    it) and goes on with the old one; a later tick takes it over spliced. A splice requested
    before an episode start is dropped; closing stops the child."""
    import time

    from policy.rdp.runtime import DecoderRuntime
    from policy.reactive import ReactiveExecutor
    from policy.safety import SafetyConfig, SafetyFilter
    from policy.serving import ArmHistory, ArmSnapshot, FastController

    dec = DecoderRuntime(trained / "onnx_ldp")
    dt = 0.04
    rng = np.random.default_rng(12)
    kind = "wrench" if dec.contact_dim == 6 else "tactile"
    assert kind == "wrench"                                   # the fixture's policy reads the wrench
    ex = ReactiveExecutor(dec, dec.horizon, dt, blend_s=0.08)
    fc = FastController(ex, {"arm": SafetyFilter(SafetyConfig())}, kind, dec.contact_dim, splice=True,
                        splice_export=str(trained / "onnx_ldp"))
    history = ArmHistory(["arm"])
    wrench = np.zeros(6)

    def snap(t):
        history.add("arm", "pose", t, np.r_[START[:3], START[3:]])
        return {"arm": ArmSnapshot(pose_stamp=t, tcp_pos=START[:3].copy(), tcp_quat=START[3:].copy(),
                                   wrench_stamp=t, wrench=wrench.copy())}

    fc.restart(snap(1.0))
    lat = lambda: rng.standard_normal((dec.latent_steps, dec.latent_dim)).astype(np.float32)  # noqa: E731
    first, second = lat(), lat()
    t = 1.0
    fc.tick(t, snap(t), (1.0, "latent", first), None, history)
    assert ex.current.chunk.obs_stamp == 1.0                  # no chunk executing yet: taken at once
    for t in np.arange(1.01, 1.2, 0.01):
        fc.tick(float(t), snap(float(t)), None, None, history)
    t = 1.2
    fc.tick(t, snap(t), (1.1, "latent", second), None, history)
    assert ex.current.chunk.obs_stamp == 1.0                  # the old chunk goes on meanwhile
    end = time.monotonic() + 10.0
    while ex.current.chunk.obs_stamp != 1.1 and time.monotonic() < end:
        time.sleep(0.005)
        t += 0.001
        fc.tick(t, snap(t), None, None, history)
    assert ex.current.chunk.obs_stamp == 1.1 and fc.splicer.spliced == 1
    assert ex.previous is None and len(ex.handover_jumps) == 1   # taken over at once, its seam measured
    assert not np.array_equal(ex.current.chunk.data, second)  # its first rows were refitted
    # requested, then an episode starts: the splice in flight never reaches the executor
    fc.tick(t, snap(t), (1.15, "latent", lat()), None, history)
    fc.restart(snap(t))
    time.sleep(0.5)
    fc.tick(t + 0.01, snap(t + 0.01), None, None, history)
    assert ex.current is None
    proc = fc.splicer._proc
    fc.splicer.close()
    assert not proc.is_alive()


def test_the_splice_job_crosses_to_the_child_as_two_arrays(trained):
    """The helper thread hands the contact readings to the child as one stamps array and one
    stacked values array: a list of per-reading arrays pickles in one C call holding the GIL
    (~5 us a reading, 3 ms for 600) that the control thread then waits out."""
    import time

    from policy.rdp.runtime import DecoderRuntime
    from policy.reactive import Chunk, StampedBuffer
    from policy.serving import Splicer

    dec = DecoderRuntime(trained / "onnx_ldp")
    dt = 0.04
    splicer = Splicer(dec, dt, dec.horizon, export_dir=str(trained / "onnx_ldp"))
    sent = []

    class Recording:
        def __init__(self, conn):
            self.conn = conn

        def send(self, obj):
            sent.append(obj)
            self.conn.send(obj)

        def recv(self):
            return self.conn.recv()

        def close(self):
            self.conn.close()

    splicer._conn = Recording(splicer._conn)
    rng = np.random.default_rng(3)
    history = StampedBuffer()
    for t in np.arange(1.0, 1.6, 0.001):
        history.add(float(t), rng.standard_normal(dec.contact_dim).astype(np.float32))
    lat = lambda: rng.standard_normal((dec.latent_steps, dec.latent_dim)).astype(np.float32)  # noqa: E731
    old, new = Chunk("latent", lat(), 1.2, START.copy()), Chunk("latent", lat(), 1.5, START.copy())
    try:
        splicer.request(new, old, 1.6, history, history.v[-1])
        end = time.monotonic() + 10.0
        while (got := splicer.take()) is None and time.monotonic() < end:
            time.sleep(0.005)
        assert got is not None and got[1] and splicer.failed == 0, splicer.last_error
        stamps, values = sent[0][4], sent[0][5]
        assert isinstance(stamps, np.ndarray) and stamps.dtype == np.float64
        assert isinstance(values, np.ndarray) and values.shape == (len(stamps), dec.contact_dim)
        first = bisect.bisect_left(history.t, old.obs_stamp - 2 * dt)   # what the fit may need, no more
        assert np.array_equal(stamps, np.asarray(history.t)[first:])
        assert np.array_equal(values, np.stack(list(history.v)[first:]))
    finally:
        splicer.close()
