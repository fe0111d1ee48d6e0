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

Two storages, selected by ``kv_cache``:

- ``dynamic`` (the default, and the CPU path): a ``DynamicCache`` grown by concatenation; an
  eviction rebuilds every layer's tensors.
- ``static``: one transformers ``StaticCache`` allocated once at a known bound (``reserve``:
  prefix + memory + window turns), never reallocated while the bound holds. New keys/values are
  written at the layer's fill length (a device tensor), an eviction compacts the retained tokens
  in place (positions kept), and the attention mask is built from the fill length, so a one-token
  decode step has fixed shapes and fixed addresses and can be captured: a CUDA graph
  (``capture='cuda_graph'``, the default on CUDA) or ``torch.compile(mode='reduce-overhead')``
  (``capture='compile'``). Prefill stays eager through sdpa. Logits equal the dynamic path's
  within float error (tests/policy/streamvln/test_static_kv.py).
"""
from __future__ import annotations

import warnings
from collections import deque
from dataclasses import dataclass

import torch
from transformers import DynamicCache, StaticCache

from .config import DECODE_CAPTURES, KV_CACHES, DecodeCapture, KVCacheKind

CAPACITY_QUANTUM = 256  # static buffers grow in these steps, so a slightly longer instruction does not reallocate

PREFIX = "prefix"
NEW_TURN = "new_turn"
SAME_TURN = "same_turn"  # extends the newest turn (generated tokens, the closing of an answer)


@dataclass
class Piece:
    """A run of input embeddings ``[n, D]`` and which span of the cache it belongs to."""

    embeds: torch.Tensor
    span: str


class KVWindow:
    def __init__(self, model, kv_cache: KVCacheKind = "dynamic", capture: DecodeCapture = "auto"):
        if kv_cache not in KV_CACHES:
            raise ValueError(f"kv_cache must be one of {', '.join(KV_CACHES)}, got {kv_cache!r}")
        if capture not in DECODE_CAPTURES:
            raise ValueError(f"capture must be one of {', '.join(DECODE_CAPTURES)}, got {capture!r}")
        self.model = model
        self.kind = kv_cache
        self.capture = capture
        self.capacity = 0  # static: tokens the buffer holds
        self.cache = None
        self._step = None  # static: the captured one-token decode step (None: eager)
        self.capture_error: str | None = None  # why capture failed (then decode steps stay eager)
        self.reset()

    # ---- state ----------------------------------------------------------------------------
    def reset(self) -> None:
        if self.kind == "dynamic":
            self.cache = DynamicCache(config=self.model.text_config)
        elif self.cache is not None:  # static: keep the buffers (and a captured step's addresses)
            for layer in self.cache.layers:
                layer.cumulative_length.zero_()
        self.positions = torch.zeros(0, dtype=torch.long)  # position id of every cached token
        self.prefix_len = 0
        self.turn_lens: deque[int] = deque()
        self.next_position = 0

    def reserve(self, tokens: int) -> None:
        """Static storage: make room for ``tokens`` cached tokens (allocated once, rounded up to
        ``CAPACITY_QUANTUM``; a larger bound later reallocates and drops the captured step).
        Only while the window is empty. No-op for the dynamic storage."""
        if self.kind != "static" or tokens <= self.capacity:
            return
        if self.num_tokens:
            raise RuntimeError("reserve() needs an empty window (call reset() first)")
        cap = -(-int(tokens) // CAPACITY_QUANTUM) * CAPACITY_QUANTUM
        cfg = self.model.text_config
        cache = StaticCache(config=cfg, max_cache_len=cap)
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        cache.early_initialization(batch_size=1, num_heads=cfg.num_key_value_heads, head_dim=head_dim,
                                   dtype=self.model.dtype, device=self.model.device)
        self.cache, self.capacity, self._step = cache, cap, None

    @property
    def num_tokens(self) -> int:
        return int(self.positions.numel())

    @property
    def num_turns(self) -> int:
        return len(self.turn_lens)

    def cache_tokens(self) -> int:
        """Tokens actually held by the cache (checked against the bookkeeping)."""
        n = int(self.cache.get_seq_length()) if self.cache is not None else 0
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
        if self.kind == "dynamic":
            logits = self.model.decode(embeds, pos[None].to(embeds.device), cache=self.cache,
                                       logits_to_keep=logits_to_keep)
        else:
            logits = self._static_forward(embeds, pos, logits_to_keep)
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
        """Remove the oldest turn's keys and values from every layer; returns tokens removed.

        Dynamic: the layers' tensors are rebuilt without the span. Static: the tokens after the
        span are moved down over it in place and the fill length shrinks (nothing reallocated)."""
        if not self.turn_lens:
            return 0
        start = self.prefix_len
        stop = start + self.turn_lens.popleft()
        end = self.num_tokens
        for layer in self.cache.layers:
            if getattr(layer, "keys", None) is None or layer.keys.numel() == 0:
                continue
            if self.kind == "dynamic":
                layer.keys = torch.cat([layer.keys[..., :start, :], layer.keys[..., stop:, :]], dim=-2)
                layer.values = torch.cat([layer.values[..., :start, :], layer.values[..., stop:, :]], dim=-2)
            else:
                keep = end - stop  # overlapping ranges: copy through a temporary
                layer.keys[..., start:start + keep, :] = layer.keys[..., stop:end, :].clone()
                layer.values[..., start:start + keep, :] = layer.values[..., stop:end, :].clone()
                layer.cumulative_length.sub_(stop - start)
        self.positions = torch.cat([self.positions[:start], self.positions[stop:]])
        return stop - start

    def adopt(self, other: "KVWindow") -> None:
        """Take over ``other``'s tokens (a context prepared off the critical path); ``other`` is
        left empty. Static: the tokens are copied into this window's own buffers, so a captured
        decode step keeps its addresses."""
        if other.kind != self.kind:
            raise ValueError(f"cannot adopt a {other.kind} window into a {self.kind} one")
        n = other.num_tokens
        if self.kind == "dynamic":
            self.cache, other.cache = other.cache, None
        else:
            self.reset()
            self.reserve(n)
            for mine, theirs in zip(self.cache.layers, other.cache.layers):
                mine.keys[..., :n, :] = theirs.keys[..., :n, :]
                mine.values[..., :n, :] = theirs.values[..., :n, :]
                mine.cumulative_length.fill_(n)
        self.positions, self.prefix_len = other.positions, other.prefix_len
        self.turn_lens, self.next_position = deque(other.turn_lens), other.next_position
        other.reset()

    # ---- static storage -------------------------------------------------------------------
    def _fill(self) -> torch.Tensor:
        """Tokens in the static buffer, as the device tensor the layers update in place."""
        return self.cache.layers[0].cumulative_length

    def _mask(self, q: int) -> dict:
        """Causal mask by buffer index for ``q`` new tokens written at the fill length, over the
        whole buffer (slots past the fill are masked out). Built from the fill tensor, so a
        captured step needs no host value."""
        device = self.model.device
        cols = torch.arange(self.capacity, device=device)
        rows = self._fill().to(device) + torch.arange(q, device=device)
        return {"full_attention": (cols[None, :] <= rows[:, None])[None, None]}

    def step_fn(self, embeds: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        """One static decode step, ``embeds [1, 1, D]`` at ``position_ids [1, 1]``: what capture
        records. Shapes and addresses are the same at every call."""
        return self.model.decode_no_grad(embeds, position_ids, cache=self.cache, attention_mask=self._mask(1))

    def _static_forward(self, embeds: torch.Tensor, pos: torch.Tensor, logits_to_keep: int) -> torch.Tensor:
        n = embeds.shape[1]
        if self.num_tokens + n > self.capacity:
            raise RuntimeError(f"static KV buffer overflow: {self.num_tokens} + {n} tokens > capacity "
                               f"{self.capacity} (reserve() a larger bound)")
        pos = pos[None].to(embeds.device)
        if n == 1 and logits_to_keep == 1 and self._capture_mode() != "none" and self.capture_error is None:
            if self._step is not None:
                return self._step(embeds, pos)
            try:  # build and first call: torch.compile compiles on the first call
                self._step = self._build_step()
                return self._step(embeds, pos)
            except Exception as e:  # noqa: BLE001 - any capture failure: stay correct, eager
                self._step = None
                self.capture_error = f"{type(e).__name__}: {e}"
                for layer in self.cache.layers:  # a failed first call must not have moved the fill
                    layer.cumulative_length.fill_(self.num_tokens)
                warnings.warn(f"decode step capture ({self._capture_mode()}) failed, decoding eagerly: "
                              f"{self.capture_error}", RuntimeWarning, stacklevel=2)
                return self._static_forward(embeds, pos[0], logits_to_keep)
        # A prefill into an empty buffer needs no mask: sdpa's causal path keeps the first n keys
        # (what was just written) and can take the fused kernels an explicit mask rules out.
        mask = {"full_attention": None} if self.num_tokens == 0 and n > 1 else self._mask(n)
        return self.model.decode(embeds, pos, cache=self.cache, attention_mask=mask,
                                 logits_to_keep=logits_to_keep)

    @property
    def decode_path(self) -> str:
        """How one-token steps run: ``dynamic``, ``static-eager``, or ``static-<capture>``."""
        if self.kind == "dynamic":
            return "dynamic"
        mode = self._capture_mode()
        return "static-eager" if mode == "none" or self.capture_error else f"static-{mode}"

    def _capture_mode(self) -> str:
        if self.capture == "auto":
            return "cuda_graph" if self.model.device.type == "cuda" else "none"
        return self.capture

    def _build_step(self):
        mode = self._capture_mode()
        if mode == "compile":
            compiled = torch.compile(self.step_fn, mode="reduce-overhead", fullgraph=True)

            def step(embeds: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
                torch.compiler.cudagraph_mark_step_begin()  # a new inference step: earlier outputs may be reused
                return compiled(embeds, pos).clone()

            return step
        if self.model.device.type != "cuda":
            raise RuntimeError("capture='cuda_graph' needs the model on a CUDA device")
        return _CudaGraphStep(self)


class _CudaGraphStep:
    """``KVWindow.step_fn`` recorded once as a CUDA graph over static input buffers; each call
    copies the inputs in and replays it (the cache write and the fill increment are in the graph)."""

    def __init__(self, window: KVWindow, warm_runs: int = 3):
        model = window.model
        self.embeds = torch.zeros(1, 1, model.hidden_size, dtype=model.dtype, device=model.device)
        self.pos = torch.zeros(1, 1, dtype=torch.long, device=model.device)
        fill = window._fill()
        saved = fill.clone()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):  # kernels and workspaces chosen before capture
            for _ in range(warm_runs):
                window.step_fn(self.embeds, self.pos)
                for layer in window.cache.layers:  # undo the writes' fill increments
                    layer.cumulative_length.copy_(saved)
        torch.cuda.current_stream().wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.logits = window.step_fn(self.embeds, self.pos)
        for layer in window.cache.layers:  # capture records, it does not run: restore anyway
            layer.cumulative_length.copy_(saved)

    def __call__(self, embeds: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        self.embeds.copy_(embeds)
        self.pos.copy_(pos)
        self.graph.replay()
        return self.logits.clone()
