"""Free energies along lambda: the MM -> ML/MM correction of a leg by MBAR windows or by
nonequilibrium switching with BAR, on one construction (a System with a lambda parameter).

- :mod:`.sampling`: :class:`Leg`, :func:`sampleWindow`, :func:`sampleEndState`, :func:`switch`.
- :mod:`.estimators`: :func:`mbarEstimate`, :func:`barEstimate`, :func:`jarzynskiEstimate`.

The `openmm-hybrid fe` command (issue 21: tasks on Dask, resume, report) is not built yet; this
is its engine.
"""
from .estimators import Estimate, barEstimate, decorrelatedIndices, jarzynskiEstimate, kT, mbarEstimate
from .sampling import Leg, checkSchedule, sampleEndState, sampleWindow, switch

__all__ = ["Estimate", "mbarEstimate", "barEstimate", "jarzynskiEstimate", "decorrelatedIndices", "kT", "Leg",
           "sampleWindow", "sampleEndState", "switch", "checkSchedule"]
