"""The `dmftjax` command line."""

from __future__ import annotations

import csv
import json
import os
import sys
import time
from pathlib import Path

import click


def _setup():
    import jax

    jax.config.update("jax_enable_x64", True)


def _atomic_write(path: Path, text: str):
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="dmftjax")
def main():
    """Exact (d = infinity) predictions for gradient descent on single-index models,
    checked against finite-size simulation."""


@main.command()
@click.option("--out", default="dmftjax-output", show_default=True, type=click.Path(file_okay=False),
              help="folder for the figure, JSON and CSV")
@click.option("--alpha", default=3.0, show_default=True, type=float)
@click.option("--lam", default=0.05, show_default=True, type=float)
@click.option("--step", default=0.05, show_default=True, type=float)
@click.option("--steps", default=100, show_default=True, type=int)
@click.option("--noise", default=0.1, show_default=True, type=float)
@click.option("--dim", default=1000, show_default=True, type=int)
@click.option("--seeds", default=6, show_default=True, type=int)
@click.option("--samples", default=5000, show_default=True, type=int)
@click.option("--seed", default=0, show_default=True, type=int, help="root random seed")
def demo(out, alpha, lam, step, steps, noise, dim, seeds, samples, seed):
    """Regularised Wirtinger flow on phase retrieval: DMFT against simulation.

    Example: dmftjax demo --alpha 3 --lam 0.05 --step 0.05 --out results/
    """
    _setup()
    import jax
    import numpy as np

    import dmftjax as dj
    from dmftjax.plotting import compare

    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        problem = dj.Problem(dj.PhaseRetrieval(noise), dj.WirtingerLoss(), alpha=alpha,
                             regulariser=dj.Ridge(lam))
        alg = dj.GradientDescent(step, steps)
        init = dj.InformedInit(0.5, 1.0)
    except (ValueError, OSError) as err:
        raise click.ClickException(str(err)) from None
    k_dmft, k_sim = jax.random.split(jax.random.key(seed))
    t0 = time.perf_counter()
    dmft = dj.solve_dmft(problem, alg, init, num_samples=samples, key=k_dmft)
    t1 = time.perf_counter()
    sim = dj.simulate(problem, alg, init, dim=dim, num_seeds=seeds, key=k_sim)
    t2 = time.perf_counter()
    fig = compare(dmft, sim, title=f"Wirtinger flow, phase retrieval: alpha={alpha}, lam={lam}, "
                                   f"step={step}, noise={noise}")
    fig.savefig(out / "demo.png", dpi=130)
    settings = dict(alpha=alpha, lam=lam, step=step, steps=steps, noise=noise, dim=dim,
                    seeds=seeds, samples=samples, seed=seed, version=dj.__version__)
    _atomic_write(out / "demo.json", json.dumps(
        {"settings": settings, "dmft": dmft.to_dict(), "simulation": sim.to_dict()}, indent=1))
    rows = [["t", "dmft_error", "dmft_error_se", "sim_error", "sim_error_se"]]
    for t in range(steps + 1):
        rows.append([t, float(dmft.error[t]), float(dmft.error_se[t]), float(sim.error[t]),
                     float(sim.error_se[t])])
    tmp = out / "demo.csv.tmp"
    with open(tmp, "w", newline="") as f:
        csv.writer(f).writerows(rows)
    os.replace(tmp, out / "demo.csv")
    click.echo(f"{'t':>5} {'DMFT error':>22} {'simulation error':>22}")
    for t in sorted({0, 1, 5, 10, 20, 50, steps} & set(range(steps + 1))):
        click.echo(f"{t:>5} {float(dmft.error[t]):>12.5f} ± {float(dmft.error_se[t]):.5f}"
                   f" {float(sim.error[t]):>12.5f} ± {float(sim.error_se[t]):.5f}")
    click.echo(f"DMFT {t1 - t0:.1f} s (M = {samples} x 4 replicas), simulation {t2 - t1:.1f} s "
               f"(d = {dim}, {seeds} seeds), compile included")
    click.echo(f"wrote {out / 'demo.png'}, {out / 'demo.json'}, {out / 'demo.csv'}")


if __name__ == "__main__":
    sys.exit(main())
