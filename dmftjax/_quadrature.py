"""Gauss-Hermite quadrature for expectations over standard Gaussians."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np


@functools.lru_cache(maxsize=16)
def _hermite_nodes(n: int) -> tuple[np.ndarray, np.ndarray]:
    x, w = np.polynomial.hermite_e.hermegauss(n)
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
    expected loss of an estimator with overlap `m` and norm `q` on a fresh sample."""
    nodes, weights = gauss_nodes(n, 3)
    g1, g2, eps = nodes[:, 0], nodes[:, 1], nodes[:, 2]
    p = jnp.maximum(p, 1e-300)
    z = jnp.sqrt(p) * g1
    w = (m / jnp.sqrt(p)) * g1 + jnp.sqrt(jnp.maximum(q - m**2 / p, 0.0)) * g2
    y = jax.vmap(model.link)(z, eps)
    return jnp.sum(weights * jax.vmap(loss)(y, w))
