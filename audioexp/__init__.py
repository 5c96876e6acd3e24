"""audioexp: Hydra-configured PyTorch Lightning experiments for audio research."""

__version__ = "0.1.0"


def load(run_dir, checkpoint: str = "best", device: str = "cpu", batch_size: int = 8):
    """A finished run as a predictor: ``audioexp.load(run_dir).predict("a.wav")``
    (:class:`audioexp.inference.Predictor`)."""
    from audioexp.inference import Predictor

    return Predictor.from_run(run_dir, checkpoint, device, batch_size)
