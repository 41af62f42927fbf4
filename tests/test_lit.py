"""Runs the lit + filecheck text-IR tests (tests/lit/*.eir) from pytest, one test per file.

Equivalent to `lit -v tests/lit`; a failure shows lit's full output (commands and filecheck
diagnostics).
"""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

LIT_DIR = Path(__file__).parent / "lit"
TESTS = sorted(p.name for p in LIT_DIR.glob("*.eir"))


def test_lit_suite_is_not_empty():
    assert {"dce.eir", "eliminate_identity.eir", "roundtrip.eir"} <= set(TESTS)


@pytest.mark.parametrize("name", TESTS)
def test_lit(name, tmp_path):
    env = dict(os.environ, EDGECC_LIT_OUT=str(tmp_path))
    bin_dir = os.path.dirname(sys.executable)
    env["PATH"] = os.pathsep.join([bin_dir, env.get("PATH", "")])
    proc = subprocess.run([sys.executable, "-c", "from lit.main import main; main()", "-v",
                           str(LIT_DIR / name)], capture_output=True, text=True, env=env,
                          timeout=600)
    assert proc.returncode == 0, f"lit failed on {name}:\n{proc.stdout}\n{proc.stderr}"
    assert re.search(r"Passed\s*:\s*1\b", proc.stdout), proc.stdout
