"""DMFT of spectral-initialised gradient descent: the stationary slot, the power-method
prehistory, the closed form at t = 0 and the simulator."""

import sys
from pathlib import Path

import jax
import numpy as np
import pytest

import dmftjax as dj
from dmftjax._preprocess import Identity, MondelliMontanari
from dmftjax._spectral import spectral_theory
from dmftjax._spectral_init import SpectralInit

sys.path.insert(0, str(Path(__file__).parent))
from helpers import assert_agree  # noqa: E402

PROBLEM = dj.Problem(
    dj.PhaseRetrieval(0.0), dj.WirtingerLoss(), alpha=3.0, regulariser=dj.Ridge(0.05)
)
INIT = SpectralInit(MondelliMontanari())
GD = dj.GradientDescent(0.02, 10)


@pytest.fixture(scope="module")
def slot():
    return dj.solve_dmft(
        PROBLEM, GD, INIT, num_samples=10000, num_replicas=8, key=jax.random.key(10)
    )


def test_slot_starts_on_its_closed_form_scale(slot):
    # The slot's overlap at t = 0 is m_v by construction; what is sampled is the rest of
    # the start (its cosine carries Monte Carlo error). The check against data is the
    # finite-size extrapolation of the simulated cosine (test_finite_size.py).
    theory = spectral_theory(PROBLEM, MondelliMontanari())
    cos2 = float(slot.cosine[0]) ** 2
    assert abs(cos2 - float(theory.cosine2)) < 4 * 2 * float(slot.cosine_se[0])


def test_prehistory_agrees_with_slot(slot):
    pre = dj.solve_dmft(
        PROBLEM,
        GD,
        INIT,
        num_samples=10000,
        num_replicas=8,
        key=jax.random.key(11),
        spectral_method="prehistory",
    )
    assert pre.info["power_steps"] > 5
    # the power phase converges to the closed-form cosine
    theory = spectral_theory(PROBLEM, MondelliMontanari())
    assert abs(pre.info["power_cosine"][-1] ** 2 - float(theory.cosine2)) < 0.01
    assert_agree(pre, slot, ("error", "overlap", "norm", "cosine", "train_loss"))


def test_slot_matches_simulation(slot):
    sim = dj.simulate(PROBLEM, GD, INIT, dim=2000, num_seeds=12, key=jax.random.key(12))
    assert_agree(sim, slot, ("error", "overlap", "norm", "cosine"))


def test_refuses_below_threshold():
    below = dj.Problem(
        dj.PhaseRetrieval(0.0), dj.WirtingerLoss(), alpha=0.4, regulariser=dj.Ridge(0.05)
    )
    with pytest.raises(ValueError, match=r"threshold .*alpha = 0\.5"):
        dj.solve_dmft(below, GD, INIT, num_samples=1000, key=jax.random.key(0))
    with pytest.raises(ValueError, match="no spectral outlier"):
        dj.solve_dmft(
            PROBLEM, GD, SpectralInit(Identity()), num_samples=1000, key=jax.random.key(0)
        )


def test_spectral_bad_arguments():
    with pytest.raises(ValueError):
        dj.solve_dmft(PROBLEM, GD, INIT, num_samples=1001, key=jax.random.key(0))
    with pytest.raises(ValueError):
        dj.solve_dmft(
            PROBLEM, GD, INIT, num_samples=1000, key=jax.random.key(0), spectral_method="power"
        )
    # antithetic pairs: each half must whiten steps + 4 seeds (slot), else NaN
    with pytest.raises(ValueError, match="num_samples / 2"):
        dj.solve_dmft(PROBLEM, GD, INIT, num_samples=28, key=jax.random.key(0))
    traj = dj.solve_dmft(PROBLEM, GD, INIT, num_samples=32, key=jax.random.key(0))
    assert np.all(np.isfinite(np.asarray(traj.error)))
    for eps0 in ("0.1", 0.0, 1.5, float("nan")):
        with pytest.raises(ValueError):
            dj.solve_dmft(
                PROBLEM,
                GD,
                dj.InformedInit(0.5, 1.0),
                num_samples=100,
                key=jax.random.key(0),
                eps0=eps0,
            )
    with pytest.raises(ValueError):
        dj.solve_dmft(
            PROBLEM,
            GD,
            dj.InformedInit(0.5, 1.0),
            num_samples=100,
            key=jax.random.key(0),
            spectral_method="power",
        )


NOISY = dj.Problem(
    dj.PhaseRetrieval(0.3), dj.WirtingerLoss(), alpha=3.0, regulariser=dj.Ridge(0.05)
)


@pytest.mark.slow
@pytest.mark.parametrize(
    "prep,alpha",
    [
        (dj.Clipped(4.0), 3.0),
        (dj.LuoAlghamdiLu(clip=-5.0), 3.0),
        (dj.MondelliMontanari(), 3.0),
        (dj.MondelliMontanariThreshold(), 3.0),
        (dj.Trimmed(6.0), 5.0),
    ],
    ids=["clipped", "luo-alghamdi-lu", "mondelli-montanari", "mm-threshold", "trimmed"],
)
def test_noisy_spectral_starts_match_simulation(prep, alpha):
    # Noise 0.3 and every built-in bounded preprocessing (Stein on z, where T has a
    # breakpoint): the slot DMFT against the simulator at every t, the start included
    # (step 0.01: a weak outlier inflates the start's r_i on rows with T(y_i) near tau by
    # 1 / (1 - R_vv T), which at step 0.02 makes some runs unstable, row by row)
    problem = dj.Problem(
        dj.PhaseRetrieval(0.3), dj.WirtingerLoss(), alpha=alpha, regulariser=dj.Ridge(0.05)
    )
    alg = dj.GradientDescent(0.01, 8)
    dmft = dj.solve_dmft(
        problem, alg, SpectralInit(prep), num_samples=4000, num_replicas=8, key=jax.random.key(70)
    )
    sim = dj.simulate(
        problem,
        alg,
        SpectralInit(prep, method="dense"),
        dim=600,
        num_seeds=8,
        key=jax.random.key(71),
    )
    assert dmft.info["num_diverged"] == 0 and sim.info["num_diverged"] == 0
    assert_agree(sim, dmft, ("error", "overlap", "norm", "cosine", "train_loss", "test_error"))


@pytest.mark.slow
def test_noisy_prehistory_matches_simulation():
    alg = dj.GradientDescent(0.01, 8)
    pre = dj.solve_dmft(
        NOISY,
        alg,
        SpectralInit(MondelliMontanari()),
        num_samples=10000,
        num_replicas=8,
        key=jax.random.key(72),
        spectral_method="prehistory",
    )
    sim = dj.simulate(
        NOISY,
        alg,
        SpectralInit(MondelliMontanari(), method="dense"),
        dim=600,
        num_seeds=8,
        key=jax.random.key(73),
    )
    assert pre.info["num_diverged"] == 0 and sim.info["num_diverged"] == 0
    assert_agree(sim, pre, ("error", "overlap", "norm", "cosine"))


def test_a_new_alpha_does_not_compile_again():
    # the spectral start's concrete facts (its closed-form cosine, ...) are reported, not
    # compiled in: a second alpha (or preprocessing parameter) reuses the compiled solver
    from dmftjax import _dmft

    alg, init = dj.GradientDescent(0.02, 5), SpectralInit(MondelliMontanari())
    runs = []
    for alpha in (2.5, 3.5, 4.5):
        problem = dj.Problem(
            dj.PhaseRetrieval(0.1), dj.WirtingerLoss(), alpha=alpha, regulariser=dj.Ridge(0.05)
        )
        runs.append(
            dj.solve_dmft(
                problem, alg, init, num_samples=200, num_replicas=2, key=jax.random.key(0)
            )
        )
        if alpha == 2.5:
            traces = _dmft.TRACES["dmft"]
    assert _dmft.TRACES["dmft"] == traces
    cos = [r.info["cosine2_theory"] for r in runs]
    assert cos[0] < cos[1] < cos[2]  # each run reports its own alpha's facts
