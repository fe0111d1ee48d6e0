"""What the control loops call: ROS-free, numpy in, numpy out.

Fast loop (every control tick, O(1))::

    dec = DecoderRuntime("export_dir")                  # onnxruntime, CPU, 1 thread
    state = dec.initial_state()                          # (1, hidden) zeros, at each new chunk
    for t in range(dec.horizon):                         # t = control step since the chunk's obs
        rel, state = dec.step(latent_chunk, t, contact_raw, state)
        target = relative_to_absolute(rel, chunk_start_pose)   # (A*7) world frame, quat xyzw

    latent_chunk  (latent_steps, latent_dim) float32 from SlowPolicyRuntime.predict (rdp_ldp)
    contact_raw   (A*6) wrench [fx fy fz tx ty tz] per arm, tool frame, N and N m
                  or (A*N*4) tactile marker fields [x y dx dy] per marker per arm (as recorded)
    rel           (A*9) target pose relative to the chunk start pose: position (m) in the
                  start TCP frame + 6-D rotation (first two columns of R_start^T R)
    chunk_start_pose (A*7) the TCP pose (world frame, xyzw) observed with the chunk's images

Slow loop (per chunk)::

    slow = SlowPolicyRuntime("export_dir")               # onnxruntime, CUDA when present, else CPU
    latent_chunk = slow.predict(images={"wrist": (n_obs, H, W, 3) uint8}, tcp_pose=(n_obs, A*7),
                                contact=(contact_history, Craw))
    # rdp_ldp -> (latent_steps, latent_dim) tokenizer latent; dp -> (H, A*9) relative actions

Observation history: ``n_obs_steps`` samples ``obs_stride`` control periods apart, oldest
first, the last one being "now" (the chunk start). Images are resized to the model's
``image_size`` when they differ. All normalisation happens inside the exported graphs
(or the torch twins), never in the caller.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np

from slowfast_data.fileio import read_json
from slowfast_data.geometry import absolute_to_relative, relative_to_absolute  # noqa: F401  (the pose helpers)

__all__ = ["DecoderRuntime", "SlowPolicyRuntime", "TorchDecoderRuntime", "TorchSlowPolicy",
           "relative_to_absolute", "absolute_to_relative", "make_session"]


def make_session(path: str | Path, threads: int = 1, providers: list[str] | None = None):
    """An onnxruntime session: all graph optimisations, ``threads`` intra-op threads (0 = ORT's
    default), sequential execution; CUDA provider when available unless ``providers`` is given."""
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"ONNX file {path} does not exist (run `slowfast export` first)")
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.intra_op_num_threads = int(threads)
    so.inter_op_num_threads = 1
    if providers is None:
        avail = ort.get_available_providers()
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in avail]
    try:
        return ort.InferenceSession(str(path), so, providers=providers)
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ValueError(f"{path}: onnxruntime cannot load it ({str(exc).splitlines()[0]})") from None


def check_io(sess, path: Path, expected: Mapping[str, list]) -> None:
    """ValueError naming the first input whose name, rank or fixed dimension differs."""
    got = {i.name: i.shape for i in sess.get_inputs()}
    if list(got) != list(expected):
        raise ValueError(f"{path.name}: inputs {list(got)} do not match the expected {list(expected)}")
    for name, shape in expected.items():
        g = got[name]
        if len(g) != len(shape) or any(isinstance(a, int) and isinstance(b, int) and a != b for a, b in zip(g, shape)):
            raise ValueError(f"{path.name}: input {name!r} has shape {g}, expected {shape}")


def _load_meta(export_dir: str | Path) -> tuple[Path, dict]:
    d = Path(export_dir)
    p = d / "runtime.json"
    if not p.is_file():
        raise ValueError(f"{d}: no runtime.json (not an export folder; run `slowfast export CKPT --out DIR`)")
    return d, read_json(p)


class _DecoderBase:
    horizon: int
    compression: int
    hidden: int
    latent_steps: int
    latent_dim: int
    contact_dim: int

    def initial_state(self, batch: int = 1) -> np.ndarray:
        return np.zeros((batch, self.hidden), np.float32)

    def _inputs(self, latent_chunk, step_index, contact, state):
        if not 0 <= step_index < self.horizon:
            raise ValueError(f"step_index {step_index}: must be in [0, {self.horizon})")
        lat = np.asarray(latent_chunk, np.float32)
        single = lat.ndim == 2
        if single:
            lat = lat[None]
        if lat.shape[1:] != (self.latent_steps, self.latent_dim):
            raise ValueError(f"latent_chunk of shape {lat.shape[1:]}, expected ({self.latent_steps}, {self.latent_dim})")
        c = np.asarray(contact, np.float32).reshape(lat.shape[0], -1)
        if c.shape[1] != self.contact_dim:
            raise ValueError(f"contact of length {c.shape[1]}, expected {self.contact_dim}")
        if state is None:
            state = self.initial_state(lat.shape[0])
        z = np.ascontiguousarray(lat[:, step_index // self.compression])
        t = np.full((lat.shape[0], 1), float(step_index), np.float32)
        return single, z, c, t, np.asarray(state, np.float32)

    def step_absolute(self, latent_chunk, step_index: int, contact, state, start_pose):
        """Like :meth:`step` but returns the absolute target pose (A*7, world frame, xyzw)."""
        rel, state = self.step(latent_chunk, step_index, contact, state)
        return relative_to_absolute(rel, start_pose), state

    def encode(self, actions) -> np.ndarray:
        """The tokenizer's encoder: relative actions (H, A*9) (un-normalised, as :meth:`step`
        returns them) -> the latent chunk (latent_steps, latent_dim) that the latent diffusion
        policy predicts. Used to inpaint a latent chunk (policy.rdp.handover)."""
        a = np.asarray(actions, np.float32)
        if a.shape != (self.horizon, self.action_dim):
            raise ValueError(f"actions of shape {a.shape}, expected ({self.horizon}, {self.action_dim})")
        return self._encode(np.ascontiguousarray(a[None]))[0]

    def decode_chunk(self, latent_chunk, contacts, start_pose=None):
        """Decode a whole chunk step by step: contacts (H', Craw) -> actions (H', A*9 or A*7)."""
        state, out = None, []
        for t, c in enumerate(np.asarray(contacts, np.float32)):
            a, state = self.step(latent_chunk, t, c, state)
            out.append(a)
        rel = np.stack(out)
        return rel if start_pose is None else relative_to_absolute(rel, start_pose)


class DecoderRuntime(_DecoderBase):
    """The tokenizer decoder, one control tick per call, through onnxruntime.

    step(latent_chunk, step_index, contact, state) -> (action_rel, state)
      latent_chunk (latent_steps, latent_dim) or (B, latent_steps, latent_dim) float32
      step_index   int in [0, horizon): control steps since the chunk's observation
      contact      (Craw,) or (B, Craw) raw wrench or tactile marker fields
      state        (B, hidden) from the previous call, or None / initial_state() at chunk start
      -> action_rel (A*9,) or (B, A*9); state (B, hidden)

    Runs on the CPU by default, on purpose: the step is a few thousand multiply-adds, and a
    GPU round trip per tick (launch + copies) costs more than the whole CPU step. Pass
    ``providers=None`` with ``prefer_gpu=True`` to use CUDA when present anyway.
    """

    def __init__(self, export_dir: str | Path, threads: int = 1, providers: list[str] | None = None,
                 prefer_gpu: bool = False) -> None:
        if providers is None and not prefer_gpu:
            providers = ["CPUExecutionProvider"]
        d, meta = _load_meta(export_dir)
        if "decoder_step" not in meta.get("files", {}):
            raise ValueError(f"{d}: export of a {meta.get('model_type')!r} model has no decoder_step.onnx")
        self.meta = meta
        self.horizon, self.compression, self.hidden = int(meta["horizon"]), int(meta["compression"]), int(meta["hidden"])
        self.latent_steps, self.latent_dim = int(meta["latent_steps"]), int(meta["latent_dim"])
        self.contact_dim = int(meta["shapes"]["contact_raw_dim"])
        self.action_dim = int(meta["shapes"]["action_dim"])
        path = d / meta["files"]["decoder_step"]
        self.session = make_session(path, threads, providers)
        check_io(self.session, path, {"latent": ["batch", self.latent_dim], "contact": ["batch", self.contact_dim],
                                      "step": ["batch", 1], "state": ["batch", self.hidden]})
        self.providers = self.session.get_providers()
        self._dir, self._threads, self._enc = d, threads, None
        self.has_encoder = "action_encoder" in meta["files"]

    def _encode(self, a: np.ndarray) -> np.ndarray:
        if self._enc is None:   # loaded on first use: only the slow side inpaints
            name = self.meta["files"].get("action_encoder")
            if not name:
                raise ValueError(f"{self._dir}: export has no action_encoder.onnx (inpainting a latent chunk "
                                 f"needs it: re-export the checkpoint with `slowfast export`)")
            self._enc = make_session(self._dir / name, self._threads, ["CPUExecutionProvider"])
        return self._enc.run(None, {"action": a})[0]

    def run_raw(self, latent_t: np.ndarray, contact: np.ndarray, step: np.ndarray, state: np.ndarray):
        """The bare session call (all (B, .) float32 arrays), for callers that pre-build inputs."""
        return self.session.run(None, {"latent": latent_t, "contact": contact, "step": step, "state": state})

    def step(self, latent_chunk, step_index: int, contact, state=None):
        single, z, c, t, s = self._inputs(latent_chunk, step_index, contact, state)
        a, s = self.session.run(None, {"latent": z, "contact": c, "step": t, "state": s})
        return (a[0] if single else a), s


class TorchDecoderRuntime(_DecoderBase):
    """Same interface as :class:`DecoderRuntime`, running the checkpoint in torch (CPU)."""

    def __init__(self, ckpt_dir: str | Path) -> None:
        import torch

        from .checkpoint import load_checkpoint
        from .export import ActionEncoderExport, DecoderStepExport

        ck = load_checkpoint(ckpt_dir, expect=("rdp_tokenizer", "rdp_ldp"))
        tok = ck if ck.config.model_type == "rdp_tokenizer" else ck.tokenizer
        self.module = DecoderStepExport(tok).eval()
        self.encoder = ActionEncoderExport(tok).eval()
        c = tok.config
        self.horizon, self.compression, self.hidden = c.data.horizon, c.tokenizer.compression, c.tokenizer.hidden
        self.latent_steps, self.latent_dim = c.latent_steps, c.tokenizer.latent_dim
        self.contact_dim = int(c.shapes["contact_raw_dim"])
        self.action_dim = int(c.shapes["action_dim"])
        self._torch = torch

    def _encode(self, a: np.ndarray) -> np.ndarray:
        with self._torch.inference_mode():
            return self.encoder(self._torch.from_numpy(a)).numpy()

    def step(self, latent_chunk, step_index: int, contact, state=None):
        torch = self._torch
        single, z, c, t, s = self._inputs(latent_chunk, step_index, contact, state)
        with torch.inference_mode():
            a, s = self.module(torch.from_numpy(z), torch.from_numpy(c), torch.from_numpy(t), torch.from_numpy(s))
        a, s = a.numpy(), s.numpy()
        return (a[0] if single else a), s


class _SlowBase:
    meta: dict

    def _setup(self, meta: dict) -> None:
        self.model_type = meta["model_type"]
        self.cameras = list(meta.get("cameras", []))
        self.n_obs, self.history = int(meta["n_obs_steps"]), int(meta["contact_history"])
        self.image_size = tuple(meta["image_size"])
        self.num_arms = int(meta["shapes"]["num_arms"])
        self.contact_dim = int(meta["shapes"]["contact_raw_dim"])
        self.target_len, self.target_dim = int(meta["target_len"]), int(meta["target_dim"])
        self.mean = np.asarray(meta["target_norm"]["mean"], np.float32)
        self.std = np.asarray(meta["target_norm"]["std"], np.float32)
        self.use_contact = True

    def warmup(self) -> float:
        """One prediction on neutral inputs, so the first real one is not the slow one (the
        first call imports the noise scheduler and lets onnxruntime allocate): 6 s on a CPU,
        most of an 8 s sim episode. Returns the seconds it took."""
        import time  # noqa: PLC0415

        t0 = time.perf_counter()
        images = {c: np.zeros((self.n_obs, *self.image_size, 3), np.uint8) for c in self.cameras} or None
        pose = np.tile(np.array([0, 0, 0, 0, 0, 0, 1.0], np.float32), (self.n_obs, self.num_arms))
        contact = np.zeros((self.history, self.contact_dim), np.float32)
        self.predict(images, pose, contact if self.use_contact else None, seed=0)
        return time.perf_counter() - t0

    def begin_episode(self, seed: int) -> None:
        """Draw this episode's diffusion noise from (the runtime's seed, ``seed``): an
        evaluation is then deterministic per episode seed, whatever ran before it."""
        self._rng = np.random.default_rng([self._seed, int(seed)])

    def _scheduler(self, steps: int | None):
        from .config import DiffusionConfig
        from .diffusion import make_scheduler

        sched = make_scheduler(DiffusionConfig.from_dict(self.meta["diffusion"]))
        sched.set_timesteps(steps or int(self.meta["diffusion"]["num_inference_steps"]))
        return sched

    def _obs(self, images, tcp_pose, contact) -> list[np.ndarray]:
        pose = np.asarray(tcp_pose, np.float32).reshape(1, self.n_obs, -1)
        if pose.shape[-1] != 7 * self.num_arms:
            raise ValueError(f"tcp_pose of width {pose.shape[-1]}, expected {7 * self.num_arms} (A*7)")
        arrays = []
        if self.cameras:
            if images is None or any(c not in images for c in self.cameras):
                raise ValueError(f"images must hold cameras {self.cameras}")
            stack = []
            for cam in self.cameras:
                im = np.asarray(images[cam])
                if im.ndim != 4 or im.shape[0] != self.n_obs or im.shape[-1] != 3 or im.dtype != np.uint8:
                    raise ValueError(f"images[{cam!r}]: expected ({self.n_obs}, H, W, 3) uint8, got {im.shape} {im.dtype}")
                if im.shape[1:3] != self.image_size:
                    import cv2
                    im = np.stack([cv2.resize(x, (self.image_size[1], self.image_size[0]), interpolation=cv2.INTER_AREA) for x in im])
                stack.append(im.transpose(0, 3, 1, 2))
            arrays.append(np.ascontiguousarray(np.stack(stack)[None]))
        arrays.append(pose)
        if self.use_contact:
            c = np.asarray(contact, np.float32).reshape(1, self.history, -1)
            if c.shape[-1] != self.contact_dim:
                raise ValueError(f"contact of width {c.shape[-1]}, expected {self.contact_dim}")
            arrays.append(c)
        return arrays

    def predict(self, images: Mapping[str, np.ndarray] | None, tcp_pose, contact=None,
                seed: int | None = None, num_inference_steps: int | None = None,
                guide: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """Observations -> one chunk, un-normalised: (latent_steps, latent_dim) tokenizer latent
        for rdp_ldp, (H, A*9) relative actions for dp. ``seed`` fixes the initial noise.

        ``guide`` = (values (T, C) in the chunk's units, weights (T,) in [0, 1]): inpainting.
        At every denoising step the predicted clean chunk is pulled towards ``values`` by each
        row's weight (1: replaced, 0: free) and the step continues from the corrected
        prediction, so the free rows are denoised in agreement with the fixed ones (the
        gradient-free form of Real-Time Chunking's guided inpainting; rows with weight 1 come
        out equal to ``values``). See :mod:`policy.rdp.handover`."""
        import torch

        cond = self._encode(self._obs(images, tcp_pose, contact))
        sched = self._scheduler(num_inference_steps)
        rng = self._rng if seed is None else np.random.default_rng(seed)
        x = torch.from_numpy(rng.standard_normal((1, self.target_len, self.target_dim)).astype(np.float32))
        y = w = None
        if guide is not None:
            y, w = _guide_tensors(guide, self.target_len, self.target_dim, self.mean, self.std)
        for t in sched.timesteps:
            out = torch.from_numpy(self._denoise(x.numpy(), np.array([int(t)], np.int64), cond))
            if y is not None:
                out = _pull_towards(sched, out, t, x, y, w)
            x = sched.step(out, t, x).prev_sample
        return x.numpy()[0] * self.std + self.mean


def _guide_tensors(guide, target_len: int, target_dim: int, mean, std):
    """(values, weights) in chunk units -> normalised (1, T, C) values and (1, T, 1) weights."""
    import torch

    values, weights = guide
    values = np.asarray(values, np.float32)
    weights = np.asarray(weights, np.float32).reshape(-1)
    if values.shape != (target_len, target_dim) or weights.shape != (target_len,):
        raise ValueError(f"guide: values {values.shape} and weights {weights.shape}, expected "
                         f"({target_len}, {target_dim}) and ({target_len},)")
    if not (np.isfinite(weights).all() and (weights >= 0).all() and (weights <= 1).all()):
        raise ValueError("guide: weights must be finite and in [0, 1]")
    on = weights > 0
    if not np.isfinite(values[on]).all():
        raise ValueError("guide: a row with a weight has non-finite values")
    y = np.where(on[:, None], (values - mean) / std, 0.0).astype(np.float32)
    return torch.from_numpy(y[None]), torch.from_numpy(weights[None, :, None])


def _clean_sample(kind: str, out, x, sa, sb):
    """The clean sample a model output of ``kind`` predicts at a step with sqrt(abar) ``sa``
    and sqrt(1 - abar) ``sb``."""
    if kind == "epsilon":
        return (x - sb * out) / sa
    if kind == "sample":
        return out
    return sa * x - sb * out   # v_prediction


def _pull(kind: str, out, x, sa, sb, y, w):
    """(corrected clean sample, the noise it implies): the prediction pulled to ``y`` by ``w``."""
    x0 = _clean_sample(kind, out, x, sa, sb)
    x0 = x0 + w * (y - x0)
    return x0, (x - sa * x0) / sb


def _pull_towards(sched, out, t, x, y, w):
    """The model output at ``t`` corrected so its clean-sample prediction is pulled to ``y``."""
    a = sched.alphas_cumprod[int(t)].to(x.dtype)
    sa, sb = a.sqrt(), (1 - a).sqrt()
    kind = sched.config.prediction_type
    x0, eps = _pull(kind, out, x, sa, sb, y, w)
    if kind == "epsilon":
        return eps
    if kind == "sample":
        return x0
    return sa * eps - sb * x0


class SlowPolicyRuntime(_SlowBase):
    """Observation encoder + DDIM loop over the exported denoiser (onnxruntime).

    predict(images, tcp_pose, contact, seed=None) -> chunk (see :meth:`_SlowBase.predict`)
      images   {camera: (n_obs, H, W, 3) uint8 RGB}, oldest first (None when no cameras)
      tcp_pose (n_obs, A*7) float32 world frame, quaternion x, y, z, w
      contact  (contact_history, Craw) raw wrench or tactile marker fields, oldest first
    """

    def __init__(self, export_dir: str | Path, threads: int = 0, providers: list[str] | None = None, seed: int = 0) -> None:
        d, meta = _load_meta(export_dir)
        if meta.get("model_type") not in ("rdp_ldp", "dp"):
            raise ValueError(f"{d}: export of a {meta.get('model_type')!r} model has no slow policy (needs rdp_ldp or dp)")
        self.meta = meta
        self._setup(meta)
        self.obs_session = make_session(d / meta["files"]["obs_encoder"], threads, providers)
        self.den_session = make_session(d / meta["files"]["denoiser"], threads, providers)
        names = [i.name for i in self.obs_session.get_inputs()]
        self.use_contact = "contact" in names
        a = self.num_arms
        exp = {}
        if self.cameras:
            exp["images"] = ["batch", len(self.cameras), self.n_obs, 3, *self.image_size]
        exp["tcp_pose"] = ["batch", self.n_obs, 7 * a]
        if self.use_contact:
            exp["contact"] = ["batch", self.history, self.contact_dim]
        check_io(self.obs_session, d / meta["files"]["obs_encoder"], exp)
        check_io(self.den_session, d / meta["files"]["denoiser"],
                 {"sample": ["batch", self.target_len, self.target_dim], "timestep": ["batch"],
                  "cond": ["batch", int(meta["cond_dim"])]})
        self._seed, self._rng = int(seed), np.random.default_rng(seed)
        self.providers = self.den_session.get_providers()

    def _encode(self, arrays: list[np.ndarray]) -> np.ndarray:
        names = [i.name for i in self.obs_session.get_inputs()]
        return self.obs_session.run(None, dict(zip(names, arrays)))[0]

    def _denoise(self, x: np.ndarray, t: np.ndarray, cond: np.ndarray) -> np.ndarray:
        return self.den_session.run(None, {"sample": x, "timestep": t, "cond": cond})[0]


def ddim_coefficients(sched) -> list[tuple[int, float, float, float, float]]:
    """Per sampling step of a diffusers DDIM scheduler (eta 0, after ``set_timesteps``):
    (t, sqrt(abar_t), sqrt(1 - abar_t), sqrt(abar_prev), sqrt(1 - abar_prev)), the numbers its
    ``step`` uses, so that a loop can run with them as constants (on a GPU, in a CUDA graph)."""
    ac = sched.alphas_cumprod.double()
    stride = sched.config.num_train_timesteps // sched.num_inference_steps
    out = []
    for t in sched.timesteps.tolist():
        a = float(ac[t])
        ap = float(ac[t - stride]) if t - stride >= 0 else float(sched.final_alpha_cumprod)
        out.append((int(t), a ** 0.5, (1 - a) ** 0.5, ap ** 0.5, (1 - ap) ** 0.5))
    return out


class TorchSlowPolicy(_SlowBase):
    """Same interface as :class:`SlowPolicyRuntime`, running the checkpoint (EMA weights) in torch.

    The whole sampling loop stays on ``device``: observations go up once, the DDIM update
    (diffusers' coefficients as constants, :func:`ddim_coefficients`) and the inpainting
    correction run there, and one chunk comes back. With ``cuda_graph`` (on a CUDA device)
    the loop is captured once as a CUDA graph and replayed: one launch per chunk instead of
    thousands of small kernels from Python."""

    def __init__(self, ckpt_dir: str | Path, seed: int = 0, device: str = "cpu", cuda_graph: bool = False) -> None:
        import torch

        from .checkpoint import load_checkpoint
        from .contract import window_meta
        from .export import DenoiserExport, ObsEncoderExport

        ck = load_checkpoint(ckpt_dir, expect=("rdp_ldp", "dp"))
        model = ck.model_for_inference()
        c = ck.config
        target = "latent" if c.model_type == "rdp_ldp" else "action"
        m, s = ck.normalizer.mean_std(target)
        self.meta = {"model_type": c.model_type, "cameras": c.shapes.get("cameras", []), **window_meta(c.data),
                     "image_size": list(c.data.image_size), "shapes": c.shapes,
                     "target_len": model.target_len, "target_dim": model.target_dim,
                     "target_norm": {"mean": m.tolist(), "std": s.tolist()}, "diffusion": c.diffusion.to_dict()}
        self._setup(self.meta)
        self.obs = ObsEncoderExport(ck, model).eval().to(device)
        self.use_contact = self.obs.use_contact
        self.den = DenoiserExport(model).eval().to(device)
        self._torch, self.device = torch, torch.device(device)
        self._seed, self._rng = int(seed), np.random.default_rng(seed)
        if cuda_graph and self.device.type != "cuda":
            raise ValueError(f"cuda_graph: needs a CUDA device, got {device!r}")
        self.cuda_graph = bool(cuda_graph)
        self._graphs: dict = {}

    def predict(self, images, tcp_pose, contact=None, seed: int | None = None,
                num_inference_steps: int | None = None, guide=None) -> np.ndarray:
        """As :meth:`_SlowBase.predict` (same noise, same result within float round-off), with
        every step on the device."""
        torch = self._torch
        arrays = self._obs(images, tcp_pose, contact)
        sched = self._scheduler(num_inference_steps)
        rng = self._rng if seed is None else np.random.default_rng(seed)
        noise = rng.standard_normal((1, self.target_len, self.target_dim)).astype(np.float32)
        if guide is not None:
            y, w = _guide_tensors(guide, self.target_len, self.target_dim, self.mean, self.std)
        else:
            y = torch.zeros(1, self.target_len, self.target_dim)
            w = torch.zeros(1, self.target_len, 1)
        dev = self.device
        with torch.inference_mode():
            inputs = [torch.from_numpy(a).to(dev) for a in arrays]
            x, y, w = torch.from_numpy(noise).to(dev), y.to(dev), w.to(dev)
            coeffs = ddim_coefficients(sched)
            if not self.cuda_graph:
                out = self._loop(coeffs, sched.config, inputs, x, y, w)
            else:
                out = self._replay(coeffs, sched.config, inputs, x, y, w)
            chunk = out[0].cpu().numpy()
        return chunk * self.std + self.mean

    def _loop(self, coeffs, cfg, inputs, x, y, w):
        """The DDIM loop (eta 0) with the inpainting pull, pure tensor ops on x's device."""
        torch = self._torch
        cond = self.obs(*inputs)
        kind, clip = cfg.prediction_type, (cfg.clip_sample_range if cfg.clip_sample else None)
        for t, sa, sb, sap, sbp in coeffs:
            tt = torch.full((x.shape[0],), t, dtype=torch.int64, device=x.device)
            x0, eps = _pull(kind, self.den(x, tt, cond), x, sa, sb, y, w)   # inpainting (w = 0: unchanged)
            if clip is not None:
                x0 = x0.clamp(-clip, clip)
            x = sap * x0 + sbp * eps
        return x

    def _replay(self, coeffs, cfg, inputs, x, y, w):
        torch = self._torch
        key = (tuple(c[0] for c in coeffs), tuple(tuple(a.shape) for a in inputs))
        g = self._graphs.get(key)
        if g is None:
            static = {"inputs": [a.clone() for a in inputs], "x": x.clone(), "y": y.clone(), "w": w.clone()}
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):           # warm-up outside the graph (allocator, kernels)
                for _ in range(2):
                    self._loop(coeffs, cfg, static["inputs"], static["x"], static["y"], static["w"])
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static["out"] = self._loop(coeffs, cfg, static["inputs"], static["x"], static["y"], static["w"])
            g = self._graphs[key] = (graph, static)
        graph, static = g
        for dst, src in zip(static["inputs"], inputs):
            dst.copy_(src)
        static["x"].copy_(x)
        static["y"].copy_(y)
        static["w"].copy_(w)
        graph.replay()
        return static["out"]

    def _encode(self, arrays):
        torch = self._torch
        with torch.inference_mode():
            return self.obs(*[torch.from_numpy(a).to(self.device) for a in arrays]).cpu().numpy()

    def _denoise(self, x, t, cond):
        torch = self._torch
        with torch.inference_mode():
            return self.den(torch.from_numpy(x).to(self.device), torch.from_numpy(t).to(self.device),
                            torch.from_numpy(cond).to(self.device)).cpu().numpy()
