"""PNG figures for the adversarial recipes (matplotlib, Agg backend)."""

from __future__ import annotations

import os

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _show(ax, img, **kw):
    img = np.asarray(img)
    if img.shape[-1] == 1:
        ax.imshow(img[..., 0], **kw)
    else:
        ax.imshow(np.clip(img, 0.0, 1.0))
    ax.set_xticks([])
    ax.set_yticks([])


def plot_adversarial_rows(original, adversarial, path: str, *, labels=None, predictions=None, title: str = "") -> str:
    """Three rows: original / perturbation (adversarial - original, symmetric colour scale) / adversarial.

    `labels` and `predictions` (optional, one int per column) title the first and last rows.
    """
    plt = _plt()
    original, adversarial = np.asarray(original), np.asarray(adversarial)
    n = len(original)
    if n == 0:
        raise ValueError("plot_adversarial_rows needs at least one example")
    pert = adversarial - original
    bound = float(np.max(np.abs(pert))) or 1.0
    fig, axes = plt.subplots(3, n, figsize=(1.3 * n, 4.2), squeeze=False)
    for j in range(n):
        _show(axes[0, j], original[j], cmap="gray", vmin=0.0, vmax=1.0)
        if labels is not None:
            axes[0, j].set_title(f"y={int(labels[j])}", fontsize=8)
        axes[1, j].imshow(pert[j].mean(-1), cmap="seismic", vmin=-bound, vmax=bound)
        axes[1, j].set_xticks([])
        axes[1, j].set_yticks([])
        axes[1, j].set_title(f"|r|={np.linalg.norm(pert[j]):.2f}", fontsize=7)
        _show(axes[2, j], adversarial[j], cmap="gray", vmin=0.0, vmax=1.0)
        if predictions is not None:
            axes[2, j].set_title(f"pred={int(predictions[j])}", fontsize=8)
    axes[0, 0].set_ylabel("original")
    axes[1, 0].set_ylabel(f"perturb.\n(±{bound:.2f})")
    axes[2, 0].set_ylabel("adversarial")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_curves(series: dict, path: str, *, xlabel: str, ylabel: str, title: str = "", hline=None) -> str:
    """Line plot of `{name: (x, y)}`; optional horizontal reference line."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, (x, y) in series.items():
        ax.plot(x, y, label=name)
    if hline is not None:
        ax.axhline(hline, color="gray", linestyle="--", linewidth=1, label=f"{hline:g}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
