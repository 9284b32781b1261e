"""Legs built from an MM System: the ML/MM System with lambda, ready for the protocols.

:func:`mixedLeg` builds ``createMixedSystem(..., interpolate=True)`` with the correction (the ML
force and the region's MM terms) in a free force group, so that with ``innerSteps > 1`` it runs
on the outer step of the MTS integrator, and returns the :class:`~.sampling.Leg`.
"""
import openmm.unit as unit

from ..mixed import createMixedSystem
from ..utils import freeForceGroup
from .sampling import Leg

__all__ = ["mixedLeg"]


def mixedLeg(topology, system, positions, mlAtoms, model="ani1x", box=None, temperature=298.15 * unit.kelvin,
             timestep=2 * unit.femtosecond, innerSteps=1, friction=1.0 / unit.picosecond, platform=None,
             properties=None, **mixedArgs):
    """The ML/MM leg of an MM System: lambda = 0 is MM, lambda = 1 is ML/MM.

    Parameters
    ----------
    topology, system, positions, box
        The MM System and where it starts.
    mlAtoms, model
        The ML region and the model (a registered name, a file or a module), as for
        :func:`~openmmhybrid.createMixedSystem`; ``mixedArgs`` go to it too (``embedding``,
        ``linkAtoms``, ``cutoff``, ...).
    temperature, timestep, innerSteps, friction
        Langevin dynamics; with ``innerSteps > 1`` the correction runs every ``timestep`` and the
        MM forces every ``timestep / innerSteps``.
    platform, properties
        The OpenMM platform by name, and its properties.
    """
    group = freeForceGroup(system, "the ML correction")
    mixed = createMixedSystem(topology, system, mlAtoms, model, interpolate=True, correctionGroup=group, **mixedArgs)
    return Leg(system=mixed, positions=positions, box=box, temperature=temperature, timestep=timestep,
               friction=friction, innerSteps=int(innerSteps), outerGroups={group}, linear=True, lambdaGroups={group},
               platform=platform, properties=properties)
