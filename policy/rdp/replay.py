"""The oracle: a demonstration's own chunks, served as a trained policy's are.

:class:`ReplayPolicy` stands in for the slow policy (:class:`~policy.rdp.runtime.SlowPolicyRuntime`)
of an export. At an observation taken ``t`` seconds into an episode it returns the chunk the
training set holds for the demonstration of the same seed at frame ``round(t * fps)``:
the demonstrator's next ``horizon`` commands relative to the pose the demonstrator measured
at that frame (exactly a training target), re-expressed from the pose the runtime measured
(the ``"world"`` anchor, below). For a Reactive Diffusion Policy export that chunk
goes through the trained tokenizer's encoder (the latent the latent diffusion policy learned
to predict, un-normalised as the runtime's ``predict`` returns it), for a Diffusion Policy
export it is served raw. Everything after this object (the fast loop's alignment, the
decoder with live contact, the blend, the safety filter) is the runtime a trained model gets.

So on a demonstration's own seed, the oracle's success against the demonstrator's is what
the runtime loses; a trained model's success against the oracle's is what the model loses.

A decoder tuned on nominal actions (``slowfast train decoder``) reacts to contact itself: its
latent is the plan *without* the reaction to a perturbation the chunk's start could not see.
For such an export the oracle encodes that plan, cut from the dataset's nominal actions as the
tuning did (:func:`slowfast_data.nominal.chunk_source`), not the recorded chunk, which already
holds the demonstrator's reaction (served through a reacting decoder it would count twice).

Where the chunk is anchored (``anchor``). The runtime applies a chunk relative to the pose it
measured at the observation. ``"demonstration"`` serves the recorded relative chunk as it is:
its steps are moves from wherever the arm is, so once the arm lags the demonstration (a
reacting decoder slows it down where the demonstrator's force loop did), every later chunk
starts from the lagging pose and the lag stays for the rest of the episode; time indexing
never takes it back. ``"world"`` serves the same commands where the demonstrator sent them:
the chunk's targets in the world frame, re-expressed relative to the measured pose, so the arm
is pulled back onto the demonstration at each chunk, as a policy that sees where it is would
plan. Both are the demonstration's own chunk; for a replay that does not lag (an open-loop
action chunk on its own deterministic seed) they are the same. ``"world"`` is the default:
the lag a time-indexed replay cannot take back is the replay's, not the runtime's (a trained
policy plans from what it observes). On wipe with a tuned decoder, which slows the arm along
the path where the demonstrator's force loop did, the demonstration anchor gave 7/20 on the
demonstrations' own seeds and the world anchor 20/20 (docs/results.md).

Episode seeds come from the dataset's ``meta/slowfast_episodes.json`` (written by
``slowfast demos``), or are given.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from slowfast_data.features import ACTION_KEY, EPISODE_SEEDS_PATH, POSE_KEY
from slowfast_data.fileio import read_json
from slowfast_data.geometry import absolute_to_relative, relative_to_absolute
from slowfast_data.nominal import read_nominal
from slowfast_data.reader import LeRobotDataset

from . import contract

#: where a served chunk is anchored (module doc); the first is the default
ANCHORS = ("world", "demonstration")


def episode_seeds(root: str | Path) -> dict[int, int]:
    """{seed: episode_index} of a dataset written by ``slowfast demos``."""
    p = Path(root) / EPISODE_SEEDS_PATH
    if not p.is_file():
        raise ValueError(f"{root}: no {EPISODE_SEEDS_PATH} (the episodes' seeds); write the dataset with "
                         "`slowfast demos`, or give the seeds")
    rows = read_json(p).get("episodes", [])
    return {int(r["seed"]): int(r["episode_index"]) for r in rows}


class ReplayPolicy:
    """Serves the demonstration of the current episode's seed (see the module doc).

    ``export_dir``: the export whose runtime serves the chunks (its runtime.json fixes the
    chunk kind, horizon and rate); ``tokenizer``: a tokenizer (or latent diffusion policy)
    checkpoint whose encoder makes the latent (default: the checkpoint the export was made
    from) for an ``rdp_ldp`` or ``rdp_tokenizer`` export. ``raw``: serve the relative actions
    themselves, open loop (the Diffusion Policy's chunk kind), whatever the export.
    ``anchor``: ``"world"`` (default) or ``"demonstration"`` (see the module doc)."""

    wants_episode_time = True
    cameras: list = []

    def __init__(self, dataset: str | Path, export_dir: str | Path, tokenizer: str | Path | None = None,
                 seeds: dict[int, int] | None = None, raw: bool = False, anchor: str = ANCHORS[0]):
        if anchor not in ANCHORS:
            raise ValueError(f"anchor: {anchor!r} is not one of {', '.join(ANCHORS)}")
        self.anchor = anchor
        meta = read_json(Path(export_dir) / "runtime.json")
        if raw:   # serve action chunks, read open loop, as a Diffusion Policy's are
            meta = {**meta, "model_type": "dp"}
        self.meta = meta
        self.model_type = meta["model_type"]
        self.n_obs, self.history = int(meta["n_obs_steps"]), int(meta["contact_history"])
        self.horizon, self.fps = int(meta["horizon"]), float(meta["fps"])
        self.ds = LeRobotDataset(dataset, require=[POSE_KEY, ACTION_KEY], fps=self.fps)
        if self.ds.num_arms != int(meta["shapes"]["num_arms"]):
            raise ValueError(f"{dataset}: {self.ds.num_arms} arm(s), the export drives {meta['shapes']['num_arms']}")
        self.seeds = dict(seeds) if seeds is not None else episode_seeds(dataset)
        self._tok = self._norm = None
        self.nominal: dict = {}   # {episode: (perturbation times, nominal actions)} for a tuned decoder
        if self.model_type in ("rdp_ldp", "rdp_tokenizer"):
            tokenizer = tokenizer or meta.get("source")   # the checkpoint the export was made from
            if not tokenizer or not (Path(tokenizer) / "config.json").is_file():
                raise ValueError(f"{export_dir}: an {self.model_type} export needs its tokenizer checkpoint (the "
                                 f"encoder makes the latent); {tokenizer!r} is not one: pass it")
            from .checkpoint import load_checkpoint
            ck = load_checkpoint(tokenizer, expect=("rdp_tokenizer", "rdp_ldp"))
            tok = ck if ck.config.model_type == "rdp_tokenizer" else ck.tokenizer
            if tok.config.data.horizon != self.horizon:
                raise ValueError(f"{tokenizer}: chunk of {tok.config.data.horizon} steps, the export's is {self.horizon}")
            self._tok, self._norm = tok.model.eval(), tok.normalizer
            from .decoder_tuning import is_tuned

            if is_tuned(tokenizer):
                self.nominal = read_nominal(dataset)
                if not self.nominal and _perturbed(dataset):
                    raise ValueError(f"{export_dir}: its decoder was tuned on nominal actions, and {dataset} has none "
                                     "(generate the demonstrations with `slowfast demos --nominal`)")
        self.episode: int | None = None

    def begin_episode(self, seed: int) -> None:
        if int(seed) not in self.seeds:
            raise ValueError(f"no demonstration of seed {seed} (the dataset has seeds {sorted(self.seeds)[:8]}...)")
        self.episode = self.seeds[int(seed)]

    def chunk_at(self, frame: int, measured_pose=None) -> np.ndarray:
        """The relative chunk (H, A*9) at ``frame`` of the current episode: the recorded one,
        or for a tuned decoder the nominal plan where a perturbation the chunk's start could
        not see falls inside it; with the ``"world"`` anchor re-expressed relative to
        ``measured_pose`` (A*7), the pose the runtime applies it to."""
        s0, s1 = self.ds.ep_start[self.episode], self.ds.ep_end[self.episode]
        frame = int(np.clip(frame, 0, s1 - s0 - 1))
        poses = self.ds.data[POSE_KEY][s0:s1]
        rel = contract.plan_chunk(self.ds.data[ACTION_KEY][s0:s1], poses, frame, self.horizon, self.ds.fps,
                                  self.nominal.get(self.episode))
        if self.anchor == "world" and measured_pose is not None:
            rel = absolute_to_relative(relative_to_absolute(rel, poses[frame]), np.asarray(measured_pose, np.float64))
        return rel.astype(np.float32)

    def predict(self, images, tcp_pose, contact=None, num_inference_steps=None, episode_time: float = 0.0,
                guide=None):
        """The demonstration's own chunk at ``episode_time`` (latent through the tokenizer's
        encoder for an RDP export). ``guide`` (an inpainting handover's frozen steps) is
        ignored: the replay serves what the demonstrator did, which the frozen steps came from."""
        if self.episode is None:
            raise ValueError("ReplayPolicy: begin_episode(seed) first")
        rel = self.chunk_at(int(round(episode_time * self.fps)), np.asarray(tcp_pose)[-1])
        if self._tok is None:
            return rel
        import torch

        with torch.inference_mode():
            mean, _ = self._tok.encode(torch.from_numpy(self._norm.normalize("action", rel)[None]).float())
        return mean[0].numpy()


def _perturbed(root: str | Path) -> bool:
    """Whether any episode of a ``slowfast demos`` dataset was perturbed."""
    p = Path(root) / EPISODE_SEEDS_PATH
    return p.is_file() and any(r.get("perturbation_times") for r in read_json(p).get("episodes", []))
