"""Training for the tokenizer, the latent diffusion policy and the DP baseline.

One function, :func:`train`, used by ``slowfast train tokenizer|ldp|dp``. Multi-GPU goes
through Hugging Face Accelerate (``accelerate launch -m slowfast_app.cli train ...`` or
``torchrun``): the model and optimizer are wrapped by ``Accelerator.prepare`` (DDP), each
process takes its share of every epoch's batches.

Determinism and resume: the model is initialised from ``train.seed``; each epoch's order is
a permutation drawn from (seed, epoch); the noise of step s comes from a generator seeded
with (seed, s, rank). So resuming from a checkpoint written at any step (end of an epoch,
``stop_after_steps``, or Ctrl-C) reproduces the uninterrupted run.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from slowfast_data.reader import LeRobotDataset

from .checkpoint import load_checkpoint, load_training_state, read_config, save_checkpoint
from .config import PolicyConfig, preset
from .dataset import ChunkSamples, check_shapes, required_keys, split_episodes
from .models import build_model
from .normalizer import Normalizer

KINDS = {"tokenizer": "rdp_tokenizer", "ldp": "rdp_ldp", "dp": "dp"}


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """The batches of one epoch: a permutation from (seed, epoch), last partial batch kept."""
    perm = np.random.default_rng([seed, epoch]).permutation(n)
    return [perm[i:i + batch_size] for i in range(0, n, batch_size)]


def collate(samples: list[dict]) -> dict:
    return {k: torch.from_numpy(np.stack([s[k] for s in samples])) for k in samples[0]}


def check_finite(batch: dict, step: int, frames=None) -> None:
    """ValueError naming the input (and the dataset frames) of a batch holding NaN/inf; step < 0 = validation."""
    for k, v in batch.items():
        if v.is_floating_point() and not torch.isfinite(v).all():
            where = f" (dataset frames {list(map(int, frames))[:8]})" if frames is not None else ""
            which = f"batch at step {step}" if step >= 0 else "validation batch"
            raise ValueError(f"NaN or infinite value in {which}: input {k!r}{where}")


def _step_generator(seed: int, step: int, rank: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 1_000_003 + step) * 131 + rank)


class _Trainee:
    """What differs between the three model types: targets and extra frozen parts."""

    def __init__(self, cfg: PolicyConfig, norm: Normalizer, tokenizer=None) -> None:
        self.cfg, self.norm, self.tokenizer = cfg, norm, tokenizer

    def to(self, device) -> None:
        if self.tokenizer is not None:
            self.tokenizer.to(device)
            self._lat_mean = torch.as_tensor(self.norm.mean_std("latent")[0], device=device)
            self._lat_std = torch.as_tensor(self.norm.mean_std("latent")[1], device=device)

    def loss(self, model, batch: dict, generator: torch.Generator):
        if self.cfg.model_type == "rdp_ldp":
            with torch.no_grad():
                mean, _ = self.tokenizer.encode(batch["action"])
                target = (mean - self._lat_mean) / self._lat_std
            return model(batch, generator, target=target)
        return model(batch, generator)


def _fit_latent(tokenizer, samples: ChunkSamples, norm: Normalizer, seed: int, max_samples: int = 4096) -> None:
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(samples), size=min(len(samples), max_samples), replace=False)
    acts = torch.from_numpy(np.stack([samples.action_chunk(int(i)) for i in idx]))
    with torch.no_grad():
        means = [tokenizer.encode(acts[i:i + 256])[0] for i in range(0, len(acts), 256)]
    norm.fit("latent", torch.cat(means).numpy())


def train(kind: str, dataset: str | Path, out: str | Path, cfg: PolicyConfig | None = None, *,
          tokenizer: str | Path | None = None, device: str = "auto", resume: bool = False,
          epochs: int | None = None, progress: bool = True, stop_after_steps: int | None = None) -> dict:
    """Train and write the checkpoint folder ``out``; returns a summary dict.

    ``cfg``: configuration for a fresh run (default: the ``sim`` preset). With ``resume`` the
    configuration comes from ``out`` (``epochs`` may extend it). ``stop_after_steps`` stops
    (and checkpoints) after that many optimisation steps in total, as an interruption would.
    """
    from accelerate import Accelerator
    from diffusers.optimization import get_scheduler
    from tqdm import tqdm

    if kind not in KINDS:
        raise ValueError(f"model kind {kind!r}: must be one of {sorted(KINDS)}")
    model_type = KINDS[kind]
    out = Path(out)
    state: dict = {}
    if resume:
        cfg = read_config(out)
        if cfg.model_type != model_type:
            raise ValueError(f"{out}: checkpoint is a {cfg.model_type!r} model, cannot resume it as {kind!r}")
        ts = load_training_state(out)
        state = ts["state"]
        if epochs is not None:
            cfg.train.epochs = epochs
    else:
        if (out / "config.json").exists():
            raise OSError(f"{out} already holds a checkpoint: pass --resume to continue it, or another --out")
        cfg = cfg or preset("sim", model_type)
        if cfg.model_type != model_type:
            raise ValueError(f"config model_type {cfg.model_type!r} does not match the command ({kind!r})")
        if epochs is not None:
            cfg.train.epochs = epochs
    tc = cfg.train

    if device not in ("auto", "cpu") and not device.startswith("cuda"):
        raise ValueError(f"--device {device!r}: must be auto, cpu or cuda")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: CUDA is not available on this machine")
    # cpu=True also when nothing else is there: under torchrun that makes the processes one
    # gloo DDP group instead of independent runs racing for the same checkpoint.
    acc = Accelerator(cpu=device == "cpu" or (device == "auto" and not torch.cuda.is_available()),
                      mixed_precision=tc.mixed_precision)
    rank, world = acc.process_index, acc.num_processes

    tok = None
    tok_dir = None
    if model_type == "rdp_ldp":
        tok_dir = out / "tokenizer" if resume else tokenizer
        if tok_dir is None:
            raise ValueError("training the latent diffusion policy needs a trained tokenizer: --tokenizer CKPT")
        tok_ckpt = load_checkpoint(tok_dir, expect="rdp_tokenizer")
        tok = tok_ckpt.model.eval()
        for p in tok.parameters():
            p.requires_grad_(False)
        if not resume:  # the tokenizer fixes the chunk, the contact signal and their statistics
            tc_cfg = tok_ckpt.config
            cfg.tokenizer = tc_cfg.tokenizer
            cfg.data.horizon, cfg.data.contact = tc_cfg.data.horizon, tc_cfg.data.contact
            cfg.data.tactile_pca_dim = tc_cfg.data.tactile_pca_dim
            cfg.shapes = dict(tc_cfg.shapes)
            cfg.__post_init__()

    ds = LeRobotDataset(dataset, require=required_keys(cfg), fps=cfg.shapes.get("fps"))
    check_shapes(ds, cfg)
    train_eps, val_eps = split_episodes(ds.ep_ids, cfg.data.val_fraction, tc.seed)
    if resume:
        norm = Normalizer.load(out / "normalizer.json")
    else:
        base = Normalizer.from_dict(tok_ckpt.normalizer.to_dict()) if tok is not None else None
        norm = ChunkSamples.fit(ds, cfg, train_eps, seed=tc.seed, normalizer=base)
    train_set = ChunkSamples(ds, cfg, norm, train_eps)
    val_set = ChunkSamples(ds, cfg, norm, val_eps) if val_eps else None
    if len(train_set) == 0:
        raise ValueError(f"{dataset}: no training samples")
    if tok is not None and not resume:
        _fit_latent(tok, train_set, norm, tc.seed)
    train_set.preload()  # decode videos once, before data-loader workers fork (they share the frames)
    if val_set is not None:
        val_set.preload()

    torch.manual_seed(tc.seed)
    model = build_model(cfg, norm)
    if resume:
        from slowfast_data.fileio import load_safetensors
        model.load_state_dict(load_safetensors(out / "model.safetensors"))
    use_ema = model_type in ("rdp_ldp", "dp")
    ema = None
    if use_ema:
        from diffusers.training_utils import EMAModel
        ema = EMAModel(model.parameters(), decay=cfg.diffusion.ema_max_decay, use_ema_warmup=True,
                       power=cfg.diffusion.ema_power, inv_gamma=1.0)
        if resume and (out / "ema.safetensors").is_file():
            from slowfast_data.fileio import load_safetensors
            saved = load_safetensors(out / "ema.safetensors")
            names = [n for n, _ in model.named_parameters()]
            ema.shadow_params = [saved[n].clone() for n in names]
            ema.optimization_step = int(state.get("ema", {}).get("optimization_step", 0))

    optimizer = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    n_batches = len(epoch_batches(len(train_set), tc.batch_size, tc.seed, 0))
    steps_per_epoch = max(1, n_batches // world)
    total_steps = tc.epochs * steps_per_epoch
    lr_sched = get_scheduler("cosine", optimizer, num_warmup_steps=min(tc.warmup_steps, total_steps // 10),
                             num_training_steps=total_steps)
    if resume:
        optimizer.load_state_dict(ts["optimizer"])
        lr_sched.load_state_dict(state["lr_scheduler"])
        torch.set_rng_state(ts["rng"])
    model, optimizer = acc.prepare(model, optimizer)
    dev = acc.device
    trainee = _Trainee(cfg, norm, tok)
    trainee.to(dev)
    if ema is not None:
        ema.to(dev)

    step = int(state.get("step", 0))
    start_epoch, start_batch = int(state.get("epoch", 0)), int(state.get("batch", 0))
    history: list = list(state.get("history", []))
    last_loss = float("nan")
    val_loss = state.get("val_loss")
    best = state.get("best", {"val_loss": None, "epoch": None})
    early = tc.patience > 0 and val_set is not None
    stopped_early = bool(state.get("stopped_early", False))

    def save(epoch: int, batch: int) -> None:
        acc.wait_for_everyone()
        if not acc.is_main_process:
            return
        raw = acc.unwrap_model(model)
        ema_state = None
        if ema is not None:
            ema_state = dict(raw.state_dict())
            for (n, _), p in zip(raw.named_parameters(), ema.shadow_params):
                ema_state[n] = p
        sched_state = {k: v for k, v in lr_sched.state_dict().items() if _jsonable(v)}
        st = {"epoch": epoch, "batch": batch, "step": step, "total_steps": total_steps,
              "lr_scheduler": sched_state, "history": history, "val_loss": val_loss, "best": best,
              "stopped_early": stopped_early,
              "ema": {"optimization_step": ema.optimization_step} if ema is not None else {},
              "seed": tc.seed, "time": time.time()}
        save_checkpoint(out, cfg, raw, norm, ema_state=ema_state,
                        train_state={"optimizer": optimizer.state_dict(), "state": st, "rng": torch.get_rng_state()},
                        tokenizer_dir=(out / "tokenizer" if resume else tok_dir) if tok is not None else None)

    bar = tqdm(total=total_steps, initial=min(step, total_steps), disable=not progress or not acc.is_main_process,
               desc=f"train {kind}", unit="it", dynamic_ncols=True, file=sys.stderr)
    stopped = False
    epoch = start_epoch
    try:
        for epoch in range(start_epoch, tc.epochs):
            if stopped_early:
                break
            batches = epoch_batches(len(train_set), tc.batch_size, tc.seed, epoch)
            mine = batches[rank::world][:steps_per_epoch]
            model.train()
            first = start_batch if epoch == start_epoch else 0
            loader = DataLoader(train_set, batch_sampler=[[int(j) for j in b] for b in mine[first:]],
                                collate_fn=collate, num_workers=tc.num_workers, pin_memory=dev.type == "cuda")
            for bi, batch in zip(range(first, len(mine)), loader):
                idx = mine[bi]
                check_finite(batch, step, train_set.index[idx])
                batch = {k: v.to(dev, non_blocking=True) for k, v in batch.items()}
                loss, logs = trainee.loss(model, batch, _step_generator(tc.seed, step, rank))
                if not torch.isfinite(loss):
                    raise ValueError(f"loss became {float(loss)} at step {step} (learning rate {lr_sched.get_last_lr()[0]:.3g}); "
                                     "lower --lr or check the data")
                optimizer.zero_grad(set_to_none=True)
                acc.backward(loss)
                if tc.grad_clip > 0:
                    acc.clip_grad_norm_(model.parameters(), tc.grad_clip)
                optimizer.step()
                lr_sched.step()
                if ema is not None:
                    ema.step(acc.unwrap_model(model).parameters())
                step += 1
                last_loss = float(loss.detach())
                bar.update(1)
                bar.set_postfix(loss=f"{last_loss:.4g}", epoch=epoch, refresh=False)
                if stop_after_steps is not None and step >= stop_after_steps:
                    stopped = True
                    save(epoch, bi + 1)
                    break
            if stopped:
                break
            val_loss = evaluate(model, trainee, val_set, tc.batch_size, tc.seed, dev) if val_set else None
            history.append({"epoch": epoch, "step": step, "train_loss": last_loss, "val_loss": val_loss})
            if progress and acc.is_main_process:
                bar.write(f"epoch {epoch + 1}/{tc.epochs}: train loss {last_loss:.4g}"
                          + (f", val loss {val_loss:.4g}" if val_loss is not None else ""), file=sys.stderr)
            if early:
                # Only an improvement is written: the checkpoint on disk is always the best epoch's.
                if best["val_loss"] is None or val_loss < best["val_loss"]:
                    best = {"val_loss": val_loss, "epoch": epoch}
                    save(epoch + 1, 0)
                elif epoch - best["epoch"] >= tc.patience:
                    stopped_early = True
                    if progress and acc.is_main_process:
                        bar.write(f"early stop: no better validation loss for {tc.patience} epochs; keeping "
                                  f"epoch {best['epoch'] + 1} ({best['val_loss']:.4g})", file=sys.stderr)
                    break
            elif (epoch + 1) % tc.checkpoint_every == 0 or epoch + 1 == tc.epochs:
                save(epoch + 1, 0)
    except KeyboardInterrupt:
        save(epoch, max(0, step - epoch * steps_per_epoch))
        bar.close()
        if history:
            _write_history(out, history, best, stopped_early, acc.is_main_process)
        raise
    bar.close()
    if history:   # the curves once, at the end (not at every checkpoint)
        _write_history(out, history, best, stopped_early, acc.is_main_process)
    return {"model_type": model_type, "out": str(out), "steps": step, "epochs": tc.epochs, "stopped": stopped,
            "stopped_early": stopped_early, "best_epoch": best.get("epoch"), "best_val_loss": best.get("val_loss"),
            "train_loss": last_loss, "val_loss": val_loss, "train_samples": len(train_set),
            "val_samples": len(val_set) if val_set else 0, "device": str(dev), "processes": world}


def _write_history(out: Path, history: list, best: dict, stopped_early: bool, main: bool) -> None:
    """The whole loss history next to the checkpoint (with early stopping the checkpoint's own
    training state stops at the best epoch): ``loss.json`` and ``loss.png``."""
    if not main:
        return
    import json

    (out / "loss.json").write_text(json.dumps({"history": history, "best": best, "stopped_early": stopped_early}))
    plot_history(history, out / "loss.png", out.name, best.get("epoch"))


def plot_history(history: list, path: Path, title: str = "", best_epoch: int | None = None) -> None:
    """PNG of training and validation loss per epoch (log scale), the kept epoch marked."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    ep = [h["epoch"] + 1 for h in history]
    fig = Figure(figsize=(6, 3.2), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(ep, [h["train_loss"] for h in history], label="train (last batch)", lw=1.0)
    val = [(e, h["val_loss"]) for e, h in zip(ep, history) if h.get("val_loss") is not None]
    if val:
        ax.plot(*zip(*val), label="validation", lw=1.5)
    if best_epoch is not None:
        ax.axvline(best_epoch + 1, color="tab:red", ls="--", lw=1.0, label=f"kept: epoch {best_epoch + 1}")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    if title:
        ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)


def _jsonable(v) -> bool:
    import json
    try:
        json.dumps(v)
        return True
    except TypeError:
        return False


@torch.no_grad()
def evaluate(model, trainee: _Trainee, samples: ChunkSamples, batch_size: int, seed: int, device) -> float:
    """Mean loss over ``samples`` with fixed noise (comparable across epochs)."""
    model.eval()
    total, n = 0.0, 0
    g = torch.Generator().manual_seed(seed + 7919)
    for i in range(0, len(samples), batch_size):
        rows = list(range(i, min(len(samples), i + batch_size)))
        batch = collate([samples[j] for j in rows])
        check_finite(batch, -1, samples.index[rows])
        batch = {k: v.to(device) for k, v in batch.items()}
        loss, _ = trainee.loss(model, batch, g)
        total += float(loss) * len(batch["action"])
        n += len(batch["action"])
    model.train()
    return total / max(n, 1)
