"""Study 3: amortized inference of galaxy properties from spectra (arXiv:2211.09126): bagpipes-exact batched simulator, survey-spectrum loader."""
