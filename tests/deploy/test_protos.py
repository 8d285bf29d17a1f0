"""The protos are clean under buf lint (buf from npm @bufbuild/buf)."""
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BUF = "@bufbuild/buf@1.75.0"


def test_buf_lint_is_clean():
    npx = shutil.which("npx")
    assert npx, "npx (Node.js) is needed to run buf"
    result = subprocess.run([npx, "--yes", BUF, "lint"], cwd=ROOT / "protos",
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
