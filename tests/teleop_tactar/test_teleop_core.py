"""Headset frame mapping, protocol parsing and feedback encoding, clutch retargeting, the
silence deadline, and the server's rejections, without ROS."""
import json
import math
import struct
import urllib.error
import urllib.request

import numpy as np
import pytest

from teleop_tactar import frames, protocol
from teleop_tactar.retarget import ArmRetargeter, RetargetConfig, Teleoperator, hand_for_target
from teleop_tactar.server import ServerConfig, TeleopServer

I_WXYZ = [1.0, 0.0, 0.0, 0.0]


def _hand(pos, quat=I_WXYZ, clutch=True, trigger=0.0, buttons=None):
    b = list(buttons or [False] * 5)
    b[protocol.BTN_GRIP] = clutch
    return protocol.Hand(np.array(pos, float), np.array(quat, float), trigger, tuple(b))


@pytest.mark.parametrize("unity_axis,world", [
    ([0, 0, 1], [1, 0, 0]),     # Unity forward -> robot +x
    ([1, 0, 0], [0, -1, 0]),    # Unity right   -> robot -y (robot +y is left)
    ([0, 1, 0], [0, 0, 1]),     # Unity up      -> robot +z
])
def test_hand_moving_along_each_unity_axis_moves_the_target_along_the_robot_axis(unity_axis, world):
    r = ArmRetargeter(RetargetConfig())
    tcp, q = np.array([0.1, 0.0, 0.2]), np.array([0.0, 0.0, 0.0, 1.0])
    assert r.update(_hand([0.3, 1.2, 0.4]), tcp, q) is not None              # clutch-in
    t = r.update(_hand(np.array([0.3, 1.2, 0.4]) + 0.05 * np.array(unity_axis)), tcp, q)
    np.testing.assert_allclose(t.pos - tcp, 0.05 * np.array(world), atol=1e-12)
    np.testing.assert_allclose(frames.world_to_unity_pos(frames.unity_to_world_pos([1, 2, 3])), [1, 2, 3])


def test_rotations_map_to_right_handed_world_rotations():
    # Unity: positive rotation about +Y (up) is clockwise seen from above (left-handed):
    # in the right-handed Z-up world that is a negative yaw about +z.
    a = 0.3
    q_unity = [math.cos(a / 2), 0.0, math.sin(a / 2), 0.0]
    r = frames.unity_to_world_rot(q_unity)
    expect = frames.quat_to_matrix([0, 0, -math.sin(a / 2), math.cos(a / 2)])
    np.testing.assert_allclose(r, expect, atol=1e-12)
    # the inverse mapping round-trips
    rng = np.random.default_rng(0)
    for _ in range(20):
        q = rng.normal(size=4)
        q /= np.linalg.norm(q)
        back = frames.world_to_unity_quat(frames.unity_to_world_rot(q))
        assert min(np.abs(back - q).max(), np.abs(back + q).max()) < 1e-9


def test_clutch_relative_rotation_translation_only_gripper_and_divergence():
    cfg = RetargetConfig(scale=2.0)
    r = ArmRetargeter(cfg)
    tcp, q = np.array([0.0, 0.0, 0.1]), np.array([1.0, 0.0, 0.0, 0.0])    # TCP flipped about x
    assert r.update(_hand([0, 1, 0], clutch=False), tcp, q) is None       # no clutch: no target
    r.update(_hand([0, 1, 0]), tcp, q)
    t = r.update(_hand([0, 1, 0.01], trigger=1.0), tcp, q)
    np.testing.assert_allclose(t.pos, tcp + [0.02, 0, 0])                 # scaled
    assert t.gripper_width == pytest.approx(cfg.gripper_closed)
    a = 0.2
    t = r.update(_hand([0, 1, 0], [math.cos(a / 2), 0, math.sin(a / 2), 0]), tcp, q)
    rel = frames.quat_to_matrix(t.quat) @ frames.quat_to_matrix(q).T      # world-frame rotation applied
    np.testing.assert_allclose(rel, frames.quat_to_matrix([0, 0, -math.sin(a / 2), math.cos(a / 2)]), atol=1e-9)
    r2 = ArmRetargeter(RetargetConfig(translation_only=True))
    r2.update(_hand([0, 1, 0]), tcp, q)
    t = r2.update(_hand([0, 1, 0], [math.cos(a / 2), 0, math.sin(a / 2), 0]), tcp, q)
    np.testing.assert_allclose(np.abs(t.quat), np.abs(q), atol=1e-12)
    # the target strays > 0.3 m from the TCP: tracking stops until the clutch is pressed again
    assert r.update(_hand([0, 1, 0.2]), tcp, q) is None and r.diverged == 1
    assert r.update(_hand([0, 1, 0.0]), tcp, q) is None
    r.update(_hand([0, 1, 0], clutch=False), tcp, q)
    assert r.update(_hand([0, 1, 0]), tcp, q) is not None


def test_inverse_mapping_drives_the_retargeter_to_the_wanted_target():
    tcp0, q0 = np.array([-0.15, -0.05, 0.06]), np.array([0.0, 0.0, 0.0, 1.0])
    r = ArmRetargeter(RetargetConfig())
    hp, hq = hand_for_target(tcp0, q0, tcp0, q0)
    r.update(_hand(hp, hq), tcp0, q0)
    goal, gq = np.array([-0.1, 0.02, 0.03]), frames.matrix_to_quat(frames.quat_to_matrix([0.1, 0, 0, 1]))
    hp, hq = hand_for_target(goal, gq, tcp0, q0)
    t = r.update(_hand(hp, hq), tcp0, q0)
    np.testing.assert_allclose(t.pos, goal, atol=1e-12)
    assert min(np.abs(t.quat - gq).max(), np.abs(t.quat + gq).max()) < 1e-9


def test_teleoperator_per_arm_enable_buttons_and_deadline():
    op = Teleoperator({"left": "left", "right": "right"}, RetargetConfig(), deadline=0.1)
    op.enabled["left"] = False
    tcp = {"left": (np.zeros(3), np.array([0, 0, 0, 1.0])), "right": (np.zeros(3), np.array([0, 0, 0, 1.0]))}
    b = [False] * 5
    b[protocol.BTN_LOWER] = True                                   # right A: start recording
    f = protocol.HandFrame(0.0, {"left": _hand([0, 1, 0]), "right": _hand([0, 1, 0], buttons=b)})
    targets, cmds = op.on_frame(f, tcp, now=10.0)
    assert set(targets) == {"right"} and cmds == ["start"]
    _, cmds = op.on_frame(f, tcp, now=10.05)
    assert cmds == []                                               # edges only
    assert op.check_deadline(10.1) and op.arms["right"].engaged
    assert not op.check_deadline(10.3) and not op.arms["right"].engaged and op.timeouts == 1
    stick = [False] * 5
    stick[protocol.BTN_STICK] = True                               # thumbstick click: disable the right arm
    targets, _ = op.on_frame(protocol.HandFrame(0.0, {"right": _hand([0, 1, 0], buttons=stick)}), tcp, now=11.0)
    assert not op.enabled["right"] and targets == {}


def test_parse_rejects_malformed_messages_with_a_reason():
    good = protocol.hand_json(1.0, {"right": ([0, 1, 0], I_WXYZ, 0.5, [False] * 5)})
    assert protocol.parse_hands(json.dumps(good)).hands["right"].trigger == 0.5
    cases = {
        "bad_json": b"{not json",
        "bad_length": json.dumps({**good, "rightHand": {**good["rightHand"], "wristPos": [0, 1]}}),
        "not_finite": json.dumps({**good, "rightHand": {**good["rightHand"], "wristPos": [0, float("nan"), 0]}}),
        "out_of_range": json.dumps({**good, "rightHand": {**good["rightHand"], "wristQuat": [2, 0, 0, 0]}}),
        "bad_type": json.dumps([1, 2]),
        "no_hands": json.dumps({"timestamp": 0}),
    }
    for reason, body in cases.items():
        with pytest.raises(protocol.ProtocolError) as e:
            protocol.parse_hands(body)
        assert e.value.reason == reason, (reason, str(e.value))


def test_feedback_documents_have_the_apps_fields_and_types():
    import bson

    doc = bson.decode(protocol.robot_state_doc({"right": frames.pose_to_unity([0.1, 0, 0.2], [0, 0, 0, 1])},
                                               {"right": (0.05, 1.0)}))
    assert set(doc) == {"leftRobotTCP", "rightRobotTCP", "leftGripperState", "rightGripperState"}
    assert len(doc["rightRobotTCP"]) == 7 and all(isinstance(v, float) for v in doc["rightRobotTCP"])
    np.testing.assert_allclose(doc["rightRobotTCP"][:3], frames.world_to_unity_pos([0.1, 0, 0.2]))
    assert doc["rightGripperState"] == [0.05, 1.0]
    a = bson.decode(protocol.arrows_doc("pad", [[0, 0, 0]], [[1, 0, 0]]))
    assert a["device_id"] == "pad" and a["arrows"] == [{"start": [0.0, 0.0, 0.0], "end": [1.0, 0.0, 0.0]}]
    assert len(a["scale"]) == 3
    f = bson.decode(protocol.force_doc("ft", [0, 0, 0], [0, 0, 1]))
    assert set(f) == {"device_id", "arrow", "scale"} and set(f["arrow"]) == {"start", "end"}
    assert bson.decode(protocol.log_doc("hi")) == {"text": "hi"}
    jpeg = bytes(range(256)) * 300
    doc = protocol.images_doc([{"id": "camera", "image": jpeg}])
    grams = protocol.chunk_image_document(doc, chunk=10000)
    assert struct.unpack("<I", grams[0])[0] == len(doc) and struct.unpack("<I", grams[1])[0] == 10000
    assert len(grams) == 2 + math.ceil(len(doc) / 10000) and all(len(g) <= 10000 for g in grams[2:])
    ra = protocol.ImageReassembler()
    out = [ra.feed(g) for g in grams]
    assert out[:-1] == [None] * (len(grams) - 1)
    im = out[-1]["images"][0]
    assert im["image"] == jpeg and isinstance(im["inHeadSpace"], bool) and isinstance(im["leftOrRight"], bool)
    assert len(im["position"]) == 3 and len(im["rotation"]) == 4 and len(im["scale"]) == 3

    # over UDP: a receiver that starts mid-document, then loses a piece of the next one, drops
    # those two (counted) and decodes the one after, never a document of mixed pieces
    docs = [protocol.images_doc([{"id": "camera", "image": bytes([k]) * 25000}]) for k in range(4)]
    streams = [protocol.chunk_image_document(d, chunk=10000) for d in docs]
    grams = streams[0][3:] + streams[1][:3] + streams[1][4:] + streams[2] + streams[3]
    ra = protocol.ImageReassembler()
    got = [doc for doc in map(ra.feed, grams) if doc is not None]
    assert [d["images"][0]["image"][:1] for d in got] == [bytes([2]), bytes([3])]
    assert ra.dropped == 1                      # the document whose start it saw but lost a piece of


def _post(url, body, headers=None):
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_server_counts_rejections_and_keeps_serving():
    got = []
    srv = TeleopServer(ServerConfig(port=0, max_rate=50.0), lambda f, c: got.append(f)).start()
    try:
        url = f"http://127.0.0.1:{srv.port}/unity"
        good = json.dumps(protocol.hand_json(0.0, {"right": ([0, 1, 0], I_WXYZ, 0.0, [False] * 5)})).encode()
        assert _post(url, good) == 200
        assert _post(url, b"{bad") == 400
        assert _post(url, b"x" * 20000) == 413
        assert _post(url, good.replace(b"[0.0, 1.0, 0.0]", b"[NaN, 1.0, 0.0]")) == 400
        codes = [_post(url, good) for _ in range(80)]                 # a flood: bounded loop
        assert 429 in codes
        c = srv.counters
        assert c["rejected/bad_json"] == 1 and c["rejected/too_large"] == 1 and c["rejected/not_finite"] == 1
        assert c["rejected/rate_limited"] >= 1 and c["accepted"] == len(got) >= 2
    finally:
        srv.stop()


def test_lan_bind_needs_a_token_and_serves_https_with_a_self_signed_certificate(tmp_path):
    with pytest.raises(ValueError, match="token"):
        ServerConfig(host="0.0.0.0")
    import ssl

    srv = TeleopServer(ServerConfig(host="127.0.0.1", port=0, token="s3cret", tls="on", cert_dir=str(tmp_path)),
                       lambda f, c: None).start()
    try:
        assert (tmp_path / "cert.pem").is_file() and srv.url.startswith("https://")
        ctx = ssl.create_default_context(cafile=str(tmp_path / "cert.pem"))
        ctx.check_hostname = False
        good = json.dumps(protocol.hand_json(0.0, {"right": ([0, 1, 0], I_WXYZ, 0.0, [False] * 5)})).encode()

        def post(headers):
            req = urllib.request.Request(f"https://127.0.0.1:{srv.port}/unity", data=good, headers=headers)
            try:
                with urllib.request.urlopen(req, timeout=5, context=ctx) as r:
                    return r.status
            except urllib.error.HTTPError as e:
                return e.code

        assert post({"X-Teleop-Token": "wrong"}) == 401
        assert post({"Authorization": "Bearer s3cret"}) == 200
        assert srv.counters["rejected/unauthorized"] == 1
    finally:
        srv.stop()


def test_scripted_operator_reclutch_keeps_the_targets_on_the_experts():
    # After a release (stale input), the server clutches in again at the measured TCP. In
    # contact that TCP lags the command by the pressing depth; an operator keeping its old
    # reference would shift every later target by that depth (a lost squeeze).
    from sim import ArmState, SimConfig, SimEnv
    from teleop_tactar.operator import ScriptedOperator
    from teleop_tactar.protocol import parse_hands
    from teleop_tactar.retarget import RetargetConfig, Teleoperator

    env = SimEnv(SimConfig(task="wipe", render=False, perturb=False))
    env.reset(0)
    op = ScriptedOperator("wipe", env.task_spec(), {"arm": "right"})
    intended = []
    act = op.expert.act
    op.expert.act = lambda t, states: intended.append(act(t, states)["arm"]) or {"arm": intended[-1]}
    server = Teleoperator({"arm": "right"}, RetargetConfig())
    q = np.array([0.0, 0.0, 0.0, 1.0])

    def state(pos):
        return {"arm": ArmState(stamp=0.0, tcp_pos=pos, tcp_quat=q, tcp_linvel=np.zeros(3), tcp_angvel=np.zeros(3),
                                wrench=np.zeros(6), tactile=np.zeros((4, 4)), gripper=None)}

    tcp = np.array([0.0, 0.0, 0.2])
    server.on_frame(parse_hands(op.message(0.0, state(tcp))), {"arm": (tcp, q)}, 0.0)      # clutch in
    server.on_frame(parse_hands(op.message(0.02, state(tcp))), {"arm": (tcp, q)}, 0.02)
    server.on_frame(parse_hands(op.idle_message(0.1)), {"arm": (tcp, q)}, 0.1)            # release
    measured = tcp + np.array([0.0, 0.0, 0.012])                                            # lags the command
    server.on_frame(parse_hands(op.message(0.2, state(measured))), {"arm": (measured, q)}, 0.2)  # re-clutch
    for k in range(3):
        t = 0.22 + 0.02 * k
        targets, _ = server.on_frame(parse_hands(op.message(t, state(measured))), {"arm": (measured, q)}, t)
        assert np.allclose(targets["arm"].pos, intended[-1][0], atol=1e-6)   # what the expert asked for


@pytest.mark.slow
def test_scripted_lift_operator_lifts_through_the_teleop_server_and_the_safety_filter():
    # The whole teleop path in one process, without DDS (teleop_tactar.demonstrator): the
    # operator's app messages at 60 Hz, two ticks late (what the server, safety filter and DDS
    # add), the server's retargeting, the safety filter at 200 Hz with safety_node's limits,
    # the perturbed lift sim. The expert's own 30 ms squeeze loop rings here and never lifts;
    # the operator's must.
    from sim import SimConfig, SimEnv
    from slowfast_app.cli.demos import safety_node_limits
    from teleop_tactar.demonstrator import TeleopEpisodeRunner

    env = SimEnv(SimConfig(task="lift", render=False, perturb=True))
    env.reset(10000)
    m = TeleopEpisodeRunner(safety_node_limits())(env)
    assert m["success"], {k: m[k] for k in ("max_lift", "hold_time", "slip_events", "peak_force")}
