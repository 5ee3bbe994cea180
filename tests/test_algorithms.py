"""The algorithm seam: schedules, heavy-ball and Nesterov momentum in every engine, a
user's own method as one small subclass, estimators as modules, and the traceable
per-replica engine."""

import math
import sys
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import dmftjax as dj
from dmftjax._exact import least_squares_theory, linear_method_theory, marchenko_pastur_quadrature

sys.path.insert(0, str(Path(__file__).parent))
from helpers import assert_agree, extrapolation  # noqa: E402

LS = dj.Problem(dj.LinearModel(0.3), dj.SquareLoss(), alpha=2.0, regulariser=dj.Ridge(0.1))
INIT = dj.InformedInit(0.3, 1.2)


class AveragedGradient(dj.AbstractAlgorithm):
    """A user's own method, written as a user would: gradient descent whose step uses the
    average of the iterate and the previous one as query point,
    `phi^t = (theta^t + theta^{t-1}) / 2`, `theta^{t+1} = theta^t - eta (grad(phi^t) + lam
    phi^t)`."""

    step_size: float
    steps: int = eqx.field(static=True)

    @property
    def memory(self):
        return 2

    def coefficients(self, problem):
        eta = jnp.full(self.steps, self.step_size)
        c = jnp.broadcast_to(jnp.array([0.5, 0.5]), (self.steps, 2))
        a = jnp.stack([1.0 - 0.5 * eta * problem.lam, -0.5 * eta * problem.lam], axis=1)
        return dj.Coefficients(a=a, b=-eta, c=c)

    query_is_iterate = False


METHODS = {
    "gd": dj.GradientDescent(0.1, 40),
    "heavy-ball": dj.HeavyBall(0.1, 0.6, 40),
    "nesterov": dj.Nesterov(0.1, 0.6, 40),
    "cosine": dj.GradientDescent(optax.cosine_decay_schedule(0.2, 40, alpha=0.1), 40),
    "array": dj.GradientDescent(jnp.linspace(0.2, 0.05, 40), 40),
    "user": AveragedGradient(0.15, 40),
}


@pytest.mark.parametrize("name", sorted(METHODS))
@pytest.mark.parametrize("estimator", ["tangent", "ibp"])
def test_least_squares_exact_for_every_method(name, estimator, key):
    # Square loss + linear link: each Marchenko-Pastur eigen-direction follows a linear
    # recursion, and the DMFT (exact on its whitened samples) must equal it
    alg = METHODS[name]
    traj = dj.solve_dmft(LS, alg, INIT, num_samples=100, key=key, estimator=estimator)
    exact = linear_method_theory(2.0, alg.coefficients(LS), 0.3, 1.2, 0.3)
    for obs in ("overlap", "norm", "error"):
        np.testing.assert_allclose(traj.values[obs], exact[obs], rtol=0, atol=1e-8)


def test_linear_theory_is_the_gradient_descent_closed_form():
    alg = dj.GradientDescent(0.1, 30)
    ours = linear_method_theory(2.0, alg.coefficients(LS), 0.3, 1.2, 0.3)
    ref = least_squares_theory(2.0, 0.1, 0.1, 30, 0.3, 1.2, 0.3)
    np.testing.assert_allclose(ours["error"], ref["error"], atol=1e-12)


def test_momentum_is_not_gradient_descent():
    # the exact check resolves the methods: momentum moves the curve far beyond 1e-8
    gd = linear_method_theory(2.0, METHODS["gd"].coefficients(LS), 0.3, 1.2, 0.3)
    hb = linear_method_theory(2.0, METHODS["heavy-ball"].coefficients(LS), 0.3, 1.2, 0.3)
    assert np.max(np.abs(gd["error"] - hb["error"])) > 1e-2


def test_the_simulator_runs_the_same_recursion():
    # at finite d the simulator's generic step is the method itself: heavy ball by hand
    problem = dj.Problem(dj.LinearModel(0.3), dj.SquareLoss(), alpha=2.0, regulariser=dj.Ridge(0.1))
    from dmftjax._simulate import draw_data

    key = jax.random.key(3)
    k_data, _ = jax.random.split(key)
    theta_star, a, z, y = draw_data(problem, 50, 100, k_data)
    alg = dj.HeavyBall(0.1, 0.6, 12)
    co = alg.coefficients(problem)
    grad = lambda th: a.T @ (a @ th - y)  # noqa: E731
    state = alg.simulator_init(theta_star * 0.5)
    prev = cur = theta_star * 0.5
    for t in range(12):
        state = alg.simulator_step(co, state, t, grad, 0.0, None)
        new = cur - 0.1 * (grad(cur) + 0.1 * cur) + 0.6 * (cur - prev)
        prev, cur = cur, new
        np.testing.assert_allclose(state[0], cur, rtol=1e-12, atol=1e-12)


WIRTINGER = dj.Problem(
    dj.PhaseRetrieval(0.3), dj.WirtingerLoss(), alpha=3.0, regulariser=dj.Ridge(0.05)
)


@pytest.mark.slow
@pytest.mark.parametrize(
    "alg,init",
    [
        (dj.HeavyBall(0.02, 0.5, 30), dj.InformedInit(0.5, 1.0)),
        (dj.Nesterov(0.02, 0.5, 30), dj.InformedInit(0.5, 1.0)),
        (dj.HeavyBall(0.01, 0.5, 20), dj.SpectralInit(dj.MondelliMontanari())),
        (dj.GradientDescent(optax.cosine_decay_schedule(0.04, 30), 30), dj.InformedInit(0.5, 1.0)),
    ],
    ids=["heavy-ball", "nesterov", "heavy-ball-spectral", "cosine-schedule"],
)
def test_methods_match_the_simulator(alg, init):
    dmft = dj.solve_dmft(
        WIRTINGER, alg, init, num_samples=4000, num_replicas=8, key=jax.random.key(90)
    )
    sim = dj.simulate(WIRTINGER, alg, init, dim=1000, num_seeds=8, key=jax.random.key(91))
    assert dmft.info["num_diverged"] == 0 and sim.info["num_diverged"] == 0
    assert_agree(sim, dmft, ("error", "overlap", "norm", "train_loss", "test_error"))


@pytest.mark.slow
def test_heavy_ball_finite_size_gap_is_resolved_and_shrinks():
    problem = dj.Problem(
        dj.PhaseRetrieval(0.0), dj.WirtingerLoss(), alpha=3.0, regulariser=dj.Ridge(0.05)
    )
    alg, init = dj.HeavyBall(0.03, 0.5, 20), dj.InformedInit(0.5, 1.0)
    dmft = dj.solve_dmft(
        problem, alg, init, num_samples=20000, num_replicas=8, key=jax.random.key(92)
    )
    sims = {
        d: dj.simulate(problem, alg, init, dim=d, num_seeds=s, key=jax.random.key(d), test_rows=0)
        for d, s in [(50, 800), (100, 400), (200, 200), (400, 100)]
    }
    e = extrapolation(dmft, sims, "error", 20)
    fit = e["inv_d"]
    assert fit["p_fit"] > 1e-3 and abs(fit["z_dmft"]) < 3.0 and abs(fit["c"]) > 3 * fit["se_c"], e
    gaps = np.asarray(e["means"]) - e["dmft"]
    assert gaps[0] > gaps[-1] > -3 * e["ses"][-1]  # the gap shrinks with d


def test_logistic_regression_with_nesterov_matches_the_simulator():
    problem = dj.Problem(
        dj.ProbitModel(0.3), dj.LogisticLoss(), alpha=3.0, regulariser=dj.Ridge(0.1)
    )
    alg, init = dj.Nesterov(0.4, 0.5, 30), dj.InformedInit(0.3, 1.0)
    dmft = dj.solve_dmft(
        problem, alg, init, num_samples=4000, num_replicas=8, key=jax.random.key(93)
    )
    sim = dj.simulate(problem, alg, init, dim=1000, num_seeds=8, key=jax.random.key(94))
    assert_agree(sim, dmft, ("error", "overlap", "norm", "train_loss", "test_error"))


# -- rates ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "alg",
    [dj.GradientDescent(0.05, 400), dj.HeavyBall(0.05, 0.3, 400), dj.Nesterov(0.05, 0.3, 400)],
    ids=["gd", "hb", "nesterov"],
)
def test_predicted_rates_match_the_measured_ones(alg, key):
    # least squares: the Hessian spectrum is Marchenko-Pastur; the DMFT (exact here)
    # approaches the limit at the predicted rate, the slowest mode at the lower band edge
    # (a real root for these momenta), seen through the edge's t^-1.5 prefactor
    problem = dj.Problem(
        dj.LinearModel(0.3), dj.SquareLoss(), alpha=3.0, regulariser=dj.Ridge(0.05)
    )
    pred = dj.predicted_rate(problem, alg)
    assert float(pred.rate) < 1.0  # each of these steps is stable
    lo, hi = (math.sqrt(3) - 1) ** 2 + 0.05, (math.sqrt(3) + 1) ** 2 + 0.05
    assert float(pred.lower_edge) == pytest.approx(lo, abs=1e-7)
    assert float(pred.upper_edge) == pytest.approx(hi, abs=1e-7)
    traj = dj.solve_dmft(
        problem, alg, dj.InformedInit(0.0, 1.0), num_samples=500, key=key, estimator="ibp"
    )
    fp = dj.fixed_point(problem)
    rate, se = dj.measured_rate(np.asarray(traj.error), limit=float(fp.error), window=(150, 400))
    assert abs(rate - float(pred.rate)) < 0.003 + 3 * se, (rate, float(pred.rate))


def test_momentum_stability_edge():
    problem = dj.Problem(dj.LinearModel(0.3), dj.SquareLoss(), alpha=3.0)
    assert dj.GradientDescent(0.1, 5).stability_edge(problem) == pytest.approx(20.0, rel=1e-9)
    # heavy ball: stable for eta h < 2 (1 + beta)
    assert dj.HeavyBall(0.1, 0.5, 5).stability_edge(problem) == pytest.approx(30.0, rel=1e-9)
    # Nesterov: eta h < 2 (1 + beta) / (1 + 2 beta)
    assert dj.Nesterov(0.1, 0.5, 5).stability_edge(problem) == pytest.approx(15.0, rel=1e-9)


# -- estimators as modules and the traceable engine ------------------------------------------


def test_estimators_are_modules_checked_when_built():
    assert dj.Windowed(window=24).engine == ("windowed", 24, None)
    assert dj.Windowed(window=20).engine[1] == 24  # the block size, reported in info
    with pytest.raises(ValueError):
        dj.Windowed(window=1)
    with pytest.raises(ValueError):
        dj.Windowed(handoff=-0.1)
    traj = dj.solve_dmft(
        LS,
        METHODS["gd"],
        INIT,
        num_samples=100,
        key=jax.random.key(0),
        estimator=dj.IntegrationByParts(),
    )
    assert traj.info["estimator"] == "ibp"
    with pytest.raises(ValueError, match="estimator"):
        dj.solve_dmft(
            LS, METHODS["gd"], INIT, num_samples=100, key=jax.random.key(0), estimator="tangnet"
        )
    with pytest.raises(ValueError, match="estimator"):
        dj.tune_step_size(
            LS, INIT, horizon=5, num_samples=50, key=jax.random.key(0), estimator="tangnet", steps=1
        )
    with pytest.raises(ValueError, match="metric"):
        dj.tune_step_size(
            LS, INIT, horizon=5, num_samples=50, key=jax.random.key(0), metric="mse", steps=1
        )


def test_the_per_replica_engine_is_traceable():
    # jit, vmap over a parameter, forward-mode derivative: the same numbers as solve_dmft
    problem = dj.Problem(
        dj.PhaseRetrieval(0.1), dj.WirtingerLoss(), alpha=3.0, regulariser=dj.Ridge(0.05)
    )
    init, key = dj.InformedInit(0.5, 1.0), jax.random.key(5)

    def err(beta):
        obs, _ = dj.dmft_replica(
            problem, dj.HeavyBall(0.03, beta, 15), init, key=key, num_samples=500
        )
        return obs["error"][-1]

    values = jax.jit(jax.vmap(err))(jnp.array([0.0, 0.3, 0.6]))
    assert values[2] < values[1] < values[0]
    g = jax.jit(jax.jacfwd(err))(0.3)
    h = 1e-5
    fd = (err(0.3 + h) - err(0.3 - h)) / (2 * h)
    assert float(g) == pytest.approx(float(fd), rel=1e-5)
    whole = dj.solve_dmft(
        problem, dj.HeavyBall(0.03, 0.3, 15), init, num_samples=500, num_replicas=2, key=key
    )
    k0 = jax.random.split(key, 2)[0]
    obs, _ = dj.dmft_replica(problem, dj.HeavyBall(0.03, 0.3, 15), init, key=k0, num_samples=500)
    assert float(obs["error"][-1]) == pytest.approx(whole.info["final_error_runs"][0], rel=1e-12)


def test_a_users_method_runs_in_every_engine():
    problem = dj.Problem(
        dj.PhaseRetrieval(0.1), dj.WirtingerLoss(), alpha=3.0, regulariser=dj.Ridge(0.05)
    )
    alg, init = AveragedGradient(0.03, 20), dj.InformedInit(0.5, 1.0)
    dmft = dj.solve_dmft(
        problem, alg, init, num_samples=4000, num_replicas=8, key=jax.random.key(95)
    )
    sim = dj.simulate(problem, alg, init, dim=1000, num_seeds=8, key=jax.random.key(96))
    assert_agree(sim, dmft, ("error", "overlap", "norm"))
    fp = dj.fixed_point(problem)
    rate = dj.predicted_rate(problem, alg, fixed=fp)
    assert 0 < float(rate.rate) < 1
    # the user's method to its limit point at finite d; its own stability edge
    hc = dj.hessian_check(
        problem, AveragedGradient(0.03, 200), init, dim=100, key=jax.random.key(0)
    )
    assert float(hc.stability_edge) == pytest.approx(alg.stability_edge(problem), rel=1e-9)
    assert float(hc.eig_max) < float(hc.stability_edge) and bool(hc.gd_stable)
    # and tuning: its step through the DMFT, forward derivative against differences
    objective = jax.jit(
        dj.algorithm_objective(problem, alg, init, num_samples=300, key=jax.random.key(3))
    )
    u = float(np.log(0.03))
    g = float(jax.jit(jax.jacfwd(objective))(u))
    fd = (float(objective(u + 1e-5)) - float(objective(u - 1e-5))) / 2e-5
    assert g == pytest.approx(fd, rel=1e-5)
    res = dj.tune_algorithm(
        problem, alg, init, num_samples=300, key=jax.random.key(3), steps=5, progress=False
    )
    assert res.best_value <= float(objective(u))


def test_bad_algorithms_are_refused():
    for make in (
        lambda: dj.HeavyBall(0.1, 1.0, 10),
        lambda: dj.HeavyBall(0.1, -0.1, 10),
        lambda: dj.Nesterov(0.1, float("nan"), 10),
        lambda: dj.GradientDescent(jnp.ones(5), 10),
        lambda: dj.GradientDescent(-jnp.ones(10), 10),
        lambda: dj.GradientDescent(lambda t: -0.1 + 0 * t, 10),
        lambda: dj.GradientDescent("0.1", 10),
    ):
        with pytest.raises(ValueError):
            make()
    with pytest.raises(ValueError, match="algorithm"):
        dj.solve_dmft(LS, "gd", INIT, num_samples=100, key=jax.random.key(0))


# -- reverse mode -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "estimator", [dj.Tangent(), dj.Windowed(window=8)], ids=["tangent", "windowed"]
)
def test_reverse_mode_equals_forward_mode_and_differences(estimator):
    # Wirtinger flow with noise, heavy ball: d error_T / d (step, lam, alpha, momentum)
    init, key = dj.InformedInit(0.5, 1.0), jax.random.key(3)

    def err(p, reverse):
        eta, lam, alpha, beta = p
        prob = dj.Problem(
            dj.PhaseRetrieval(0.1), dj.WirtingerLoss(), alpha=alpha, regulariser=dj.Ridge(lam)
        )
        obs, _ = dj.dmft_replica(
            prob,
            dj.HeavyBall(eta, beta, 12),
            init,
            key=key,
            num_samples=300,
            estimator=estimator,
            reverse_mode=reverse,
        )
        return obs["error"][-1]

    p = jnp.array([0.03, 0.05, 3.0, 0.4])
    assert float(err(p, True)) == float(err(p, False))
    rev = np.asarray(jax.jit(jax.grad(lambda q: err(q, True)))(p))
    fwd = np.asarray(jax.jit(jax.jacfwd(lambda q: err(q, False)))(p))
    steps = np.array([1e-6, 1e-6, 1e-5, 1e-6])
    fd = np.array(
        [
            (err(p.at[i].add(h), False) - err(p.at[i].add(-h), False)) / (2 * h)
            for i, h in enumerate(steps)
        ]
    )
    np.testing.assert_allclose(rev, fwd, rtol=1e-10)
    np.testing.assert_allclose(rev, fd, rtol=1e-5)


ILL_CONDITIONED = dj.Problem(
    dj.LinearModel(0.0), dj.SquareLoss(), alpha=1.5, regulariser=dj.Ridge(0.001)
)


def _ill_conditioned_closed_form(log_eta):
    # GD from (m0, q0) = (0, 1) on noiseless ridge least squares, eigenvalue by eigenvalue
    # of S = A^T A: theta_s^T = (1 - P(s)) s / (s + lam) with P(s) = prod_t (1 - eta_t (s + lam))
    # on theta*'s part and P(s) on the start's, averaged under Marchenko-Pastur
    s, w = marchenko_pastur_quadrature(ILL_CONDITIONED.alpha, 400)
    lam = ILL_CONDITIONED.regulariser.lam
    P = jnp.prod(1 - jnp.exp(log_eta)[:, None] * (s + lam)[None, :], axis=0)
    return jnp.sum(w * ((s / (s + lam) * (1 - P) - 1) ** 2 + P**2))


def _ill_conditioned_dmft(log_eta, reverse=True):
    alg = dj.GradientDescent(jnp.exp(log_eta), log_eta.shape[0])
    obs, _ = dj.dmft_replica(
        ILL_CONDITIONED,
        alg,
        dj.InformedInit(0.0, 1.0),
        key=jax.random.key(21),
        num_samples=64,
        reverse_mode=reverse,
    )
    return obs["error"][-1]


@pytest.mark.slow
def test_reverse_mode_gradient_of_fifty_step_sizes_is_exact_on_least_squares():
    # the DMFT is exact on least squares (whitened samples), so its reverse-mode gradient
    # over 50 per-step step sizes must equal the closed form's, an independent formula
    x = np.log(0.39) + 0.5 * np.asarray(jax.random.normal(jax.random.key(1), (50,)))
    x = jnp.asarray(x)
    assert float(_ill_conditioned_dmft(x)) == pytest.approx(
        float(_ill_conditioned_closed_form(x)), rel=1e-8
    )
    g = np.asarray(jax.jit(jax.grad(_ill_conditioned_dmft))(x))
    exact = np.asarray(jax.grad(_ill_conditioned_closed_form)(x))
    np.testing.assert_allclose(g, exact, rtol=1e-6, atol=1e-9 * np.abs(exact).max())


@pytest.mark.slow
def test_a_tuned_fifty_step_schedule_beats_the_best_constant_step_by_far():
    # ill-conditioned ridge least squares (condition number ~ 500), T = 50: the best
    # constant step of a grid leaves error 4.2e-3; 50 step sizes tuned by adam through the
    # DMFT's reverse-mode gradients reach the ridge limit's order (1.2e-5) -- Chebyshev-like
    # acceleration found by the tuner. The error is symmetric in the steps, so adam starts
    # from a spread-out point. Checked on the closed form and on a d = 1000 simulation
    # (benchmarks/bench_schedule.py --problem least-squares: 8.5e-6, simulation 8.9e-6 +- 0.3e-6)
    grid = np.exp(np.linspace(np.log(0.1), np.log(0.45), 12))
    values = [float(_ill_conditioned_closed_form(jnp.full(50, np.log(e)))) for e in grid]
    best = float(min(values))
    assert 3e-3 < best < 6e-3
    x0 = np.log(grid[int(np.argmin(values))]) + jax.random.normal(jax.random.key(0), (50,))
    res = dj.tune(_ill_conditioned_dmft, x0, optimizer=optax.adam(0.05), steps=300, progress=False)
    assert res.best_value < best / 100, (res.best_value, best)
    assert float(_ill_conditioned_closed_form(res.best_params)) == pytest.approx(
        res.best_value, rel=1e-6
    )
    sim = dj.simulate(
        ILL_CONDITIONED,
        dj.GradientDescent(jnp.exp(res.best_params), 50),
        dj.InformedInit(0.0, 1.0),
        dim=1000,
        num_seeds=8,
        key=jax.random.key(22),
        test_rows=0,
    )
    assert sim.info["num_diverged"] == 0
    assert float(sim.error[-1]) < best / 100


@pytest.mark.slow
def test_a_tuned_per_step_schedule_beats_the_best_constant_step():
    # 20 step sizes, one per step, tuned by adam through reverse-mode gradients of the
    # DMFT (Wirtinger flow with noise), from the best constant step of a grid on the same
    # key. The horizon is where the pathwise derivative is valid: once the gradients of
    # successive steps are nearly collinear (the innovation of the Gaussian field below
    # ~1e-6 of its size, t >~ 25 here) the M-sample realisation of the field rotates at a
    # rate 1 / innovation and no pathwise derivative follows the smooth trend (see
    # dmft_replica); that is checked here too.
    problem = dj.Problem(
        dj.PhaseRetrieval(0.2), dj.WirtingerLoss(), alpha=3.0, regulariser=dj.Ridge(0.05)
    )
    init, key, steps = dj.InformedInit(0.5, 1.0), jax.random.key(21), 20

    def final_error(log_eta, reverse=True):
        alg = dj.GradientDescent(jnp.exp(log_eta), steps)
        obs, _ = dj.dmft_replica(
            problem, alg, init, key=key, num_samples=1000, reverse_mode=reverse
        )
        return obs["error"][-1]

    grid = np.exp(np.linspace(np.log(0.01), np.log(0.1), 7))
    constant = jax.jit(jax.vmap(lambda e: final_error(jnp.full(steps, jnp.log(e)))))
    values = np.asarray(constant(jnp.asarray(grid)))
    best = int(np.nanargmin(values))
    x0 = jnp.full(steps, np.log(grid[best]))
    _, kernels = dj.dmft_replica(
        problem, dj.GradientDescent(grid[best], steps), init, key=key, num_samples=1000
    )
    innovation = np.abs(np.asarray(kernels["innovation"]))
    assert innovation.min() > 1e-6 * innovation.max()
    g = np.asarray(jax.jit(jax.grad(final_error))(x0))
    v = jnp.asarray(np.sign(g))
    fd = (
        float(final_error(x0 + 1e-4 * v, False)) - float(final_error(x0 - 1e-4 * v, False))
    ) / 2e-4
    assert float(g @ np.asarray(v)) == pytest.approx(fd, rel=1e-3)
    res = dj.tune(final_error, x0, optimizer=optax.adam(0.05), steps=30, progress=False)
    assert np.asarray(res.best_params).shape == (steps,)
    assert res.best_value < 0.95 * values[best], (res.best_value, values[best])
    # the value tune reports is the forward engine's on the tuned schedule
    assert float(final_error(res.best_params, reverse=False)) == pytest.approx(
        res.best_value, rel=1e-10
    )
