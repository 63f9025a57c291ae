"""Study 4: cosmology from galaxy cluster abundance (arXiv:2208.00134): simulators, loaders, evaluation."""
