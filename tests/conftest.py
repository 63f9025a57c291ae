import os
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "_fixtures"
ROOT = Path(__file__).resolve().parents[1]

os.environ.setdefault("ASTRO_NB_PROGRESS", "0")


@pytest.fixture
def fixture_nbs():
    "The folder of the tiny fixture chapter."
    return FIXTURES / "nbs"
