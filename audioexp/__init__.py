"""audioexp: Hydra-configured PyTorch Lightning experiments for audio research."""

__version__ = "0.1.0"


def load(run_dir, checkpoint: str = "best", device: str = "cpu", batch_size: int = 8, **choose):
    """A finished run as a predictor: ``audioexp.load(run_dir).predict("a.wav")``, by the run's
    task (:func:`audioexp.systems.predictors.load_predictor`; ``system=`` for a replay run, ``classifier=``
    for a probe run)."""
    from audioexp.systems.predictors import load_predictor

    return load_predictor(run_dir, checkpoint, device, batch_size, **choose)
