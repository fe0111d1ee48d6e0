"""The sliding KV window: exactness against from-scratch passes, and bounded size."""
from __future__ import annotations

import pytest
import torch

from policy.streamvln.kv_window import NEW_TURN, PREFIX, SAME_TURN, KVWindow, Piece
from policy.streamvln.tiny import build_tiny_model

TOL = 1e-4


class Tracked:
    """A KVWindow plus a log of every token fed: its embedding, position, and what it could see."""

    def __init__(self, model):
        self.w = KVWindow(model)
        self.emb: list[torch.Tensor] = []  # per token ever fed, [D]
        self.pos: list[int] = []
        self.saw: list[set[int]] = []  # token ids visible when it was encoded (itself included)
        self.in_cache: list[int] = []  # token ids in cache order, mirrors the window

    def forward(self, pieces):
        logits = self.w.forward(pieces)
        new = torch.cat([p.embeds for p in pieces])
        start = len(self.emb)
        base = set(self.in_cache)
        for i in range(new.shape[0]):
            self.emb.append(new[i])
            self.pos.append(int(self.w.positions[len(self.in_cache) + i]))
            self.saw.append(base | set(range(start, start + i + 1)))
        self.in_cache += list(range(start, start + new.shape[0]))
        return logits

    def evict(self):
        a = self.w.prefix_len
        b = a + self.w.turn_lens[0]
        self.w.evict_oldest_turn()
        del self.in_cache[a:b]


def _scratch(model, emb, pos, mask=None):
    """From-scratch pass (no cache) with explicit position ids and an all-ones or 4-D mask."""
    e = torch.stack(emb)[None]
    p = torch.tensor(pos)[None]
    if mask is None:
        mask = torch.ones(1, len(pos), dtype=torch.long)  # 2-D: keeps non-contiguous positions one sequence
    return model.decode(e, p, cache=None, attention_mask=mask, logits_to_keep=1)


def _drive(tr, model, turns, window, gen):
    tr.forward([Piece(torch.randn(11, model.hidden_size, generator=gen), PREFIX)])
    logits = None
    for t in range(turns):
        if tr.w.num_turns == window:
            tr.evict()
        pieces = []
        if t > 0:  # closing tokens of the previous answer, prefilled with the new turn
            pieces.append(Piece(torch.randn(2, model.hidden_size, generator=gen), SAME_TURN))
        pieces.append(Piece(torch.randn(9, model.hidden_size, generator=gen), NEW_TURN))
        logits = tr.forward(pieces)
        for _ in range(2):  # two decoded tokens fed back
            logits = tr.forward([Piece(torch.randn(1, model.hidden_size, generator=gen), SAME_TURN)])
    return logits


@pytest.fixture(scope="module")
def one_layer(tokenizer):
    return build_tiny_model(tokenizer, seed=3, image_size=56, text_kwargs={"num_layers": 1, "initializer_range": 0.2})


def test_window_equals_scratch_on_the_same_tokens_and_positions_one_layer(one_layer):
    """The issue's test, literally: windowed logits == a fresh pass over exactly the cached tokens
    at their (non-contiguous) position ids. Exact for a one-layer decoder, whose keys and values
    depend only on each token and its position."""
    model = one_layer
    gen = torch.Generator().manual_seed(0)
    tr = Tracked(model)
    logits = _drive(tr, model, turns=7, window=3, gen=gen)
    pos = tr.w.positions.tolist()
    assert tr.w.num_turns == 3
    assert any(b - a > 1 for a, b in zip(pos, pos[1:])), "evictions must leave a position gap"
    assert pos == [tr.pos[i] for i in tr.in_cache]
    ref = _scratch(model, [tr.emb[i] for i in tr.in_cache], pos)
    torch.testing.assert_close(logits, ref, atol=TOL, rtol=0)
    # the positions matter: the same tokens at contiguous positions give other logits
    assert (logits - _scratch(model, [tr.emb[i] for i in tr.in_cache], list(range(len(pos))))).abs().max() > 1e-3


def test_window_before_it_fills_equals_scratch_multilayer(small_model):
    model = small_model
    gen = torch.Generator().manual_seed(1)
    tr = Tracked(model)
    logits = _drive(tr, model, turns=3, window=8, gen=gen)
    assert tr.w.positions.tolist() == list(range(tr.w.num_tokens))
    ref = _scratch(model, tr.emb, tr.pos)
    torch.testing.assert_close(logits, ref, atol=TOL, rtol=0)


def test_window_after_eviction_equals_full_history_with_evicted_turns_masked(small_model):
    """Multi-layer: what eviction means exactly. The windowed logits equal a pass over the full
    history in which every token sees exactly what was cached when it was encoded, so the newest
    turn cannot see the evicted turns (while older retained turns did see them when encoded)."""
    model = small_model
    gen = torch.Generator().manual_seed(2)
    tr = Tracked(model)
    logits = _drive(tr, model, turns=6, window=2, gen=gen)
    n = len(tr.emb)
    allowed = torch.zeros(n, n, dtype=torch.bool)
    for i, seen in enumerate(tr.saw):
        allowed[i, list(seen)] = True
    mask = torch.zeros(1, 1, n, n)
    mask[0, 0][~allowed] = torch.finfo(torch.float32).min
    ref = _scratch(model, tr.emb, tr.pos, mask=mask)
    torch.testing.assert_close(logits, ref, atol=TOL, rtol=0)
    # the mask matters: with the evicted turns visible the logits are far off
    assert (logits - _scratch(model, tr.emb, tr.pos)).abs().max() > 1e-2
    # and the newest token indeed could not see the first (evicted) turn
    assert not tr.saw[-1] & set(range(11, 20))


def test_eviction_keeps_the_cache_bounded_over_200_turns(small_model):
    model = small_model
    gen = torch.Generator().manual_seed(3)
    w = KVWindow(model)
    d = model.hidden_size
    w.forward([Piece(torch.randn(5, d, generator=gen), PREFIX)])
    sizes = []
    for t in range(200):
        if w.num_turns == 4:
            removed = w.evict_oldest_turn()
            assert removed == 6
        w.forward([Piece(torch.randn(4, d, generator=gen), NEW_TURN)])
        w.forward([Piece(torch.randn(2, d, generator=gen), SAME_TURN)])
        sizes.append(w.cache_tokens())
        for layer in w.cache.layers:
            assert layer.keys.shape[-2] == layer.values.shape[-2] == w.num_tokens
    assert max(sizes) == 5 + 4 * 6
    assert sizes[3:] == [5 + 4 * 6] * 197  # constant once the window is full
    assert w.next_position == 5 + 200 * 6  # positions continue; the cache does not grow


def test_forward_rejects_bad_span_order(small_model):
    w = KVWindow(small_model)
    d = small_model.hidden_size
    with pytest.raises(ValueError, match="open turn"):
        w.forward([Piece(torch.zeros(1, d), SAME_TURN)])
    w.forward([Piece(torch.zeros(1, d), NEW_TURN)])
    with pytest.raises(ValueError, match="prefix"):
        w.forward([Piece(torch.zeros(1, d), PREFIX)])


def test_multilayer_window_is_not_a_fresh_pass_over_the_window(small_model):
    """Documents the approximation: in a multi-layer decoder the retained turns' keys/values were
    computed while the evicted turn was visible, so a fresh pass over only the retained tokens
    differs. A memory refresh re-encodes them (see agent tests)."""
    model = small_model
    gen = torch.Generator().manual_seed(2)
    tr = Tracked(model)
    logits = _drive(tr, model, turns=6, window=2, gen=gen)
    fresh = _scratch(model, [tr.emb[i] for i in tr.in_cache], tr.w.positions.tolist())
    assert (logits - fresh).abs().max() > 1e-2
