"""Free energies along lambda: the MM -> ML/MM correction of a leg by MBAR windows or by
nonequilibrium switching with BAR, on one construction (a System with a lambda parameter).

- :mod:`.sampling`: :class:`Leg`, :func:`sampleWindow`, :func:`sampleEndState`, :func:`switch`.
- :mod:`.estimators`: :func:`mbarEstimate`, :func:`barEstimate`, :func:`jarzynskiEstimate`.
- :mod:`.protocols`: :class:`MBARProtocol` and :class:`NEQProtocol`: a leg's tasks and their analysis.
- :mod:`.tasks`: :class:`Task`, :class:`ResultStore` (durable, resumable results), :func:`runTasks`
  (here, or on Dask).
- :mod:`.legs`: :func:`mixedLeg`, the ML/MM leg of an MM System (createMixedSystem with lambda).
- :mod:`.vacuum`: :func:`extractMolecule`, the solute alone in vacuum, cut out of a solvated System.
- :mod:`.analytic`: harmonic oscillators, whose answer is exact, to check all of the above.
- :mod:`.config`, :mod:`.workflow`, :mod:`.report`: the ``openmm-hybrid fe`` command (ddG of binding
  and hydration from a TOML config: :func:`loadFEConfig`, :func:`runFreeEnergy`), and its report.
"""
from .estimators import Estimate, barEstimate, decorrelatedIndices, jarzynskiEstimate, kT, mbarEstimate
from .legs import mixedLeg
from .protocols import MBARProtocol, NEQProtocol, runProtocolTask
from .sampling import Leg, checkSchedule, sampleEndState, sampleWindow, setSnapshot, snapshotArrays, switch
from .tasks import ResultStore, Task, runJobs, runTasks
from .vacuum import extractMolecule
from .config import loadFEConfig
from .workflow import analyzeFreeEnergy, runFreeEnergy

__all__ = ["Estimate", "mbarEstimate", "barEstimate", "jarzynskiEstimate", "decorrelatedIndices", "kT", "Leg",
           "sampleWindow", "sampleEndState", "switch", "checkSchedule", "snapshotArrays", "setSnapshot",
           "MBARProtocol", "NEQProtocol", "runProtocolTask", "ResultStore", "Task", "runTasks", "runJobs", "mixedLeg",
           "extractMolecule", "loadFEConfig", "runFreeEnergy", "analyzeFreeEnergy"]
