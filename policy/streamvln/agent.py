"""The streaming agent the nav node wraps: one call per dialogue turn.

    agent = StreamVLNAgent(model, tokenizer, AgentConfig())
    agent.reset("Walk past the sofa and stop at the door.")
    actions = agent.step(rgb, depth, intrinsics, pose_world_from_camera)  # up to 4 Actions
    agent.stats.as_dict()

Inputs of ``step``: ``rgb`` uint8 ``[H, W, 3]``; ``depth`` float metres ``[H, W]`` aligned with
it (NaN / 0 = no reading; integer depth such as 16UC1 millimetres is refused, convert it first); ``intrinsics`` 3x3 of that image; ``pose_world_from_camera`` 4x4, OpenCV
optical camera frame into a fixed world frame (e.g. odom). A frame that cannot be used (bad
shape, non-finite RGB, bad intrinsics, non-orthonormal pose) is skipped: ``step`` returns ``[]``
(hold still) and ``stats.skipped_frames`` counts it by reason. Depth holes only remove the
affected tokens from the 3-D memory; a frame without any valid depth still drives the turn but
is not placed in memory (``stats.memory.frames_without_depth``).

Cost per turn in ``sliding`` mode: the vision tower on one frame, a prefill of the new turn's
tokens (~196 + 20) against the cached context, and the decoding of the answer. Every
``memory_refresh_turns`` turns the memory is rebuilt and the prefix *and the window's turns*
are re-encoded (their keys depend on the prefix): a prefill of about
prefix + memory (<= M) + window_turns x turn tokens, i.e. the cost of one full-recompute turn,
paid once per refresh interval. With ``use_memory=False`` the refresh keeps its second job only:
re-encoding at contiguous positions, so the newest turn never sits more than
``memory_refresh_turns + window_turns`` turns past the instruction.

``AgentConfig.refresh='incremental'`` (sliding) prepares that refresh over the turns before it
(:mod:`.refresh`), so the refresh turn costs a normal turn and the others a share of it.
``kv_cache='static'`` keeps the context in one buffer sized from ``context_bound`` with a
captured decode step (:mod:`.kv_window`). ``warm_up()`` before the first episode pays the
first-use costs (allocations, kernel selection, the capture) so that no turn does.
"""
from __future__ import annotations

import time
from collections import Counter, deque
from dataclasses import dataclass, field

import numpy as np
import torch

from .actions import Action, parse_actions
from .config import AgentConfig, device_agent_options
from .kv_window import NEW_TURN, PREFIX, SAME_TURN, KVWindow, Piece
from .memory import SpatialMemory, backproject_tokens, validate_intrinsics, validate_pose
from .prompt import IMAGE, MEMORY, PromptBuilder
from .refresh import RefreshPrep, first_kept_turn, next_refresh_turn, prep_start_turn

WARM_UP_INSTRUCTION = ("Walk forward past the table, turn left at the end of the hallway, go through the door "
                       "on your right and stop next to the plant by the window.")
WARM_UP_HEADROOM = 512  # extra static-buffer tokens reserved by warm_up for longer instructions


@dataclass
class TurnRecord:
    turn: int
    frame: torch.Tensor  # [T, D] frame tokens
    answer_ids: list[int]  # everything after the assistant header, closing tokens included


@dataclass
class AgentStats:
    turns: int = 0
    last_turn_latency_s: float = 0.0
    last_prefill_tokens: int = 0
    last_generated_tokens: int = 0
    cache_tokens: int = 0
    peak_cache_tokens: int = 0
    window_tokens: int = 0  # cached tokens of the dialogue turns
    window_turns: int = 0
    prefix_tokens: int = 0
    memory_tokens: int = 0
    memory_frames: int = 0
    memory_refreshes: int = 0
    last_refresh_prep_tokens: int = 0  # incremental refresh: tokens of the next refresh encoded this turn
    evicted_turns: int = 0
    skipped_frames: int = 0
    skip_reasons: Counter = field(default_factory=Counter)
    parse_failures: int = 0
    parse_reasons: Counter = field(default_factory=Counter)
    last_answer: str = ""
    memory: object = None  # MemoryStats

    @property
    def pruning_ratio(self) -> float:
        return self.memory.pruning_ratio if self.memory is not None else 0.0

    def as_dict(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k != "memory"}
        d["skip_reasons"] = dict(self.skip_reasons)
        d["parse_reasons"] = dict(self.parse_reasons)
        d["pruning_ratio"] = self.pruning_ratio
        if self.memory is not None:
            d["memory_stats"] = dict(self.memory.__dict__)
        return d


class StreamVLNAgent:
    def __init__(self, model, tokenizer, config: AgentConfig | None = None):
        self.model = model.eval()
        self.config = config or AgentConfig()
        self.prompt = PromptBuilder(tokenizer, self.config.prompt)
        self.tokenizer = tokenizer
        self.window = KVWindow(model, self.config.kv_cache, self.config.decode_capture)
        # incremental refresh: the next refresh's context is encoded here (never captured)
        self._shadow = KVWindow(model, self.config.kv_cache, "none") if self._incremental else None
        self.memory = SpatialMemory(self.config.memory)
        stop = {self.prompt.im_end_id}
        if getattr(tokenizer, "eos_token_id", None) is not None:
            stop.add(int(tokenizer.eos_token_id))
        self.stop_ids = stop if self.config.stop_on_eos else set()
        self.instruction: str | None = None
        self.stats = AgentStats(memory=self.memory.stats)
        self.warm_up_s: float | None = None  # seconds the last warm_up() took

    @property
    def _incremental(self) -> bool:
        return self.config.refresh == "incremental" and self.config.context_mode == "sliding"

    def context_bound(self, instruction: str) -> int:
        """Most tokens the cache can hold in an episode with ``instruction``: the prefix with the
        memory at its cap, and ``window_turns`` turns each with the longest answer and its closing."""
        cfg, p = self.config, self.prompt
        text = sum(len(s) for s in p.prefix(" ".join(instruction.split()), with_memory=cfg.use_memory)
                   if isinstance(s, list))
        memory = cfg.memory.max_tokens if cfg.use_memory else 0
        turn_text = sum(len(s) for s in p.turn() if isinstance(s, list))
        turn = (turn_text + self.model.tokens_per_frame + cfg.max_new_tokens
                + max(len(p.newline_ids), len(p.close_ids)))
        return text + memory + cfg.window_turns * turn

    # ---- episode ---------------------------------------------------------------------------
    def reset(self, instruction: str) -> None:
        if not isinstance(instruction, str) or not instruction.strip():
            raise ValueError("instruction must be a non-empty string")
        self.instruction = " ".join(instruction.split())
        self.prompt.prefix(self.instruction, with_memory=False)  # placeholder check, fails early
        self.window.reset()
        self.window.reserve(self.context_bound(self.instruction))
        if self._shadow is not None:
            self._shadow.reset()
            self._shadow.reserve(self.context_bound(self.instruction))
        self.memory.reset()
        self.turns: deque[TurnRecord] = deque()
        self.memory_tokens: torch.Tensor | None = None
        self._prep: RefreshPrep | None = None
        self.pending: list[int] = []  # closing tokens of the last answer, not in the cache yet
        self._turn = 0
        self.stats = AgentStats(memory=self.memory.stats)

    def warm_up(self, turns: int | None = None) -> float:
        """A throwaway episode of synthetic frames, long enough to evict and to refresh (prepared
        or inline), so that the first-use costs (allocations, kernel choice, the decode step's
        capture) are paid here and not by a turn. Reserves the static buffer with
        ``WARM_UP_HEADROOM`` tokens to spare for longer instructions. Leaves the agent needing
        ``reset``; returns the seconds it took (also in ``warm_up_s``)."""
        from .synthetic import camera_pose, pinhole

        t0 = time.perf_counter()
        cfg = self.config
        n = turns if turns is not None else max(cfg.window_turns, cfg.memory_refresh_turns) + 2
        h, w = 48, 64
        K = pinhole(w, h)
        rng = np.random.default_rng(0)
        depth = np.full((h, w), 2.0, np.float32)
        self.reset(WARM_UP_INSTRUCTION)
        for win in (self.window, self._shadow):
            if win is not None:
                win.reserve(self.context_bound(WARM_UP_INSTRUCTION) + WARM_UP_HEADROOM)
        for t in range(n):
            rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            self.step(rgb, depth, K, camera_pose(0.25 * t, 0.0, 0.05 * t))
        self.reset(WARM_UP_INSTRUCTION)  # drop the episode, keep the buffers
        self.instruction = None
        if self.model.device.type == "cuda":
            torch.cuda.synchronize(self.model.device)
        self.warm_up_s = time.perf_counter() - t0
        return self.warm_up_s

    # ---- one turn --------------------------------------------------------------------------
    def step(self, rgb, depth, intrinsics, pose_world_from_camera) -> list[Action]:
        if self.instruction is None:
            raise RuntimeError("call reset(instruction) before step()")
        t0 = time.perf_counter()
        reason = self._check_frame(rgb, depth, intrinsics, pose_world_from_camera)
        if reason is not None:
            self.stats.skipped_frames += 1
            self.stats.skip_reasons[reason] += 1
            return []
        model = self.model
        frame = model.encode_frames(model.preprocess(np.asarray(rgb)))[0]
        t = self._turn
        if self.config.use_memory:
            geometry = backproject_tokens(depth, intrinsics, pose_world_from_camera, model.pooled_side, self.config.memory)
            self.memory.add(t, frame, geometry)

        pieces = self._context_pieces(t, frame)
        generated, tail = self._generate(pieces)
        self.turns.append(TurnRecord(turn=t, frame=frame, answer_ids=generated[:-1] + tail))
        self.pending = tail
        self.stats.last_refresh_prep_tokens = self._prepare_refresh(t) if self._incremental else 0

        text = self.prompt.decode([g for g in generated if g not in self.stop_ids])
        parsed = parse_actions(text, max_actions=self.config.actions_per_turn, end_markers=(self.config.prompt.im_end,))
        st = self.stats
        if not parsed.ok:
            st.parse_failures += 1
            st.parse_reasons[parsed.reason] += 1
        self._turn += 1
        st.turns = self._turn
        st.last_answer = text
        st.last_generated_tokens = len(generated)
        st.cache_tokens = self.window.cache_tokens()
        st.prefix_tokens = self.window.prefix_len
        st.window_tokens = st.cache_tokens - self.window.prefix_len
        st.window_turns = self.window.num_turns
        st.memory_tokens = 0 if self.memory_tokens is None else int(self.memory_tokens.shape[0])
        st.memory_frames = self.memory.stats.last_memory_frames if self.memory_tokens is not None else 0
        st.last_turn_latency_s = time.perf_counter() - t0
        return list(parsed.actions)

    def _check_frame(self, rgb, depth, intrinsics, pose) -> str | None:
        rgb = np.asarray(rgb)
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.shape[0] < 1 or rgb.shape[1] < 1:
            return "rgb_shape"
        if rgb.dtype != np.uint8 and not np.issubdtype(rgb.dtype, np.floating):
            return "rgb_dtype"
        if rgb.dtype != np.uint8 and not np.isfinite(rgb).all():
            return "rgb_not_finite"
        depth = np.asarray(depth)
        if depth.shape != rgb.shape[:2]:
            return "depth_shape"
        if not np.issubdtype(depth.dtype, np.floating):  # e.g. 16UC1 millimetres: convert first
            return "depth_dtype"
        try:
            validate_intrinsics(intrinsics)
        except ValueError:
            return "intrinsics"
        try:
            validate_pose(pose)
        except ValueError:
            return "pose"
        return None

    # ---- context management ----------------------------------------------------------------
    def _embed_segments(self, segments: list, frame: torch.Tensor | None,
                        memory_tokens: torch.Tensor | None = None) -> list[torch.Tensor]:
        out = []
        for seg in segments:
            if seg == MEMORY:
                if memory_tokens is not None:
                    out.append(memory_tokens)
            elif seg == IMAGE:
                out.append(frame)
            else:
                out.append(self.model.embed_ids(seg))
        return out

    def _prefix_piece(self, memory_tokens: torch.Tensor | None) -> Piece:
        segs = self.prompt.prefix(self.instruction, with_memory=memory_tokens is not None)
        return Piece(torch.cat(self._embed_segments(segs, None, memory_tokens)), PREFIX)

    def _turn_piece(self, frame: torch.Tensor, answer_ids: list[int] | None = None) -> Piece:
        parts = self._embed_segments(self.prompt.turn(), frame)
        if answer_ids:
            parts.append(self.model.embed_ids(answer_ids))
        return Piece(torch.cat(parts), NEW_TURN)

    def _refresh_memory(self, before_turn: int) -> None:
        if self.config.use_memory:
            self.memory_tokens, _ = self.memory.build(before_turn)
        self.stats.memory_refreshes += 1

    def _context_pieces(self, t: int, frame: torch.Tensor) -> list[Piece]:
        cfg = self.config
        W, R = cfg.window_turns, cfg.memory_refresh_turns
        new_turn = self._turn_piece(frame)
        if cfg.context_mode == "tumbling":
            if t % W == 0:  # the published reset: drop everything, rebuild prefix + memory
                self.stats.evicted_turns += len(self.turns)
                self.turns.clear()
                if t > 0:
                    self._refresh_memory(before_turn=t)
                self.window.reset()
                self.pending = []
                return [self._prefix_piece(self.memory_tokens), new_turn]
            return self._pending_pieces() + [new_turn]

        # sliding / recompute: the same tokens, the window holds the last W turns.
        evict = len(self.turns) == W
        if evict:
            self.turns.popleft()
            self.stats.evicted_turns += 1
        refresh = t > 0 and t % R == 0
        if refresh and self._prep is not None and self._prep.target == t:
            return self._adopt_prepared(new_turn)
        if refresh:
            self._refresh_memory(before_turn=self.turns[0].turn if self.turns else t)
        if cfg.context_mode == "recompute" or refresh or t == 0:
            self.window.reset()
            self.pending = []
            return [self._prefix_piece(self.memory_tokens)] + [self._turn_piece(r.frame, r.answer_ids) for r in self.turns] + [new_turn]
        if evict:
            if self.window.num_turns == 1:  # W == 1: the turn being evicted is the open one
                self.pending = []
            self.window.evict_oldest_turn()
        return self._pending_pieces() + [new_turn]

    # ---- incremental refresh (see .refresh) ------------------------------------------------
    def _prepare_refresh(self, t: int) -> int:
        """At the end of turn ``t``: start or continue preparing the next refresh; returns the
        tokens encoded for it now."""
        cfg = self.config
        W, R = cfg.window_turns, cfg.memory_refresh_turns
        target = next_refresh_turn(t, R)
        if self._prep is None or self._prep.target != target:
            if t != prep_start_turn(target, W, R):
                return 0
            first = first_kept_turn(target, W)
            memory = self.memory.build(first)[0] if cfg.use_memory else None
            turn_tokens = self.window.turn_lens[-1] + len(self.pending) if self.window.turn_lens else 0
            self._prep = RefreshPrep.start(target, first, t, memory, self._shadow, self._prefix_piece(memory),
                                           turn_tokens)
        prep = self._prep
        for r in self.turns:  # the kept turns that have answered, in order
            if prep.enqueued_through < r.turn <= t and r.turn >= prep.first:
                prep.enqueue_turn(r.turn, self._turn_piece(r.frame, r.answer_ids))
        return prep.end_of_turn()

    def _adopt_prepared(self, new_turn: Piece) -> list[Piece]:
        prep, self._prep = self._prep, None
        prep.work()  # normally nothing is left
        if not prep.ready:
            raise RuntimeError(f"refresh for turn {prep.target} is incomplete (turns through "
                               f"{prep.enqueued_through} encoded)")
        self.memory_tokens = prep.memory_tokens
        self.stats.memory_refreshes += 1
        self.window.adopt(prep.window)
        self.pending = []
        return [new_turn]

    def _pending_pieces(self) -> list[Piece]:
        if not self.pending:
            return []
        return [Piece(self.model.embed_ids(self.pending), SAME_TURN)]

    def _generate(self, pieces: list[Piece]) -> tuple[list[int], list[int]]:
        """Greedy decoding; returns the generated ids and the closing tail (not yet cached)."""
        window = self.window
        logits = window.forward(pieces)
        self.stats.last_prefill_tokens = sum(p.embeds.shape[0] for p in pieces)
        self.stats.peak_cache_tokens = max(self.stats.peak_cache_tokens, window.num_tokens)
        generated: list[int] = []
        for i in range(self.config.max_new_tokens):
            tok = int(torch.argmax(logits[0, -1]).item())
            generated.append(tok)
            if tok in self.stop_ids or i == self.config.max_new_tokens - 1:
                break
            logits = window.forward([Piece(self.model.embed_ids([tok]), SAME_TURN)])
            self.stats.peak_cache_tokens = max(self.stats.peak_cache_tokens, window.num_tokens)
        last = generated[-1]
        tail = [last] + (self.prompt.newline_ids if last == self.prompt.im_end_id else self.prompt.close_ids)
        # The tail enters the cache at the start of the next turn's prefill (in the same pass).
        self.stats.peak_cache_tokens = max(self.stats.peak_cache_tokens, window.num_tokens + len(tail))
        return generated, tail


def agent_for_device(model, tokenizer, config: AgentConfig | None = None) -> StreamVLNAgent:
    """A :class:`StreamVLNAgent` set up for ``model``'s device: on CUDA with
    :func:`~.config.device_agent_options` applied and warmed up (so the first turn of the first
    episode pays no capture or first-use cost); elsewhere exactly ``StreamVLNAgent(model,
    tokenizer, config)``."""
    import dataclasses

    config = config or AgentConfig()
    options = device_agent_options(model.device)
    agent = StreamVLNAgent(model, tokenizer, dataclasses.replace(config, **options) if options else config)
    if options:
        agent.warm_up()
    return agent
