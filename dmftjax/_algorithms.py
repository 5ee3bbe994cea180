r"""First-order methods as one linear plan (docs/equations.md#first-order-methods).

Every method here is the recursion with a **query point** `phi^t` (where the gradient is
taken) and an **update** over the last `p` iterates,

    phi^t       = sum_{j<p} c[t, j] theta^{t-j}
    theta^{t+1} = sum_{j<p} a[t, j] theta^{t-j} + b[t] (A^T g_t(y, A phi^t) + field^t),

with `g_t = loss'` (`theta^{-j} = theta^0`: no initial velocity). An algorithm is an
Equinox module that states its coefficients (`coefficients`) and its time axis; every
engine reads them:

- the simulator runs the recursion itself at finite `d` (`simulator_step`, written once
  here from the coefficients; a method that is not such a recursion overrides it);
- the DMFT puts `phi` in place of `theta` on every sample-side quantity and the same
  coefficients on the parameter side (`_dmft.py`);
- the long-time tools ask for the contraction of one Hessian mode
  (`mode_contraction`: the largest root modulus of the mode's recursion
  `e^{t+1} = sum_j (a_j + b h c_j) e^{t-j}`), the largest stable Hessian eigenvalue
  (`stability_edge`: what the per-row instability is measured against) and whether a
  fixed point exists (`has_fixed_point`).

A new method is one small subclass of `AbstractAlgorithm` implementing `coefficients`
(see `HeavyBall`). Schedules: `GradientDescent(step_size=...)` takes a constant, an
array of `steps` values, or an optax schedule (a callable of the step number).

References: Polyak (1964) for the heavy ball; Nesterov (1983); Celentano, Montanari and
Wu (2020) for the DMFT of general first-order methods.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ._validate import (
    check_int,
    check_nonnegative,
    check_positive,
    is_bool,
    is_concrete,
    static_int,
)

MASK_STREAM = 0x5EED  # the stream of a run's key (fold_in) that draws its minibatch masks


class Coefficients(eqx.Module):
    """`a` (`[T, p]`), `b` (`[T]`), `c` (`[T, p]`): the plan of `T` steps over the last
    `p` iterates (column `j` multiplies `theta^{t-j}`)."""

    a: Float[Array, "T p"]
    b: Float[Array, " T"]
    c: Float[Array, "T p"]

    @property
    def memory(self) -> int:
        return self.a.shape[1]


def _schedule_values(step_size, steps: int):
    """The step size at `t = 0..steps-1`: a number, an array of `steps` values, or a
    callable of the step number (an optax schedule)."""
    if callable(step_size):
        return jnp.asarray(jax.vmap(step_size)(jnp.arange(steps)), dtype=float)
    eta = jnp.asarray(step_size, dtype=float)
    if eta.ndim == 0:
        return jnp.full(steps, eta)
    return eta


def _check_schedule(step_size, steps: int):
    if is_bool(step_size):
        raise ValueError("step_size must be a number, an array or a schedule, got a bool")
    if callable(step_size):
        try:
            values = np.asarray(_schedule_values(step_size, steps))
        except Exception as err:  # noqa: BLE001 - a user's callable: say what it did
            raise ValueError(
                f"step_size schedule failed on the step numbers 0..{steps - 1}: {err}"
            ) from err
    else:
        if isinstance(step_size, (str, bytes)):
            raise ValueError(f"step_size must be a number, got the string {step_size!r}")
        arr = step_size
        if not is_concrete(arr):
            return
        try:
            values = np.asarray(arr, dtype=float)
        except (TypeError, ValueError) as err:
            raise ValueError(f"step_size must be a number or an array, got {arr!r}") from err
        if values.ndim == 0:
            check_positive("step_size", float(values))
            return
        if values.shape != (steps,):
            raise ValueError(
                f"a step-size array must have one value per step ({steps}), "
                f"got shape {values.shape}"
            )
    if not is_concrete(values):
        return
    if not np.all(np.isfinite(values)) or np.any(values <= 0):
        bad = values[~(np.isfinite(values) & (values > 0))][0]
        raise ValueError(f"every step size must be finite and > 0, got {bad}")


class AbstractAlgorithm(eqx.Module):
    r"""A first-order method of the form of docs/equations.md#first-order-methods.

    Subclasses implement `coefficients(problem)` and declare `steps` (static) and, for a
    method over more than the last iterate, `memory` (`p`). Class attributes:
    `has_fixed_point` (constant-step stochastic methods have a stationary law instead),
    `query_is_iterate` (False when the gradient is taken elsewhere than at `theta^t`,
    as in Nesterov's method).
    """

    # every subclass declares `steps: int = eqx.field(static=True)` (its last field, so
    # that positional arguments read `(step_size, ..., steps)`)
    if TYPE_CHECKING:  # for the type checker only: no field here, so that order is kept

        @property
        def steps(self) -> int: ...

    has_fixed_point: ClassVar[bool] = True
    query_is_iterate: ClassVar[bool] = True  # c = (1, 0, ...): the gradient at theta^t

    @abc.abstractmethod
    def coefficients(self, problem) -> Coefficients:
        """The plan `(a, b, c)` over `steps` steps for `problem` (its ridge enters `a`)."""

    def times(self) -> Float[Array, " T+1"]:
        """The time of each iterate `theta^0..theta^T` (the step number; gradient flow:
        physical time)."""
        return jnp.arange(self.steps + 1, dtype=float)

    # ------------------------------------------------------ stochastic methods' hooks

    def row_weights(self, key, t, num_rows: int):
        """The multiplier of each row's loss gradient at step `t` in the simulator
        (minibatch SGD: `S_i^t / b`, the mask rescaled), or `None` (every row, weight 1).
        `key` is the run's mask key, the same at every step (so that an epoch can be one
        permutation); `t` may be traced."""
        del key, t, num_rows
        return None

    def sample_weights(self, key, t, num_samples: int):
        """The same multiplier in the DMFT, where each Monte Carlo sample is one row of the
        limit: drawn independently across samples from one row's law of its mask
        sequence (docs/equations.md#first-order-methods). Defaults to `row_weights`
        (right when rows are independent, as with Bernoulli masks)."""
        return self.row_weights(key, t, num_samples)

    def noise_std(self):
        """`[T]`: the standard deviation of the independent Gaussian added to each
        coordinate of `theta^{t+1}` (Langevin: `sqrt(2 eta_t T_t)`), or `None`."""
        return None

    # ----------------------------------------------------------------- the simulator

    def simulator_init(self, theta0):
        """The state before step 0: the last `p` iterates, newest first (no velocity)."""
        return jnp.broadcast_to(theta0, (self.memory,) + theta0.shape)

    @property
    def memory(self) -> int:
        return 1

    def simulator_step(self, coefficients: Coefficients, state, t, gradient: Callable, field, key):
        """One step at finite `d`: `gradient(phi)` is `A^T loss'(y, A phi)`; `field` is
        added to it (the probe of the response kernel); `key` for stochastic methods.
        Returns the new state (newest iterate first)."""
        a, b, c = coefficients.a[t], coefficients.b[t], coefficients.c[t]
        phi = jnp.tensordot(c, state, axes=1)
        new = jnp.tensordot(a, state, axes=1) + b * (gradient(phi) + field)
        sigma = self.noise_std()
        if sigma is not None:
            new = new + sigma[t] * jax.random.normal(key, new.shape, new.dtype)
        return jnp.concatenate([new[None], state[:-1]], axis=0)

    # ----------------------------------------------------------- the long-time tools

    def asymptotic(self, problem) -> tuple[np.ndarray, float, np.ndarray]:
        """`(a, b, c)` of the last step (the time-invariant recursion near the limit)."""
        co = self.coefficients(problem)
        return np.asarray(co.a[-1]), float(co.b[-1]), np.asarray(co.c[-1])

    def mode_contraction(self, problem, curvature):
        r"""Per-step contraction of the error mode at Hessian eigenvalue `curvature`
        (`H = A^T D A + lam I`, ridge included): the largest root modulus of
        `x^p = sum_j (a_j + b (H - lam) c_j) x^{p-1-j}` with the last step's
        coefficients. Vectorised over `curvature`."""
        a, b, c = self.asymptotic(problem)
        lam = float(problem.lam)
        h = np.atleast_1d(np.asarray(curvature, dtype=float)) - lam
        out = np.empty(h.shape)
        for i, hh in enumerate(h):
            coef = a + b * hh * c
            roots = np.roots(np.concatenate([[1.0], -coef])) if coef.size > 1 else coef
            out[i] = np.max(np.abs(roots))
        return out if np.ndim(curvature) else float(out[0])

    def stability_edge(self, problem, lower: float = 0.0) -> float:
        """The largest Hessian eigenvalue whose mode still contracts (above `lower`): a
        limit point whose Hessian reaches it is unstable for this method (GD: `2/eta`)."""
        lo = max(float(lower), 0.0)
        # at zero curvature a mode is marginal (contraction 1 without ridge): only a
        # positive lower end can itself be unstable
        if lo > 0.0 and self.mode_contraction(problem, lo) >= 1.0:
            return lo
        hi = max(2.0 * lo, 1.0)
        while self.mode_contraction(problem, hi) < 1.0:
            hi *= 2.0
            if hi > 1e12:
                return float("inf")
        for _ in range(80):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if self.mode_contraction(problem, mid) < 1.0 else (lo, mid)
        return lo


class GradientDescent(AbstractAlgorithm):
    r"""Full-batch gradient descent
    `theta^{t+1} = theta^t - eta_t (A^T loss'(y, A theta^t) + lam theta^t)` for `steps`
    steps.

    **Arguments:**

    - `step_size`: `eta_t`: a number, an array of `steps` values (one per step), or an
      optax schedule (a callable of the step number, e.g.
      `optax.cosine_decay_schedule(0.05, 100)`); differentiable in its parameters.
    - `steps`: the number of steps.
    """

    step_size: float | Array | Callable
    steps: int = eqx.field(static=True, converter=static_int)

    def __check_init__(self):
        check_int("steps", self.steps, 1)
        _check_schedule(self.step_size, self.steps)

    def coefficients(self, problem):
        eta = _schedule_values(self.step_size, self.steps)
        lam = jnp.asarray(problem.lam, dtype=float)
        return Coefficients(a=(1.0 - eta * lam)[:, None], b=-eta, c=jnp.ones((self.steps, 1)))


class _AbstractMomentum(AbstractAlgorithm):
    """A step-size schedule and a constant momentum `beta` over the last two iterates."""

    step_size: eqx.AbstractVar[float | Array | Callable]
    momentum: eqx.AbstractVar[float]

    def __check_init__(self):
        check_int("steps", self.steps, 1)
        _check_schedule(self.step_size, self.steps)
        _check_momentum(self.momentum)

    @property
    def memory(self) -> int:
        return 2

    def _schedule(self, problem):
        """`(eta_t, lam, beta_t)` over the steps."""
        eta = _schedule_values(self.step_size, self.steps)
        lam = jnp.asarray(problem.lam, dtype=float)
        beta = jnp.broadcast_to(jnp.asarray(self.momentum, dtype=float), eta.shape)
        return eta, lam, beta


class HeavyBall(_AbstractMomentum):
    r"""Polyak's heavy-ball momentum, started with zero velocity:
    `theta^{t+1} = theta^t - eta_t (A^T loss'(y, A theta^t) + lam theta^t)
    + beta (theta^t - theta^{t-1})`.

    **Arguments:** `step_size` (as for `GradientDescent`), `momentum` `beta` in [0, 1),
    `steps`.

    This is the worked example of a new method: its plan over the last two iterates is
    `a = (1 - eta lam + beta, -beta)`, `b = -eta`, `c = (1, 0)`; nothing else is needed.
    """

    step_size: float | Array | Callable
    momentum: float
    steps: int = eqx.field(static=True, converter=static_int)

    def coefficients(self, problem):
        eta, lam, beta = self._schedule(problem)
        a = jnp.stack([1.0 - eta * lam + beta, -beta], axis=1)
        c = jnp.broadcast_to(jnp.array([1.0, 0.0]), (self.steps, 2))
        return Coefficients(a=a, b=-eta, c=c)


class Nesterov(_AbstractMomentum):
    r"""Nesterov's accelerated gradient with constant momentum, started with zero
    velocity: `phi^t = theta^t + beta (theta^t - theta^{t-1})`,
    `theta^{t+1} = phi^t - eta_t (A^T loss'(y, A phi^t) + lam phi^t)`.

    **Arguments:** `step_size` (as for `GradientDescent`), `momentum` `beta` in [0, 1),
    `steps`.
    """

    query_is_iterate: ClassVar[bool] = False

    step_size: float | Array | Callable
    momentum: float
    steps: int = eqx.field(static=True, converter=static_int)

    def coefficients(self, problem):
        eta, lam, beta = self._schedule(problem)
        c = jnp.stack([1.0 + beta, -beta], axis=1)
        return Coefficients(a=(1.0 - eta * lam)[:, None] * c, b=-eta, c=c)


SAMPLINGS = ("bernoulli", "fixed", "reshuffle")


class MinibatchSGD(AbstractAlgorithm):
    r"""Minibatch stochastic gradient descent,
    `theta^{t+1} = theta^t - eta_t (A^T (S^t / b) loss'(y, A theta^t) + lam theta^t)`,
    with a mask `S_i^t` in {0, 1} per row of mean `b` (the gradient rescaled by `1/b`,
    so that it is unbiased; the ridge is applied in full at every step).

    **Arguments:**

    - `step_size`: as for `GradientDescent` (a number, an array or a schedule).
    - `batch_fraction`: `b` in (0, 1]: the expected fraction of rows in a batch.
    - `steps`: the number of steps.
    - `sampling`: how the simulator draws the batches: `"bernoulli"` (each row
      independently with probability `b` at every step, the convention of
      SPOC-group/DMFT-integration), `"fixed"` (`round(b n)` rows without replacement
      at every step, rescaled by `n / round(b n)`) or `"reshuffle"` (random
      reshuffling: one permutation per epoch of `1/b` batches, every row exactly once
      per epoch; `1/b` must be an integer). In the DMFT a row's masks are Bernoulli for
      the first two (rows of a fixed-size batch become independent as `n` grows) and,
      for reshuffling, one visit per epoch at a uniform slot, independent across epochs.

    A constant-step SGD converges to a stationary law, not a point: `predicted_rate`
    and the hand-off refuse it; with a decaying schedule (last step below the first)
    the full-batch fixed point is its limit.
    """

    step_size: float | Array | Callable
    batch_fraction: float
    steps: int = eqx.field(static=True, converter=static_int)
    sampling: str = eqx.field(static=True, default="bernoulli")

    def __check_init__(self):
        check_int("steps", self.steps, 1)
        _check_schedule(self.step_size, self.steps)
        check_positive("batch_fraction", self.batch_fraction)
        if is_concrete(self.batch_fraction) and not float(self.batch_fraction) <= 1.0:
            raise ValueError(f"batch_fraction must be in (0, 1], got {float(self.batch_fraction)}")
        if self.sampling not in SAMPLINGS:
            raise ValueError(f"sampling must be one of {SAMPLINGS}, got {self.sampling!r}")
        if self.sampling == "reshuffle":
            if not is_concrete(self.batch_fraction):
                raise ValueError("random reshuffling needs a concrete batch_fraction (1/b batches)")
            k = 1.0 / float(self.batch_fraction)
            if abs(k - round(k)) > 1e-9:
                raise ValueError(
                    "random reshuffling needs 1/batch_fraction to be an integer (batches "
                    f"per epoch), got 1/{float(self.batch_fraction)} = {k:.6g}"
                )

    @property
    def has_fixed_point(self) -> bool:  # type: ignore[override]
        if not (callable(self.step_size) or is_concrete(self.step_size)):
            return False
        eta = np.asarray(_schedule_values(self.step_size, self.steps))
        return bool(eta[-1] < eta[0])

    def coefficients(self, problem):
        return GradientDescent(self.step_size, self.steps).coefficients(problem)

    def _epoch(self):
        """Batches per epoch `1/b` (traceable: checked to be an integer when built)."""
        return jnp.round(1.0 / jnp.asarray(self.batch_fraction, dtype=float)).astype(int)

    def row_weights(self, key, t, num_rows: int):
        b = jnp.asarray(self.batch_fraction, dtype=float)
        if self.sampling == "bernoulli":
            mask = jax.random.bernoulli(jax.random.fold_in(key, t), b, (num_rows,))
            return mask / b
        if self.sampling == "fixed":
            size = jnp.maximum(jnp.round(b * num_rows), 1.0)
            rank = jax.random.permutation(jax.random.fold_in(key, t), num_rows)
            return (rank < size) * (num_rows / size)
        k = self._epoch()
        rank = jax.random.permutation(jax.random.fold_in(key, t // k), num_rows)
        return ((rank * k) // num_rows == t % k) * k.astype(float)

    def sample_weights(self, key, t, num_samples: int):
        b = jnp.asarray(self.batch_fraction, dtype=float)
        if self.sampling != "reshuffle":
            mask = jax.random.bernoulli(jax.random.fold_in(key, t), b, (num_samples,))
            return mask / b
        k = self._epoch()
        slot = jax.random.randint(jax.random.fold_in(key, t // k), (num_samples,), 0, k)
        return (slot == t % k) * k.astype(float)


class Langevin(AbstractAlgorithm):
    r"""Noisy gradient descent (unadjusted Langevin):
    `theta^{t+1} = theta^t - eta_t (A^T loss'(y, A theta^t) + lam theta^t)
    + sqrt(2 eta_t T_t) xi^t`, `xi^t ~ N(0, I_d)` independent of everything else. Its
    stationary law at a constant step approaches the Gibbs measure
    `exp(-(sum_i loss_i + lam |theta|^2 / 2) / T)` as `eta -> 0`.

    **Arguments:** `step_size` (as for `GradientDescent`), `temperature` `T_t >= 0` (a
    number, an array of `steps` values or a schedule), `steps`.

    No fixed point (a stationary law instead): `predicted_rate` and the hand-off refuse
    it.
    """

    has_fixed_point: ClassVar[bool] = False

    step_size: float | Array | Callable
    temperature: float | Array | Callable
    steps: int = eqx.field(static=True, converter=static_int)

    def __check_init__(self):
        check_int("steps", self.steps, 1)
        _check_schedule(self.step_size, self.steps)
        _check_temperature(self.temperature, self.steps)

    def coefficients(self, problem):
        return GradientDescent(self.step_size, self.steps).coefficients(problem)

    def noise_std(self):
        eta = _schedule_values(self.step_size, self.steps)
        temp = _schedule_values(self.temperature, self.steps)
        return jnp.sqrt(2.0 * eta * temp)


class GradientFlow(AbstractAlgorithm):
    r"""Gradient flow `d theta / d tau = -(A^T loss'(y, A theta) + lam theta)` on the
    physical time axis `tau = 0, dt, ..., steps dt` (`Trajectory.times`).

    **Arguments:**

    - `dt`: the DMFT's time step: the DMFT integrates the flow by Euler steps of `dt`
      (gradient descent with step `dt`), so its curves carry an `O(dt)` error;
      `richardson` extrapolates two step sizes to `O(dt^2)` and reports the
      dependence on `dt`.
    - `steps`: the number of steps of `dt` (the horizon is `steps * dt`).
    - `rtol`, `atol` (static): the simulator's tolerances. The simulator integrates the
      finite-`d` ODE between the grid times with diffrax (Tsit5, adaptive steps under a
      PID controller), so the reference does not share the DMFT's time step.
    """

    dt: float
    steps: int = eqx.field(static=True, converter=static_int)
    rtol: float = eqx.field(static=True, default=1e-8)
    atol: float = eqx.field(static=True, default=1e-8)

    def __check_init__(self):
        check_int("steps", self.steps, 1)
        if is_bool(self.dt) or callable(self.dt) or np.ndim(self.dt) != 0:
            raise ValueError(f"dt must be one positive number, got {self.dt!r}")
        check_positive("dt", self.dt)
        for name in ("rtol", "atol"):
            check_positive(name, getattr(self, name))

    def coefficients(self, problem):
        return GradientDescent(self.dt, self.steps).coefficients(problem)

    def times(self):
        return jnp.asarray(self.dt, dtype=float) * jnp.arange(self.steps + 1, dtype=float)

    def simulator_step(self, coefficients, state, t, gradient, field, key):
        import diffrax

        del key
        dt = -coefficients.b[t]
        lam = (1.0 - coefficients.a[t, 0]) / dt

        def flow(tau, theta, args):
            return -(gradient(theta) + field + lam * theta)

        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(flow),
            diffrax.Tsit5(),
            t0=0.0,
            t1=dt,
            dt0=dt / 4,
            y0=state[0],
            stepsize_controller=diffrax.PIDController(rtol=self.rtol, atol=self.atol),
            adjoint=diffrax.ForwardMode(),  # the simulator's response probe is a jvp
            max_steps=4096,
            throw=False,  # a flow that blows up ends non-finite: reported as diverged
        )
        return sol.ys[-1][None]


def _check_temperature(temperature, steps: int):
    if is_bool(temperature) or isinstance(temperature, (str, bytes)):
        raise ValueError(
            f"temperature must be a number, an array or a schedule, got {temperature!r}"
        )
    if not (callable(temperature) or is_concrete(temperature)):
        return
    try:
        values = np.asarray(_schedule_values(temperature, steps), dtype=float)
    except Exception as err:  # noqa: BLE001 - a user's value or callable: say what it did
        raise ValueError(f"temperature could not be read as {steps} values: {err}") from err
    if values.shape != (steps,):
        raise ValueError(
            f"a temperature array must have one value per step ({steps}), got shape {values.shape}"
        )
    if not np.all(np.isfinite(values)) or np.any(values < 0):
        bad = values[~(np.isfinite(values) & (values >= 0))][0]
        raise ValueError(f"every temperature must be finite and >= 0, got {bad}")


def _check_momentum(beta):
    check_nonnegative("momentum", beta)
    if is_concrete(beta) and not float(beta) < 1.0:
        raise ValueError(f"momentum must be in [0, 1), got {float(beta)}")


__all__ = [
    "AbstractAlgorithm",
    "Coefficients",
    "GradientDescent",
    "GradientFlow",
    "HeavyBall",
    "Langevin",
    "MinibatchSGD",
    "Nesterov",
]
