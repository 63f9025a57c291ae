"""The shared SBI toolkit: named priors and NPE (`npe`), reference posteriors from a likelihood (`reference`), and the checks that compare and calibrate them (`checks`).

Written by hand (nbdev creates but never overwrites a package's `__init__.py`): it gathers the three
modules exported from `nbs/05_inference`, `06_inference_reference` and `07_inference_checks`, so
`from astro_nb import inference as inf` reaches every function.
"""
from .npe import *        # noqa: F401,F403
from .reference import *  # noqa: F401,F403
from .checks import *     # noqa: F401,F403
from .npe import _to_numpy  # noqa: F401  (used by the study packages)
