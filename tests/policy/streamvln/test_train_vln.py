"""`slowfast train vln` end to end at a seconds budget: expert episodes are generated, the loss of a
fresh small model drops, and the checkpoint loads as a streaming agent that drives the nav sim."""
import json

import numpy as np
import pytest

from slowfast_app.cli import main

pytestmark = pytest.mark.slow   # trains a small VLN model


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("vln")
    rc = main(["train", "vln", "--dataset", str(root / "data"), "--out", str(root / "ckpt"), "--episodes", "3",
               "--max-steps", "30", "--batch-size", "2", "--lr", "3e-3", "--device", "cpu", "--no-progress"])
    assert rc == 0
    return root


def test_training_reduces_the_loss_and_writes_a_checkpoint(trained):
    log = json.loads((trained / "ckpt" / "train_log.json").read_text())
    assert log["steps"] == 30 and log["episodes"] == 3
    assert log["stop_samples"] == 3          # one STOP turn per expert episode (each reaches its goal)
    loss = np.array(log["loss"])
    assert loss[-10:].mean() < 0.6 * loss[:5].mean(), loss
    meta = json.loads((trained / "data" / "meta.json").read_text())
    assert meta["frames"] > 20 and len(meta["episodes"]) == 3
    for f in ("config.json", "agent.json", "train_config.json", "tokenizer.json"):
        assert (trained / "ckpt" / f).is_file(), f


def test_a_fresh_model_reads_its_prompts_with_merges_learnt_from_them(trained):
    from policy.streamvln.checkpoint import load_tokenizer_from
    from policy.streamvln.dataset import load_episodes
    from policy.streamvln.tiny import build_tiny_tokenizer
    from policy.streamvln.train import TurnSequences

    instruction = load_episodes(trained / "data")[0]["instruction"]
    saved = TurnSequences(load_tokenizer_from(trained / "ckpt")).prefix(instruction)
    assert 2 * len(saved) < len(TurnSequences(build_tiny_tokenizer()).prefix(instruction))


def test_the_checkpoint_runs_as_an_agent_in_the_nav_sim(trained, tmp_path, capsys):
    out = tmp_path / "eval"
    assert main(["nav", "eval", "--episodes", "1", "--max-steps", "12", "--out", str(out),
                 "--checkpoint", str(trained / "ckpt"), "--no-progress", "--no-plots"]) == 0
    ep = json.loads((out / "episode_000.json").read_text())
    assert ep["turns"] >= 1 and ep["skipped_turns"] == 0 and set(ep["actions"]) <= {0, 1, 2, 3}


def test_vln_user_errors(tmp_path, capsys):
    assert main(["train", "vln", "--dataset", str(tmp_path / "d"), "--out", str(tmp_path / "o"),
                 "--tokenizer", "x"]) == 2
    assert main(["train", "dp", "--dataset", str(tmp_path), "--out", str(tmp_path / "o"), "--minutes", "3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "not options of vln" in err[0] and "apply to vln only" in err[1]


def test_dagger_rollouts_are_labelled_by_the_expert_and_fine_tuned_on(trained, tmp_path):
    import shutil

    from policy.streamvln.checkpoint import load_streamvln
    from policy.streamvln.dataset import load_episodes
    from policy.streamvln.train import TurnSequences, build_batch

    data = tmp_path / "data"
    shutil.copytree(trained / "data", data)
    rc = main(["train", "vln", "--dataset", str(data), "--init", str(trained / "ckpt"), "--dagger-episodes", "2",
               "--out", str(tmp_path / "ckpt2"), "--max-steps", "3", "--batch-size", "2", "--device", "cpu",
               "--no-progress"])
    assert rc == 0 and (tmp_path / "ckpt2" / "config.json").is_file()
    meta = json.loads((data / "meta.json").read_text())
    assert meta["episodes"][3:] == ["dagger_000003.npz", "dagger_000004.npz"]   # new layouts, after the expert's
    assert meta["seeds"] == [0, 1, 2, 3, 4]
    eps = load_episodes(data)
    on = eps[3]
    assert "executed" in on and "executed" not in eps[0]
    assert on["executed"].shape == on["actions"].shape and len(on["rgb"]) == len(on["actions"])
    # the expert labels every turn; the last label ends at the goal unless the turn budget ran out
    assert all(set(a[a >= 0].tolist()) <= {0, 1, 2, 3} for a in on["actions"])

    # In a training window the context shows what the agent did; a label only where it matched the expert.
    model, tok = load_streamvln(trained / "ckpt")
    seqs = TurnSequences(tok)
    on["executed"] = on["actions"].copy()
    t = min(3, len(on["actions"]) - 1)
    on["executed"][0] = [2, 2, 2, 2] if on["actions"][0][0] != 2 else [3, 3, 3, 3]
    _, _, y_diff, _ = build_batch(model, seqs, [on], [(0, t)], 8, "cpu")
    on["executed"][0] = on["actions"][0]
    _, _, y_same, _ = build_batch(model, seqs, [on], [(0, t)], 8, "cpu")
    n_first = len(seqs.answer(on["actions"][0]))
    assert int((y_same != -100).sum()) - int((y_diff != -100).sum()) == n_first


def test_dagger_needs_a_model_and_expert_data(tmp_path, capsys):
    assert main(["train", "vln", "--dataset", str(tmp_path / "d"), "--out", str(tmp_path / "o"),
                 "--dagger-episodes", "3"]) == 2
    assert "needs --init" in capsys.readouterr().err
    assert main(["train", "vln", "--dataset", str(tmp_path / "d"), "--out", str(tmp_path / "o"),
                 "--stop-weight", "0"]) == 2
    assert "stop_weight" in capsys.readouterr().err
