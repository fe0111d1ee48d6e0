"""The WebXR page's 3-D scene in headless Chromium, with no XR device and no ROS: the teleop
server alone serves the page and pushes feedback as teleop_node does.

- The scene graph (webxr/scene.js, called through page.evaluate): the force arrow starts at
  the TCP's position in the headset's space, points along the force, is 1 cm per N long; the
  tactile arrows lie on the pad at the tool's pose; the TCP pose goes Unity -> world ->
  headset as teleop_tactar.frames and the page's own hand input do.
- Bad input (a NaN or null wrench, malformed tactile rows, a TCP with NaN, garbage) hides the
  object it concerns and never puts a NaN in a transform; the page keeps drawing.
- The page's "3D view" canvas renders the scene from the server's feedback: its screenshot
  (kept in the test's tmp dir) is not blank and shows force-orange, tactile-cyan and the
  camera panel's pixels.
"""
import base64
import io
import json
import math
import shutil

import numpy as np
import pytest

from teleop_tactar.frames import pose_to_unity, quat_to_matrix
from teleop_tactar.server import ServerConfig, TeleopServer

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
        "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"]
W2XR = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, 1.0], [-1.0, 0.0, 0.0]])   # robot world -> WebXR space

HAVE_CHROMIUM = bool(shutil.which("chromium")) or __import__("os").path.exists(CHROMIUM)

# a tool pose with a rotation on every axis, so a frame mix-up cannot pass
TCP_POS = np.array([0.42, -0.11, 0.23])
_h = math.radians(35) / 2
_q_z = np.array([0, 0, math.sin(_h), math.cos(_h)])
_q_x = np.array([1.0, 0, 0, 0])                                          # 180 deg about x: pad facing down
_g = math.radians(20) / 2
_q_y = np.array([0, math.sin(_g), 0, math.cos(_g)])


def _qmul(a, b):
    ax, ay, az, aw = a
    bx, by, bz, bw = b
    return np.array([aw * bx + ax * bw + ay * bz - az * by, aw * by - ax * bz + ay * bw + az * bx,
                     aw * bz + ax * by - ay * bx + az * bw, aw * bw - ax * bx - ay * by - az * bz])


TCP_QUAT = _qmul(_qmul(_q_z, _q_y), _q_x)
FORCE = np.array([3.0, -4.0, 12.0])                                     # world frame, N
ROWS = [[0.01, -0.02, 0.013, -0.018], [-0.015, 0.005, -0.02, 0.0], [0.0, 0.0, 0.0, 0.0]]


def _state():
    return {"tcp": {"right": pose_to_unity(TCP_POS, TCP_QUAT)}, "force": {"arm": FORCE.tolist()},
            "tactile": {"arm": ROWS}}


def _xr(p_world, origin=(0, 0, 0)):
    return W2XR @ np.asarray(p_world, float) + np.asarray(origin, float)


def _node(nodes, nid):
    found = [n for n in nodes if n["id"] == nid]
    assert found, (nid, [n["id"] for n in nodes])
    return found[0]


def _all_finite(nodes):
    for n in nodes:
        m = n.get("matrix")
        if m is not None and not all(isinstance(v, (int, float)) and math.isfinite(v) for v in m):
            return False
    return True


@pytest.fixture(scope="module")
def browser_and_server():
    """One Chromium and one teleop server for the module (launching Chromium took ~2.5 s per
    test); each test gets a fresh page."""
    if not HAVE_CHROMIUM:
        pytest.skip("no system Chromium")
    from playwright.sync_api import sync_playwright

    server = TeleopServer(ServerConfig(port=0), on_frame=lambda frame, client: None).start()
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            try:
                yield browser, server
            finally:
                browser.close()
    finally:
        server.stop()


@pytest.fixture
def page(browser_and_server):
    browser, server = browser_and_server
    pg = browser.new_page(viewport={"width": 1000, "height": 1200})
    try:
        errors = []
        pg.on("pageerror", lambda e: errors.append(str(e)))
        pg.goto(server.url + "?view=3d&origin=0.1,0.7,-0.3", timeout=15000)
        pg.wait_for_function("window.slowfast && window.slowfast.connected && window.TactScene "
                             "&& window.TactRender", timeout=15000)
        yield pg, server, errors
    finally:
        pg.close()


def _build(pg, state, opts=None):
    return pg.evaluate("([s, o]) => TactScene.build(s, o)", [state, opts or {"origin": [0, 0, 0]}])


def test_scene_graph_arrows_at_the_tool_pose(page):
    pg, _, errors = page
    nodes = _build(pg, _state())
    tcp_xr = _xr(TCP_POS)
    R = quat_to_matrix(TCP_QUAT)

    force = _node(nodes, "force/arm")
    assert force["visible"]
    np.testing.assert_allclose(force["start"], tcp_xr, atol=1e-9)                # origin at the TCP
    np.testing.assert_allclose(force["dir"], W2XR @ FORCE / np.linalg.norm(FORCE), atol=1e-9)   # along the force
    assert force["length"] == pytest.approx(0.01 * np.linalg.norm(FORCE))          # 1 cm per N, as the app
    np.testing.assert_allclose(force["end"], _xr(TCP_POS + 0.01 * FORCE), atol=1e-9)
    m = np.array(force["matrix"]).reshape(4, 4).T                                  # column-major
    np.testing.assert_allclose(m[:3, 3], tcp_xr, atol=1e-9)
    np.testing.assert_allclose(m[:3, 1], W2XR @ FORCE * 0.01, atol=1e-9)           # +Y of the mesh: the arrow

    # the length scales with the magnitude
    s2 = _state()
    s2["force"]["arm"] = (2.5 * FORCE).tolist()
    assert _node(_build(pg, s2), "force/arm")["length"] == pytest.approx(2.5 * force["length"])

    # the tool axes are the TCP rotation in the headset's space
    for i, axis in enumerate("xyz"):
        a = _node(nodes, f"tool/arm/{axis}")
        np.testing.assert_allclose(a["start"], tcp_xr, atol=1e-9)
        np.testing.assert_allclose(a["dir"], W2XR @ R[:, i], atol=1e-9)

    # tactile arrows on the pad: pad frame = tool frame at the TCP (default)
    for i, (x, y, x1, y1) in enumerate(ROWS[:2]):
        t = _node(nodes, f"tactile/arm/{i}")
        assert t["visible"]
        np.testing.assert_allclose(t["start"], _xr(TCP_POS + R @ [x, y, 0]), atol=1e-9)
        np.testing.assert_allclose(t["end"], _xr(TCP_POS + R @ [x1, y1, 0]), atol=1e-9)
        # in the pad's plane: perpendicular to the tool's z axis
        assert abs(np.dot(np.array(t["end"]) - t["start"], W2XR @ R[:, 2])) < 1e-9
    assert not _node(nodes, "tactile/arm/2")["visible"]                              # no displacement, no arrow
    pad = _node(nodes, "pad/arm")
    assert pad["visible"] and len(pad["points"]) == 4
    for p in pad["points"]:                                                          # the outline lies on the pad
        assert abs(np.dot(np.array(p) - tcp_xr, W2XR @ R[:, 2])) < 1e-9

    # a pad rotated in the tool frame (as the lift task's paddles): markers follow it
    pad_q = [math.sin(math.pi / 4), 0, 0, math.cos(math.pi / 4)]                    # 90 deg about tool x
    rotated = _build(pg, _state(), {"origin": [0, 0, 0], "pad": {"arm": pad_q}})
    Rp = R @ quat_to_matrix(pad_q)
    x, y, x1, y1 = ROWS[0]
    np.testing.assert_allclose(_node(rotated, "tactile/arm/0")["start"], _xr(TCP_POS + Rp @ [x, y, 0]), atol=1e-9)

    # where the robot stands in the headset's space: origin and yaw move everything rigidly
    placed = _build(pg, _state(), {"origin": [0.2, 0.8, -0.5], "yaw": math.pi / 2})
    yaw = np.array([[0, 0, 1], [0, 1, 0], [-1, 0, 0]])                               # +90 deg about +Y
    np.testing.assert_allclose(_node(placed, "force/arm")["start"], yaw @ (W2XR @ TCP_POS) + [0.2, 0.8, -0.5],
                               atol=1e-9)
    np.testing.assert_allclose(_node(placed, "force/arm")["dir"], yaw @ W2XR @ FORCE / np.linalg.norm(FORCE),
                               atol=1e-9)
    assert _all_finite(nodes) and _all_finite(placed) and not errors


def test_scene_graph_matches_the_page_input_mapping(page):
    """A hand the page sends at XR position p (xrToUnity) drives the robot; the TCP drawn
    from the app's Unity pose lands back at p: one convention both ways."""
    pg, _, _ = page
    out = pg.evaluate("""() => {
        const p = {x: 0.3, y: 1.1, z: -0.4}, o = {x: 0.1, y: 0.2, z: 0.3, w: Math.sqrt(1 - 0.14)};
        const [pos, q] = xrToUnity(p, o);
        return TactScene.tcpToXr([...pos, ...q], {origin: [0, 0, 0]}); }""")
    np.testing.assert_allclose(out["position"], [0.3, 1.1, -0.4], atol=1e-12)
    # and the rotation: the tool's axes turn with the controller (the tool's x, the robot's
    # forward at rest, along the controller's -Z; its z, up, along the controller's +Y)
    x, y, z, w = 0.1, 0.2, 0.3, math.sqrt(1 - 0.14)
    np.testing.assert_allclose(out["rotation"], quat_to_matrix([x, y, z, w]) @ W2XR, atol=1e-9)


@pytest.mark.parametrize("bad", [
    {"tcp": {"right": pose_to_unity(TCP_POS, TCP_QUAT)}, "force": {"arm": [None, 1.0, 2.0]}},
    {"tcp": {"right": pose_to_unity(TCP_POS, TCP_QUAT)}, "force": {"arm": ["nan", 0, 0]}, "tactile": {"arm": "x"}},
    {"tcp": {"right": pose_to_unity(TCP_POS, TCP_QUAT)}, "force": {"arm": [1, 2]},
     "tactile": {"arm": [[0.01, "a", 0, 0], [0.01], None, [0.0, 0.0, 1e308, 1e308]]}},
    {"tcp": {"right": [0.1, 0.2, None, 1, 0, 0, 0]}, "force": {"arm": [1.0, 2.0, 3.0]}, "tactile": {"arm": ROWS}},
    {"tcp": {"right": [0.1, 0.2, 0.3, 0, 0, 0, 0]}, "force": {"arm": [1.0, 2.0, 3.0]}},      # zero quaternion
    {"tcp": [1, 2, 3], "force": None, "tactile": 5},
    None, "garbage", 7,
])
def test_bad_input_hides_the_arrow_and_never_a_nan_transform(page, bad):
    pg, _, errors = page
    nodes = _build(pg, bad)
    assert _all_finite(nodes)
    for n in nodes:
        if n.get("role") == "force":
            assert not n["visible"]
        if n["visible"] and n["kind"] == "arrow":
            assert all(math.isfinite(v) for v in n["start"] + n["end"])
    assert not errors


def _jpeg(w=160, h=120):
    from PIL import Image
    a = np.zeros((h, w, 3), np.uint8)
    a[:, : w // 2] = (255, 0, 255)                                                   # magenta half: the panel's mark
    a[:, w // 2:] = (255, 255, 0)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="JPEG", quality=90)
    return base64.b64encode(buf.getvalue()).decode()


def test_page_renders_the_scene_from_feedback_and_survives_bad_input(page, tmp_path):
    pg, server, errors = page
    state = dict(_state(), type="state")
    state["tactile"] = {"arm": [[0.02 * (i % 3 - 1), 0.02 * (i // 3 - 1), 0.02 * (i % 3 - 1) + 0.012,
                                 0.02 * (i // 3 - 1) + 0.006] for i in range(9)]}
    server.broadcast({"type": "image", "id": "camera", "jpeg": _jpeg()})
    server.broadcast(state)
    pg.wait_for_function("window.slowfast.scene.some((n) => n.id === 'force/arm' && n.visible) "
                         "&& window.slowfast.scene.some((n) => n.kind === 'panel' && n.visible)", timeout=15000)
    # the page's own scene, with the origin from its URL (?origin=0.1,0.7,-0.3)
    nodes = pg.evaluate("window.slowfast.scene")
    origin = [0.1, 0.7, -0.3]
    force = _node(nodes, "force/arm")
    np.testing.assert_allclose(force["start"], _xr(TCP_POS, origin), atol=1e-6)
    np.testing.assert_allclose(force["end"], _xr(TCP_POS + 0.01 * FORCE, origin), atol=1e-6)
    assert sum(1 for n in nodes if n.get("role") == "tactile" and n["visible"]) == 9
    # frames drawn after the image reached the panel's texture
    pg.wait_for_function("window.slowfast.drawn > 10", timeout=15000)
    pg.evaluate("() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))")
    shot = tmp_path / "webxr_scene.png"
    pg.locator("#view3d").screenshot(path=str(shot))
    from PIL import Image
    px = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    r, g, b = px[..., 0], px[..., 1], px[..., 2]
    assert px.std() > 10, "blank 3-D view"
    orange = (r > 180) & (g > 70) & (g < 170) & (b < 110)                             # force arrow (#f84, lit)
    cyan = (b > 170) & (g > 130) & (r < 110)                                          # tactile arrows (#4cf, lit)
    magenta = (r > 200) & (g < 80) & (b > 200)                                        # the camera panel's image
    assert orange.sum() > 50, orange.sum()
    assert cyan.sum() > 20, cyan.sum()
    assert magenta.sum() > 200, magenta.sum()

    # bad feedback: a null wrench, malformed rows, then a message that is not JSON at all
    before = pg.evaluate("window.slowfast.states")
    server.broadcast({"type": "state", "tcp": state["tcp"], "force": {"arm": [None, 0, 1]},
                      "tactile": {"arm": [[0.0, "x"], None, [1, 2, 3, 4]]}})
    pg.wait_for_function(f"window.slowfast.states > {before}", timeout=10000)
    frames = pg.evaluate("window.slowfast.frames3d")
    pg.wait_for_function(f"window.slowfast.frames3d > {frames + 3}", timeout=10000)   # still drawing
    nodes = pg.evaluate("window.slowfast.scene")
    assert not _node(nodes, "force/arm")["visible"] and _all_finite(nodes)
    assert pg.evaluate("[window.slowfast.drawError, window.slowfast.previewError, window.slowfast.sceneError]") \
        == [None, None, None]
    assert not errors, errors
    # the 2-D overlay (the page outside XR, as before) is still there
    assert pg.locator("#scene").is_visible()
    json.dumps(nodes)    # plain data a test (or a recorder) can keep


def test_xr_frame_draws_the_scene_for_each_view_with_a_head_locked_panel(page, tmp_path):
    """No headset here: the page's own onXRFrame runs with a stand-in session and frame (one
    viewer pose, two eye views into the page's canvas), as a WebXR browser would call it."""
    pg, server, errors = page
    server.broadcast({"type": "image", "id": "camera", "jpeg": _jpeg()})
    server.broadcast(dict(_state(), type="state"))
    pg.wait_for_function("window.slowfast.scene.some((n) => n.id === 'force/arm' && n.visible) "
                         "&& window.slowfast.scene.some((n) => n.kind === 'panel' && n.visible)", timeout=15000)
    out = pg.evaluate("""() => {
        const c = document.getElementById("view3d"), gl = c.getContext("webgl");
        xrGl = TactRender.create(gl); xrGl.setImage(img);
        const tool = TactScene.tcpToXr(window.slowfast.state.tcp.right, window.slowfast.sceneOpts).position;
        const eye = TactScene.lookAt([tool[0], tool[1] + 0.35, tool[2] + 0.35], tool);
        const proj = TactRender.perspective(Math.PI / 2.5, (c.width / 2) / c.height, 0.01, 20);
        const view = { projectionMatrix: proj, transform: { inverse: { matrix: TactRender.viewMatrix(eye) } } };
        let drawnViews = 0;
        const layer = { framebuffer: null, getViewport: (v) => { drawnViews++;
            return { x: v === views[0] ? 0 : c.width / 2, y: 0, width: c.width / 2, height: c.height }; } };
        const views = [view, Object.assign({}, view)];
        const session = { requestAnimationFrame: () => 0, inputSources: [], environmentBlendMode: "opaque",
                          renderState: { baseLayer: layer } };
        xrSession = session;                         // the page's own loop stops drawing the preview
        const q = eye.orientation;
        onXRFrame(0, { session, getPose: () => null, getViewerPose: () => ({
            transform: { position: { x: eye.position[0], y: eye.position[1], z: eye.position[2] },
                         orientation: { x: q[0], y: q[1], z: q[2], w: q[3] } }, views }) });
        return { drawnViews, viewer: window.slowfast.viewer, scene: window.slowfast.scene, eye };
    }""")
    assert out["drawnViews"] == 2
    np.testing.assert_allclose(out["viewer"]["position"], out["eye"]["position"], atol=1e-12)
    panel = _node(out["scene"], "camera")
    assert panel["visible"]
    # head-locked: the panel sits at its offset in the viewer's frame
    R = quat_to_matrix(out["eye"]["orientation"])
    np.testing.assert_allclose(panel["position"], np.array(out["eye"]["position"]) + R @ [-0.22, 0.1, -0.7],
                               atol=1e-9)
    np.testing.assert_allclose(_node(out["scene"], "force/arm")["start"], _xr(TCP_POS, [0.1, 0.7, -0.3]), atol=1e-6)
    shot = tmp_path / "webxr_xr_frame.png"
    pg.locator("#view3d").screenshot(path=str(shot))
    from PIL import Image
    px = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    half = px.shape[1] // 2
    for eye_px in (px[:, :half], px[:, half:]):                                     # both eyes drew the arrows
        r, g, b = eye_px[..., 0], eye_px[..., 1], eye_px[..., 2]
        assert ((r > 180) & (g > 70) & (g < 170) & (b < 110)).sum() > 30
    assert not errors, errors


def test_page_scripts_are_served_by_name_only_and_with_the_token():
    import urllib.error
    import urllib.request

    server = TeleopServer(ServerConfig(port=0, token="s3cret", tls="off"), on_frame=lambda f, c: None).start()
    try:
        base = f"http://127.0.0.1:{server.port}/webxr/"

        def status(url):
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    return r.status, r.headers.get("Content-Type", ""), r.read()
            except urllib.error.HTTPError as exc:
                return exc.code, "", b""

        code, ctype, body = status(base + "scene.js?token=s3cret")
        assert code == 200 and ctype.startswith("text/javascript") and b"TactScene" in body
        assert status(base + "render.js?token=s3cret")[0] == 200
        assert status(base + "scene.js")[0] == 401                                     # no token
        assert status(base + "index.html?token=s3cret")[0] == 404                      # only the scripts
        assert status(base + "..%2Fserver.py?token=s3cret")[0] == 404
    finally:
        server.stop()
