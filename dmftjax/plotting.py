"""Figures: DMFT curves with a Monte Carlo band, simulation points with error bars."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ._trajectory import Trajectory  # noqa: E402

STYLE = {"dmft": dict(color="C0", lw=1.8), "simulation": dict(color="C3", fmt="o", ms=3.5, capsize=2)}


def plot_curve(ax, traj: Trajectory, name: str = "error", label: str | None = None,
               every: int | None = None, color=None, **kw):
    """Draw one observable of one trajectory: a line with a 2-standard-error band for the
    DMFT, points with 2-standard-error bars for a simulation (every `every`-th step)."""
    t = np.asarray(traj.times)
    v = np.asarray(traj.values[name])
    se = np.nan_to_num(np.asarray(traj.stderr[name]))
    label = label or traj.source
    if traj.source == "simulation":
        every = every or max(1, len(t) // 25)
        style = dict(STYLE["simulation"], **kw)
        if color is not None:
            style["color"] = color
        ax.errorbar(t[::every], v[::every], yerr=2 * se[::every], label=label, ls="none", **style)
    else:
        style = dict(STYLE["dmft"], **kw)
        if color is not None:
            style["color"] = color
        ax.plot(t, v, label=label, **style)
        ax.fill_between(t, v - 2 * se, v + 2 * se, color=style["color"], alpha=0.25, lw=0)
    return ax


def compare(dmft: Trajectory, sim: Trajectory | None = None,
            names=("error", "cosine", "train_loss", "wrong_well"), title: str | None = None,
            logy=("error", "train_loss")):
    """One panel per observable, DMFT against simulation."""
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.4), squeeze=False)
    for ax, name in zip(axes[0], names):
        plot_curve(ax, dmft, name, label="DMFT (d = inf)")
        if sim is not None:
            plot_curve(ax, sim, name, label=f"simulation (d = {sim.info.get('dim')})")
        if name in logy:
            ax.set_yscale("log")
        ax.set_xlabel("step t")
        ax.set_title(name.replace("_", " "))
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
