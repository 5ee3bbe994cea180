r"""The long-time fixed point of gradient descent (docs/equations.md#the-long-time-fixed-point).

When gradient descent converges, `theta^t -> theta^inf`, the DMFT kernels become
time-translation invariant and the integrated response `kappa = -sum_s R(t, s)`, the
overlap `m` and the norm `q` solve the stationary (M-estimation) system

    r     = prox_{kappa loss(y, .)}(w),        (z, w) ~ N(0, [[1, m], [m, q]]),  y = f(z, eps)
    kappa = 1 / (lam + alpha E[ loss''(y, r) / (1 + kappa loss''(y, r)) ])
    m     = -kappa alpha E[ dg/dz ]                               (g = loss'(y, r), w held)
    q     = kappa^2 ( alpha E[ g^2 ] + (alpha E[ dg/dz ])^2 ).

It follows from the DMFT of `_dmft.py` by putting `theta^t = theta`, `u^t = u` and
`R(t, s) = R(t - s)` into the parameter side: `theta = -kappa (u + Gam_* theta*)` with
`1/kappa = lam + sum_s Gam(t, s)`, and into the sample side: `r = w - kappa g(y, r)`.
The same `kappa` is the Stieltjes transform of the Hessian's spectral law at `-lam`:
`kappa = lim tr(H^-1)/d`, `H = A^T diag(loss''(y, r)) A + lam I` (`hessian_check`).

The system is solved by Newton's method (`optimistix.root_find`) in the unknowns
`(kappa, m, s)` with `s = sqrt(q - m^2)` (so that `w = m z + s xi` is linear in the
unknowns and no square root is differentiated), with expectations by tensor Gauss-Hermite
quadrature over `(z, xi, eps)`. Derivatives with respect to the problem (`lam`, `alpha`,
`noise`) come from the implicit function theorem (`optimistix.ImplicitAdjoint`): one
linear solve, no backward pass through the iterations.

Binary models (`AbstractBinaryModel`: `ProbitModel`, `LogisticModel`, a user's own)
declare their label law `P(y = +1 | z)`. There the label is integrated exactly: with
`z | w ~ N(m w / q, s^2 / q)`, `P(y = 1 | w) = E[P(y = 1 | z) | w]` (the model's
`conditional_prob_plus`; `Phi(m w / (q sigma'))`, `sigma'^2 = noise^2 + s^2 / q` for the
probit link) and `E[dg/dz | w] = dP/dmu (g(+1, r_+) - g(-1, r_-))`, so the expectations
are one-dimensional integrals over `w` of smooth functions. Other non-smooth models use
the conditional Stein form `E[dg/dz] = E[g (z - (m / s) xi)]`.

The convergence rate (`predicted_rate`): linearising GD at the fixed point,
`delta^{t+1} = (I - eta H) delta^t`; the law of `H` solves the generalised
Marchenko-Pastur (Silverstein) equation
`G(x) = 1 / (x - lam - alpha E[D / (1 - D G(x))])`, `D = loss''(y, r)` at the fixed point
(at `x = -lam` it is exactly the kappa equation, `G(-lam) = -kappa`). Outside the support
`x(G) = lam + 1/G + alpha E[D / (1 - D G)]` is monotone, and the edges are where
`x'(G) = 0`, i.e. `alpha G^2 E[D^2 / (1 - D G)^2] = 1` (Silverstein & Choi 1995).

References: El Karoui et al. (2013), Donoho & Montanari (2016), Thrampoulidis et al.
(2018) for the M-estimation system; Silverstein & Choi (1995) for the edges.
"""

from __future__ import annotations

import functools
import math
import warnings
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx
from jaxtyping import Array, Bool, Float, Int

from ._losses import AbstractLoss, WirtingerLoss
from ._models import AbstractBinaryModel, GaussianPrior
from ._problem import Problem, check_problem
from ._quadrature import _hermite_nodes, half_hermite_nodes
from ._simulate import num_rows
from ._trajectory import OBSERVABLES, Trajectory
from ._validate import as_arrays, check_int, check_key, check_positive, check_real, check_resources

Branch = Literal["global", "signal"]
_PROX_ITERS = 60


# --------------------------------------------------------------------------------------
# the proximal map and its branches


def _make_root(loss: AbstractLoss, iters: int = _PROX_ITERS):
    """`root(kappa, y, w, side)`: the root of `r + kappa loss'(y, r) = w` on the branch
    `side` (the loss's `prox_bracket`), with the implicit-function derivative
    `dr = (dw - loss' dkappa - kappa loss'_y dy - kappa d_loss loss'[dloss]) /
    (1 + kappa loss'')`. The loss is an argument of the differentiated function, not a
    constant it closes over: a user's loss with a float field (traced inside the solver,
    swept or tuned) is then an input like any other."""
    return lambda kappa, y, w, side: _root(loss, kappa, y, w, side, iters)


def _prox_solve(loss, kappa, y, w, side, iters: int):
    lo, hi, r = loss.prox_bracket(y, w, kappa, side)
    tol = 4 * jnp.finfo(jnp.result_type(w)).eps * (1.0 + jnp.abs(w))

    def body(state):
        r, lo, hi, i, _ = state
        f = r + kappa * loss.grad(y, r) - w
        df = 1.0 + kappa * loss.hess(y, r)
        lo = jnp.where(f <= 0, r, lo)
        hi = jnp.where(f >= 0, r, hi)
        step = r - f / jnp.where(df > 0, df, 1.0)
        ok = (df > 0) & (step >= lo) & (step <= hi)
        new = jnp.where(ok, step, 0.5 * (lo + hi))
        done = (jnp.abs(new - r) <= tol) | (jnp.abs(f) <= tol)
        return new, lo, hi, i + 1, done

    def cond(state):
        return (state[3] < iters) & ~state[4]

    # safeguarded Newton (bisection when a step leaves the bracket), stopped per node;
    # under vmap the loop runs until the slowest node is done
    r, _, _, _, _ = jax.lax.while_loop(cond, body, (r, lo, hi, 0, jnp.asarray(False)))
    return r


@eqx.filter_custom_jvp
def _root(loss, kappa, y, w, side, iters):
    return _prox_solve(loss, kappa, y, w, side, iters)


@_root.def_jvp
def _root_jvp(primals, tangents, **kwargs):
    loss, kappa, y, w, side, iters = primals
    dloss, dkappa, dy, dw, _, _ = tangents
    r = _root(loss, kappa, y, w, side, iters)
    zero = jnp.zeros_like(r)
    dkappa, dy, dw = (zero if d is None else d for d in (dkappa, dy, dw))
    num = dw - dkappa * loss.grad(y, r) - kappa * loss.grad_y(y, r) * dy
    if dloss is not None and jax.tree.leaves(dloss):  # a float field of the loss moves
        dynamic, static = eqx.partition(loss, eqx.is_inexact_array)
        dfield = eqx.filter(dloss, eqx.is_inexact_array)
        _, dgrad = jax.jvp(lambda d: eqx.combine(d, static).grad(y, r), (dynamic,), (dfield,))
        num = num - kappa * dgrad
    return r, num / (1.0 + kappa * loss.hess(y, r))


# --------------------------------------------------------------------------------------
# expectations


class _Moments(eqx.Module):
    gam: Array  # alpha E[D / (1 + kappa D)]
    gam_star: Array  # alpha E[dg/dz]
    cu: Array  # alpha E[g^2]
    train_loss: Array
    test_error: Array
    unstable: Array  # quadrature mass with 1 + kappa loss'' <= 0
    ambiguous: Array  # mass where a second stable root exists
    wrong_well: Array
    mass: Array  # total mass of the rule (1 up to quadrature error)
    d_values: Array  # loss''(y, r) at the nodes
    d_weights: Array


def _tensor(rules):
    grids = np.meshgrid(*[x for x, _ in rules], indexing="ij")
    wgrids = np.meshgrid(*[w for _, w in rules], indexing="ij")
    nodes = np.stack([g.ravel() for g in grids], axis=-1)
    weights = np.prod(np.stack([g.ravel() for g in wgrids], axis=-1), axis=-1)
    return jnp.asarray(nodes), jnp.asarray(weights)


@functools.lru_cache(maxsize=8)
def _legendre_nodes(n: int):
    return np.polynomial.legendre.leggauss(n)


def _phi(x):
    return jnp.exp(-0.5 * x**2) / jnp.sqrt(2 * jnp.pi)


class _Rule(eqx.Module):
    """The quadrature of the stationary equations (static: one compilation per rule).

    `kind`: `"binary"` (labels in {-1, +1}: one dimension, `w`); for a loss with
    critical labels (`loss.critical_labels`, where the integrals are singular),
    `"noise_free"` (a model that ignores `eps`: one dimension, `z`, graded towards the
    indices whose label is critical) or `"additive"` (`y = f(z, 0) + sigma eps`: `z`,
    then the label itself, graded towards the critical labels); `"tensor"` (every other
    case: `(z, eps)`, Gauss rules) or `"curvature"` (a uniform grid in `z`, for the
    tails of the curvature law). Every kind but `"binary"` integrates `w | z` by the
    inner rule `_inner_rule`."""

    kind: str = eqx.field(static=True)
    num_nodes: int = eqx.field(static=True)
    noise_free: bool = eqx.field(static=True, default=False)
    levels: int = eqx.field(static=True, default=12)

    def coarser(self) -> _Rule:
        """Two thirds of the nodes and half the grading levels (for error estimates)."""
        return _Rule(
            kind=self.kind,
            num_nodes=max(2 * ((self.num_nodes * 2 // 3) // 2), 8),
            noise_free=self.noise_free,
            levels=self.levels // 2,
        )


def rule_of(problem: Problem, num_nodes: int, curvature: bool = False) -> _Rule:
    """The rule for a concrete problem (fixed before tracing)."""
    model = problem.model
    critical = problem.loss.critical_labels(jnp.asarray(1.0)).shape[0] > 0
    if isinstance(model, AbstractBinaryModel):
        kind = "binary"
    elif curvature:
        kind = "curvature"
    elif critical and model.noise_free():
        kind = "noise_free"
    elif critical and model.additive_noise() is not None:
        kind = "additive"
    else:  # a convex loss has no singular labels: a tensor rule converges fast
        kind = "tensor"
    return _Rule(kind=kind, num_nodes=int(num_nodes), noise_free=bool(model.noise_free()))


# Outer rules with breakpoints: composite Gauss-Legendre on panels of width `_BASE` (in
# z, or in units of the noise for the label), graded geometrically (ratio `_RATIO`,
# `_LEVELS` levels) towards every breakpoint, `_OUTER_NODES` nodes a panel.
_BASE = 1.0
_RATIO = 0.25
_OUTER_NODES = 6
_Z_MAX = 9.0
_Y_SPAN = 7.0
_Y_NODES = 4
_Y_LEVELS = 8
_MAX_CRITICAL_Z = 4


def _composite(edges, n: int):
    """Gauss-Legendre nodes and weights on the panels between the sorted `edges`."""
    x, w = _legendre_nodes(n)
    lo, hi = edges[:-1], edges[1:]
    half = 0.5 * (hi - lo)
    nodes = (0.5 * (hi + lo))[:, None] + half[:, None] * x
    return nodes.ravel(), (half[:, None] * w).ravel()


def _graded(b, lo, hi, base, levels: int):
    steps = base * _RATIO ** jnp.arange(levels)
    return jnp.clip(jnp.concatenate([b - steps, jnp.reshape(b, (1,)), b + steps[::-1]]), lo, hi)


def _critical_z(f0, labels):
    """Up to `_MAX_CRITICAL_Z` roots in `[-Z_MAX, Z_MAX]` of `f0(z) = y_c` for each
    critical label (sign changes on a grid, bisection, then one Newton step from the
    stopped bisection so that the root moves with `y_c` under differentiation); unused
    slots hold 0, a breakpoint anyway."""
    grid = jnp.linspace(-_Z_MAX, _Z_MAX, 1801)
    fg = jax.vmap(f0)(grid)
    df0 = jax.grad(f0)

    def one(yc):
        s = fg - jax.lax.stop_gradient(yc)
        change = jnp.sign(s[:-1]) != jnp.sign(s[1:])
        (idx,) = jnp.nonzero(change, size=_MAX_CRITICAL_Z, fill_value=-1)
        lo, hi = grid[jnp.maximum(idx, 0)], grid[jnp.maximum(idx, 0) + 1]
        slo = jnp.sign(fg[jnp.maximum(idx, 0)] - jax.lax.stop_gradient(yc))

        def bisect(_, lohi):
            lo, hi = lohi
            mid = 0.5 * (lo + hi)
            same = jnp.sign(jax.vmap(f0)(mid) - jax.lax.stop_gradient(yc)) == slo
            return jnp.where(same, mid, lo), jnp.where(same, hi, mid)

        lo, hi = jax.lax.fori_loop(0, 50, bisect, (lo, hi))
        z = jax.lax.stop_gradient(0.5 * (lo + hi))
        slope = jax.vmap(df0)(z)
        z = z - (jax.vmap(f0)(z) - yc) / jnp.where(slope != 0, slope, 1.0)
        return jnp.where(idx >= 0, z, 0.0)

    return jax.vmap(one)(labels).ravel()


def _outer(problem: Problem, rule: _Rule, kappa):
    """`(z, eps, y, weights)` of the outer rule (`_Rule`); its breakpoints move with
    `kappa` (the loss's critical labels)."""
    model, n = problem.model, rule.num_nodes
    labels = problem.loss.critical_labels(kappa)
    if rule.kind == "curvature":  # tails of z resolved (Gauss-Hermite nodes do not)
        zg = np.linspace(-12.0, 12.0, 601)
        zgw = np.exp(-0.5 * zg**2)
        er = (np.zeros(1), np.ones(1)) if rule.noise_free else _hermite_nodes(max(n // 4, 8))
        nodes, weights = _tensor([(zg, zgw / zgw.sum()), er])
        z, eps = nodes[:, 0], nodes[:, 1]
        return z, eps, jax.vmap(model.link)(z, eps), weights
    if rule.kind == "noise_free":

        def f0(z):
            return model.link(z, jnp.zeros_like(z))

        edges = [jnp.arange(-_Z_MAX, _Z_MAX + 0.5 * _BASE, _BASE), jnp.zeros(1)]
        if labels.shape[0]:
            for zc in _critical_z(f0, labels):
                edges.append(_graded(zc, -_Z_MAX, _Z_MAX, _BASE, rule.levels))
        z, w = _composite(jnp.sort(jnp.concatenate(edges)), _OUTER_NODES)
        eps = jnp.zeros_like(z)
        return z, eps, jax.vmap(model.link)(z, eps), w * _phi(z)
    xh, wh = half_hermite_nodes(max(n // 2, 4))
    zs = jnp.asarray(np.concatenate([-xh[::-1], xh]))
    zw = jnp.asarray(np.concatenate([wh[::-1], wh]) / 2)
    if rule.kind == "tensor":
        e, ew = (np.zeros(1), np.ones(1)) if rule.noise_free else _hermite_nodes(max(n // 4, 8))
        z = jnp.repeat(zs, e.size)
        eps = jnp.tile(jnp.asarray(e), zs.size)
        return (
            z,
            eps,
            jax.vmap(model.link)(z, eps),
            jnp.repeat(zw, e.size) * jnp.tile(jnp.asarray(ew), zs.size),
        )
    # additive noise: the label itself, per z, graded towards the critical labels
    sigma = jnp.asarray(model.additive_noise(), dtype=float)

    def labels_given(z):
        f0 = model.link(z, jnp.zeros_like(z))
        lo, hi = f0 - _Y_SPAN * sigma, f0 + _Y_SPAN * sigma
        edges = [f0 + sigma * jnp.arange(-_Y_SPAN, _Y_SPAN + 0.5, _BASE)]
        for yc in labels:
            edges.append(_graded(yc, lo, hi, _BASE * sigma, min(rule.levels, _Y_LEVELS)))
        y, w = _composite(jnp.sort(jnp.concatenate(edges)), _Y_NODES)
        e = (y - f0) / sigma
        return y, e, w * _phi(e) / sigma

    y, eps, wy = jax.vmap(labels_given)(zs)
    z = jnp.broadcast_to(zs[:, None], y.shape).ravel()
    return z, eps.ravel(), y.ravel(), (zw[:, None] * wy).ravel()


# The inner rule over w | z ~ N(m z, s^2): `_SPAN` standard deviations on each side, in
# two pieces (split at the proximal map's jump, or at the mean), each mapped to the
# estimate `r` through the proximal map and cut into `_PIECE_PANELS` equal panels in r
# of `_PANEL_NODES`-point Gauss-Legendre.
_SPAN = 8.5
_PIECE_PANELS = 6
_PANEL_NODES = 8


def _inner_rule(loss, root, kappa, y, mu, sd, zsign, branch):
    r"""Nodes `r` and weights for `E[G(r) | z, y]`, `r = prox(w)`, `w ~ N(mu, sd^2)`,
    for one outer node, by the change of variables `w = r + kappa loss'(y, r)` (the
    inverse of the proximal map, explicit and increasing on each stable branch):
    `dP = phi((w(r) - mu) / sd) / sd (1 + kappa loss''(y, r)) dr`. Returns
    `(r, w, g, h, weights, weights / (1 + kappa h))`.

    In `w`-space the integrand is singular: the proximal map jumps where the selected
    root switches branch, and its derivative `1 / (1 + kappa loss'')` blows up next to
    the jump when `y` is near a critical label (the two wells merge). In `r`-space both
    are gone: the jump is a piece's end, and the Jacobian multiplies the singular factor
    away. Only the four piece ends need the proximal map."""
    w_jump, jumps = loss.prox_jump(y, kappa, zsign, branch)
    lo, hi = mu - _SPAN * sd, mu + _SPAN * sd
    cut = jnp.clip(jnp.where(jumps, w_jump, mu), lo, hi)
    sign = lambda v: jnp.where(v >= 0, 1.0, -1.0)  # noqa: E731
    # an end's branch: its piece's side of the jump (from the piece's midpoint, so that
    # an empty piece where the jump lies outside the window takes the window's side),
    # else the sign of w (a single root has the sign of w)
    ends_w = jnp.stack([lo, cut, cut, hi])
    left, right = sign(0.5 * (lo + cut) - w_jump), sign(0.5 * (cut + hi) - w_jump)
    left = jnp.where(cut > lo, -1.0, left)  # a piece below the jump is on side -1
    right = jnp.where(hi > cut, 1.0, right)
    side = jnp.where(jumps, jnp.stack([left, left, right, right]), sign(ends_w))
    ends = jax.vmap(root, in_axes=(None, None, 0, 0))(kappa, y, ends_w, side)
    t, tw = _legendre_nodes(_PANEL_NODES)
    frac = jnp.linspace(0.0, 1.0, _PIECE_PANELS + 1)
    edges = jnp.concatenate(
        [ends[0] + (ends[1] - ends[0]) * frac, ends[2] + (ends[3] - ends[2]) * frac]
    )
    edges = jnp.reshape(edges, (2, -1))
    a, b = edges[:, :-1].ravel(), edges[:, 1:].ravel()
    half = 0.5 * (b - a)
    r = ((0.5 * (a + b))[:, None] + half[:, None] * t).ravel()
    wts = (half[:, None] * tw).ravel()
    g = jax.vmap(loss.grad, in_axes=(None, 0))(y, r)
    h = jax.vmap(loss.hess, in_axes=(None, 0))(y, r)
    w = r + kappa * g
    dens = _phi((w - mu) / sd) / sd
    return r, w, g, h, wts * dens * (1.0 + kappa * h), wts * dens


def _moments(problem: Problem, kappa, m, s, rule: _Rule, branch: str) -> _Moments:
    """Every expectation of the stationary system: the outer rule (`_outer`), the inner
    one over `w | z` in the estimate's own variable (`_inner_rule`)."""
    model, loss, alpha = problem.model, problem.loss, problem.alpha
    if rule.kind == "binary":
        x, wx = _hermite_nodes(max(rule.num_nodes, 8) * 4)
        prox = jax.vmap(_make_prox(loss, branch), in_axes=(None, 0, 0, 0))
        return _moments_binary(problem, kappa, m, s, jnp.asarray(x), jnp.asarray(wx), prox)
    z, eps, y, weights = _outer(problem, rule, kappa)
    sgn = jnp.where(m >= 0, 1.0, -1.0) if model.even else 1.0
    zsign = jnp.where(sgn * z >= 0, 1.0, -1.0)
    sd = jnp.sqrt(s**2 + 1e-300)
    root = _make_root(loss)
    r, w, g, h, omega, omega_r = jax.vmap(
        lambda y_, mu_, zs_: _inner_rule(loss, root, kappa, y_, mu_, sd, zs_, branch)
    )(y, m * z, zsign)
    W = weights[:, None]
    E = lambda v: jnp.sum(W * omega * v)  # noqa: E731
    yy = jnp.broadcast_to(y[:, None], r.shape)
    each = lambda f: jax.vmap(jax.vmap(f))  # noqa: E731
    if model.smooth:
        dy = jax.vmap(model.dlink_dz)(z, eps)[:, None]
        gam_star = alpha * jnp.sum(W * omega_r * dy * each(loss.grad_y)(yy, r))
    else:  # Stein at fixed w: E[dg/dz] = E[g (z - E[z|w])] / Var(z|w)
        q = m**2 + s**2
        gam_star = alpha * E(g * (z[:, None] - m * w / q)) * q / sd**2
    zs = jnp.broadcast_to(zsign[:, None], r.shape)
    zt = jnp.broadcast_to(z[:, None], r.shape)
    amb = jax.vmap(jax.vmap(loss.prox_ambiguous, in_axes=(0, 0, None, 0)), in_axes=(0, 0, None, 0))(
        yy, w, kappa, zs
    )
    return _Moments(
        gam=alpha * jnp.sum(W * omega_r * h),  # E[D / (1 + kappa D)]: the Jacobian cancels
        gam_star=gam_star,  # with w held: the 1 / (1 + kappa D) of dr/dz cancels too
        cu=alpha * E(g**2),
        train_loss=E(each(loss)(yy, r)),
        test_error=E(each(loss)(yy, w)),
        unstable=E((1.0 + kappa * h <= 0).astype(r.dtype)),
        ambiguous=E(amb.astype(r.dtype)),
        wrong_well=E(each(loss.wrong_well)(yy, r, sgn * zt).astype(r.dtype)),
        mass=E(jnp.ones_like(r)),
        d_values=h.ravel(),
        d_weights=(W * omega).ravel(),
    )


def _make_prox(loss: AbstractLoss, branch: str):
    """`prox(kappa, y, w, zsign)`: the selected root at one `w` (binary labels, whose
    rule is over `w` itself)."""
    root = _make_root(loss)

    def prox(kappa, y, w, zsign):
        w_jump, jumps = loss.prox_jump(y, kappa, zsign, branch)
        side = jnp.where(jumps, jnp.where(w >= w_jump, 1.0, -1.0), jnp.where(w >= 0, 1.0, -1.0))
        return root(kappa, y, w, side)

    return prox


def binary_label_probability(model, m, s, w):
    """`P(y = +1 | w)` and its derivative in the conditional mean, `E[dP/dz | w]`, for an
    estimate with overlap `m` and `s = sqrt(q - m^2)`: `z | w ~ N(m w / q, s^2 / q)`."""
    q = m**2 + s**2
    mu, sd = m * w / q, s / jnp.sqrt(q)

    def p_of(mu_):
        return model.conditional_prob_plus(mu_, sd)

    return jax.vmap(lambda mu_: jax.jvp(p_of, (mu_,), (jnp.ones_like(mu_),)))(mu)


def _moments_binary(problem, kappa, m, s, x, weights, prox):
    """Labels in {-1, +1} integrated exactly with their law (`AbstractBinaryModel`): one
    dimension (`w`) of quadrature, `P(y = +1 | w)` from the model's
    `conditional_prob_plus`, and `E[dg/dz] = E[dP/dmu (g(+1, r) - g(-1, r))]` with the
    prox of each label at `w` (it does not depend on `z` once `y` is fixed)."""
    model, loss, alpha = problem.model, problem.loss, problem.alpha
    E = lambda v: jnp.sum(weights * v)  # noqa: E731
    q = m**2 + s**2
    w = jnp.sqrt(q) * x
    p1, dens = binary_label_probability(model, m, s, w)
    one = jnp.ones_like(w)
    rp, rm = prox(kappa, one, w, one), prox(kappa, -one, w, -one)
    gp, gm = jax.vmap(loss.grad)(one, rp), jax.vmap(loss.grad)(-one, rm)
    hp, hm = jax.vmap(loss.hess)(one, rp), jax.vmap(loss.hess)(-one, rm)
    both = lambda fp, fm: p1 * fp + (1 - p1) * fm  # noqa: E731
    lp, lm = jax.vmap(loss)(one, rp), jax.vmap(loss)(-one, rm)
    tp, tm = jax.vmap(loss)(one, w), jax.vmap(loss)(-one, w)
    denp, denm = 1.0 + kappa * hp, 1.0 + kappa * hm
    return _Moments(
        gam=alpha * E(both(hp / denp, hm / denm)),
        gam_star=alpha * E(dens * (gp - gm)),
        cu=alpha * E(both(gp**2, gm**2)),
        train_loss=E(both(lp, lm)),
        test_error=E(both(tp, tm)),
        unstable=E(both((denp <= 0).astype(w.dtype), (denm <= 0).astype(w.dtype))),
        ambiguous=jnp.asarray(0.0, w.dtype),
        wrong_well=jnp.asarray(0.0, w.dtype),
        mass=E(jnp.ones_like(w)),
        d_values=jnp.concatenate([hp, hm]),
        d_weights=jnp.concatenate([weights * p1, weights * (1 - p1)]),
    )


def _residual(x, args, branch: str):
    problem, rule = args
    kappa, m, s = x[0], x[1], x[2]
    mo = _moments(problem, kappa, m, s, rule, branch)
    return jnp.stack(
        [
            kappa * (problem.lam + mo.gam) - 1.0,
            m + kappa * mo.gam_star,
            m**2 + s**2 - kappa**2 * (mo.cu + mo.gam_star**2),
        ]
    )


def _picard_map(x, problem, rule, branch):
    kappa, m, s = x[0], x[1], x[2]
    mo = _moments(problem, kappa, m, s, rule, branch)
    k_new = 1.0 / (problem.lam + mo.gam)
    m_new = -k_new * mo.gam_star
    q_new = k_new**2 * (mo.cu + mo.gam_star**2)
    s_new = jnp.sqrt(jnp.maximum(q_new - m_new**2, 1e-12))
    return jnp.stack([k_new, m_new, s_new])


def _kappa_given(problem, m, s, kappa0, rule, branch, iters: int = 30):
    """Solve the kappa equation alone at fixed `(m, q)` by damped Newton in log kappa."""

    def f(logk):
        kappa = jnp.exp(logk)
        mo = _moments(problem, kappa, m, s, rule, branch)
        return kappa * (problem.lam + mo.gam) - 1.0

    def body(_, logk):
        val, slope = jax.jvp(f, (logk,), (jnp.ones_like(logk),))
        step = jnp.clip(val / jnp.where(slope > 0, slope, 1.0), -1.0, 1.0)
        return jnp.where(jnp.isfinite(step), logk - step, logk)

    return jnp.exp(jax.lax.fori_loop(0, iters, body, jnp.log(kappa0)))


# --------------------------------------------------------------------------------------
# result


class FixedPoint(eqx.Module):
    r"""The long-time limit of gradient descent on a `Problem` (d = infinity).

    - `kappa`: integrated response `-sum_s R(t, s)` (= `lim tr(H^-1)/d`).
    - `m`, `q`: overlap `<theta*, theta>/d` and norm `|theta|^2/d`; `s = sqrt(q - m^2)`.
    - `error`: `q - 2|m| + 1` (even links) or `q - 2m + 1`; `cosine` likewise.
    - `train_loss`, `test_error`: `E loss(y, r)` on training rows, `E loss(y, w)` on a
      fresh row (the same convention as `Trajectory`).
    - `wrong_well`: mass of rows whose `r` sits in the wrong well (as in `Trajectory`).
    - `residual`: max-norm of the three equations at the answer.
    - `unstable_mass`: quadrature mass where `1 + kappa loss''(y, r) <= 0`; it must be 0
      (otherwise the answer is not a local minimum and not a limit of GD).
    - `ambiguous_mass`: mass where the proximal map has a second stable root and the
      `"global"` and `"signal"` branch rules disagree (non-convex losses only); the
      answer depends on the rule only through these rows.
    - `gamma`, `gamma_star`, `cu`: `alpha E[loss''/(1+kappa loss'')]`, `alpha E[dg/dz]`,
      `alpha E[g^2]` (the stationary `sum_s Gam(t,s)`, `Gam(t,*)` and `C_u`).
    - `converged`, `num_steps`: Newton's outcome.
    - `quadrature_error`: the quadrature's own error estimate on `error` (how far it moves
      when the rule has two thirds of the nodes, linearised; an upper estimate), and
      `quadrature_shift` the same for `(kappa, m, s)` (largest component);
      `quadrature_mass` the total mass of the rule (1 up to its error).
    """

    kappa: Float[Array, ""]
    m: Float[Array, ""]
    q: Float[Array, ""]
    error: Float[Array, ""]
    cosine: Float[Array, ""]
    train_loss: Float[Array, ""]
    test_error: Float[Array, ""]
    wrong_well: Float[Array, ""]
    residual: Float[Array, ""]
    unstable_mass: Float[Array, ""]
    ambiguous_mass: Float[Array, ""]
    gamma: Float[Array, ""]
    gamma_star: Float[Array, ""]
    cu: Float[Array, ""]
    converged: Bool[Array, ""]
    num_steps: Int[Array, ""]
    quadrature_error: Float[Array, ""]
    quadrature_shift: Float[Array, ""]
    quadrature_mass: Float[Array, ""]
    even: bool = eqx.field(static=True, default=False)

    @property
    def overlap(self):
        return self.m

    @property
    def norm(self):
        return self.q

    @property
    def s(self):
        return jnp.sqrt(jnp.maximum(self.q - self.m**2, 0.0))

    @property
    def valid(self):
        """Converged, finite, and on a stable branch of the proximal map."""
        return self.converged & (self.unstable_mass == 0) & jnp.isfinite(self.error)

    def trajectory(self) -> Trajectory:
        """A one-point `Trajectory` at `t = inf` (standard errors 0: quadrature, not
        Monte Carlo), to draw next to the DMFT and the simulator."""
        vals = {
            "overlap": self.m,
            "norm": self.q,
            "error": self.error,
            "cosine": self.cosine,
            "train_loss": self.train_loss,
            "test_error": self.test_error,
            "wrong_well": self.wrong_well,
        }
        values = {k: jnp.reshape(vals[k], (-1,)) for k in OBSERVABLES}
        stderr = {k: jnp.zeros_like(v) for k, v in values.items()}
        info = dict(
            kappa=float(self.kappa),
            residual=float(self.residual),
            unstable_mass=float(self.unstable_mass),
        )
        return Trajectory(
            times=jnp.array([jnp.inf]),
            values=values,
            stderr=stderr,
            source="fixed_point",
            info=info,
        )

    def as_dict(self) -> dict:
        out = {}
        for k in (
            "kappa",
            "m",
            "q",
            "error",
            "cosine",
            "train_loss",
            "test_error",
            "wrong_well",
            "residual",
            "unstable_mass",
            "ambiguous_mass",
            "gamma",
            "gamma_star",
            "cu",
            "converged",
            "num_steps",
            "quadrature_error",
            "quadrature_shift",
            "quadrature_mass",
        ):
            v = np.asarray(getattr(self, k))
            out[k] = v.tolist()
        return out


MAX_NODES = 1024


def check_num_nodes(num_nodes) -> int:
    """Quadrature nodes per dimension: 4 to `MAX_NODES` (a Gauss rule costs O(n^3) to
    build and tensor rules hold n^2 nodes; the fixed point has converged by ~160)."""
    num_nodes = check_int("num_nodes", num_nodes, 4)
    if num_nodes > MAX_NODES:
        raise ValueError(
            f"num_nodes = {num_nodes} is beyond the {MAX_NODES} this package "
            "builds (a Gauss rule costs O(n^3) and a tensor rule holds n^2 "
            "nodes); the fixed point's quadrature has converged by about 160: "
            "compare 48, 96 and 160"
        )
    return num_nodes


def _check_branch(branch) -> None:
    if branch not in ("global", "signal"):
        raise ValueError(f"branch must be 'global' or 'signal', got {branch!r}")


def _solve(
    problem: Problem,
    x0,
    kappa_known,
    num_nodes: int,
    branch: str,
    picard,
    max_steps: int,
    rtol: float,
    atol: float,
) -> FixedPoint:
    """The jitted solve. The prior is replaced by a fixed one (the limit depends on it
    only through `E theta*^2 = 1`) and `kappa_known`, `picard` are passed as arrays, so
    one compilation serves every start, value and prior of one problem structure."""
    rule = rule_of(problem, num_nodes)
    problem = eqx.tree_at(lambda p: p.prior, problem, GaussianPrior())
    return _solve_jit(
        problem,
        x0,
        jnp.asarray(kappa_known),
        jnp.asarray(picard),
        rule,
        branch,
        max_steps,
        rtol,
        atol,
    )


def _quadrature_error(problem, x, rule: _Rule, branch):
    """How far the answer moves on a coarser rule (`_Rule.coarser`), linearised: the
    coarse rule's residual at the answer through the fine rule's Jacobian. Returned as
    `(|change of error|, max |change of (kappa, m, s)|)`: an upper estimate of the fine
    rule's own error, which converges faster than that difference."""
    x = jax.lax.stop_gradient(x)
    problem = jax.lax.stop_gradient(problem)
    jac = jax.jacfwd(lambda v: _residual(v, (problem, rule), branch))(x)
    dx = -jnp.linalg.solve(jac, _residual(x, (problem, rule.coarser()), branch))
    m, s = x[1], x[2]
    dm = 2 * m - 2 * (jnp.sign(m) if problem.model.even else 1.0)
    return jnp.abs(dm * dx[1] + 2 * s * dx[2]), jnp.max(jnp.abs(dx))


@eqx.filter_jit
def _solve_jit(
    problem: Problem,
    x0,
    kappa_known,
    picard,
    rule: _Rule,
    branch: str,
    max_steps: int,
    rtol: float,
    atol: float,
) -> FixedPoint:
    x0 = jax.lax.stop_gradient(x0)
    problem_c = jax.lax.stop_gradient(problem)
    coarse = rule.coarser()  # the start only needs to land near the root

    def with_kappa(x):  # solve the kappa equation at the given (m, q) first
        return x.at[0].set(_kappa_given(problem_c, x[1], x[2], x[0], coarse, branch))

    x0 = jax.lax.cond(kappa_known, lambda x: x, with_kappa, x0)

    def going(state):
        i, x, change = state
        return (i < picard) & (change > 1e-4)

    def body(state):  # damped Picard sweeps, until they settle (or `picard` of them)
        i, x, _ = state
        new = _picard_map(x, problem_c, coarse, branch)
        new = jnp.where(jnp.all(jnp.isfinite(new)), 0.5 * x + 0.5 * new, x)
        return i + 1, new, jnp.max(jnp.abs(new - x))

    _, x0, _ = jax.lax.while_loop(going, body, (jnp.asarray(0), x0, jnp.asarray(jnp.inf)))
    fn = lambda x, args: _residual(x, args, branch)  # noqa: E731
    sol: optx.Solution = optx.root_find(
        fn,
        optx.Dogleg(rtol=rtol, atol=atol),
        x0,
        args=(problem, rule),
        max_steps=max_steps,
        adjoint=optx.ImplicitAdjoint(),
        throw=False,
    )
    x = sol.value
    kappa, m, s = x[0], x[1], jnp.abs(x[2])
    mo = _moments(problem, kappa, m, s, rule, branch)
    res = jnp.max(jnp.abs(_residual(x, (problem, rule), branch)))
    q = m**2 + s**2
    even = bool(problem.model.even)
    m_eff = jnp.abs(m) if even else m
    quad_err, quad_shift = _quadrature_error(problem, x, rule, branch)
    return FixedPoint(
        kappa=kappa,
        m=m,
        q=q,
        error=q - 2 * m_eff + 1.0,
        cosine=m_eff / jnp.sqrt(q),
        train_loss=mo.train_loss,
        test_error=mo.test_error,
        wrong_well=mo.wrong_well,
        residual=res,
        unstable_mass=mo.unstable,
        ambiguous_mass=mo.ambiguous,
        gamma=mo.gam,
        gamma_star=mo.gam_star,
        cu=mo.cu,
        quadrature_error=quad_err,
        quadrature_shift=quad_shift,
        quadrature_mass=mo.mass,
        # solved when the equations hold to tolerance: a trust region that reaches the
        # root in one step can then reject every further (rounding-level) step and run
        # out of steps without "terminating", at a residual of 1e-16
        converged=jnp.isfinite(res) & (res < 1e3 * max(atol, 1e-12) + 1e-8),
        num_steps=sol.stats["num_steps"],
        even=even,
    )


def start_from(start):
    r"""`(kappa, m, q, kappa_known)` from a start: a `Trajectory` (late-time values;
    `kappa = -sum_s R(T, s)` when the DMFT kernels carry `R`), a `FixedPoint`, a tuple
    `(kappa, m, q)` or `(m, q)` (kappa then solved from its own equation)."""
    if isinstance(start, FixedPoint):
        return float(start.kappa), float(start.m), float(start.q), True
    if isinstance(start, Trajectory):
        if start.diverged:
            raise ValueError("start trajectory diverged; pass a converged one or (kappa, m, q)")
        m = float(np.asarray(start.values["overlap"])[-1])
        q = float(np.asarray(start.values["norm"])[-1])
        kernels = start.kernels or {}
        if "R" in kernels:
            kappa = -float(np.nansum(np.asarray(kernels["R"])[-1]))
            if math.isfinite(kappa) and kappa > 0:
                return kappa, m, q, True
        return 1.0, m, q, False
    if isinstance(start, (tuple, list)) and len(start) in (2, 3):
        vals = [float(v) for v in start]
        for i, v in enumerate(vals):
            check_real(f"start[{i}]", v)
        if len(vals) == 2:
            return 1.0, vals[0], vals[1], False
        if vals[0] <= 0:
            raise ValueError(f"start kappa must be > 0, got {vals[0]}")
        return vals[0], vals[1], vals[2], True
    raise ValueError(
        "start must be a Trajectory (e.g. from solve_dmft), a FixedPoint, "
        f"(kappa, m, q) or (m, q); got {type(start).__name__}"
    )


def fixed_point(
    problem: Problem,
    *,
    start=None,
    branch: Branch = "global",
    num_nodes: int = 48,
    picard: int | None = None,
    max_steps: int = 64,
    rtol: float = 1e-9,
    atol: float = 1e-10,
    warn: bool = True,
) -> FixedPoint:
    r"""Solve the long-time (stationary) equations of gradient descent on `problem`.

    **Arguments:**

    - `problem`: a `Problem` (a ridge regulariser; any smooth loss; smooth links, or
      `ProbitModel`).
    - `start`: where Newton's method starts, which selects the branch of a non-convex
      problem: a `Trajectory` from `solve_dmft` or `simulate` (its late-time overlap and
      norm; `kappa = -sum_s R(T, s)` if the DMFT kernels have `R`, otherwise kappa is
      solved from its own equation), a `FixedPoint`, `(kappa, m, q)` or `(m, q)`.
      Default: `m = q = 1` (the informative branch) with 40 damped Picard sweeps.
    - `branch`: which root of `r + kappa loss'(y, r) = w` a row takes when there are two
      stable ones (Wirtinger loss): `"global"` (the proximal map proper, side of `w`) or
      `"signal"` (side of the signal `z`). Immaterial for convex losses.
    - `num_nodes`: Gauss-Hermite nodes in `z`; the innovation of `w` and `eps` get half
      and a quarter as many (at least 8). The default 48 (13824 nodes) reproduces a
      (80, 64, 32) rule to ~1e-6 relative on phase retrieval at alpha = 3; accuracy drops
      (to ~1e-2) where the proximal map jumps between branches on appreciable mass (the
      global branch jumps at `w = 0` wherever `kappa y > 1`), e.g. alpha = 2, noise 0.3.
    - `picard`: damped Picard sweeps before Newton (default 0 with a start, 40 without).
    - `max_steps`, `rtol`, `atol`: Newton's budget and tolerances.
    - `warn`: warn when Newton did not converge or the branch is unstable.

    **Returns:** a `FixedPoint`. It is differentiable (implicitly) in every float of
    `problem` under `jax.grad`, and `fixed_point` itself can be called inside
    `jax.grad`/`jax.vmap` with a traced problem (then pass `warn=False`).

    References: docs/equations.md#the-long-time-fixed-point; El Karoui et al. (2013);
    Thrampoulidis, Abbasi, Hassibi (2018).
    """
    check_problem(problem)
    _check_branch(branch)
    num_nodes = check_num_nodes(num_nodes)
    max_steps = check_int("max_steps", max_steps, 1)
    check_positive("rtol", rtol)
    check_positive("atol", atol)
    if not problem.model.smooth and not isinstance(problem.model, AbstractBinaryModel):
        warnings.warn(
            f"{type(problem.model).__name__} is not smooth: E[dg/dz] uses the Stein form on "
            "tensor quadrature, which converges slowly across the jump",
            RuntimeWarning,
            stacklevel=2,
        )
    x0, known, picard = _start_vector(start, picard)
    out = _solve(
        as_arrays(problem),
        x0,
        known,
        num_nodes,
        branch,
        picard,
        max_steps,
        float(rtol),
        float(atol),
    )
    if warn and all(not isinstance(v, jax.core.Tracer) for v in jax.tree.leaves(out)):
        if not bool(out.converged):
            warnings.warn(
                f"fixed_point: Newton did not converge (residual {float(out.residual):.2e} "
                f"after {int(out.num_steps)} steps); start it from a late-time trajectory",
                RuntimeWarning,
                stacklevel=2,
            )
        elif float(out.unstable_mass) > 0:
            warnings.warn(
                f"fixed_point: {float(out.unstable_mass):.2e} of the mass has "
                "1 + kappa loss'' <= 0: this root is not a limit of gradient descent",
                RuntimeWarning,
                stacklevel=2,
            )
    return out


def _start_vector(start, picard):
    if start is None:  # the Picard sweeps set kappa from its own equation first
        kappa0, m0, q0, known = 1.0, 1.0, 1.0, True
        picard = 40 if picard is None else picard
    else:
        kappa0, m0, q0, known = start_from(start)
        picard = 0 if picard is None else picard
    picard = check_int("picard", picard, 0)
    if q0 <= 0:
        raise ValueError(f"start norm q must be > 0, got {q0}")
    s0 = math.sqrt(max(q0 - m0**2, 1e-6 * q0))
    return jnp.array([kappa0, m0, s0], dtype=float), bool(known), picard


def fixed_point_sweep(
    problem: Problem,
    *,
    lam=None,
    alpha=None,
    start=None,
    branch: Branch = "global",
    num_nodes: int = 48,
    picard: int | None = None,
    max_steps: int = 64,
    batch: Literal["map", "vmap"] = "map",
) -> FixedPoint:
    r"""`fixed_point` over a grid of ridge strengths and/or sample ratios, in one jitted
    call.

    **Arguments:** `problem` (its other fields are kept); `lam`, `alpha`: arrays
    (broadcast against each other; `None` keeps the problem's value); `start`, `branch`,
    `num_nodes`, `picard`, `max_steps` as for `fixed_point` (one start for every point:
    by default 40 Picard sweeps from `m = q = 1`); `batch`: `"map"` (`lax.map`, one point
    after another: each solve is already vectorised over the quadrature nodes, and a
    vmapped solver loop would run every point for as many steps as the slowest needs) or
    `"vmap"` (one batched solve; pays off on an accelerator).

    **Returns:** a `FixedPoint` whose fields have the broadcast grid shape. Check
    `converged` and `unstable_mass` point by point.
    """
    check_problem(problem)
    _check_branch(branch)
    num_nodes = check_num_nodes(num_nodes)
    max_steps = check_int("max_steps", max_steps, 1)
    base = as_arrays(problem)
    lam = base.lam if lam is None else lam
    alpha = base.alpha if alpha is None else alpha
    lam, alpha = jnp.broadcast_arrays(
        jnp.asarray(lam, dtype=float), jnp.asarray(alpha, dtype=float)
    )
    if not (np.all(np.isfinite(np.asarray(lam))) and np.all(np.asarray(lam) >= 0)):
        raise ValueError("lam must be finite and >= 0")
    if not (np.all(np.isfinite(np.asarray(alpha))) and np.all(np.asarray(alpha) > 0)):
        raise ValueError("alpha must be finite and > 0")
    x0, known, picard = _start_vector(start, picard)

    def one(lam_, alpha_):
        p = eqx.tree_at(lambda p: (p.regulariser.lam, p.alpha), base, (lam_, alpha_))
        return _solve(p, x0, known, num_nodes, branch, picard, max_steps, 1e-9, 1e-10)

    if batch not in ("map", "vmap"):
        raise ValueError(f"batch must be 'map' or 'vmap', got {batch!r}")
    out = _sweep_jit(one, lam.ravel(), alpha.ravel(), batch)
    return jax.tree.map(lambda v: jnp.reshape(v, lam.shape), out)


@eqx.filter_jit
def _sweep_jit(one, lam, alpha, batch: str):
    if batch == "vmap":
        return jax.vmap(one)(lam, alpha)
    return jax.lax.map(lambda la: one(*la), (lam, alpha))


# --------------------------------------------------------------------------------------
# rate of convergence


class RatePrediction(eqx.Module):
    r"""Predicted linear rate of approach to the fixed point.

    - `lower_edge`, `upper_edge`: edges of the limiting spectral law of the Hessian
      `H = A^T diag(loss''(y, r)) A + lam I` at the fixed point (`upper_edge = inf` when
      `loss''` is unbounded, e.g. the Wirtinger loss).
    - `rate`: the largest per-step contraction of a Hessian mode over the spectrum
      (gradient descent: `max(|1 - eta lower_edge|, |1 - eta upper_edge|)`), the factor
      by which the distance to the fixed point shrinks per step; when `upper_edge` is
      infinite the limit is formally unstable and `rate` is the contraction at
      `lower_edge`, which is what a finite-`n` run shows as long as no row puts an
      eigenvalue of `H` beyond `stability_edge`.
    - `step_size`: the method's last step size; `stability_edge`: the largest Hessian
      eigenvalue whose mode still contracts (`2 / eta` for gradient descent).
    - `upper_unbounded`: whether `loss''` has unbounded support at the fixed point.
    - `upper_edge_quadrature`: the upper edge of the law with `D` discretised on the
      quadrature nodes (a proxy for a finite-`n` top edge when `upper_unbounded`).
    - `critical_curvature`: `D_c = 1 / G(stability_edge)`: a row with
      `loss''(y_i, r_i) > D_c` pushes an outlier eigenvalue of `H` beyond the stability
      edge (the per-row instability); `0` (with `unstable_row_mass = 1`) when the bulk
      itself reaches it.
    - `unstable_row_mass`: `P(loss''(y, r) > D_c)` at the fixed point
      (`expected_unstable_rows(n)` multiplies by a number of rows).
    """

    rate: Float[Array, ""]
    lower_edge: Float[Array, ""]
    upper_edge: Float[Array, ""]
    upper_edge_quadrature: Float[Array, ""]
    step_size: Float[Array, ""]
    stability_edge: Float[Array, ""]
    critical_curvature: Float[Array, ""]
    unstable_row_mass: Float[Array, ""]
    upper_unbounded: bool = eqx.field(static=True, default=False)

    def expected_unstable_rows(self, rows):
        """Expected number of rows with `loss'' > critical_curvature` among `rows` rows
        (`n = alpha d` for the simulator, `M` per replica for the DMFT). Each such row
        puts an eigenvalue of `H` above `2 / eta`: GD then ends in a period-2 orbit
        around the fixed point instead of converging to it."""
        return rows * self.unstable_row_mass

    @property
    def log_rate(self):
        return jnp.log(self.rate)

    @property
    def time_constant(self):
        """Steps per e-fold, `-1 / log(rate)`."""
        return -1.0 / jnp.log(self.rate)


def _edge(d, wts, alpha, lam, upper: bool, tail: float = 1e-12, iters: int = 200):
    """Bisection for `alpha G^2 E[D^2/(1 - D G)^2] = 1` on the side of 0 that belongs
    to the edge, then `x(G) = lam + 1/G + alpha E[D/(1 - D G)]`.

    Quadrature atoms of weight below `tail` are dropped: each atom `D_k` puts a pole at
    `G = 1/D_k`, and the extreme Gauss-Hermite nodes (weights down to 1e-30) would pin the
    edge to their poles. Rows that rare never occur at any feasible `n`; in the strict
    limit they add isolated eigenvalues of vanishing mass outside the bulk."""
    wts = jnp.where(wts >= tail, wts, 0.0)
    wts = wts / jnp.maximum(jnp.sum(wts), 1e-300)
    E = lambda v: jnp.sum(wts * v)  # noqa: E731
    big = 1e12
    if upper:
        dmax = jnp.max(jnp.where(wts > 0, d, -jnp.inf))
        bound = jnp.where(dmax > 0, 1.0 / dmax, big)
        sgn = 1.0
    else:
        dmin = jnp.min(jnp.where(wts > 0, d, jnp.inf))
        bound = jnp.where(dmin < 0, -1.0 / dmin, big)
        sgn = -1.0

    def h(t):  # G = sgn * t, increasing in t on (0, bound)
        G = sgn * t
        return alpha * G**2 * E(d**2 / (1.0 - d * G) ** 2) - 1.0

    def body(_, lohi):
        lo, hi = lohi
        mid = jnp.sqrt(lo * hi)
        pos = h(mid) > 0
        return jnp.where(pos, lo, mid), jnp.where(pos, mid, hi)

    lo, hi = jax.lax.fori_loop(0, iters, body, (jnp.asarray(1e-14), bound * (1 - 1e-13)))
    G = sgn * jnp.sqrt(lo * hi)
    edge = lam + 1.0 / G + alpha * E(d / (1.0 - d * G))
    # no root: the law has an atom at lam (rank deficiency), or nothing above it
    has_root = h(bound * (1 - 1e-13)) > 0
    fallback = jnp.asarray(lam, dtype=float) if not upper else jnp.inf
    return jnp.where(has_root, edge, fallback)


def _upper_unbounded(loss: AbstractLoss) -> bool:
    return isinstance(loss, WirtingerLoss)


def hessian_edges(
    problem: Problem,
    fp: FixedPoint,
    *,
    num_nodes: int = 48,
    branch: Branch = "global",
    tail: float = 1e-12,
):
    """`(lower, upper_quadrature)` edges of the Hessian's limiting spectral law at `fp`
    (quadrature atoms of `D` with weight below `tail` are ignored; see `predicted_rate`)."""
    check_problem(problem)
    if not isinstance(fp, FixedPoint):
        raise ValueError(f"fp must be a FixedPoint (from fixed_point), got {type(fp).__name__}")
    num_nodes = check_num_nodes(num_nodes)
    _check_branch(branch)
    check_positive("tail", tail)
    lower, upper, _, _ = _rate_core(
        as_arrays(problem),
        fp,
        jnp.asarray(1.0),
        rule_of(problem, num_nodes, curvature=True),
        branch,
        float(tail),
    )
    return lower, upper


def _curvature_law(problem, fp, rule, branch):
    """Atoms and weights of the law of `D = loss''(y, r)` at the fixed point (`rule` of
    kind `"curvature"` or `"binary"`)."""
    s = jnp.sqrt(jnp.maximum(fp.q - fp.m**2, 0.0))
    mo = _moments(problem, fp.kappa, fp.m, s, rule, branch)
    return mo.d_values, mo.d_weights


@eqx.filter_jit
def _rate_core(problem, fixed, edge, rule: _Rule, branch: str, tail: float):
    d, w = _curvature_law(problem, fixed, rule, branch)
    lower = _edge(d, w, problem.alpha, problem.lam, False, tail)
    upper_q = _edge(d, w, problem.alpha, problem.lam, True, tail)
    d_crit, mass = _row_threshold(d, w, problem.alpha, problem.lam, edge, tail)
    return lower, upper_q, d_crit, mass


def _row_threshold(d, wts, alpha, lam, edge, tail: float = 1e-12, grid: int = 96):
    r"""The curvature `D_c` above which a single row makes the limit point unstable.

    A row `i` adds `D_i a_i a_i^T` to the rest of the Hessian and, when `D_i` is large,
    an outlier eigenvalue `x` with `1 = D_i G(x)` (`G` the Stieltjes transform of the
    rest). The method's limit is unstable once that outlier passes its stability edge
    (`edge`, the largest Hessian eigenvalue whose mode still contracts: `2 / eta` for
    GD), i.e. for `D_i > D_c = 1 / G(edge)`, where `G` is computed from the law of `D`
    below `D_c` (rows above it are the rare outliers): solve
    `x_c(D_c) = lam + D_c + alpha E[D 1{D < D_c} / (1 - D / D_c)] = edge`.
    Returns `(D_c, mass of D > D_c)`; `D_c = 0` when even the bulk is unstable."""
    target = edge
    keep = jnp.where(wts >= tail, wts, 0.0)

    def x_of(dc):
        # atoms within 5% below dc are left out: for a continuous law they add a weak
        # (logarithmic) singularity, for quadrature atoms they add spikes
        inside = d < dc * 0.95
        safe_dc = jnp.where(inside, dc, 2 * d + 1)  # no division by zero outside
        return lam + dc + alpha * jnp.sum(jnp.where(inside, keep * d / (1.0 - d / safe_dc), 0.0))

    cands = target * jnp.linspace(0.01, 1.0, grid)
    below = jax.lax.map(x_of, cands) < target
    # the largest candidate still below the target, then bisection up to the next one
    idx = jnp.max(jnp.where(below, jnp.arange(grid), -1))
    lo = jnp.where(idx >= 0, cands[jnp.maximum(idx, 0)], 0.0)
    hi = jnp.where(idx >= 0, cands[jnp.minimum(idx + 1, grid - 1)], 0.0)

    def body(_, lohi):
        lo, hi = lohi
        mid = 0.5 * (lo + hi)
        ok = x_of(mid) < target
        return jnp.where(ok, mid, lo), jnp.where(ok, hi, mid)

    lo, hi = jax.lax.fori_loop(0, 60, body, (lo, hi))
    dc = 0.5 * (lo + hi)
    # outliers exist only above the bulk: if the bulk (rows below dc) already reaches
    # the edge, every step is unstable, not just rare rows
    bulk_top = _edge(d, jnp.where(d < 0.95 * dc, wts, 0.0), alpha, lam, True, tail)
    ok = (idx >= 0) & (bulk_top < target)
    dc = jnp.where(ok, dc, 0.0)
    return dc, jnp.where(ok, jnp.sum(jnp.where(d >= dc, wts, 0.0)), 1.0)


def as_algorithm(algorithm_or_step):
    """An algorithm, or `GradientDescent(step_size)` from a bare step size."""
    from ._algorithms import AbstractAlgorithm, GradientDescent

    if isinstance(algorithm_or_step, AbstractAlgorithm):
        return algorithm_or_step
    check_positive("step_size", algorithm_or_step)
    return GradientDescent(float(algorithm_or_step), 1)


def predicted_rate(
    problem: Problem,
    algorithm,
    *,
    fixed: FixedPoint | None = None,
    start=None,
    num_nodes: int = 48,
    branch: Branch = "global",
    tail: float = 1e-12,
) -> RatePrediction:
    r"""Predicted exponential rate at which a method approaches its fixed point.

    Linearising the method at the limit, every eigenvector of
    `H = A^T diag(loss''(y_i, r_i)) A + lam I` is a mode with its own recursion (GD:
    `e^{t+1} = (1 - eta h) e^t`; heavy ball: `e^{t+1} = (1 + beta - eta h) e^t - beta
    e^{t-1}`), contracting by the algorithm's `mode_contraction(h)` per step. In the
    proportional limit the spectral law of `H` has Stieltjes transform
    `G(x) = (1/d) tr (x - H)^{-1}` solving `G = 1 / (x - lam - alpha E[D / (1 - D G)])`
    with `D = loss''(y, r)` at the fixed point, and its edges are where `x'(G) = 0` on
    the inverse function `x(G) = lam + 1/G + alpha E[D / (1 - D G)]`. The rate is the
    largest contraction over the spectrum (at its lower edge when `loss''` is unbounded:
    the top then consists of single-row outliers; `critical_curvature` and
    `unstable_row_mass` say how likely a row is to put one beyond the method's
    stability edge). The distance to the limit decays as `rate^t` times a power of `t`
    (`t^{-3/2}` for a square-root edge seen by a generic vector).

    **Arguments:** `problem`; `algorithm`: an algorithm (its last step's coefficients
    are used) or a bare step size (gradient descent); `fixed` a solved `FixedPoint`
    (else `fixed_point(problem, start=start)` is solved); `num_nodes`, `branch` as for
    `fixed_point`; `tail`: quadrature atoms of `D` with less mass than this are ignored
    (the law of `loss''` of a non-convex loss reaches down towards `-1/kappa` with
    astronomically small mass; such rows would add isolated eigenvalues below the bulk
    at sizes `n ~ 1/mass`, never seen in practice).

    **Returns:** a `RatePrediction`. A method without a fixed point (constant-step SGD,
    Langevin) is refused.

    References: Silverstein & Choi (1995), "Analysis of the limiting spectral
    distribution of large dimensional random matrices"; Polyak (1964).
    """
    check_problem(problem)
    algorithm = as_algorithm(algorithm)
    if not algorithm.has_fixed_point:
        raise ValueError(
            f"{type(algorithm).__name__} has no fixed point (a constant-step stochastic method "
            "converges to a stationary law, not a point), so it has no rate of approach to one"
        )
    if fixed is None:
        fixed = fixed_point(problem, start=start, num_nodes=num_nodes, branch=branch)
    elif not isinstance(fixed, FixedPoint):
        raise ValueError("fixed must be a FixedPoint")
    check_positive("tail", tail)
    edge = algorithm.stability_edge(problem)
    lower, upper_q, d_crit, mass = _rate_core(
        as_arrays(problem),
        fixed,
        jnp.asarray(edge, dtype=float),
        rule_of(problem, num_nodes, curvature=True),
        branch,
        float(tail),
    )
    unbounded = _upper_unbounded(problem.loss)
    upper = jnp.inf if unbounded else upper_q
    lo = float(lower)
    spectrum = (
        [lo]
        if unbounded
        else np.concatenate([[lo, float(upper)], np.linspace(lo, float(upper), 257)])
    )
    rate = float(np.max(algorithm.mode_contraction(problem, np.asarray(spectrum))))
    _, b, _ = algorithm.asymptotic(problem)
    return RatePrediction(
        rate=jnp.asarray(rate),
        lower_edge=lower,
        upper_edge=jnp.asarray(upper),
        upper_edge_quadrature=upper_q,
        step_size=jnp.asarray(-b),
        stability_edge=jnp.asarray(edge),
        critical_curvature=d_crit,
        unstable_row_mass=mass,
        upper_unbounded=unbounded,
    )


def measured_rate(
    values,
    *,
    limit=None,
    window: tuple[int, int] | None = None,
    edge_exponent: float = 1.5,
    floor: float = 1e-13,
):
    r"""Fit the exponential rate at which a curve approaches its limit, with the model
    `|x(t) - limit| = C rate^t t^(-edge_exponent)`.

    **Arguments:**

    - `values`: a curve over `t = 0, 1, ...` (e.g. `trajectory.error`), or a
      `Trajectory` (then its `error`).
    - `limit`: the limit `x(inf)` (e.g. a long run's polished value); the model is then
      linear in `(log C, log rate)`. `None` fits the successive differences
      `|x(t) - x(t+1)| = C rate^t t^(-b) (1 - rate (t / (t+1))^b)` instead (profiled over
      `rate`), which needs no limit: use it for Monte Carlo curves, whose own limit is
      not the fixed point's.
    - `window`: `(t0, t1)` range of the fit; default: from a third of the curve to the
      last point above `floor`.
    - `edge_exponent`: `b`, the power-law prefactor: `1.5` for a square-root band edge
      of the Hessian seen by a generic vector (the default, what gradient descent shows),
      `0` for an isolated slowest mode.

    **Returns:** `(rate, stderr)`: the fitted per-step factor, and the standard error
    of the fit from its residuals (not a model error).
    """
    if isinstance(values, Trajectory):
        if values.diverged:
            raise ValueError(
                f"the trajectory diverged at step {values.diverged_at}: it has "
                "no rate of convergence (lower the step size)"
            )
        values = values.values["error"]
    try:
        x = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"values must be a 1-d curve of numbers, got {type(values).__name__}"
        ) from err
    if x.ndim != 1 or x.size < 5:
        raise ValueError("values must be a 1-d curve with at least 5 points")
    if not np.isfinite(x).all():
        raise ValueError(
            f"values has {int((~np.isfinite(x)).sum())} non-finite entries (the "
            "first at t = {}): a diverged curve has no rate of convergence".format(
                int(np.argmin(np.isfinite(x)))
            )
        )
    if np.abs(x).max() > 1e8:
        raise ValueError("values exceed 1e8: the run diverged and has no rate of convergence")
    check_real("edge_exponent", edge_exponent)
    if limit is None:
        gap = np.abs(x[:-1] - x[1:])
    else:
        check_real("limit", limit)
        gap = np.abs(x - float(limit))
    t = np.arange(gap.size, dtype=float)
    if window is None:
        above = np.nonzero(gap > floor)[0]
        t1 = int(above[-1]) + 1 if above.size else gap.size
        window = (max(1, t1 // 3), t1)
    t0, t1 = (int(v) for v in window)
    if not (1 <= t0 < t1 <= gap.size) or t1 - t0 < 4:
        raise ValueError(f"window {window} must satisfy 1 <= t0 < t1 <= {gap.size}, t1 - t0 >= 4")
    tt = t[t0:t1]
    b = float(edge_exponent)
    yy = np.log(np.maximum(gap[t0:t1], 1e-300)) + b * np.log(tt)
    design = np.stack([np.ones_like(tt), tt], axis=1)

    def fit(log_rate):
        """Residual sum of squares with `log C` profiled out, for a given rate."""
        target = yy - tt * log_rate
        if limit is None:
            shrink = 1.0 - np.exp(log_rate) * (tt / (tt + 1)) ** b
            target = target - np.log(np.maximum(shrink, 1e-300))
        c = target.mean()
        return float(np.sum((target - c) ** 2))

    coef, *_ = np.linalg.lstsq(design, yy, rcond=None)
    log_rate = float(coef[1])
    if limit is None:  # golden-section search on the profiled residual
        lo, hi = log_rate - 0.5, min(log_rate + 0.5, -1e-9)
        g = (math.sqrt(5) - 1) / 2
        for _ in range(200):
            a, c_ = hi - g * (hi - lo), lo + g * (hi - lo)
            if fit(a) < fit(c_):
                hi = c_
            else:
                lo = a
        log_rate = 0.5 * (lo + hi)
    dof = max(tt.size - 2, 1)
    cov = np.linalg.inv(design.T @ design) * (fit(log_rate) / dof)
    rate = float(np.exp(log_rate))
    return rate, float(rate * np.sqrt(cov[1, 1]))


# --------------------------------------------------------------------------------------
# finite-d check


class HessianCheck(eqx.Module):
    r"""One finite-`d` instance at its gradient-descent limit point.

    - `kappa_trace`: `tr(H^-1)/d` with `H = A^T diag(loss''(y, A theta)) A + lam I`.
    - `kappa_equation`: `1 / (lam + (1/d) sum_i D_i / (1 + kappa_trace D_i))`, the kappa
      equation with the instance's own `D_i = loss''(y_i, r_i)`; it equals
      `kappa_trace` up to finite-size error when the stationary theory holds.
    - `grad_norm`: `|A^T loss'(y, r) + lam theta| / sqrt(d)` (how stationary `theta` is).
    - `eig_min`, `eig_max`: extreme eigenvalues of `H`.
    - `m`, `q`, `error`: the instance's overlap, norm and error at the limit point.
    - `errors`: the GD error curve over `t < steps`; `gd_grad_norm`: the gradient norm
      where GD stopped (before polishing): small when GD itself converged.
    - `max_row_curvature`: `max_i loss''(y_i, r_i) |a_i|^2`, to compare with
      `RatePrediction.critical_curvature` (the per-row instability).
    """

    kappa_trace: Float[Array, ""]
    kappa_equation: Float[Array, ""]
    grad_norm: Float[Array, ""]
    eig_min: Float[Array, ""]
    eig_max: Float[Array, ""]
    m: Float[Array, ""]
    q: Float[Array, ""]
    error: Float[Array, ""]
    errors: Float[Array, " T"]
    gd_grad_norm: Float[Array, ""]
    stability_edge: Float[Array, ""]
    max_row_curvature: Float[Array, ""]

    @property
    def gd_stable(self):
        """`lambda_max(H)` below the method's stability edge (`eta lambda_max(H) < 2` for
        GD): the limit point is linearly stable (otherwise the method ends in an orbit
        around it, the per-row instability)."""
        return self.eig_max < self.stability_edge


def _draw(problem: Problem, dim: int, n: int, key):
    k_theta, k_a, k_eps, k_init = jax.random.split(key, 4)
    theta_star = problem.prior.sample((dim,), key=k_theta)
    a = jax.random.normal(k_a, (n, dim)) / jnp.sqrt(dim)
    z = a @ theta_star
    y = jax.vmap(problem.model.link)(z, jax.random.normal(k_eps, (n,)))
    return theta_star, a, y, k_init


def _hessian_check(problem, algorithm, init, dim: int, rows: int, key, polish: int, edge):
    loss, lam = problem.loss, problem.lam
    theta_star, a, y, k_init = _draw(problem, dim, rows, key)
    theta0 = init.simulator_start(problem, theta_star, a, y, key=k_init)
    even = problem.model.even

    def err(theta):
        m = theta @ theta_star / dim
        q = theta @ theta / dim
        return q - 2 * (jnp.abs(m) if even else m) + theta_star @ theta_star / dim

    co = algorithm.coefficients(problem)

    def gradient(phi):
        return a.T @ jax.vmap(loss.grad)(y, a @ phi)

    def run(state, xs):
        t, k = xs
        return algorithm.simulator_step(co, state, t, gradient, 0.0, k), err(state[0])

    xs = (
        jnp.arange(algorithm.steps),
        jax.random.split(jax.random.fold_in(key, 5), algorithm.steps),
    )
    state, errors = jax.lax.scan(run, algorithm.simulator_init(theta0), xs)
    theta = state[0]
    gd_grad = a.T @ jax.vmap(loss.grad)(y, a @ theta) + lam * theta
    gd_grad_norm = jnp.linalg.norm(gd_grad) / jnp.sqrt(dim)

    def hess(theta):
        d_ = jax.vmap(loss.hess)(y, a @ theta)
        return (a.T * d_) @ a + lam * jnp.eye(dim), d_

    def newton(theta, _):  # polish to machine precision: same local minimum as GD
        h, _ = hess(theta)
        grad = a.T @ jax.vmap(loss.grad)(y, a @ theta) + lam * theta
        return theta - jnp.linalg.solve(h, grad), None

    theta, _ = jax.lax.scan(newton, theta, None, length=polish)
    h, d_ = hess(theta)
    eig = jnp.linalg.eigvalsh(h)
    kappa_tr = jnp.trace(jnp.linalg.inv(h)) / dim
    kappa_eq = 1.0 / (lam + jnp.sum(d_ / (1.0 + kappa_tr * d_)) / dim)
    grad = a.T @ jax.vmap(loss.grad)(y, a @ theta) + lam * theta
    m = theta @ theta_star / dim
    q = theta @ theta / dim
    return HessianCheck(
        kappa_trace=kappa_tr,
        kappa_equation=kappa_eq,
        grad_norm=jnp.linalg.norm(grad) / jnp.sqrt(dim),
        eig_min=eig[0],
        eig_max=eig[-1],
        m=m,
        q=q,
        error=err(theta),
        errors=errors,
        gd_grad_norm=gd_grad_norm,
        stability_edge=jnp.asarray(edge, dtype=float),
        max_row_curvature=jnp.max(d_ * jnp.sum(a**2, axis=1)),
    )


_hessian_check_jit = eqx.filter_jit(_hessian_check)


@eqx.filter_jit
def _hessian_check_many(problem, algorithm, init, dim: int, rows: int, keys, polish: int, edge):
    return jax.lax.map(
        lambda k: _hessian_check(problem, algorithm, init, dim, rows, k, polish, edge), keys
    )


def hessian_check(
    problem: Problem, algorithm, init, *, dim: int, key, num_seeds: int = 1, polish: int = 8
) -> HessianCheck:
    r"""Run gradient descent at finite `d` to its limit point and test the kappa equation
    on the instance: `kappa = tr(H^-1)/d` against
    `1 / (lam + (1/d) sum_i D_i / (1 + kappa D_i))`, `H = A^T diag(D) A + lam I`.

    **Arguments:** `problem`, `algorithm` (any algorithm, run for `steps` steps),
    `init` (e.g. `InformedInit`), `dim`, `key`, `num_seeds` (vmapped; fields get a
    leading seed axis when > 1), `polish` Newton steps on the empirical risk after GD
    (they converge to the local minimum GD was approaching, to machine precision).

    **Returns:** a `HessianCheck` (also holds the GD error curve `errors`).
    """
    check_problem(problem, algorithm)
    dim = check_int("dim", dim, 2)
    num_seeds = check_int("num_seeds", num_seeds, 1)
    polish = check_int("polish", polish, 0)
    check_key(key)
    rows = num_rows(problem, dim)
    check_resources(
        f"hessian_check (dim = {dim}, {rows} rows)",
        largest=max(dim * dim, rows * dim),
        nbytes=8.0 * (4 * dim * dim + 3 * rows * dim),
        fix="use a smaller dim (it forms and factors the d x d Hessian)",
    )
    check_resources(
        f"hessian_check ({num_seeds} seeds)",
        largest=num_seeds * (algorithm.steps + 8),
        nbytes=8.0 * num_seeds * (algorithm.steps + 16),
        fix="use fewer seeds",
    )
    edge = algorithm.stability_edge(problem)
    problem, algorithm, init = as_arrays((problem, algorithm, init))
    if num_seeds == 1:
        return _hessian_check_jit(problem, algorithm, init, dim, rows, key, polish, edge)
    return _hessian_check_many(
        problem, algorithm, init, dim, rows, jax.random.split(key, num_seeds), polish, edge
    )


__all__ = [
    "fixed_point",
    "fixed_point_sweep",
    "FixedPoint",
    "predicted_rate",
    "RatePrediction",
    "measured_rate",
    "hessian_check",
    "HessianCheck",
    "hessian_edges",
]
