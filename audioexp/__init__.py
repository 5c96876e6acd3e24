"""audioexp: Hydra-configured PyTorch Lightning experiments for audio research."""

__version__ = "0.1.0"
