"""Per-sample losses `loss(y, r)` and the ridge regulariser.

Derivatives in `r` come from `jax.grad`; nothing is written twice.
"""

from __future__ import annotations

import abc
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float


class AbstractLoss(eqx.Module):
    """A per-sample loss `loss(y, r)` with `r = <a, theta>`; subclasses implement `__call__`.

    Class attribute `labels` (default `None`: any real label): the finite set of labels
    the loss is meant for, such as `(-1.0, 1.0)` for `LogisticLoss`; `Problem` then
    refuses a model whose labels fall outside it.
    """

    labels: ClassVar[tuple[float, ...] | None] = None

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

    # The proximal map `r = prox_{kappa loss(y, .)}(w)`, root of `r + kappa loss'(y, r) = w`,
    # as the fixed point needs it. The defaults are those of a convex loss (one root,
    # increasing in w); a non-convex loss overrides all three.

    def prox_jump(self, y, kappa, zsign, branch: str):
        """`(w_jump, exists)`: the `w` at which the selected root jumps from its branch on
        the side `-1` to its branch on the side `+1` (`branch` `"global"`: the global
        minimiser of `kappa loss(y, r) + (r - w)^2 / 2`; `"signal"`: the root on the side
        of the signal `zsign` where it exists). Convex losses: no jump."""
        del kappa, zsign, branch
        return jnp.zeros_like(y), jnp.zeros_like(y, dtype=bool)

    def prox_bracket(self, y, w, kappa, side):
        """`(lo, hi, start)`: a bracket on which `F(r) = r + kappa loss'(y, r) - w` is
        increasing with `F(lo) <= 0 <= F(hi)`, holding the root on branch `side` (+-1),
        and a start inside it. Convex losses: `F' >= 1`, so the root is within
        `kappa |loss'(y, w)|` of `w`, whatever `side`."""
        del side
        delta = kappa * jnp.abs(self.grad(y, w))
        return w - delta, w + delta, w

    def critical_labels(self, kappa):
        """The labels `y` (an array) at which the branch structure of the proximal map
        changes (two wells merge): the stationary integrals are singular there (like
        `sqrt(y - y_c)`) and the fixed point's quadrature places breakpoints at them.
        Convex losses: none."""
        del kappa
        return jnp.zeros((0,))

    def prox_ambiguous(self, y, w, kappa, zsign):
        """Whether the `"global"` and `"signal"` rules pick different roots at `w` (two
        stable roots, the signal on the other side). Convex losses: never."""
        del y, kappa, zsign
        return jnp.zeros_like(w, dtype=bool)


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

    # `F(r) + w = kappa r^3 + (1 - kappa y) r` is odd with extrema at `+-c`,
    # `c^2 = (kappa y - 1) / (3 kappa)` (when `kappa y > 1`), where `F(c) + w = -peak`,
    # `peak = (2/3) c (kappa y - 1)`. It increases on `|r| >= c`, where the two stable
    # roots live: the one on side +1 exists for `w >= -peak`, the one on side -1 for
    # `w <= peak`.

    @staticmethod
    def _extremum(y, kappa):
        c = jnp.sqrt(jnp.maximum((kappa * y - 1.0) / (3.0 * kappa), 0.0))
        return c, (2.0 / 3.0) * c * (kappa * y - 1.0)

    def prox_jump(self, y, kappa, zsign, branch):
        # global: the minimiser switches well where w changes sign; signal: the root on
        # the signal's side is kept as long as it exists, until w = -zsign * peak
        c, peak = self._extremum(y, kappa)
        where = jnp.zeros_like(y) if branch == "global" else -zsign * peak
        return where, c > 0

    def prox_bracket(self, y, w, kappa, side):
        c, _ = self._extremum(y, kappa)
        hi = jnp.maximum(jnp.maximum(side * w, jnp.sqrt(jnp.maximum(y, 0.0))), c)
        lo_r = jnp.where(side > 0, c, -hi)
        hi_r = jnp.where(side > 0, hi, -c)
        return lo_r, hi_r, side * hi

    def critical_labels(self, kappa):
        # the wells merge at kappa y = 1 (c = 0)
        return jnp.reshape(1.0 / kappa, (1,))

    def prox_ambiguous(self, y, w, kappa, zsign):
        _, peak = self._extremum(y, kappa)
        return (kappa * y > 1.0) & (jnp.abs(w) < peak) & (zsign * w < 0)


class LogisticLoss(AbstractLoss):
    r"""`log(1 + exp(-y r))` for labels `y` in {-1, +1}."""

    labels: ClassVar[tuple[float, ...] | None] = (-1.0, 1.0)

    def __call__(self, y, r):
        return jnp.logaddexp(0.0, -y * r)


class Ridge(eqx.Module):
    r"""Ridge penalty `(lam / 2) |theta|^2` (summed over coordinates, not averaged)."""

    lam: float = 0.0
