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


def pytest_configure(config):
    "Warnings are errors in the tests (a warning a user would see is a bug or belongs in a sentence); `slow` marks tests over ~10 s."
    config.addinivalue_line("markers", "slow: takes more than ~10 s on a 2-core machine (deselect with -m 'not slow')")
    config.addinivalue_line("filterwarnings", "error")
    # the listed few: third-party notices about their own internals, nothing a user of astro_nb can act on
    for rule in ("ignore:Jupyter is migrating its paths:DeprecationWarning",
                 "ignore::ResourceWarning"):
        config.addinivalue_line("filterwarnings", rule)
