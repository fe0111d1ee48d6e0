"""The strict answer parser."""
from __future__ import annotations

import math

import pytest

from policy.streamvln.actions import Action, format_actions, parse_actions

F, L, R, S = Action.MOVE_FORWARD, Action.TURN_LEFT, Action.TURN_RIGHT, Action.STOP


@pytest.mark.parametrize("text,expected", [
    ("\u2191\u2191\u2190\u2192", (F, F, L, R)),
    ("\u2191 \u2190, STOP", (F, L, S)),
    ("STOP", (S,)),
    ("\u2192<|im_end|>", (R,)),
    ("\u2191\u2191<|im_end|>\n", (F, F)),
    ("MOVE FORWARD, TURN LEFT TURN RIGHT", (F, L, R)),
    ("  \u2191  ", (F,)),
])
def test_good_answers(text, expected):
    res = parse_actions(text)
    assert res.ok and res.reason == "ok" and res.actions == expected


@pytest.mark.parametrize("text,reason", [
    ("", "empty"),
    ("<|im_end|>", "empty"),
    ("go forward", "unknown_text"),
    ("\u2191\u2191x", "unknown_text"),
    ("\u2191\u2191\u2191\u2191\u2191", "too_many_actions"),
    ("STOP \u2191", "action_after_stop"),
    ("\u2191<|im_end|>\u2190", "text_after_end"),
    ("\ufffd\ufffd", "unknown_text"),
    (None, "not_text"),
])
def test_bad_answers_become_stop_with_a_reason(text, reason):
    res = parse_actions(text)
    assert not res.ok and res.reason == reason and res.actions == (S,)


def test_max_actions_and_round_trip():
    acts = (F, L, R, S)
    assert parse_actions(format_actions(acts)).actions == acts
    assert parse_actions("\u2191\u2191", max_actions=1).reason == "too_many_actions"


def test_action_geometry():
    assert F.forward_m == 0.25 and F.yaw_rad == 0
    assert math.degrees(L.yaw_rad) == pytest.approx(15) and math.degrees(R.yaw_rad) == pytest.approx(-15)
    assert [int(a) for a in (S, F, L, R)] == [0, 1, 2, 3]  # the published indices
