"""Every figure audioexp draws (matplotlib, headless): confusion matrices, DET curves, t-SNE
maps of embeddings, spatially differentiated filter responses.

Figures sit above the parts they draw (metrics, features) and below the systems and tasks
that log them; each function returns a :class:`matplotlib.figure.Figure` (close it with
``plt.close(fig)``).
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from numpy.typing import ArrayLike  # noqa: E402

from audioexp.features.sd_filterbank import response_shape, sd_filter_response  # noqa: E402
from audioexp.metrics.verification import det_curve, equal_error_rate  # noqa: E402


def confusion_matrix_figure(confmat: np.ndarray, class_names: list[str], title: str = "") -> plt.Figure:
    """Counts and row-normalised rates of a (true x predicted) confusion matrix."""
    confmat = np.asarray(confmat)
    rates = confmat / np.maximum(confmat.sum(axis=1, keepdims=True), 1)
    k = len(class_names)
    fig, ax = plt.subplots(figsize=(1.2 * k + 2.5, 1.2 * k + 2))
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            ax.text(
                j,
                i,
                f"{int(confmat[i, j])}\n{100 * rates[i, j]:.1f}%",
                ha="center",
                va="center",
                color="white" if rates[i, j] > 0.5 else "black",
                fontsize=9,
            )
    ax.set_xticks(range(k), class_names, rotation=45, ha="right")
    ax.set_yticks(range(k), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def sd_filter_response_figure(
    band: int = 54, differentiations: tuple[int, ...] = (0, 3, 6), **design
) -> plt.Figure:
    """Magnitude response of one filter after several spatial differentiations (Wickramasinghe
    et al. 2019, Fig. 1: sharper and moved upward). ``band`` counts from 0 (54 = the 55th);
    ``design`` goes to :func:`audioexp.features.sd_filterbank.resonator_bank`; unit centre gain
    by default, as the figure."""
    design.setdefault("unit_center_gain", True)
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for k in differentiations:
        freqs, h = sd_filter_response(band, k, num_freqs=16384, **design)
        mag = np.abs(h)
        centre, width = response_shape(freqs, h, -3.0)
        ax.plot(freqs, 20 * np.log10(np.maximum(mag / mag.max(), 1e-12)),
                label=f"{k} differentiations: peak {centre:.0f} Hz, -3 dB width {width:.0f} Hz")
    ax.set(xlabel="frequency (Hz)", ylabel="magnitude (dB, peak 0)", ylim=(-60, 3),
           title=f"filter {band + 1}: response after spatial differentiation")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def det_curve_figure(scores: ArrayLike, labels: ArrayLike, title: str = ""):
    """DET plot: miss against false-alarm rate on probit axes (0.1 % to 50 %), EER marked.

    Operating points beyond the axes are drawn at their edge. The figure holds two
    lines, the curve and the EER marker; close it with ``plt.close(fig)``.

    Parameters
    ----------
    scores : Tensor or ndarray, shape (N,)
    labels : Tensor or ndarray, shape (N,)
    title : str

    Returns
    -------
    matplotlib.figure.Figure
    """
    from scipy.stats import norm

    p_fa, p_miss, _ = det_curve(scores, labels)
    eer, _ = equal_error_rate(scores, labels)
    ticks = np.array([0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5])
    lo, hi = norm.ppf(ticks[0]), norm.ppf(ticks[-1])

    def probit(p: np.ndarray) -> np.ndarray:
        # 0 and 1 map to -inf/+inf: pin them just outside the axes so the curve runs off the edge
        return np.clip(norm.ppf(np.clip(p, 1e-12, 1 - 1e-12)), lo - 0.5, hi + 0.5)

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(probit(p_fa), probit(p_miss), color="C0", label="DET")
    ax.plot(probit(np.array([eer])), probit(np.array([eer])), "o", color="C3", label=f"EER = {100 * eer:.2f} %")
    labels_pct = [f"{100 * t:g}" for t in ticks]
    ax.set_xticks(norm.ppf(ticks), labels_pct)
    ax.set_yticks(norm.ppf(ticks), labels_pct)
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_aspect("equal")
    ax.grid(True, alpha=0.4)
    ax.set_xlabel("false alarm rate (%)")
    ax.set_ylabel("miss rate (%)")
    ax.legend(loc="upper right")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def tsne_figure(embeddings: np.ndarray, labels: np.ndarray, speakers: np.ndarray, class_names: list[str],
                speaker_names: dict[int, str] | None = None, seed: int = 0, title: str = ""):
    """t-SNE of utterance embeddings: colour = class, marker = speaker number (the paper's Fig. 1).

    Parameters
    ----------
    embeddings : ndarray, shape (n, dim)
    labels, speakers : ndarray of int, shape (n,)
    class_names : list of str
    speaker_names : dict of int to str, optional
        Printed under the title (``0=Ses01F, ...``).
    """
    from sklearn.manifold import TSNE

    n = len(embeddings)
    # exact gradients for a test fold's few hundred points: faster than Barnes-Hut there
    points = TSNE(n_components=2, perplexity=float(min(30.0, max(2.0, (n - 1) / 3))), init="pca", random_state=seed,
                  method="exact" if n <= 1000 else "barnes_hut").fit_transform(np.asarray(embeddings, dtype=np.float64))
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    colours = plt.get_cmap("tab10")
    for c, name in enumerate(class_names):
        first = True
        for s in np.unique(speakers):
            sel = (labels == c) & (speakers == s)
            if sel.any():
                ax.scatter(points[sel, 0], points[sel, 1], marker=f"${int(s)}$", s=60, color=colours(c % 10),
                           label=name if first else None)
                first = False
    ax.legend(loc="best", fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])
    if speaker_names:
        title = f"{title}\nspeakers: " + ", ".join(f"{k}={v}" for k, v in sorted(speaker_names.items()))
    ax.set_title(title, fontsize=8)
    fig.tight_layout()
    return fig
