"""dmftjax: exact d = infinity predictions for gradient descent on single-index models."""

import importlib.metadata

from ._algorithms import AbstractAlgorithm as AbstractAlgorithm
from ._algorithms import Coefficients as Coefficients
from ._algorithms import GradientDescent as GradientDescent
from ._algorithms import GradientFlow as GradientFlow
from ._algorithms import HeavyBall as HeavyBall
from ._algorithms import Langevin as Langevin
from ._algorithms import MinibatchSGD as MinibatchSGD
from ._algorithms import Nesterov as Nesterov
from ._cache import compilation_cache_dir as compilation_cache_dir
from ._cache import enable_compilation_cache as enable_compilation_cache
from ._dmft import dmft_replica as dmft_replica
from ._dmft import richardson as richardson
from ._dmft import solve_dmft as solve_dmft
from ._estimators import AbstractEstimator as AbstractEstimator
from ._estimators import IntegrationByParts as IntegrationByParts
from ._estimators import Tangent as Tangent
from ._estimators import Windowed as Windowed
from ._fixed_point import FixedPoint as FixedPoint
from ._fixed_point import HessianCheck as HessianCheck
from ._fixed_point import RatePrediction as RatePrediction
from ._fixed_point import fixed_point as fixed_point
from ._fixed_point import fixed_point_sweep as fixed_point_sweep
from ._fixed_point import hessian_check as hessian_check
from ._fixed_point import hessian_edges as hessian_edges
from ._fixed_point import measured_rate as measured_rate
from ._fixed_point import predicted_rate as predicted_rate
from ._laws import CoordinateLaw as CoordinateLaw
from ._laws import EmpiricalLaw as EmpiricalLaw
from ._laws import LawComparison as LawComparison
from ._laws import compare_laws as compare_laws
from ._losses import AbstractLoss as AbstractLoss
from ._losses import LogisticLoss as LogisticLoss
from ._losses import Ridge as Ridge
from ._losses import SquareLoss as SquareLoss
from ._losses import WirtingerLoss as WirtingerLoss
from ._models import AbstractBinaryModel as AbstractBinaryModel
from ._models import AbstractModel as AbstractModel
from ._models import AbstractPrior as AbstractPrior
from ._models import GaussianPrior as GaussianPrior
from ._models import LinearModel as LinearModel
from ._models import LogisticModel as LogisticModel
from ._models import PhaseRetrieval as PhaseRetrieval
from ._models import ProbitModel as ProbitModel
from ._models import RademacherPrior as RademacherPrior
from ._preprocess import AbstractPreprocessing as AbstractPreprocessing
from ._preprocess import Clipped as Clipped
from ._preprocess import Identity as Identity
from ._preprocess import LuoAlghamdiLu as LuoAlghamdiLu
from ._preprocess import MondelliMontanari as MondelliMontanari
from ._preprocess import MondelliMontanariThreshold as MondelliMontanariThreshold
from ._preprocess import Trimmed as Trimmed
from ._problem import AbstractInit as AbstractInit
from ._problem import DMFTStart as DMFTStart
from ._problem import InformedInit as InformedInit
from ._problem import Problem as Problem
from ._simulate import simulate as simulate
from ._spectral import SpectralTheory as SpectralTheory
from ._spectral import spectral_theory as spectral_theory
from ._spectral import weak_recovery_threshold as weak_recovery_threshold
from ._spectral_init import EigenInfo as EigenInfo
from ._spectral_init import SpectralInit as SpectralInit
from ._spectral_init import SpectralSimulation as SpectralSimulation
from ._spectral_init import spectral_simulation as spectral_simulation
from ._spectral_init import top_eigenpair as top_eigenpair
from ._sweep import SweepResult as SweepResult
from ._sweep import sweep as sweep
from ._trajectory import OBSERVABLES as OBSERVABLES
from ._trajectory import Trajectory as Trajectory
from ._tune import TuneResult as TuneResult
from ._tune import algorithm_objective as algorithm_objective
from ._tune import grid_search as grid_search
from ._tune import plot_tuning as plot_tuning
from ._tune import tune as tune
from ._tune import tune_algorithm as tune_algorithm
from ._tune import tune_ridge as tune_ridge
from ._tune import tune_step_size as tune_step_size
from ._tune import tuned_value as tuned_value

try:
    __version__ = importlib.metadata.version("dmftjax")
except importlib.metadata.PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0+unknown"
