"""Training losses: pure functions in ``functional``, ``nn.Module`` wrappers beside them."""

from audioexp.losses.center import CenterLoss
from audioexp.losses.functional import center_loss, center_update

__all__ = ["CenterLoss", "center_loss", "center_update"]
