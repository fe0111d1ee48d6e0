"""The executor's tick runs the decoder through I/O bindings to buffers it keeps (no arrays
made per tick): the targets are those of ``DecoderRuntime.step``, bit for bit, through a
late chunk's roll-forward, interpolation between steps and a blended handover."""
import numpy as np

from policy.reactive import Chunk, ReactiveExecutor


def test_bound_decoder_steps_give_the_targets_of_decoder_step(trained):
    from policy.rdp.runtime import DecoderRuntime

    dec = DecoderRuntime(trained / "onnx_ldp")
    rng = np.random.default_rng(0)
    step_dt = 0.02
    bound = ReactiveExecutor(dec, dec.horizon, step_dt, blend_s=0.05)
    plain = ReactiveExecutor(dec, dec.horizon, step_dt, blend_s=0.05)
    plain._bound_step = None          # noqa: SLF001 - the decoder.step path, for reference
    start = np.array([0.1, 0.0, 0.3, 0.0, 0.0, 0.0, 1.0])
    chunks = [Chunk("latent", rng.normal(size=(dec.latent_steps, dec.latent_dim)).astype(np.float32),
                    t_obs, start + np.r_[0.01 * i, 0, 0, 0, 0, 0, 0])
              for i, t_obs in enumerate((0.0, 0.15))]
    n_out = 0
    for i in range(400):
        now = 0.05 + i * 0.001                       # a 1 kHz loop, the first chunk entered late
        contact = rng.normal(size=dec.contact_dim).astype(np.float32)
        for ex in (bound, plain):
            ex.add_contact(now, contact)
        if i in (0, 120):                            # a handover at 0.17 s
            chunk = chunks[0 if i == 0 else 1]
            assert bound.submit(chunk, now) is None and plain.submit(chunk, now) is None
        a, b = bound.tick(now, contact), plain.tick(now, contact)
        assert (a is None) == (b is None)
        if a is not None:
            assert np.array_equal(a, b), (i, a, b)
            n_out += 1
    assert n_out > 300 and bound._bound_step is not None   # noqa: SLF001 - the bound path ran
