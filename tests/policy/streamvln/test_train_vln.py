"""`slowfast train vln` end to end at a seconds budget: expert episodes are generated, the loss of a
fresh small model drops, and the checkpoint loads as a streaming agent that drives the nav sim."""
import json

import numpy as np
import pytest

from slowfast_ros.cli import main


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
    loss = np.array(log["loss"])
    assert loss[-10:].mean() < 0.6 * loss[:5].mean(), loss
    meta = json.loads((trained / "data" / "meta.json").read_text())
    assert meta["frames"] > 20 and len(meta["episodes"]) == 3
    for f in ("config.json", "agent.json", "train_config.json", "tokenizer.json"):
        assert (trained / "ckpt" / f).is_file(), f


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
