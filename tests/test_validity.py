"""Checks with the power they claim: exact label laws, a converged fixed point, the
quadrature of the test error, preprocessings written as formulas, laws (not only
averages) and kernels against the simulator, the DMFT's self-consistency on fresh
samples, its gradients against the simulator's, and no silent changes."""

import math
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, stats

import dmftjax as dj
from dmftjax._quadrature import population_loss

sys.path.insert(0, str(Path(__file__).parent))
from helpers import assert_agree  # noqa: E402

LEVEL = 2 * stats.norm.sf(3.0)


def crit(n):
    return float(stats.t.isf(LEVEL / 2, n - 1))


def wirtinger(alpha=3.0, lam=0.05, noise=0.1):
    return dj.Problem(
        dj.PhaseRetrieval(noise), dj.WirtingerLoss(), alpha=alpha, regulariser=dj.Ridge(lam)
    )


# -- the test error's quadrature, alone ---------------------------------------------------


def _bivariate(p, m, q):
    """`(z, w)` nodes and weights for N(0, [[p, m], [m, q]]) on a fine tensor rule."""
    x, w = np.polynomial.hermite_e.hermegauss(80)
    w = w / w.sum()
    g1, g2 = np.meshgrid(x, x, indexing="ij")
    ww = np.outer(w, w)
    z = math.sqrt(p) * g1
    v = m / math.sqrt(p) * g1 + math.sqrt(q - m * m / p) * g2
    return z.ravel(), v.ravel(), ww.ravel()


@pytest.mark.parametrize("p,m,q", [(1.0, 0.6, 0.9), (1.1, -0.3, 0.5), (0.9, 0.85, 0.95)])
def test_population_loss_against_closed_forms(p, m, q):
    # square loss, linear link: E (w - z - s eps)^2 / 2 = (q - 2m + p + s^2) / 2
    s = 0.4
    got = float(population_loss(dj.LinearModel(s), dj.SquareLoss(), p, m, q))
    assert got == pytest.approx((q - 2 * m + p + s * s) / 2, rel=1e-12)
    # Wirtinger loss, phase retrieval: E (w^2 - z^2 - s eps)^2 / 4 from Gaussian moments
    exact = (3 * q * q - 2 * (p * q + 2 * m * m) + 3 * p * p + s * s) / 4
    got = float(population_loss(dj.PhaseRetrieval(s), dj.WirtingerLoss(), p, m, q))
    assert got == pytest.approx(exact, rel=1e-12)
    # logistic loss on labels of a declared law: an independent 2-d rule (the labels
    # summed exactly), probit and logistic laws
    z, w, wt = _bivariate(p, m, q)
    for model, prob in (
        (dj.ProbitModel(0.3), stats.norm.cdf(z / 0.3)),
        (dj.LogisticModel(2.0), 1 / (1 + np.exp(-2.0 * z))),
    ):
        exact = np.sum(wt * (prob * np.logaddexp(0, -w) + (1 - prob) * np.logaddexp(0, w)))
        got = float(population_loss(model, dj.LogisticLoss(), p, m, q))
        assert got == pytest.approx(exact, rel=2e-7), type(model).__name__

    # the noiseless probit link (a step in z): adaptive quadrature across the jump
    def inner(wv):
        sd = math.sqrt(p - m * m / q)
        pplus = stats.norm.cdf(m * wv / q / sd)
        return (
            stats.norm.pdf(wv / math.sqrt(q))
            / math.sqrt(q)
            * (pplus * np.logaddexp(0, -wv) + (1 - pplus) * np.logaddexp(0, wv))
        )

    exact = integrate.quad(inner, -40, 40, epsabs=1e-13, limit=400)[0]
    got = float(population_loss(dj.ProbitModel(0.0), dj.LogisticLoss(), p, m, q))
    assert got == pytest.approx(exact, rel=1e-9)


# -- label laws -------------------------------------------------------------------------


class SignOfLogisticNoise(dj.AbstractBinaryModel):
    """A user's own binary model, written the way a user would: `y = sign(gamma z + L)`
    with logistic noise `L`, declared by its law `P(y = +1 | z) = sigmoid(gamma z)`."""

    gamma: float = 2.0

    def prob_plus(self, z):
        return jax.nn.sigmoid(self.gamma * z)


def test_user_binary_model_fixed_point_is_converged_at_the_default_rule():
    problem = dj.Problem(
        SignOfLogisticNoise(2.0), dj.LogisticLoss(), alpha=3.0, regulariser=dj.Ridge(0.1)
    )
    default = dj.fixed_point(problem)
    fine = dj.fixed_point(problem, num_nodes=160)
    assert bool(default.valid) and bool(fine.valid)
    for name in ("m", "q", "kappa", "error", "test_error", "train_loss"):
        assert abs(float(getattr(default, name)) - float(getattr(fine, name))) < 1e-6, name
    # the same law as the built-in logistic model
    builtin = dj.fixed_point(
        dj.Problem(dj.LogisticModel(2.0), dj.LogisticLoss(), alpha=3.0, regulariser=dj.Ridge(0.1))
    )
    assert float(builtin.m) == pytest.approx(float(default.m), rel=1e-10)
    # the simulator draws labels from the law
    prob = jax.nn.sigmoid(2.0 * jnp.linspace(-2, 2, 5))
    z = jnp.repeat(jnp.linspace(-2, 2, 5), 20000)
    eps = jax.random.normal(jax.random.key(0), z.shape)
    y = jax.vmap(SignOfLogisticNoise(2.0).link)(z, eps).reshape(5, -1)
    frac = np.asarray((y > 0).mean(axis=1))
    assert np.all(np.abs(frac - np.asarray(prob)) < 4 * np.sqrt(prob * (1 - prob) / 20000))


def test_logistic_model_dmft_simulation_and_fixed_point_agree():
    problem = dj.Problem(
        dj.LogisticModel(3.0), dj.LogisticLoss(), alpha=3.0, regulariser=dj.Ridge(0.1)
    )
    alg, init = dj.GradientDescent(0.5, 40), dj.InformedInit(0.3, 1.0)
    dmft = dj.solve_dmft(
        problem, alg, init, num_samples=4000, num_replicas=8, key=jax.random.key(30)
    )
    sim = dj.simulate(problem, alg, init, dim=1000, num_seeds=8, key=jax.random.key(31))
    assert_agree(sim, dmft, ("error", "overlap", "norm", "train_loss", "test_error"))
    # the late-time DMFT approaches the fixed point (integrated with the exact law)
    fp = dj.fixed_point(problem, start=dmft)
    assert bool(fp.valid)
    gap = abs(float(dmft.overlap[-1]) - float(fp.m))
    assert gap < 0.05 * float(fp.m), (float(dmft.overlap[-1]), float(fp.m))


# -- a converged fixed point --------------------------------------------------------------


@pytest.mark.parametrize(
    "alpha,noise,lam",
    [(3.0, 1.0, 1.0), (2.0, 0.3, 0.05), (3.0, 0.1, 0.05), (3.0, 0.0, 0.01), (1.5, 0.0, 0.05)],
)
def test_fixed_point_quadrature_is_converged(alpha, noise, lam):
    problem = wirtinger(alpha, lam, noise)
    default = dj.fixed_point(problem)
    fine = dj.fixed_point(problem, num_nodes=160)
    assert bool(default.valid) and bool(fine.valid)
    gap = abs(float(default.error) - float(fine.error))
    assert gap < 1e-5, (float(default.error), float(fine.error))
    # the reported error estimate bounds the actual one (it is an upper estimate)
    assert float(default.quadrature_error) < 1e-5
    assert gap <= float(default.quadrature_error) + 1e-9
    assert abs(float(default.quadrature_mass) - 1) < 1e-8


# -- preprocessings written as formulas ---------------------------------------------------


class Formula(dj.AbstractPreprocessing):
    """`(y - 1) / (y + 0.5)`, written the way users write it: a pole at y = -0.5, which
    noiseless phase-retrieval labels (y >= 0) never reach."""

    def __call__(self, y):
        return (jnp.asarray(y) - 1.0) / (jnp.asarray(y) + 0.5)


def test_a_formula_preprocessing_is_bounded_on_the_labels():
    problem = wirtinger(3.0, 0.05, noise=0.0)
    assert dj.PhaseRetrieval(0.0).label_support() == (0.0, math.inf)
    theory = dj.spectral_theory(problem, Formula())
    assert bool(theory.has_outlier)
    assert float(theory.tau) == pytest.approx(1.0, abs=1e-6)
    sim = dj.spectral_simulation(problem, Formula(), dim=400, num_seeds=32, key=jax.random.key(40))
    z = (sim.cosine2 - float(theory.cosine2)) / sim.cosine2_stderr
    assert abs(z) < crit(32) + 0.01 / sim.cosine2_stderr, (sim.cosine2, float(theory.cosine2))
    # with noisy labels the pole is reached: unbounded, refused honestly
    noisy = wirtinger(3.0, 0.05, noise=0.3)
    with pytest.warns(RuntimeWarning, match="unbounded"):
        assert not bool(dj.spectral_theory(noisy, Formula()).has_outlier)


def test_mondelli_montanari_conventions():
    y = jnp.linspace(0.1, 20.0, 200)
    # PhasePack's convention: tuned to the problem's alpha
    mm = dj.MondelliMontanari().specialise(3.0)
    np.testing.assert_allclose(mm(y), (y - 1) / (y + math.sqrt(6.0) - 1), rtol=1e-14)
    # Mondelli's own code: just above the threshold, about 1 - 1/y
    thr = dj.MondelliMontanariThreshold()
    np.testing.assert_allclose(thr(y), dj.MondelliMontanari(0.5005)(y), rtol=1e-14)
    np.testing.assert_allclose(thr(y), 1 - 1 / y, atol=0.06)
    assert thr.specialise(3.0) is thr
    with pytest.raises(ValueError):
        dj.MondelliMontanariThreshold(margin=0.0)


def test_threshold_refuses_a_bracket_end():
    with pytest.raises(ValueError, match="wider bracket"):
        dj.weak_recovery_threshold(
            dj.PhaseRetrieval(0.0), dj.MondelliMontanari(), bracket=(0.6, 10.0)
        )


# -- laws, not only averages ------------------------------------------------------------


@pytest.fixture(scope="module")
def runs_with_laws():
    problem = wirtinger(3.0, 0.05, 0.1)
    alg, init = dj.GradientDescent(0.05, 20), dj.InformedInit(0.5, 1.0)
    dmft = dj.solve_dmft(
        problem,
        alg,
        init,
        num_samples=4000,
        num_replicas=8,
        key=jax.random.key(50),
        laws_at=(5, 20),
    )
    sim = dj.simulate(
        problem,
        alg,
        init,
        dim=500,
        num_seeds=10,
        key=jax.random.key(51),
        laws_at=(5, 20),
        kernels=True,
    )
    return problem, dmft, sim


def test_row_and_coordinate_laws_match_the_simulator(runs_with_laws):
    _, dmft, sim = runs_with_laws
    tests = []
    for t in (5, 20):
        for what in ("r", lambda z, y, r: r * z, lambda z, y, r: r**2 - y):
            tests.append(dj.compare_laws(dmft.law("row", t), sim.law("row", t), what))
        tests.append(dj.compare_laws(dmft.law("coordinate", t), sim.law("coordinate", t), "theta"))
    # each p-value is valid on its own; over the 8 comparisons, Bonferroni again
    assert min(c.p_value for c in tests) > 1e-3 / len(tests), tests
    # and the test has power: the law at another time is told apart
    wrong = dj.compare_laws(dmft.law("row", 5), sim.law("row", 20), "r")
    assert wrong.p_value < 1e-3, wrong
    # expectations of test functions, with standard errors from independent blocks
    for t in (5, 20):
        a, sa = dmft.law("row", t).expect(lambda z, y, r: (r**2 - y) ** 2)
        b, sb = sim.law("row", t).expect(lambda z, y, r: (r**2 - y) ** 2)
        assert abs(a - b) < crit(8) * math.hypot(sa, sb)
    law = dmft.law("coordinate", 20)
    m, _ = law.expect(lambda theta_star, theta: theta_star * theta)
    assert m == pytest.approx(float(dmft.overlap[20]), rel=1e-9)
    q, _ = law.expect(lambda theta_star, theta: theta**2)
    assert q == pytest.approx(float(dmft.norm[20]), rel=1e-9)
    with pytest.raises(ValueError, match="laws_at"):
        dmft.law("row", 7)


def test_kernels_match_the_simulator(runs_with_laws):
    _, dmft, sim = runs_with_laws
    for name in ("C", "R"):
        d, s = np.asarray(dmft.kernels[name]), np.asarray(sim.kernels[name])
        se = np.asarray(sim.kernels[name + "_se"])
        mask = np.tril(np.ones_like(d, dtype=bool), 0 if name == "C" else -1) & (se > 0)
        mask[0, 0] = False
        z = (d - s)[mask] / se[mask]
        # per entry a t-test across 10 seeds, Bonferroni over the entries
        level = LEVEL / mask.sum() * 50  # the entries are strongly correlated
        assert np.max(np.abs(z)) < stats.t.isf(level / 2, 9), (name, float(np.max(np.abs(z))))
    # the response is resolved, not noise: R(t, t-1) = -eta
    assert np.allclose(np.diagonal(np.asarray(sim.kernels["R"]), -1), -0.05, atol=0.02)
    r = np.asarray(dmft.kernels["R"])
    assert np.abs(r[15, 5]) > 5 * float(sim.kernels["R_se"][15, 5])


def test_dmft_is_self_consistent_on_fresh_samples(key):
    # The kernels a DMFT run reports must be a fixed point of the DMFT map evaluated on
    # samples it never used: draw (z, w) afresh from N(0, [[1, A], [A, C]]) by an
    # eigendecomposition, run the sample side with the reported R, and compare
    # alpha E[g g^T] with the reported C_u and alpha E[dg/dw] with Gamma, within the
    # Monte Carlo error of the fresh samples.
    problem = wirtinger(3.0, 0.05, 0.1)
    steps = 12
    traj = dj.solve_dmft(
        problem,
        dj.GradientDescent(0.05, steps),
        dj.InformedInit(0.5, 1.0),
        num_samples=20000,
        num_replicas=8,
        key=key,
    )
    k = {n: np.asarray(v) for n, v in traj.kernels.items()}
    T = steps + 1
    cov = np.zeros((T + 1, T + 1))
    cov[0, 0], cov[0, 1:], cov[1:, 0], cov[1:, 1:] = 1.0, k["A"], k["A"], k["C"]
    vals, vecs = np.linalg.eigh(cov)
    rng = np.random.default_rng(0)
    n = 400000
    x = rng.standard_normal((n, T + 1)) * np.sqrt(np.maximum(vals, 0)) @ vecs.T
    z, w = x[:, 0], x[:, 1:]
    y = z**2 + 0.1 * rng.standard_normal(n)
    R = k["R"]
    r = np.zeros((n, T))
    g = np.zeros((n, T))
    jac = np.zeros((n, T, T))  # d r^t / d w^s
    for t in range(T):
        r[:, t] = w[:, t] + g[:, :t] @ R[t, :t]
        jac[:, t, t] = 1.0
        for s in range(t):
            jac[:, t, s] = ((3 * r[:, :t] ** 2 - y[:, None]) * jac[:, :t, s]) @ R[t, :t]
        g[:, t] = r[:, t] * (r[:, t] ** 2 - y)
    h = 3 * r**2 - y[:, None]
    alpha = 3.0
    cu = alpha * (g[:, :, None] * g[:, None, :])
    gam = alpha * h[:, :, None] * jac
    use = np.tril(np.ones((T - 1, T - 1), bool))
    for est, name in ((cu, "Cu"), (gam, "Gamma")):
        mean = est.mean(0)[: T - 1, : T - 1]
        # the DMFT's kernels carry their own Monte Carlo error (8 replicas): both count
        se = np.hypot(
            est.std(0)[: T - 1, : T - 1] / math.sqrt(n), k[name + "_se"][: T - 1, : T - 1]
        )
        zval = ((mean - k[name][: T - 1, : T - 1]) / se)[use]
        # per entry the replica t-distribution (7 dof), Bonferroni over the entries
        assert np.max(np.abs(zval)) < stats.t.isf(LEVEL / 2 / use.sum() * 10, 7), (
            name,
            float(np.max(np.abs(zval))),
        )
    # and it can fail: the kernels of a different step size are told apart
    other = dj.solve_dmft(
        problem,
        dj.GradientDescent(0.045, steps),
        dj.InformedInit(0.5, 1.0),
        num_samples=20000,
        num_replicas=8,
        key=key,
    )
    wrong = (np.asarray(other.kernels["Gamma"]) - gam.mean(0))[: T - 1, : T - 1][use]
    assert np.max(np.abs(wrong / se[use])) > 10


def test_dmft_gradient_matches_the_simulator():
    # d error(T) / d step and d lam on Wirtinger flow with noise: forward mode through
    # the DMFT's scan against the exact derivative of each finite-d run (forward mode
    # through the simulator, seed by seed), with common random numbers on each side.
    from dmftjax._simulate import simulate_one

    steps, dim = 20, 400

    def dmft_err(eta, lam, key):
        p = wirtinger(3.0, lam, 0.1)
        obs, _ = dj.dmft_replica(
            p, dj.GradientDescent(eta, steps), dj.InformedInit(0.5, 1.0), key=key, num_samples=4000
        )
        return obs["error"][-1]

    def sim_err(eta, lam, key):
        p = wirtinger(3.0, lam, 0.1)
        out = simulate_one(
            p, dj.GradientDescent(eta, steps), dj.InformedInit(0.5, 1.0), dim, 3 * dim, key
        )
        return out["obs"]["error"][-1]

    def grads(fn, keys):
        g = jax.jit(jax.vmap(lambda k: jax.jacfwd(fn, argnums=(0, 1))(0.03, 0.05, k)))(keys)
        return np.stack([np.asarray(g[0]), np.asarray(g[1])], axis=1)

    gd = grads(dmft_err, jax.random.split(jax.random.key(60), 8))
    gs = grads(sim_err, jax.random.split(jax.random.key(61), 24))
    for j, name in enumerate(("step", "lam")):
        a, b = gd[:, j], gs[:, j]
        se = math.hypot(a.std(ddof=1) / math.sqrt(a.size), b.std(ddof=1) / math.sqrt(b.size))
        # finite-size bias of the derivative ~ 1/d: allowed as 2/d of its size
        assert abs(a.mean() - b.mean()) < crit(8) * se + 2.0 / dim * abs(b.mean()), (
            name,
            a.mean(),
            b.mean(),
            se,
        )
        assert abs(b.mean()) > 5 * b.std(ddof=1) / math.sqrt(b.size)  # resolved


# -- no silent changes ------------------------------------------------------------------


def test_dropped_runs_are_reported():
    problem = wirtinger(3.0, 0.05, 0.0)
    with pytest.warns(RuntimeWarning, match="diverged"):
        traj = dj.simulate(
            problem,
            dj.GradientDescent(0.3, 20),
            dj.InformedInit(0.5, 1.0),
            dim=50,
            num_seeds=4,
            key=jax.random.key(0),
            test_rows=0,
        )
    assert traj.info["num_diverged"] == len(traj.info["diverged_runs"]) > 0


def test_an_unconverged_eigensolver_is_reported():
    problem = wirtinger(3.0, 0.05, 0.0)
    init = dj.SpectralInit(dj.LuoAlghamdiLu(), method="lanczos", lanczos_steps=4, max_restarts=1)
    with pytest.warns(RuntimeWarning, match="eigensolver"):
        traj = dj.simulate(
            problem,
            dj.GradientDescent(0.01, 2),
            init,
            dim=60,
            num_seeds=2,
            key=jax.random.key(0),
            test_rows=0,
        )
    assert not all(traj.info["eigensolver_converged"])
