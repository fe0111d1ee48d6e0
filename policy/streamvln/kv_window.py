"""A turn-level sliding window over a transformers ``DynamicCache``.

Layout of the cache along the sequence axis::

    [ prefix (system, instruction, memory) | turn a | turn a+1 | ... | turn b ]

Every cached token keeps the RoPE position id it was encoded with (keys are stored already
rotated, so a position cannot change without re-encoding). New tokens get positions that
continue after the last position ever used, so after an eviction the position ids in the cache
have a gap where the evicted turn was. Attention depends on relative positions only, so the gap
is harmless, and positions do not grow without bound: a memory refresh re-encodes the prefix
and the window's turns at contiguous positions from 0 again (``reset`` + ``forward``).

Eviction slices the oldest turn's span out of every layer's key and value tensors; nothing else
is recomputed. What this buys, exactly: the next turn's logits equal a pass over the full
history in which the new tokens cannot attend to the evicted turns (tests/policy/streamvln
checks it to 1e-4). The retained turns' keys and values in layers above the first were computed
while the evicted turn was visible, so for a multi-layer decoder they are not what a fresh pass
over only the retained tokens would give (for one layer they are, and that is tested too);
the next memory refresh re-encodes them.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import torch
from transformers import DynamicCache

PREFIX = "prefix"
NEW_TURN = "new_turn"
SAME_TURN = "same_turn"  # extends the newest turn (generated tokens, the closing of an answer)


@dataclass
class Piece:
    """A run of input embeddings ``[n, D]`` and which span of the cache it belongs to."""

    embeds: torch.Tensor
    span: str


class KVWindow:
    def __init__(self, model):
        self.model = model
        self.reset()

    # ---- state ----------------------------------------------------------------------------
    def reset(self) -> None:
        self.cache = DynamicCache(config=self.model.text_config)
        self.positions = torch.zeros(0, dtype=torch.long)  # position id of every cached token
        self.prefix_len = 0
        self.turn_lens: deque[int] = deque()
        self.next_position = 0

    @property
    def num_tokens(self) -> int:
        return int(self.positions.numel())

    @property
    def num_turns(self) -> int:
        return len(self.turn_lens)

    def cache_tokens(self) -> int:
        """Tokens actually held by the cache (checked against the bookkeeping)."""
        n = self.cache.get_seq_length()
        if n != self.num_tokens:
            raise RuntimeError(f"KV cache holds {n} tokens but the window accounts for {self.num_tokens}")
        return n

    # ---- operations -----------------------------------------------------------------------
    def forward(self, pieces: list[Piece], logits_to_keep: int = 1) -> torch.Tensor:
        """Prefill ``pieces`` on top of the cache in one decoder pass; returns the last logits."""
        pieces = [p for p in pieces if p.embeds.shape[0] > 0]
        if not pieces:
            raise ValueError("forward needs at least one non-empty piece")
        for p in pieces:
            if p.span == PREFIX and self.turn_lens:
                raise ValueError("prefix tokens cannot be added after a turn")
            if p.span == SAME_TURN and not self.turn_lens and p is pieces[0]:
                raise ValueError("same_turn tokens need an open turn")
        embeds = torch.cat([p.embeds for p in pieces], dim=0)[None]
        n = embeds.shape[1]
        pos = torch.arange(self.next_position, self.next_position + n, dtype=torch.long)
        logits = self.model.decode(embeds, pos[None].to(embeds.device), cache=self.cache,
                                   logits_to_keep=logits_to_keep)
        self.positions = torch.cat([self.positions, pos])
        self.next_position += n
        for p in pieces:
            k = p.embeds.shape[0]
            if p.span == PREFIX:
                self.prefix_len += k
            elif p.span == NEW_TURN:
                self.turn_lens.append(k)
            else:
                self.turn_lens[-1] += k
        return logits

    def evict_oldest_turn(self) -> int:
        """Slice the oldest turn out of every layer's keys and values; returns tokens removed."""
        if not self.turn_lens:
            return 0
        start = self.prefix_len
        stop = start + self.turn_lens.popleft()
        for layer in self.cache.layers:
            if getattr(layer, "keys", None) is None or layer.keys.numel() == 0:
                continue
            layer.keys = torch.cat([layer.keys[..., :start, :], layer.keys[..., stop:, :]], dim=-2)
            layer.values = torch.cat([layer.values[..., :start, :], layer.values[..., stop:, :]], dim=-2)
        self.positions = torch.cat([self.positions[:start], self.positions[stop:]])
        return stop - start
