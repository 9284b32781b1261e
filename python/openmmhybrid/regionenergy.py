"""The MM energy of the ML region, as correction forces with the opposite sign.

For every force class of an MM System, :func:`regionEnergyForces` builds ordinary OpenMM forces
that give ``-lambda`` times the MM energy of the region alone: every bonded term wholly inside the
region, and the region's internal nonbonded pairs with their exception parameters (Coulomb as
plain ``q_i q_j / (4 pi eps0 r)``, Lennard-Jones, and the same pairs of every
``CustomNonbondedForce``).  :mod:`openmmhybrid.mixed` explains why plain Coulomb pairs match what
the MM force gives the region under PME, Ewald and reaction field.

Electrostatic embedding removes the region's charges from MM electrostatics instead:
:func:`removeRegionCharges` (fixed lambda) and :func:`regionElectrostatics` (with lambda).
"""
import copy
import math

import openmm

from .linkatoms import RegionTerms
from .utils import LAMBDA_PARAMETER, ONE_4PI_EPS0, mdValue

__all__ = ["NO_REGION_ENERGY", "checkSupported", "regionEnergyForces", "removeRegionCharges", "regionElectrostatics"]

#: Forces with no interaction energy between the region's atoms: nothing to subtract.
NO_REGION_ENERGY = (openmm.CMMotionRemover, openmm.MonteCarloBarostat, openmm.MonteCarloAnisotropicBarostat,
                    openmm.MonteCarloMembraneBarostat, openmm.MonteCarloFlexibleBarostat, openmm.AndersenThermostat,
                    openmm.CustomExternalForce)


def _scale(interpolate):
    return f"-{LAMBDA_PARAMETER}" if interpolate else "-1"


def _finish(force, source, interpolate, group, periodic=None):
    """Common settings of a correction force: lambda parameter, periodicity, group, name."""
    if interpolate:
        force.addGlobalParameter(LAMBDA_PARAMETER, 1.0)
        force.addEnergyParameterDerivative(LAMBDA_PARAMETER)
    if periodic is None and hasattr(source, "usesPeriodicBoundaryConditions"):
        periodic = source.usesPeriodicBoundaryConditions()
    if periodic is not None and hasattr(force, "setUsesPeriodicBoundaryConditions"):
        force.setUsesPeriodicBoundaryConditions(periodic)
    force.setForceGroup(group)
    force.setName(f"ML/MM correction: MM energy of the region ({type(source).__name__})")
    return force


def _copy_globals(target, source):
    # createMixedSystem has checked that no force of the System uses LAMBDA_PARAMETER already.
    for i in range(source.getNumGlobalParameters()):
        target.addGlobalParameter(source.getGlobalParameterName(i), source.getGlobalParameterDefaultValue(i))


def _harmonic_bonds(force, terms, interpolate, group):
    out = openmm.CustomBondForce(f"{_scale(interpolate)}*0.5*k*(r-r0)^2")
    out.addPerBondParameter("r0")
    out.addPerBondParameter("k")
    for i in range(force.getNumBonds()):
        a, b, r0, k = force.getBondParameters(i)
        if terms.bond(a, b):
            out.addBond(a, b, [mdValue(r0), mdValue(k)])
    return _finish(out, force, interpolate, group) if out.getNumBonds() else None


def _harmonic_angles(force, terms, interpolate, group):
    out = openmm.CustomAngleForce(f"{_scale(interpolate)}*0.5*k*(theta-theta0)^2")
    out.addPerAngleParameter("theta0")
    out.addPerAngleParameter("k")
    for i in range(force.getNumAngles()):
        a, b, c, theta0, k = force.getAngleParameters(i)
        if terms.angle(a, b, c):
            out.addAngle(a, b, c, [mdValue(theta0), mdValue(k)])
    return _finish(out, force, interpolate, group) if out.getNumAngles() else None


def _periodic_torsions(force, terms, interpolate, group):
    out = openmm.CustomTorsionForce(f"{_scale(interpolate)}*k*(1+cos(periodicity*theta-phase))")
    for name in ("periodicity", "phase", "k"):
        out.addPerTorsionParameter(name)
    for i in range(force.getNumTorsions()):
        a, b, c, d, periodicity, phase, k = force.getTorsionParameters(i)
        if terms.torsion(a, b, c, d):
            out.addTorsion(a, b, c, d, [float(periodicity), mdValue(phase), mdValue(k)])
    return _finish(out, force, interpolate, group) if out.getNumTorsions() else None


def _rb_torsions(force, terms, interpolate, group):
    # OpenMM's Ryckaert-Bellemans form: sum_n c_n cos(psi)^n with psi = theta - 180 degrees.
    out = openmm.CustomTorsionForce(f"{_scale(interpolate)}*(c0+c1*cp+c2*cp^2+c3*cp^3+c4*cp^4+c5*cp^5); "
                                    f"cp=cos(theta-{math.pi!r})")
    for n in range(6):
        out.addPerTorsionParameter(f"c{n}")
    for i in range(force.getNumTorsions()):
        a, b, c, d, *coefficients = force.getTorsionParameters(i)
        if terms.torsion(a, b, c, d):
            out.addTorsion(a, b, c, d, [mdValue(x) for x in coefficients])
    return _finish(out, force, interpolate, group) if out.getNumTorsions() else None


def _cmap_torsions(force, terms, interpolate, group):
    # A CMAP cannot be written as a custom expression with the same interpolation, so a copy of the
    # force restricted to the region is wrapped in a CustomCVForce (only when the region has one).
    cmap = openmm.CMAPTorsionForce()
    for i in range(force.getNumMaps()):
        size, energy = force.getMapParameters(i)
        cmap.addMap(size, energy)
    for i in range(force.getNumTorsions()):
        m, *particles = force.getTorsionParameters(i)
        if terms.cmap(particles):
            cmap.addTorsion(m, *particles)
    if cmap.getNumTorsions() == 0:
        return None
    cmap.setUsesPeriodicBoundaryConditions(force.usesPeriodicBoundaryConditions())
    out = openmm.CustomCVForce(f"{_scale(interpolate)}*cmap")
    out.addCollectiveVariable("cmap", cmap)
    return _finish(out, force, interpolate, group, periodic=False)


def _custom_bonded(force, terms, interpolate, group):
    """CustomBondForce, CustomAngleForce, CustomTorsionForce, CustomCompoundBondForce (the last by
    all of its particles in the region)."""
    # "scale*mmRegionTerm; mmRegionTerm=<main>; <the user's own definitions>" is a valid expression.
    expression = f"{_scale(interpolate)}*mmRegionTerm; mmRegionTerm={force.getEnergyFunction().strip().rstrip(';')}"
    if isinstance(force, openmm.CustomBondForce):
        out = openmm.CustomBondForce(expression)
        count, get, add, addParameter, numParameters, getName = (
            force.getNumBonds, force.getBondParameters, out.addBond, out.addPerBondParameter,
            force.getNumPerBondParameters, force.getPerBondParameterName)
    elif isinstance(force, openmm.CustomAngleForce):
        out = openmm.CustomAngleForce(expression)
        count, get, add, addParameter, numParameters, getName = (
            force.getNumAngles, force.getAngleParameters, out.addAngle, out.addPerAngleParameter,
            force.getNumPerAngleParameters, force.getPerAngleParameterName)
    elif isinstance(force, openmm.CustomTorsionForce):
        out = openmm.CustomTorsionForce(expression)
        count, get, add, addParameter, numParameters, getName = (
            force.getNumTorsions, force.getTorsionParameters, out.addTorsion, out.addPerTorsionParameter,
            force.getNumPerTorsionParameters, force.getPerTorsionParameterName)
    else:
        out = openmm.CustomCompoundBondForce(force.getNumParticlesPerBond(), expression)
        count, get, add, addParameter, numParameters, getName = (
            force.getNumBonds, force.getBondParameters, out.addBond, out.addPerBondParameter,
            force.getNumPerBondParameters, force.getPerBondParameterName)
        for i in range(force.getNumTabulatedFunctions()):
            out.addTabulatedFunction(force.getTabulatedFunctionName(i), copy.deepcopy(force.getTabulatedFunction(i)))
    for i in range(numParameters()):
        addParameter(getName(i))
    _copy_globals(out, force)
    numTerms = 0
    for i in range(count()):
        *particles, parameters = get(i)
        if isinstance(force, openmm.CustomCompoundBondForce):
            particles = list(particles[0])
        if isinstance(force, openmm.CustomAngleForce):
            selected = terms.angle(*particles)
        elif isinstance(force, openmm.CustomTorsionForce):
            selected = terms.torsion(*particles)
        else:
            selected = terms.inside(particles)
        if selected:
            if isinstance(force, openmm.CustomCompoundBondForce):
                add(particles, list(parameters))
            else:
                add(*particles, list(parameters))
            numTerms += 1
    return _finish(out, force, interpolate, group) if numTerms else None


def _switch(cutoff, switchDistance):
    x = f"((r-{switchDistance!r})/{cutoff - switchDistance!r})"
    return f"(1-step(r-{switchDistance!r})*(10*{x}^3-15*{x}^4+6*{x}^5))"


def _nonbonded(force, region, interpolate, group, includeCoulomb=True):
    """The region's internal pairs of a NonbondedForce as a CustomBondForce (Lennard-Jones only
    when ``includeCoulomb`` is false: electrostatic embedding removes the region's charges separately)."""
    for i in range(force.getNumParticleParameterOffsets()):
        if force.getParticleParameterOffset(i)[1] in region:
            raise NotImplementedError("createMixedSystem: the NonbondedForce has a particle parameter offset on ML atom "
                                      f"{force.getParticleParameterOffset(i)[1]}; offsets on the ML region are not supported.")
    for i in range(force.getNumExceptionParameterOffsets()):
        a, b = force.getExceptionParameters(force.getExceptionParameterOffset(i)[1])[:2]
        if a in region and b in region:
            raise NotImplementedError("createMixedSystem: the NonbondedForce has an exception parameter offset inside the ML "
                                      f"region (atoms {a} and {b}); offsets on the ML region are not supported.")
    if not force.getIncludeDirectSpace():
        raise NotImplementedError("createMixedSystem: the NonbondedForce computes no direct-space interactions "
                                  "(setIncludeDirectSpace(False)), so its region pairs cannot be subtracted.")
    method = force.getNonbondedMethod()
    cutoffMethods = (openmm.NonbondedForce.CutoffPeriodic, openmm.NonbondedForce.CutoffNonPeriodic)
    ljCutoff = method in cutoffMethods or method in (openmm.NonbondedForce.PME, openmm.NonbondedForce.Ewald)
    periodicMethod = method not in (openmm.NonbondedForce.NoCutoff, openmm.NonbondedForce.CutoffNonPeriodic)
    cutoff = mdValue(force.getCutoffDistance())
    plainCoulomb = f"{ONE_4PI_EPS0!r}*chargeProd/r"
    plainLJ = "4*epsilon*((sigma/r)^12-(sigma/r)^6)"
    coulomb, lj = plainCoulomb, plainLJ
    if method in cutoffMethods:
        # OpenMM's reaction field for ordinary pairs inside the cutoff.
        eps = force.getReactionFieldDielectric()
        krf = (1 / cutoff**3) * (eps - 1) / (2 * eps + 1)
        crf = (1 / cutoff) * 3 * eps / (2 * eps + 1)
        coulomb = f"{ONE_4PI_EPS0!r}*chargeProd*(1/r+{krf!r}*r^2-{crf!r})*(1-step(r-{cutoff!r}))"
    if ljCutoff:
        lj = f"{plainLJ}*(1-step(r-{cutoff!r}))"
        if force.getUseSwitchingFunction():
            lj = f"{lj}*{_switch(cutoff, mdValue(force.getSwitchingDistance()))}"
    # Ordinary pairs use the force's cutoff, switch and reaction field; exceptions are plain Coulomb
    # and LJ in OpenMM, with periodic images only if the force says so.
    if not includeCoulomb:
        coulombTerm = plainCoulomb = "0"
    else:
        coulombTerm = coulomb
    ordinary = openmm.CustomBondForce(f"{_scale(interpolate)}*(coulomb+lj); coulomb={coulombTerm}; lj={lj}")
    excepted = openmm.CustomBondForce(f"{_scale(interpolate)}*(coulomb+lj); coulomb={plainCoulomb}; lj={plainLJ}")
    for out in (ordinary, excepted):
        for name in ("chargeProd", "sigma", "epsilon"):
            out.addPerBondParameter(name)
    exceptions = {}
    for i in range(force.getNumExceptions()):
        a, b, chargeProd, sigma, epsilon = force.getExceptionParameters(i)
        if a in region and b in region:
            exceptions[(min(a, b), max(a, b))] = (mdValue(chargeProd), mdValue(sigma), mdValue(epsilon))
    particles = sorted(region)
    params = {i: [mdValue(x) for x in force.getParticleParameters(i)] for i in particles}
    for x, a in enumerate(particles):
        for b in particles[x + 1:]:
            if (a, b) in exceptions:
                chargeProd, sigma, epsilon = exceptions[(a, b)]
                if (chargeProd == 0 or not includeCoulomb) and epsilon == 0:
                    continue
                excepted.addBond(a, b, [chargeProd, sigma, epsilon])
            else:
                (qa, sa, ea), (qb, sb, eb) = params[a], params[b]
                if (qa * qb == 0 or not includeCoulomb) and ea * eb == 0:
                    continue
                ordinary.addBond(a, b, [qa * qb, 0.5 * (sa + sb), math.sqrt(ea * eb)])
    result = []
    if ordinary.getNumBonds():
        result.append(_finish(ordinary, force, interpolate, group, periodicMethod))
    if excepted.getNumBonds():
        periodic = periodicMethod and force.getExceptionsUsePeriodicBoundaryConditions()
        result.append(_finish(excepted, force, interpolate, group, periodic))
        excepted.setName(excepted.getName().replace("(NonbondedForce)", "(NonbondedForce exceptions)"))
    return result


def _custom_nonbonded(force, terms, interpolate, group):
    """The region's internal pairs of a CustomNonbondedForce as a two-particle CustomCompoundBondForce."""
    region = terms.region
    if force.getNumComputedValues() > 0:
        raise NotImplementedError("createMixedSystem: a CustomNonbondedForce with computed values (addComputedValue) "
                                  "is not supported yet.")
    method = force.getNonbondedMethod()
    factor = ""
    if method != openmm.CustomNonbondedForce.NoCutoff:
        cutoff = mdValue(force.getCutoffDistance())
        factor = f"(1-step(r-{cutoff!r}))"
        if force.getUseSwitchingFunction():
            factor += "*" + _switch(cutoff, mdValue(force.getSwitchingDistance()))
    energy = force.getEnergyFunction().strip().rstrip(";")
    expression = (f"{_scale(interpolate)}*{factor + '*' if factor else ''}mmRegionPair; mmRegionPair={energy}; "
                  "r=distance(p1,p2)")
    out = openmm.CustomCompoundBondForce(2, expression)
    names = [force.getPerParticleParameterName(i) for i in range(force.getNumPerParticleParameters())]
    for name in names:
        out.addPerBondParameter(name + "1")
    for name in names:
        out.addPerBondParameter(name + "2")
    _copy_globals(out, force)
    for i in range(force.getNumTabulatedFunctions()):
        out.addTabulatedFunction(force.getTabulatedFunctionName(i), copy.deepcopy(force.getTabulatedFunction(i)))
    excluded = set()
    for i in range(force.getNumExclusions()):
        a, b = force.getExclusionParticles(i)
        excluded.add((min(a, b), max(a, b)))
    groups = [(set(s1), set(s2)) for s1, s2 in (force.getInteractionGroupParameters(i)
                                                for i in range(force.getNumInteractionGroups()))]
    particles = sorted(region)
    params = {i: list(force.getParticleParameters(i)) for i in particles}
    for x, a in enumerate(particles):
        for b in particles[x + 1:]:
            if (a, b) in excluded:
                continue
            if not groups:
                out.addBond([a, b], params[a] + params[b])
            # OpenMM computes a pair once for every interaction group that holds it, with the
            # particle from the group's first set as particle 1.
            for s1, s2 in groups:
                if a in s1 and b in s2:
                    out.addBond([a, b], params[a] + params[b])
                elif b in s1 and a in s2:
                    out.addBond([b, a], params[b] + params[a])
    return _finish(out, force, interpolate, group) if out.getNumBonds() else None


_HANDLERS = [
    (openmm.HarmonicBondForce, _harmonic_bonds),
    (openmm.HarmonicAngleForce, _harmonic_angles),
    (openmm.PeriodicTorsionForce, _periodic_torsions),
    (openmm.RBTorsionForce, _rb_torsions),
    (openmm.CMAPTorsionForce, _cmap_torsions),
    (openmm.CustomBondForce, _custom_bonded),
    (openmm.CustomAngleForce, _custom_bonded),
    (openmm.CustomTorsionForce, _custom_bonded),
    (openmm.CustomCompoundBondForce, _custom_bonded),
    (openmm.NonbondedForce, _nonbonded),
    (openmm.CustomNonbondedForce, _custom_nonbonded),
]


def _handler(force):
    for cls, handler in _HANDLERS:
        if type(force) is cls:
            return handler
    return None


def checkSupported(force, who="createMixedSystem"):
    """Raise NotImplementedError if the region's energy in ``force`` cannot be separated."""
    if _handler(force) is None and not isinstance(force, NO_REGION_ENERGY):
        raise NotImplementedError(f"{who}: the System has a {type(force).__name__} ('{force.getName()}'), whose energy of "
                                  "the ML region cannot be separated yet. Supported: "
                                  f"{', '.join(cls.__name__ for cls, _ in _HANDLERS)} (plus "
                                  f"{', '.join(cls.__name__ for cls in NO_REGION_ENERGY)}, which hold no interaction "
                                  "inside the region).")


def regionEnergyForces(force, region, interpolate, group, includeCoulomb=True, terms=None):
    """The forces that give ``-lambda`` (``-1`` without interpolation) times the MM energy of the
    region in ``force``: its terms wholly inside the region, and its nonbonded pairs between
    region atoms (Lennard-Jones only if ``includeCoulomb`` is false).

    Parameters
    ----------
    force : openmm.Force
        A force of the MM System (see :func:`checkSupported`).
    region : set of int
        The ML atoms and the virtual sites built from them only.
    interpolate : bool
        Scale by the global parameter ``lambda_interpolate`` and report dE/dlambda.
    group : int
        The force group of the correction.
    terms : openmmhybrid.linkatoms.RegionTerms, optional
        Which bonded terms count as the region's; default: those wholly inside ``region``.  With
        link atoms, openmm-ml's selection (angles and torsions that reach the capped bonds).

    Returns
    -------
    list of openmm.Force
        Empty when the force holds no interaction inside the region.
    """
    handler = _handler(force)
    if handler is None:
        return []
    if handler is _nonbonded:
        return _nonbonded(force, region, interpolate, group, includeCoulomb)
    result = handler(force, terms if terms is not None else RegionTerms(region), interpolate, group)
    return [] if result is None else [result]



def removeRegionCharges(force, region):
    """Zero the region's charges in a NonbondedForce, and the charge products of its exceptions
    that involve the region (Lennard-Jones is kept)."""
    for i in region:
        charge, sigma, epsilon = force.getParticleParameters(i)
        force.setParticleParameters(i, 0.0, sigma, epsilon)
    for i in range(force.getNumExceptions()):
        a, b, chargeProd, sigma, epsilon = force.getExceptionParameters(i)
        if a in region or b in region:
            force.setExceptionParameters(i, a, b, 0.0, sigma, epsilon)


def regionElectrostatics(force, region, group):
    """``-lambda * X`` with ``X = E_elec(all charges) - E_elec(region charges removed)``: the whole MM
    electrostatic energy of the region's charges (region-region and region-environment; direct,
    reciprocal, self and neutralizing-background terms), as a CustomCVForce over two
    electrostatics-only copies of the NonbondedForce."""
    full = openmm.XmlSerializer.clone(force)
    for i in range(full.getNumParticles()):
        charge, sigma, epsilon = full.getParticleParameters(i)
        full.setParticleParameters(i, charge, 1.0, 0.0)
    for i in range(full.getNumExceptions()):
        a, b, chargeProd, sigma, epsilon = full.getExceptionParameters(i)
        full.setExceptionParameters(i, a, b, chargeProd, 1.0, 0.0)
    full.setUseDispersionCorrection(False)
    full.setForceGroup(0)
    full.setReciprocalSpaceForceGroup(-1)
    environment = openmm.XmlSerializer.clone(full)
    removeRegionCharges(environment, region)
    out = openmm.CustomCVForce(f"{LAMBDA_PARAMETER}*(environment-full)")
    out.addCollectiveVariable("full", full)
    out.addCollectiveVariable("environment", environment)
    _finish(out, force, True, group, periodic=None)
    out.setName("ML/MM correction: MM electrostatics of the region's charges (NonbondedForce, electrostatic embedding)")
    return out
