"""Figures logged by the systems (matplotlib, headless)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


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
    from audioexp.features.sd_filterbank import sd_filter_response

    design.setdefault("unit_center_gain", True)
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for k in differentiations:
        freqs, h = sd_filter_response(band, k, **design)
        mag = np.abs(h)
        ax.plot(freqs, 20 * np.log10(np.maximum(mag / mag.max(), 1e-12)), label=f"{k} differentiations")
    ax.set(xlabel="frequency (Hz)", ylabel="magnitude (dB, peak 0)", ylim=(-100, 3),
           title=f"filter {band + 1}: response after spatial differentiation")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig
