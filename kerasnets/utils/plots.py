"""Training-curve plots (PNG) from a run's history (`metrics.jsonl` rows)."""

from __future__ import annotations

import os


def plot_history(history: list[dict], keys, path: str, title: str = "", log_y: bool = False) -> str | None:
    """One panel per key present in `history`, value vs step; returns the path or None if nothing to plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in keys if any(k in row for row in history)]
    if not history or not keys:
        return None
    fig, axes = plt.subplots(len(keys), 1, figsize=(7, 2.2 * len(keys)), sharex=True, squeeze=False)
    for ax, key in zip(axes[:, 0], keys):
        rows = [row for row in history if key in row]
        ax.plot([r["step"] for r in rows], [r[key] for r in rows], lw=1.2)
        ax.set_ylabel(key)
        if log_y:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("step")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
