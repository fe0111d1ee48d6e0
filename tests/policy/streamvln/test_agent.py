"""The streaming agent: API, bounded cache, modes, bad input."""
from __future__ import annotations

import numpy as np
import pytest

from policy.streamvln.actions import Action
from policy.streamvln.agent import StreamVLNAgent
from policy.streamvln.config import AgentConfig, MemoryConfig, PromptConfig, VisionLanguageConfig
from policy.streamvln.synthetic import BoxRoom, camera_pose, loop_actions, pinhole, rollout

W, H = 64, 48
K = pinhole(W, H)
ROOM = BoxRoom()


def frames(n, every=4):
    states = rollout(loop_actions(n * every))
    for i in range(n):
        x, y, yaw = states[i * every]
        pose = camera_pose(x, y, yaw)
        rgb, depth = ROOM.render(pose, K, W, H)
        yield rgb, depth, K, pose


def make(model, tokenizer, **kw):
    kw.setdefault("max_new_tokens", 4)
    kw.setdefault("stop_on_eos", False)
    kw.setdefault("memory", MemoryConfig(max_tokens=16, block_frames=4))
    agent = StreamVLNAgent(model, tokenizer, AgentConfig(**kw))
    agent.reset("Walk to the red wall and stop.")
    return agent


def test_frame_tokens_are_196_at_384px(full_grid_model):
    m = full_grid_model
    assert m.patches_per_side == 27 and m.tokens_per_frame == 196
    rgb = np.zeros((480, 640, 3), dtype=np.uint8)
    assert m.encode_frames(m.preprocess(rgb)).shape == (1, 196, m.hidden_size)


def test_step_api_and_stats(small_model, tokenizer):
    agent = make(small_model, tokenizer, max_new_tokens=6, stop_on_eos=True)
    for rgb, depth, k, pose in frames(3):
        actions = agent.step(rgb, depth, k, pose)
        assert 1 <= len(actions) <= 4 and all(isinstance(a, Action) for a in actions)
    s = agent.stats.as_dict()
    for key in ("last_turn_latency_s", "window_tokens", "memory_tokens", "pruning_ratio", "skipped_frames",
                "peak_cache_tokens", "parse_failures", "skip_reasons", "parse_reasons"):
        assert key in s
    assert s["turns"] == 3 and s["window_turns"] == 3 and s["last_turn_latency_s"] > 0
    # a random model does not speak the action language: each failure is a STOP with a reason
    assert s["parse_failures"] == sum(s["parse_reasons"].values())


@pytest.mark.slow
def test_sliding_cache_stays_bounded_over_200_turns(small_model, tokenizer):
    agent = make(small_model, tokenizer, window_turns=4, memory_refresh_turns=4)
    sizes, memory = [], []
    for rgb, depth, k, pose in frames(200):
        agent.step(rgb, depth, k, pose)
        sizes.append(agent.stats.cache_tokens)
        memory.append(agent.stats.memory_tokens)
        assert agent.stats.window_turns <= 4
    assert max(memory) <= 16 and set(memory[20:]) == {16}  # filled to the cap M, exactly
    pb = agent.prompt
    text = lambda segs: sum(len(x) for x in segs if isinstance(x, list))  # noqa: E731
    turn_max = text(pb.turn()) + small_model.tokens_per_frame + 4 + 2  # answer <= 4 tokens, + closing
    bound = text(pb.prefix(agent.instruction, with_memory=True)) + 16 + 4 * turn_max
    assert max(sizes) <= bound and agent.stats.peak_cache_tokens <= bound
    # flat once the window is full: only the closing of an answer (2 or 3 tokens) varies per turn
    assert max(sizes[20:]) - min(sizes[20:]) <= 4
    assert agent.stats.evicted_turns == 196
    assert agent.window.next_position < 2 * max(sizes)  # refreshes re-base positions: no drift


def test_sliding_equals_recompute_until_the_first_eviction(small_model, tokenizer):
    slide = make(small_model, tokenizer, window_turns=4, memory_refresh_turns=4, context_mode="sliding")
    full = make(small_model, tokenizer, window_turns=4, memory_refresh_turns=4, context_mode="recompute")
    for i, (rgb, depth, k, pose) in enumerate(frames(5)):
        slide.step(rgb, depth, k, pose)
        full.step(rgb, depth, k, pose)
        # turns 0-3 fill the window, turn 4 is a refresh: both hold exactly the same tokens
        assert slide.stats.last_answer == full.stats.last_answer, i
        assert slide.stats.cache_tokens == full.stats.cache_tokens
    assert slide.stats.last_prefill_tokens == full.stats.last_prefill_tokens  # the refresh re-encodes all


def test_tumbling_resets_every_window(small_model, tokenizer):
    agent = make(small_model, tokenizer, window_turns=3, context_mode="tumbling")
    turns = []
    for rgb, depth, k, pose in frames(7):
        agent.step(rgb, depth, k, pose)
        turns.append(agent.stats.window_turns)
    assert turns == [1, 2, 3, 1, 2, 3, 1]
    assert agent.stats.memory_tokens > 0


def test_bad_frames_are_skipped_and_counted(small_model, tokenizer):
    agent = make(small_model, tokenizer)
    rgb, depth, k, pose = next(frames(1))
    skewed = pose.copy()
    skewed[:3, :3] *= 1.2
    assert agent.step(rgb, depth, k, skewed) == []
    assert agent.step(rgb, depth, np.diag([-1.0, 1.0, 1.0]), pose) == []
    assert agent.step(rgb, depth[:-1], k, pose) == []
    bad_rgb = rgb.astype(np.float32)
    bad_rgb[0, 0, 0] = np.nan
    assert agent.step(bad_rgb, depth, k, pose) == []
    assert agent.step(rgb[..., :2], depth, k, pose) == []
    assert agent.step(rgb.astype(np.uint16), depth, k, pose) == []
    assert agent.step(rgb, (depth * 1000).astype(np.uint16), k, pose) == []  # millimetres: not converted
    s = agent.stats
    assert s.skipped_frames == 7 and s.turns == 0
    assert dict(s.skip_reasons) == {"pose": 1, "intrinsics": 1, "depth_shape": 1, "rgb_not_finite": 1,
                                    "rgb_shape": 1, "rgb_dtype": 1, "depth_dtype": 1}
    # depth that is all NaN: the turn runs (RGB is fine) but the frame stays out of the 3-D memory
    assert len(agent.step(rgb, np.full_like(depth, np.nan), k, pose)) >= 1
    assert s.turns == 1 and s.memory.frames_without_depth == 1 and s.memory.invalid_depth_tokens == 4


def test_instruction_and_call_order(small_model, tokenizer):
    agent = StreamVLNAgent(small_model, tokenizer, AgentConfig())
    rgb, depth, k, pose = next(frames(1))
    with pytest.raises(RuntimeError, match="reset"):
        agent.step(rgb, depth, k, pose)
    for bad in ("", "   ", None):
        with pytest.raises(ValueError, match="instruction"):
            agent.reset(bad)
    with pytest.raises(ValueError, match="placeholder"):
        agent.reset("go to {image}")


@pytest.mark.parametrize("field,value", [("window_turns", 0), ("actions_per_turn", 0), ("max_new_tokens", 0),
                                         ("context_mode", "ring"), ("memory_refresh_turns", 0),
                                         ("stop_on_eos", "yes")])
def test_agent_config_errors_name_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        AgentConfig(**{field: value})


def test_other_config_errors():
    with pytest.raises(ValueError, match="pool_stride"):
        VisionLanguageConfig(pool_stride=0)
    with pytest.raises(ValueError, match="projector_type"):
        VisionLanguageConfig(projector_type="linear")
    with pytest.raises(ValueError, match="instruction"):
        PromptConfig(task="no placeholder")
    with pytest.raises(ValueError, match="image"):
        PromptConfig(frame="no placeholder")


def test_tokenizer_without_chat_markers_is_refused(small_model):
    from policy.streamvln.tiny import build_tiny_tokenizer

    tok = build_tiny_tokenizer()
    cfg = AgentConfig(prompt=PromptConfig(im_end="<|end|>"))
    with pytest.raises(ValueError, match="single"):
        StreamVLNAgent(small_model, tok, cfg)
