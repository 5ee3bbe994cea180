"""Single-index models `y = f(z, eps)` and priors for the entries of `theta*`.

Every model is an Equinox module. The engines only ever call `link(z, eps)`; its
derivative in `z` (needed by the exact-tangent DMFT) comes from `jax.grad`, so a user's
own model is one small subclass.
"""

from __future__ import annotations

import abc
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray


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


class PhaseRetrieval(AbstractModel):
    r"""Real phase retrieval `y = z^2 + noise * eps`."""

    noise: float = 0.0
    even: ClassVar[bool] = True
    smooth: ClassVar[bool] = True

    def link(self, z, eps):
        return z**2 + self.noise * eps

    def default_scale(self, y):
        # E y = 1 + 0 = E z^2: sqrt(mean y) estimates |theta*|/sqrt(d).
        return jnp.sqrt(jnp.maximum(jnp.mean(y), 0.0))


class LinearModel(AbstractModel):
    r"""Noisy linear regression `y = z + noise * eps`."""

    noise: float = 0.0
    even: ClassVar[bool] = False
    smooth: ClassVar[bool] = True

    def link(self, z, eps):
        return z + self.noise * eps


class ProbitModel(AbstractModel):
    r"""Binary labels `y = sign(z + noise * eps)` in {-1, +1} (probit link for noise > 0)."""

    noise: float = 0.0
    even: ClassVar[bool] = False
    smooth: ClassVar[bool] = False

    def link(self, z, eps):
        return jnp.where(z + self.noise * eps >= 0, 1.0, -1.0)


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
