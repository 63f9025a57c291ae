"""Study 1: galaxy mergers at 1 < z < 1.5 in mock HST CANDELS images (arXiv:2511.15006)."""
