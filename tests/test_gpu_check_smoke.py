"""The GPU check script runs rarely (on a borrowed GPU, minutes at a time), so every code path of it
is run here on the CPU with tiny sizes: a broken script would waste the GPU time it is given."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_gpu_check_smoke_run_passes(tmp_path):
    report = tmp_path / "report.md"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--smoke", "--out", str(report)],
                          capture_output=True, text=True, timeout=900, env=dict(os.environ))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = report.read_text()
    assert "all checks passed" in text and "FAIL" not in text
    for section in ("gen processors == stock", "cache and recompute modes agree", "radial FlexAttention (token)",
                    "| latent frames |", "one denoising step", "| layer set | layers |",
                    "tiny-qwen-image: entropy on != off",
                    "tiny-sd3 fp32 128x128: entropy on == stock (bitwise)", "dispatcher backend flex gets the scale",
                    "| tiny-flux | 144x80 (128) | entropy |"):
        assert section in text
