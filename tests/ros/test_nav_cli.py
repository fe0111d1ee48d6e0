"""`slowfast nav eval`: per-episode JSON + PNG and a summary; user mistakes are one line, exit 2."""
import json

from slowfast_app.cli import main


def test_nav_eval_writes_episodes_plots_and_summary(tmp_path, capsys):
    assert main(["nav", "eval", "--episodes", "2", "--out", str(tmp_path / "e"), "--policy", "expert",
                 "--no-progress"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["episodes"] == 2 and summary["SR"] == 1.0 and summary["SPL"] > 0.8
    assert json.loads((tmp_path / "e" / "summary.json").read_text()) == summary
    ep = json.loads((tmp_path / "e" / "episode_000.json").read_text())
    assert {"NE", "SR", "OS", "SPL", "nDTW", "path", "actions", "instruction"} <= set(ep)
    assert (tmp_path / "e" / "episode_001.png").stat().st_size > 10_000
    assert main(["nav", "eval", "--episodes", "3", "--out", str(tmp_path / "f"), "--policy", "forward",
                 "--no-progress", "--no-plots"]) == 0
    assert json.loads((tmp_path / "f" / "summary.json").read_text())["SR"] == 0.0


def test_nav_eval_user_errors(tmp_path, capsys):
    assert main(["nav", "eval", "--out", str(tmp_path), "--episodes", "0", "--policy", "random"]) == 2
    assert main(["nav", "eval", "--out", str(tmp_path)]) == 2  # agent without a checkpoint
    assert main(["nav", "eval", "--out", str(tmp_path), "--checkpoint", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(e.startswith("slowfast nav: error:") for e in err)
    assert "--checkpoint" in err[1] and "no such folder" in err[2]
