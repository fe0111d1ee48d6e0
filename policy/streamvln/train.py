"""Train a StreamVLN model on expert navigation episodes (teacher forcing), and load it as an agent.

The training sequence is exactly what the streaming agent builds at a turn (``prompt.py``):
the prefix (system + task with the instruction) followed by the last ``window_turns`` turns,
each ``<|im_start|>user\\nyou can spot <frame tokens>.<|im_end|>\\n<|im_start|>assistant\\n``
+ the expert's answer (``↑↑←→`` or ``...STOP``) + ``<|im_end|>\\n``. Position ids are the streaming
agent's too (``kv_window.py``): the prefix at 0.., each turn where it would sit in the agent's
cache, where evicted turns keep their positions until a refresh (every ``refresh_turns``)
re-encodes the window right after the prefix. Trained on contiguous windows only, a small model
lost the instruction once the distance grew past its training windows' (it stopped after ~15
turns); without refreshes the distance grows with the episode and it broke down after ~33 turns.
The loss is the
cross-entropy of every answer token (and its ``<|im_end|>``) in the window; the vision tower,
projector and decoder are all trained. Frames enter as images; depth is used by the agent's 3-D
memory only, which this small recipe leaves out: the checkpoint's ``agent.json`` sets
``use_memory: false``, so the prefix never holds memory tokens (as in training), and the
agent's refresh every ``refresh_turns`` only re-encodes prefix + window.

    from policy.streamvln.train import VLNTrainConfig, train_vln
    summary = train_vln("data/vln", "ckpt/vln", VLNTrainConfig(minutes=25))

A fresh run builds a small random model of the same architecture (``tiny.py`` sizes from the
config); ``init=FOLDER`` fine-tunes an existing checkpoint instead (the published one on GPUs).
Accelerate wraps model and optimiser, so ``accelerate launch`` / ``torchrun`` run it data-parallel.
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from .actions import Action, format_actions
from .config import AgentConfig, PromptConfig
from .prompt import IMAGE, PromptBuilder

NO_MEMORY_REFRESH = 1_000_000


@dataclass(frozen=True)
class VLNTrainConfig:
    image_size: int = 112  # vision input (patch 14): 8x8 patches -> 16 tokens per frame
    vision_hidden: int = 64
    vision_layers: int = 2
    hidden: int = 128
    layers: int = 3
    heads: int = 4
    kv_heads: int = 2
    intermediate: int = 384
    window_turns: int = 8
    # The agent re-encodes prefix + window at contiguous positions every this many turns (its
    # memory refresh, without memory here: agent.json use_memory=false); training positions follow
    # it, so the newest turn is never more than refresh + window turns past the instruction.
    refresh_turns: int = 8
    # Tokenizer of a fresh model: byte-level BPE with merges learnt from the training prompts, this
    # many entries (alphabet + merges); 0 = bytes only, no merges (one token per character).
    vocab_size: int = 640
    history_noise: float = 0.5  # P(an earlier turn's answer in the window is random actions, not a label)
    # Sampling weight of a turn whose label ends with STOP, against 1 for the others: an episode
    # has one STOP among ~25 turns (DAgger episodes rarely reach the goal), and a model that never
    # stops fails even when it passes the goal.
    stop_weight: float = 1.0
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 50
    minutes: float = 25.0  # wall-clock budget of the optimisation
    max_steps: int = 0  # 0 = until the time budget
    seed: int = 0
    threads: int = 0  # torch CPU threads (0 = leave as is)

    def __post_init__(self) -> None:
        for name, lo, hi in (("image_size", 28, 1024), ("vision_hidden", 8, 4096), ("vision_layers", 1, 64),
                             ("hidden", 16, 8192), ("layers", 1, 128), ("heads", 1, 128), ("kv_heads", 1, 128),
                             ("intermediate", 16, 65536), ("window_turns", 1, 64), ("refresh_turns", 1, 1_000_000),
                             ("vocab_size", 0, 65536),
                             ("batch_size", 1, 4096),
                             ("warmup_steps", 0, 1_000_000), ("max_steps", 0, 100_000_000), ("threads", 0, 256)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not (lo <= v <= hi):
                raise ValueError(f"{name} must be an integer in [{lo}, {hi}], got {v!r}")
        if 0 < self.vocab_size <= 256:
            raise ValueError(f"vocab_size must be 0 (bytes only) or above 256 (the byte alphabet), got {self.vocab_size}")
        if self.image_size % 14:
            raise ValueError(f"image_size must be a multiple of the patch size 14, got {self.image_size}")
        if self.hidden % self.heads or self.heads % self.kv_heads:
            raise ValueError(f"hidden ({self.hidden}) must divide by heads ({self.heads}) and heads by kv_heads "
                             f"({self.kv_heads})")
        if not (0 < self.lr <= 1.0 and 0 <= self.weight_decay <= 1.0):
            raise ValueError(f"lr must be in (0, 1] and weight_decay in [0, 1], got {self.lr}, {self.weight_decay}")
        if not (1.0 <= self.stop_weight <= 1000.0):
            raise ValueError(f"stop_weight must be in [1, 1000], got {self.stop_weight!r}")
        if not (0.0 <= self.history_noise <= 1.0):
            raise ValueError(f"history_noise must be in [0, 1], got {self.history_noise!r}")
        if not (0 < self.minutes <= 100_000):
            raise ValueError(f"minutes must be in (0, 100000], got {self.minutes}")


def _answer_text(actions) -> str:
    return format_actions([Action(int(a)) for a in actions if int(a) >= 0])


class TurnSequences:
    """Token layout of training windows, built once per episode (ids only; frames are spliced in)."""

    def __init__(self, tokenizer, prompt: PromptConfig | None = None):
        self.prompt = PromptBuilder(tokenizer, prompt or PromptConfig())
        turn = self.prompt.turn()
        k = turn.index(IMAGE)
        self.pre = [i for seg in turn[:k] for i in seg]
        self.post = [i for seg in turn[k + 1:] for i in seg]
        self._prefix_cache: dict[str, list[int]] = {}
        self._answer_cache: dict[tuple[int, ...], list[int]] = {}

    def prefix(self, instruction: str) -> list[int]:
        if instruction not in self._prefix_cache:
            segs = self.prompt.prefix(" ".join(instruction.split()), with_memory=False)
            self._prefix_cache[instruction] = [i for seg in segs for i in seg]
        return self._prefix_cache[instruction]

    def answer(self, actions) -> list[int]:
        """The answer ids the model must produce, ending with <|im_end|>."""
        key = tuple(int(a) for a in actions if int(a) >= 0)
        if key not in self._answer_cache:
            self._answer_cache[key] = self.prompt.encode(_answer_text(key)) + [self.prompt.im_end_id]
        return self._answer_cache[key]

    def turn_length(self, frame_tokens: int, shown) -> int:
        """Tokens one turn occupies in the agent's cache, with the answer ``shown`` in the context."""
        return len(self.pre) + frame_tokens + len(self.post) + len(self.answer(shown)) + len(self.prompt.newline_ids)


def _encode_frames_train(model, pixels: torch.Tensor) -> torch.Tensor:
    """``StreamVLNModel.encode_frames`` with gradients (that one runs in inference mode)."""
    vt = model.vision_tower
    h = vt.embeddings(pixels)
    h = vt.encoder(inputs_embeds=h).last_hidden_state
    return model.pool2d(model.projector(h))


def build_batch(model, seqs: TurnSequences, episodes: list[dict], picks, window: int, device,
                history_noise: float = 0.0, rng: np.random.Generator | None = None, refresh: int = NO_MEMORY_REFRESH):
    """Embeddings ``[B, L, D]``, attention mask ``[B, L]``, targets ``[B, L]`` (-100 = no loss) and
    position ids ``[B, L]``: the sliding agent's with a refresh every ``refresh`` turns (at the last
    refresh the turns then in the window were re-encoded right after the prefix; turns evicted
    since still count).

    ``history_noise``: each earlier turn's answer in the window is, with this probability,
    replaced by random actions and not used as a label. Teacher forcing otherwise shows the
    expert's own consistent answers in the context, and the model learns to copy its previous
    answer (at inference it then keeps turning once it has turned); the noise makes it read the
    frame instead."""
    frames, layout = [], []
    for e, t in picks:
        ep = episodes[e]
        turns = list(range(max(0, t - window + 1), t + 1))
        layout.append((ep, turns, len(frames)))
        frames.extend(ep["rgb"][j] for j in turns)
    base = model.module if hasattr(model, "module") else model
    pixels = base.preprocess(np.stack(frames)).to(device)
    tokens = _encode_frames_train(base, pixels)  # [n_frames, T, D]
    n_frame = tokens.shape[1]
    embed = base.llm.get_input_embeddings()
    rows, targets, positions = [], [], []
    for ep, turns, f0 in layout:
        parts, tgt = [], []
        ids = seqs.prefix(ep["instruction"])
        parts.append(embed(torch.tensor(ids, device=device)))
        tgt += [-100] * len(ids)
        base_turn = max(0, (turns[-1] // refresh) * refresh - window + 1)   # first turn re-encoded at the last refresh
        shown_before = ep.get("executed", ep["actions"])[base_turn:turns[0]]   # evicted since, as shown
        first = len(ids) + sum(seqs.turn_length(n_frame, a) for a in shown_before)
        for k, j in enumerate(turns):
            pre = torch.tensor(seqs.pre, device=device)
            last = k == len(turns) - 1
            noisy = not last and rng is not None and rng.random() < history_noise
            if noisy:
                acts, labelled = rng.integers(1, 4, size=4), False
            elif not last and "executed" in ep:
                # on-policy episode: the context shows what the agent answered; it is a label
                # only where the agent answered what the expert would have
                acts = ep["executed"][j]
                labelled = bool(np.array_equal(acts, ep["actions"][j]))
            else:
                acts, labelled = ep["actions"][j], True
            ans = seqs.answer(acts)
            post = torch.tensor(seqs.post + ans + seqs.prompt.newline_ids, device=device)
            parts += [embed(pre), tokens[f0 + k], embed(post)]
            labels = ans if labelled else [-100] * len(ans)
            tgt += [-100] * (len(seqs.pre) + n_frame + len(seqs.post)) + labels + [-100] * len(seqs.prompt.newline_ids)
        rows.append(torch.cat(parts))
        targets.append(tgt)
        positions.append(list(range(len(ids))) + list(range(first, first + len(tgt) - len(ids))))
    L = max(r.shape[0] for r in rows)
    D = rows[0].shape[1]
    x = torch.zeros(len(rows), L, D, device=device, dtype=rows[0].dtype)
    mask = torch.zeros(len(rows), L, dtype=torch.long, device=device)
    y = torch.full((len(rows), L), -100, dtype=torch.long, device=device)
    pos = torch.zeros(len(rows), L, dtype=torch.long, device=device)
    for i, (r, tg, p) in enumerate(zip(rows, targets, positions)):
        x[i, :r.shape[0]] = r
        mask[i, :r.shape[0]] = 1
        y[i, :len(tg)] = torch.tensor(tg, device=device)
        pos[i, :len(p)] = torch.tensor(p, device=device)
    return x, mask, y, pos


def batch_loss(model, x, mask, y, pos=None) -> tuple[torch.Tensor, float]:
    """Mean cross-entropy of the answer tokens, and the accuracy of their argmax."""
    base = model.module if hasattr(model, "module") else model
    logits = base.llm(inputs_embeds=x, attention_mask=mask, position_ids=pos, use_cache=False).logits
    pred, tgt = logits[:, :-1], y[:, 1:]
    loss = F.cross_entropy(pred.reshape(-1, pred.shape[-1]).float(), tgt.reshape(-1), ignore_index=-100)
    sel = tgt != -100
    acc = (pred.argmax(-1)[sel] == tgt[sel]).float().mean().item() if sel.any() else float("nan")
    return loss, acc


def _samples(episodes: list[dict]) -> list[tuple[int, int]]:
    return [(e, t) for e, ep in enumerate(episodes) for t in range(len(ep["actions"]))]


def train_vln(data_dir, out, cfg: VLNTrainConfig | None = None, *, init=None, device: str = "auto",
              progress: bool = True, log=None) -> dict:
    """Train on the episodes in ``data_dir`` (``dataset.generate_episodes``); write the checkpoint
    folder ``out``; return a summary (losses, steps, time)."""
    from accelerate import Accelerator

    from .checkpoint import load_streamvln, save_streamvln
    from .dataset import load_episodes
    from .prompt import prompt_texts
    from .tiny import build_corpus_tokenizer, build_tiny_model, build_tiny_tokenizer

    cfg = cfg or VLNTrainConfig()
    out = Path(out)
    if (out / "config.json").exists():
        raise OSError(f"{out} already holds a checkpoint; choose another --out")
    if device not in ("auto", "cpu") and not device.startswith("cuda"):
        raise ValueError(f"device {device!r}: must be auto, cpu or cuda")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    episodes = load_episodes(data_dir)
    if not episodes:
        raise ValueError(f"{data_dir}: no episodes")
    acc = Accelerator(cpu=device == "cpu" or (device == "auto" and not torch.cuda.is_available()))
    if init:
        model, tokenizer = load_streamvln(init)
    else:
        if cfg.vocab_size:
            instructions = sorted({ep["instruction"] for ep in episodes})
            tokenizer = build_corpus_tokenizer(prompt_texts(PromptConfig(), instructions), cfg.vocab_size)
        else:
            tokenizer = build_tiny_tokenizer()
        model = build_tiny_model(tokenizer, seed=cfg.seed, image_size=cfg.image_size,
                                 text_kwargs=dict(hidden_size=cfg.hidden, num_layers=cfg.layers, num_heads=cfg.heads,
                                                  num_kv_heads=cfg.kv_heads, intermediate_size=cfg.intermediate),
                                 vision_kwargs=dict(hidden_size=cfg.vision_hidden, num_layers=cfg.vision_layers,
                                                    num_heads=2, intermediate_size=cfg.vision_hidden * 2))
    model.train()
    seqs = TurnSequences(tokenizer)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    model, opt = acc.prepare(model, opt)
    samples = _samples(episodes)
    stops = np.array([bool((episodes[e]["actions"][t] == 0).any()) for e, t in samples])
    weights = np.where(stops, cfg.stop_weight, 1.0)
    weights /= weights.sum()
    rng = np.random.default_rng(cfg.seed + acc.process_index)
    budget = cfg.minutes * 60.0
    t0 = time.monotonic()
    losses, accs = [], []
    step = 0
    while True:
        elapsed = time.monotonic() - t0
        if (cfg.max_steps and step >= cfg.max_steps) or (not cfg.max_steps and elapsed >= budget):
            break
        frac = min(elapsed / budget, 1.0) if not cfg.max_steps else step / cfg.max_steps
        lr = cfg.lr * min(1.0, (step + 1) / max(cfg.warmup_steps, 1)) * 0.5 * (1 + math.cos(math.pi * frac))
        for g in opt.param_groups:
            g["lr"] = lr
        picks = [samples[int(i)] for i in rng.choice(len(samples), size=cfg.batch_size, p=weights)]
        x, mask, y, pos = build_batch(model, seqs, episodes, picks, cfg.window_turns, acc.device,
                                      cfg.history_noise, rng, cfg.refresh_turns)
        loss, a = batch_loss(model, x, mask, y, pos)
        opt.zero_grad(set_to_none=True)
        acc.backward(loss)
        acc.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(float(loss.item()))
        accs.append(a)
        step += 1
        if progress and acc.is_main_process and (step % 20 == 0 or step == 1):
            msg = (f"step {step} loss {np.mean(losses[-20:]):.3f} answer-token acc {np.nanmean(accs[-20:]):.3f} "
                   f"lr {lr:.2e} {elapsed / 60:.1f}/{cfg.minutes:.0f} min")
            (log or print)(msg)
    summary = {"steps": step, "minutes": (time.monotonic() - t0) / 60.0, "episodes": len(episodes),
               "samples": len(samples), "stop_samples": int(stops.sum()), "first_loss": float(np.mean(losses[:10])) if losses else None,
               "final_loss": float(np.mean(losses[-20:])) if losses else None,
               "final_answer_token_accuracy": float(np.nanmean(accs[-20:])) if accs else None}
    if acc.is_main_process:
        base = acc.unwrap_model(model).eval()
        save_streamvln(base, out, tokenizer)
        agent_cfg = {"window_turns": cfg.window_turns, "memory_refresh_turns": cfg.refresh_turns, "use_memory": False}
        (out / "agent.json").write_text(json.dumps(agent_cfg, indent=2))
        (out / "train_config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2))
        (out / "train_log.json").write_text(json.dumps({**summary, "loss": losses}, indent=1))
    acc.wait_for_everyone()
    return summary


def agent_config_for(folder, **overrides) -> AgentConfig:
    """The checkpoint's ``agent.json`` (if any) under ``overrides``."""
    path = Path(folder) / "agent.json"
    d = json.loads(path.read_text()) if path.is_file() else {}
    d.update({k: v for k, v in overrides.items() if v is not None})
    return AgentConfig(**d)


def load_agent(folder, device: str = "cpu", dtype=torch.float32, context_mode: str | None = None):
    """A :class:`StreamVLNAgent` over the checkpoint in ``folder`` (with its ``agent.json``); on
    CUDA with the static KV path and warmed up (:func:`~.agent.agent_for_device`)."""
    from .agent import agent_for_device
    from .checkpoint import load_streamvln

    model, tokenizer = load_streamvln(folder, dtype=dtype, device=device)
    return agent_for_device(model, tokenizer, agent_config_for(folder, context_mode=context_mode))
