"""Front-ends: pure functions in :mod:`.functional`, ``nn.Module`` wrappers beside them."""

from audioexp.features.functional import (
    amplitude_to_db,
    log_mel_spectrogram,
    log_power_spectrogram,
    masked_mean_variance_normalize,
    mel_spectrogram,
)
from audioexp.features.spectral import LogMelSpectrogram, LogPowerSpectrogram

__all__ = [
    "amplitude_to_db",
    "log_mel_spectrogram",
    "log_power_spectrogram",
    "masked_mean_variance_normalize",
    "mel_spectrogram",
    "LogMelSpectrogram",
    "LogPowerSpectrogram",
]
