"Study 2: stars, galaxies and AGN in an LSST-like survey (arXiv:2307.04072)."
