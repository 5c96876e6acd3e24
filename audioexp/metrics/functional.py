"""Pure metric functions on plain tensors."""

from __future__ import annotations

import torch


def confusion_error_rates(confmat: torch.Tensor, class_names: list[str]) -> dict[str, torch.Tensor]:
    """Error rates read off a confusion matrix (rows: true class, columns: predicted).

    With two classes ``a, b`` the keys are ``err_a_as_b`` (fraction of true ``a`` judged
    ``b``) and ``err_b_as_a``: the two error rates the speech/music paper reports. With
    more classes, ``err_<name>`` is one minus the recall of each class.

    Parameters
    ----------
    confmat : Tensor, shape (K, K)
    class_names : list of K str

    Returns
    -------
    dict of str to 0-d Tensor (NaN for a class with no examples)

    Examples
    --------
    >>> confusion_error_rates(torch.tensor([[8, 2], [1, 9]]), ["speech", "music"])["err_speech_as_music"]
    tensor(0.2000)
    """
    confmat = confmat.double()
    if confmat.dim() != 2 or confmat.shape[0] != confmat.shape[1] or confmat.shape[0] != len(class_names):
        raise ValueError(f"confmat must be ({len(class_names)}, {len(class_names)}), got {tuple(confmat.shape)}")
    support = confmat.sum(dim=1)
    rates = confmat / support.unsqueeze(1)  # NaN rows for absent classes, on purpose
    if len(class_names) == 2:
        a, b = class_names
        return {f"err_{a}_as_{b}": rates[0, 1].float(), f"err_{b}_as_{a}": rates[1, 0].float()}
    return {f"err_{name}": (1 - rates[i, i]).float() for i, name in enumerate(class_names)}
