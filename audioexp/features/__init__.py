"""Front-ends: pure functions in :mod:`.functional`, ``nn.Module`` wrappers beside them."""

from audioexp.features.functional import (
    amplitude_to_db,
    log_mel_spectrogram,
    log_power_spectrogram,
    masked_mean_variance_normalize,
    mel_spectrogram,
)
from audioexp.features.spectral import LogMelSpectrogram, LogPowerSpectrogram
from audioexp.features.fbank import LogFilterbank, log_filterbank  # noqa: F401  (Xi 2022)
from audioexp.features.replay import deltas, spectral_envelope_centroids  # noqa: F401  (Wickramasinghe 2019)
from audioexp.features.sd_filterbank import sd_filterbank, spatially_differentiate  # noqa: F401
from audioexp.features.cepstral import lfcc, mfcc  # noqa: F401  (ASVspoof 2019 LFCC baseline; MFCC)

__all__ = [
    "amplitude_to_db",
    "log_mel_spectrogram",
    "log_power_spectrogram",
    "masked_mean_variance_normalize",
    "mel_spectrogram",
    "LogMelSpectrogram",
    "LogPowerSpectrogram",
]
