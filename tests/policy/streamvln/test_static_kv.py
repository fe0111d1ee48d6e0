"""The static KV path (``kv_cache='static'``): same logits as the eager dynamic path, fixed
buffers, a decode step that traces as one graph; the incremental refresh and warm-up."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from policy.streamvln.agent import StreamVLNAgent
from policy.streamvln.config import AgentConfig, MemoryConfig
from policy.streamvln.kv_window import NEW_TURN, PREFIX, SAME_TURN, KVWindow, Piece
from policy.streamvln.refresh import first_kept_turn, next_refresh_turn, prep_start_turn
from policy.streamvln.synthetic import BoxRoom, camera_pose, loop_actions, pinhole, rollout

W, H = 64, 48
K = pinhole(W, H)
TOL = 1e-4
INSTRUCTION = "Walk to the red wall and stop."


def frames(n, every=4):
    room, states = BoxRoom(), rollout(loop_actions(n * every))
    for i in range(n):
        x, y, yaw = states[i * every]
        pose = camera_pose(x, y, yaw)
        rgb, depth = room.render(pose, K, W, H)
        yield rgb, depth, K, pose


def recording(agent):
    """Wrap the agent's window so every forward's logits are kept (in call order)."""
    logits, window = [], agent.window
    orig = window.forward

    def forward(pieces, logits_to_keep=1):
        out = orig(pieces, logits_to_keep)
        logits.append(out.detach().clone())
        return out

    window.forward = forward
    return logits


def make(model, tokenizer, **kw):
    kw.setdefault("max_new_tokens", 4)
    kw.setdefault("stop_on_eos", False)
    kw.setdefault("memory", MemoryConfig(max_tokens=16, block_frames=4))
    agent = StreamVLNAgent(model, tokenizer, AgentConfig(**kw))
    agent.reset(INSTRUCTION)
    return agent


def rand_piece(g, n, d, span):
    return Piece(torch.randn(n, d, generator=g), span)


def test_static_window_equals_dynamic_through_decode_steps_and_evictions(small_model):
    g = torch.Generator().manual_seed(0)
    d = small_model.hidden_size
    dyn, st = KVWindow(small_model), KVWindow(small_model, "static")
    st.reserve(100)
    keys_ptr = st.cache.layers[0].keys.data_ptr()

    def both(piece):
        a, b = dyn.forward([piece]), st.forward([piece])
        assert (a - b).abs().max().item() < TOL
        assert dyn.cache_tokens() == st.cache_tokens()

    both(rand_piece(g, 9, d, PREFIX))
    for t in range(7):
        both(rand_piece(g, 6, d, NEW_TURN))
        for _ in range(3):  # one-token decode steps: the path a capture records
            both(rand_piece(g, 1, d, SAME_TURN))
        if t >= 2:
            assert dyn.evict_oldest_turn() == st.evict_oldest_turn() == 9
        assert torch.equal(dyn.positions, st.positions)
    assert st.cache.layers[0].keys.data_ptr() == keys_ptr and st.capacity == 256  # never reallocated


def test_static_buffer_refuses_overflow_and_keeps_its_buffers_across_reset(small_model):
    st = KVWindow(small_model, "static")
    with pytest.raises(RuntimeError, match="overflow"):  # nothing reserved
        st.forward([rand_piece(torch.Generator().manual_seed(0), 3, small_model.hidden_size, PREFIX)])
    st.reserve(10)
    ptr = st.cache.layers[0].keys.data_ptr()
    st.forward([rand_piece(torch.Generator().manual_seed(0), 250, small_model.hidden_size, PREFIX)])
    with pytest.raises(RuntimeError, match="overflow"):
        st.forward([rand_piece(torch.Generator().manual_seed(1), 7, small_model.hidden_size, NEW_TURN)])
    with pytest.raises(RuntimeError, match="empty window"):
        st.reserve(1000)
    st.reset()
    st.reserve(200)  # within the capacity: nothing happens
    assert st.cache_tokens() == 0 and st.cache.layers[0].keys.data_ptr() == ptr


def test_static_decode_step_traces_as_one_graph(small_model):
    """What torch.compile(mode='reduce-overhead') / a CUDA graph capture needs: the one-token step
    traces without a graph break, and the traced step (fill tensor inside) equals the eager one."""
    g = torch.Generator().manual_seed(2)
    d = small_model.hidden_size
    dyn, st = KVWindow(small_model), KVWindow(small_model, "static")
    st.reserve(64)
    for w in (dyn, st):
        w.forward([rand_piece(torch.Generator().manual_seed(3), 20, d, PREFIX)])
    torch._dynamo.reset()
    step = torch.compile(st.step_fn, backend="eager", fullgraph=True)
    for i in range(3):
        e = torch.randn(1, 1, d, generator=g)
        ref = dyn.forward([Piece(e[0], SAME_TURN if i else NEW_TURN)])
        out = step(e, torch.tensor([[20 + i]]))
        assert (ref - out).abs().max().item() < TOL
    assert int(st.cache.get_seq_length()) == 23  # the step wrote its keys at the fill length


@pytest.mark.parametrize("mode,refresh", [("sliding", "inline"), ("sliding", "incremental"),
                                          ("tumbling", "inline"), ("recompute", "inline")])
def test_static_agent_logits_equal_eager_over_turns_with_eviction_and_refresh(small_model, tokenizer, mode, refresh):
    kw = dict(window_turns=3, memory_refresh_turns=4, context_mode=mode, refresh=refresh)
    eager, static = make(small_model, tokenizer, **kw), make(small_model, tokenizer, kv_cache="static", **kw)
    le, ls = recording(eager), recording(static)
    for rgb, depth, k, pose in frames(13):
        assert eager.step(rgb, depth, k, pose) == static.step(rgb, depth, k, pose)
        assert eager.stats.cache_tokens == static.stats.cache_tokens
    assert len(le) == len(ls) == 13 * 4  # a prefill and 3 decode steps per turn
    assert max((a - b).abs().max().item() for a, b in zip(le, ls)) < TOL
    if mode != "recompute":  # the episode did evict and refresh
        assert static.stats.evicted_turns >= 9 and static.stats.memory_refreshes >= 3
        assert static.stats.memory_tokens > 0


def test_refresh_schedule():
    # refreshes on multiples of R; preparation starts at the previous refresh or at the last
    # turn the refreshed window drops, whichever is later; the memory ends where the window starts
    assert [next_refresh_turn(t, 4) for t in (0, 3, 4, 7)] == [4, 4, 8, 8]
    assert first_kept_turn(8, 8) == 1 and first_kept_turn(4, 8) == 0 and first_kept_turn(5, 1) == 5
    assert prep_start_turn(16, 8, 8) == 8 and prep_start_turn(8, 3, 4) == 5 and prep_start_turn(8, 8, 4) == 4


@pytest.mark.parametrize("window,every", [(3, 4), (4, 4), (4, 2), (1, 3)])
def test_incremental_refresh_spreads_the_work_and_the_refresh_turn_prefills_only_its_own_turn(
        small_model, tokenizer, window, every):
    inline = make(small_model, tokenizer, window_turns=window, memory_refresh_turns=every)
    inc = make(small_model, tokenizer, window_turns=window, memory_refresh_turns=every, refresh="incremental")
    work = []
    for t, (rgb, depth, k, pose) in enumerate(frames(13)):
        inline.step(rgb, depth, k, pose)
        inc.step(rgb, depth, k, pose)
        work.append(inc.stats.last_refresh_prep_tokens)
        if t > 0 and t % every == 0:  # refresh turn: the inline agent re-encodes, ours swaps
            assert inline.stats.last_prefill_tokens > inc.stats.last_prefill_tokens
            assert inc.stats.last_prefill_tokens == inc.window.turn_lens[-1] - inc.stats.last_generated_tokens + 1
            assert inc.window.num_turns == min(window, t + 1)
        assert inc.stats.memory_refreshes == inline.stats.memory_refreshes
        assert inc.stats.cache_tokens == inc.window.cache_tokens()
    # the work is shared over min(W, R) turn ends (W = 1: the memory's newest frame is the turn
    # before the refresh, so only that turn can prepare it): no turn encodes all of a refresh
    total_per_refresh = sum(work) / inc.stats.memory_refreshes
    assert (max(work) < total_per_refresh) == (min(window, every) > 1)
    assert sum(1 for w in work if w) >= inc.stats.memory_refreshes * min(every, window) - 1


def test_incremental_refresh_turn_equals_one_pass_over_the_same_tokens(small_model, tokenizer):
    """The cache prepared chunk by chunk over several turns gives the logits of a fresh single
    pass over prefix(memory) + kept turns + the new turn."""
    agent = make(small_model, tokenizer, window_turns=3, memory_refresh_turns=4, refresh="incremental")
    logits = recording(agent)
    checked = 0
    for t, (rgb, depth, k, pose) in enumerate(frames(9)):
        n = len(logits)
        agent.step(rgb, depth, k, pose)
        if t > 0 and t % 4 == 0:
            *kept, new = agent.turns
            fresh = KVWindow(small_model)
            ref = fresh.forward([agent._prefix_piece(agent.memory_tokens)]
                                + [agent._turn_piece(r.frame, r.answer_ids) for r in kept]
                                + [agent._turn_piece(new.frame)])
            assert agent.memory_tokens is not None and len(kept) == 2
            assert (ref - logits[n]).abs().max().item() < TOL
            checked += 1
    assert checked == 2


@pytest.mark.parametrize("kv_cache,refresh", [("dynamic", "inline"), ("static", "incremental")])
def test_warm_up_pays_first_use_costs_and_leaves_no_trace(small_model, tokenizer, kv_cache, refresh):
    kw = dict(window_turns=3, memory_refresh_turns=4, kv_cache=kv_cache, refresh=refresh)
    cold, warm = make(small_model, tokenizer, **kw), make(small_model, tokenizer, **kw)
    assert warm.warm_up() > 0 and warm.warm_up_s > 0 and warm.instruction is None
    with pytest.raises(RuntimeError, match="reset"):
        warm.step(*next(frames(1)))
    capacity = warm.window.capacity
    warm.reset(INSTRUCTION)
    lc, lw = recording(cold), recording(warm)
    for rgb, depth, k, pose in frames(9):
        assert cold.step(rgb, depth, k, pose) == warm.step(rgb, depth, k, pose)
    assert max((a - b).abs().max().item() for a, b in zip(lc, lw)) < TOL
    assert warm.stats.turns == 9 and warm.stats.memory_refreshes == cold.stats.memory_refreshes == 2
    if kv_cache == "static":  # reserved with headroom by the warm-up, not reallocated by the episode
        assert capacity >= warm.context_bound(INSTRUCTION) + 512 and warm.window.capacity == capacity


def test_context_bound_holds_with_the_static_buffer(small_model, tokenizer):
    agent = make(small_model, tokenizer, window_turns=4, memory_refresh_turns=4, kv_cache="static",
                 refresh="incremental")
    for rgb, depth, k, pose in frames(30):
        agent.step(rgb, depth, k, pose)
    assert 0 < agent.stats.peak_cache_tokens <= agent.context_bound(INSTRUCTION) <= agent.window.capacity
    assert agent.stats.memory_tokens == 16


def test_config_rejects_unknown_kv_options():
    for kw in ({"kv_cache": "paged"}, {"decode_capture": "graph"}, {"refresh": "background"}):
        with pytest.raises(ValueError, match=next(iter(kw))):
            AgentConfig(**kw)
    with pytest.raises(ValueError, match="kv_cache"):
        KVWindow(None, "paged")
    assert np.isfinite(W)  # module constants in use


def test_agent_for_device_changes_nothing_on_cpu(small_model, tokenizer):
    from policy.streamvln.agent import agent_for_device
    from policy.streamvln.config import device_agent_options

    cfg = AgentConfig(window_turns=3)
    agent = agent_for_device(small_model, tokenizer, cfg)
    assert agent.config == cfg and agent.warm_up_s is None and agent.window.kind == "dynamic"
    assert device_agent_options("cpu") == {}
    assert device_agent_options("cuda:1") == {"kv_cache": "static", "refresh": "incremental"}


def test_a_failed_capture_decodes_eagerly_and_says_why(small_model):
    """cuda_graph capture of a CPU model fails: the step stays correct (eager) and the reason is kept."""
    g = torch.Generator().manual_seed(4)
    d = small_model.hidden_size
    dyn, st = KVWindow(small_model), KVWindow(small_model, "static", capture="cuda_graph")
    st.reserve(32)
    assert st.decode_path == "static-cuda_graph" and dyn.decode_path == "dynamic"
    p = rand_piece(g, 5, d, PREFIX)
    dyn.forward([p]), st.forward([p])
    e = rand_piece(g, 1, d, NEW_TURN)
    with pytest.warns(RuntimeWarning, match="capture"):
        out = st.forward([e])
    assert (dyn.forward([e]) - out).abs().max().item() < TOL
    assert "CUDA" in st.capture_error and st.decode_path == "static-eager" and st.cache_tokens() == 6


@pytest.mark.slow
def test_compiled_decode_step_equals_eager(small_model):
    """decode_capture='compile': torch.compile(mode='reduce-overhead') through inductor (on CPU
    without CUDA graphs; ~20 s to compile) gives the eager logits and advances the buffer."""
    g = torch.Generator().manual_seed(5)
    d = small_model.hidden_size
    dyn, st = KVWindow(small_model), KVWindow(small_model, "static", capture="compile")
    st.reserve(64)
    p = rand_piece(g, 10, d, PREFIX)
    dyn.forward([p]), st.forward([p])
    torch._dynamo.reset()
    for i in range(3):
        e = rand_piece(g, 1, d, SAME_TURN if i else NEW_TURN)
        assert (dyn.forward([e]) - st.forward([e])).abs().max().item() < TOL
    assert st.decode_path == "static-compile" and st.capture_error is None and st.cache_tokens() == 13
