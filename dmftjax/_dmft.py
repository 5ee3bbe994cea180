r"""The dynamical mean-field solver for gradient descent (derivation, section 3).

The equations are causal, so they are solved forward in time in one `lax.scan` whose
carry holds every kernel on a preallocated `(T+1) x (T+1)` grid; nothing is iterated to
self-consistency.

Parameter side (exact for ridge): `theta^t = A_t theta* + B_t zeta + sum_{s<t} R(t,s) u^s`.
Sample side (Monte Carlo over `M` samples): with independent standard seeds
`(z, xi, eta_0, ..., eta_{T-1})`, whitened on the sample,

    w^t = A_t z + B_t xi + sum_j Rt(t,j) eta_j,       Rt = R L,
    r^t = w^t + sum_{s<t} R(t,s) g^s = w^t + sum_j Rt(t,j) q_j / sqrt(alpha),

where `g^s = sum_j L(s,j) q_j / sqrt(alpha)` is the re-orthogonalised incremental QR of
the sampled gradients (so `C_u = alpha E[g g^T] = L L^T` exactly, with no Cholesky of a
near-singular matrix and no inverse anywhere).

References: Chen & Shen (2025), arXiv:2509.23527; Celentano, Cheng, Montanari (2021)
for the discrete-time DMFT of first-order methods.
"""

from __future__ import annotations

import warnings
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._problem import GradientDescent, InformedInit, Problem
from ._quadrature import population_loss
from ._simulate import _finish
from ._trajectory import Trajectory
from ._validate import as_arrays, check_int, check_key

Estimator = Literal["tangent", "ibp"]
ADJOINT_BLOCK = 8


def whitened_seeds(key, num_samples: int, width: int):
    """`[M, width]` standard Gaussian seeds with empirical mean 0 and covariance I."""
    x = jax.random.normal(key, (num_samples, width))
    x = x - x.mean(axis=0)
    chol = jnp.linalg.cholesky(x.T @ x / num_samples)
    return jax.scipy.linalg.solve_triangular(chol, x.T, lower=True).T


def _qr_append(q_basis, g, num_samples, rtol: float = 1e-10):
    """Orthogonalise `g` against the rows of `q_basis` (`[W, M]`, mean-square-one rows),
    twice for stability. Returns coefficients `c`, the residual norm and the new row.

    An innovation below `rtol * |g|` is rounding noise, not a direction: it would enter
    the basis as a vector that is not orthogonal to the others and, once GD has
    converged, amplify rounding step after step (the run blows up). It is dropped
    (norm and row set to zero), which changes the represented `g` by at most `rtol`."""
    c = q_basis @ g / num_samples
    resid = g - c @ q_basis
    c2 = q_basis @ resid / num_samples
    resid = resid - c2 @ q_basis
    nrm = jnp.sqrt(jnp.mean(resid**2))
    keep = nrm > rtol * jnp.sqrt(jnp.mean(g**2))
    nrm = jnp.where(keep, nrm, 0.0)
    return c + c2, nrm, jnp.where(keep, resid / jnp.where(keep, nrm, 1.0), 0.0)


def _gamma_row(h_hist, resp, t, block: int):
    r"""`sum_i h_i^t J_i(t, s)` over samples `i`, where `J(t, s) = d r^t / d w^s` solves
    the backward (adjoint) recursion `J(t,t) = 1`,
    `J(t,s) = h^s sum_{s<s'<=t} R(s',s) J(t,s')` (section 3).

    Time-major (`h_hist` is `[W, M]`, `resp` `[W, W]`, `W` a multiple of `block`), and
    blocked: the contribution of later blocks enters through one matrix product per
    block, the short in-block recursion is unrolled so XLA fuses it into one pass over
    the samples. Only the blocks up to `t` are visited."""
    width, num_samples = h_hist.shape
    x = jnp.zeros((width, num_samples), h_hist.dtype).at[t].set(1.0)

    def do_block(i, x):
        start = (t // block - i) * block
        cols = jax.lax.dynamic_slice_in_dim(resp, start, block, axis=1)
        acc = cols.T @ x  # rows >= t are final; in-block rows < t are still zero
        r_in = jax.lax.dynamic_slice_in_dim(cols, start, block, axis=0)
        r_in = r_in * (start + jnp.arange(block) < t)[:, None]  # only newly solved rows
        h_blk = jax.lax.dynamic_slice_in_dim(h_hist, start, block, axis=0)
        rows = [None] * block
        for j in range(block - 1, -1, -1):
            later = sum((r_in[k, j] * rows[k] for k in range(j + 1, block)), acc[j])
            rows[j] = h_blk[j] * later
        old = jax.lax.dynamic_slice_in_dim(x, start, block, axis=0)
        new = jnp.where((start + jnp.arange(block) < t)[:, None], jnp.stack(rows), old)
        return jax.lax.dynamic_update_slice_in_dim(x, new, start, axis=0)

    x = jax.lax.fori_loop(0, t // block + 1, do_block, x)
    return x @ h_hist[t]


def _solve_one(problem: Problem, algorithm: GradientDescent, init: InformedInit, key,
               num_samples: int, estimator: str):
    steps = algorithm.steps
    width = steps + 1
    padded = -(-width // ADJOINT_BLOCK) * ADJOINT_BLOCK
    alpha = problem.alpha
    sqrt_alpha = jnp.sqrt(alpha)
    a_coef = 1.0 - algorithm.step_size * problem.lam
    b_coef = -algorithm.step_size
    model, loss = problem.model, problem.loss
    m_signal = num_samples

    seeds = whitened_seeds(key, m_signal, steps + 3)
    z, xi, eps = seeds[:, 0], seeds[:, 1], seeds[:, 2]
    eta = jnp.concatenate([seeds[:, 3:].T, jnp.zeros((1, m_signal))], axis=0)  # time-major
    y = jax.vmap(model.link)(z, eps)
    dy_dz = jax.vmap(model.dlink_dz)(z, eps) if model.smooth else None

    carry = dict(
        A=jnp.zeros(width + 1).at[0].set(init.overlap),
        B=jnp.zeros(width + 1).at[0].set(jnp.sqrt(init.norm - init.overlap**2)),
        R=jnp.zeros((width + 1, width)),
        Rt=jnp.zeros((width + 1, width)),
        L=jnp.zeros((width, width)),
        Q=jnp.zeros((width, m_signal)),
        P=eta,  # eta + Q / sqrt(alpha): r^t = A_t z + B_t xi + Rt(t, .) @ P in one pass
        Gam=jnp.zeros((width, width)),
        Gs=jnp.zeros(width),
    )
    if estimator == "tangent":
        carry["H"] = jnp.zeros((padded, m_signal))
        if model.smooth:
            carry["DGZ"] = jnp.zeros((width, m_signal))

    def step(c, t):
        A, B, R, Rt, L, Q = c["A"], c["B"], c["R"], c["Rt"], c["L"], c["Q"]
        r = A[t] * z + B[t] * xi + Rt[t] @ c["P"]
        g = jax.vmap(loss.grad)(y, r)
        h = jax.vmap(loss.hess)(y, r)

        m, q = A[t], A[t] ** 2 + B[t] ** 2 + Rt[t] @ Rt[t]
        m_eff = jnp.abs(m) if model.even else m
        sign = jnp.where(m >= 0, 1.0, -1.0) if model.even else 1.0
        obs = {
            "overlap": m,
            "norm": q,
            "error": q - 2 * m_eff + 1.0,
            "cosine": m_eff / jnp.sqrt(q),
            "train_loss": jnp.mean(jax.vmap(loss)(y, r)),
            "test_error": population_loss(model, loss, 1.0, m, q),
            "wrong_well": jnp.mean(jax.vmap(loss.wrong_well)(y, r, sign * z).astype(r.dtype)),
        }

        coef, nrm, q_new = _qr_append(Q, g, m_signal)
        l_row = sqrt_alpha * coef.at[t].set(nrm)
        c = dict(c, Q=Q.at[t].set(q_new), L=L.at[t].set(l_row))
        c["P"] = c["P"].at[t].add(q_new / sqrt_alpha)
        e_t = jnp.zeros(width).at[t].set(1.0)

        if estimator == "tangent":
            H = c["H"].at[t].set(h)
            resp = jnp.zeros((padded, padded)).at[:width, :width].set(R[:width])
            gam_row = alpha * _gamma_row(H, resp, t, ADJOINT_BLOCK)[:width] / m_signal
            if model.smooth:
                drz = R[t] @ c["DGZ"]
                dgz = jax.vmap(loss.grad_y)(y, r) * dy_dz + h * drz
                c["DGZ"] = c["DGZ"].at[t].set(dgz)
                gam_star = alpha * jnp.mean(dgz)
            else:  # Stein on z: alpha E[z g] = Gam(t,*) + sum_s Gam(t,s) A_s
                gam_star = alpha * jnp.mean(z * g) - gam_row @ A[:width]
            A_next = a_coef * A[t] + b_coef * (gam_row @ A[:width] + gam_star)
            B_next = a_coef * B[t] + b_coef * (gam_row @ B[:width])
            R_next = a_coef * R[t] + b_coef * (e_t + gam_row @ R[:width])
            Rt_next = R_next @ c["L"]
            c = dict(c, H=H, Gam=c["Gam"].at[t].set(gam_row), Gs=c["Gs"].at[t].set(gam_star))
            c["R"] = R.at[t + 1].set(R_next)
        else:  # Gaussian integration by parts in the whitened seed basis (section 3c)
            mask = (jnp.arange(width) < t).astype(g.dtype)
            A_next = a_coef * A[t] + b_coef * alpha * jnp.mean(z * g)
            B_next = a_coef * B[t] + b_coef * alpha * jnp.mean(xi * g)
            Rt_next = a_coef * Rt[t] + b_coef * (l_row + alpha * mask * (eta @ g) / m_signal)
        c["A"] = A.at[t + 1].set(A_next)
        c["B"] = B.at[t + 1].set(B_next)
        c["Rt"] = Rt.at[t + 1].set(Rt_next)
        return c, obs

    c, obs = jax.lax.scan(step, carry, jnp.arange(width))
    Rt = c["Rt"][:width]
    coeffs = jnp.stack([c["A"][:width], c["B"][:width]], axis=1)
    kernels = {
        "C": coeffs @ coeffs.T + Rt @ Rt.T,
        "Cu": c["L"] @ c["L"].T,
        "A": c["A"][:width],
        "B": c["B"][:width],
    }
    if estimator == "tangent":
        kernels.update(R=c["R"][:width], Gamma=c["Gam"], Gamma_star=c["Gs"])
    return obs, kernels


TRACES = {"dmft": 0}


@eqx.filter_jit
def _solve_batch(problem, algorithm, init, keys, num_samples, estimator):
    TRACES["dmft"] += 1
    return jax.vmap(lambda k: _solve_one(problem, algorithm, init, k, num_samples, estimator))(keys)


def solve_dmft(
    problem: Problem,
    algorithm: GradientDescent,
    init,
    *,
    num_samples: int,
    key,
    num_replicas: int = 4,
    estimator: Estimator = "tangent",
) -> Trajectory:
    r"""Solve the DMFT of gradient descent (d = infinity) forward in time.

    **Arguments:**

    - `problem`: a `Problem`.
    - `algorithm`: `GradientDescent(step_size, steps)`.
    - `init`: `InformedInit(overlap, norm)` (or `SpectralInit`).
    - `num_samples`: Monte Carlo samples `M` of the sample side, per replica
      (must exceed `steps + 3`, the number of whitened seed directions).
    - `key`: a `jax.random` key.
    - `num_replicas`: independent replicas (vmapped); the result is their mean and
      the standard error is their spread / sqrt(num_replicas).
    - `estimator`: `"tangent"` (exact per-sample responses by the adjoint recursion;
      O(M T^3), needs `loss` twice differentiable in `r`) or `"ibp"` (Gaussian
      integration by parts in the whitened seed basis; O(M T^2), needs no derivative,
      carries a positive O(1/M) bias in the norm, and returns no `R`/`Gamma`).

    **Returns:** a `Trajectory` (source `"dmft"`) with `kernels` `C`, `Cu`, `A`
    (= overlap), `B`, and for `"tangent"` also `R`, `Gamma`, `Gamma_star`, averaged
    over replicas.

    References: Chen & Shen (2025), arXiv:2509.23527, and the derivation page.
    """
    if not isinstance(problem, Problem):
        raise ValueError("problem must be a dmftjax.Problem")
    if not isinstance(algorithm, GradientDescent):
        raise ValueError("algorithm must be a dmftjax.GradientDescent")
    num_samples = check_int("num_samples", num_samples, 2)
    num_replicas = check_int("num_replicas", num_replicas, 2)
    check_key(key)
    if estimator not in ("tangent", "ibp"):
        raise ValueError(f"estimator must be 'tangent' or 'ibp', got {estimator!r}")
    if num_samples <= algorithm.steps + 3:
        raise ValueError(
            f"num_samples = {num_samples} must exceed steps + 3 = {algorithm.steps + 3}: "
            "the sample side whitens one Gaussian seed per step"
        )
    spectral = getattr(init, "dmft_solver", None)
    if spectral is not None:
        return spectral(problem, algorithm, num_samples=num_samples, key=key,
                        num_replicas=num_replicas, estimator=estimator)
    if not isinstance(init, InformedInit):
        raise ValueError(f"solve_dmft does not know the initialisation {type(init).__name__}")
    keys = jax.random.split(key, num_replicas)
    problem, algorithm, init = as_arrays((problem, algorithm, init))
    obs, kernels = _solve_batch(problem, algorithm, init, keys, num_samples, estimator)
    obs = jax.tree.map(np.asarray, obs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        kernels = {k: jnp.asarray(np.nanmean(np.asarray(v), axis=0)) for k, v in kernels.items()}
    info = dict(num_samples=num_samples, num_replicas=num_replicas, estimator=estimator)
    traj = _finish(obs, "dmft", info)
    return eqx.tree_at(lambda t: t.kernels, traj, kernels, is_leaf=lambda x: x is None)
