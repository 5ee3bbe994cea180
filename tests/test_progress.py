"""Progress from inside the compiled time loops: one tick per step of every engine, the
bar full at the end, and the numbers the same bits as without it."""

import contextlib

import jax
import numpy as np
import pytest

import dmftjax as dj
from dmftjax import _dmft, _progress, _simulate

PROBLEM = dj.Problem(
    dj.PhaseRetrieval(0.1), dj.WirtingerLoss(), alpha=3.0, regulariser=dj.Ridge(0.05)
)
ALG = dj.GradientDescent(0.05, 6)


@pytest.fixture
def bars(monkeypatch):
    """Every bar opened, as (description, steps counted, total)."""
    seen = []

    @contextlib.contextmanager
    def spy(total, desc, enabled=True):
        with _progress.progress_bar(total, desc, enabled) as bar:
            yield bar
            if bar is not None:
                jax.effects_barrier()
                seen.append((bar.desc, bar.n, total))

    monkeypatch.setattr(_dmft, "progress_bar", spy)
    monkeypatch.setattr(_simulate, "progress_bar", spy)
    return seen


@pytest.mark.parametrize(
    "init, kw, per_replica",
    [
        (dj.InformedInit(0.5, 1.0), dict(estimator="tangent"), False),
        (dj.InformedInit(0.5, 1.0), dict(estimator="windowed", window=8), True),
        (dj.SpectralInit(dj.MondelliMontanari()), dict(), False),
    ],
)
def test_the_dmft_bar_counts_every_step(bars, init, kw, per_replica):
    key = jax.random.key(3)
    args = dict(num_samples=64, num_replicas=3, key=key, **kw)
    quiet = dj.solve_dmft(PROBLEM, ALG, init, **args)
    loud = dj.solve_dmft(PROBLEM, ALG, init, progress=True, **args)
    ((desc, counted, total),) = bars
    # t = 0..T in the time loop; replicas one after another in the windowed mode
    assert total == (ALG.steps + 1) * (3 if per_replica else 1)
    assert counted == total and desc == "DMFT"
    for name in dj.OBSERVABLES:
        np.testing.assert_array_equal(loud.values[name], quiet.values[name], err_msg=name)


def test_the_simulation_bar_counts_every_step_of_every_batch(bars):
    init, key = dj.InformedInit(0.5, 1.0), jax.random.key(4)
    # a memory budget of two seeds: batches of 2, 2, 1
    args = dict(dim=50, num_seeds=5, key=key, memory_budget=2 * 8.0 * 2 * 150 * 50)
    quiet = dj.simulate(PROBLEM, ALG, init, **args)
    loud = dj.simulate(PROBLEM, ALG, init, progress=True, **args)
    ((desc, counted, total),) = bars
    assert total == counted == ALG.steps * 3 and desc == "simulation (d = 50)"
    for name in dj.OBSERVABLES:
        np.testing.assert_array_equal(loud.values[name], quiet.values[name], err_msg=name)
