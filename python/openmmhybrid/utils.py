"""Small facts and checks that several modules share, each answered here once.

- :data:`LAMBDA_PARAMETER`: the global parameter of the ML/MM interpolation.
- :data:`ONE_4PI_EPS0`: the Coulomb constant, OpenMM's value.
- :func:`mdValue`: a plain number in OpenMM's MD units from a number or a Quantity.
- :func:`atomIndices`: a list of particle indices, checked.
- :func:`groupsInUse`, :func:`freeForceGroup` and :func:`freeForceGroups`: which force groups a System uses.
- :func:`degreesOfFreedom`: the kinetic degrees of freedom, as OpenMM's StateDataReporter counts them.
- :func:`firstLine`: the first line of an exception's message, for one-line errors.
"""
import math
import numbers

import openmm
import openmm.unit as unit

__all__ = ["LAMBDA_PARAMETER", "ONE_4PI_EPS0", "mdValue", "atomIndices", "groupsInUse", "freeForceGroup", "freeForceGroups", "degreesOfFreedom",
           "firstLine"]

#: The global parameter that interpolates between MM (0) and ML/MM (1); openmm-ml's name.
LAMBDA_PARAMETER = "lambda_interpolate"

# 1/(4 pi eps0) in kJ nm / (mol e^2), computed from the CODATA 2018 constants exactly as OpenMM's
# SimTKOpenMMRealType.h defines ONE_4PI_EPS0 (so the region's Coulomb pairs subtracted here cancel
# the MM force's to the last digit): 138.93545764...
_ELEMENTARY_CHARGE = 1.602176634e-19  # C
_AVOGADRO = 6.02214076e23  # 1/mol
_EPSILON0 = 1e-6 * 8.8541878128e-12 / (_ELEMENTARY_CHARGE * _ELEMENTARY_CHARGE * _AVOGADRO)  # e^2 mol / (kJ nm)
#: The Coulomb constant 1/(4 pi eps0) in kJ nm / (mol e^2), OpenMM's value.
ONE_4PI_EPS0 = 1.0 / (4.0 * math.pi * _EPSILON0)


def mdValue(value):
    """A plain float in OpenMM's MD units (nm, ps, kJ/mol, e, ...) from a number or a Quantity."""
    if unit.is_quantity(value):
        return float(value.value_in_unit_system(unit.md_unit_system))
    return float(value)


def atomIndices(atoms, who, numParticles=None):
    """``atoms`` as a list of ints, checked.

    Parameters
    ----------
    atoms : sequence of int
    who : str
        The function name that error messages start with.
    numParticles : int, optional
        When given, the indices must be unique, in ``[0, numParticles)``, and there must be at
        least one.

    Raises
    ------
    TypeError
        ``atoms`` is not a sequence, or an entry is not an integer.
    ValueError
        (with ``numParticles``) the list is empty, an index is out of range or repeated.
    """
    try:
        values = list(atoms)
    except TypeError:
        raise TypeError(f"{who}: the atoms must be a sequence of particle indices, not {type(atoms).__name__}") from None
    for a in values:
        if not isinstance(a, numbers.Integral) or isinstance(a, bool):
            raise TypeError(f"{who}: atom index {a!r} is not an integer")
    result = [int(a) for a in values]
    if numParticles is None:
        return result
    if not result:
        raise ValueError(f"{who}: the ML region is empty (the selection matched no atom)")
    bad = [a for a in result if not 0 <= a < numParticles]
    if bad:
        raise ValueError(f"{who}: ML atom index {bad[0]} is out of range: the System has {numParticles} particles "
                         f"(valid indices 0 to {numParticles - 1})")
    seen = set()
    for a in result:
        if a in seen:
            raise ValueError(f"{who}: ML atom index {a} appears more than once")
        seen.add(a)
    return result


def groupsInUse(system):
    """The force groups of every force of ``system``, including a NonbondedForce's separate
    reciprocal-space group."""
    used = set()
    for force in system.getForces():
        used.add(force.getForceGroup())
        if isinstance(force, openmm.NonbondedForce) and force.getReciprocalSpaceForceGroup() >= 0:
            used.add(force.getReciprocalSpaceForceGroup())
    return used


def freeForceGroups(system, count, who):
    """The ``count`` lowest force groups (0-31) that no force of ``system`` uses.

    Raises
    ------
    ValueError
        Fewer than ``count`` groups are free.
    """
    used = groupsInUse(system)
    free = [g for g in range(32) if g not in used][:count]
    if len(free) < count:
        raise ValueError(f"{who}: the System uses {len(used)} of the 32 force groups, and {count} free ones are needed")
    return free


def freeForceGroup(system, who):
    """The lowest force group (0-31) that no force of ``system`` uses (see :func:`freeForceGroups`)."""
    return freeForceGroups(system, 1, who)[0]


def firstLine(error):
    """The first line of an exception's message (its type's name if the message is empty)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def degreesOfFreedom(system):
    """The kinetic degrees of freedom of ``system``, counted as OpenMM's StateDataReporter does:
    3 per particle with mass, minus one per constraint involving one, minus 3 with a
    CMMotionRemover (at least 1)."""
    def massive(i):
        return system.getParticleMass(i) > 0 * unit.dalton
    dof = 3 * sum(1 for i in range(system.getNumParticles()) if massive(i))
    for i in range(system.getNumConstraints()):
        a, b, _ = system.getConstraintParameters(i)
        if massive(a) or massive(b):
            dof -= 1
    if any(isinstance(f, openmm.CMMotionRemover) for f in system.getForces()):
        dof -= 3
    return max(dof, 1)
