"""`slowfast train`, `slowfast export` and `slowfast bench policy` end to end (tiny sizes)."""
import json

import pytest

from slowfast_ros.cli import main


def test_train_export_resume_cli(tmp_path, dataset, capsys):
    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps({"data": {"horizon": 8, "image_size": [32, 48]},
                               "unet": {"down_dims": [16, 32], "step_embed_dim": 16},
                               "obs": {"image_width": 8, "image_feature_dim": 16}}))
    tok, ldp = tmp_path / "tok", tmp_path / "ldp"
    assert main(["train", "tokenizer", "--dataset", str(dataset), "--out", str(tok), "--epochs", "1",
                 "--batch-size", "64", "--seed", "3", "--device", "cpu", "--config", str(cfg), "--no-progress"]) == 0
    assert main(["train", "ldp", "--dataset", str(dataset), "--out", str(ldp), "--tokenizer", str(tok),
                 "--epochs", "1", "--batch-size", "64", "--config", str(cfg), "--device", "cpu"]) == 0
    assert main(["train", "ldp", "--dataset", str(dataset), "--out", str(ldp), "--resume", "--epochs", "2",
                 "--no-progress"]) == 0
    out = capsys.readouterr()
    summary = json.loads(out.out.strip().splitlines()[-1])
    assert summary["model_type"] == "rdp_ldp" and summary["epochs"] == 2 and summary["val_loss"] is not None
    assert "it/s" in out.err  # the progress bar ran
    assert main(["export", str(ldp), "--out", str(tmp_path / "onnx")]) == 0
    exported = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(exported["files"]) == {"decoder_step", "obs_encoder", "denoiser"}


@pytest.mark.parametrize("argv,message", [
    (["train", "ldp", "--dataset", "{ds}", "--out", "{tmp}/x"], "needs a trained tokenizer"),
    (["train", "dp", "--dataset", "{tmp}/none", "--out", "{tmp}/x"], "no such folder"),
    (["train", "tokenizer", "--dataset", "{ds}", "--out", "{tmp}/x", "--horizon", "30"], "must be a multiple of tokenizer.compression"),
    (["train", "tokenizer", "--dataset", "{ds}", "--out", "{tmp}/x", "--resume"], "no config.json"),
    (["train", "tokenizer", "--dataset", "{ds}", "--out", "{tmp}/x", "--device", "tpu"], "--device 'tpu'"),
    (["train", "tokenizer", "--dataset", "{ds}", "--out", "{tmp}/x", "--resume", "--lr", "0.1"], "--lr cannot change"),
    (["export", "{tmp}", "--out", "{tmp}/o"], "not a checkpoint"),
])
def test_user_errors_are_one_line(tmp_path, dataset, capsys, argv, message):
    argv = [a.format(ds=dataset, tmp=tmp_path) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and "Traceback" not in err[0]


def test_bench_policy_json(capsys):
    assert main(["bench", "policy", "--json", "--ticks", "50", "--chunks", "2", "--hidden-sweep", "64"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["target"] == "policy"
    for key in ("torch_module", "ort_session", "ort_runtime"):
        assert out["decoder_step_us"][key]["p99"] > 0
    assert out["prefix_rerun"]["torch_ratio_full_prefix"] > 0
    assert out["prefix_rerun"]["by_hidden_size"]["64"]["ratio_full_prefix"] > 0
    assert out["slow_chunk_ms"]["ddim_steps"] == 8 and out["slow_chunk_ms"]["ort"]["p50"] > 0
