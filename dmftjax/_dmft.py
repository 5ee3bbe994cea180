r"""The dynamical mean-field solver for gradient descent (docs/equations.md#effective-processes).

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

import dataclasses
import warnings
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._algorithms import MASK_STREAM
from ._estimators import ADJOINT_BLOCK, Tangent, as_estimator
from ._problem import AbstractInit, Problem, check_problem
from ._progress import progress_bar, tick
from ._trajectory import (
    OBSERVABLES,
    Trajectory,
    cut_at_divergence,
    finish,
    first_divergence,
    on_time_axis,
    sample_observables,
)
from ._validate import as_arrays, check_int, check_key, check_real, check_resources

WINDOW_WARN = 2e-3


def _stratified_normal(key, num_samples: int):
    """Standard normals stratified on `num_samples` equal-probability bins, in random order."""
    k1, k2 = jax.random.split(key)
    u = jax.random.permutation(k1, num_samples) + jax.random.uniform(k2, (num_samples,))
    return jax.scipy.special.ndtri(u / num_samples)


def _features(z, eps):
    """Low-order functions of `(z, eps)` with known means (Hermite polynomials and |z|):
    the other seeds are made orthogonal to them on the sample."""
    return jnp.stack(
        [
            jnp.ones_like(z),
            z,
            eps,
            z**2 - 1,
            eps**2 - 1,
            z * eps,
            z**3 - 3 * z,
            eps**3 - 3 * eps,
            jnp.abs(z) - jnp.sqrt(2 / jnp.pi),
        ],
        axis=1,
    )


NUM_FEATURES = 9


def whitened_seeds(key, num_samples: int, width: int):
    """`[M, width]` standard Gaussian seeds with empirical mean 0 and covariance I.

    Columns 0 and 1 (`z` and `eps`) are stratified (Latin hypercube); when there are
    enough samples (`M >= width + 2 * NUM_FEATURES`) the other columns are also made
    exactly orthogonal on the sample to the low-order features `_features(z, eps)`, so
    that their leading Monte Carlo noise against the data cancels (docs/equations.md#estimators)."""
    kz, ke, kr = jax.random.split(key, 3)
    z, eps = _stratified_normal(kz, num_samples), _stratified_normal(ke, num_samples)
    z = (z - z.mean()) / z.std()
    eps = eps - eps.mean()
    eps = eps - (eps @ z) / (z @ z) * z
    eps = eps / eps.std()
    kx, kr = jax.random.split(kr)
    rest = jax.random.normal(kr, (num_samples, width - 2))
    rest = rest.at[:, 0].set(_stratified_normal(kx, num_samples))  # xi (theta^0) too
    if num_samples >= width + 2 * NUM_FEATURES:
        basis, _ = jnp.linalg.qr(_features(z, eps))
    else:
        basis, _ = jnp.linalg.qr(_features(z, eps)[:, :3])
    rest = rest - basis @ (basis.T @ rest)
    chol = jnp.linalg.cholesky(rest.T @ rest / num_samples)
    rest = jax.scipy.linalg.solve_triangular(chol, rest.T, lower=True).T
    return jnp.concatenate([z[:, None], eps[:, None], rest], axis=1)


def _qr_append(q_basis, g, num_samples, rtol: float = 1e-10):
    """Orthogonalise `g` against the rows of `q_basis` (`[W, M]`, mean-square-one rows),
    twice for stability. Returns coefficients `c`, the residual norm and the new row.

    An innovation below `rtol * |g|` is rounding noise, not a direction: it would enter
    the basis as a vector that is not orthogonal to the others and, once GD has
    converged, amplify rounding step after step (the run blows up). It is dropped
    (norm and row set to zero), which changes the represented `g` by at most `rtol`.
    The second pass is needed: one pass (classical Gram-Schmidt) loses orthogonality
    like eps cond(G)^2 over the whole history, and the curves visibly drift."""
    c = q_basis @ g / num_samples
    resid = g - c @ q_basis
    c2 = q_basis @ resid / num_samples
    resid = resid - c2 @ q_basis
    c = c + c2
    gnorm = jnp.sqrt(jnp.mean(g**2))
    nrm = jnp.sqrt(jnp.mean(resid**2))
    keep = nrm > rtol * gnorm
    nrm = jnp.where(keep, nrm, 0.0)
    return c, nrm, jnp.where(keep, resid / jnp.where(keep, nrm, 1.0), 0.0)


def _block_rows(acc, r_in, h_blk, block: int):
    """The in-block backward recursion of the adjoint, unrolled (XLA fuses it into one pass
    over the samples): rows `j = block-1 .. 0` of `J` from the later blocks' contribution
    `acc` and the in-block responses `r_in`."""
    rows: list = [None] * block
    for j in range(block - 1, -1, -1):
        later = sum((r_in[k, j] * rows[k] for k in range(j + 1, block)), acc[j])
        rows[j] = h_blk[j] * later
    return jnp.stack(rows)


def _gamma_row(h_hist, resp, t, block: int, reverse: bool = False):
    r"""`sum_i h_i^t J_i(t, s)` over samples `i`, where `J(t, s) = d r^t / d w^s` solves
    the backward (adjoint) recursion `J(t,t) = 1`,
    `J(t,s) = h^s sum_{s<s'<=t} R(s',s) J(t,s')` (docs/equations.md#effective-processes).

    Time-major (`h_hist` is `[W, M]`, `resp` `[W, W]`, `W` a multiple of `block`), and
    blocked: the contribution of later blocks enters through one matrix product per
    block, the short in-block recursion is unrolled so XLA fuses it into one pass over
    the samples. Only the blocks up to `t` are visited; with `reverse` (an engine built
    for reverse-mode derivatives) every block is, the ones beyond `t` masked, so that
    the loop has a fixed trip count."""
    width, num_samples = h_hist.shape
    x = jnp.zeros((width, num_samples), h_hist.dtype).at[t].set(1.0)

    def do_block(i, x):
        start = jnp.maximum((t // block - i) * block, 0)
        cols = jax.lax.dynamic_slice_in_dim(resp, start, block, axis=1)
        acc = cols.T @ x  # rows >= t are final; in-block rows < t are still zero
        r_in = jax.lax.dynamic_slice_in_dim(cols, start, block, axis=0)
        r_in = r_in * (start + jnp.arange(block) < t)[:, None]  # only newly solved rows
        h_blk = jax.lax.dynamic_slice_in_dim(h_hist, start, block, axis=0)
        rows = _block_rows(acc, r_in, h_blk, block)
        old = jax.lax.dynamic_slice_in_dim(x, start, block, axis=0)
        live = (start + jnp.arange(block) < t) & (i <= t // block)
        new = jnp.where(live[:, None], rows, old)
        return jax.lax.dynamic_update_slice_in_dim(x, new, start, axis=0)

    if not reverse:
        return _gamma_row_triangular(h_hist, resp, t, block)
    x = jax.lax.fori_loop(0, width // block, do_block, x)
    return x @ h_hist[t]


# at most this many distinct slice lengths (static shapes) in `_gamma_row_triangular`: more
# saves multiply-adds and costs compile time (T = 100, 2 x 10,000 samples, one quiet run:
# full-width products 2.8 s + 8.5 s compile, 8 groups 2.4 s + 10.4 s, 16: 2.2 s + 10.7 s)
TRIANGULAR_GROUPS = 8


def _gamma_row_triangular(h_hist, resp, t, block: int):
    r"""`_gamma_row` (forward engines) with the adjoint's bulk restricted to the rows
    that can be non-zero: when the block starting at `start` is solved, only the rows
    `start .. t` of `J(t, .)` enter its matrix product (the rows above `t` are zero, those
    below `start` unsolved), so the product is `[L, block]^T @ [L, M]` with `L` the
    number of those rows, not the whole width: `M t^2` multiply-adds per step instead of
    `2 M t W`, 3.5x fewer over a run. The lengths are static (iteration `i` counted from
    `t`'s own block needs `(i + 1) block` rows); iterations are grouped so that at most
    `TRIANGULAR_GROUPS` lengths are compiled, each group's length its longest (a few
    spare zero rows, ending past the width: the arrays are padded)."""
    width, num_samples = h_hist.shape
    num_blocks = width // block
    group = -(-num_blocks // TRIANGULAR_GROUPS)  # iterations per group
    pad = group * block  # the longest overshoot of a group's length past the width
    x = jnp.zeros((width + pad, num_samples), h_hist.dtype).at[t].set(1.0)
    resp_p = jnp.zeros((width + pad, width), resp.dtype).at[:width].set(resp)
    top = t // block  # the block holding t

    for first in range(0, num_blocks, group):
        length = min(first + group, num_blocks) * block  # rows of the group's last one

        def do_block(i, x, length=length):
            start = (top - i) * block
            xs = jax.lax.dynamic_slice_in_dim(x, start, length, axis=0)
            cols = jax.lax.dynamic_slice(resp_p, (start, start), (length, block))
            acc = cols.T @ xs  # rows >= t are final; in-block rows < t are still zero
            r_in = cols[:block] * (start + jnp.arange(block) < t)[:, None]
            h_blk = jax.lax.dynamic_slice_in_dim(h_hist, start, block, axis=0)
            rows = _block_rows(acc, r_in, h_blk, block)
            live = start + jnp.arange(block) < t
            new = jnp.where(live[:, None], rows, xs[:block])
            return jax.lax.dynamic_update_slice_in_dim(x, new, start, axis=0)

        # this group's iterations that exist for this t (none once past t's first block)
        last = jnp.minimum(first + group, top + 1)
        x = jax.lax.fori_loop(first, jnp.maximum(last, first), do_block, x)
    return x[:width] @ h_hist[t]


def _tail(mass, edge, start, width: int):
    """`Gamma(t, s)` for the lags beyond the window (`s < start`): total `mass`, shaped as
    the geometric continuation `edge * rho^(start - s)` of the window's last value `edge`
    (`rho` from the infinite sum, renormalised to the lags that exist), or lumped on
    `s = start - 1` when the signs forbid a geometric tail."""
    s = jnp.arange(width)
    ratio = mass / jnp.where(edge + mass == 0, 1.0, edge + mass)
    geometric = (mass * edge > 0) & (ratio < 1.0)
    rho = jnp.where(geometric, ratio, 0.0)
    shape = jnp.where(s < start, rho ** jnp.maximum(start - s, 0), 0.0)
    shape = jnp.where(geometric, shape, (s == start - 1).astype(shape.dtype))
    norm = jnp.sum(shape)
    return jnp.where(norm > 0, mass * shape / jnp.where(norm > 0, norm, 1.0), 0.0)


HANDOFF_LAG = 10


def _converged(recent, error, tol):
    """From `(m, q)` over the last `2 L + 1` steps (`L = HANDOFF_LAG`, even, so that a
    period-2 wiggle cancels): the changes `D1 = |x_t - x_{t-L}|`, `D0 = |x_{t-L} -
    x_{t-2L}|` (summed over m and q), the block rate `D1 / D0` and the predicted remaining
    change `D1 rho / (1 - rho)`; converged when that is below `tol * error`."""
    lag = HANDOFF_LAG
    d1 = jnp.sum(jnp.abs(recent[-1] - recent[-1 - lag]))
    d0 = jnp.sum(jnp.abs(recent[-1 - lag] - recent[0]))
    rho = d1 / d0
    remaining = d1 * rho / (1.0 - rho)
    return jnp.isfinite(rho) & (rho < 1.0) & (remaining < tol * jnp.abs(error))


HISTORY = {"P": 0, "Q": 0, "H": 0, "DGZ": 0, "DG1": 0, "DGB": 0}  # per-sample, time-major
LIVE_CHUNKS = 8


def _scan_live(step, carry, first: int, width: int, window: int):
    """Steps `first..width-1` in `LIVE_CHUNKS` chunks, each seeing the per-sample
    histories only up to the rows it can write: the passes over the history then cost
    sum_t t instead of T^2 (about 0.56 T^2 with 8 chunks). Each chunk is a `while_loop`
    that also stops once `carry["done"]` is set (the hand-off); `obs["handed_off"]` marks
    the steps that were not integrated."""
    size = -(-(width - first) // LIVE_CHUNKS)
    size = -(-size // ADJOINT_BLOCK) * ADJOINT_BLOCK
    obs = {name: jnp.zeros(width - first) for name in OBSERVABLES}
    skipped = jnp.ones(width - first, bool)
    for k0 in range(first, width, size):
        k1 = min(k0 + size, width)
        rows = {name: min(k1 + 1, width) for name in HISTORY}
        rows["H"] = min(k1 + 1 + window, width + window)
        take = {
            name: jax.lax.slice_in_dim(carry[name], 0, rows[name], axis=ax)
            for name, ax in HISTORY.items()
            if name in carry
        }

        def going(state, k1=k1):
            k, sub, _, _ = state
            return (k < k1) & ~sub["done"] if "done" in sub else k < k1

        def advance(state):
            k, sub, obs, skipped = state
            sub, o = step(sub, k)
            obs = {name: obs[name].at[k - first].set(o[name]) for name in obs}
            return k + 1, sub, obs, skipped.at[k - first].set(False)

        _, sub, obs, skipped = jax.lax.while_loop(
            going, advance, (jnp.asarray(k0), dict(carry, **take), obs, skipped)
        )
        for name in take:
            carry[name] = jax.lax.dynamic_update_slice_in_dim(
                carry[name], sub[name], 0, HISTORY[name]
            )
        carry = dict(sub, **{name: carry[name] for name in take})
    return carry, dict(obs, handed_off=skipped)


def _checkpointed_scan(step, carry, xs):
    """`lax.scan(step, carry, xs)` for reverse mode with memory held down: the steps in
    blocks of about `sqrt(len(xs))`, each block a rematerialised scan, so the backward
    pass stores the carry at the block boundaries and recomputes each block once."""
    n = xs.shape[0]
    size = max(1, int(round(n**0.5)))
    blocks = -(-n // size)
    pad = blocks * size - n
    valid = jnp.concatenate([jnp.ones(n, bool), jnp.zeros(pad, bool)]).reshape(blocks, size)
    xs = jnp.concatenate([xs, jnp.full(pad, xs[-1])]).reshape(blocks, size)

    def guarded(c, x_ok):
        x, ok = x_ok
        new, out = step(c, x)
        new = jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, c)
        return new, out

    @jax.checkpoint
    def block(c, xb):
        return jax.lax.scan(guarded, c, xb)

    carry, out = jax.lax.scan(block, carry, (xs, valid))
    out = jax.tree.map(lambda o: o.reshape((blocks * size,) + o.shape[2:])[:n], out)
    return carry, out


def _gamma_window(h_win, resp, block: int):
    r"""`sum_i h_i^t J_i(t, s)` for the `W` times `s` of a full window ending at `t` (the
    last row): `_gamma_row` with `t = W - 1` fixed, so every loop is static and XLA fuses
    each block's recursion into one pass over the samples."""
    width, num_samples = h_win.shape
    x = jnp.zeros((width, num_samples), h_win.dtype).at[width - 1].set(1.0)
    for start in range((width - 1) // block * block, -1, -block):
        acc = resp[:, start : start + block].T @ x  # later blocks' contributions
        rows: list = [None] * block  # every slot set to an array below
        for j in range(block - 1, -1, -1):
            if start + j == width - 1:
                rows[j] = x[width - 1]
                continue
            later = sum(
                (
                    resp[start + i, start + j] * rows[i]
                    for i in range(j + 1, block)
                    if start + i < width - 1
                ),
                acc[j],
            )
            rows[j] = h_win[start + j] * later
        x = x.at[start : start + block].set(jnp.stack(rows[: min(block, width - start)]))
    return x @ h_win[width - 1]


def whitened_antithetic(key, num_samples: int, width: int, kept: int):
    """Whitened seeds in antithetic pairs: the first `kept` columns (z, eps) are shared,
    the others flip sign in the second half, a symmetry of the law that cancels the
    odd Monte Carlo noise exactly (needed when a tiny overlap must grow,
    docs/equations.md#monte-carlo)."""
    half = whitened_seeds(key, num_samples // 2, width)
    flip = jnp.concatenate([jnp.ones(kept), -jnp.ones(width - kept)])
    return jnp.concatenate([half, half * flip], axis=0)


KICK_STREAM = 0x4B1C  # the stream of a replica's key (fold_in) that draws the kicks' seeds


def kick_seeds(key, seeds, count: int, antithetic: bool):
    """`[M, count]` seeds of Langevin-type kicks: standard Gaussian, orthogonal on the
    sample to `seeds` (and to the features of `(z, eps)` where there is room), whitened
    (empirical covariance I), from a stream of their own, so that `seeds` are those of
    the same run without kicks (common random numbers: zero kicks give that run
    exactly). Antithetic: drawn on the first half and flipped on the second, which keeps
    them orthogonal to the pairs' seeds."""
    num = seeds.shape[0] // 2 if antithetic else seeds.shape[0]
    basis = seeds[:num]
    if num > basis.shape[1] + NUM_FEATURES - 2 + count:  # z and eps are features too
        feats = _features(basis[:, 0], basis[:, 1])
        basis = jnp.concatenate([feats, basis[:, 2:]], axis=1)  # full rank
    q, _ = jnp.linalg.qr(basis)
    x = jax.random.normal(jax.random.fold_in(key, KICK_STREAM), (num, count))
    x = x - q @ (q.T @ x)
    chol = jnp.linalg.cholesky(x.T @ x / num)
    x = jax.scipy.linalg.solve_triangular(chol, x.T, lower=True).T
    return jnp.concatenate([x, -x], axis=0) if antithetic else x


class _Plan(eqx.Module):
    """Per-slot coefficients of the general recursion (sections 2 and 2b):
    `phi^k = sum_j c[k, j] theta^{src[k, j]}`,
    `theta^{k+1} = sum_j a[k, j] theta^{src[k, j]} + b[k] A^T g_k(y, A phi^k)`.
    `src[k, j]` is the slot of `theta^{k-j}` (clamped at the first slot of the phase: no
    initial velocity); `power[k]` selects `g = T(y) r` (else the loss gradient);
    `normalise[k]` divides by the deterministic norm; `rescale[k]` multiplies by the
    start's scale `s0` after it. `sigma[k]` (or `None`): the standard deviation of the
    independent Gaussian added to `theta^{k+1}` (Langevin). `query_is_iterate` (static):
    `phi = theta` (the sample side then needs no second set of coefficients)."""

    a: jax.Array
    b: jax.Array
    c: jax.Array
    src: jax.Array
    power: jax.Array
    normalise: jax.Array
    rescale: jax.Array
    sigma: jax.Array | None = None
    query_is_iterate: bool = eqx.field(static=True, default=True)


def _plan(problem, algorithm, *, slot: bool = False, power_slots: int = 0, shift=0.0):
    """The algorithm's steps from slot 0 (informed start); or after the stationary
    eigenvector slot (`slot`: slot 0 is `v`, then `theta^0 = s0 v`); or after
    `power_slots` normalised shifted power steps on `D` whose last is rescaled by `s0`
    (the prehistory)."""
    co = algorithm.coefficients(problem)
    p = co.memory
    first = int(slot) + power_slots  # the slot of theta^0
    n = first + algorithm.steps + 1
    k = np.arange(n)
    src = np.maximum(k[:, None] - np.arange(p)[None, :], np.where(k < first, k, first)[:, None])

    def pad(x, fill):
        fill = jnp.asarray(fill, dtype=float)
        return jnp.concatenate(
            [
                jnp.broadcast_to(fill, (first,) + x.shape[1:]),
                x,
                jnp.broadcast_to(fill, (1,) + x.shape[1:]),
            ],
            axis=0,
        )

    start_a = jnp.zeros(p).at[0].set(1.0)  # the start slots' own a and c: theta^k alone
    a = pad(co.a, start_a)
    c = pad(co.c, start_a)
    b = pad(co.b, 0.0)
    is_power = jnp.asarray(k < power_slots)
    a = jnp.where(is_power[:, None], jnp.asarray(shift, dtype=float) * start_a, a)
    b = jnp.where(is_power, 1.0, b)
    if slot:
        a, b = a.at[0].set(start_a), b.at[0].set(0.0)
    rescale = jnp.asarray(k == (0 if slot else power_slots - 1))
    if not slot and power_slots == 0:
        rescale = jnp.zeros(n, bool)
    sigma = algorithm.noise_std()
    return _Plan(
        a=a,
        b=b,
        c=c,
        src=jnp.asarray(src),
        power=is_power,
        normalise=is_power,
        rescale=rescale,
        sigma=None if sigma is None else pad(jnp.asarray(sigma, dtype=float), 0.0),
        query_is_iterate=algorithm.query_is_iterate,
    )


def _solve_general(
    problem: Problem,
    plan: _Plan,
    key,
    num_samples: int,
    estimator: str | tuple,
    *,
    a0,
    b0,
    slot=None,
    prep=None,
    antithetic: bool = False,
    z_tangent: bool = True,
    s0=None,
    law_slots: tuple = (),
    reverse: bool = False,
    progress: bool = False,
    weights=None,
):
    r"""The forward-in-time solve over `W = len(plan.a)` slots (see the module docstring).

    `a0, b0`: coefficients of slot 0 on `theta*` and on an independent direction.
    `slot`: `(R_vv, m_v)` makes slot 0 the stationary eigenvector slot of
    docs/equations.md#stationary-slot
    (`theta^0 = m_v theta* + R_vv u^v`, `r^v = w^v / (1 - R_vv T)`).
    `prep`: the preprocessing `T` of power steps and of the slot.
    `z_tangent`: `Gam(t,*)` by the exact forward z-tangent (needs `f` and `T` without
    jumps) rather than Gaussian integration by parts on `z`.
    `s0`: scale of the rescale slot; `None` uses `model.default_scale(y)` on the samples.
    `law_slots`: slots at which to return every sample's `(z, y, r)` (the row law), as
    `kernels["rows_z"]`, `["rows_y"]` (`[M]`) and `["rows_r"]` (`[len(law_slots), M]`).
    `weights`: `k -> [M]` multipliers of every sample's gradient at slot `k` (minibatch
    masks, docs/equations.md#first-order-methods), or `None`; power slots have weight 1.
    With `plan.sigma` the parameter side carries independent Gaussian kicks: their
    coefficients `Rn` on whitened seeds of their own (`eta2`) follow the recursion of `R`.
    `reverse`: build for reverse-mode differentiation: inner loops of fixed length, the
    time loop as `sqrt(T)` checkpointed blocks (memory `O(sqrt(T))` carries, each step
    recomputed once in the backward pass), no hand-off.
    `estimator`: `"tangent"`, `"ibp"` or `(kind, window, handoff)`. `handoff` (windowed
    only): stop integrating once the predicted remaining change of `(m, q)` is below
    `handoff` times the error (see `_converged`); the steps not integrated are flagged
    in `obs["handed_off"]`."""
    width = plan.a.shape[0]
    padded = -(-width // ADJOINT_BLOCK) * ADJOINT_BLOCK
    alpha = problem.alpha
    sqrt_alpha = jnp.sqrt(alpha)
    model, loss = problem.model, problem.loss
    num = num_samples
    estimator, window, handoff = (estimator, 0, None) if isinstance(estimator, str) else estimator
    windowed = estimator == "windowed" and window < padded
    tangent = estimator == "tangent" or (estimator == "windowed" and not windowed)

    noisy = plan.sigma is not None
    seeds = (
        whitened_antithetic(key, num, width + 2, 2)
        if antithetic
        else whitened_seeds(key, num, width + 2)
    )
    z, eps, xi = seeds[:, 0], seeds[:, 1], seeds[:, 2]
    eta = jnp.concatenate([seeds[:, 3:].T, jnp.zeros((1, num))], axis=0)  # time-major
    # the seeds of the kicks: the kick of step k enters theta^{k+1} (none after the last)
    eta2 = None
    if noisy:
        kick = kick_seeds(key, seeds, width - 1, antithetic)
        eta2 = jnp.concatenate([kick.T, jnp.zeros((1, num))], axis=0)
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
    if windowed:
        carry["H"] = jnp.zeros((width + window, num))
        carry["DG1"] = jnp.zeros((width, num))
        carry["DGB"] = jnp.zeros((width, num))
    if z_tangent:
        carry["DGZ"] = jnp.zeros((width, num))
    if noisy:
        carry["Rn"] = jnp.zeros((width + 1, width))
    iterate_query = plan.query_is_iterate
    if (
        not iterate_query
    ):  # the query point's coefficients, slot by slot (docs/equations.md#first-order-methods)
        carry.update(
            Aphi=jnp.zeros(width + 1), Bphi=jnp.zeros(width + 1), Rphi=jnp.zeros((width + 1, width))
        )
        if noisy:
            carry["Rnphi"] = jnp.zeros((width + 1, width))

    def combine(weights, history, k):
        """`sum_j weights[j] history[src[k, j]]`: the update's or the query's
        combination of the last iterates."""
        return jnp.tensordot(weights, history[plan.src[k]], axes=1)

    def query(c, k):
        """`(A, B, Rt, R, Rn)` rows of the query point `phi^k` (those of `theta^k` when
        the gradient is taken at the iterate; `Rn` is `None` without kicks)."""
        names = ("A", "B", "Rt", "R") + (("Rn",) if noisy else ())
        if iterate_query:
            rows = tuple(c[name][k] for name in names)
        else:
            rows = tuple(combine(plan.c[k], c[name], k) for name in names)
        return rows if noisy else rows + (None,)

    def kicks(rn_row, n):
        """The kicks' part of `<a, theta>` per sample."""
        return rn_row[:n] @ eta2[:n] if eta2 is not None else 0.0

    def fitted(c, k):
        """`r = <a, theta^k>` per sample (the observables are those of the iterate)."""
        n = c["P"].shape[0]
        rn = c["Rn"][k] if noisy else None
        return c["A"][k] * z + c["B"][k] * xi + c["Rt"][k, :n] @ c["P"] + kicks(rn, n)

    def sample_side(c, k):
        n = c["P"].shape[0]  # rows of history kept live (all, or up to the chunk's end)
        a_phi, b_phi, rt_phi, r_phi, rn_phi = query(c, k)
        if not iterate_query:
            c = dict(
                c,
                Aphi=c["Aphi"].at[k].set(a_phi),
                Bphi=c["Bphi"].at[k].set(b_phi),
                Rphi=c["Rphi"].at[k].set(r_phi),
            )
            if noisy:
                c["Rnphi"] = c["Rnphi"].at[k].set(rn_phi)
        r = a_phi * z + b_phi * xi + rt_phi[:n] @ c["P"] + kicks(rn_phi, n)
        is_power = plan.power[k]
        w = 1.0 if weights is None else jnp.where(is_power, 1.0, weights(k))
        g = jnp.where(is_power, t_of_y * r, w * jax.vmap(loss.grad)(y, r))
        h = jnp.where(is_power, t_of_y, w * jax.vmap(loss.hess)(y, r))
        dgz = None
        if z_tangent:
            drz = r_phi[:n] @ c["DGZ"]
            if windowed:  # the total z-derivative, w^s moving with z through A_s
                drz = drz + a_phi
            gy = w * jax.vmap(loss.grad_y)(y, r) * dy_dz
            if prep is not None:
                gy = jnp.where(is_power, dt_dy * dy_dz * r, gy)
            dgz = gy + h * drz
        return c, r, g, h, dgz

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
        if z_tangent and windowed:  # the total z-derivative: w^v moves with z through m_v
            dgz = dgz + h * m_v
        return r, g, h, dgz

    def update(c, k, r, g, h, dgz):
        A, B, R, Rt, L, Q = c["A"], c["B"], c["R"], c["Rt"], c["L"], c["Q"]
        # the query points' histories (theta's own when the gradient is at the iterate)
        Aq, Bq, Rq = (A, B, R) if iterate_query else (c["Aphi"], c["Bphi"], c["Rphi"])
        if noisy:
            Rn = c["Rn"]
            Rnq = Rn if iterate_query else c["Rnphi"]
        coef, nrm, q_new = _qr_append(Q, g, num)
        n = Q.shape[0]
        l_row = sqrt_alpha * jnp.zeros(width).at[:n].set(coef).at[k].set(nrm)
        c = dict(c, Q=Q.at[k].set(q_new), L=L.at[k].set(l_row))
        c["P"] = c["P"].at[k].add(q_new / sqrt_alpha)
        a_k, b_k = plan.a[k], plan.b[k]
        e_k = jnp.zeros(width).at[k].set(1.0)
        kick = plan.sigma[k] * e_k if noisy else None
        if tangent:
            H = c["H"].at[k].set(h)
            resp = jnp.zeros((padded, padded)).at[:width, :width].set(Rq[:width])
            gam_row = alpha * _gamma_row(H, resp, k, ADJOINT_BLOCK, reverse)[:width] / num
            if z_tangent:
                c["DGZ"] = c["DGZ"].at[k].set(dgz)
                gam_star = alpha * jnp.mean(dgz)
            else:  # Stein on z: alpha E[z g] = Gam(k,*) + sum_s Gam(k,s) A_phi(s)
                gam_star = alpha * jnp.mean(z * g) - gam_row @ Aq[:width]
            A_next = combine(a_k, A, k) + b_k * (gam_row @ Aq[:width] + gam_star)
            B_next = combine(a_k, B, k) + b_k * (gam_row @ Bq[:width])
            R_next = combine(a_k, R, k) + b_k * (e_k + gam_row @ Rq[:width])
            Rt_next = R_next @ c["L"]
            if noisy:
                Rn_next = combine(a_k, Rn, k) + b_k * (gam_row @ Rnq[:width]) + kick
            c = dict(c, H=H, Gam=c["Gam"].at[k].set(gam_row), Gs=c["Gs"].at[k].set(gam_star))
        elif windowed:  # docs/equations.md#estimators: adjoint over the last `window` lags only
            # H holds time s at row s + window (zeros before t = 0), so the window is
            # always full and the adjoint has a static shape.
            H = c["H"].at[k + window].set(h)
            start = k - window + 1  # oldest time in the window (negative early on)
            resp = jnp.zeros((width + window, width + window)).at[window:, window:].set(Rq[:width])
            resp = jax.lax.dynamic_slice(resp, (k + 1, k + 1), (window, window))
            h_win = jax.lax.dynamic_slice_in_dim(H, k + 1, window, axis=0)
            part = alpha * _gamma_window(h_win, resp, ADJOINT_BLOCK) / num
            gam_row = jax.lax.dynamic_update_slice_in_dim(
                jnp.zeros(width + window), part, k + 1, 0
            )[window:]
            # Exact contractions of the whole row by forward tangents, one pass over the
            # history each: with the constant direction (the row's total mass) and with
            # B (theta^0); with A (theta*) by the z-tangent (Stein for non-smooth links).
            # What the window misses is spread over the older lags as an exponential
            # continuing the window's last lag, with the exact total mass.
            # (two separate matrix-vector products: one over a stacked [2, n, M] history
            # ran at a tenth of the memory bandwidth)
            dg1 = h * (1.0 + Rq[k, :n] @ c["DG1"])
            dgb = h * (Bq[k] + Rq[k, :n] @ c["DGB"])
            total, xg = alpha * jnp.mean(dg1), alpha * jnp.mean(dgb)
            gam_row = gam_row + _tail(total - jnp.sum(part), part[0], start, width)
            c["DG1"], c["DGB"] = c["DG1"].at[k].set(dg1), c["DGB"].at[k].set(dgb)
            if z_tangent:
                c["DGZ"] = c["DGZ"].at[k].set(dgz)
                zg = alpha * jnp.mean(dgz)
            else:
                zg = alpha * jnp.mean(z * g)
            A_next = combine(a_k, A, k) + b_k * zg
            B_next = combine(a_k, B, k) + b_k * xg
            R_next = combine(a_k, R, k) + b_k * (e_k + gam_row @ Rq[:width])
            Rt_next = R_next @ c["L"]
            if noisy:
                Rn_next = combine(a_k, Rn, k) + b_k * (gam_row @ Rnq[:width]) + kick
            c = dict(
                c,
                H=H,
                Gam=c["Gam"].at[k].set(gam_row),
                Gs=c["Gs"].at[k].set(zg - gam_row @ Aq[:width]),
            )
        # Gaussian integration by parts in the whitened seed basis (docs/equations.md#estimators)
        else:
            mask = (jnp.arange(width) < k).astype(g.dtype)
            A_next = combine(a_k, A, k) + b_k * alpha * jnp.mean(z * g)
            B_next = combine(a_k, B, k) + b_k * alpha * jnp.mean(xi * g)
            Rt_next = combine(a_k, Rt, k) + b_k * (l_row + alpha * mask * (eta @ g) / num)
            if noisy:  # Stein on the seeds of the kicks before k (only those that kicked)
                kicked = mask * (plan.sigma != 0)
                Rn_next = combine(a_k, Rn, k) + kick + b_k * alpha * kicked * (eta2 @ g) / num
            R_next = None
        norm2 = A_next**2 + B_next**2 + Rt_next @ Rt_next
        if noisy:
            norm2 = norm2 + Rn_next @ Rn_next
        norm = jnp.sqrt(norm2)
        factor = jnp.where(plan.rescale[k], s0, 1.0) / jnp.where(plan.normalise[k], norm, 1.0)
        c["A"] = A.at[k + 1].set(factor * A_next)
        c["B"] = B.at[k + 1].set(factor * B_next)
        c["Rt"] = Rt.at[k + 1].set(factor * Rt_next)
        if tangent or windowed:
            c["R"] = R.at[k + 1].set(factor * R_next)
        if noisy:
            c["Rn"] = Rn.at[k + 1].set(factor * Rn_next)
        return c

    def full_step(c, k):
        c, r, g, h, dgz = sample_side(c, k)
        q = c["A"][k] ** 2 + c["B"][k] ** 2 + c["Rt"][k] @ c["Rt"][k]
        if noisy:
            q = q + c["Rn"][k] @ c["Rn"][k]
        r_theta = r if iterate_query else fitted(c, k)
        obs = sample_observables(problem, y, z, r_theta, m=c["A"][k], q=q)
        return update(c, k, r, g, h, dgz), obs

    def step(c, k):
        tick(k, progress)
        c, obs = full_step(c, k)
        if handoff is not None:  # the hand-off test on the last 2 L + 1 steps
            now = jnp.stack([obs["overlap"], obs["norm"]])
            recent = jnp.roll(c["recent"], -1, axis=0).at[-1].set(now)
            done = _converged(recent, obs["error"], handoff) & (k >= first + recent.shape[0])
            c = dict(c, recent=recent, done=done)
        return c, obs

    first = 0
    if slot is not None:
        r_vv, m_v = slot
        r, g, h, dgz = slot_side(carry)
        # R(v, v) = R_vv enters the parameter side (R(t+1, v) gains Gam(t, v) R_vv), never
        # the adjoint or the memory term (it is folded into F = T / (1 - R_vv T)).
        carry["R"] = carry["R"].at[0, 0].set(r_vv)
        if not iterate_query:  # the slot's query point is the slot itself
            carry.update(
                Aphi=carry["Aphi"].at[0].set(carry["A"][0]),
                Bphi=carry["Bphi"].at[0].set(carry["B"][0]),
                Rphi=carry["Rphi"].at[0].set(carry["R"][0]),
            )
        carry = update(carry, 0, r, g, h, dgz)
        # v = m_v theta* + R_vv u^v, u^v = L(v, v) eta_0 with L(v, v) from the QR above;
        # theta^0 = s0 v (the rescale slot has b = 0).
        s0_used = carry["A"][1] / m_v
        carry["Rt"] = carry["Rt"].at[0].set(r_vv * carry["L"][0])
        carry["Rt"] = carry["Rt"].at[1].set(s0_used * r_vv * carry["L"][0])
        first = 1
    if handoff is not None:
        if not windowed:
            raise ValueError(
                "handoff needs estimator='windowed' (and a window shorter than the run)"
            )
        carry.update(done=jnp.array(False), recent=jnp.zeros((2 * HANDOFF_LAG + 1, 2)))
    if reverse:
        if handoff is not None:
            raise ValueError("a reverse-mode engine integrates every step: no handoff")
        carry, obs = _checkpointed_scan(step, carry, jnp.arange(first, width))
    elif windowed:  # in chunks that touch only the history written so far
        carry, obs = _scan_live(step, carry, first, width, window)
        if handoff is None:
            obs.pop("handed_off")
    else:
        carry, obs = jax.lax.scan(step, carry, jnp.arange(first, width))
    Rt = carry["Rt"][:width]
    coeffs = jnp.stack([carry["A"][:width], carry["B"][:width]], axis=1)
    cov = coeffs @ coeffs.T + Rt @ Rt.T
    if noisy:
        cov = cov + carry["Rn"][:width] @ carry["Rn"][:width].T
    kernels = {
        "C": cov,
        "Cu": carry["L"] @ carry["L"].T,
        "innovation": jnp.diagonal(carry["L"]),
        "A": carry["A"][:width],
        "B": carry["B"][:width],
    }
    if noisy:
        kernels["Rn"] = carry["Rn"][:width]
    if tangent or windowed:
        kernels.update(R=carry["R"][:width], Gamma=carry["Gam"], Gamma_star=carry["Gs"])
    if law_slots:
        # r^t = A_t z + B_t xi + Rt(t, .) @ P with the final P: rows j >= t of P never
        # enter Rt(t, .) (Rt is strictly lower triangular), and rows j < t are final by t
        slots = jnp.asarray(law_slots)
        sign = jnp.where(carry["A"][slots] >= 0, 1.0, -1.0) if model.even else 1.0
        r_at = (
            carry["A"][slots, None] * z
            + carry["B"][slots, None] * xi
            + carry["Rt"][slots] @ carry["P"]
            + (carry["Rn"][slots] @ eta2 if eta2 is not None else 0.0)
        )
        kernels.update(rows_z=z, rows_y=y, rows_r=r_at * jnp.reshape(sign, (-1, 1)))
    return obs, kernels


def _replica(
    problem: Problem,
    algorithm,
    start,
    key,
    num_samples: int,
    engine: tuple,
    law_times: tuple = (),
    reverse: bool = False,
    progress: bool = False,
):
    """One replica from a `DMFTStart`: observables over `t = 0..T` of the algorithm and
    the kernels on its `(T+1) x (T+1)` grid (the start's slots cut off); the start's own
    diagnostics as `kernels["start_*"]`."""
    slot = start.kind == "slot"
    plan = _plan(problem, algorithm, slot=slot, power_slots=start.power_steps, shift=start.shift)
    first = start.slots
    mask_key = jax.random.fold_in(key, MASK_STREAM)

    def weights(k):  # one row's minibatch masks per sample (None: full batch)
        return algorithm.sample_weights(mask_key, jnp.maximum(k - first, 0), num_samples)

    stochastic = weights(first) is not None
    obs, kernels = _solve_general(
        problem,
        plan,
        key,
        num_samples,
        engine,
        a0=start.a0,
        b0=start.b0,
        slot=start.slot,
        prep=start.prep,
        antithetic=start.antithetic,
        z_tangent=start.z_tangent,
        s0=start.s0,
        law_slots=tuple(first + t for t in law_times),
        reverse=reverse,
        progress=progress,
        weights=weights if stochastic else None,
    )
    extra = {}
    if slot:
        extra["start_norm_v"] = kernels["C"][0, 0]
    if start.power_steps:
        extra["start_power_cosine"] = obs["cosine"][:first]
        obs = jax.tree.map(lambda c: c[first:], obs)
    if first:
        kernels = {
            k: v if k.startswith("rows_") else (v[first:, first:] if v.ndim == 2 else v[first:])
            for k, v in kernels.items()
        }
    return obs, dict(kernels, **extra)


def dmft_replica(
    problem: Problem,
    algorithm,
    init,
    *,
    key,
    num_samples: int,
    estimator=Tangent(),
    spectral_method: str = "slot",
    eps0: float = 0.1,
    laws_at=(),
    reverse_mode: bool = False,
):
    r"""One replica of the DMFT: the traceable engine beneath `solve_dmft`.

    `jax.jit`- and `jax.vmap`-able, and differentiable in every float of `problem`,
    `algorithm` and `init` (a sweep vmaps it over a grid, `tune` differentiates it); no
    Python-level checks, warnings, statistics or hand-off (those are `solve_dmft`'s).
    Arguments as for `solve_dmft` (`estimator` a module: `Tangent()`,
    `IntegrationByParts()` or `Windowed(window)` without hand-off), and:

    - `reverse_mode`: build the engine for reverse-mode derivatives (`jax.grad` of a
      scalar over many parameters, e.g. a step size per step): inner loops of fixed
      length (the exact estimator's adjoint then visits every block, about twice the
      work), and the time loop in `sqrt(T)` checkpointed blocks, so the backward pass
      holds `O(sqrt(T))` copies of the state instead of `T`. Forward mode (`jax.jvp`,
      `jax.jacfwd`) works either way and is cheaper for a few parameters.

    **When derivatives hold.** The Gaussian field of the DMFT is realised on the samples
    through a QR of the past gradients `g_t` (`kernels["innovation"]` is its diagonal).
    Once a run has nearly converged, successive `g_t` are nearly collinear, the
    innovation falls (below about 1e-6 of its largest value), and the M-sample
    realisation of the field rotates at a rate `1 / innovation` in every parameter: the
    value stays accurate, but any pathwise derivative (forward or reverse alike) is then
    dominated by that rotation and no longer follows the smooth trend. Measured on
    Wirtinger flow (alpha 3, noise 0.2, M = 1000, step 0.03): derivatives agree with
    finite differences to 5e-4 at T = 20 (innovation ratio 5e-6) and are off by 2x and
    more from T = 30 (ratio 5e-10). Check the ratio before trusting a gradient.

    **Returns:** `(observables, kernels)`: every observable over `t = 0..T` (arrays), and
    the kernels `C`, `Cu`, `A`, `B`, `innovation` (and `R`, `Gamma`, `Gamma_star` for
    the tangent and windowed estimators) of this replica.
    """
    estimator = as_estimator(estimator)
    start = init.dmft_start(problem, spectral_method=spectral_method, eps0=eps0)
    law_times = tuple(int(t) for t in laws_at)
    return _replica(
        problem, algorithm, start, key, num_samples, estimator.engine, law_times, bool(reverse_mode)
    )


TRACES = {"dmft": 0}


@eqx.filter_jit
def _solve_batch(
    problem, algorithm, start, keys, num_samples, engine, law_times=(), progress: bool = False
):
    """The replicas of `solve_dmft`, from a start fixed before tracing (its closed form
    computed with every setting concrete: a noise-free model is recognised as such)."""
    TRACES["dmft"] += 1

    def one(k):
        return _replica(
            problem, algorithm, start, k, num_samples, engine, law_times, progress=progress
        )

    if engine[0] == "windowed":  # long horizons: one replica's history in memory at a time
        return jax.lax.map(one, keys)
    return jax.vmap(one)(keys)


def solve_dmft(
    problem: Problem,
    algorithm,
    init,
    *,
    num_samples: int,
    key,
    num_replicas: int = 4,
    estimator="tangent",
    window: int | None = None,
    handoff: float | None = None,
    spectral_method: Literal["slot", "prehistory"] = "slot",
    eps0: float = 0.1,
    laws_at=(),
    progress: bool = False,
) -> Trajectory:
    r"""Solve the DMFT of a first-order method (d = infinity) forward in time.

    **Arguments:**

    - `problem`: a `Problem`.
    - `algorithm`: an algorithm: `GradientDescent(step_size, steps)` (a constant step,
      an array or an optax schedule), `HeavyBall`, `Nesterov`, or a user's own
      `AbstractAlgorithm`.
    - `init`: `InformedInit(overlap, norm)` (or `SpectralInit`).
    - `num_samples`: Monte Carlo samples `M` of the sample side, per replica
      (must exceed `steps + 3`, the number of whitened seed directions).
    - `key`: a `jax.random` key.
    - `num_replicas`: independent replicas (vmapped); the result is their mean and
      the standard error is their spread / sqrt(num_replicas).
    - `estimator`: a module, `Tangent()`, `IntegrationByParts()` or
      `Windowed(window, handoff)`, or its name: `"tangent"` (exact per-sample responses by the
      adjoint recursion; about M T^3 / 3 multiply-adds, needs `loss` twice differentiable
      in `r`) or `"ibp"` (Gaussian
      integration by parts in the whitened seed basis; O(M T^2), needs no derivative,
      carries a positive O(1/M) bias in the norm, and returns no `R`/`Gamma`) or
      `"windowed"`, the long-horizon mode (docs/equations.md#estimators): the adjoint runs over the
      last
      `window` lags only; the row contractions with the directions that never decay
      (`theta*`, `theta^0` and the constant, i.e. the row's total mass) come exactly
      from forward tangents, and the mass beyond the window is spread over the older
      lags as an exponential tail. O(M T (T + window^2)), no bias, `R`/`Gamma` kept; a
      window of 40 matches `"tangent"` to 3e-5 over 200 steps of the reference problem.
      Replicas run one after another (memory O(M T) for one replica).
      `info["window_ratio"]` is the largest `|Gamma(t, t-window+1)| / Gamma(t, t)` met,
      the size of what the window cuts; above `WINDOW_WARN` (2e-3) a warning asks for a
      larger window (measured on the reference problem: a ratio of 1.2e-3 moves the
      error by 1.2% of itself, 6.7e-3 by 10%).
      A window at least as long as the run is the exact mode.
    - `window`: lags kept by `"windowed"` (default 40, rounded up to a multiple of 8).
    - `handoff`: `None` (integrate every step) or a tolerance: once the predicted
      remaining change of `(overlap, norm)` (from the block rate of the last 21 steps) is
      below `handoff` times the error, a replica stops integrating and its remaining
      steps are reported as the approach to `fixed_point` at `predicted_rate`,
      `x_inf + (x(t_c) - x_inf) rate^(t - t_c) (t / t_c)^(-3/2)`. `info["handed_off"]`
      and `info["handoff_at"]` (per replica: the last integrated step, -1 for none) say
      so. Needs `estimator="windowed"`, whose replicas run one after another and stop
      integrating there. After the hand-off the standard error shrinks with the
      distance to the fixed point, which is a quadrature result without Monte Carlo
      error.
    - `spectral_method` (with `SpectralInit`): `"slot"` treats the top eigenvector as one
      stationary slot (docs/equations.md#stationary-slot, default); `"prehistory"` runs
      the normalised shifted power method from a start of overlap `eps0` with `K` chosen
      from the predicted spectral gap (docs/equations.md#prehistory). They agree; the
      slot is an order of magnitude cheaper.
      Below the weak-recovery threshold a `SpectralInit` is refused with a ValueError.
    - `laws_at`: steps at which to keep every sample's `(z, y, r^t)`:
      `Trajectory.law("row", t)` is then the DMFT's law of one row (an `EmpiricalLaw`,
      one block per replica). `Trajectory.law("coordinate", t)` (the exact law of
      `(theta*_j, theta^t_j)`) needs nothing kept.
    - `progress`: a live bar (tqdm, on stderr) over the time steps as they are computed
      (a host callback per step from inside the compiled loop; a few microseconds each).
      Compiled separately from a run without it, and (JAX stores no computation with
      host callbacks) never kept in the persistent compilation cache.

    Seeds: `z`, `eps` and the seed of `theta^0` are stratified; the seeds are whitened
    (empirical mean 0, covariance I) and, when `num_samples >= steps + 21`, orthogonal
    on the sample to low-order Hermite features of `(z, eps)`; spectral starts use
    antithetic pairs.

    **Returns:** a `Trajectory` (source `"dmft"`) with `kernels` `C`, `Cu`, `A`
    (= overlap), `B`, `innovation` (the norms of the new directions of the sampled
    gradients, step by step), and for `"tangent"` and `"windowed"` also `R`, `Gamma`,
    `Gamma_star`, averaged over replicas, each with its standard error (`C_se`, ...).

    References: Chen & Shen (2025), arXiv:2509.23527, and docs/equations.md.
    """
    check_problem(problem, algorithm)
    num_samples = check_int("num_samples", num_samples, 2)
    num_replicas = check_int("num_replicas", num_replicas, 2)
    check_key(key)
    estimator = as_estimator(estimator, window=window, handoff=handoff)
    engine = estimator.engine
    if not isinstance(init, AbstractInit):
        raise ValueError(
            f"init must be an initialisation (InformedInit, SpectralInit, ...), "
            f"got {type(init).__name__}"
        )
    if spectral_method not in ("slot", "prehistory"):
        raise ValueError(f"spectral_method must be 'slot' or 'prehistory', got {spectral_method!r}")
    if engine[2] is not None and spectral_method == "prehistory":
        raise ValueError(
            "handoff needs spectral_method='slot': the power phase of the "
            "prehistory would look converged"
        )
    check_real("eps0", eps0)
    eps0 = float(eps0)
    if not 0 < eps0 < 1:
        raise ValueError(f"eps0 must be in (0, 1), got {eps0}")
    from ._simulate import _check_times

    law_times = _check_times(laws_at, algorithm.steps)
    start = init.dmft_start(problem, spectral_method=spectral_method, eps0=eps0)
    if engine[2] is not None and not algorithm.has_fixed_point:
        raise ValueError(
            f"handoff: {type(algorithm).__name__} has no fixed point to hand off to (a "
            "constant-step stochastic method converges to a stationary law): integrate "
            "every step (handoff=None)"
        )
    kicks = algorithm.noise_std() is not None  # the kicks have seeds of their own
    need = start.min_samples(algorithm.steps + (algorithm.steps + start.slots if kicks else 0))
    if start.antithetic and num_samples % 2:
        raise ValueError("a spectral start uses antithetic pairs: num_samples must be even")
    if num_samples < need:
        half = "num_samples / 2" if start.antithetic else "num_samples"
        raise ValueError(
            f"num_samples = {num_samples} is too small: the sample side whitens one Gaussian "
            f"seed per slot (steps + {start.slots + 3} of them"
            f"{', and one per step for the noise' if kicks else ''}"
            f"{' on each half of the antithetic pairs' if start.antithetic else ''}), so "
            f"{half} must exceed {need // (2 if start.antithetic else 1) - 1}"
        )
    check_dmft_resources(num_samples, algorithm.steps + start.slots + 3, num_replicas, engine)
    keys = jax.random.split(key, num_replicas)
    prior = problem.prior
    info = dict(_info(num_samples, num_replicas, engine), **start.info)
    # the start's facts are concrete numbers to report (e.g. the spectral theory's cosine
    # at this alpha): kept out of the compiled function, whose static data they would be,
    # so that a new alpha or preprocessing parameter does not compile anew
    start = dataclasses.replace(start, facts=())
    problem, algorithm, start = as_arrays((problem, algorithm, start))
    args = (problem, algorithm, start, keys, num_samples)
    # every replica's time loop calls back once per step (vmapped replicas: once for all)
    ticks = (start.power_steps + algorithm.steps + 1) * (
        num_replicas if engine[0] == "windowed" else 1
    )
    with progress_bar(ticks, "DMFT", progress):
        obs, kernels = _solve_batch(*args, engine, law_times, progress)
    if spectral_method == "prehistory" and start.kind == "prehistory":
        info["spectral_method"] = "prehistory"
    elif start.kind == "slot":
        info["spectral_method"] = "slot"
    handed = _hand_off(problem, algorithm, obs, info)
    if handed is None:  # no valid fixed point: integrate every step after all
        _refuse_handoff(info)
        with progress_bar(ticks, "DMFT (every step)", progress):
            obs, kernels = _solve_batch(*args, (engine[0], engine[1], None), law_times, progress)
        handed = obs
    kernels = dict(kernels)
    if "innovation" in kernels:  # how far derivatives of this run can be trusted
        inn = np.abs(np.asarray(kernels["innovation"])).reshape(num_replicas, -1)
        ratios = [row[row > 0].min() / row.max() for row in inn if np.any(row > 0)]
        info["innovation_ratio"] = float(min(ratios)) if ratios else float("nan")
    if "start_norm_v" in kernels:
        info["norm_v"] = float(np.asarray(kernels.pop("start_norm_v")).mean())
    if "start_power_cosine" in kernels:
        info["power_cosine"] = np.asarray(kernels.pop("start_power_cosine")).mean(0)
    return on_time_axis(_assemble(handed, kernels, info, law_times, prior), algorithm.times())


def richardson(
    problem: Problem, algorithm, init, *, key, check_order: bool = False, **kwargs
) -> Trajectory:
    r"""The DMFT of gradient flow extrapolated to `dt -> 0`.

    `solve_dmft` integrates a `GradientFlow` by Euler steps of `dt`, so its curves carry
    an `O(dt)` error. This solves it at `dt` and at `dt / 2` (independent keys) and
    returns `2 f(dt/2) - f(dt)` at the grid times of `dt`, with an error `O(dt^2)` once
    `dt` is in the asymptotic regime (`dt` times the largest per-row curvature small:
    after a spectral start that takes a smaller `dt` than after an informed one).

    **Arguments:** as for `solve_dmft` (`algorithm` a `GradientFlow`; `laws_at` and
    `handoff` are not taken), and `check_order`: also solve at `dt / 4`, report the
    observed order `log2(max|f(dt) - f(dt/2)| / max|f(dt/2) - f(dt/4)|)` per observable
    in `info["observed_order"]` (1 for Euler in its asymptotic regime), warn when the
    error's is outside [0.7, 1.4] although its differences are resolved, and
    extrapolate from the finest pair, `2 f(dt/4) - f(dt/2)`.

    **Returns:** a `Trajectory` on the physical time axis (no kernels), whose standard
    errors combine the two solves it extrapolates (`sqrt(4 se_fine^2 + se_coarse^2)`),
    with `info["dt_dependence"]`: per observable, the largest `|f_fine - f_coarse|` over
    the times (the size of the Euler error that was removed), and `info["dt"]`.
    """
    from ._algorithms import GradientFlow

    if not isinstance(algorithm, GradientFlow):
        raise ValueError(
            f"richardson extrapolates a GradientFlow in its step dt, got {type(algorithm).__name__}"
        )
    for name in ("laws_at", "handoff"):
        if kwargs.get(name):
            raise ValueError(f"richardson does not take {name}")
    check_key(key)
    levels = 3 if check_order else 2
    keys = jax.random.split(key, levels)
    runs = []
    for level in range(levels):
        flow = GradientFlow(
            algorithm.dt / 2**level, 2**level * algorithm.steps, algorithm.rtol, algorithm.atol
        )
        runs.append(solve_dmft(problem, flow, init, key=keys[level], **kwargs))
        if runs[-1].diverged:
            raise ValueError(
                f"richardson: the DMFT diverged at dt = {float(algorithm.dt) / 2**level:g}; "
                "lower dt"
            )

    def on_grid(traj, level, field):  # the values at the grid times of dt
        return np.asarray(getattr(traj, field)[name])[:: 2**level]

    coarse, fine = levels - 2, levels - 1
    values, stderr, change, order = {}, {}, {}, {}
    for name in OBSERVABLES:
        f = [on_grid(tr, k, "values") for k, tr in enumerate(runs)]
        se = [on_grid(tr, k, "stderr") for k, tr in enumerate(runs)]
        values[name] = jnp.asarray(2 * f[fine] - f[coarse])
        stderr[name] = jnp.asarray(np.sqrt(4 * se[fine] ** 2 + se[coarse] ** 2))
        change[name] = float(np.max(np.abs(f[fine] - f[coarse])))
        if check_order:
            first, second = np.max(np.abs(f[0] - f[1])), np.max(np.abs(f[1] - f[2]))
            order[name] = float(np.log2(first / second)) if second > 0 else float("inf")
            noise = 3 * float(np.max(np.hypot(se[1], se[2])))
            if name == "error" and second > noise and not 0.7 <= order[name] <= 1.4:
                warnings.warn(
                    f"richardson: the Euler error's observed order is {order[name]:.2f}, not "
                    f"1, between dt = {float(algorithm.dt):g}, /2 and /4: not yet in the "
                    "asymptotic regime, so the extrapolation is not O(dt^2); lower dt",
                    RuntimeWarning,
                    stacklevel=2,
                )
    info = dict(
        runs[coarse].info,
        richardson=True,
        dt=tuple(float(algorithm.dt) / 2**k for k in range(levels)),
        dt_dependence=change,
        fine_info=runs[fine].info,
    )
    if check_order:
        info["observed_order"] = order
    return Trajectory(times=runs[0].times, values=values, stderr=stderr, source="dmft", info=info)


def check_dmft_resources(num_samples: int, width: int, batch: int, engine) -> None:
    """The DMFT's histories are `[width, M]` arrays (about eight of them per replica:
    seeds, QR basis, fields, curvatures, tangents) and its kernels `[width, width]`;
    `batch` replicas (or sweep points) run at once."""
    per_replica = 8.0 * (8 * width * num_samples + 12 * width**2)
    if engine[0] == "windowed":
        per_replica += 8.0 * 2 * engine[1] * num_samples
    check_resources(
        f"the DMFT ({batch} x {num_samples} samples x {width} slots)",
        largest=(width + 2) * num_samples,
        nbytes=batch * per_replica,
        fix="use fewer samples per replica and more replicas (the standard "
        "error falls the same way), or fewer steps (estimator='windowed' "
        "for long runs)",
    )


def _refuse_handoff(info: dict):
    warnings.warn(
        "handoff: the fixed point started from the hand-off values is not valid (error "
        f"{info['handoff_fixed_point_error']:.3g}, converged "
        f"{info['handoff_fixed_point_converged']}), so there is no limit to continue the "
        "curve to; every step was integrated instead (info['handoff_refused'])",
        RuntimeWarning,
        stacklevel=3,
    )
    info.update(handoff_refused=True, handed_off=False)


def _hand_off(problem, algorithm, obs, info: dict):
    """Replace the skipped steps after a hand-off by the approach to the fixed point,
    `x(t) = x_inf + (x(t_c) - x_inf) rate^(t - t_c) (t / t_c)^(-3/2)` per replica, with
    `x_inf` from `fixed_point` (started from the hand-off values) and `rate` from
    `predicted_rate`. Records the hand-off steps in `info`. Returns `None` when the fixed
    point started from the hand-off values is not valid (Newton did not converge, or an
    unstable branch): then there is nothing to continue the curve to."""
    flags = obs.pop("handed_off", None)
    if flags is None:
        return obs
    flags = np.asarray(flags)
    at = np.where(flags.any(axis=1), flags.argmax(axis=1) - 1, -1)  # last integrated step
    info.update(handed_off=bool((at >= 0).any()), handoff_at=at.tolist())
    if not info["handed_off"]:
        return obs
    from ._fixed_point import fixed_point, predicted_rate

    obs = {k: np.array(v) for k, v in obs.items()}
    rows = np.nonzero(at >= 0)[0]
    m0 = float(np.mean([obs["overlap"][r, at[r]] for r in rows]))
    q0 = float(np.mean([obs["norm"][r, at[r]] for r in rows]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        fixed = fixed_point(problem, start=(m0, q0))
    info.update(
        handoff_fixed_point_error=float(fixed.error),
        handoff_fixed_point_converged=bool(fixed.converged),
    )
    if not bool(fixed.valid):
        return None  # no limit to continue to: the caller integrates every step instead
    rate = float(predicted_rate(problem, algorithm, fixed=fixed).rate)
    info.update(handoff_rate=rate)
    steps = np.arange(flags.shape[1])
    for r in rows:
        t_c = at[r]
        later = steps > t_c
        decay = rate ** (steps[later] - t_c) * (steps[later] / max(t_c, 1)) ** -1.5
        for name in OBSERVABLES:
            limit = float(getattr(fixed, name))
            obs[name][r, later] = limit + (obs[name][r, t_c] - limit) * decay
    return obs


def _info(num_samples, num_replicas, engine) -> dict:
    info = dict(num_samples=num_samples, num_replicas=num_replicas, estimator=engine[0])
    if engine[0] == "windowed":
        info.update(window=engine[1])
    return info


def window_ratio(gamma, window: int) -> float:
    """Largest `|Gamma(t, t-window+1)| / |Gamma(t, t)|` over the grid: what the window cuts."""
    t = np.arange(window - 1, gamma.shape[0])
    if t.size == 0:
        return 0.0
    edge = np.abs(gamma[t, t - window + 1]) / np.maximum(np.abs(gamma[t, t]), 1e-300)
    return float(np.max(edge))


def _assemble(obs, kernels, info, law_times=(), prior=None) -> Trajectory:
    """Replica means and standard errors of the observables; replica-mean kernels; the
    row laws kept at `law_times` and the per-replica coefficients of the coordinate law."""
    obs = jax.tree.map(np.asarray, obs)
    ok = first_divergence(obs["norm"]) < 0
    keep = ok if ok.any() else np.ones_like(ok)  # the same replicas as the observables
    kernels = dict(kernels)
    rows = {
        k.removeprefix("rows_"): np.asarray(kernels.pop(k))[keep]
        for k in ("rows_z", "rows_y", "rows_r")
        if k in kernels
    }
    with warnings.catch_warnings():  # diverged replicas overflow (they are cut below)
        warnings.simplefilter("ignore", RuntimeWarning)
        a_runs = np.asarray(kernels["A"])[keep]
        c_diag = np.diagonal(np.asarray(kernels["C"])[keep], axis1=1, axis2=2)
        info = dict(
            info, coordinate_runs={"A": a_runs, "V": c_diag - a_runs**2}, prior=_prior_name(prior)
        )
        runs = {k: np.asarray(v)[keep] for k, v in kernels.items()}
        kernels = {k: jnp.asarray(np.nanmean(v, axis=0)) for k, v in runs.items()}
        if int(keep.sum()) > 1:  # the replica spread of every kernel
            kernels.update(
                {
                    k + "_se": jnp.asarray(np.nanstd(v, axis=0, ddof=1) / np.sqrt(v.shape[0]))
                    for k, v in runs.items()
                }
            )
    if info.get("estimator") == "windowed" and "Gamma" in kernels:
        info = dict(info, window_ratio=window_ratio(np.asarray(kernels["Gamma"]), info["window"]))
        if info["window_ratio"] > WINDOW_WARN:
            warnings.warn(
                f"the memory window of {info['window']} lags cuts a response of relative size "
                f"{info['window_ratio']:.1e} (> {WINDOW_WARN:g}): pass a larger window=",
                RuntimeWarning,
                stacklevel=3,
            )
    traj = finish(obs, "dmft", info)
    traj = eqx.tree_at(lambda t: t.kernels, traj, kernels, is_leaf=lambda x: x is None)
    if law_times:
        laws = {
            ("row", t): {"z": rows["z"], "y": rows["y"], "r": rows["r"][:, i]}
            for i, t in enumerate(law_times)
        }
        traj = eqx.tree_at(lambda t: t.laws, traj, laws, is_leaf=lambda x: x is None)
    return cut_at_divergence(traj)


def _prior_name(prior) -> str:
    from ._models import RademacherPrior

    return "rademacher" if isinstance(prior, RademacherPrior) else "gaussian"
