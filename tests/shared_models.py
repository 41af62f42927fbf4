"""The trained models of ../shared/models and their real inputs (bench/int8_data.py:
calibration images from ../shared/calib, evaluation inputs rendered separately, task answers)
for tests that need a trained model; such tests skip where ../shared is absent."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"


def real_data():
    """bench/int8_data.py as a module; skips the test when ../shared/models is absent."""
    if not (SHARED / "models").is_dir():
        pytest.skip("../shared/models is not present")
    sys.path.insert(0, str(ROOT / "bench"))
    import int8_data
    return int8_data
