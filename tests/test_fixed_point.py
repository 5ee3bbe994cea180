"""The long-time fixed point: closed forms, agreement with the DMFT and the simulator,
the Hessian's kappa and spectral edge at finite d, the convergence rate, implicit
gradients, and bad inputs."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import dmftjax as dj
from dmftjax import _fixed_point as fpm
from dmftjax._fixed_point import (
    FixedPoint,
    fixed_point,
    fixed_point_sweep,
    hessian_check,
    measured_rate,
    predicted_rate,
)

LEVEL = 2 * stats.norm.sf(3.0)  # two-sided coverage of 3 Gaussian standard errors


def crit(n):
    """Student-t critical value at that coverage with n - 1 degrees of freedom."""
    return float(stats.t.isf(LEVEL / 2, n - 1))


def wirtinger(lam, noise=0.1, alpha=3.0, prior=None):
    kw = {} if prior is None else {"prior": prior}
    return dj.Problem(
        dj.PhaseRetrieval(noise), dj.WirtingerLoss(), alpha=alpha, regulariser=dj.Ridge(lam), **kw
    )


# -- exact limits ---------------------------------------------------------------------


@pytest.mark.parametrize("alpha,noise", [(3.0, 0.5), (1.5, 0.2)])
def test_least_squares_closed_form(alpha, noise):
    problem = dj.Problem(dj.LinearModel(noise), dj.SquareLoss(), alpha=alpha)
    fp = fixed_point(problem)
    assert bool(fp.converged) and bool(fp.valid)
    assert abs(float(fp.kappa) - 1 / (alpha - 1)) < 1e-10
    assert abs(float(fp.m) - 1.0) < 1e-10
    assert abs(float(fp.q) - (1 + noise**2 / (alpha - 1))) < 1e-10
    assert abs(float(fp.error) - noise**2 / (alpha - 1)) < 1e-10
    # the Hessian A^T A: Marchenko-Pastur edges (sqrt(alpha) -+ 1)^2
    rate = predicted_rate(problem, 0.1, fixed=fp)
    lo, hi = (math.sqrt(alpha) - 1) ** 2, (math.sqrt(alpha) + 1) ** 2
    assert abs(float(rate.lower_edge) - lo) < 1e-8
    assert abs(float(rate.upper_edge) - hi) < 1e-8
    assert abs(float(rate.rate) - max(abs(1 - 0.1 * lo), abs(1 - 0.1 * hi))) < 1e-9


@pytest.mark.parametrize("alpha,lam", [(3.0, 0.3), (0.5, 0.1)])
def test_ridge_least_squares_closed_form(alpha, lam):
    # kappa solves lam k^2 + (lam + alpha - 1) k - 1 = 0; m = alpha k / (1 + k); started
    # from an explicit (kappa, m, q) far from the answer
    noise = 0.3
    problem = dj.Problem(
        dj.LinearModel(noise), dj.SquareLoss(), alpha=alpha, regulariser=dj.Ridge(lam)
    )
    fp = fixed_point(problem, start=(1.0, 0.2, 0.5))
    b = lam + alpha - 1
    kappa = (-b + math.sqrt(b * b + 4 * lam)) / (2 * lam)
    m = alpha * kappa / (1 + kappa)
    assert abs(float(fp.kappa) - kappa) < 1e-10
    assert abs(float(fp.m) - m) < 1e-10
    # q from its equation with E g^2 = (q - 2m + 1 + noise^2) / (1 + kappa)^2
    c = alpha * kappa**2 / (1 + kappa) ** 2
    q = (c * (1 - 2 * m + noise**2) + m**2) / (1 - c)
    assert abs(float(fp.q) - q) < 1e-10


def test_trajectory_view_and_sweep():
    problem = wirtinger(0.05)
    fp = fixed_point(problem)
    traj = fp.trajectory()
    assert traj.source == "fixed_point" and np.isinf(np.asarray(traj.times)).all()
    for name in dj.OBSERVABLES:
        assert traj.values[name].shape == (1,) and float(traj.stderr[name][0]) == 0.0
    assert float(traj.error[0]) == float(fp.error)
    assert float(fp.unstable_mass) == 0.0 and float(fp.residual) < 1e-10
    # a vmapped sweep agrees with one-at-a-time solves
    sweep = fixed_point_sweep(problem, lam=jnp.array([0.05, 0.2]), start=fp)
    assert sweep.error.shape == (2,) and bool(sweep.converged.all())
    one = fixed_point(wirtinger(0.2), start=fp)
    np.testing.assert_allclose(
        np.asarray(sweep.error), [float(fp.error), float(one.error)], rtol=1e-9
    )


def test_no_retracing_across_values(monkeypatch):
    # floats become arrays before the jitted solve: a new lam or alpha is not a new trace
    calls = []
    original = fpm._residual

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(fpm, "_residual", counting)
    start = (0.45, 0.99, 0.98)
    fixed_point(wirtinger(0.07), start=start, num_nodes=12)
    traced = len(calls)
    assert traced > 0
    fixed_point(wirtinger(0.11, alpha=3.2), start=(0.44, 0.98, 0.97), num_nodes=12)
    assert len(calls) == traced


# -- agreement with the engines ---------------------------------------------------------


@pytest.fixture(scope="module")
def dmft_runs():
    out = {}
    for lam in (0.05, 0.2):
        problem = wirtinger(lam)
        traj = dj.solve_dmft(
            problem,
            dj.GradientDescent(0.05, 150),
            dj.InformedInit(0.5, 1.0),
            num_samples=800,
            key=jax.random.key(11),
            num_replicas=8,
        )
        out[lam] = (problem, traj)
    return out


@pytest.mark.parametrize("lam", [0.05, 0.2])
def test_matches_late_time_dmft(dmft_runs, lam):
    problem, traj = dmft_runs[lam]
    fp = fixed_point(problem, start=traj)  # Newton from the late-time DMFT values
    assert bool(fp.valid)
    rate = float(predicted_rate(problem, 0.05, fixed=fp).rate)
    n = traj.info["num_replicas"]
    T = traj.error.shape[0] - 1
    for name in ("error", "overlap", "norm"):
        x = np.asarray(traj.values[name])
        se = float(np.asarray(traj.stderr[name])[-1])
        # the DMFT at T is not yet at t = inf: add the remaining geometric tail
        # sum_{t>T} (x_{t+1} - x_t) ~ step rho / (1 - rho + 1.5 rho / T), with the step
        # and the level averaged over two steps (a sample past the per-row instability
        # threshold would add a period-2 oscillation)
        step = 0.5 * (x[-1] - x[-3])
        tail = step * rate / (1 - rate + 1.5 * rate / T)
        value = 0.5 * (x[-1] + x[-2]) + 0.5 * step + tail
        target = float(getattr(fp, {"overlap": "m", "norm": "q"}.get(name, name)))
        z = (value - target) / math.sqrt(se**2 + (0.3 * tail) ** 2)
        assert abs(z) < crit(n), (name, value, target, se, tail)
    # the integrated response of the DMFT
    kappa_dmft = -float(np.sum(np.asarray(traj.kernels["R"])[-1]))
    assert abs(kappa_dmft - float(fp.kappa)) < 0.01 * float(fp.kappa)


@pytest.fixture(scope="module")
def long_runs():
    out = {}
    for lam in (0.05, 0.2):
        # step 0.04, not 0.05: at 0.05 a few instances in ten at d = 200-300 have
        # eta lambda_max(H) > 2 at the limit point (the per-row instability) and end in a
        # period-2 orbit instead of converging; the limit itself does not depend on eta
        problem = wirtinger(lam, prior=dj.RademacherPrior())
        traj = dj.simulate(
            problem,
            dj.GradientDescent(0.04, 500),
            dj.InformedInit(0.5, 1.0),
            dim=300,
            num_seeds=12,
            key=jax.random.key(5),
        )
        out[lam] = (problem, traj)
    return out


@pytest.mark.parametrize("lam", [0.05, 0.2])
def test_matches_long_run_simulation(long_runs, lam):
    problem, traj = long_runs[lam]
    fp = fixed_point(problem, start=traj)
    n = traj.info["num_seeds"] - traj.info["num_diverged"]
    for name, attr in (("error", "error"), ("cosine", "cosine"), ("norm", "q")):
        value = float(np.asarray(traj.values[name])[-1])
        se = float(np.asarray(traj.stderr[name])[-1])
        z = (value - float(getattr(fp, attr))) / se
        assert abs(z) < crit(n), (name, value, float(getattr(fp, attr)), se)


@pytest.fixture(scope="module")
def instances():
    problem = wirtinger(0.05, prior=dj.RademacherPrior())
    hc = hessian_check(
        problem,
        dj.GradientDescent(0.05, 360),
        dj.InformedInit(0.5, 1.0),
        dim=200,
        key=jax.random.key(7),
        num_seeds=8,
        polish=8,
    )
    return problem, fixed_point(problem), hc


def test_hessian_kappa_per_instance(instances):
    problem, fp, hc = instances
    assert float(np.max(hc.grad_norm)) < 1e-9  # polished to the limit point
    k_tr, k_eq = np.asarray(hc.kappa_trace), np.asarray(hc.kappa_equation)
    # the kappa equation holds instance by instance, up to O(1/d)
    assert np.all(np.abs(k_tr - k_eq) < 3.0 / 200 * k_tr)
    # and tr(H^-1)/d is the fixed point's kappa within finite-size error
    se = k_tr.std(ddof=1) / np.sqrt(k_tr.size)
    assert abs(k_tr.mean() - float(fp.kappa)) < crit(k_tr.size) * se + 1.0 / 200


@pytest.fixture(scope="module", params=["gd", "heavy-ball", "nesterov"])
def method_instances(request, instances):
    # the simulator side of predicted_rate, for each method: finite-d runs (8 seeds,
    # d = 200) of GD, heavy ball and Nesterov at steps with comparable row stability
    problem, fp, hc = instances
    if request.param == "gd":
        return problem, fp, dj.GradientDescent(0.05, 360), hc
    alg = (
        dj.HeavyBall(0.05, 0.3, 360)
        if request.param == "heavy-ball"
        else dj.Nesterov(0.04, 0.3, 360)
    )
    return (
        problem,
        fp,
        alg,
        hessian_check(
            problem,
            alg,
            dj.InformedInit(0.5, 1.0),
            dim=200,
            key=jax.random.key(7),
            num_seeds=8,
            polish=8,
        ),
    )


def test_rate_predicted_vs_measured(method_instances):
    problem, fp, alg, hc = method_instances
    pred = predicted_rate(problem, alg, fixed=fp)
    assert bool(pred.upper_unbounded)
    # the slowest mode sits at the lower band edge: the method's own contraction there
    assert float(pred.rate) == pytest.approx(
        alg.mode_contraction(problem, pred.lower_edge), rel=1e-9
    )
    if isinstance(alg, dj.GradientDescent):
        assert float(pred.rate) == pytest.approx(1 - 0.05 * float(pred.lower_edge))
    # the smallest Hessian eigenvalue sits at the predicted lower edge (fluctuations
    # ~ d^(-2/3) around it)
    eig = np.asarray(hc.eig_min)
    se = eig.std(ddof=1) / np.sqrt(eig.size)
    assert abs(eig.mean() - float(pred.lower_edge)) < crit(eig.size) * se + 0.5 * 200 ** (-2 / 3)
    # the method's error approaches its (polished) limit at the predicted rate, seed by seed
    stable = np.asarray(hc.gd_stable)
    assert stable.sum() >= 4
    rates = np.array(
        [
            measured_rate(e, limit=lim, window=(150, 350))[0]
            for e, lim, ok in zip(np.asarray(hc.errors), np.asarray(hc.error), stable)
            if ok
        ]
    )
    se = rates.std(ddof=1) / np.sqrt(rates.size)
    assert abs(rates.mean() - float(pred.rate)) < crit(rates.size) * se + 0.003


def test_per_row_instability_threshold(instances):
    problem, fp, hc = instances
    # least squares: loss'' = 1 never reaches the threshold
    ls = predicted_rate(dj.Problem(dj.LinearModel(0.5), dj.SquareLoss(), alpha=3.0), 0.2)
    assert float(ls.unstable_row_mass) == 0.0 and float(ls.critical_curvature) > 1.0
    # Wirtinger: the threshold D_c = 1/G(2/eta) falls and the unstable mass rises with eta
    preds = [predicted_rate(problem, eta, fixed=fp) for eta in (0.04, 0.05, 0.06)]
    dc = [float(p.critical_curvature) for p in preds]
    mass = [float(p.unstable_row_mass) for p in preds]
    assert dc[0] > dc[1] > dc[2] > 0 and 0 < mass[0] < mass[1] < mass[2]
    assert 2 / 0.05 - 10 < dc[1] < 2 / 0.05  # an outlier sits above its own D_c
    # finite d: a row above D_c makes the instance unstable (at small d the bulk's top is
    # higher than in the limit, so instability also sets in somewhat below D_c)
    rows = np.asarray(hc.max_row_curvature)
    assert not np.any(np.asarray(hc.gd_stable)[rows > 1.1 * dc[1]])


def test_measured_rate_recovers_synthetic_rate():
    t = np.arange(400)
    curve = 0.3 + 2.0 * 0.97**t * np.maximum(t, 1) ** -1.5
    assert measured_rate(curve, limit=0.3, window=(50, 300))[0] == pytest.approx(0.97, abs=1e-10)
    assert measured_rate(curve, window=(50, 300))[0] == pytest.approx(0.97, abs=1e-3)


def test_probit_logistic_against_instances():
    # binary labels: the label is integrated analytically (a discontinuous link)
    problem = dj.Problem(
        dj.ProbitModel(0.3),
        dj.LogisticLoss(),
        alpha=3.0,
        regulariser=dj.Ridge(0.1),
        prior=dj.RademacherPrior(),
    )
    fp = fixed_point(problem)
    assert bool(fp.valid)
    hc = hessian_check(
        problem,
        dj.GradientDescent(0.5, 20),
        dj.InformedInit(0.5, 1.0),
        dim=200,
        key=jax.random.key(3),
        num_seeds=8,
        polish=8,
    )
    for attr, fp_attr in (("kappa_trace", "kappa"), ("m", "m"), ("q", "q")):
        v = np.asarray(getattr(hc, attr))
        se = v.std(ddof=1) / np.sqrt(v.size)
        assert abs(v.mean() - float(getattr(fp, fp_attr))) < crit(v.size) * se + 2.0 / 200


# -- implicit differentiation ---------------------------------------------------------------


def test_gradients_match_finite_differences():
    base = fixed_point(wirtinger(0.05))
    start = (float(base.kappa), float(base.m), float(base.q))

    def error(lam, alpha):
        return fixed_point(wirtinger(lam, alpha=alpha), start=start, warn=False).error

    g_lam, g_alpha = jax.jit(jax.grad(error, argnums=(0, 1)))(0.05, 3.0)
    h = 1e-4
    fd_lam = (error(0.05 + h, 3.0) - error(0.05 - h, 3.0)) / (2 * h)
    fd_alpha = (error(0.05, 3.0 + h) - error(0.05, 3.0 - h)) / (2 * h)
    assert abs(float(g_lam) / float(fd_lam) - 1) < 1e-3
    assert abs(float(g_alpha) / float(fd_alpha) - 1) < 1e-3
    assert float(g_lam) > 0 and float(g_alpha) < 0  # more ridge hurts here, more data helps


# -- bad inputs -------------------------------------------------------------------------------


def test_bad_inputs_raise():
    problem = wirtinger(0.05)
    with pytest.raises(ValueError, match="Problem"):
        fixed_point("not a problem")
    with pytest.raises(ValueError, match="branch"):
        fixed_point(problem, branch="nearest")
    with pytest.raises(ValueError, match="num_nodes"):
        fixed_point(problem, num_nodes=2)
    with pytest.raises(ValueError, match="start"):
        fixed_point(problem, start="late")
    with pytest.raises(ValueError, match="kappa"):
        fixed_point(problem, start=(-1.0, 0.9, 1.0))
    with pytest.raises(ValueError, match="norm"):
        fixed_point(problem, start=(0.4, 0.0, 0.0))
    with pytest.raises(ValueError, match="NaN"):
        fixed_point(problem, start=(0.4, float("nan"), 1.0))
    with pytest.raises(ValueError, match="step_size"):
        predicted_rate(problem, 0.0)
    with pytest.raises(ValueError, match="FixedPoint"):
        predicted_rate(problem, 0.05, fixed=(0.4, 0.9, 1.0))
    with pytest.raises(ValueError, match="window"):
        measured_rate(np.linspace(1, 0, 50), limit=0.0, window=(40, 20))
    with pytest.raises(ValueError, match="lam"):
        fixed_point_sweep(problem, lam=jnp.array([0.1, -0.1]))
    with pytest.raises(ValueError, match="dim"):
        hessian_check(
            problem,
            dj.GradientDescent(0.05, 10),
            dj.InformedInit(0.5),
            dim=1,
            key=jax.random.key(0),
        )
    with pytest.raises(ValueError, match="key"):
        hessian_check(problem, dj.GradientDescent(0.05, 10), dj.InformedInit(0.5), dim=10, key=None)


def test_unconverged_start_warns():
    # a start on the wrong side of everything and no Newton budget: a warning, a flag
    with pytest.warns(RuntimeWarning, match="did not converge"):
        fp = fixed_point(wirtinger(0.05), start=(5.0, -0.1, 3.0), max_steps=1)
    assert isinstance(fp, FixedPoint) and not bool(fp.converged)
    assert not bool(eqx.filter_jit(lambda f: f.valid)(fp))
