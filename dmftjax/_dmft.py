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
from ._trajectory import Trajectory, finish, first_divergence, sample_observables
from ._validate import as_arrays, check_int, check_key, check_real

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


def whitened_antithetic(key, num_samples: int, width: int, kept: int):
    """Whitened seeds in antithetic pairs: the first `kept` columns (z, eps) are shared,
    the others flip sign in the second half, a symmetry of the law that cancels the
    odd Monte Carlo noise exactly (needed when a tiny overlap must grow, section 3)."""
    half = whitened_seeds(key, num_samples // 2, width)
    flip = jnp.concatenate([jnp.ones(kept), -jnp.ones(width - kept)])
    return jnp.concatenate([half, half * flip], axis=0)


class _Plan(eqx.Module):
    """Per-slot coefficients of the general recursion
    `theta^{k+1} = a_k theta^k + b_k A^T g_k(y, A theta^k)` (section 2):
    `power[k]` selects `g = T(y) r` (else the loss gradient); `normalise[k]` divides
    by the deterministic norm; `rescale[k]` multiplies by the start's scale `s0` after it."""

    a: jax.Array
    b: jax.Array
    power: jax.Array
    normalise: jax.Array
    rescale: jax.Array


def _gd_plan(problem, algorithm, *, slot: bool = False, power_slots: int = 0, shift=0.0):
    """GD from slot 0 (informed start); or after the stationary eigenvector slot
    (`slot`: slot 0 is `v`, then `theta^0 = s0 v`); or after `power_slots` normalised
    shifted power steps on `D` whose last is rescaled by `s0` (the prehistory)."""
    steps = algorithm.steps
    n = int(slot) + power_slots + steps + 1
    k = jnp.arange(n)
    is_power = k < power_slots
    gd_a = 1.0 - algorithm.step_size * problem.lam
    a = jnp.where(is_power, shift, gd_a)
    b = jnp.where(is_power, 1.0, -algorithm.step_size)
    if slot:
        a, b = a.at[0].set(1.0), b.at[0].set(0.0)
    rescale = k == (0 if slot else power_slots - 1)
    if not slot and power_slots == 0:
        rescale = jnp.zeros(n, bool)
    return _Plan(a=a, b=b, power=is_power, normalise=is_power, rescale=rescale)


def _solve_general(problem: Problem, plan: _Plan, key, num_samples: int, estimator: str, *,
                   a0, b0, slot=None, prep=None, antithetic: bool = False,
                   z_tangent: bool = True, s0=None):
    r"""The forward-in-time solve over `W = len(plan.a)` slots (see the module docstring).

    `a0, b0`: coefficients of slot 0 on `theta*` and on an independent direction.
    `slot`: `(R_vv, m_v)` makes slot 0 the stationary eigenvector slot of section 3b
    (`theta^0 = m_v theta* + R_vv u^v`, `r^v = w^v / (1 - R_vv T)`).
    `prep`: the preprocessing `T` of power steps and of the slot.
    `z_tangent`: `Gam(t,*)` by the exact forward z-tangent (needs `f` and `T` without
    jumps) rather than Gaussian integration by parts on `z`.
    `s0`: scale of the rescale slot; `None` uses `model.default_scale(y)` on the samples."""
    width = plan.a.shape[0]
    padded = -(-width // ADJOINT_BLOCK) * ADJOINT_BLOCK
    alpha = problem.alpha
    sqrt_alpha = jnp.sqrt(alpha)
    model, loss = problem.model, problem.loss
    num = num_samples
    tangent = estimator == "tangent"

    seeds = (whitened_antithetic(key, num, width + 2, 2) if antithetic
             else whitened_seeds(key, num, width + 2))
    z, eps, xi = seeds[:, 0], seeds[:, 1], seeds[:, 2]
    eta = jnp.concatenate([seeds[:, 3:].T, jnp.zeros((1, num))], axis=0)  # time-major
    y = jax.vmap(model.link)(z, eps)
    dy_dz = jax.vmap(model.dlink_dz)(z, eps) if z_tangent else None
    t_of_y = jax.vmap(prep)(y) if prep is not None else jnp.zeros_like(y)
    dt_dy = jax.vmap(jax.grad(lambda v: prep(v)))(y) if (prep is not None and z_tangent) else None
    s0 = model.default_scale(y) if s0 is None else s0

    carry = dict(
        A=jnp.zeros(width + 1).at[0].set(a0),
        B=jnp.zeros(width + 1).at[0].set(b0),
        R=jnp.zeros((width + 1, width)),
        Rt=jnp.zeros((width + 1, width)),
        L=jnp.zeros((width, width)),
        Q=jnp.zeros((width, num)),
        P=eta,  # eta + Q / sqrt(alpha): r = A z + B xi + Rt(k, .) @ P in one pass
        Gam=jnp.zeros((width, width)),
        Gs=jnp.zeros(width),
    )
    if tangent:
        carry["H"] = jnp.zeros((padded, num))
    if z_tangent:
        carry["DGZ"] = jnp.zeros((width, num))

    def sample_side(c, k):
        r = c["A"][k] * z + c["B"][k] * xi + c["Rt"][k] @ c["P"]
        is_power = plan.power[k]
        g = jnp.where(is_power, t_of_y * r, jax.vmap(loss.grad)(y, r))
        h = jnp.where(is_power, t_of_y, jax.vmap(loss.hess)(y, r))
        dgz = None
        if z_tangent:
            drz = c["R"][k] @ c["DGZ"]
            gy = jax.vmap(loss.grad_y)(y, r) * dy_dz
            if prep is not None:
                gy = jnp.where(is_power, dt_dy * dy_dz * r, gy)
            dgz = gy + h * drz
        return r, g, h, dgz

    def slot_side(c):
        # Section 3b: w^v = m_v z + R_vv L00 eta_0 with L00 = sqrt(alpha mean p^2) solved
        # on these samples (a quadratic), so the slot is consistent with the QR below.
        r_vv, m_v = slot
        den = 1.0 - r_vv * t_of_y
        f2 = (t_of_y / den) ** 2
        e0 = eta[0]
        c2 = 1.0 - alpha * r_vv**2 * jnp.mean(f2 * e0**2)
        c1 = -2.0 * alpha * m_v * r_vv * jnp.mean(f2 * z * e0)
        c0 = -alpha * m_v**2 * jnp.mean(f2 * z**2)
        l00 = (-c1 + jnp.sqrt(c1**2 - 4 * c2 * c0)) / (2 * c2)
        w_v = m_v * z + r_vv * l00 * e0
        r = w_v / den
        g = t_of_y * r
        h = t_of_y / den
        dgz = dt_dy * dy_dz * r / den if z_tangent else None
        return r, g, h, dgz

    def update(c, k, r, g, h, dgz):
        A, B, R, Rt, L, Q = c["A"], c["B"], c["R"], c["Rt"], c["L"], c["Q"]
        coef, nrm, q_new = _qr_append(Q, g, num)
        l_row = sqrt_alpha * coef.at[k].set(nrm)
        c = dict(c, Q=Q.at[k].set(q_new), L=L.at[k].set(l_row))
        c["P"] = c["P"].at[k].add(q_new / sqrt_alpha)
        a_k, b_k = plan.a[k], plan.b[k]
        e_k = jnp.zeros(width).at[k].set(1.0)
        if tangent:
            H = c["H"].at[k].set(h)
            resp = jnp.zeros((padded, padded)).at[:width, :width].set(R[:width])
            gam_row = alpha * _gamma_row(H, resp, k, ADJOINT_BLOCK)[:width] / num
            if z_tangent:
                c["DGZ"] = c["DGZ"].at[k].set(dgz)
                gam_star = alpha * jnp.mean(dgz)
            else:  # Stein on z: alpha E[z g] = Gam(k,*) + sum_s Gam(k,s) A_s
                gam_star = alpha * jnp.mean(z * g) - gam_row @ A[:width]
            A_next = a_k * A[k] + b_k * (gam_row @ A[:width] + gam_star)
            B_next = a_k * B[k] + b_k * (gam_row @ B[:width])
            R_next = a_k * R[k] + b_k * (e_k + gam_row @ R[:width])
            Rt_next = R_next @ c["L"]
            c = dict(c, H=H, Gam=c["Gam"].at[k].set(gam_row), Gs=c["Gs"].at[k].set(gam_star))
        else:  # Gaussian integration by parts in the whitened seed basis (section 3c)
            mask = (jnp.arange(width) < k).astype(g.dtype)
            A_next = a_k * A[k] + b_k * alpha * jnp.mean(z * g)
            B_next = a_k * B[k] + b_k * alpha * jnp.mean(xi * g)
            Rt_next = a_k * Rt[k] + b_k * (l_row + alpha * mask * (eta @ g) / num)
            R_next = None
        norm = jnp.sqrt(A_next**2 + B_next**2 + Rt_next @ Rt_next)
        factor = jnp.where(plan.rescale[k], s0, 1.0) / jnp.where(plan.normalise[k], norm, 1.0)
        c["A"] = A.at[k + 1].set(factor * A_next)
        c["B"] = B.at[k + 1].set(factor * B_next)
        c["Rt"] = Rt.at[k + 1].set(factor * Rt_next)
        if tangent:
            c["R"] = R.at[k + 1].set(factor * R_next)
        return c

    def step(c, k):
        r, g, h, dgz = sample_side(c, k)
        q = c["A"][k] ** 2 + c["B"][k] ** 2 + c["Rt"][k] @ c["Rt"][k]
        obs = sample_observables(problem, y, z, r, m=c["A"][k], q=q)
        return update(c, k, r, g, h, dgz), obs

    first = 0
    if slot is not None:
        r_vv, m_v = slot
        r, g, h, dgz = slot_side(carry)
        # R(v, v) = R_vv enters the parameter side (R(t+1, v) gains Gam(t, v) R_vv), never
        # the adjoint or the memory term (it is folded into F = T / (1 - R_vv T)).
        carry["R"] = carry["R"].at[0, 0].set(r_vv)
        carry = update(carry, 0, r, g, h, dgz)
        # v = m_v theta* + R_vv u^v, u^v = L(v, v) eta_0 with L(v, v) from the QR above;
        # theta^0 = s0 v (the rescale slot has b = 0).
        s0_used = carry["A"][1] / m_v
        carry["Rt"] = carry["Rt"].at[0].set(r_vv * carry["L"][0])
        carry["Rt"] = carry["Rt"].at[1].set(s0_used * r_vv * carry["L"][0])
        first = 1
    carry, obs = jax.lax.scan(step, carry, jnp.arange(first, width))
    Rt = carry["Rt"][:width]
    coeffs = jnp.stack([carry["A"][:width], carry["B"][:width]], axis=1)
    kernels = {
        "C": coeffs @ coeffs.T + Rt @ Rt.T,
        "Cu": carry["L"] @ carry["L"].T,
        "A": carry["A"][:width],
        "B": carry["B"][:width],
    }
    if tangent:
        kernels.update(R=carry["R"][:width], Gamma=carry["Gam"], Gamma_star=carry["Gs"])
    return obs, kernels


def _solve_one(problem: Problem, algorithm: GradientDescent, init: InformedInit, key,
               num_samples: int, estimator: str):
    """One replica of the DMFT of GD from an informed start: observables over t = 0..T
    and the kernels on the `(T+1) x (T+1)` grid."""
    plan = _gd_plan(problem, algorithm)
    return _solve_general(problem, plan, key, num_samples, estimator,
                          a0=init.overlap, b0=jnp.sqrt(init.norm - init.overlap**2),
                          z_tangent=problem.model.smooth)


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
    spectral_method: Literal["slot", "prehistory"] = "slot",
    eps0: float = 0.1,
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
    - `spectral_method` (with `SpectralInit`): `"slot"` treats the top eigenvector as one
      stationary slot (section 3b, default); `"prehistory"` runs the normalised shifted
      power method from a start of overlap `eps0` with `K` chosen from the predicted
      spectral gap (section 2). They agree; the slot is an order of magnitude cheaper.
      Below the weak-recovery threshold a `SpectralInit` is refused with a ValueError.

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
    if spectral_method not in ("slot", "prehistory"):
        raise ValueError(f"spectral_method must be 'slot' or 'prehistory', got {spectral_method!r}")
    check_real("eps0", eps0)
    eps0 = float(eps0)
    if not 0 < eps0 < 1:
        raise ValueError(f"eps0 must be in (0, 1), got {eps0}")
    if num_samples <= algorithm.steps + 3:
        raise ValueError(
            f"num_samples = {num_samples} must exceed steps + 3 = {algorithm.steps + 3}: "
            "the sample side whitens one Gaussian seed per step"
        )
    from ._spectral_init import SpectralInit

    if isinstance(init, SpectralInit):
        return _solve_spectral(problem, algorithm, init, num_samples, key, num_replicas,
                               estimator, spectral_method, eps0)
    if not isinstance(init, InformedInit):
        raise ValueError(f"solve_dmft does not know the initialisation {type(init).__name__}")
    keys = jax.random.split(key, num_replicas)
    problem, algorithm, init = as_arrays((problem, algorithm, init))
    obs, kernels = _solve_batch(problem, algorithm, init, keys, num_samples, estimator)
    info = dict(num_samples=num_samples, num_replicas=num_replicas, estimator=estimator)
    return _assemble(obs, kernels, info)


def _assemble(obs, kernels, info) -> Trajectory:
    """Replica means and standard errors of the observables; replica-mean kernels."""
    obs = jax.tree.map(np.asarray, obs)
    ok = first_divergence(obs["norm"]) < 0
    keep = ok if ok.any() else np.ones_like(ok)  # the same replicas as the observables
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        kernels = {k: jnp.asarray(np.nanmean(np.asarray(v)[keep], axis=0))
                   for k, v in kernels.items()}
    traj = finish(obs, "dmft", info)
    return eqx.tree_at(lambda t: t.kernels, traj, kernels, is_leaf=lambda x: x is None)


def _solve_spectral(problem, algorithm, init, num_samples, key, num_replicas, estimator,
                    method, eps0):
    from ._dmft_spectral import check_outlier, power_schedule, solve_spectral_batch

    theory = check_outlier(problem, init)
    schedule = None
    extra_slots = 1
    if method == "prehistory":
        schedule = power_schedule(problem, init, eps0)
        extra_slots = schedule[1]
    if num_samples % 2:
        raise ValueError("a spectral start uses antithetic pairs: num_samples must be even")
    if num_samples // 2 <= algorithm.steps + extra_slots + 3:
        raise ValueError(
            f"num_samples = {num_samples} is too small: a spectral start whitens one Gaussian "
            f"seed per slot on each half of the antithetic pairs, so num_samples / 2 must "
            f"exceed steps + {extra_slots + 3} = {algorithm.steps + extra_slots + 3}"
        )
    keys = jax.random.split(key, num_replicas)
    problem, algorithm, init, theory_arr = as_arrays((problem, algorithm, init, theory))
    obs, kernels, extra = solve_spectral_batch(problem, algorithm, init, keys, num_samples,
                                               estimator, method, theory_arr,
                                               schedule and (schedule[0], schedule[1], None),
                                               eps0)
    info = dict(num_samples=num_samples, num_replicas=num_replicas, estimator=estimator,
                spectral_method=method, cosine2_theory=float(theory.cosine2),
                top_eigenvalue=float(theory.top_eigenvalue), R_vv=float(theory.R_vv))
    if method == "prehistory":
        info.update(power_steps=schedule[1], shift=schedule[0], power_rate=schedule[2],
                    power_cosine=np.asarray(extra["power_cosine"]).mean(0))
    else:
        info.update(norm_v=np.asarray(extra["norm_v"]).mean())
    return _assemble(obs, kernels, info)
