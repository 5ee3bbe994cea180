"""Gauss-Hermite quadrature for expectations over standard Gaussians."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np


@functools.lru_cache(maxsize=32)
def _hermite_nodes(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Probabilists' Gauss-Hermite rule of `n` nodes, weights summing to 1. Up to 150
    nodes numpy's rule; above, Golub-Welsch (numpy's recurrence overflows past ~300)."""
    if n <= 150:
        x, w = np.polynomial.hermite_e.hermegauss(n)
        return x, w / w.sum()
    off = np.sqrt(np.arange(1, n, dtype=float))
    x, vecs = np.linalg.eigh(np.diag(off, 1) + np.diag(off, -1))
    w = vecs[0] ** 2
    return x, w / w.sum()


def gauss_nodes(n: int, dims: int):
    """Nodes `[n**dims, dims]` and weights `[n**dims]` for `E f(G)`, `G ~ N(0, I_dims)`."""
    x, w = _hermite_nodes(n)
    grids = np.meshgrid(*([x] * dims), indexing="ij")
    wgrids = np.meshgrid(*([w] * dims), indexing="ij")
    nodes = np.stack([g.ravel() for g in grids], axis=-1)
    weights = np.prod(np.stack([g.ravel() for g in wgrids], axis=-1), axis=-1)
    return jnp.asarray(nodes), jnp.asarray(weights)


def population_loss(model, loss, p, m, q, n: int = 24):
    r"""`E loss(f(z, eps), w)` for `(z, w) ~ N(0, [[p, m], [m, q]])`, `eps ~ N(0, 1)`: the
    expected loss of an estimator with overlap `m` and norm `q` on a fresh sample (for a
    Gaussian design this is the exact test error given the estimate).

    Labels with a declared law (`AbstractBinaryModel`) are integrated exactly: one
    Gauss-Hermite rule of `4 n` nodes over `w`, the two labels weighted by
    `P(y = +1 | w)`. Any other model: a tensor rule of `n` nodes in each of `(z, w, eps)`."""
    from ._models import AbstractBinaryModel

    p = jnp.maximum(p, 1e-300)
    if isinstance(model, AbstractBinaryModel):
        x_np, wts_np = _hermite_nodes(4 * n)
        x, wts = jnp.asarray(x_np), jnp.asarray(wts_np)
        qq = jnp.maximum(q, 1e-300)
        w = jnp.sqrt(qq) * x
        sd = jnp.sqrt(jnp.maximum(p - m**2 / qq, 0.0))
        p1 = jax.vmap(lambda mu: model.conditional_prob_plus(mu, sd))(m * w / qq)
        one = jnp.ones_like(w)
        return jnp.sum(wts * (p1 * jax.vmap(loss)(one, w) + (1 - p1) * jax.vmap(loss)(-one, w)))
    nodes, weights = gauss_nodes(n, 3)
    g1, g2, eps = nodes[:, 0], nodes[:, 1], nodes[:, 2]
    z = jnp.sqrt(p) * g1
    w = (m / jnp.sqrt(p)) * g1 + jnp.sqrt(jnp.maximum(q - m**2 / p, 0.0)) * g2
    y = jax.vmap(model.link)(z, eps)
    return jnp.sum(weights * jax.vmap(loss)(y, w))


@functools.lru_cache(maxsize=32)
def half_hermite_nodes(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss rule of `n` nodes for the half-normal law (density `2 phi(x)` on `[0, inf)`),
    weights summing to 1: with its mirror image it integrates `E f(X)`, `X ~ N(0, 1)`, for
    an `f` that jumps at 0 (or anywhere the integral is split) as accurately as
    Gauss-Hermite does for a smooth `f`.

    Golub-Welsch on the recurrence of the orthogonal polynomials, obtained by Lanczos
    (with full reorthogonalisation) on a fine discretisation of the measure (composite
    20-point Gauss-Legendre on `[0, 40]`, 400 panels), which integrates the polynomials
    involved to rounding."""
    xg, wg = np.polynomial.legendre.leggauss(20)
    edges = np.linspace(0.0, 40.0, 401)
    half = 0.5 * np.diff(edges)
    t = (0.5 * (edges[1:] + edges[:-1])[:, None] + half[:, None] * xg).ravel()
    u = (half[:, None] * wg).ravel() * 2.0 * np.exp(-0.5 * t**2) / np.sqrt(2.0 * np.pi)
    u = u / u.sum()
    basis = np.zeros((n + 1, t.size))
    basis[0] = np.sqrt(u)
    a, b = np.zeros(n), np.zeros(n)
    for k in range(n):
        v = t * basis[k]
        a[k] = v @ basis[k]
        for _ in range(2):
            v = v - basis[: k + 1].T @ (basis[: k + 1] @ v)
        b[k] = np.linalg.norm(v)
        basis[k + 1] = v / b[k]
    x, vecs = np.linalg.eigh(np.diag(a) + np.diag(b[:-1], 1) + np.diag(b[:-1], -1))
    w = vecs[0] ** 2
    return x, w / w.sum()
