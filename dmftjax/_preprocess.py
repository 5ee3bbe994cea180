r"""Spectral preprocessings `T(y)`: the spectral start uses the top eigenvector of
`D = sum_i T(y_i) a_i a_i^T`.

Every preprocessing is an Equinox module with an elementwise `__call__(y)`. Besides the
function itself, the closed-form theory (`spectral_theory`) needs three facts about `T`,
each a method with a default so that a user's subclass implementing only `__call__`
works:

- `sup(support)`: `tau = sup T(y)` over the labels the model can produce (its
  `label_support()`), possibly `inf` (then there is no outlier at any `alpha`). The
  default evaluates `T` on a fixed grid of `y` in `{0} U +-[1e-8, 1e8]` clipped to the
  support, plus the support's finite ends, and reports `inf` when the largest value
  exceeds `1e6` or is not finite: a formula with a pole at labels the model never
  produces (`(y - 1)/(y + 0.5)` for noiseless phase retrieval) works untouched. A
  subclass may override `sup()` (no argument) with the exact value.
- `mass_at_sup()`: whether the law of `T(Y)` puts an atom or a positive density at `tau`
  (trimming, clipping). Then `lam_bar > tau` strictly, and quadrature near `tau` needs
  care. `None` (the default) means "unknown": the theory then decides from the data of
  the quadrature itself.
- `breakpoints()`: the `y` values where `T` jumps, has a kink or is singular. The
  quadrature puts panel ends there and grades the panels geometrically towards them,
  which is what makes the closed form accurate near `tau`. Default: none (fine for a
  smooth `T`; a jump or a kink then costs accuracy, about 1e-4 on the squared cosine).
- `specialise(alpha)`: the preprocessing used at sample ratio `alpha` (only
  `MondelliMontanari(alpha=None)` depends on it).

References: Lu and Li (2017), "Phase transitions of spectral initialization for
high-dimensional nonconvex estimation"; Mondelli and Montanari (2018), "Fundamental
limits of weak recovery with applications to phase retrieval"; Luo, Alghamdi and Lu
(2019), "Optimal spectral initialization for signal recovery with applications to phase
retrieval".
"""

from __future__ import annotations

import abc
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ._validate import check_positive, check_real, is_concrete

# Grid for the default `sup()` of a user-defined preprocessing.
_POS = np.logspace(-8, 8, 1601)
_SUP_GRID = np.concatenate([-_POS[::-1], [0.0], _POS])
# A supremum above this is reported as unbounded.
_SUP_CAP = 1e6
# `1 - 1/y` is evaluated at `max(y, Y_FLOOR)`: T >= 1 - 1e8, a finite stand-in for
# -inf that keeps the simulator's matrices finite (see `LuoAlghamdiLu`).
Y_FLOOR = 1e-8


class AbstractPreprocessing(eqx.Module):
    """A spectral preprocessing `T(y)`; subclasses implement the elementwise `__call__`.

    See the module docstring for `sup`, `mass_at_sup`, `breakpoints`, `specialise`.
    """

    @abc.abstractmethod
    def __call__(self, y: Float[Array, ...]) -> Float[Array, ...]:
        """`T(y)`, elementwise."""

    def sup(self, support: tuple[float, float] = (-math.inf, math.inf)) -> Float[Array, ""]:
        """`tau = sup T(y)` over labels `y` in `support` (`inf` when unbounded). The
        default is numerical (see the module docstring): it scans a grid of `y` clipped
        to `support` (the model's `label_support()`, which the engines pass), plus the
        support's finite ends. Override it (as `sup(self)`, without the argument) when
        `T` approaches its supremum somewhere the grid does not see: an override is
        taken as exact whatever the labels."""
        lo, hi = (float(v) for v in support)
        grid = np.concatenate(
            [
                _SUP_GRID[(_SUP_GRID >= lo) & (_SUP_GRID <= hi)],
                [v for v in (lo, hi) if math.isfinite(v)],
            ]
        )
        grid = np.unique(grid)
        if not all(is_concrete(leaf) for leaf in jax.tree.leaves(self)):
            # traced (a swept parameter): the grid alone, without zooming in
            traced = self(jnp.asarray(grid))
            peak = jnp.max(jnp.where(jnp.isnan(traced), -jnp.inf, traced))
            return jnp.where(jnp.isfinite(peak) & (peak <= _SUP_CAP), peak, jnp.inf)
        values = np.asarray(self(jnp.asarray(grid)), dtype=float)
        values = np.where(np.isnan(values), -np.inf, values)
        top = float(values.max())
        # zoom in around the largest value: a pole between two grid points (a formula
        # such as (y - 1)/(y + 0.5) on labels that reach -0.5) keeps growing, a
        # maximum settles
        for _ in range(4):
            i = int(np.argmax(values))
            a, b = grid[max(i - 1, 0)], grid[min(i + 1, grid.size - 1)]
            grid = np.linspace(a, b, 2001)
            values = np.asarray(self(jnp.asarray(grid)), dtype=float)
            values = np.where(np.isnan(values), -np.inf, values)
            new = float(values.max())
            if not math.isfinite(new) or new > _SUP_CAP:
                return jnp.asarray(jnp.inf)
            top = max(top, new)
        return jnp.asarray(top if math.isfinite(top) and top <= _SUP_CAP else jnp.inf)

    def mass_at_sup(self) -> bool | None:
        """Whether `T(Y)` has an atom or a positive density at `tau`; `None` if unknown."""
        return None

    def breakpoints(self) -> tuple:
        """`y` values where `T` jumps, kinks or is singular (used by the quadrature)."""
        return ()

    def specialise(self, alpha) -> AbstractPreprocessing:
        """The preprocessing used at sample ratio `alpha` (default: `self`)."""
        del alpha
        return self


def supremum(preprocessing: AbstractPreprocessing, support) -> Float[Array, ""]:
    """`sup T` over labels in `support`: the default (numerical) `sup` restricted to the
    support, or a subclass's own `sup()` (taken as exact)."""
    if type(preprocessing).sup is AbstractPreprocessing.sup:
        return preprocessing.sup(support)
    return preprocessing.sup()


class Identity(AbstractPreprocessing):
    r"""`T(y) = y`. Its support is unbounded above (for phase retrieval), so the top
    eigenvector localises on the largest `y_i` and carries no overlap at any fixed
    `alpha`: `spectral_theory` reports `has_outlier = False` with an explanation."""

    def __call__(self, y):
        return jnp.asarray(y)

    def sup(self):
        return jnp.asarray(jnp.inf)

    def mass_at_sup(self):
        return False


def _check_tau(tau):
    check_real("tau", tau)
    check_positive("tau (the preprocessing's threshold)", tau)


class _AbstractThreshold(AbstractPreprocessing):
    """A preprocessing cut at a threshold `tau > 0`, which is its supremum and its one
    breakpoint."""

    tau: eqx.AbstractVar[float]

    def __check_init__(self):
        _check_tau(self.tau)

    def sup(self):
        return jnp.asarray(self.tau, dtype=float)

    def mass_at_sup(self):
        return True

    def breakpoints(self):
        return (self.tau,)


class Trimmed(_AbstractThreshold):
    r"""Trimming `T(y) = y 1{y <= tau}` (`tau > 0`). The law of `T(Y)` has a positive
    density at its supremum `tau`, so `lam_bar > tau` strictly."""

    tau: float

    def __call__(self, y):
        y = jnp.asarray(y)
        return jnp.where(y <= self.tau, y, 0.0)


class Clipped(_AbstractThreshold):
    r"""Clipping `T(y) = min(y, tau)` (`tau > 0`): an atom at the supremum `tau`."""

    tau: float

    def __call__(self, y):
        return jnp.minimum(jnp.asarray(y), self.tau)


class LuoAlghamdiLu(AbstractPreprocessing):
    r"""`T(y) = 1 - 1/y`, optionally clipped from below: `max(1 - 1/y, clip)`.

    Optimal for noiseless real phase retrieval (weak-recovery threshold `alpha = 1/2`).
    `T` is bounded above by `tau = 1` (approached as `y -> inf`, no mass there) and
    unbounded below as `y -> 0`. Without `clip`, `y` is floored at `1e-8` (so
    `T >= 1 - 1e8`, a finite stand-in for `-inf` that forces the eigenvector
    orthogonal to `a_i` to 1e-8 and keeps the simulator's matrices finite); `y <= 0`
    (possible with noise) is treated the same way. With a noisy model, or with the
    iterative eigensolver, pass `clip` (e.g. `-5`): the very negative part of the
    spectrum it removes slows Lanczos down badly and changes the overlap little.

    **Arguments:**

    - `clip`: lower clip value (`< 1`), or `None`.
    """

    clip: float | None = None

    def __check_init__(self):
        if self.clip is not None:
            check_real("clip", self.clip)
            if is_concrete(self.clip) and float(self.clip) >= 1:
                raise ValueError(f"clip must be < 1 (T = 1 - 1/y < 1), got {self.clip}")

    def __call__(self, y):
        t = 1.0 - 1.0 / jnp.maximum(jnp.asarray(y), Y_FLOOR)
        return t if self.clip is None else jnp.maximum(t, self.clip)

    def sup(self):
        return jnp.asarray(1.0)

    def mass_at_sup(self):
        return False

    def breakpoints(self):
        if self.clip is None:
            return (Y_FLOOR,)
        return (1.0 / (1.0 - self.clip),)


class _AbstractMondelliMontanari(AbstractPreprocessing):
    r"""The Mondelli-Montanari preprocessing for real phase retrieval,
    `T(y) = (y_+ - 1) / (y_+ + sqrt(2 a) - 1)`, `y_+ = max(y, 0)`, evaluated at a sample
    ratio `a` that each final class fixes its own way (`_tuned_alpha`).

    This is the real-case form (the complex case uses `sqrt(a)`; do not mix them up).
    For `a > 1/2` it is bounded (`-1/(sqrt(2 a) - 1) <= T < 1 = tau`); at `a = 1/2` it is
    `1 - 1/y` (floored as in `LuoAlghamdiLu`); for `a < 1/2` the denominator vanishes at
    `y = 1 - sqrt(2 a) > 0`, `T` is unbounded and there is no outlier. Weak-recovery
    threshold of the problem: `alpha = 1/2`."""

    @abc.abstractmethod
    def _tuned_alpha(self):
        """The sample ratio `a` the formula is evaluated at."""

    def _c(self):
        return jnp.sqrt(2.0 * jnp.asarray(self._tuned_alpha(), dtype=float))

    def __call__(self, y):
        c = self._c()
        yp = jnp.maximum(jnp.asarray(y), 0.0)
        den = yp + c - 1.0
        den = jnp.where(c >= 1.0, jnp.maximum(den, Y_FLOOR), den)
        return (yp - 1.0) / den

    def sup(self):
        return jnp.where(self._c() >= 1.0, 1.0, jnp.inf)

    def mass_at_sup(self):
        return False

    def breakpoints(self):
        # y = 0 is a kink for noisy data (y_+); the floor matters only at a = 1/2.
        return (0.0,)


class MondelliMontanari(_AbstractMondelliMontanari):
    r"""Mondelli-Montanari preprocessing **tuned to the sample ratio** (PhasePack's
    `initOptimalSpectral` convention): `T(y) = (y_+ - 1) / (y_+ + sqrt(2 alpha) - 1)` at
    the problem's own `alpha` (labels normalised so that `E y = 1`, as they are here).

    Mondelli's own code evaluates the formula just above the weak-recovery threshold
    instead, which makes it about `1 - 1/y`: that is `MondelliMontanariThreshold`.

    **Arguments:**

    - `alpha`: the sample ratio the preprocessing is tuned to; `None` (default) means
      "the problem's alpha" (so a threshold search varies both together).
    """

    alpha: float | None = None

    def __check_init__(self):
        if self.alpha is not None:
            check_positive("MondelliMontanari alpha", self.alpha)

    def specialise(self, alpha):
        return MondelliMontanari(alpha) if self.alpha is None else self

    def _tuned_alpha(self):
        if self.alpha is None:
            raise ValueError(
                "MondelliMontanari(alpha=None) takes alpha from the problem: call "
                "specialise(alpha) first (spectral_theory and SpectralInit do it for you)"
            )
        return self.alpha


class MondelliMontanariThreshold(_AbstractMondelliMontanari):
    r"""Mondelli-Montanari preprocessing **tuned just above the weak-recovery threshold**,
    whatever the problem's `alpha` (the convention of Mondelli's own code, which uses
    `delta = 0.5005` for real phase retrieval): the formula at `a = (1 + margin) / 2`,
    i.e. about `1 - 1/y` (`LuoAlghamdiLu`) with a finite floor `-1 / (sqrt(1 + margin) - 1)`.

    **Arguments:**

    - `margin`: relative distance above the threshold `1/2` (default `1e-3`, so
      `a = 0.5005`); must be > 0.
    """

    margin: float = 1e-3

    def __check_init__(self):
        check_positive("MondelliMontanariThreshold margin", self.margin)

    def _tuned_alpha(self):
        return 0.5 * (1.0 + jnp.asarray(self.margin, dtype=float))
