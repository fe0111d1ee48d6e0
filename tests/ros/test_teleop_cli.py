"""`slowfast teleop`, `record`, `convert`: user mistakes are one line and exit status 2."""
from slowfast_app.cli import main


def test_cli_mistakes_exit_2(tmp_path, capsys):
    assert main(["teleop", "--host", "0.0.0.0"]) == 2
    assert "requires a token" in capsys.readouterr().err
    assert main(["record", "--operator", "scripted", "--task", "juggle"]) == 2
    assert "unknown sim task" in capsys.readouterr().err
    assert main(["convert", str(tmp_path / "nope"), "--out", str(tmp_path / "ds")]) == 2
    assert "no such bag folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["convert", str(tmp_path / "empty"), "--out", str(tmp_path / "ds")]) == 2
    assert "no episode could be converted" in capsys.readouterr().err
