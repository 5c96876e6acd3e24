"""Embedders for probes: openSMILE functionals, hybrid BYOL-S, any audioexp run."""
