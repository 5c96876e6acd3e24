"""The package's Hydra configs (found as ``pkg://audioexp.conf``, so they travel with the wheel)."""
