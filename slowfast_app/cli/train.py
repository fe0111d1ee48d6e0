"""`slowfast train tokenizer|ldp|decoder|dp|vln`: train a Reactive Diffusion Policy or a StreamVLN model.

    slowfast train tokenizer --dataset DATA --out ckpt/tok
    slowfast train ldp --dataset DATA --tokenizer ckpt/tok --out ckpt/ldp
    slowfast train decoder --dataset DATA --init ckpt/ldp --out ckpt/rdp   (DATA from `slowfast demos --nominal`)
    slowfast train dp --dataset DATA --out ckpt/dp [--obs-contact]     (the DP baseline)
    slowfast train ldp --out ckpt/ldp --dataset DATA --resume [--epochs N]

The dataset is a LeRobot-v3-layout folder (``slowfast_data.writer``). The checkpoint is a
folder (config.json, model.safetensors, ema.safetensors, normalizer.json, training_state/)
rewritten after every ``--checkpoint-every`` epochs and on Ctrl-C; ``--resume`` continues
it where it stopped. Several GPUs: ``accelerate launch -m slowfast_app.cli train ...``.

    slowfast train vln --dataset data/vln --out ckpt/vln [--episodes 400] [--minutes 25]
    slowfast train vln --dataset data/vln --init ckpt/vln --dagger-episodes 200 --out ckpt/vln2

``decoder``: fine-tunes the fast decoder of the RDP in ``--init`` (encoder frozen) on the
dataset's nominal actions, so that it adds the reaction to contact the slow policy cannot plan
(``policy.rdp.decoder_tuning``); ``--out`` gets the whole RDP with the tuned tokenizer.

``vln``: StreamVLN on expert episodes of the navigation sim (``policy.streamvln.train``). When
``--dataset`` holds no episodes yet, ``--episodes`` expert episodes (layouts 0..N-1) are generated
there first. A fresh run trains a small model of the StreamVLN architecture from random init
within ``--minutes``; ``--init CKPT`` fine-tunes an existing checkpoint instead.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

MODELS = ("tokenizer", "ldp", "decoder", "dp", "vln")


VLN_EPISODES = 1000  # expert episodes `slowfast train vln` generates into an empty --dataset


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", choices=MODELS,
                   help="tokenizer | ldp (latent diffusion, needs --tokenizer) | dp (baseline) | vln (StreamVLN)")
    p.add_argument("--dataset", required=True, help="LeRobot-v3-layout dataset folder")
    p.add_argument("--out", required=True, help="checkpoint folder to write (or to continue with --resume)")
    p.add_argument("--tokenizer", help="trained tokenizer checkpoint (ldp only)")
    p.add_argument("--preset", default="sim", choices=("sim", "published"),
                   help="model size: sim (small, CPU-friendly; default) or published (the RDP paper's sizes)")
    p.add_argument("--config", help="JSON file with PolicyConfig fields to override (e.g. {\"data\": {\"horizon\": 64}})")
    p.add_argument("--epochs", type=int, help="epochs (default 100; with --resume: extends the run)")
    p.add_argument("--batch-size", type=int, help="batch size per process (default 64)")
    p.add_argument("--lr", type=float, help="learning rate (default 1e-4)")
    p.add_argument("--seed", type=int, help="seed for initialisation, data order and noise (default 0)")
    p.add_argument("--horizon", type=int, help="action chunk length in control steps (default 32)")
    p.add_argument("--contact", choices=("wrench", "tactile"), help="contact signal (default wrench)")
    p.add_argument("--obs-contact", action="store_true",
                   help="dp: also feed the contact history as an observation (the DP + tactile/force variant)")
    p.add_argument("--num-workers", type=int, help="data loader worker processes (default 0)")
    p.add_argument("--patience", type=int,
                   help="early stopping: stop when the validation loss has not improved for N epochs and keep "
                        "the best epoch (default 0 = off)")
    p.add_argument("--val-fraction", type=float, help="share of episodes held out for validation (default 0.1)")
    p.add_argument("--checkpoint-every", type=int, help="write the checkpoint every N epochs (default 1)")
    p.add_argument("--mixed-precision", choices=("no", "fp16", "bf16"), help="autocast precision (default no)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda (default auto)")
    p.add_argument("--resume", action="store_true", help="continue the checkpoint in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    vln = p.add_argument_group("vln")
    vln.add_argument("--episodes", type=int,
                     help=f"vln: expert episodes to generate when --dataset is empty (default {VLN_EPISODES})")
    vln.add_argument("--minutes", type=float, help="vln: training time budget in minutes (default 25)")
    vln.add_argument("--max-steps", type=int, help="vln: stop after this many steps instead of the time budget")
    vln.add_argument("--init", help="vln: fine-tune this StreamVLN checkpoint instead of a fresh small model; "
                     "decoder: the RDP checkpoint whose decoder is tuned")
    p.add_argument("--contact-noise", type=float,
                   help="decoder: std of the noise on the decoder's normalised contact input (default 0)")
    vln.add_argument("--dagger-episodes", type=int,
                     help="vln: first let the --init checkpoint drive this many episodes on new layouts, labelled by "
                          "the expert (DAgger), add them to --dataset, then fine-tune on all of it")
    vln.add_argument("--stop-weight", type=float,
                     help="vln: sampling weight of turns labelled STOP against 1 for the others (default 1)")
    vln.add_argument("--history-noise", type=float,
                     help="vln: probability that an earlier answer in the window is random, not a label (default 0.5)")


def _merge(base: dict, over: dict, where: str = "") -> dict:
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict) and k != "shapes":
            _merge(base[k], v, f"{where}{k}.")
        else:
            base[k] = v
    return base


def build_config(args: argparse.Namespace):
    from policy.rdp.config import PolicyConfig, preset
    from policy.rdp.train import KINDS

    d = preset(args.preset, KINDS[args.model]).to_dict()
    if args.config:
        path = Path(args.config)
        try:
            over = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"--config {path}: not valid JSON ({exc})") from None
        _merge(d, over)
    cli = {"train": {k: v for k, v in {"batch_size": args.batch_size, "lr": args.lr, "seed": args.seed,
                                       "num_workers": args.num_workers,
                                       "checkpoint_every": args.checkpoint_every, "patience": args.patience,
                                       "mixed_precision": args.mixed_precision}.items() if v is not None},
           "data": {k: v for k, v in {"horizon": args.horizon, "contact": args.contact,
                                      "val_fraction": args.val_fraction}.items() if v is not None}}
    if args.obs_contact:
        if args.model != "dp":
            raise ValueError("--obs-contact applies to dp only (the LDP always sees the contact history)")
        cli["obs"] = {"use_contact": True}
    _merge(d, cli)
    return PolicyConfig.from_dict(d)


def run_vln(args: argparse.Namespace) -> int:
    import sys

    from policy.streamvln.dataset import generate_episodes
    from policy.streamvln.train import VLNTrainConfig, train_vln

    rdp_only = [f"--{n.replace('_', '-')}" for n in ("tokenizer", "config", "epochs", "horizon", "contact", "contact_noise",
                                                      "num_workers", "checkpoint_every", "mixed_precision",
                                                      "patience", "val_fraction")
                if getattr(args, n) is not None] + (["--obs-contact"] if args.obs_contact else []) \
        + (["--resume"] if args.resume else []) + ([f"--preset {args.preset}"] if args.preset != "sim" else [])
    if rdp_only:
        raise ValueError(f"{', '.join(rdp_only)}: not options of vln")
    if args.episodes is not None and args.episodes < 1:
        raise ValueError(f"--episodes {args.episodes}: must be at least 1")
    if args.init and not Path(args.init).is_dir():
        raise ValueError(f"--init {args.init}: no such folder")
    if (Path(args.out) / "config.json").exists():
        raise ValueError(f"--out {args.out} already holds a checkpoint; choose another --out")
    if args.dagger_episodes is not None:
        if args.dagger_episodes < 1:
            raise ValueError(f"--dagger-episodes {args.dagger_episodes}: must be at least 1")
        if not args.init:
            raise ValueError("--dagger-episodes needs --init CKPT (the model that drives)")
        if not (Path(args.dataset) / "meta.json").is_file():
            raise ValueError(f"--dagger-episodes: {args.dataset} holds no expert episodes yet (train once without it)")
    kw = {k: v for k, v in {"batch_size": args.batch_size, "lr": args.lr, "seed": args.seed, "minutes": args.minutes,
                            "max_steps": args.max_steps, "history_noise": args.history_noise,
                            "stop_weight": args.stop_weight}.items() if v is not None}
    cfg = VLNTrainConfig(**kw)   # bad values fail here, before minutes of data generation
    data = Path(args.dataset)
    if not (data / "meta.json").is_file():
        n = args.episodes or VLN_EPISODES
        show = (lambda i, total, frames: print(f"\rgenerating expert episodes {i}/{total} ({frames} frames)",
                                               end="", file=sys.stderr, flush=True)) if not args.no_progress else None
        generate_episodes(data, range(n), progress=show)
        if show:
            print(file=sys.stderr)
    elif args.episodes is not None:
        raise ValueError(f"--episodes: {data} already holds episodes (use another --dataset to generate new ones)")
    if args.dagger_episodes is not None:
        from policy.streamvln.dataset import collect_on_policy, next_seed
        from policy.streamvln.train import load_agent

        meta = json.loads((data / "meta.json").read_text())
        first = next_seed(meta)
        show = (lambda i, total, frames: print(f"\rDAgger episodes {i}/{total} ({frames} frames)",
                                               end="", file=sys.stderr, flush=True)) if not args.no_progress else None
        collect_on_policy(data, range(first, first + args.dagger_episodes), load_agent(args.init),
                          width=meta["width"], height=meta["height"], progress=show)
        if show:
            print(file=sys.stderr)
    summary = train_vln(data, args.out, cfg, init=args.init, device=args.device, progress=not args.no_progress,
                        log=lambda m: print(m, file=sys.stderr, flush=True))
    print(json.dumps(summary))
    return 0


def run_decoder(args: argparse.Namespace) -> int:
    from policy.rdp.decoder_tuning import tune_decoder

    other = [f"--{n.replace('_', '-')}" for n in ("tokenizer", "config", "horizon", "contact", "num_workers",
                                                   "checkpoint_every", "mixed_precision", "val_fraction", "episodes",
                                                   "minutes", "max_steps", "dagger_episodes", "stop_weight",
                                                   "history_noise")
             if getattr(args, n, None) is not None] + (["--obs-contact"] if args.obs_contact else []) \
        + (["--resume"] if args.resume else [])
    if other:
        raise ValueError(f"{', '.join(other)}: not options of decoder")
    if not args.init:
        raise ValueError("decoder: --init CKPT (the RDP checkpoint to tune) is required")
    for name, path in (("--dataset", args.dataset), ("--init", args.init)):
        if not Path(path).is_dir():
            raise ValueError(f"{name} {path}: no such folder")
    kw = {k: v for k, v in {"epochs": args.epochs, "lr": args.lr, "batch_size": args.batch_size, "seed": args.seed,
                            "patience": args.patience, "contact_noise": args.contact_noise}.items() if v is not None}
    log = (lambda m: None) if args.no_progress else None
    print(json.dumps(tune_decoder(args.dataset, args.init, args.out, log=log, **kw)))
    return 0


def run(args: argparse.Namespace) -> int:
    if args.model == "vln":
        return run_vln(args)
    if args.model == "decoder":
        return run_decoder(args)
    if args.contact_noise is not None:
        raise ValueError("--contact-noise applies to decoder only (the tokenizer's is tokenizer.contact_noise in --config)")
    from policy.rdp.train import train

    vln_only = [f"--{n.replace('_', '-')}" for n in ("episodes", "minutes", "max_steps", "init", "history_noise",
                                                                   "dagger_episodes", "stop_weight")
                if getattr(args, n, None) is not None]
    if vln_only:
        raise ValueError(f"{', '.join(vln_only)}: apply to vln only")

    if args.model != "ldp" and args.tokenizer:
        raise ValueError("--tokenizer applies to ldp only")
    if args.epochs is not None and args.epochs < 1:
        raise ValueError(f"--epochs {args.epochs}: must be at least 1")
    dataset = Path(args.dataset)
    if not dataset.is_dir():
        raise ValueError(f"--dataset {dataset}: no such folder")
    if args.resume:
        changed = [f"--{n.replace('_', '-')}" for n in ("config", "horizon", "contact", "batch_size", "lr", "seed",
                                                         "num_workers", "checkpoint_every", "mixed_precision", "tokenizer",
                                                         "patience", "val_fraction")
                   if getattr(args, n) is not None] + (["--obs-contact"] if args.obs_contact else []) \
            + ([f"--preset {args.preset}"] if args.preset != "sim" else [])
        if changed:
            raise ValueError(f"--resume takes the configuration from the checkpoint; {', '.join(changed)} cannot "
                             "change (only --epochs and --device may)")
    cfg = None if args.resume else build_config(args)
    summary = train(args.model, dataset, args.out, cfg, tokenizer=args.tokenizer, device=args.device,
                    resume=args.resume, epochs=args.epochs, progress=not args.no_progress)
    print(json.dumps(summary))
    return 0
