"""Core engines: exact limits, the numpy reference, agreement with the simulator."""

import sys
from pathlib import Path

import jax
import numpy as np
import pytest

import dmftjax as dj
from dmftjax._dmft import whitened_seeds
from dmftjax._exact import least_squares_theory

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
from helpers import assert_agree  # noqa: E402
from numpy_reference import solve_numpy  # noqa: E402


def wirtinger(alpha=3.0, lam=0.05, noise=0.0):
    return dj.Problem(
        dj.PhaseRetrieval(noise), dj.WirtingerLoss(), alpha=alpha, regulariser=dj.Ridge(lam)
    )


# -- exact limits -------------------------------------------------------------------


@pytest.mark.parametrize(
    "alpha,lam,noise,estimator",
    [
        (2.0, 0.1, 0.5, "tangent"),
        (0.7, 0.2, 0.3, "tangent"),
        (2.0, 0.1, 0.5, "ibp"),
        (5.0, 0.0, 0.0, "tangent"),
    ],
)
def test_least_squares_matches_marchenko_pastur(key, alpha, lam, noise, estimator):
    # Square loss + linear link: the sample side is exactly Gaussian and linear, so with
    # whitened seeds the DMFT is exact for any M; it must equal the closed form.
    problem = dj.Problem(
        dj.LinearModel(noise), dj.SquareLoss(), alpha=alpha, regulariser=dj.Ridge(lam)
    )
    traj = dj.solve_dmft(
        problem,
        dj.GradientDescent(0.1, 40),
        dj.InformedInit(0.3, 1.2),
        num_samples=100,
        key=key,
        estimator=estimator,
    )
    exact = least_squares_theory(alpha, lam, 0.1, 40, 0.3, 1.2, noise)
    for name in ("overlap", "norm", "error"):
        np.testing.assert_allclose(traj.values[name], exact[name], rtol=0, atol=1e-10)
    assert np.max(traj.stderr["error"]) < 1e-12


def test_least_squares_long_time_limit(key):
    # lam = 0, alpha > 1: kappa = -sum_s R(t, s) -> 1/(alpha - 1), m -> 1,
    # q -> 1 + noise^2 / (alpha - 1).
    alpha, noise = 3.0, 0.5
    problem = dj.Problem(dj.LinearModel(noise), dj.SquareLoss(), alpha=alpha)
    traj = dj.solve_dmft(
        problem, dj.GradientDescent(0.2, 200), dj.InformedInit(0.0, 1.0), num_samples=250, key=key
    )
    kappa = -float(np.sum(traj.kernels["R"][-1]))
    assert abs(kappa - 1 / (alpha - 1)) < 1e-8
    assert abs(float(traj.overlap[-1]) - 1.0) < 1e-8
    assert abs(float(traj.norm[-1]) - (1 + noise**2 / (alpha - 1))) < 1e-8
    # and with ridge: kappa = E[1 / (s + lam)] under the spectrum of A^T A
    lam = 0.3
    problem = dj.Problem(
        dj.LinearModel(noise), dj.SquareLoss(), alpha=alpha, regulariser=dj.Ridge(lam)
    )
    traj = dj.solve_dmft(
        problem, dj.GradientDescent(0.2, 200), dj.InformedInit(0.0, 1.0), num_samples=250, key=key
    )
    exact = least_squares_theory(alpha, lam, 0.2, 200, 0.0, 1.0, noise)
    assert abs(-float(np.sum(traj.kernels["R"][-1])) - exact["kappa_inf"]) < 1e-8


def test_jax_solver_equals_numpy_reference(key):
    # Same seeds, same equations, independent code (hand-written derivatives): the
    # non-linear (Wirtinger) trajectory and kernels must agree to rounding.
    steps, num = 25, 3000
    problem = wirtinger(lam=0.05, noise=0.1)
    out, kernels = jax.jit(
        lambda k: dj.dmft_replica(
            problem,
            dj.GradientDescent(0.05, steps),
            dj.InformedInit(0.5, 1.0),
            key=k,
            num_samples=num,
        )
    )(key)
    seeds = np.asarray(whitened_seeds(key, num, steps + 3))
    err, ref = solve_numpy(seeds, 3.0, 0.05, 0.05, steps, 0.5, 1.0, noise=0.1)
    np.testing.assert_allclose(out["error"], err, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(kernels["R"], ref["R"], rtol=0, atol=1e-11)
    np.testing.assert_allclose(kernels["Gamma"], ref["Gamma"], rtol=0, atol=1e-10)


def test_seeds_are_whitened(key):
    seeds = np.asarray(whitened_seeds(key, 500, 20))
    np.testing.assert_allclose(seeds.mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(seeds.T @ seeds / 500, np.eye(20), atol=1e-10)


# -- agreement with the simulator ----------------------------------------------------

OBS = ("error", "overlap", "norm", "cosine", "train_loss", "test_error", "wrong_well")


@pytest.mark.parametrize("noise,steps", [(0.0, 100), (0.1, 60)])
def test_wirtinger_flow_matches_simulation(noise, steps):
    problem, init = wirtinger(noise=noise), dj.InformedInit(0.5, 1.0)
    alg = dj.GradientDescent(0.05, steps)
    dmft = dj.solve_dmft(
        problem, alg, init, num_samples=5000, num_replicas=8, key=jax.random.key(1)
    )
    sim = dj.simulate(problem, alg, init, dim=2000, num_seeds=10, key=jax.random.key(2))
    assert_agree(sim, dmft, OBS)
    assert float(dmft.error[-1]) < 0.01 and float(sim.error[-1]) < 0.02
    # no sample is trapped from an informed start at this lam
    assert float(dmft.wrong_well[-1]) < float(dmft.wrong_well[0]) / 10


def test_logistic_probit_matches_simulation():
    problem = dj.Problem(
        dj.ProbitModel(0.3), dj.LogisticLoss(), alpha=3.0, regulariser=dj.Ridge(0.1)
    )
    alg, init = dj.GradientDescent(0.5, 60), dj.InformedInit(0.3, 1.0)
    dmft = dj.solve_dmft(
        problem, alg, init, num_samples=5000, num_replicas=8, key=jax.random.key(3)
    )
    sim = dj.simulate(problem, alg, init, dim=2000, num_seeds=10, key=jax.random.key(4))
    assert_agree(sim, dmft, OBS)


def test_estimators_agree():
    problem, alg, init = (
        wirtinger(noise=0.1),
        dj.GradientDescent(0.05, 30),
        dj.InformedInit(0.5, 1.0),
    )
    tangent = dj.solve_dmft(
        problem, alg, init, num_samples=10000, num_replicas=8, key=jax.random.key(6)
    )
    ibp = dj.solve_dmft(
        problem,
        alg,
        init,
        num_samples=10000,
        num_replicas=8,
        key=jax.random.key(7),
        estimator="ibp",
    )
    assert_agree(tangent, ibp, ("error", "overlap", "norm", "train_loss"))
    assert "Gamma" in tangent.kernels and "Gamma" not in ibp.kernels


def test_single_well_losses_report_no_wrong_well(key):
    traj = dj.solve_dmft(
        dj.Problem(dj.LinearModel(0.1), dj.SquareLoss(), alpha=2.0),
        dj.GradientDescent(0.1, 5),
        dj.InformedInit(0.5, 1.0),
        num_samples=100,
        key=key,
    )
    assert np.all(np.asarray(traj.wrong_well) == 0)
