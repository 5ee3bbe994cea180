"""dmftjax: exact d = infinity predictions for gradient descent on single-index models."""

import importlib.metadata

from ._dmft import solve_dmft as solve_dmft
from ._losses import AbstractLoss as AbstractLoss
from ._losses import LogisticLoss as LogisticLoss
from ._losses import Ridge as Ridge
from ._losses import SquareLoss as SquareLoss
from ._losses import WirtingerLoss as WirtingerLoss
from ._models import AbstractModel as AbstractModel
from ._models import AbstractPrior as AbstractPrior
from ._models import GaussianPrior as GaussianPrior
from ._models import LinearModel as LinearModel
from ._models import PhaseRetrieval as PhaseRetrieval
from ._models import ProbitModel as ProbitModel
from ._models import RademacherPrior as RademacherPrior
from ._problem import AbstractInit as AbstractInit
from ._problem import GradientDescent as GradientDescent
from ._problem import InformedInit as InformedInit
from ._problem import Problem as Problem
from ._simulate import simulate as simulate
from ._sweep import SweepResult as SweepResult
from ._sweep import sweep as sweep
from ._trajectory import OBSERVABLES as OBSERVABLES
from ._trajectory import Trajectory as Trajectory

try:
    __version__ = importlib.metadata.version("dmftjax")
except importlib.metadata.PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0+unknown"
