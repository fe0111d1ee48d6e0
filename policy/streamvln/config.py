"""Typed configuration for the StreamVLN agent, validated at construction.

Every error names the field and the allowed range. Model architecture settings live in the
transformers configs (``Qwen2Config``, ``SiglipVisionConfig``) plus :class:`VisionLanguageConfig`
for the parts LLaVA-Video adds (projector, pooling); the rest is about streaming.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

ContextMode = Literal["sliding", "tumbling", "recompute"]
CONTEXT_MODES = ("sliding", "tumbling", "recompute")
KVCacheKind = Literal["dynamic", "static"]
KV_CACHES = ("dynamic", "static")
DecodeCapture = Literal["auto", "cuda_graph", "compile", "none"]
DECODE_CAPTURES = ("auto", "cuda_graph", "compile", "none")
RefreshKind = Literal["inline", "incremental"]
REFRESHES = ("inline", "incremental")


def _check_int(name: str, value: int, lo: int, hi: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo or (hi is not None and value > hi):
        rng = f"[{lo}, {hi}]" if hi is not None else f">= {lo}"
        raise ValueError(f"{name} must be an integer in {rng}, got {value!r}")


def _check_float(name: str, value: float, lo: float, hi: float, lo_open: bool = False, hi_open: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value > lo if lo_open else value >= lo) and (value < hi if hi_open else value <= hi)
    if not ok:
        left, right = ("(" if lo_open else "["), (")" if hi_open else "]")
        raise ValueError(f"{name} must be a finite number in {left}{lo}, {hi}{right}, got {value!r}")


@dataclass(frozen=True)
class VisionLanguageConfig:
    """What LLaVA-Video adds around the decoder: projector and 2-D pooling of patch tokens.

    ``pool_mode='bilinear'`` with stride 2 turns SigLIP's 27x27 patch grid at 384 px into
    ceil(27/2)^2 = 14x14 = 196 tokens per frame, as LLaVA-Video / StreamVLN do (projector first,
    then pooling, as in the published ``encode_rgbd``).
    """

    projector_type: str = "mlp2x_gelu"
    pool_mode: Literal["bilinear", "average", "max"] = "bilinear"
    pool_stride: int = 2

    def __post_init__(self) -> None:
        if self.projector_type != "mlp2x_gelu":
            raise ValueError(f"projector_type must be 'mlp2x_gelu' (2-layer MLP), got {self.projector_type!r}")
        if self.pool_mode not in ("bilinear", "average", "max"):
            raise ValueError(f"pool_mode must be one of bilinear, average, max, got {self.pool_mode!r}")
        _check_int("pool_stride", self.pool_stride, 1, 8)


@dataclass(frozen=True)
class PromptConfig:
    """The prompt, in one place. ``{instruction}``, ``{memory}`` and ``{image}`` are placeholders.

    Layout of the token sequence (Qwen2 chat format)::

        prefix : <|im_start|>system\\n{system}<|im_end|>\\n
                 <|im_start|>user\\n{task}{memory_sentence}<|im_end|>\\n
        turn i : <|im_start|>user\\n{frame}<|im_end|>\\n<|im_start|>assistant\\n{answer}<|im_end|>\\n

    The memory sentence is left out while the memory is empty. The published code puts the task
    and the first frame in one user message; here the task is its own message so that the prefix
    is self-contained and every turn has the same shape (needed to slide the window).
    """

    system: str = "You are a helpful assistant."
    task: str = (
        "You are an autonomous navigation assistant. Your task is {instruction} Devise an action "
        "sequence to follow the instruction using the four actions: TURN LEFT (\u2190) or TURN RIGHT "
        "(\u2192) by 15 degrees, MOVE FORWARD (\u2191) by 25 centimeters, or STOP."
    )
    memory_sentence: str = " These are your historical observations {memory}."
    frame: str = "you can spot {image}."
    im_start: str = "<|im_start|>"
    im_end: str = "<|im_end|>"

    def __post_init__(self) -> None:
        if "{instruction}" not in self.task:
            raise ValueError("task must contain the placeholder {instruction}")
        if self.memory_sentence.count("{memory}") != 1:
            raise ValueError("memory_sentence must contain the placeholder {memory} exactly once")
        if self.frame.count("{image}") != 1:
            raise ValueError("frame must contain the placeholder {image} exactly once")
        if not self.im_start or not self.im_end:
            raise ValueError("im_start and im_end must be non-empty strings")


@dataclass(frozen=True)
class MemoryConfig:
    """Slow memory: 3-D aware pruning of past frames' pooled tokens.

    Geometry conventions: depth in metres, aligned with the RGB image (same size); intrinsics are
    the 3x3 pinhole matrix of that image; ``pose_world_from_camera`` is a 4x4 rigid transform from
    the OpenCV optical camera frame (x right, y down, z forward) into a fixed world frame.
    """

    voxel_size: float = 0.25
    block_frames: int = 8  # K: frames per temporal block
    min_keep_fraction: float = 0.1  # theta: frames keeping fewer of their tokens are dropped
    max_tokens: int = 8 * 196  # M: memory cap (published: 8 frames x 196 tokens)
    max_pool_frames: int = 128  # past frames held for sampling, thinned uniformly beyond this
    min_depth: float = 0.1
    max_depth: float = 10.0
    depth_samples_per_token: int = 4  # per side: 4 -> 16 depth samples per token cell
    min_valid_depth_fraction: float = 0.5  # of a token's samples, else the token is invalid
    prune: bool = True  # False: keep every valid token (the published behaviour, for comparison)

    def __post_init__(self) -> None:
        _check_float("voxel_size", self.voxel_size, 0.0, 100.0, lo_open=True)
        _check_int("block_frames", self.block_frames, 1, 10_000)
        _check_float("min_keep_fraction", self.min_keep_fraction, 0.0, 1.0)
        _check_int("max_tokens", self.max_tokens, 1, 1_000_000)
        _check_int("max_pool_frames", self.max_pool_frames, 1, 100_000)
        _check_float("min_depth", self.min_depth, 0.0, 1000.0)
        _check_float("max_depth", self.max_depth, 0.0, 1000.0, lo_open=True)
        if self.max_depth <= self.min_depth:
            raise ValueError(f"max_depth must be > min_depth ({self.min_depth}), got {self.max_depth}")
        _check_int("depth_samples_per_token", self.depth_samples_per_token, 1, 64)
        _check_float("min_valid_depth_fraction", self.min_valid_depth_fraction, 0.0, 1.0, lo_open=True)
        if not isinstance(self.prune, bool):
            raise ValueError(f"prune must be a bool, got {self.prune!r}")


@dataclass(frozen=True)
class AgentConfig:
    """Streaming agent.

    context_mode:
      ``sliding``   prefix + last ``window_turns`` turns; the oldest turn's K/V are sliced out of
                    the cache when a new turn arrives; nothing else is recomputed.
      ``tumbling``  the published behaviour: the whole cache is dropped every ``window_turns`` turns.
      ``recompute`` no reuse across turns: the same tokens as ``sliding`` re-encoded every turn.

    kv_cache: ``dynamic`` (default; the CPU path) or ``static`` (one buffer sized from the bound
    prefix + memory + window, a captured one-token decode step; for CUDA). See ``kv_window``.
    decode_capture: how the static path captures its decode step: ``auto`` (a CUDA graph on
    CUDA, eager elsewhere), ``cuda_graph``, ``compile`` (torch.compile reduce-overhead), ``none``.
    refresh (sliding): ``inline`` re-encodes prefix + window on the refresh turn itself;
    ``incremental`` prepares that context in a second cache over the turns before it (an even
    share per turn), so the refresh turn only swaps it in. See ``refresh``.
    """

    window_turns: int = 8
    actions_per_turn: int = 4
    max_new_tokens: int = 12
    context_mode: ContextMode = "sliding"
    memory_refresh_turns: int = 8  # sliding/recompute: memory (and so the prefix) refreshed this often
    # False: no 3-D memory in the prefix (a model trained without it); the refresh still re-encodes
    # prefix + window at contiguous positions every memory_refresh_turns, which bounds the distance
    # between the instruction and the newest turn
    use_memory: bool = True
    stop_on_eos: bool = True  # False: always decode max_new_tokens (benchmarks: equal work per turn)
    kv_cache: KVCacheKind = "dynamic"
    decode_capture: DecodeCapture = "auto"
    refresh: RefreshKind = "inline"
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)

    def __post_init__(self) -> None:
        _check_int("window_turns", self.window_turns, 1, 1024)
        _check_int("actions_per_turn", self.actions_per_turn, 1, 64)
        _check_int("max_new_tokens", self.max_new_tokens, 1, 4096)
        if self.context_mode not in CONTEXT_MODES:
            raise ValueError(f"context_mode must be one of {', '.join(CONTEXT_MODES)}, got {self.context_mode!r}")
        _check_int("memory_refresh_turns", self.memory_refresh_turns, 1, 1_000_000)
        if not isinstance(self.stop_on_eos, bool):
            raise ValueError(f"stop_on_eos must be a bool, got {self.stop_on_eos!r}")
        if not isinstance(self.use_memory, bool):
            raise ValueError(f"use_memory must be a bool, got {self.use_memory!r}")
        for name, value, allowed in (("kv_cache", self.kv_cache, KV_CACHES),
                                     ("decode_capture", self.decode_capture, DECODE_CAPTURES),
                                     ("refresh", self.refresh, REFRESHES)):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
        if not isinstance(self.memory, MemoryConfig):
            raise ValueError(f"memory must be a MemoryConfig, got {type(self.memory).__name__}")
        if not isinstance(self.prompt, PromptConfig):
            raise ValueError(f"prompt must be a PromptConfig, got {type(self.prompt).__name__}")


def device_agent_options(device) -> dict:
    """The ``AgentConfig`` options a torch device calls for: on CUDA the static KV buffer with a
    captured decode step and the memory refresh prepared incrementally; elsewhere none (the
    defaults: dynamic cache, inline refresh)."""
    return {"kv_cache": "static", "refresh": "incremental"} if str(device).startswith("cuda") else {}
