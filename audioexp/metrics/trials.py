"""Scoring verification trials from embeddings gathered over an evaluation epoch."""

from __future__ import annotations

import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat


def cosine_trial_scores(embeddings: torch.Tensor, trials: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of each trial's two embeddings.

    Parameters
    ----------
    embeddings : Tensor, shape (num_files, dim)
    trials : Tensor of int, shape (num_trials, 3)
        ``(label, index_a, index_b)`` rows.

    Returns
    -------
    Tensor, shape (num_trials,)

    Examples
    --------
    >>> e = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 3.0]])
    >>> cosine_trial_scores(e, torch.tensor([[1, 0, 1], [0, 0, 2]]))
    tensor([1., 0.])
    """
    unit = torch.nn.functional.normalize(embeddings.float(), dim=1)
    return (unit[trials[:, 1]] * unit[trials[:, 2]]).sum(dim=1)


def embedding_matrix(indices: torch.Tensor, embeddings: torch.Tensor, num_files: int) -> torch.Tensor:
    """Rows of ``embeddings`` placed at their file ``indices``; files never seen are NaN.

    ``indices`` (n,) of int and ``embeddings`` (n, dim) give a (num_files, dim) tensor.

    Examples
    --------
    >>> embedding_matrix(torch.tensor([2, 0]), torch.tensor([[1.0], [3.0]]), 3)
    tensor([[3.],
            [nan],
            [1.]])
    """
    out = embeddings.new_full((num_files, embeddings.shape[1]), float("nan"))
    out[indices] = embeddings
    return out


class TrialEmbeddings(Metric):
    """Gathers ``(file index, embedding)`` pairs of an evaluation epoch (across DDP ranks).

    ``compute()`` returns ``(indices, embeddings)`` of everything seen on every rank; a file
    seen twice (DistributedSampler pads by repeating) gives identical rows. Place them with
    :func:`embedding_matrix`.
    """

    full_state_update = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("indices", default=[], dist_reduce_fx="cat")
        self.add_state("embeddings", default=[], dist_reduce_fx="cat")

    def update(self, indices: torch.Tensor, embeddings: torch.Tensor) -> None:
        self.indices.append(indices.detach().long())
        self.embeddings.append(embeddings.detach().float())

    def compute(self) -> tuple[torch.Tensor, torch.Tensor]:
        return dim_zero_cat(self.indices), dim_zero_cat(self.embeddings)
