"""`slowfast train`, `slowfast export` and `slowfast bench policy` end to end (tiny sizes)."""
import json

import pytest

from slowfast_app.cli import main

pytestmark = pytest.mark.slow   # trains and exports through the CLI


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
    assert set(exported["files"]) == {"decoder_step", "action_encoder", "obs_encoder", "denoiser"}


@pytest.mark.parametrize("argv,message", [
    (["train", "ldp", "--dataset", "{ds}", "--out", "{tmp}/x"], "needs a trained tokenizer"),
    (["train", "dp", "--dataset", "{tmp}/none", "--out", "{tmp}/x"], "no such folder"),
    (["train", "tokenizer", "--dataset", "{ds}", "--out", "{tmp}/x", "--horizon", "30"], "must be a multiple of tokenizer.compression"),
    (["train", "tokenizer", "--dataset", "{ds}", "--out", "{tmp}/x", "--resume"], "no config.json"),
    (["train", "tokenizer", "--dataset", "{ds}", "--out", "{tmp}/x", "--device", "tpu"], "--device 'tpu'"),
    (["train", "tokenizer", "--dataset", "{ds}", "--out", "{tmp}/x", "--resume", "--lr", "0.1"], "--lr cannot change"),
    (["export", "{tmp}", "--out", "{tmp}/o"], "not a checkpoint"),
    (["train", "decoder", "--dataset", "{ds}", "--out", "{tmp}/x"], "--init CKPT (the RDP checkpoint to tune) is required"),
    (["train", "decoder", "--dataset", "{ds}", "--out", "{tmp}/x", "--init", "{tmp}/none"], "none: no such folder"),
    (["train", "decoder", "--dataset", "{ds}", "--out", "{tmp}/x", "--init", "{tmp}", "--horizon", "8"], "not options of decoder"),
    (["train", "decoder", "--dataset", "{ds}", "--out", "{tmp}/x", "--init", "{tmp}"], "not a checkpoint"),
    (["train", "tokenizer", "--dataset", "{ds}", "--out", "{tmp}/x", "--contact-noise", "1"], "applies to decoder only"),
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


def test_two_process_ddp_training(tmp_path, dataset):
    """torchrun with two CPU processes: one DDP group (gloo), each process takes half the batches."""
    import os
    import signal
    import subprocess
    import sys

    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"data": {"horizon": 8}}))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "slowfast_app.cli", "train", "tokenizer", "--dataset", str(dataset),
           "--out", str(tmp_path / "tok"), "--epochs", "1", "--batch-size", "32", "--no-progress", "--config", str(cfg)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)  # its own process group: a hang is killed whole
    try:
        stdout, stderr = proc.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    out = subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = [json.loads(x) for x in out.stdout.splitlines() if x.startswith("{")]
    assert len(lines) == 2 and all(x["processes"] == 2 for x in lines)
    assert lines[0]["steps"] == 3  # 200 training samples / 32 = 7 batches -> 3 per process
    assert (tmp_path / "tok" / "model.safetensors").is_file()
