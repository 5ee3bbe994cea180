"""Per-sample losses `loss(y, r)` and the ridge regulariser.

Derivatives in `r` come from `jax.grad`; nothing is written twice.
"""

from __future__ import annotations

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float


class AbstractLoss(eqx.Module):
    """A per-sample loss `loss(y, r)` with `r = <a, theta>`; subclasses implement `__call__`."""

    @abc.abstractmethod
    def __call__(self, y: Float[Array, ""], r: Float[Array, ""]) -> Float[Array, ""]:
        """The loss of one sample."""

    def grad(self, y, r):
        """`d loss / d r`."""
        return jax.grad(self.__call__, argnums=1)(y, r)

    def hess(self, y, r):
        """`d^2 loss / d r^2`."""
        return jax.grad(jax.grad(self.__call__, argnums=1), argnums=1)(y, r)

    def grad_y(self, y, r):
        """`d^2 loss / d y d r`: how the gradient moves with the label."""
        return jax.grad(jax.grad(self.__call__, argnums=1), argnums=0)(y, r)

    def wrong_well(
        self, y: Float[Array, ""], r: Float[Array, ""], signed_z: Float[Array, ""]
    ) -> Bool[Array, ""]:
        """Whether `r` sits in a minimum of `loss(y, .)` other than the one the signal
        points to (`signed_z` is the index with the estimate's global sign). Losses
        with a single well return False."""
        del y, r, signed_z
        return jnp.asarray(False)


class SquareLoss(AbstractLoss):
    r"""`(r - y)^2 / 2`."""

    def __call__(self, y, r):
        return 0.5 * (r - y) ** 2


class WirtingerLoss(AbstractLoss):
    r"""Wirtinger-flow loss `(r^2 - y)^2 / 4` for phase retrieval.

    For `y > 0` it is a double well with minima at `r = +-sqrt(y)`; the right one is
    the one with the sign of the (global-sign-corrected) index `z`. A sample counts as
    in the wrong well when `r z < -y/2`, i.e. (noiseless) `r` lies beyond half-way to the
    wrong minimum: rows with tiny `y`, which ridge shrinkage moves across zero at no
    cost, are not counted as trapped.
    """

    def __call__(self, y, r):
        return 0.25 * (r**2 - y) ** 2

    def wrong_well(self, y, r, signed_z):
        return (y > 0) & (r * signed_z < -0.5 * y)


class LogisticLoss(AbstractLoss):
    r"""`log(1 + exp(-y r))` for labels `y` in {-1, +1}."""

    def __call__(self, y, r):
        return jnp.logaddexp(0.0, -y * r)


class Ridge(eqx.Module):
    r"""Ridge penalty `(lam / 2) |theta|^2` (summed over coordinates, not averaged)."""

    lam: float = 0.0
