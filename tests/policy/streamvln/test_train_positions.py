"""Training windows carry the position ids the streaming agent gives the same tokens at run time.

The agent's KV window keeps every token at the position it was encoded with and never reuses the
positions of evicted turns, so at turn 40 the newest turn sits far past the instruction. A model
trained on contiguous windows never saw that distance (it lost the instruction and stopped after
~15 turns in the nav sim). A refresh re-encodes the window right after the prefix. Here a
scripted agent answers fixed actions; after every turn its cache's positions must equal the
training batch's for the same episode, token for token, with and without refreshes.
"""
from __future__ import annotations

import numpy as np
import pytest

from policy.streamvln.agent import StreamVLNAgent
from policy.streamvln.config import AgentConfig
from policy.streamvln.kv_window import SAME_TURN, Piece
from policy.streamvln.synthetic import BoxRoom, camera_pose, loop_actions, pinhole, rollout
from policy.streamvln.train import TurnSequences, build_batch

W, H = 64, 48
ANSWERS = [[1, 1, 2, 3], [2], [1, 1], [3, 3, 3, 3], [1, 2, 1], [1], [1, 1, 1, 1], [2, 2], [1, 3, 1], [1, 1, 1, 1],
           [3], [1, 1, 1, 0]]


def _pad(a):
    return a + [-1] * (4 - len(a))


@pytest.mark.parametrize("refresh", [1_000_000, 4, 2])
def test_training_positions_match_the_sliding_agent(small_model, tokenizer, refresh):
    seqs = TurnSequences(tokenizer)
    agent = StreamVLNAgent(small_model, tokenizer, AgentConfig(window_turns=3, memory_refresh_turns=refresh,
                                                               use_memory=False, stop_on_eos=False))
    instruction = "Walk past the red sofa and stop by the blue lamp."
    agent.reset(instruction)
    script = iter(ANSWERS)

    def generate(pieces):  # the agent's greedy loop, with the tokens chosen by the script
        ids = seqs.answer(next(script))
        agent.window.forward(pieces)
        for tok in ids[:-1]:
            agent.window.forward([Piece(agent.model.embed_ids([tok]), SAME_TURN)])
        return ids, [ids[-1]] + agent.prompt.newline_ids

    agent._generate = generate
    room, k = BoxRoom(), pinhole(W, H)
    states = rollout(loop_actions(4 * len(ANSWERS)))
    rgbs = []
    newline = len(agent.prompt.newline_ids)
    for t, answer in enumerate(ANSWERS):
        rgb, depth = room.render(camera_pose(*states[4 * t]), k, W, H)
        rgbs.append(rgb)
        agent.step(rgb, depth, k, camera_pose(*states[4 * t]))
        episode = {"rgb": np.stack(rgbs), "actions": np.array([_pad(a) for a in ANSWERS[:t + 1]], np.int8),
                   "instruction": instruction}
        _, mask, _, pos = build_batch(small_model, seqs, [episode], [(0, t)], 3, "cpu", refresh=refresh)
        n = int(mask[0].sum()) - 1 - newline   # the cache lacks the answer's last token and the newline
        cached = agent.window.positions.tolist()
        assert cached == pos[0, :n].tolist(), f"turn {t}"
    assert agent.window.num_turns == 3 and agent.memory_tokens is None
    # evictions left a gap (contiguous positions, what training used before, would not match),
    # which the refresh closes every few turns
    gap = cached[-1] + 1 - len(cached)
    assert gap > 300 if refresh > len(ANSWERS) else gap < 150, gap   # 9 evicted turns vs at most 3
