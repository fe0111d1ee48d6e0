// A small WebGL 1 renderer for the nodes scene.js builds: arrows (a shaft and a head, lit),
// outlines and a floor grid (lines), and the camera panel (a textured quad). The same code
// draws each eye of an XR frame and the page's 3-D preview canvas. Plain WebGL, nothing
// loaded from elsewhere.
(function (root) {
  "use strict";

  const VS = `attribute vec3 aPos; attribute vec3 aNormal; attribute vec2 aUv;
uniform mat4 uProj, uView, uModel; varying vec3 vN; varying vec2 vUv;
void main() { vN = mat3(uModel) * aNormal; vUv = aUv; gl_Position = uProj * uView * uModel * vec4(aPos, 1.0); }`;
  const FS = `precision mediump float; varying vec3 vN; varying vec2 vUv;
uniform vec3 uColor; uniform float uLit; uniform float uTextured; uniform sampler2D uTex;
void main() {
  if (uTextured > 0.5) { gl_FragColor = vec4(texture2D(uTex, vUv).rgb, 1.0); return; }
  float l = 1.0;
  if (uLit > 0.5) { vec3 n = normalize(vN); l = 0.65 + 0.35 * abs(dot(n, normalize(vec3(0.3, 0.8, 0.5)))); }
  gl_FragColor = vec4(uColor * l, 1.0);
}`;

  function arrowMesh(seg) {            // unit arrow along +Y: shaft radius 1 to y=0.72, head radius 2.6
    const pos = [], nrm = [];
    const ring = (i) => { const a = 2 * Math.PI * i / seg; return [Math.cos(a), Math.sin(a)]; };
    const tri = (p, n) => { for (const v of p) pos.push(...v); for (const v of n) nrm.push(...v); };
    const H = 0.72, R = 2.6;
    for (let i = 0; i < seg; i++) {
      const [c0, s0] = ring(i), [c1, s1] = ring(i + 1);
      const n0 = [c0, 0, s0], n1 = [c1, 0, s1];
      tri([[c0, 0, s0], [c1, 0, s1], [c1, H, s1]], [n0, n1, n1]);            // shaft
      tri([[c0, 0, s0], [c1, H, s1], [c0, H, s0]], [n0, n1, n0]);
      tri([[c0 * R, H, s0 * R], [c1 * R, H, s1 * R], [0, H, 0]], [[0, -1, 0], [0, -1, 0], [0, -1, 0]]);   // head base
      const k = R / (1 - H);
      tri([[c0 * R, H, s0 * R], [c1 * R, H, s1 * R], [0, 1, 0]], [[c0, 1 / k, s0], [c1, 1 / k, s1], [(c0 + c1) / 2, 1 / k, (s0 + s1) / 2]]);
    }
    return { pos: new Float32Array(pos), nrm: new Float32Array(nrm), count: pos.length / 3 };
  }

  function create(gl) {
    const sh = (type, src) => {
      const s = gl.createShader(type); gl.shaderSource(s, src); gl.compileShader(s);
      if (!gl.getShaderParameter(s, gl.COMPILE_STATUS)) throw new Error(gl.getShaderInfoLog(s));
      return s;
    };
    const prog = gl.createProgram();
    gl.attachShader(prog, sh(gl.VERTEX_SHADER, VS)); gl.attachShader(prog, sh(gl.FRAGMENT_SHADER, FS));
    gl.linkProgram(prog);
    if (!gl.getProgramParameter(prog, gl.LINK_STATUS)) throw new Error(gl.getProgramInfoLog(prog));
    const A = { pos: gl.getAttribLocation(prog, "aPos"), nrm: gl.getAttribLocation(prog, "aNormal"), uv: gl.getAttribLocation(prog, "aUv") };
    const U = {};
    for (const n of ["uProj", "uView", "uModel", "uColor", "uLit", "uTextured", "uTex"]) U[n] = gl.getUniformLocation(prog, n);
    const buf = (data) => { const b = gl.createBuffer(); gl.bindBuffer(gl.ARRAY_BUFFER, b); gl.bufferData(gl.ARRAY_BUFFER, data, gl.STATIC_DRAW); return b; };
    const mesh = arrowMesh(16);
    const arrowBuf = { pos: buf(mesh.pos), nrm: buf(mesh.nrm), count: mesh.count };
    // panel quad: x, y in -0.5..0.5 (width, height scaled by the node's matrix), uv flipped in v
    const quad = { pos: buf(new Float32Array([-0.5, -0.5, 0, 0.5, -0.5, 0, 0.5, 0.5, 0, -0.5, -0.5, 0, 0.5, 0.5, 0, -0.5, 0.5, 0])),
      nrm: buf(new Float32Array(18).map((_, i) => (i % 3 === 2 ? 1 : 0))),
      uv: buf(new Float32Array([0, 1, 1, 1, 1, 0, 0, 1, 1, 0, 0, 0])), count: 6 };
    const lineBuf = gl.createBuffer(), zeroNrm = buf(new Float32Array(3 * 4096));
    const IDENT = new Float32Array([1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1]);
    let tex = null, texReady = false;

    function attrib(loc, b, size) {
      if (loc < 0) return;
      if (!b) { gl.disableVertexAttribArray(loc); gl.vertexAttrib3f(loc, 0, 1, 0); return; }
      gl.bindBuffer(gl.ARRAY_BUFFER, b); gl.enableVertexAttribArray(loc); gl.vertexAttribPointer(loc, size, gl.FLOAT, false, 0, 0);
    }
    function lines(points, color, model) {       // points: [[x,y,z], ...] pairs
      const n = Math.min(points.length, 4096);
      if (n < 2) return;
      const data = new Float32Array(n * 3);
      for (let i = 0; i < n; i++) data.set(points[i], i * 3);
      gl.bindBuffer(gl.ARRAY_BUFFER, lineBuf); gl.bufferData(gl.ARRAY_BUFFER, data, gl.DYNAMIC_DRAW);
      attrib(A.pos, lineBuf, 3); attrib(A.nrm, zeroNrm, 3); attrib(A.uv, null, 2);
      gl.uniformMatrix4fv(U.uModel, false, model || IDENT);
      gl.uniform3fv(U.uColor, color); gl.uniform1f(U.uLit, 0); gl.uniform1f(U.uTextured, 0);
      gl.drawArrays(gl.LINES, 0, n - (n % 2));
    }
    function finiteMatrix(m) { return m && m.length === 16 && m.every(Number.isFinite); }

    /** Upload a camera image (an <img> that has loaded) as the panel's texture. */
    function setImage(img) {
      if (!img || !img.naturalWidth) return;
      if (!tex) tex = gl.createTexture();
      gl.bindTexture(gl.TEXTURE_2D, tex);
      gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MIN_FILTER, gl.LINEAR);
      gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MAG_FILTER, gl.LINEAR);
      gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_WRAP_S, gl.CLAMP_TO_EDGE);
      gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_WRAP_T, gl.CLAMP_TO_EDGE);
      try { gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGB, gl.RGB, gl.UNSIGNED_BYTE, img); texReady = true; } catch (e) { texReady = false; }
    }

    /** Draw `nodes` with a projection and a view matrix (column-major, e.g. an XRView's). */
    function draw(nodes, proj, view, opts) {
      const o = opts || {};
      gl.useProgram(prog);
      gl.enable(gl.DEPTH_TEST);
      gl.uniformMatrix4fv(U.uProj, false, proj); gl.uniformMatrix4fv(U.uView, false, view);
      gl.uniform1i(U.uTex, 0);
      if (o.grid) lines(o.grid.points, o.grid.color || [0.3, 0.3, 0.3]);
      let drawn = 0;
      for (const n of nodes) {
        if (!n.visible) continue;
        if (n.kind === "arrow" && finiteMatrix(n.matrix)) {
          attrib(A.pos, arrowBuf.pos, 3); attrib(A.nrm, arrowBuf.nrm, 3); attrib(A.uv, null, 2);
          gl.uniformMatrix4fv(U.uModel, false, n.matrix);
          gl.uniform3fv(U.uColor, n.color); gl.uniform1f(U.uLit, 1); gl.uniform1f(U.uTextured, 0);
          gl.drawArrays(gl.TRIANGLES, 0, arrowBuf.count); drawn++;
        } else if (n.kind === "outline" && n.points.length > 1) {
          const pts = [];
          n.points.forEach((p, i) => { pts.push(p, n.points[(i + 1) % n.points.length]); });
          if (pts.every((p) => p.every(Number.isFinite))) { lines(pts, n.color); drawn++; }
        } else if (n.kind === "panel" && texReady && finiteMatrix(n.matrix)) {
          attrib(A.pos, quad.pos, 3); attrib(A.nrm, quad.nrm, 3); attrib(A.uv, quad.uv, 2);
          gl.activeTexture(gl.TEXTURE0); gl.bindTexture(gl.TEXTURE_2D, tex);
          gl.uniformMatrix4fv(U.uModel, false, n.matrix);
          gl.uniform1f(U.uTextured, 1);
          gl.drawArrays(gl.TRIANGLES, 0, quad.count); drawn++;
        }
      }
      return drawn;
    }
    return { gl, draw, setImage, get hasImage() { return texReady; } };
  }

  // ---- matrices for the preview canvas (column-major)
  function perspective(fovy, aspect, near, far) {
    const f = 1 / Math.tan(fovy / 2), nf = 1 / (near - far);
    return new Float32Array([f / aspect, 0, 0, 0, 0, f, 0, 0, 0, 0, (far + near) * nf, -1, 0, 0, 2 * far * near * nf, 0]);
  }
  /** The view matrix (inverse of the viewer's pose) for {position, orientation x y z w}. */
  function viewMatrix(viewer) {
    const [x, y, z, w] = viewer.orientation, p = viewer.position;
    const R = [[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
      [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
      [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]];
    const t = [0, 1, 2].map((i) => -(R[0][i] * p[0] + R[1][i] * p[1] + R[2][i] * p[2]));
    return new Float32Array([R[0][0], R[0][1], R[0][2], 0, R[1][0], R[1][1], R[1][2], 0, R[2][0], R[2][1], R[2][2], 0, t[0], t[1], t[2], 1]);
  }
  /** A floor grid (line pairs) of `half` metres around `centre` at height `y`. */
  function grid(centre, y, half, step) {
    const pts = [];
    for (let v = -half; v <= half + 1e-9; v += step) {
      pts.push([centre[0] + v, y, centre[2] - half], [centre[0] + v, y, centre[2] + half]);
      pts.push([centre[0] - half, y, centre[2] + v], [centre[0] + half, y, centre[2] + v]);
    }
    return pts;
  }

  root.TactRender = { create, perspective, viewMatrix, grid };
})(typeof window !== "undefined" ? window : globalThis);
