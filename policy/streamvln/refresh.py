"""A memory refresh prepared off the critical path (``AgentConfig.refresh='incremental'``).

In ``sliding`` mode, refresh turn T (every ``R = memory_refresh_turns``) rebuilds the memory
from frames older than the window's oldest kept turn ``first = max(0, T - W + 1)`` and re-encodes
``prefix(memory) + turns first..T-1`` at contiguous positions before the new turn: a prefill of
about prefix + M + (W - 1) turns on that one turn (``inline``). Everything in it is known before T:
the memory's frames once turn ``first - 1`` has run, turn k's tokens once turn k has answered. So
the same context is encoded into a second cache over the turns before T: preparation starts at
the end of turn ``k0 = max(T - R, T - W)`` (the memory is built then), each later turn enqueues
its own tokens when it ends, and every turn from k0 to T - 1 encodes an even share of the total
(the last one all that is left). Turn T then swaps the prepared cache in and prefills only its own
tokens. Chunked prefill gives the one-pass logits within float error (tested).

What differs from ``inline``: the memory is built at turn k0, so the 3-D pruning of the block
still being filled sees the frames added by then, not those of turns k0+1..T-1 (which are in the
window anyway). Total work is the same; it is spread over R turns instead of paid on one.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import torch

from .kv_window import NEW_TURN, SAME_TURN, KVWindow, Piece


def next_refresh_turn(turn: int, every: int) -> int:
    """The first refresh turn after ``turn`` (refreshes fall on positive multiples of ``every``)."""
    return (turn // every + 1) * every


def first_kept_turn(refresh_turn: int, window_turns: int) -> int:
    """The oldest turn the window keeps at ``refresh_turn`` (the memory holds the frames before it)."""
    return max(0, refresh_turn - window_turns + 1)


def prep_start_turn(refresh_turn: int, window_turns: int, every: int) -> int:
    """The turn at whose end preparation for ``refresh_turn`` starts: the previous refresh, or the
    last turn the refreshed window drops, whichever is later (its frame is the memory's newest)."""
    return max(refresh_turn - every, refresh_turn - window_turns)


@dataclass
class RefreshPrep:
    """The context of refresh turn ``target`` being encoded into ``window`` chunk by chunk."""

    target: int
    first: int  # oldest kept turn
    memory_tokens: torch.Tensor | None
    window: KVWindow
    slots_left: int  # turn ends left to do the work in (this one included)
    budget: int  # tokens per turn end
    queue: deque = field(default_factory=deque)  # Pieces not yet encoded
    enqueued_through: int = -1  # newest turn whose tokens are queued (first - 1: none yet)

    @classmethod
    def start(cls, target: int, first: int, start: int, memory_tokens, window: KVWindow, prefix: Piece,
              turn_tokens: int) -> "RefreshPrep":
        """``turn_tokens``: the expected size of one turn, to share the work evenly."""
        window.reset()
        slots = target - start
        total = prefix.embeds.shape[0] + (target - first) * turn_tokens
        prep = cls(target=target, first=first, memory_tokens=memory_tokens, window=window, slots_left=slots,
                   budget=max(1, math.ceil(total / slots)), enqueued_through=first - 1)
        prep.queue.append(prefix)
        return prep

    @property
    def queued_tokens(self) -> int:
        return sum(p.embeds.shape[0] for p in self.queue)

    def enqueue_turn(self, turn: int, piece: Piece) -> None:
        if turn != self.enqueued_through + 1:
            raise ValueError(f"turn {turn} enqueued after turn {self.enqueued_through}")
        if not self.first <= turn < self.target:
            raise ValueError(f"turn {turn} is not kept by the refresh at turn {self.target}")
        self.queue.append(piece)
        self.enqueued_through = turn

    def work(self, max_tokens: int | None = None) -> int:
        """Encode up to ``max_tokens`` queued tokens (all with None); returns how many were encoded.
        A piece cut in two continues as SAME_TURN (a prefix piece stays PREFIX)."""
        left = self.queued_tokens if max_tokens is None else max_tokens
        done = 0
        chunk: list[Piece] = []
        while self.queue and left > 0:
            p = self.queue.popleft()
            n = p.embeds.shape[0]
            if n > left:
                chunk.append(Piece(p.embeds[:left], p.span))
                self.queue.appendleft(Piece(p.embeds[left:], SAME_TURN if p.span == NEW_TURN else p.span))
                n = left
            else:
                chunk.append(p)
            left -= n
            done += n
        if chunk:
            self.window.forward(chunk)
        return done

    def end_of_turn(self) -> int:
        """This turn's share of the work (everything left on the last turn before the target)."""
        self.slots_left -= 1
        return self.work(None if self.slots_left <= 0 else self.budget)

    @property
    def ready(self) -> bool:
        """Everything the refresh turn keeps is encoded."""
        return not self.queue and self.enqueued_through == self.target - 1
