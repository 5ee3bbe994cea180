"""Single-index models `y = f(z, eps)` and priors for the entries of `theta*`.

Every model is an Equinox module. The engines only ever call `link(z, eps)`; its
derivative in `z` (needed by the exact-tangent DMFT) comes from `jax.grad`, so a user's
own model is one small subclass.
"""

from __future__ import annotations

import abc
import math
import warnings
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import ndtr
from jaxtyping import Array, Float, PRNGKeyArray

from ._validate import check_nonnegative, check_positive, is_concrete


class AbstractModel(eqx.Module):
    r"""A single-index model `y = f(z, eps)` with `z = <a, theta*>` and `eps ~ N(0, 1)`.

    Subclasses implement `link`. Class attributes:

    - `even` (default False): `f(-z, eps) = f(z, eps)`, so `theta*` is identifiable only up to a
      global sign and every error is reported up to that sign.
    - `smooth` (default True): `f` is differentiable in `z` (almost everywhere is not enough: a
      jump such as `sign(z)` carries mass that `jax.grad` misses). Non-smooth models
      get their `z`-response from Gaussian integration by parts instead.
    """

    even: ClassVar[bool] = False
    smooth: ClassVar[bool] = True

    @abc.abstractmethod
    def link(self, z: Float[Array, ""], eps: Float[Array, ""]) -> Float[Array, ""]:
        """The output `y` for one index `z` and one standard Gaussian noise `eps`."""

    def default_scale(self, y: Float[Array, " n"]) -> Float[Array, ""]:
        """Scale of a spectral start `theta^0 = scale * v` (|v|^2 = d); default 1."""
        del y
        return jnp.asarray(1.0)

    def dlink_dz(self, z, eps):
        return jax.grad(self.link, argnums=0)(z, eps)

    def additive_noise(self):
        """`sigma` when `f(z, eps) = f(z, 0) + sigma * eps` (additive Gaussian label
        noise), else `None` (the default). The fixed point then integrates over the
        label itself, which lets it resolve the labels at which a non-convex loss's
        proximal map changes structure."""
        return None

    def noise_free(self) -> bool:
        """Whether `f(z, eps)` does not depend on `eps` (quadrature over the noise can then
        be skipped). Default False; the built-in models say True at `noise = 0`."""
        return False

    def label_support(self) -> tuple[float, float]:
        """`(lo, hi)`: the smallest interval holding every label `y = f(z, eps)`, with
        `-inf`/`inf` for an unbounded side. The spectral theory takes the supremum of a
        preprocessing over it, so a formula such as `(y - 1)/(y + 0.5)` that has a pole
        at labels the model never produces is bounded where it matters.

        The default is numerical: `f` is evaluated on `(z, eps)` grids over `[-10, 10]^2`
        and `[-40, 40]^2`; a side whose extreme does not move between the two (to 1e-9
        relative) is bounded there, otherwise it is unbounded. Override it when the
        support is known."""
        out = []
        for extreme in (np.min, np.max):
            vals = []
            for half in (10.0, 40.0):
                g = np.linspace(-half, half, 801)
                zz, ee = np.meshgrid(g, g, indexing="ij")
                y = np.asarray(
                    jax.vmap(self.link)(jnp.asarray(zz.ravel()), jnp.asarray(ee.ravel()))
                )
                vals.append(float(extreme(y[np.isfinite(y)])))
            near, far = vals
            if abs(far - near) <= 1e-9 * max(1.0, abs(near)):
                out.append(near)
            else:
                out.append(-math.inf if extreme is np.min else math.inf)
        return out[0], out[1]


class PhaseRetrieval(AbstractModel):
    r"""Real phase retrieval `y = z^2 + noise * eps`."""

    noise: float = 0.0
    even: ClassVar[bool] = True
    smooth: ClassVar[bool] = True

    def __check_init__(self):
        check_nonnegative("PhaseRetrieval noise", self.noise)

    def link(self, z, eps):
        return z**2 + self.noise * eps

    def noise_free(self):
        return is_concrete(self.noise) and float(self.noise) == 0.0

    def additive_noise(self):
        return self.noise

    def label_support(self):
        return (0.0 if self.noise_free() else -math.inf, math.inf)

    def default_scale(self, y):
        # E y = 1 + 0 = E z^2: sqrt(mean y) estimates |theta*|/sqrt(d).
        return jnp.sqrt(jnp.maximum(jnp.mean(y), 0.0))


class LinearModel(AbstractModel):
    r"""Noisy linear regression `y = z + noise * eps`."""

    noise: float = 0.0
    even: ClassVar[bool] = False
    smooth: ClassVar[bool] = True

    def __check_init__(self):
        check_nonnegative("LinearModel noise", self.noise)

    def link(self, z, eps):
        return z + self.noise * eps

    def noise_free(self):
        return is_concrete(self.noise) and float(self.noise) == 0.0

    def additive_noise(self):
        return self.noise

    def label_support(self):
        return (-math.inf, math.inf)


class AbstractBinaryModel(AbstractModel):
    r"""Labels `y` in {-1, +1} declared by their conditional law `P(y = +1 | z) =
    prob_plus(z)`; subclasses implement `prob_plus`.

    Every engine uses the law, not a sampled jump: the simulator and the DMFT draw
    `y = +1` when `Phi(eps) < prob_plus(z)` (`link`), the fixed point, the test error and
    the spectral theory integrate the two labels exactly with weights `prob_plus(z)` and
    `1 - prob_plus(z)`, so their quadrature sees only smooth functions of `z`.

    `conditional_prob_plus(mu, sd)` is `E[prob_plus(z)]` for `z ~ N(mu, sd^2)`, the label
    probability given the estimate's index `w` (`z | w` is Gaussian). The default is a
    96-point Gauss-Hermite rule, or, when `breakpoints()` names the points where `prob_plus`
    jumps, 96-point Gauss-Legendre panels between them (the integrand is smooth on each,
    so a step is integrated to rounding); its derivatives in `mu` and `sd` come from
    Gaussian integration by parts, those in the model's own fields through `prob_plus`
    and the jumps' positions. A `prob_plus` with an undeclared jump (or a near-jump, such
    as a very steep sigmoid) is integrated badly by the Gauss-Hermite rule: `Problem`
    measures the rule against a fine one and warns. Override `conditional_prob_plus`
    when a closed form exists (`ProbitModel` does).
    """

    even: ClassVar[bool] = False
    smooth: ClassVar[bool] = False

    @abc.abstractmethod
    def prob_plus(self, z: Float[Array, ""]) -> Float[Array, ""]:
        """`P(y = +1 | z)`."""

    def breakpoints(self) -> tuple:
        """The points `z` where `prob_plus` jumps (default: none). Declare them (a tuple
        of numbers, which may depend on the model's fields) and the engines integrate
        the law piece by piece, exactly."""
        return ()

    def link(self, z, eps):
        return jnp.where(ndtr(eps) < self.prob_plus(z), 1.0, -1.0)

    def conditional_prob_plus(self, mu, sd):
        """`E[prob_plus(z)]` for `z ~ N(mu, sd^2)` (`sd >= 0`)."""
        jumps = tuple(jnp.asarray(b, dtype=float) for b in self.breakpoints())
        return _gaussian_smoothing(
            self.prob_plus, jnp.asarray(mu, dtype=float), jnp.asarray(sd, dtype=float), jumps
        )

    def label_support(self):
        return (-1.0, 1.0)


_GH_X, _GH_W = np.polynomial.hermite_e.hermegauss(96)
_GH_W = _GH_W / _GH_W.sum()


_GL_X, _GL_W = np.polynomial.legendre.leggauss(96)
_CUT = 10.0  # panels cover |x| <= 10 standard deviations (the rest: mass 1.5e-23)


def _smoothing_rule(mu, sd, jumps: tuple):
    """Nodes `x` and weights `w` with `sum w f(mu + sd x) = E f(mu + sd X)`, `X ~ N(0, 1)`:
    Gauss-Hermite without jumps; with jumps, Gauss-Legendre panels on `[-10, 10]` split
    where `mu + sd x` crosses a jump (`f` smooth on each panel)."""
    if not jumps:
        return jnp.asarray(_GH_X), jnp.asarray(_GH_W)
    safe = jnp.where(sd > 0, sd, 1.0)
    cuts = jnp.clip((jnp.sort(jnp.stack(jumps)) - mu) / safe, -_CUT, _CUT)
    ends = jnp.concatenate([jnp.array([-_CUT]), cuts, jnp.array([_CUT])])
    lo, hi = ends[:-1, None], ends[1:, None]
    half = 0.5 * (hi - lo)
    x = 0.5 * (lo + hi) + half * jnp.asarray(_GL_X)
    w = half * jnp.asarray(_GL_W) * jnp.exp(-0.5 * x**2) / math.sqrt(2 * math.pi)
    return x.ravel(), w.ravel()


@eqx.filter_custom_jvp
def _gaussian_smoothing(prob_plus, mu, sd, jumps=()):
    x, w = _smoothing_rule(mu, sd, jumps)
    return jnp.sum(w * jax.vmap(prob_plus)(mu + sd * x))


@_gaussian_smoothing.def_jvp
def _gaussian_smoothing_jvp(primals, tangents):
    # d/dmu E f(mu + sd X) = E[f X] / sd and d/dsd = E[f (X^2 - 1)] / sd (Stein): no
    # derivative of f in its argument, so a jump in f is differentiated exactly; the
    # model's own parameters are differentiated through f, and a jump at b moving by db
    # adds (f(b-) - f(b+)) phi((b - mu) / sd) / sd db.
    prob_plus, mu, sd, jumps = primals
    t_fn, dmu, dsd, djumps = tangents
    x, w = _smoothing_rule(mu, sd, jumps)

    def smoothed(fn):
        return jnp.sum(w * jax.vmap(fn)(mu + sd * x))

    if t_fn is None:
        value, d_fn = smoothed(prob_plus), 0.0
    else:
        value, d_fn = eqx.filter_jvp(smoothed, (prob_plus,), (t_fn,))
    f = jax.vmap(prob_plus)(mu + sd * x)
    safe = jnp.where(sd > 0, sd, 1.0)
    d_mu = jnp.where(sd > 0, jnp.sum(w * f * x) / safe, jax.grad(prob_plus)(mu))
    d_sd = jnp.where(sd > 0, jnp.sum(w * f * (x**2 - 1)) / safe, 0.0)
    out = 0.0 if d_fn is None else d_fn
    if dmu is not None:
        out = out + d_mu * dmu
    if dsd is not None:
        out = out + d_sd * dsd
    for b, db in zip(jumps, djumps or ()):
        if db is None:
            continue
        gap = 1e-9 * (1.0 + jnp.abs(b))
        density = jnp.where(
            sd > 0, jnp.exp(-0.5 * ((b - mu) / safe) ** 2) / (math.sqrt(2 * math.pi) * safe), 0.0
        )
        out = out + (prob_plus(b - gap) - prob_plus(b + gap)) * density * db
    return value, out + jnp.zeros_like(value)


# where the default rule is measured (`check_label_law`): (mu, sd) of z given w
_LAW_PROBES = ((0.0, 1.0), (0.6, 0.5), (-0.3, 0.2), (1.5, 0.05))
LAW_RULE_TOL = 1e-8


def check_label_law(model: AbstractBinaryModel) -> None:
    """Warn when the default rule of `conditional_prob_plus` is inaccurate for this law
    (a `prob_plus` with an undeclared jump or a near-jump): measured against composite
    Gauss-Legendre on 400 panels at a few `(mu, sd)`. Nothing for an overridden
    `conditional_prob_plus` or a traced model."""
    if type(model).conditional_prob_plus is not AbstractBinaryModel.conditional_prob_plus:
        return
    from ._validate import is_concrete

    if not all(is_concrete(x) for x in jax.tree.leaves(model)):
        return
    x16, w16 = np.polynomial.legendre.leggauss(16)
    marks = [float(b) for b in model.breakpoints()]
    worst, where = 0.0, None
    for mu, sd in _LAW_PROBES:
        # 400 panels, the declared breakpoints among their ends
        cuts = [(b - mu) / sd for b in marks if abs(b - mu) < _CUT * sd]
        ends = np.unique(np.concatenate([np.linspace(-_CUT, _CUT, 401), cuts]))
        mid, half = 0.5 * (ends[:-1] + ends[1:])[:, None], 0.5 * np.diff(ends)[:, None]
        xf = (mid + half * x16).ravel()
        wf = (half * w16).ravel() * np.exp(-0.5 * xf**2) / math.sqrt(2 * math.pi)
        fine = float(np.sum(wf * np.asarray(jax.vmap(model.prob_plus)(jnp.asarray(mu + sd * xf)))))
        rule = float(model.conditional_prob_plus(mu, sd))
        if abs(rule - fine) > worst:
            worst, where = abs(rule - fine), (mu, sd)
    if worst > LAW_RULE_TOL:
        fix = (
            "declare where prob_plus jumps or bends sharply with breakpoints() (the law is "
            "then integrated panel by panel)"
            if not model.breakpoints()
            else "add breakpoints() where prob_plus bends sharply"
        )
        warnings.warn(
            f"{type(model).__name__}: the default rule for P(y = +1 | w) is off by "
            f"{worst:.1e} at (mu, sd) = {where} against a fine rule: {fix}, or override "
            "conditional_prob_plus with a closed form; the fixed point and the spectral "
            "theory inherit this error",
            RuntimeWarning,
            stacklevel=4,
        )


class ProbitModel(AbstractBinaryModel):
    r"""Binary labels `y = sign(z + noise * eps)`: `P(y = +1 | z) = Phi(z / noise)` (a step
    at `z = 0` when `noise = 0`)."""

    noise: float = 0.0

    def __check_init__(self):
        check_nonnegative("ProbitModel noise", self.noise)

    def prob_plus(self, z):
        safe = jnp.where(self.noise > 0, self.noise, 1.0)
        return jnp.where(self.noise > 0, ndtr(z / safe), (z >= 0).astype(jnp.result_type(z)))

    def link(self, z, eps):
        # the same law, written as the classical threshold model
        return jnp.where(z + self.noise * eps >= 0, 1.0, -1.0)

    def conditional_prob_plus(self, mu, sd):
        return ndtr(mu / jnp.sqrt(self.noise**2 + sd**2))


class LogisticModel(AbstractBinaryModel):
    r"""Binary labels with the logistic law `P(y = +1 | z) = 1 / (1 + exp(-scale z))`, i.e.
    `y = sign(scale z + logistic noise)`; large `scale` approaches `sign(z)`."""

    scale: float = 1.0

    def __check_init__(self):
        check_positive("LogisticModel scale", self.scale)

    def prob_plus(self, z):
        return jax.nn.sigmoid(self.scale * z)

    def breakpoints(self):
        return (0.0,)  # a panel end where the law is steepest (large scale: near a step)


class AbstractPrior(eqx.Module):
    """Law of the i.i.d. entries of `theta*`, normalised so that `E theta*_j^2 = 1`."""

    @abc.abstractmethod
    def sample(self, shape: tuple[int, ...], *, key: PRNGKeyArray) -> Array:
        """Draw entries of the given shape."""


class GaussianPrior(AbstractPrior):
    """`theta*_j ~ N(0, 1)`."""

    def sample(self, shape, *, key):
        return jax.random.normal(key, shape)


class RademacherPrior(AbstractPrior):
    """`theta*_j` uniform on {-1, +1}."""

    def sample(self, shape, *, key):
        return jax.random.rademacher(key, shape, dtype=jnp.result_type(float))
