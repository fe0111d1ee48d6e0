"""Teach a trained RDP's fast decoder the reaction to contact, from nominal actions.

The tokenizer is trained to reconstruct an action chunk from its own latent, and that latent
already holds the chunk's reaction to every perturbation in it: the decoder has no reason to
read the contact (measured on the wipe policy: +2 N at the wrist moved its last action
0.04 mm). Served, the latent comes from the slow policy, which plans from what it saw before
the perturbation: the plan carries no reaction, and the decoder adds none.

Here the decoder (GRU and head; the encoder frozen, so the latent diffusion policy trained on
its latents stays valid) is fine-tuned on pairs the runtime meets: the latent of the chunk's
*nominal* actions (:mod:`slowfast_data.nominal`: what the demonstrator would have commanded
had the perturbation not come) and the contact measured in the demonstration, to the actions
actually commanded. Chunks without a perturbation keep their own actions as the plan. The
result is a copy of the RDP checkpoint with the tuned tokenizer.
"""
from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

from slowfast_data.features import ACTION_KEY, POSE_KEY
from slowfast_data.nominal import chunk_source, read_nominal
from slowfast_data.reader import LeRobotDataset

from . import contract
from .checkpoint import load_checkpoint, read_config, save_checkpoint
from .dataset import ChunkSamples, required_keys, split_episodes

#: file next to the tuned tokenizer saying how it was tuned
TUNING_FILE = "decoder_tuning.json"


def is_tuned(checkpoint: str | Path) -> bool:
    """Whether ``checkpoint`` (an RDP, or its tokenizer) carries a decoder tuned here."""
    p = Path(checkpoint)
    return (p / "tokenizer" / TUNING_FILE).is_file() or (p / TUNING_FILE).is_file()


def _pairs(ds: LeRobotDataset, samples: ChunkSamples, nominal: dict, horizon: int):
    """(plan, target, contact, spans_perturbation) tensors of every sample: plan and target
    are normalised relative chunks, the plan from the nominal actions where a perturbation
    the chunk's start could not see falls inside it."""
    norm = samples.norm
    plans, targets, contacts, spans = [], [], [], []
    for i in samples.index:
        i = int(i)
        e = int(ds.episode_index[i])
        s0, s1 = ds.ep_start[e], ds.ep_end[e]
        real = contract.relative_chunk(ds.data[ACTION_KEY], ds.data[POSE_KEY], i, horizon, s0, s1)
        spanned = e in nominal and chunk_source(*nominal[e], i - s0, horizon, ds.fps) is not None
        plan = contract.plan_chunk(ds.data[ACTION_KEY][s0:s1], ds.data[POSE_KEY][s0:s1], i - s0, horizon, ds.fps,
                                   nominal[e]) if spanned else real
        plans.append(norm.normalize("action", plan))
        targets.append(norm.normalize("action", real))
        contacts.append(samples.contact[samples._frames(i, np.arange(horizon))])
        spans.append(spanned)

    def f(x):
        return torch.from_numpy(np.stack(x).astype(np.float32)) if x else torch.zeros(0)
    return f(plans), f(targets), f(contacts), torch.tensor(spans, dtype=torch.bool)


def force_compliance(tok, norm, chunks: torch.Tensor, contact: torch.Tensor, num_arms: int,
                     newtons: float = 2.0, from_step: int = 4, min_force: float = 1.0) -> float | None:
    """How the decoder answers a harder push: the mean displacement (mm per N) of the decoded
    last target along the measured contact force when ``newtons`` are added to that force from
    step ``from_step`` of the chunk on, over the chunks in contact (mean force above
    ``min_force`` N). Positive: it yields to the force (backs off when pressed harder, as an
    admittance law and the wipe demonstrator do); near 0: it ignores the force. ``chunks``,
    ``contact``: normalised relative action chunks and wrench contact (N, H, .); the latent is
    the encoder's of each chunk. None for a tactile contact signal or no chunk in contact."""
    width = contact.shape[-1] // max(num_arms, 1)
    if width != 6 or not len(chunks):
        return None
    c_mean, c_std = (torch.as_tensor(np.asarray(v, np.float32)) for v in norm.mean_std("contact"))
    a_mean, a_std = (torch.as_tensor(np.asarray(v, np.float32)) for v in norm.mean_std("action"))
    raw = contact * c_std + c_mean
    pushed, dirs, masks = raw.clone(), [], []
    for a in range(num_arms):
        f = raw[:, from_step:, 6 * a:6 * a + 3].mean(dim=1)                  # (N, 3) mean force
        mag = f.norm(dim=-1, keepdim=True)
        u = f / mag.clamp_min(1e-9)
        pushed[:, from_step:, 6 * a:6 * a + 3] += newtons * u[:, None]
        dirs.append(u)
        masks.append(mag[:, 0] > min_force)
    was = tok.training
    tok.eval()
    with torch.no_grad():
        latent = tok.encode(chunks)[0]
        base = tok.decode(latent, contact) * a_std + a_mean
        moved = tok.decode(latent, (pushed - c_mean) / c_std) * a_std + a_mean
    tok.train(was)
    from .contract import ACTION_WIDTH

    along = [((moved - base)[:, -1, ACTION_WIDTH * a:ACTION_WIDTH * a + 3] * dirs[a]).sum(-1)[masks[a]]
             for a in range(num_arms)]
    along = torch.cat(along)
    return None if not len(along) else float(along.mean()) * 1000.0 / newtons


def tune_decoder(dataset: str | Path, rdp: str | Path, out: str | Path, *, epochs: int = 30, lr: float = 3e-4,
                 batch_size: int = 64, contact_noise: float = 0.0, patience: int = 5, seed: int = 0,
                 log=None) -> dict:
    """Fine-tune the decoder of RDP checkpoint ``rdp`` on ``dataset``'s nominal actions and
    write the tuned copy to ``out``. Validation on the checkpoint's own held-out episodes (its
    ``data.val_fraction`` and seed); the epoch with the lowest validation L1 is kept, and
    training stops after ``patience`` epochs without improvement (0: never). ``loss.json`` /
    ``loss.png`` in ``out/tokenizer`` hold the curves. Raises ValueError on bad input."""
    from .train import plot_history

    log = log or (lambda m: print(m, file=sys.stderr, flush=True))
    rdp, out = Path(rdp), Path(out)
    if epochs < 1 or lr <= 0 or batch_size < 1 or contact_noise < 0 or patience < 0:
        raise ValueError(f"decoder tuning: epochs {epochs}, lr {lr}, batch size {batch_size}, contact noise "
                         f"{contact_noise}, patience {patience}: need epochs >= 1, lr > 0, batch >= 1, noise >= 0, "
                         "patience >= 0")
    if out.resolve() == rdp.resolve():
        raise ValueError(f"--out {out}: would overwrite the checkpoint being tuned")
    if (out / "config.json").exists():
        raise ValueError(f"--out {out} already holds a checkpoint; choose another --out")
    kind = read_config(rdp).model_type
    if kind != "rdp_ldp":                                       # a whole RDP, not a bare tokenizer
        raise ValueError(f"{rdp}: checkpoint is a {kind!r} model, expected 'rdp_ldp'")
    ck = load_checkpoint(rdp / "tokenizer", expect="rdp_tokenizer")
    tok, cfg, norm = ck.model, ck.config, ck.normalizer
    nominal = read_nominal(dataset)
    if not nominal:
        raise ValueError(f"{dataset}: no nominal actions (generate the demonstrations with `slowfast demos --nominal`)")
    torch.manual_seed(seed)
    ds = LeRobotDataset(dataset, require=required_keys(cfg), fps=cfg.shapes.get("fps"))
    tr_eps, va_eps = split_episodes(ds.ep_ids, cfg.data.val_fraction, cfg.train.seed)
    H = cfg.data.horizon
    P, A, C, S = _pairs(ds, ChunkSamples(ds, cfg, norm, tr_eps), nominal, H)
    Pv, Av, Cv, Sv = _pairs(ds, ChunkSamples(ds, cfg, norm, va_eps), nominal, H) if va_eps else (None,) * 4
    log(f"decoder tuning: {len(P)} training chunks ({int(S.sum())} spanning a perturbation), "
        f"{0 if Pv is None else len(Pv)} validation")
    if not int(S.sum()):
        raise ValueError(f"{dataset}: no training chunk spans a perturbation (perturbed demonstrations needed)")

    for p in tok.encoder.parameters():
        p.requires_grad_(False)
    params = [p for n, p in tok.named_parameters() if not n.startswith("encoder.")]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-6)
    gen = torch.Generator().manual_seed(seed)

    def val_loss() -> float | None:
        if Pv is None or not len(Pv):
            return None
        tok.eval()
        with torch.no_grad():
            err = sum(float((tok.decode(tok.encode(Pv[b:b + 512])[0], Cv[b:b + 512]) - Av[b:b + 512]).abs().sum())
                      for b in range(0, len(Pv), 512))
        tok.train()
        return err / Av.numel()

    arms = ds.num_arms
    probe = (Av, Cv) if Pv is not None and len(Pv) else (A, C)
    compliance_before = force_compliance(tok, norm, *probe, arms)
    history, best = [], {"epoch": None, "val_loss": val_loss()}
    best_state = {k: v.clone() for k, v in tok.state_dict().items()}
    log(f"decoder tuning: validation L1 before {best['val_loss']}")
    t0, waited, n = time.monotonic(), 0, len(P)
    tok.train()
    for epoch in range(epochs):
        perm = torch.randperm(n, generator=gen)
        loss = torch.zeros(())
        for b in range(0, max(n - batch_size, 0) + 1, batch_size):
            idx = perm[b:b + batch_size]
            with torch.no_grad():
                mean, logvar = tok.encode(P[idx])
                z = mean + torch.randn(mean.shape, generator=gen) * torch.exp(0.5 * logvar)
            c = C[idx]
            if contact_noise > 0:
                c = c + contact_noise * torch.randn(c.shape, generator=gen)
            loss = (tok.decode(z, c) - A[idx]).abs().mean()
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
        v = val_loss()
        history.append({"epoch": epoch, "train_loss": float(loss.detach()), "val_loss": v})
        log(f"decoder tuning: epoch {epoch + 1}/{epochs} train {float(loss.detach()):.4f} val {v} "
            f"({time.monotonic() - t0:.0f} s)")
        if v is None or best["val_loss"] is None or v < best["val_loss"]:
            best = {"epoch": epoch, "val_loss": v}
            best_state = {k: t.clone() for k, t in tok.state_dict().items()}
            waited = 0
        else:
            waited += 1
            if patience and waited >= patience:
                break
    tok.load_state_dict(best_state)
    compliance_after = force_compliance(tok, norm, *probe, arms)
    log(f"decoder tuning: force compliance {compliance_before} -> {compliance_after} mm/N")

    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    shutil.copytree(rdp, tmp, ignore=shutil.ignore_patterns("training_state"))
    save_checkpoint(tmp / "tokenizer", cfg, tok, norm)
    summary = {"source": str(rdp), "dataset": str(dataset), "epochs_run": len(history), "best_epoch": best["epoch"],
               "best_val_loss": best["val_loss"], "lr": lr, "batch_size": batch_size, "contact_noise": contact_noise,
               "train_chunks": n, "train_chunks_spanning": int(S.sum()),
               "val_chunks": 0 if Pv is None else len(Pv),
               "compliance_mm_per_n": {"before": compliance_before, "after": compliance_after}}
    (tmp / "tokenizer" / TUNING_FILE).write_text(json.dumps({**summary, "history": history}, indent=1))
    plot_history(history, tmp / "tokenizer" / "loss.png", "decoder tuning", best["epoch"])
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return {**summary, "out": str(out)}
