"""Native multiple-time-step integrators (C++ kernels, not CustomIntegrators).

:class:`MTSIntegrator` (velocity-Verlet rRESPA) and :class:`MTSLangevinIntegrator`
(BAOAB-RESPA) take the same arguments and run the same algorithms as OpenMM's Python
``openmm.MTSIntegrator`` and ``openmm.MTSLangevinIntegrator``; they are real
:class:`openmm.Integrator` objects.  :func:`createMTSIntegrator` builds the right one for a mixed
System: MM forces on the inner step, the ML correction on the outer step.
"""
import numbers

import openmm
import openmm.unit as unit

from . import _openmmhybrid as _core
from .mlforce import MLForce
from .utils import groupsInUse, mdValue

__all__ = ["MTSIntegrator", "MTSLangevinIntegrator", "createMTSIntegrator", "mtsGroups"]


def _group_list(groups, who):
    try:
        pairs = [tuple(g) for g in groups]
    except TypeError:
        raise TypeError(f"{who}: groups must be a list of (force group, substeps) pairs, not {groups!r}") from None
    result = []
    for pair in pairs:
        if len(pair) != 2 or any(isinstance(x, bool) or int(x) != x for x in pair):
            raise TypeError(f"{who}: each entry of groups must be a pair of integers (force group, substeps), not {pair!r}")
        result.append((int(pair[0]), int(pair[1])))
    return result


def _checked(function, *args):
    try:
        return function(*args)
    except openmm.OpenMMException as error:
        # The same exception type as openmm.MTSIntegrator raises for bad groups.
        raise ValueError(str(error)) from None


class _MultipleTimeStep(openmm.Integrator):
    """Shared methods of the native MTS integrators.  A subclass names its binding's constructor
    (``_factory``) and type check (``_matches``)."""

    _factory = None
    _matches = None

    def _construct(self, groups, *arguments):
        """Create the C++ integrator from MD-unit ``arguments`` and the checked ``groups``."""
        self.this = _checked(type(self)._factory, *arguments, _group_list(groups, type(self).__name__)).this

    def getGroups(self):
        """The (force group, substeps) pairs as given to the constructor."""
        return [tuple(g) for g in _core.MTS_getGroups(self)]

    @classmethod
    def cast(cls, integrator):
        """The typed integrator behind an :class:`openmm.Integrator`, for example the one
        ``openmm.XmlSerializer.deserialize`` returns.  It refers to the same C++ object."""
        if isinstance(integrator, cls):
            return integrator
        if not (isinstance(integrator, openmm.Integrator) and cls._matches(integrator)):
            raise TypeError(f"{cls.__name__}.cast: {integrator!r} is not an openmmhybrid.{cls.__name__}")
        typed = cls.__new__(cls)
        typed.this = integrator.this
        return typed

    def __getstate__(self):
        return openmm.XmlSerializer.serialize(self)

    def __setstate__(self, state):
        self.this = openmm.XmlSerializer.deserialize(state).this

    def __copy__(self):
        copy = type(self).__new__(type(self))
        copy.__setstate__(self.__getstate__())
        return copy

    def __deepcopy__(self, memo):
        return self.__copy__()


class MTSIntegrator(_MultipleTimeStep):
    """Velocity-Verlet rRESPA multiple-time-step integrator, native and drop-in for
    ``openmm.MTSIntegrator``.

    Parameters
    ----------
    dt : time
        The outer step (a Quantity, or a number in ps).
    groups : list of (int, int)
        ``(force group, substeps)`` pairs: the group's forces are evaluated ``substeps`` times per
        outer step.  Sorted by substeps each count must divide the next; each group appears once;
        groups not listed are ignored.  Groups with the same count form one level.

    The schedule is Tuckerman's rRESPA exactly as in ``openmm.MTSIntegrator``: half kicks of each
    level around the levels inside it; at the innermost level the drift and the position and
    velocity constraints with the innermost step size.  Each level's forces are computed once per
    time point and reused across steps (OpenMM's version recomputes the inner levels at the start
    of every step).  Velocities are synchronous with positions, so the kinetic energy needs no
    half-step shift.

    Examples
    --------
    >>> integrator = MTSIntegrator(4*femtoseconds, [(1, 1), (0, 4)])   # group 1 every 4 fs, group 0 every 1 fs
    """

    _factory = staticmethod(_core.MTSIntegrator_create)
    _matches = staticmethod(_core.isMTSIntegrator)

    def __init__(self, dt, groups):
        self._construct(groups, mdValue(dt))

    def __repr__(self):
        return f"<openmmhybrid.MTSIntegrator dt={self.getStepSize()} groups={self.getGroups()}>"


class MTSLangevinIntegrator(_MultipleTimeStep):
    """BAOAB-RESPA multiple-time-step Langevin integrator, native and drop-in for
    ``openmm.MTSLangevinIntegrator``.

    Parameters
    ----------
    temperature : temperature
        The heat bath temperature (a Quantity, or a number in K).
    friction : 1/time
        The friction coefficient (a Quantity, or a number in 1/ps).
    dt : time
        The outer step (a Quantity, or a number in ps).
    groups : list of (int, int)
        As for :class:`MTSIntegrator`.

    The O step (friction and noise) acts on the innermost step with the innermost step size, as
    in Lagardere et al., J. Phys. Chem. Lett. 10, 2593 (2019).  The noise comes from a
    counter-based generator (Philox4x32-10) keyed by the random seed, so a trajectory does not
    depend on the number of threads, and a checkpoint restores the stream exactly.
    """

    _factory = staticmethod(_core.MTSLangevinIntegrator_create)
    _matches = staticmethod(_core.isMTSLangevinIntegrator)

    def __init__(self, temperature, friction, dt, groups):
        self._construct(groups, mdValue(temperature), mdValue(friction), mdValue(dt))

    def getTemperature(self):
        """The heat bath temperature."""
        return _core.MTS_getTemperature(self) * unit.kelvin

    def setTemperature(self, temperature):
        """Set the heat bath temperature (Quantity or K); takes effect on the next step."""
        _checked(_core.MTS_setTemperature, self, mdValue(temperature))

    def getFriction(self):
        """The friction coefficient."""
        return _core.MTS_getFriction(self) / unit.picosecond

    def setFriction(self, friction):
        """Set the friction coefficient (Quantity or 1/ps); takes effect on the next step."""
        _checked(_core.MTS_setFriction, self, mdValue(friction))

    def getRandomNumberSeed(self):
        """The random number seed (0: a new seed for every Context)."""
        return _core.MTS_getRandomNumberSeed(self)

    def setRandomNumberSeed(self, seed):
        """Set the random number seed; read when a Context is created or reinitialized."""
        _core.MTS_setRandomNumberSeed(self, int(seed))

    def __repr__(self):
        return (f"<openmmhybrid.MTSLangevinIntegrator T={self.getTemperature()} friction={self.getFriction()} "
                f"dt={self.getStepSize()} groups={self.getGroups()}>")


def _correction_group(system):
    groups = {MLForce.cast(f).getForceGroup() for f in system.getForces() if MLForce.isinstance(f)}
    if not groups:
        raise ValueError("createMTSIntegrator: the System has no MLForce; pass correctionGroup= (the group of the "
                         "forces to evaluate on the outer step), or build the System with createMixedSystem().")
    if len(groups) > 1:
        raise ValueError(f"createMTSIntegrator: the System's MLForces are in several force groups {sorted(groups)}; "
                         "pass correctionGroup= to say which one is evaluated on the outer step.")
    return groups.pop()


def createMTSIntegrator(system, dt, innerSteps, temperature=None, friction=1.0 / unit.picosecond,
                        correctionGroup=None):
    """A native multiple-time-step integrator for a mixed System: every MM force group on the
    inner step, the ML correction (its force group) once per outer step.

    Parameters
    ----------
    system : openmm.System
        The System, typically from :func:`createMixedSystem`.
    dt : time
        The outer step, the interval between ML evaluations.  ``dt / innerSteps`` is the MM step.
    innerSteps : int
        MM steps per outer step.
    temperature : temperature, optional
        With a temperature, an :class:`MTSLangevinIntegrator` (BAOAB-RESPA) at that temperature;
        without, an :class:`MTSIntegrator` (NVE).
    friction : 1/time
        The Langevin friction (1/ps by default).
    correctionGroup : int, optional
        The force group of the ML correction; by default the group of the System's MLForce.

    Recommended settings (the NVE drift table in ``docs/benchmarks.md``, p-xylene/ANI-1x in
    water): for constant-energy runs, the ML correction every 2 fs over MM steps of 0.5-1 fs
    (``dt=2*femtoseconds, innerSteps=2`` to ``4``); the energy then behaves as with every force at
    the MM step.  With a Langevin thermostat, up to ``dt=4*femtoseconds, innerSteps=4``: the
    correction's fast part (ML minus MM bond stretching of the region) then heats by 0.02-0.05
    kT/ns per degree of freedom, which the thermostat absorbs.  6 fs and more is unsafe (8 fs
    diverged).

    Returns
    -------
    MTSIntegrator or MTSLangevinIntegrator
    """
    if isinstance(innerSteps, bool) or int(innerSteps) != innerSteps or int(innerSteps) < 1:
        raise ValueError(f"createMTSIntegrator: innerSteps must be a positive integer, not {innerSteps!r}")
    if correctionGroup is None:
        correctionGroup = _correction_group(system)
    groups = mtsGroups(system, correctionGroup, int(innerSteps))
    if len(groups) == 1:
        raise ValueError(f"createMTSIntegrator: the System has no forces outside the correction group {correctionGroup}; "
                         "there is nothing to put on the inner step.")
    if temperature is None:
        return MTSIntegrator(dt, groups)
    return MTSLangevinIntegrator(temperature, friction, dt, groups)


def mtsGroups(system, correctionGroup, innerSteps):
    """The ``groups`` argument of a multiple-time-step integrator for a mixed System.

    Every MM force group is evaluated ``innerSteps`` times per outer step; the correction group
    (the ML force and the region's MM energy) once, on the outer step::

        groups = mtsGroups(mixed, correctionGroup, 4)
        integrator = openmmhybrid.MTSLangevinIntegrator(300*kelvin, 1/picosecond, 2*femtoseconds, groups)

    Parameters
    ----------
    system : openmm.System
        The mixed System.
    correctionGroup : int or collection of int
        The group passed to (or chosen by) :func:`createMixedSystem`, or several groups that all
        go on the outer step.
    innerSteps : int
        MM steps per outer step.

    Returns
    -------
    list of (int, int)
        The outer groups first (in increasing order), then every other group in use.
    """
    if int(innerSteps) < 1:
        raise ValueError("mtsGroups: innerSteps must be at least 1")
    outer = ({int(correctionGroup)} if isinstance(correctionGroup, numbers.Integral)
             else {int(g) for g in correctionGroup})
    inner = sorted(groupsInUse(system) - outer)
    return [(g, 1) for g in sorted(outer)] + [(g, int(innerSteps)) for g in inner]
