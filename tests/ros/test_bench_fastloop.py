"""`slowfast bench fastloop` keeps the evidence when chunks never reach rdp_fast."""
import json
from pathlib import Path

from slowfast_app.bench.fastloop import _keep_logs


class _Probe:
    def diagnostics(self, names, timeout):
        self.asked = set(names)
        return {"rdp_slow": {"chunks_published": "41"}, "rdp_fast": {"chunks_received": "0"}}


def test_the_logs_and_diagnostics_outlive_the_run_when_no_chunk_came(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "rdp_fast.log").write_text("[rdp_fast] executor at 1000 Hz\n")
    probe = _Probe()
    kept = Path(_keep_logs(logs, probe))
    try:
        assert kept.is_dir() and not kept.is_relative_to(tmp_path)
        assert (kept / "logs" / "rdp_fast.log").read_text() == "[rdp_fast] executor at 1000 Hz\n"
        diags = json.loads((kept / "diagnostics.json").read_text())
        assert diags["rdp_slow"]["chunks_published"] == "41" and diags["rdp_fast"]["chunks_received"] == "0"
        assert {"rdp_fast", "rdp_slow"} <= probe.asked
    finally:
        import shutil
        shutil.rmtree(kept)
