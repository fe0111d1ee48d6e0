// The headset scene as data: TactAR's arrows as 3-D objects at the tool's pose, in the
// WebXR reference space. No DOM, no WebGL: render.js draws what build() returns, and a test
// can call every function here through page.evaluate.
//
// Frames (the ones the app and teleop_tactar/frames.py use):
// - robot world: right-handed, Z up, x forward. The server's `force` (N) is in it.
// - Unity (the app's, and the server's `tcp`: x, y, z, qw, qx, qy, qz): left-handed, Y up;
//   world = (z_u, -x_u, y_u); a rotation maps as frames.unity_to_world_rot.
// - WebXR reference space: right-handed, Y up, -Z forward; xr = (x_u, y_u, -z_u) (what the
//   page's hand input inverts), so xr = (-y_w, z_w, -x_w): the robot's forward is the
//   operator's forward. `origin` (m) and `yaw` (rad, about +Y) place the robot's world origin
//   in the headset's space.
// Arrows (as the app draws them): the force from the TCP to TCP + forceScale * f (1 cm per N,
// what teleop_node sends the app on 10005); tactile marker arrows from start to end in the
// pad plane ([x, y, x_end, y_end], m, displacement already magnified), the pad frame at the
// TCP rotated by `pad[arm]` (x, y, z, w in the tool frame; identity: the pad is the tool's
// x-y plane). Anything not finite (a NaN wrench, a malformed row, no TCP) hides its object;
// no matrix ever holds a NaN.
(function (root) {
  "use strict";

  const DEFAULTS = {
    origin: [0, 0, 0], yaw: 0,
    forceScale: 0.01,        // m per N (the app's force arrow)
    maxForceLength: 1.0,     // m: a longer force arrow is clamped (100 N)
    forceRadius: 0.004, tactileRadius: 0.0012, axisLength: 0.04, axisRadius: 0.0015,
    padHalf: [0.03, 0.04],   // m, the pad outline drawn around the markers
    pad: {},                 // arm -> quaternion x, y, z, w of the pad in the tool frame
    panel: { offset: [-0.22, 0.1, -0.7], width: 0.32 },   // camera panel in the viewer's space
    colors: { force: [1.0, 0.53, 0.27], tactile: [0.27, 0.8, 1.0], pad: [0.6, 0.6, 0.6],
      axes: [[0.9, 0.2, 0.2], [0.2, 0.85, 0.3], [0.25, 0.4, 1.0]] },
  };
  const U2W = [[0, 0, 1], [-1, 0, 0], [0, -1, 0]];
  const W2XR = [[0, -1, 0], [0, 0, 1], [-1, 0, 0]];

  // ---- small vector/matrix helpers (3x3 as row arrays, 4x4 column-major like WebGL/WebXR)
  const finite = (v) => Array.isArray(v) && v.every((x) => typeof x === "number" && Number.isFinite(x));
  const num = (x) => typeof x === "number" && Number.isFinite(x);
  const add = (a, b) => [a[0] + b[0], a[1] + b[1], a[2] + b[2]];
  const sub = (a, b) => [a[0] - b[0], a[1] - b[1], a[2] - b[2]];
  const scale = (a, s) => [a[0] * s, a[1] * s, a[2] * s];
  const dot = (a, b) => a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
  const cross = (a, b) => [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];
  const norm = (a) => Math.hypot(a[0], a[1], a[2]);
  const mv = (m, v) => [dot(m[0], v), dot(m[1], v), dot(m[2], v)];
  const mt = (m) => [[m[0][0], m[1][0], m[2][0]], [m[0][1], m[1][1], m[2][1]], [m[0][2], m[1][2], m[2][2]]];
  const mm = (a, b) => { const bt = mt(b); return a.map((r) => bt.map((c) => dot(r, c))); };

  function quatToMatrix(q) {          // x, y, z, w -> 3x3 (normalised; null if not a rotation)
    if (!finite(q) || q.length !== 4) return null;
    const n = Math.hypot(q[0], q[1], q[2], q[3]);
    if (!(n > 1e-9)) return null;
    const [x, y, z, w] = q.map((c) => c / n);
    return [[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
      [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
      [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]];
  }
  function yawMatrix(yaw) { const c = Math.cos(yaw), s = Math.sin(yaw); return [[c, 0, s], [0, 1, 0], [-s, 0, c]]; }

  // ---- frames
  function unityToWorldPos(p) { return mv(U2W, [p[0], -p[1], p[2]]); }
  function unityToWorldRot(qWxyz) {
    const [w, x, y, z] = qWxyz, m = quatToMatrix([-x, y, -z, w]);
    return m && mm(mm(U2W, m), mt(U2W));
  }
  function place(o) { return { R: mm(yawMatrix(num(o.yaw) ? o.yaw : 0), W2XR), t: finite(o.origin) ? o.origin : [0, 0, 0] }; }
  function worldToXr(p, o) { const P = place(o || {}); return add(mv(P.R, p), P.t); }
  function worldDirToXr(v, o) { return mv(place(o || {}).R, v); }
  /** The app's TCP (x, y, z, qw, qx, qy, qz, Unity) -> {position, rotation} in the headset's space, or null. */
  function tcpToXr(pose7, o) {
    if (!finite(pose7) || pose7.length !== 7) return null;
    const R = unityToWorldRot(pose7.slice(3)); if (!R) return null;
    const P = place(o || {});
    return { position: add(mv(P.R, unityToWorldPos(pose7)), P.t), rotation: mm(P.R, R), world: unityToWorldPos(pose7), worldRotation: R };
  }

  function mat4(R, t, sx, sy, sz) {    // columns: R[:,0]*sx, R[:,1]*sy, R[:,2]*sz, t
    return [R[0][0] * sx, R[1][0] * sx, R[2][0] * sx, 0, R[0][1] * sy, R[1][1] * sy, R[2][1] * sy, 0,
      R[0][2] * sz, R[1][2] * sz, R[2][2] * sz, 0, t[0], t[1], t[2], 1];
  }
  const HIDDEN = mat4([[1, 0, 0], [0, 1, 0], [0, 0, 1]], [0, 0, 0], 0, 0, 0);

  /** An arrow node from start to end (headset frame); hidden when either is not finite or it has no length. */
  function arrow(id, start, end, radius, color, extra) {
    const node = Object.assign({ id, kind: "arrow", visible: false, start: null, end: null, dir: null, length: 0,
      radius, color, matrix: HIDDEN }, extra || {});
    if (!finite(start) || !finite(end) || start.length !== 3 || end.length !== 3) return node;
    const d = sub(end, start), len = norm(d);
    if (!(len > 1e-7) || !Number.isFinite(len)) return Object.assign(node, { start, end, length: 0 });
    const y = scale(d, 1 / len);
    const a = Math.abs(y[0]) < 0.9 ? [1, 0, 0] : [0, 0, 1];
    const x = scale(cross(y, a), 1 / norm(cross(y, a))), z = cross(x, y);
    const R = [[x[0], y[0], z[0]], [x[1], y[1], z[1]], [x[2], y[2], z[2]]];
    return Object.assign(node, { visible: true, start, end, dir: y, length: len, matrix: mat4(R, start, radius, len, radius) });
  }

  /** Which TCP (keyed by hand side) belongs to an arm (force/tactile are keyed by arm name). */
  function tcpFor(arm, tcp) {
    if (!tcp || typeof tcp !== "object") return null;
    if (tcp[arm]) return tcp[arm];
    const keys = Object.keys(tcp);
    return keys.length === 1 ? tcp[keys[0]] : null;
  }

  /** The camera panel: a quad head-locked at `panel.offset` in the viewer's space. */
  function panelNode(viewer, aspect, o) {
    const cfg = Object.assign({}, DEFAULTS.panel, (o && o.panel) || {});
    const node = { id: "camera", kind: "panel", visible: false, matrix: HIDDEN, width: cfg.width, height: 0 };
    const R = viewer && quatToMatrix(viewer.orientation);
    if (!R || !finite(viewer.position) || !(aspect > 0) || !Number.isFinite(aspect)) return node;
    const h = cfg.width / aspect;
    const centre = add(viewer.position, mv(R, cfg.offset));
    return Object.assign(node, { visible: true, height: h, position: centre, matrix: mat4(R, centre, cfg.width, h, 1) });
  }

  /**
   * The scene for one `state` message of the teleop server ({tcp, force, tactile}) as a flat
   * list of nodes: tool axes, force arrow, pad outline and marker arrows per arm, plus the
   * camera panel when `viewer` ({position, orientation x y z w}) and `imageAspect` are given.
   */
  function build(state, opts, viewer, imageAspect) {
    const o = Object.assign({}, DEFAULTS, opts || {});
    o.colors = Object.assign({}, DEFAULTS.colors, (opts && opts.colors) || {});
    const nodes = [];
    const s = state && typeof state === "object" ? state : {};
    const arms = new Set([...Object.keys(s.force || {}), ...Object.keys(s.tactile || {})]);
    if (!arms.size) for (const k of Object.keys(s.tcp || {})) arms.add(k);
    for (const arm of arms) {
      const tool = tcpToXr(tcpFor(arm, s.tcp), o);
      for (let i = 0; i < 3; i++) {       // tool axes (x red, y green, z blue)
        const axis = tool && [tool.rotation[0][i], tool.rotation[1][i], tool.rotation[2][i]];
        nodes.push(arrow(`tool/${arm}/${"xyz"[i]}`, tool && tool.position, tool && add(tool.position, scale(axis, o.axisLength)),
          o.axisRadius, o.colors.axes[i], { arm, role: "axis" }));
      }
      const f = s.force && s.force[arm];
      let magnitude = null, end = null;
      if (tool && finite(f) && f.length === 3) {
        magnitude = norm(f);
        const len = Math.min(o.forceScale * magnitude, o.maxForceLength);
        end = magnitude > 0 ? add(tool.position, scale(worldDirToXr(f, o), len / magnitude)) : tool.position;
      }
      nodes.push(arrow(`force/${arm}`, tool && tool.position, end, o.forceRadius, o.colors.force,
        { arm, role: "force", magnitude }));
      const rows = s.tactile && s.tactile[arm];
      if (!Array.isArray(rows)) continue;
      const padR = tool && (quatToMatrix(o.pad[arm] || [0, 0, 0, 1]) || null);
      const R = tool && padR && mm(tool.rotation, padR);
      const onPad = (x, y) => add(tool.position, mv(R, [x, y, 0]));
      const [hx, hy] = o.padHalf, corners = R ? [[-hx, -hy], [hx, -hy], [hx, hy], [-hx, hy]].map(([x, y]) => onPad(x, y)) : null;
      nodes.push({ id: `pad/${arm}`, kind: "outline", arm, visible: !!corners, points: corners || [], color: o.colors.pad });
      rows.forEach((r, i) => {
        const ok = R && finite(r) && r.length >= 4;
        nodes.push(arrow(`tactile/${arm}/${i}`, ok ? onPad(r[0], r[1]) : null, ok ? onPad(r[2], r[3]) : null,
          o.tactileRadius, o.colors.tactile, { arm, role: "tactile", pad: ok ? [r[0], r[1], r[2], r[3]] : null }));
      });
    }
    if (viewer) nodes.push(panelNode(viewer, imageAspect, o));
    return nodes;
  }

  /** A viewer pose looking from `eye` at `target` (Y up): {position, orientation x y z w}. */
  function lookAt(eye, target) {
    const zf = sub(eye, target), zn = norm(zf);
    if (!finite(eye) || !finite(target) || !(zn > 1e-9)) return { position: [0, 0, 0], orientation: [0, 0, 0, 1] };
    const z = scale(zf, 1 / zn);
    let x = cross([0, 1, 0], z); if (norm(x) < 1e-6) x = [1, 0, 0]; x = scale(x, 1 / norm(x));
    const y = cross(z, x);
    const m = [[x[0], y[0], z[0]], [x[1], y[1], z[1]], [x[2], y[2], z[2]]];
    const tr = m[0][0] + m[1][1] + m[2][2];
    let q;
    if (tr > 0) { const S = Math.sqrt(tr + 1) * 2; q = [(m[2][1] - m[1][2]) / S, (m[0][2] - m[2][0]) / S, (m[1][0] - m[0][1]) / S, 0.25 * S]; }
    else if (m[0][0] > m[1][1] && m[0][0] > m[2][2]) { const S = Math.sqrt(1 + m[0][0] - m[1][1] - m[2][2]) * 2; q = [0.25 * S, (m[0][1] + m[1][0]) / S, (m[0][2] + m[2][0]) / S, (m[2][1] - m[1][2]) / S]; }
    else if (m[1][1] > m[2][2]) { const S = Math.sqrt(1 + m[1][1] - m[0][0] - m[2][2]) * 2; q = [(m[0][1] + m[1][0]) / S, 0.25 * S, (m[1][2] + m[2][1]) / S, (m[0][2] - m[2][0]) / S]; }
    else { const S = Math.sqrt(1 + m[2][2] - m[0][0] - m[1][1]) * 2; q = [(m[0][2] + m[2][0]) / S, (m[1][2] + m[2][1]) / S, 0.25 * S, (m[1][0] - m[0][1]) / S]; }
    return { position: eye.slice(), orientation: q };
  }

  /** Options from the page's URL: ?origin=x,y,z (m, headset space) &yaw=deg &pad_<arm>=x,y,z,w. */
  function optionsFromQuery(search) {
    const p = new URLSearchParams(search || ""), o = {};
    const nums = (s) => (s || "").split(",").map(Number);
    const origin = nums(p.get("origin"));
    if (origin.length === 3 && finite(origin)) o.origin = origin;
    const yaw = Number(p.get("yaw"));
    if (p.has("yaw") && Number.isFinite(yaw)) o.yaw = yaw * Math.PI / 180;
    for (const [k, v] of p.entries()) {
      const q = nums(v);
      if (k.startsWith("pad_") && q.length === 4 && finite(q)) (o.pad = o.pad || {})[k.slice(4)] = q;
    }
    return o;
  }

  const api = { DEFAULTS, build, arrow, tcpToXr, tcpFor, worldToXr, worldDirToXr, unityToWorldPos, unityToWorldRot,
    quatToMatrix, panelNode, lookAt, optionsFromQuery };
  root.TactScene = api;
  if (typeof module === "object" && module.exports) module.exports = api;
})(typeof window !== "undefined" ? window : globalThis);
