"""The learning problem and the initialisations (the algorithms: `_algorithms.py`)."""

from __future__ import annotations

import abc
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._losses import AbstractLoss, Ridge
from ._models import (
    AbstractBinaryModel,
    AbstractModel,
    AbstractPrior,
    GaussianPrior,
    check_label_law,
)
from ._validate import check_nonnegative, check_positive, check_precision, check_real, is_concrete


class Problem(eqx.Module):
    r"""Empirical risk `sum_i loss(y_i, <a_i, theta>) + (lam/2)|theta|^2` with
    `y_i = f(<a_i, theta*>, eps_i)`, `a_i ~ N(0, I_d / d)`, `n = alpha d`.

    **Arguments:**

    - `model`: the link `f` (e.g. `PhaseRetrieval(noise=0.1)`).
    - `loss`: the per-sample loss (e.g. `WirtingerLoss()`).
    - `alpha`: sample ratio `n/d` (the paper's `delta = d/n = 1/alpha`).
    - `regulariser`: `Ridge(lam)`; default `Ridge(0.0)`.
    - `prior`: law of the entries of `theta*` (`E theta*_j^2 = 1`); default Gaussian.
    """

    model: AbstractModel
    loss: AbstractLoss
    alpha: float
    regulariser: Ridge = Ridge(0.0)
    prior: AbstractPrior = GaussianPrior()

    def __check_init__(self):
        if not isinstance(self.model, AbstractModel):
            raise ValueError(f"model must be an AbstractModel, got {type(self.model).__name__}")
        if not isinstance(self.loss, AbstractLoss):
            raise ValueError(f"loss must be an AbstractLoss, got {type(self.loss).__name__}")
        if not isinstance(self.regulariser, Ridge):
            raise ValueError("regulariser must be Ridge(lam)")
        if not isinstance(self.prior, AbstractPrior):
            raise ValueError(f"prior must be an AbstractPrior, got {type(self.prior).__name__}")
        check_positive("alpha", self.alpha)
        check_nonnegative("lam (the ridge strength)", self.regulariser.lam)
        for name in ("noise",):
            if hasattr(self.model, name):
                check_nonnegative(f"model.{name}", getattr(self.model, name))
        _check_labels(self.model, self.loss)
        if isinstance(self.model, AbstractBinaryModel):
            check_label_law(self.model)

    @property
    def lam(self):
        return self.regulariser.lam


def _check_labels(model: AbstractModel, loss: AbstractLoss) -> None:
    """A loss meant for a finite label set (`loss.labels`) gets a model whose labels
    are in it: checked on 1024 fixed random points `(z, eps)` (standard deviation 2)."""
    if loss.labels is None or isinstance(model, AbstractBinaryModel):
        return
    if not all(is_concrete(x) for x in jax.tree.leaves(model)):
        return  # traced (inside vmap/grad): checked where the model was built
    zz, ee = 2.0 * np.random.default_rng(0).standard_normal((2, 1024))
    y = np.asarray(jax.vmap(model.link)(jnp.asarray(zz), jnp.asarray(ee)))
    bad = ~np.isin(y, np.asarray(loss.labels, dtype=y.dtype))
    if bad.any():
        raise ValueError(
            f"{type(loss).__name__} is meant for labels in {set(loss.labels)}, but "
            f"{type(model).__name__} gives labels such as {float(y[bad][0]):.4g}: use a model "
            "with those labels (ProbitModel, LogisticModel, or your AbstractBinaryModel) or "
            "a loss for real labels (SquareLoss)"
        )


class DMFTStart(eqx.Module):
    r"""What the DMFT needs of an initialisation (`AbstractInit.dmft_start`): the slots
    before the algorithm's first step and how to sample them.

    - `kind`: `"informed"` (slot 0 is `theta^0 = a0 theta* + b0 zeta`), `"slot"` (slot 0
      is the top eigenvector `v` as one stationary slot, `slot = (R_vv, m_v)`, then
      `theta^0 = s0 v`; docs/equations.md#stationary-slot) or `"prehistory"` (`power_steps`
      normalised power steps on `D` with `shift`, from `a0 theta* + b0 zeta`, the last
      one rescaled by `s0`).
    - `prep`: the preprocessing `T` (spectral starts); `s0`: the scale, or `None` for
      `model.default_scale(y)` on the samples.
    - `antithetic`: antithetic seed pairs; `z_tangent`: the exact `z`-tangent (the link
      and `T` have no jumps) rather than Gaussian integration by parts on `z`.
    - `facts`: concrete facts to report (`Trajectory.info`), as `(name, value)` pairs;
      `info` gives them as a dict.
    """

    kind: str = eqx.field(static=True)
    a0: jax.Array | float
    b0: jax.Array | float
    z_tangent: bool = eqx.field(static=True)
    slot: tuple | None = None
    prep: eqx.Module | None = None
    s0: jax.Array | float | None = None
    power_steps: int = eqx.field(static=True, default=0)
    shift: jax.Array | float = 0.0
    antithetic: bool = eqx.field(static=True, default=False)
    facts: tuple = eqx.field(static=True, default=())

    @property
    def info(self) -> dict:
        """The concrete facts to report, as a dict."""
        return dict(self.facts)

    @property
    def slots(self) -> int:
        """Slots before `theta^0`."""
        return int(self.kind == "slot") + self.power_steps

    def min_samples(self, steps: int) -> int:
        """The smallest `num_samples` that whitens one seed per slot (on each half of
        the antithetic pairs)."""
        need = steps + self.slots + 4
        return 2 * need if self.antithetic else need


class AbstractInit(eqx.Module):
    """How `theta^0` is chosen: `simulator_start` gives the finite-d start,
    `dmft_start` what the DMFT needs (a `DMFTStart`). A new initialisation implements
    both; the engines never look at the concrete class."""

    @abc.abstractmethod
    def simulator_start(self, problem: Problem, theta_star, a, y, *, key):
        """`theta^0` (shape `[d]`) for one seed, from `theta*`, the design `a` (`[n, d]`)
        and the labels `y`."""

    def simulator_start_with_info(self, problem: Problem, theta_star, a, y, *, key):
        """`(theta^0, diagnostics)`: the start and a dict of scalars the simulator reports
        per seed (e.g. whether an eigensolver converged). Default: no diagnostics."""
        return self.simulator_start(problem, theta_star, a, y, key=key), {}

    @abc.abstractmethod
    def dmft_start(
        self, problem: Problem, *, spectral_method: str = "slot", eps0: float = 0.1
    ) -> DMFTStart:
        """The DMFT's start for `problem`. Called before tracing (where it may refuse
        with a ValueError) and again inside the traced engine (where it must not)."""


class InformedInit(AbstractInit):
    r"""A start independent of the data: `theta^0 = overlap theta* + sqrt(norm - overlap^2) xi`,
    `xi` orthogonal to `theta*` with `|xi|^2 = d`; so `<theta*, theta^0>/d -> overlap` and
    `|theta^0|^2/d -> norm`."""

    overlap: float
    norm: float = 1.0

    def __check_init__(self):
        check_real("overlap", self.overlap)
        check_positive("norm", self.norm)
        try:
            bad = abs(float(self.overlap)) > math.sqrt(float(self.norm))
        except TypeError:  # traced
            bad = False
        if bad:
            raise ValueError(
                f"overlap^2 = {float(self.overlap)}^2 exceeds norm = {self.norm}: "
                "by Cauchy-Schwarz |<theta*, theta^0>/d|^2 <= |theta^0|^2/d"
            )

    def dmft_start(self, problem, *, spectral_method="slot", eps0=0.1):
        del spectral_method, eps0
        return DMFTStart(
            kind="informed",
            a0=self.overlap,
            b0=jnp.sqrt(self.norm - self.overlap**2),
            z_tangent=problem.model.smooth,
        )

    def simulator_start(self, problem, theta_star, a, y, *, key):
        del problem, a, y
        d = theta_star.shape[0]
        xi = jax.random.normal(key, (d,))
        xi = xi - (xi @ theta_star) / (theta_star @ theta_star) * theta_star
        xi = xi * jnp.sqrt(d) / jnp.linalg.norm(xi)
        return self.overlap * theta_star + jnp.sqrt(self.norm - self.overlap**2) * xi


_NOT_GIVEN = object()


def check_problem(problem, algorithm=_NOT_GIVEN) -> None:
    """The checks every entry point runs first: float64 is on (`check_precision`),
    `problem` is a `Problem` and, when passed, `algorithm` an `AbstractAlgorithm`."""
    from ._algorithms import AbstractAlgorithm

    check_precision()
    if not isinstance(problem, Problem):
        raise ValueError("problem must be a dmftjax.Problem")
    if algorithm is not _NOT_GIVEN and not isinstance(algorithm, AbstractAlgorithm):
        raise ValueError(
            "algorithm must be a dmftjax algorithm (GradientDescent, HeavyBall, Nesterov or "
            f"a subclass of AbstractAlgorithm), got {type(algorithm).__name__}"
        )
