"""Study 4: cosmology from galaxy cluster abundance (arXiv:2208.00134).

`sim` (the mass function as colossus computes it, the simulators and the prior `sim.PRIOR`), `data` (halo catalogs
on disk), `model` (the estimators, trained through `inference.train_npe`, and the Gaussian likelihood) and
`evaluate` (the comparisons the chapter `nbs/40_clusters.ipynb` shows)."""
