"""Front-ends: pure functions in :mod:`.functional`, ``nn.Module`` wrappers beside them."""

from audioexp.features.functional import amplitude_to_db, log_mel_spectrogram, mel_spectrogram
from audioexp.features.spectral import LogMelSpectrogram

__all__ = ["amplitude_to_db", "log_mel_spectrogram", "mel_spectrogram", "LogMelSpectrogram"]
