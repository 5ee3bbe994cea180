"""Single-index models `y = f(z, eps)` and priors for the entries of `theta*`.

Every model is an Equinox module. The engines only ever call `link(z, eps)`; its
derivative in `z` (needed by the exact-tangent DMFT) comes from `jax.grad`, so a user's
own model is one small subclass.
"""

from __future__ import annotations

import abc
import math
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
                y = np.asarray(jax.vmap(self.link)(jnp.asarray(zz.ravel()), jnp.asarray(ee.ravel())))
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
    96-point Gauss-Hermite rule whose derivatives come from Gaussian integration by parts
    (exact for any `prob_plus`, a step included); override it when a closed form exists
    (`ProbitModel` does).
    """

    even: ClassVar[bool] = False
    smooth: ClassVar[bool] = False

    @abc.abstractmethod
    def prob_plus(self, z: Float[Array, ""]) -> Float[Array, ""]:
        """`P(y = +1 | z)`."""

    def link(self, z, eps):
        return jnp.where(ndtr(eps) < self.prob_plus(z), 1.0, -1.0)

    def conditional_prob_plus(self, mu, sd):
        """`E[prob_plus(z)]` for `z ~ N(mu, sd^2)` (`sd >= 0`)."""
        return _gaussian_smoothing(self.prob_plus, jnp.asarray(mu, dtype=float),
                                   jnp.asarray(sd, dtype=float))

    def label_support(self):
        return (-1.0, 1.0)


_GH_X, _GH_W = np.polynomial.hermite_e.hermegauss(96)
_GH_W = _GH_W / _GH_W.sum()


@eqx.filter_custom_jvp
def _gaussian_smoothing(prob_plus, mu, sd):
    x, w = jnp.asarray(_GH_X), jnp.asarray(_GH_W)
    return jnp.sum(w * jax.vmap(prob_plus)(mu + sd * x))


@_gaussian_smoothing.def_jvp
def _gaussian_smoothing_jvp(primals, tangents):
    # d/dmu E f(mu + sd X) = E[f X] / sd and d/dsd = E[f (X^2 - 1)] / sd (Stein): no
    # derivative of f in its argument, so a jump in f is differentiated exactly; the
    # model's own parameters are differentiated through f.
    prob_plus, mu, sd = primals
    t_fn, dmu, dsd = tangents
    x, w = jnp.asarray(_GH_X), jnp.asarray(_GH_W)

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
    return value, out + jnp.zeros_like(value)


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
