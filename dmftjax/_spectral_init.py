r"""The spectral start at finite `d`: the top eigenvector of `D = sum_i T(y_i) a_i a_i^T`.

Two eigensolvers:

- `"dense"`: form `D = A^T diag(T) A` (`n d^2` flops, `d^2` memory) and call
  `jnp.linalg.eigh`.
- `"lanczos"`: matrix-free, only products `v -> A^T (T * (A v))` (`2 n d` flops each).
  Lanczos with full reorthogonalisation (classical Gram-Schmidt, twice); the top Ritz
  pair is checked every `chunk` steps and the solve stops once the residual
  `|D x - lam1 x| <= tol |lam1| + 64 eps spread`; after `steps` steps it restarts from
  the Ritz vector (at most `max_restarts` times). Lanczos needs no
  shift: unlike a power method it is not dominated by a very negative `lam_min(D)`
  (Mondelli-Montanari, clipped Luo-Alghamdi-Lu: `lam_min` about -5 to -7), because the
  Krylov space resolves both ends of the spectrum at once. Its speed depends on the gap
  `lam_1 - lam_2` relative to the spread of the spectrum, so an unclipped
  `LuoAlghamdiLu` (spectrum reaching -1e8 once `y_i` is tiny) converges slowly; clip
  it, or use the dense solver.

`"auto"` picks dense for `d <= dense_max_dim` (default 300; Lanczos is 9-19x faster from
d = 1000 on, see benchmarks/results/eigensolver.json) and Lanczos above. Both run inside
`jit`, `vmap` and `lax.map` (fixed shapes, a `while_loop` for restarts).
"""

from __future__ import annotations

import math
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ._preprocess import AbstractPreprocessing
from ._problem import AbstractInit, DMFTStart, Problem, check_problem
from ._simulate import num_rows
from ._spectral import spectral_theory, weak_recovery_threshold
from ._validate import (
    as_arrays,
    check_int,
    check_key,
    check_positive,
    check_precision,
    check_resources,
    is_concrete,
)

_METHODS = ("auto", "dense", "lanczos")


MAX_POWER_STEPS = 2000


class _Negated(AbstractPreprocessing):
    """`-T`: its top bulk edge is minus the bottom edge of the spectrum of `D`."""

    inner: AbstractPreprocessing

    def __call__(self, y):
        return -self.inner(y)

    def breakpoints(self):
        return self.inner.breakpoints()


def check_outlier(problem, init):
    """The closed form of the start; refuses (ValueError) without an outlier."""
    theory = spectral_theory(problem, init.preprocessing)
    if not is_concrete(theory.has_outlier):
        # inside a trace even constant inputs give traced results (a sweep over the
        # algorithm's fields from this start): the engines check before tracing
        return theory
    if not bool(theory.has_outlier):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            thr = float(weak_recovery_threshold(problem.model, init.preprocessing))
        if math.isfinite(thr):
            where = f"the weak-recovery threshold of this preprocessing is alpha = {thr:.4g}"
        else:
            where = "no alpha up to 1000 gives an outlier with this preprocessing"
        raise ValueError(
            f"no spectral outlier at alpha = {float(problem.alpha):.4g}: the top eigenvector "
            f"carries no overlap, so spectral-initialised GD has no meaningful DMFT; {where}. "
            f"{theory.explanation}"
        )
    return theory


def power_schedule(problem, init, eps0: float, tol: float = 1e-2):
    """`(shift, K, rho)` for the prehistory from the predicted spectrum of `D`."""
    theory = check_outlier(problem, init)
    lam1, lam2 = float(theory.top_eigenvalue), float(theory.bulk_edge)
    neg = spectral_theory(problem, _Negated(init.preprocessing.specialise(problem.alpha)))
    lam_min = -float(neg.bulk_edge)
    if not math.isfinite(lam_min):
        raise ValueError(
            "the preprocessing is unbounded below, so the spectrum of D has no bottom edge and "
            "no shift makes the power method converge; clip it from below "
            "(e.g. LuoAlghamdiLu(clip=-5)) or use the stationary slot"
        )
    shift = -(lam2 + lam_min) / 2
    rho = (lam2 - lam_min) / 2 / (lam1 + shift)
    if not 0 < rho < 1:
        raise ValueError(
            f"the shifted power method does not contract here (rate {rho:.4g}); use "
            "spectral_method='slot'"
        )
    steps = int(math.ceil(math.log(tol * eps0) / math.log(rho)))
    if steps > MAX_POWER_STEPS:
        raise ValueError(
            f"the prehistory would need {steps} power steps (spectral gap too small: rate "
            f"{rho:.4g}, close to the weak-recovery threshold); use spectral_method='slot'"
        )
    return shift, steps, rho


class EigenInfo(eqx.Module):
    """Diagnostics of one eigensolve: the Ritz residual `|D x - lam1 x|`, the scale of
    the spectrum seen (`spread`, about `max|eigenvalue|`), the number of products with
    `D` (0 for dense) and whether the residual met the tolerance."""

    residual: Float[Array, ""]
    spread: Float[Array, ""]
    matvecs: Array
    converged: Array


def _dense_top(a, t):
    mat = jnp.einsum("ni,nj->ij", a * t[:, None], a)
    w, v = jnp.linalg.eigh(mat)
    x = v[:, -1]
    spread = jnp.maximum(jnp.abs(w[0]), jnp.abs(w[-1]))
    res = jnp.linalg.norm(mat @ x - w[-1] * x)
    info = EigenInfo(
        residual=res, spread=spread, matvecs=jnp.asarray(0), converged=jnp.asarray(True)
    )
    return w[-1], x, info


def _lanczos_top(a, t, *, key, steps: int, chunk: int, max_restarts: int, tol: float):
    """Lanczos with full reorthogonalisation; the Ritz pair is checked every `chunk`
    steps (stop when converged); after `steps` steps, restart from the Ritz vector."""
    d = a.shape[1]
    dtype = a.dtype
    steps = min(steps, d)
    chunk = min(chunk, steps)
    steps = chunk * (steps // chunk)
    rows = jnp.arange(steps + 1)
    idx = jnp.arange(steps)
    cols = jnp.arange(1, d + 1, dtype=dtype)
    eps = jnp.finfo(dtype).eps

    def matvec(v):
        return (t * (a @ v)) @ a  # row-vector form: XLA:CPU is slow on a.T @ u

    def orthogonalise(basis, w, j):
        # w: [k, d], several vectors at once (one pass over the basis for all of them).
        mask = (rows <= j).astype(dtype)
        for _ in range(2):  # twice is enough (Kahan-Parlett)
            w = w - (jnp.einsum("sd,kd->ks", basis, w) * mask) @ basis
        return w

    def step(j, carry):
        basis, alphas, betas, salt = carry
        vj = basis[j]
        w = matvec(vj)
        alpha = vj @ w
        w0_norm = jnp.linalg.norm(w)
        # A random direction, used only on breakdown (an invariant subspace, e.g. D of
        # rank < steps when alpha < 1): Lanczos then continues with it, coupled by
        # beta = 0. Orthogonalised together with w, so it costs no extra pass.
        r = jnp.sin((j + 1.0) * 12.9898 * cols + 78.233 * salt)  # fixed, pseudo-random
        w, r = orthogonalise(basis, jnp.stack([w, r]), j)
        beta = jnp.linalg.norm(w)
        broke = beta <= 1e-12 * jnp.maximum(w0_norm, jnp.abs(alpha))
        nxt = jnp.where(broke, r / jnp.linalg.norm(r), w / jnp.where(broke, 1.0, beta))
        beta = jnp.where(broke, 0.0, beta)
        return basis.at[j + 1].set(nxt), alphas.at[j].set(alpha), betas.at[j].set(beta), salt

    def ritz(alphas, betas, basis, j):
        # Top eigenpair of the tridiagonal T_j, padded to a fixed size by decoupled
        # entries below its top eigenvalue: the eigenvalue by Sturm multisection, the
        # vector by inverse iteration, then the Rayleigh quotient. (jnp.linalg.eigh on
        # CPU is erratic above 64 x 64, up to 100 ms for 160 x 160, and
        # jax.scipy.linalg.eigh_tridiagonal is slow to compile.)
        valid = idx < j
        top_alpha = jnp.max(jnp.where(valid, alphas, -jnp.inf))
        pad = top_alpha - 1.0 - jnp.abs(top_alpha)
        diag = jnp.where(valid, alphas, pad)
        off = jnp.where(idx[:-1] < j - 1, betas[:-1], 0.0)
        spread = jnp.max(jnp.where(valid, jnp.abs(alphas), 0.0)) + 2 * jnp.max(off)
        hi = _top_tridiagonal_eigenvalue(diag, off, top_alpha, spread)
        shift = hi + 4 * eps * spread
        dl = jnp.concatenate([jnp.zeros(1, dtype), off])
        du = jnp.concatenate([off, jnp.zeros(1, dtype)])
        y = valid.astype(dtype)
        for _ in range(3):
            y = jax.lax.linalg.tridiagonal_solve(dl, diag - shift, du, y[:, None])[:, 0]
            y = y / jnp.linalg.norm(y)
        # Rayleigh quotient: accurate to residual^2 / gap.
        ty = diag * y + jnp.concatenate([off * y[1:], jnp.zeros(1, dtype)])
        ty = ty + jnp.concatenate([jnp.zeros(1, dtype), off * y[:-1]])
        theta = y @ ty
        x = y @ basis[:steps]
        residual = jnp.abs(betas[j - 1] * y[j - 1])
        return theta, x / jnp.linalg.norm(x), residual, spread

    def converged(theta, residual, spread):
        # Relative to the top eigenvalue, down to the rounding floor of the spectrum.
        return residual <= tol * jnp.abs(theta) + 64 * eps * spread

    def cond(state):
        *_, cycle, _, theta, res, spread, _ = state
        return (cycle < max_restarts) & ~converged(theta, res, spread)

    def body(state):
        basis, alphas, betas, j, cycle, x, theta, res, spread, count = state
        restart = j >= steps
        basis = jnp.where(restart, jnp.zeros_like(basis).at[0].set(x), basis)
        alphas = jnp.where(restart, 0.0, alphas)
        betas = jnp.where(restart, 0.0, betas)
        cycle = cycle + restart
        j = jnp.where(restart, 0, j)
        basis, alphas, betas, _ = jax.lax.fori_loop(
            j, j + chunk, step, (basis, alphas, betas, jnp.asarray(cycle, dtype))
        )
        j = j + chunk
        theta, x, res, spread = ritz(alphas, betas, basis, j)
        return basis, alphas, betas, j, cycle, x, theta, res, spread, count + chunk

    v0 = jax.random.normal(key, (d,), dtype)
    basis = jnp.zeros((steps + 1, d), dtype).at[0].set(v0 / jnp.linalg.norm(v0))
    zeros = jnp.zeros(steps, dtype)
    inf = jnp.asarray(jnp.inf, dtype)
    state = (basis, zeros, zeros, 0, 0, v0, inf, inf, inf, 0)
    state = body(state)
    _, _, _, _, _, x, theta, res, spread, count = jax.lax.while_loop(cond, body, state)
    info = EigenInfo(
        residual=res, spread=spread, matvecs=count, converged=converged(theta, res, spread)
    )
    return theta, x, info


def _top_tridiagonal_eigenvalue(diag, off, lower, spread, rounds: int = 10, points: int = 32):
    """Upper end of a bracket of width ~eps * spread on the top eigenvalue of the
    symmetric tridiagonal matrix (`lower` <= it), by Sturm counts at `points` abscissae
    per round."""
    zero = jnp.zeros(1, diag.dtype)
    hi = jnp.max(
        diag + jnp.abs(jnp.concatenate([off, zero])) + jnp.abs(jnp.concatenate([zero, off]))
    )
    k = diag.shape[0]
    off2 = off**2
    tiny = jnp.finfo(diag.dtype).tiny

    def below(xs):  # number of eigenvalues < x, for each x
        def pivot(q, inputs):
            di, ei2 = inputs
            q = di - xs - ei2 / q
            q = jnp.where(q == 0, -tiny, q)
            return q, q < 0

        q0 = diag[0] - xs
        q0 = jnp.where(q0 == 0, -tiny, q0)
        _, neg = jax.lax.scan(pivot, q0, (diag[1:], off2))
        return (q0 < 0) + jnp.sum(neg, axis=0)

    frac = jnp.arange(1, points + 1, dtype=diag.dtype) / (points + 1)

    def round_(_, bracket):
        lo, hi = bracket
        xs = lo + (hi - lo) * frac
        all_below = below(xs) == k  # x above the top eigenvalue
        new_hi = jnp.min(jnp.where(all_below, xs, hi))
        new_lo = jnp.max(jnp.where(all_below, lo, xs))
        return new_lo, new_hi

    lo = jnp.minimum(lower, hi) - 1e-3 * spread
    _, hi = jax.lax.fori_loop(0, rounds, round_, (lo, hi + 1e-3 * spread))
    return hi


@eqx.filter_jit
def _top_eigenpair(a, t, key, method, dense_max_dim, steps, chunk, max_restarts, tol):
    d = a.shape[-1]
    if method == "dense" or (method == "auto" and d <= dense_max_dim):
        return _dense_top(a, t)
    return _lanczos_top(a, t, key=key, steps=steps, chunk=chunk, max_restarts=max_restarts, tol=tol)


def top_eigenpair(
    a: Float[Array, "n d"],
    t: Float[Array, " n"],
    *,
    key,
    method: str = "auto",
    dense_max_dim: int = 300,
    steps: int = 160,
    chunk: int = 10,
    max_restarts: int = 20,
    tol: float = 1e-10,
):
    r"""Top eigenvalue and unit eigenvector of `D = A^T diag(t) A = sum_i t_i a_i a_i^T`.

    **Arguments:**

    - `a`: the design, rows `a_i` (`[n, d]`); `t`: the weights `T(y_i)` (`[n]`).
    - `key`: start vector of the iterative solver.
    - `method`: `"auto"` (dense for `d <= dense_max_dim`), `"dense"` or `"lanczos"`.
    - `steps`: Krylov dimension before a restart; `chunk`: steps between convergence
      checks; `max_restarts`: cap on restarts; `tol`: the solve stops when the Ritz
      residual `|D x - lam1 x| <= tol |lam1| + 64 eps spread` (the second term is the
      rounding floor of a spectrum of width `spread`).

    **Returns:** `(lam1, x, info)` with `|x| = 1` and an `EigenInfo`.
    """
    check_precision()
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    check_key(key)
    check_int("dense_max_dim", dense_max_dim, 1)
    check_int("steps", steps, 2)
    check_int("chunk", chunk, 1)
    check_int("max_restarts", max_restarts, 1)
    check_positive("tol", tol)
    if jnp.ndim(a) != 2 or jnp.ndim(t) != 1 or jnp.shape(t)[0] != jnp.shape(a)[0]:
        raise ValueError(
            f"a must be [n, d] and t [n]; got shapes {jnp.shape(a)} and {jnp.shape(t)}"
        )
    if is_concrete(a) and is_concrete(t):
        for name, x in (("a", a), ("t", t)):
            finite = jnp.isfinite(x)
            if not bool(jnp.all(finite)):
                raise ValueError(
                    f"{name} has {int(jnp.size(x) - jnp.sum(finite))} non-finite "
                    "entries: the eigenpair of such a matrix is not defined"
                )
    return _top_eigenpair(a, t, key, method, dense_max_dim, steps, chunk, max_restarts, tol)


class SpectralInit(AbstractInit):
    r"""Spectral start: `theta^0 = scale * v`, `v` the top eigenvector of
    `D = sum_i T(y_i) a_i a_i^T` with `|v|^2 = d` and `<v, theta*> >= 0`.

    **Arguments:**

    - `preprocessing`: the preprocessing `T` (an `AbstractPreprocessing`).
    - `scale`: `theta^0 = scale * v`; `None` (default) uses
      `problem.model.default_scale(y)` (`sqrt(mean y)` for phase retrieval).
    - `method`: eigensolver, `"auto"` | `"dense"` | `"lanczos"` (see `top_eigenpair`).
    - `dense_max_dim`: the largest `d` for which `"auto"` uses the dense solver.
    - `lanczos_steps`, `max_restarts`, `tol`: settings of the iterative solver.

    The closed form of this start is `spectral_theory(problem, preprocessing)`.
    """

    preprocessing: AbstractPreprocessing
    scale: float | None = None
    method: str = eqx.field(static=True, default="auto")
    dense_max_dim: int = eqx.field(static=True, default=300)
    lanczos_steps: int = eqx.field(static=True, default=160)
    max_restarts: int = eqx.field(static=True, default=20)
    tol: float = eqx.field(static=True, default=1e-10)

    def __check_init__(self):
        if not isinstance(self.preprocessing, AbstractPreprocessing):
            raise ValueError(
                "preprocessing must be a dmftjax AbstractPreprocessing, got "
                f"{type(self.preprocessing).__name__}"
            )
        if self.scale is not None:
            check_positive("scale", self.scale)
        if self.method not in _METHODS:
            raise ValueError(f"method must be one of {_METHODS}, got {self.method!r}")
        check_int("dense_max_dim", self.dense_max_dim, 1)
        check_int("lanczos_steps", self.lanczos_steps, 2)
        check_int("max_restarts", self.max_restarts, 1)
        check_positive("tol", self.tol)

    def eigenpair(self, problem: Problem, theta_star, a, y, *, key):
        """`(lam1, v, info)`: top eigenvalue of `D`, `v` with `|v|^2 = d` aligned with
        `theta*`, and the solver's `EigenInfo`."""
        prep = self.preprocessing.specialise(problem.alpha)
        t = jax.vmap(prep)(y)
        lam, x, info = top_eigenpair(
            a,
            t,
            key=key,
            method=self.method,
            dense_max_dim=self.dense_max_dim,
            steps=self.lanczos_steps,
            max_restarts=self.max_restarts,
            tol=self.tol,
        )
        d = a.shape[-1]
        sign = jnp.where(x @ theta_star >= 0, 1.0, -1.0)
        return lam, sign * jnp.sqrt(d) * x, info

    def simulator_start(self, problem, theta_star, a, y, *, key):
        return self.simulator_start_with_info(problem, theta_star, a, y, key=key)[0]

    def dmft_start(self, problem, *, spectral_method="slot", eps0=0.1):
        """The stationary slot (`"slot"`, docs/equations.md#stationary-slot: `(R_vv, m_v)`
        from the closed form; traceable, so a sweep can vary `alpha` or the preprocessing) or
        the power-method prehistory (`"prehistory"`: `K` and the shift from the predicted
        spectrum, fixed before tracing). Refuses, when its inputs are concrete, a start
        without a spectral outlier."""
        prep = self.preprocessing.specialise(problem.alpha)
        z_tangent = problem.model.smooth and len(prep.breakpoints()) == 0
        concrete = all(is_concrete(leaf) for leaf in jax.tree.leaves((problem, self)))
        if concrete:
            theory = check_outlier(problem, self)
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                theory = spectral_theory(problem, self.preprocessing)
        info = {}
        if concrete and is_concrete(theory.cosine2):
            info = dict(
                cosine2_theory=float(theory.cosine2),
                top_eigenvalue=float(theory.top_eigenvalue),
                R_vv=float(theory.R_vv),
            )
        if spectral_method == "slot":
            return DMFTStart(
                kind="slot",
                a0=theory.m_v,
                b0=0.0,
                z_tangent=z_tangent,
                slot=(theory.R_vv, theory.m_v),
                prep=prep,
                s0=self.scale,
                antithetic=True,
                facts=tuple(info.items()),
            )
        if not concrete:
            raise ValueError(
                "the power-method prehistory fixes its number of steps from the "
                "spectrum before tracing: use spectral_method='slot' in a "
                "traced (swept, differentiated) DMFT"
            )
        shift, steps, rate = power_schedule(problem, self, eps0)
        info.update(power_steps=steps, shift=shift, power_rate=rate)
        return DMFTStart(
            kind="prehistory",
            a0=eps0,
            b0=math.sqrt(1 - eps0**2),
            z_tangent=z_tangent,
            prep=prep,
            s0=self.scale,
            power_steps=steps,
            shift=shift,
            antithetic=True,
            facts=tuple(info.items()),
        )

    def simulator_start_with_info(self, problem, theta_star, a, y, *, key):
        lam, v, info = self.eigenpair(problem, theta_star, a, y, key=key)
        scale = problem.model.default_scale(y) if self.scale is None else self.scale
        diagnostics = {
            "eigensolver_converged": info.converged,
            "eigensolver_residual": info.residual / jnp.abs(lam),
        }
        return scale * v, diagnostics


class SpectralSimulation(eqx.Module):
    """Measured spectral start over seeds: `cosine2` (squared cosine between `v` and
    `theta*`) and `top_eigenvalue` of `D`, each as a seed mean with its standard error,
    the per-seed values, and the eigensolver diagnostics."""

    cosine2: float
    cosine2_stderr: float
    top_eigenvalue: float
    top_eigenvalue_stderr: float
    per_seed: dict
    converged: bool
    max_relative_residual: float
    info: dict = eqx.field(default_factory=dict)


def _draw_data(problem, dim: int, n: int, key):
    # The same draws as the simulator's `draw_data` (same key splits), kept here so that
    # this module does not depend on the simulator's internals.
    k_theta, k_a, k_eps = jax.random.split(key, 3)
    theta_star = problem.prior.sample((dim,), key=k_theta)
    a = jax.random.normal(k_a, (n, dim)) / jnp.sqrt(dim)
    eps = jax.random.normal(k_eps, (n,))
    y = jax.vmap(problem.model.link)(a @ theta_star, eps)
    return theta_star, a, y


# spectral_simulation runs in three compiled pieces so that one compilation of the data
# and of the eigensolver serves every preprocessing (only the cheap `T(y)` recompiles).


@eqx.filter_jit
def _draw_batch(problem, keys, dim: int, n: int):
    def one(key):
        k_data, k_init = jax.random.split(key)  # as in the simulator
        theta_star, a, y = _draw_data(problem, dim, n, k_data)
        return theta_star, a, y, k_init

    return jax.lax.map(one, keys)


@eqx.filter_jit
def _weights_batch(prep, y):
    return jax.vmap(jax.vmap(prep))(y)


@eqx.filter_jit
def _solve_batch(theta_star, a, t, keys, settings: tuple):
    method, dense_max_dim, steps, chunk, max_restarts, tol = settings

    def one(args):
        ts, aa, tt, key = args
        lam, x, info = _top_eigenpair(
            aa, tt, key, method, dense_max_dim, steps, chunk, max_restarts, tol
        )
        cos2 = (x @ ts) ** 2 / ((x @ x) * (ts @ ts))
        return dict(
            cosine2=cos2,
            top_eigenvalue=lam,
            residual=info.residual / jnp.abs(lam),
            converged=info.converged,
            matvecs=info.matvecs,
        )

    return jax.lax.map(one, (theta_star, a, t, keys))


def spectral_simulation(
    problem: Problem,
    preprocessing: AbstractPreprocessing,
    *,
    dim: int,
    num_seeds: int,
    key,
    method: str = "auto",
    memory_budget: float = 1.0e9,
) -> SpectralSimulation:
    r"""Measure the spectral start at dimension `dim`: for each seed draw
    `(theta*, A, eps)` (the same draws as `simulate` for the same key), compute the top eigenpair of
    `D = sum_i T(y_i) a_i a_i^T`, and report the squared cosine with `theta*` and the
    top eigenvalue (seed mean and standard error), to check `spectral_theory`.

    **Arguments:**

    - `problem`: the `Problem` (its model, prior and `alpha`).
    - `preprocessing`: the preprocessing `T`.
    - `dim`: the dimension `d` (`n = round(alpha d)`); `num_seeds` (>= 2); `key`.
    - `method`: eigensolver (`"auto"`, `"dense"`, `"lanczos"`).
    - `memory_budget`: bytes of design matrices held at once (seeds run in chunks of
      that size).

    **Returns:** a `SpectralSimulation`; warns when an iterative solve did not converge.
    """
    check_problem(problem)
    init = SpectralInit(preprocessing, method=method)
    dim = check_int("dim", dim, 2)
    num_seeds = check_int("num_seeds", num_seeds, 2)
    check_key(key)
    n = num_rows(problem, dim)
    dense = method == "dense" or (method == "auto" and dim <= init.dense_max_dim)
    per_seed = 8.0 * (n * dim + (dim * dim * 2 if dense else 0))
    check_positive("memory_budget", memory_budget)
    check_resources(
        f"spectral_simulation (dim = {dim}, {n} rows)",
        largest=max(n * dim, dim * dim if dense else 0),
        nbytes=per_seed,
        fix="use a smaller dim",
    )
    check_resources(
        f"spectral_simulation ({num_seeds} seeds)",
        largest=4 * num_seeds,
        nbytes=8.0 * 8 * num_seeds + per_seed,
        fix="use fewer seeds",
    )
    chunk = int(max(1, min(num_seeds, memory_budget // per_seed)))
    keys = jax.random.split(key, num_seeds)
    # Floats as arrays: one compilation serves every alpha, noise and threshold value.
    problem, prep = as_arrays((problem, preprocessing.specialise(problem.alpha)))
    settings = (
        init.method,
        init.dense_max_dim,
        init.lanczos_steps,
        10,
        init.max_restarts,
        init.tol,
    )
    parts = []
    for start in range(0, num_seeds, chunk):
        theta_star, a, y, k_init = _draw_batch(problem, keys[start : start + chunk], dim, n)
        t = _weights_batch(prep, y)
        parts.append(_solve_batch(theta_star, a, t, k_init, settings))
        del a
    out = {k: np.concatenate([np.asarray(p[k]) for p in parts]) for k in parts[0]}
    converged = bool(out["converged"].all())
    if not converged:
        warnings.warn(
            f"the iterative eigensolver did not converge on {int((~out['converged']).sum())} "
            f"of {num_seeds} seeds (largest relative residual {out['residual'].max():.1e}); "
            "use method='dense', clip the preprocessing from below, or raise max_restarts",
            RuntimeWarning,
            stacklevel=2,
        )

    def mean_se(x):
        return float(x.mean()), float(x.std(ddof=1) / np.sqrt(x.size))

    c, c_se = mean_se(out["cosine2"])
    lam, lam_se = mean_se(out["top_eigenvalue"])
    return SpectralSimulation(
        cosine2=c,
        cosine2_stderr=c_se,
        top_eigenvalue=lam,
        top_eigenvalue_stderr=lam_se,
        per_seed=dict(
            cosine2=out["cosine2"], top_eigenvalue=out["top_eigenvalue"], matvecs=out["matvecs"]
        ),
        converged=converged,
        max_relative_residual=float(out["residual"].max()),
        info=dict(dim=dim, rows=n, num_seeds=num_seeds, method="dense" if dense else "lanczos"),
    )


__all__ = ["SpectralInit", "SpectralSimulation", "spectral_simulation", "top_eigenpair"]
