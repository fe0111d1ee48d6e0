"""`slowfast bench policy --json`: decoder step and slow-policy latency, torch and onnxruntime.

Figures (all batch 1, CPU unless --providers says otherwise):

* decoder_step_us: one O(1) decoder tick, p50/p99 in microseconds
    - torch_module: the torch module alone (1 thread)
    - ort_session: the bare onnxruntime call (1 intra-op thread, all graph optimisations)
    - ort_runtime: DecoderRuntime.step including input checks and latent slicing
* prefix_rerun: the published approach, re-running the GRU over the chunk prefix at each
  tick; cost of the full 32-step prefix (and the mean over prefixes 1..32) as a ratio to
  the O(1) step, in torch and in onnxruntime
  (``by_hidden_size``: the same in onnxruntime for larger GRUs, where compute dominates)
* slow_chunk_ms: one latent chunk from observations (obs encoder once + DDIM steps), p50/p99
  in milliseconds, onnxruntime and torch

Weights are random unless --checkpoint is given: latency depends on sizes, not on values.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="sim", choices=("sim", "published"), help="model sizes (default sim)")
    p.add_argument("--checkpoint", help="an rdp_ldp checkpoint to measure instead of random weights")
    p.add_argument("--ticks", type=int, default=5000, help="decoder ticks to time (default 5000)")
    p.add_argument("--chunks", type=int, default=30, help="slow-policy chunks to time (default 30)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads for the slow policy (default 1)")
    p.add_argument("--ddim-steps", type=int, default=8, help="DDIM sampling steps (default 8)")
    p.add_argument("--device", default="cpu",
                   help="torch device of the slow policy's torch figures, e.g. cuda (default cpu); on CUDA the "
                        "whole-loop CUDA graph is timed too")
    p.add_argument("--hidden-sweep", default="128,512",
                   help="GRU hidden sizes for the prefix-vs-step scaling figure, comma-separated ('' = skip)")


def _pct(samples: list[float], scale: float) -> dict:
    a = np.asarray(samples) * scale
    return {"p50": round(float(np.percentile(a, 50)), 2), "p99": round(float(np.percentile(a, 99)), 2),
            "mean": round(float(a.mean()), 2), "n": len(a)}


def _time(fn, n: int, warmup: int = 50) -> list[float]:
    for _ in range(min(warmup, n)):
        fn()
    out = []
    clock = time.perf_counter
    for _ in range(n):
        t0 = clock()
        fn()
        out.append(clock() - t0)
    return out


def _prefix_vs_step(root: Path, tc, hidden: int, n: int) -> dict:
    """onnxruntime: whole-prefix decode vs one step for a tokenizer of GRU size ``hidden``."""
    import warnings

    import torch

    from .config import TokenizerConfig
    from .runtime import make_session
    from .tokenizer import AsymmetricTokenizer

    cfg = TokenizerConfig(**{**tc.tokenizer.to_dict(), "hidden": hidden})
    a, c = int(tc.shapes["action_dim"]), int(tc.shapes["contact_dim"])
    tok = AsymmetricTokenizer(cfg, a, c, tc.data.horizon).eval()

    class Seq(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, latent, contact):
            return self.m.decode(latent, contact)

    class Step(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, latent, contact, step, state):
            return self.m.step(latent, contact, step, state)

    lat = torch.randn(1, tc.latent_steps, cfg.latent_dim)
    con = torch.randn(1, tc.data.horizon, c)
    step_args = (lat[:, 0], con[:, 0], torch.zeros(1, 1), torch.zeros(1, hidden))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Seq(tok), (lat, con), str(root / f"seq{hidden}.onnx"), input_names=["latent", "contact"],
                          output_names=["actions"], opset_version=17, dynamo=False)
        torch.onnx.export(Step(tok), step_args, str(root / f"step{hidden}.onnx"),
                          input_names=["latent", "contact", "step", "state"], output_names=["action", "state_out"],
                          opset_version=17, dynamo=False)
    seq, stp = make_session(root / f"seq{hidden}.onnx"), make_session(root / f"step{hidden}.onnx")
    fs = {"latent": lat.numpy(), "contact": con.numpy()}
    ft = dict(zip(["latent", "contact", "step", "state"], [x.numpy() for x in step_args]))
    t_seq, t_step = _time(lambda: seq.run(None, fs), n), _time(lambda: stp.run(None, ft), n)
    return {"ort_prefix_us": _pct(t_seq, 1e6)["p50"], "ort_step_us": _pct(t_step, 1e6)["p50"],
            "ratio_full_prefix": round(float(np.median(t_seq) / np.median(t_step)), 1)}


def make_random_checkpoints(root: Path, preset_name: str = "sim", num_arms: int = 1, cameras=("wrist",),
                            seed: int = 0) -> Path:
    """Untrained tokenizer + LDP checkpoints with identity normalisers; returns the LDP folder."""
    import torch

    from .checkpoint import save_checkpoint
    from .config import preset
    from .models import build_model
    from .normalizer import Normalizer

    a = num_arms
    shapes = {"fps": 200.0, "arms": [f"arm{i}" for i in range(a)], "num_arms": a, "action_dim": 9 * a,
              "proprio_dim": 9 * a, "contact_raw_dim": 6 * a, "contact_dim": 6 * a, "tactile_markers": 0,
              "cameras": []}
    norm = Normalizer()
    for name, dim in (("action", 9 * a), ("proprio", 9 * a), ("contact", 6 * a)):
        norm.stats[name] = {"mean": np.zeros(dim, np.float32), "std": np.ones(dim, np.float32)}
    norm.stats["image"] = {"mean": np.full(3, 0.5, np.float32), "std": np.full(3, 0.25, np.float32)}
    torch.manual_seed(seed)
    tcfg = preset(preset_name, "rdp_tokenizer")
    tcfg.shapes = dict(shapes)
    save_checkpoint(root / "tok", tcfg, build_model(tcfg, norm), norm)
    lcfg = preset(preset_name, "rdp_ldp")
    lcfg.shapes = {**shapes, "cameras": list(cameras)}
    lnorm = Normalizer.from_dict(norm.to_dict())
    lnorm.stats["latent"] = {"mean": np.zeros(lcfg.tokenizer.latent_dim, np.float32),
                             "std": np.ones(lcfg.tokenizer.latent_dim, np.float32)}
    save_checkpoint(root / "ldp", lcfg, build_model(lcfg, lnorm), lnorm, tokenizer_dir=root / "tok")
    return root / "ldp"


def run(args: argparse.Namespace) -> dict:
    import torch

    from .checkpoint import load_checkpoint
    from .export import DecoderStepExport, export_checkpoint
    from .runtime import DecoderRuntime, SlowPolicyRuntime, TorchSlowPolicy, make_session

    for name in ("ticks", "chunks", "threads", "ddim_steps"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} {getattr(args, name)}: must be at least 1")
    try:
        dev = torch.device(args.device)
    except RuntimeError:
        raise ValueError(f"--device {args.device!r}: not a torch device (cpu, cuda, cuda:1, ...)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {args.device}: no CUDA device on this machine")
    log = lambda msg: print(f"bench policy: {msg}", file=sys.stderr, flush=True)  # noqa: E731
    tmp = tempfile.TemporaryDirectory(prefix="slowfast-bench-")
    root = Path(tmp.name)
    if args.checkpoint:
        ckpt_dir = Path(args.checkpoint)
        load_checkpoint(ckpt_dir, expect="rdp_ldp")  # clear error for another model type
    else:
        log(f"building random {args.preset} checkpoints")
        ckpt_dir = make_random_checkpoints(root, args.preset)
    log("exporting to ONNX")
    export_checkpoint(ckpt_dir, root / "onnx")
    ck = load_checkpoint(ckpt_dir, expect="rdp_ldp")
    tok = ck.tokenizer
    tc = tok.config
    horizon, hidden = tc.data.horizon, tc.tokenizer.hidden

    # ---------------------------------------------------------------- decoder step
    torch.set_num_threads(1)
    mod = DecoderStepExport(tok).eval()
    rng = np.random.default_rng(0)
    z = torch.from_numpy(rng.standard_normal((1, tc.tokenizer.latent_dim)).astype(np.float32))
    c = torch.from_numpy(rng.standard_normal((1, int(tc.shapes["contact_raw_dim"]))).astype(np.float32))
    t = torch.tensor([[5.0]])
    h = torch.zeros(1, hidden)
    log(f"decoder step: {args.ticks} ticks each in torch and onnxruntime")
    with torch.inference_mode():
        torch_step = _time(lambda: mod(z, c, t, h), args.ticks)
    dec = DecoderRuntime(root / "onnx", threads=1)
    feed = (z.numpy(), c.numpy(), t.numpy(), h.numpy())
    ort_step = _time(lambda: dec.run_raw(*feed), args.ticks)
    lat = rng.standard_normal((tc.latent_steps, tc.tokenizer.latent_dim)).astype(np.float32)
    state = dec.initial_state()
    cc = c.numpy()[0]
    counter = [0]

    def tick():
        nonlocal state
        i = counter[0] % horizon
        if i == 0:
            state = dec.initial_state()
        _, state = dec.step(lat, i, cc, state)
        counter[0] += 1

    ort_rt = _time(tick, args.ticks)

    # ---------------------------------------------------------------- prefix re-run (published approach)
    log("prefix re-run: decoding the whole prefix at each tick")
    tokm = tok.model.eval()
    latent = torch.from_numpy(lat)[None]
    contacts = torch.randn(1, horizon, tokm.contact_dim)
    n_prefix = max(200, args.ticks // 10)
    with torch.inference_mode():
        full = _time(lambda: tokm.decode(latent, contacts), n_prefix)
        means = []
        for L in range(1, horizon + 1):
            means.append(np.median(_time(lambda: tokm.decode(latent, contacts[:, :L]), 20, warmup=5)))
        step_norm = _time(lambda: tokm.step(latent[:, 0], contacts[:, 0], t, h), n_prefix)
    seq_path = root / "decoder_sequence.onnx"

    class _Seq(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, latent, contact):
            return self.m.decode(latent, contact)

    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_Seq(tokm), (latent, contacts), str(seq_path), input_names=["latent", "contact"],
                          output_names=["actions"], dynamic_axes={"contact": {1: "steps"}, "actions": {1: "steps"}},
                          opset_version=17, dynamo=False)
    seq = make_session(seq_path, threads=1)
    seq_feed = {"latent": latent.numpy(), "contact": contacts.numpy()}
    ort_full = _time(lambda: seq.run(None, seq_feed), n_prefix)
    ort_means = [np.median(_time(lambda: seq.run(None, {"latent": latent.numpy(), "contact": contacts[:, :L].numpy()}), 20, warmup=5))
                 for L in range(1, horizon + 1)]
    p50 = lambda x: float(np.percentile(x, 50))  # noqa: E731
    prefix = {
        "prefix_steps": horizon,
        "torch_prefix_us": _pct(full, 1e6),
        "torch_step_us": _pct(step_norm, 1e6),
        "torch_ratio_full_prefix": round(p50(full) / p50(step_norm), 1),
        "torch_ratio_mean_prefix": round(float(np.mean(means)) / p50(step_norm), 1),
        "published_torch_prefix_vs_ours_ort_step": round(p50(full) / p50(ort_step), 1),
        "ort_prefix_us": _pct(ort_full, 1e6),
        "ort_ratio_full_prefix": round(p50(ort_full) / p50(ort_step), 1),
        "ort_ratio_mean_prefix": round(float(np.mean(ort_means)) / p50(ort_step), 1),
        "note": "torch ratios: nn.GRU over the prefix vs one fused GRU-cell step (normalised space); ort ratios: "
                "an exported sequence decoder vs decoder_step.onnx; published_torch_prefix_vs_ours_ort_step: what "
                "the published code runs per tick (torch, whole prefix) vs what our fast loop runs (ort, one step). "
                "At GRU hidden 32 both sides are dominated by per-call overhead (~10 us per onnxruntime call), so "
                "the wall-clock ratio is far below the 32x (full prefix) / 16.5x (mean prefix) ratio in arithmetic; "
                "by_hidden_size shows the ratio once the decoder's compute dominates",
    }

    # ---------------------------------------------------------------- scaling with decoder size
    sweep = {}
    for hs in [int(x) for x in str(args.hidden_sweep).split(",") if x.strip()]:
        log(f"prefix re-run vs step at GRU hidden {hs}")
        sweep[str(hs)] = _prefix_vs_step(root, tc, hs, max(200, args.ticks // 10))
    prefix["by_hidden_size"] = sweep

    # ---------------------------------------------------------------- slow policy
    log(f"slow policy: {args.chunks} chunks, {args.ddim_steps} DDIM steps, {args.threads} thread(s)")
    slow = SlowPolicyRuntime(root / "onnx", threads=args.threads)
    d = ck.config.data
    images = {cam: rng.integers(0, 256, (d.n_obs_steps, *d.image_size, 3), dtype=np.uint8) for cam in slow.cameras}
    pose = np.tile(np.array([0.5, 0.0, 0.3, 0, 0, 0, 1], np.float32), (d.n_obs_steps, slow.num_arms))
    contact = rng.standard_normal((d.contact_history, slow.contact_dim)).astype(np.float32)
    ort_chunk = _time(lambda: slow.predict(images, pose, contact, num_inference_steps=args.ddim_steps), args.chunks, warmup=3)
    torch.set_num_threads(args.threads)
    tslow = TorchSlowPolicy(ckpt_dir, device=args.device)
    torch_chunk = _time(lambda: tslow.predict(images, pose, contact, num_inference_steps=args.ddim_steps), args.chunks, warmup=3)
    graph_chunk = None
    if torch.device(args.device).type == "cuda":
        gslow = TorchSlowPolicy(ckpt_dir, device=args.device, cuda_graph=True)
        t0 = time.perf_counter()
        gslow.predict(images, pose, contact, num_inference_steps=args.ddim_steps)   # capture: warm-up, apart
        capture_s = time.perf_counter() - t0
        graph_chunk = {**_pct(_time(lambda: gslow.predict(images, pose, contact, num_inference_steps=args.ddim_steps),
                                    args.chunks, warmup=3), 1e3), "capture_s": round(capture_s, 3)}
    enc_arrays = slow._obs(images, pose, contact)
    enc_only = _time(lambda: slow._encode(enc_arrays), args.chunks, warmup=3)
    n_params = sum(p.numel() for p in ck.model.parameters())
    tmp.cleanup()
    return {
        "preset": args.preset if not args.checkpoint else "checkpoint",
        "sizes": {"horizon": horizon, "latent_steps": tc.latent_steps, "latent_dim": tc.tokenizer.latent_dim,
                  "gru_hidden": hidden, "image_size": list(d.image_size), "cameras": len(slow.cameras),
                  "unet_down_dims": list(ck.config.unet.down_dims), "image_width": ck.config.obs.image_width,
                  "slow_policy_params": n_params},
        "decoder_step_us": {"torch_module": _pct(torch_step, 1e6), "ort_session": _pct(ort_step, 1e6),
                            "ort_runtime": _pct(ort_rt, 1e6), "providers": dec.providers},
        "prefix_rerun": prefix,
        "slow_chunk_ms": {"ddim_steps": args.ddim_steps, "threads": args.threads,
                          "ort": _pct(ort_chunk, 1e3), "torch": _pct(torch_chunk, 1e3), "torch_device": args.device,
                          "torch_cuda_graph": graph_chunk,
                          "ort_obs_encoder_only": _pct(enc_only, 1e3), "providers": slow.providers},
        "targets": {"decoder_step_ort_p99_us_max": 100, "prefix_ratio_min": 10, "slow_chunk_p50_ms_max": 60},
    }
