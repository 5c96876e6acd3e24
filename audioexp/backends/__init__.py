"""Non-gradient back-ends: GMM scoring and score fusion."""

from audioexp.backends.fusion import LogisticRegressionFusion
from audioexp.backends.gmm import GMMBackend, cap_frames_per_utterance, diagonal_gmm_log_likelihood

__all__ = ["GMMBackend", "LogisticRegressionFusion", "cap_frames_per_utterance", "diagonal_gmm_log_likelihood"]
