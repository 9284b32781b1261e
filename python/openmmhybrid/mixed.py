"""Turn an MM System into an ML/MM System.

The construction (one design for mechanical embedding, lambda interpolation and multiple time
steps)::

    E(lambda) = E_MM + lambda * (E_ML(region) - E_MM,region)

The mixed System is the user's MM System, unchanged (all its forces, constraints and virtual
sites), plus a *correction* in its own force group:

- an :class:`~openmmhybrid.MLForce` evaluating the model on the region, times ``lambda``;
- minus ``lambda`` times the MM energy of the region alone, as ordinary OpenMM forces: every
  bonded term wholly inside the region, and the region's internal nonbonded pairs with their
  exception parameters (Coulomb as plain ``q_i q_j / (4 pi eps0 r)``, Lennard-Jones, and the same
  pairs of every ``CustomNonbondedForce``).

At lambda = 1 this is mechanical embedding: ML-ML interactions come from the model, ML-MM and
MM-MM from the force field.  The MM part still holds the region's MM terms, which is exactly the
cheap reference a multiple-time-step integrator evaluates on the inner step, while the correction
goes on the outer step.  Every correction force reports ``dE/dlambda`` (energy parameter
derivatives), so one evaluation gives the energy at every lambda (:func:`interpolationEnergies`).

Why the region's Coulomb pairs as plain ``1/r`` match what the MM force gives them:

- *No cutoff*: the MM force computes exactly ``q_i q_j / r`` for the pair (or the exception's
  ``chargeProd / r``).
- *PME and Ewald*: a pair's direct-space term ``q_i q_j erfc(alpha r) / r`` plus its reciprocal-space
  term, which for the pair itself is ``q_i q_j erf(alpha r) / r``, sum to ``q_i q_j / r``.  For an
  excluded pair or an exception OpenMM subtracts the reciprocal ``erf`` term and adds the
  exception's plain ``chargeProd / r``.  What is left over is the interaction of the pair with the
  periodic images of each other, which the MM potential includes and the model does not see
  either way, and the discretization error of the reciprocal sum (the Ewald error tolerance, 5e-4
  relative by default).  So ``E_MM,region`` matches the MM force's region pairs to within the
  Ewald error plus the image terms, both tiny for a neutral region much smaller than the box.  For
  a charged region the image term falls off only as q^2/L (a few kJ/mol for q = 0.4 e in a 4 nm
  box), and is nearly constant, so it matters for absolute energies rather than forces.
- *Reaction field* (``CutoffPeriodic``, ``CutoffNonPeriodic``): the region's ordinary pairs are
  subtracted with the same reaction-field expression and cutoff the MM force uses (exceptions are
  plain Coulomb in OpenMM and here), so they match exactly.

Lennard-Jones pairs use the MM force's cutoff and switching function when it has one (plain LJ
under ``LJPME``, matched to within the Ewald error as for Coulomb); a ``CustomNonbondedForce``'s
pairs use its energy expression, exclusions, interaction groups, cutoff and switching function.
Long-range dispersion corrections are constants of the particle types and stay in the MM part.
"""
import copy
import math
import numbers
import os
import warnings

import openmm
import openmm.unit as unit
import torch

from . import models as _models
from .mlforce import MLForce, _script, _strip_units

__all__ = ["createMixedSystem", "selectAtoms", "interpolationEnergies", "mtsGroups", "LAMBDA_PARAMETER"]

#: The global parameter that interpolates between MM (0) and ML/MM (1); openmm-ml's name.
LAMBDA_PARAMETER = "lambda_interpolate"

# OpenMM's 1/(4 pi eps0) in kJ nm / (mol e^2), computed the way SimTKOpenMMRealType.h does.
_E_CHARGE = 1.602176634e-19
_AVOGADRO = 6.02214076e23
ONE_4PI_EPS0 = 1.0 / (4.0 * math.pi * (1e-6 * 8.8541878128e-12 / (_E_CHARGE * _E_CHARGE * _AVOGADRO)))

# Forces with no interaction energy between the region's atoms: nothing to subtract.
_NO_REGION_ENERGY = (openmm.CMMotionRemover, openmm.MonteCarloBarostat, openmm.MonteCarloAnisotropicBarostat,
                     openmm.MonteCarloMembraneBarostat, openmm.MonteCarloFlexibleBarostat, openmm.AndersenThermostat,
                     openmm.CustomExternalForce)


# ----------------------------------------------------------------------------------------------
# Selections
# ----------------------------------------------------------------------------------------------

def selectAtoms(topology, selection=None, residueName=None, indices=None):
    """The particle indices of an ML region, chosen one of three ways.

    Parameters
    ----------
    topology : openmm.app.Topology
    selection : str, optional
        An mdtraj selection string, e.g. ``"resname TMP"`` or ``"resid 10 to 12 and not backbone"``
        (needs ``mdtraj``).
    residueName : str, optional
        Every atom of every residue with this name, e.g. ``"LIG"``.
    indices : sequence of int, optional
        Particle indices, checked against the topology.

    Returns
    -------
    list of int
        Sorted particle indices.

    Raises
    ------
    ValueError
        If not exactly one way is given, the selection is empty or matches nothing, or an index is
        out of range or repeated.
    """
    given = [x is not None for x in (selection, residueName, indices)]
    if sum(given) != 1:
        raise ValueError("selectAtoms: give exactly one of selection=, residueName= or indices=")
    numAtoms = topology.getNumAtoms()
    if indices is not None:
        return _check_indices(indices, numAtoms, "selectAtoms")
    if residueName is not None:
        atoms = [a.index for a in topology.atoms() if a.residue.name == residueName]
        if not atoms:
            names = sorted({r.name for r in topology.residues()})
            shown = ", ".join(names[:20]) + (", ..." if len(names) > 20 else "")
            raise ValueError(f"selectAtoms: no residue is named {residueName!r}. Residue names in the topology: {shown}")
        return atoms
    if not selection.strip():
        raise ValueError("selectAtoms: the selection string is empty")
    try:
        import mdtraj
    except ImportError:
        raise ImportError("selectAtoms(selection=...) needs mdtraj: pip install mdtraj. "
                          "Or use residueName= or indices=.") from None
    try:
        atoms = mdtraj.Topology.from_openmm(topology).select(selection)
    except Exception as error:
        raise ValueError(f"selectAtoms: mdtraj could not parse the selection {selection!r}: {error}") from None
    if len(atoms) == 0:
        raise ValueError(f"selectAtoms: the selection {selection!r} matches no atom")
    return [int(a) for a in atoms]


def _check_indices(atoms, numParticles, who):
    try:
        result = [int(a) for a in atoms]
    except TypeError:
        raise TypeError(f"{who}: the ML atoms must be a sequence of particle indices, not {type(atoms).__name__}") from None
    for a in atoms:
        if not isinstance(a, numbers.Integral):
            raise TypeError(f"{who}: ML atom index {a!r} is not an integer")
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


# ----------------------------------------------------------------------------------------------
# The model: resolve names and files, adapt the signature, scale by lambda
# ----------------------------------------------------------------------------------------------

class _DropBox(torch.nn.Module):
    """Periodic force, model without a box argument."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, positions: torch.Tensor, box: torch.Tensor) -> torch.Tensor:
        return self.model(positions)


class _ScaledDropBox(torch.nn.Module):
    """Periodic force, model without a box argument, energy times lambda."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, positions: torch.Tensor, box: torch.Tensor, lambda_interpolate: torch.Tensor) -> torch.Tensor:
        energy = self.model(positions)
        return lambda_interpolate.to(energy.dtype) * energy


class _ScaledWithBox(torch.nn.Module):
    """Periodic force, model taking the box, energy times lambda."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, positions: torch.Tensor, box: torch.Tensor, lambda_interpolate: torch.Tensor) -> torch.Tensor:
        energy = self.model(positions, box)
        return lambda_interpolate.to(energy.dtype) * energy


class _Scaled(torch.nn.Module):
    """Non-periodic force, energy times lambda."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, positions: torch.Tensor, lambda_interpolate: torch.Tensor) -> torch.Tensor:
        energy = self.model(positions)
        return lambda_interpolate.to(energy.dtype) * energy


def _resolve_model(model, topology, mlAtoms, modelArgs):
    """A torch module for the region from a name, a file or a module."""
    if isinstance(model, (str, os.PathLike)):
        name = os.fspath(model)
        looksLikeFile = os.path.exists(name) or os.sep in name or os.path.splitext(name)[1] != ""
        if not looksLikeFile:
            return _models.createModel(name, topology, mlAtoms, **(modelArgs or {}))
        if not os.path.isfile(name):
            raise FileNotFoundError(f"createMixedSystem: the model file '{name}' does not exist. Pass a TorchScript file, "
                                    f"a torch.nn.Module, or a registered model name ({', '.join(_models.availableModels())}).")
        try:
            return torch.jit.load(name, map_location="cpu")
        except Exception as error:
            raise ValueError(f"createMixedSystem: '{name}' is not a TorchScript file torch.jit.load can read: "
                             f"{str(error).splitlines()[0] if str(error) else type(error).__name__}") from None
    if modelArgs:
        raise ValueError("createMixedSystem: modelArgs is only used with a model given by name")
    if isinstance(model, torch.nn.Module):
        return model
    raise TypeError(f"createMixedSystem: model must be a registered name, a TorchScript file, or a torch.nn.Module, "
                    f"not {type(model).__name__}")


def _compiled_region_model(module, periodic, interpolate, numAtoms, usesDoublePrecision):
    """The bytes of an AOTInductor package of the region model (see compileModel)."""
    import inspect
    import tempfile

    from .compiled import compileModel

    takesBox = len(inspect.signature(module.forward).parameters) >= 2  # positions, box
    if not periodic:
        wrapped = _Scaled(module) if interpolate else module
    elif interpolate:
        wrapped = _ScaledWithBox(module) if takesBox else _ScaledDropBox(module)
    else:
        wrapped = module if takesBox else _DropBox(module)
    parameters = [(LAMBDA_PARAMETER, 1.0)] if interpolate else []
    with tempfile.TemporaryDirectory(prefix="openmmhybrid-") as folder:
        path = compileModel(wrapped, numAtoms, os.path.join(folder, "region.pt2"), periodic=periodic, parameters=parameters,
                            derivatives=[name for name, _ in parameters], usesDoublePrecision=usesDoublePrecision)
        with open(path, "rb") as f:
            return f.read()


def _region_model(module, periodic, interpolate):
    """Adapt module to what MLForce passes: (positions[, box][, lambda_interpolate])."""
    scripted = _script(module, "createMixedSystem")
    takesBox = len(scripted.forward.schema.arguments) >= 3  # self, positions, box
    if not periodic:
        return _Scaled(scripted) if interpolate else scripted
    if interpolate:
        return _ScaledWithBox(scripted) if takesBox else _ScaledDropBox(scripted)
    return scripted if takesBox else _DropBox(scripted)


class _EmbeddedNoBox(torch.nn.Module):
    """Non-periodic force, embedding model written in the periodic form: a zero box is passed."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, positions: torch.Tensor, mm_positions: torch.Tensor, mm_charges: torch.Tensor,
                mm_mask: torch.Tensor) -> torch.Tensor:
        box = torch.zeros((3, 3), dtype=positions.dtype, device=positions.device)
        return self.model(positions, box, mm_positions, mm_charges, mm_mask)


class _EmbeddedScaled(torch.nn.Module):
    """Periodic embedding model, energy times lambda."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, positions: torch.Tensor, box: torch.Tensor, mm_positions: torch.Tensor, mm_charges: torch.Tensor,
                mm_mask: torch.Tensor, lambda_interpolate: torch.Tensor) -> torch.Tensor:
        energy = self.model(positions, box, mm_positions, mm_charges, mm_mask)
        return lambda_interpolate.to(energy.dtype) * energy


class _EmbeddedScaledNoBox(torch.nn.Module):
    """Non-periodic embedding model, energy times lambda."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, positions: torch.Tensor, mm_positions: torch.Tensor, mm_charges: torch.Tensor,
                mm_mask: torch.Tensor, lambda_interpolate: torch.Tensor) -> torch.Tensor:
        energy = self.model(positions, mm_positions, mm_charges, mm_mask)
        return lambda_interpolate.to(energy.dtype) * energy


def _takes_environment(scripted):
    names = [a.name for a in scripted.forward.schema.arguments[1:]]
    return "mm_positions" in names or len(names) >= 4


def _embedding_terms(terms, topology, mlAtoms, charges, cutoff, switchDistance):
    """The embedding term modules from names or modules."""
    from . import embedding as _embedding
    if terms is None:
        terms = ["coulomb", "polarization"]
    if isinstance(terms, (str, torch.nn.Module)):
        terms = [terms]
    atoms = list(topology.atoms())
    result = []
    for term in terms:
        if isinstance(term, torch.nn.Module):
            result.append(term)
        elif term == "coulomb":
            result.append(_embedding.FixedChargeCoupling([charges[i] for i in mlAtoms], cutoff, switchDistance))
        elif term == "polarization":
            numbers = []
            for i in mlAtoms:
                element = atoms[i].element
                if element is None:
                    raise ValueError(f"createMixedSystem: ML atom {i} ({atoms[i].name}) has no element in the topology, "
                                     "which the polarization term needs.")
                numbers.append(element.atomic_number)
            result.append(_embedding.TholePolarization(numbers, cutoff, switchDistance))
        else:
            raise ValueError(f"createMixedSystem: unknown embedding term {term!r}; use 'coulomb', 'polarization' or a "
                             "torch.nn.Module with forward(positions, mm_positions, mm_charges, mm_mask)")
    return result


def _embedded_model(module, periodic, interpolate, terms):
    """Adapt a region model to what an embedding MLForce passes:
    (positions[, box], mm_positions, mm_charges, mm_mask[, lambda_interpolate])."""
    from .embedding import EmbeddedModel
    scripted = _script(module, "createMixedSystem")
    numArgs = len(scripted.forward.schema.arguments) - 1
    if _takes_environment(scripted):
        expected = 5 if periodic else 4
        if numArgs != expected:
            raise ValueError(f"createMixedSystem: the embedding model's forward() takes {numArgs} arguments, but a "
                             f"{'periodic' if periodic else 'non-periodic'} System passes {expected}: (positions, "
                             f"{'box, ' if periodic else ''}mm_positions, mm_charges, mm_mask).")
        model = scripted
    else:
        model = EmbeddedModel(scripted, terms, modelTakesBox=numArgs >= 2)
        if not periodic:
            model = _EmbeddedNoBox(model)
    if interpolate:
        model = _EmbeddedScaled(model) if periodic else _EmbeddedScaledNoBox(model)
    return model


def _remove_region_charges(force, region):
    """Zero the region's charges in a NonbondedForce, and the charge products of its exceptions
    that involve the region (Lennard-Jones is kept)."""
    for i in region:
        charge, sigma, epsilon = force.getParticleParameters(i)
        force.setParticleParameters(i, 0.0, sigma, epsilon)
    for i in range(force.getNumExceptions()):
        a, b, chargeProd, sigma, epsilon = force.getExceptionParameters(i)
        if a in region or b in region:
            force.setExceptionParameters(i, a, b, 0.0, sigma, epsilon)


def _region_electrostatics(force, region, group):
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
    _remove_region_charges(environment, region)
    out = openmm.CustomCVForce(f"{LAMBDA_PARAMETER}*(environment-full)")
    out.addCollectiveVariable("full", full)
    out.addCollectiveVariable("environment", environment)
    _finish(out, force, True, group, periodic=None)
    out.setName("ML/MM correction: MM electrostatics of the region's charges (NonbondedForce, electrostatic embedding)")
    return out


# ----------------------------------------------------------------------------------------------
# MM energy of the region
# ----------------------------------------------------------------------------------------------

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


def _copy_globals(target, source, interpolate):
    for i in range(source.getNumGlobalParameters()):
        name = source.getGlobalParameterName(i)
        if interpolate and name == LAMBDA_PARAMETER:
            raise ValueError(f"createMixedSystem: a {type(source).__name__} of the System already uses the global "
                             f"parameter '{LAMBDA_PARAMETER}', which the ML/MM interpolation needs. Rename it.")
        target.addGlobalParameter(name, source.getGlobalParameterDefaultValue(i))


def _harmonic_bonds(force, region, interpolate, group):
    out = openmm.CustomBondForce(f"{_scale(interpolate)}*0.5*k*(r-r0)^2")
    out.addPerBondParameter("r0")
    out.addPerBondParameter("k")
    for i in range(force.getNumBonds()):
        a, b, r0, k = force.getBondParameters(i)
        if a in region and b in region:
            out.addBond(a, b, [_value(r0), _value(k)])
    return _finish(out, force, interpolate, group) if out.getNumBonds() else None


def _harmonic_angles(force, region, interpolate, group):
    out = openmm.CustomAngleForce(f"{_scale(interpolate)}*0.5*k*(theta-theta0)^2")
    out.addPerAngleParameter("theta0")
    out.addPerAngleParameter("k")
    for i in range(force.getNumAngles()):
        a, b, c, theta0, k = force.getAngleParameters(i)
        if a in region and b in region and c in region:
            out.addAngle(a, b, c, [_value(theta0), _value(k)])
    return _finish(out, force, interpolate, group) if out.getNumAngles() else None


def _periodic_torsions(force, region, interpolate, group):
    out = openmm.CustomTorsionForce(f"{_scale(interpolate)}*k*(1+cos(periodicity*theta-phase))")
    for name in ("periodicity", "phase", "k"):
        out.addPerTorsionParameter(name)
    for i in range(force.getNumTorsions()):
        a, b, c, d, periodicity, phase, k = force.getTorsionParameters(i)
        if all(x in region for x in (a, b, c, d)):
            out.addTorsion(a, b, c, d, [float(periodicity), _value(phase), _value(k)])
    return _finish(out, force, interpolate, group) if out.getNumTorsions() else None


def _rb_torsions(force, region, interpolate, group):
    # OpenMM's Ryckaert-Bellemans form: sum_n c_n cos(psi)^n with psi = theta - 180 degrees.
    out = openmm.CustomTorsionForce(f"{_scale(interpolate)}*(c0+c1*cp+c2*cp^2+c3*cp^3+c4*cp^4+c5*cp^5); "
                                    f"cp=cos(theta-{math.pi!r})")
    for n in range(6):
        out.addPerTorsionParameter(f"c{n}")
    for i in range(force.getNumTorsions()):
        a, b, c, d, *coefficients = force.getTorsionParameters(i)
        if all(x in region for x in (a, b, c, d)):
            out.addTorsion(a, b, c, d, [_value(x) for x in coefficients])
    return _finish(out, force, interpolate, group) if out.getNumTorsions() else None


def _cmap_torsions(force, region, interpolate, group):
    # A CMAP cannot be written as a custom expression with the same interpolation, so a copy of the
    # force restricted to the region is wrapped in a CustomCVForce (only when the region has one).
    cmap = openmm.CMAPTorsionForce()
    for i in range(force.getNumMaps()):
        size, energy = force.getMapParameters(i)
        cmap.addMap(size, energy)
    for i in range(force.getNumTorsions()):
        m, *particles = force.getTorsionParameters(i)
        if all(x in region for x in particles):
            cmap.addTorsion(m, *particles)
    if cmap.getNumTorsions() == 0:
        return None
    cmap.setUsesPeriodicBoundaryConditions(force.usesPeriodicBoundaryConditions())
    out = openmm.CustomCVForce(f"{_scale(interpolate)}*cmap")
    out.addCollectiveVariable("cmap", cmap)
    return _finish(out, force, interpolate, group, periodic=False)


def _custom_bonded(force, region, interpolate, group):
    """CustomBondForce, CustomAngleForce, CustomTorsionForce, CustomCompoundBondForce."""
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
    _copy_globals(out, force, interpolate)
    terms = 0
    for i in range(count()):
        *particles, parameters = get(i)
        if isinstance(force, openmm.CustomCompoundBondForce):
            particles = list(particles[0])
        if all(p in region for p in particles):
            if isinstance(force, openmm.CustomCompoundBondForce):
                add(particles, list(parameters))
            else:
                add(*particles, list(parameters))
            terms += 1
    return _finish(out, force, interpolate, group) if terms else None


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
    cutoff = _value(force.getCutoffDistance())
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
            lj = f"{lj}*{_switch(cutoff, _value(force.getSwitchingDistance()))}"
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
            exceptions[(min(a, b), max(a, b))] = (_value(chargeProd), _value(sigma), _value(epsilon))
    particles = sorted(region)
    params = {i: [_value(x) for x in force.getParticleParameters(i)] for i in particles}
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


def _custom_nonbonded(force, region, interpolate, group):
    """The region's internal pairs of a CustomNonbondedForce as a two-particle CustomCompoundBondForce."""
    if force.getNumComputedValues() > 0:
        raise NotImplementedError("createMixedSystem: a CustomNonbondedForce with computed values (addComputedValue) "
                                  "is not supported yet.")
    method = force.getNonbondedMethod()
    factor = ""
    if method != openmm.CustomNonbondedForce.NoCutoff:
        cutoff = _value(force.getCutoffDistance())
        factor = f"(1-step(r-{cutoff!r}))"
        if force.getUseSwitchingFunction():
            factor += "*" + _switch(cutoff, _value(force.getSwitchingDistance()))
    energy = force.getEnergyFunction().strip().rstrip(";")
    expression = (f"{_scale(interpolate)}*{factor + '*' if factor else ''}mmRegionPair; mmRegionPair={energy}; "
                  "r=distance(p1,p2)")
    out = openmm.CustomCompoundBondForce(2, expression)
    names = [force.getPerParticleParameterName(i) for i in range(force.getNumPerParticleParameters())]
    for name in names:
        out.addPerBondParameter(name + "1")
    for name in names:
        out.addPerBondParameter(name + "2")
    _copy_globals(out, force, interpolate)
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


def _value(x):
    return float(_strip_units(x))


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


# ----------------------------------------------------------------------------------------------
# createMixedSystem
# ----------------------------------------------------------------------------------------------

def _groups_in_use(system):
    """Force groups of every force, including NonbondedForce's separate reciprocal-space group."""
    used = set()
    for force in system.getForces():
        used.add(force.getForceGroup())
        if isinstance(force, openmm.NonbondedForce) and force.getReciprocalSpaceForceGroup() >= 0:
            used.add(force.getReciprocalSpaceForceGroup())
    return used


def createMixedSystem(topology, system, mlAtoms, model, interpolate=False, removeConstraints=False,
                      correctionGroup=None, usesDoublePrecision=False, modelArgs=None, embedding="mechanical",
                      cutoff=1.0 * unit.nanometer, embeddingTerms=None, switchDistance="default", compile=False):
    """A new ML/MM System: the MM ``system`` plus ``lambda * (E_ML(region) - E_MM,region)``.

    The input System is not changed.  All its forces, constraints and virtual sites are kept as
    they are; the correction (an :class:`~openmmhybrid.MLForce` on the region and the region's MM
    energy with the opposite sign) goes into force group ``correctionGroup``.  See the module
    documentation for the construction and for why the region's Coulomb pairs are plain ``1/r``.

    Parameters
    ----------
    topology : openmm.app.Topology
        The System's topology (elements for named models, residues for messages).
    system : openmm.System
        The MM System, e.g. from ``AmberPrmtopFile.createSystem`` or ``ForceField.createSystem``.
    mlAtoms : sequence of int
        The ML region, in the order the model sees the atoms (see :func:`selectAtoms`).  Virtual
        sites cannot be ML atoms; a virtual site whose parent atoms are all ML atoms is part of
        the region's MM energy automatically.
    model : str, os.PathLike or torch.nn.Module
        A registered name (``'ani1x'``; see :func:`openmmhybrid.models.availableModels`), a
        TorchScript file, or a module following the MLForce contract (``forward(positions[, box])``
        returning the energy in kJ/mol for positions in nm).
    interpolate : bool
        If True, the correction is scaled by the global parameter ``lambda_interpolate``
        (default 1; 0 gives exactly the MM System) and every correction force reports
        ``dE/dlambda`` as an energy parameter derivative.  If False, lambda is fixed at 1.
    removeConstraints : bool
        If True, constraints between two region atoms are removed, as openmm-ml's
        ``removeConstraints=True`` does (no constraint is added).  With ``interpolate=False`` the
        model holds those bonds, so a System built with ``constraints=AllBonds`` works.  With
        ``interpolate=True`` each removed constraint needs an MM bond term (a System built with
        ``flexibleConstraints=True`` has them), since at lambda = 0 only MM holds the bond.  By
        default constraints are kept, identical at every lambda.
    correctionGroup : int, optional
        The force group of the correction; default: the lowest group no force of ``system`` uses.
    usesDoublePrecision : bool
        Hand the model float64 positions (default float32).
    modelArgs : dict, optional
        Keyword arguments for a model given by name.
    embedding : 'mechanical' or 'electrostatic'
        Mechanical embedding (the default) keeps every ML-MM interaction at the MM level.
        Electrostatic embedding hands the model the MM point charges within ``cutoff`` of the
        region (see :mod:`openmmhybrid.embedding`): the region's charges then take no part in MM
        electrostatics, ML-MM Lennard-Jones stays MM, and the embedding energy is added.  See
        ``docs/embedding.md`` for the construction and the lambda path.
    cutoff : float or Quantity
        The embedding cutoff (default 1 nm); electrostatic embedding only.
    embeddingTerms : sequence, optional
        The embedding energy added to a vacuum model: ``'coulomb'`` (the region's MM charges
        coupled to the MM charges, :class:`~openmmhybrid.embedding.FixedChargeCoupling`),
        ``'polarization'`` (:class:`~openmmhybrid.embedding.TholePolarization`) or modules
        ``forward(positions, mm_positions, mm_charges, mm_mask)``.  Default: both named terms.
        Ignored when ``model`` itself follows the embedding contract (it takes ``mm_positions``).
    switchDistance : float, Quantity, None or 'default'
        Where the named terms' switch starts (default: cutoff - 0.2 nm); None for a hard cutoff.
    compile : bool
        Compile the region's model ahead of time with :func:`~openmmhybrid.compileModel`
        (AOTInductor: energy, forces and dE/dlambda in native code; several times faster on the
        CPU for small regions).  Mechanical embedding, a ``torch.nn.Module`` or a registered name,
        and the Reference or CPU platform.  Takes seconds to a minute.

    Returns
    -------
    openmm.System

    Raises
    ------
    ValueError
        Empty region, index out of range or repeated, a virtual site as ML atom, an ML atom
        constrained to an MM atom, a removed constraint without a bond term (interpolate=True), a name that is
        not registered, an element the model does not cover.
    NotImplementedError
        A force class whose region energy cannot be separated (the message names the class).
    """
    if embedding not in ("mechanical", "electrostatic"):
        raise ValueError(f"createMixedSystem: embedding must be 'mechanical' or 'electrostatic', not {embedding!r}")
    electrostatic = embedding == "electrostatic"
    numParticles = system.getNumParticles()
    if topology.getNumAtoms() != numParticles:
        raise ValueError(f"createMixedSystem: the topology has {topology.getNumAtoms()} atoms but the System has "
                         f"{numParticles} particles; they must describe the same particles.")
    mlAtoms = _check_indices(mlAtoms, numParticles, "createMixedSystem")
    mlSet = set(mlAtoms)
    for a in mlAtoms:
        if system.isVirtualSite(a):
            raise ValueError(f"createMixedSystem: particle {a} is a virtual site; an ML model needs real atoms. Leave it "
                             "out of mlAtoms: a virtual site whose parent atoms are all ML atoms is handled automatically.")
    region = set(mlSet)
    for i in range(numParticles):
        if system.isVirtualSite(i):
            site = system.getVirtualSite(i)
            if all(site.getParticle(k) in mlSet for k in range(site.getNumParticles())):
                region.add(i)

    # Constraints.
    removed = []
    for i in range(system.getNumConstraints()):
        a, b, _ = system.getConstraintParameters(i)
        if (a in mlSet) != (b in mlSet) and not (system.isVirtualSite(a) or system.isVirtualSite(b)):
            ml, mm = (a, b) if a in mlSet else (b, a)
            raise ValueError(f"createMixedSystem: ML atom {ml} is constrained to MM atom {mm}. A constraint across the "
                             "ML/MM boundary is not supported: move the boundary so it crosses no constraint (e.g. keep "
                             "hydrogens with their heavy atom) or build the System without that constraint.")
        if removeConstraints and a in region and b in region:
            removed.append(i)
    if removed and interpolate:
        # At lambda = 0 the model is switched off: a removed constraint needs an MM bond to hold it.
        bonded = set()
        for force in system.getForces():
            if isinstance(force, openmm.HarmonicBondForce):
                for i in range(force.getNumBonds()):
                    a, b, _, k = force.getBondParameters(i)
                    if _value(k) > 0:
                        bonded.add((min(a, b), max(a, b)))
        for i in removed:
            a, b, _ = system.getConstraintParameters(i)
            if (min(a, b), max(a, b)) not in bonded:
                raise ValueError(f"createMixedSystem: removeConstraints=True with interpolate=True would remove the "
                                 f"constraint between atoms {a} and {b}, but the System has no harmonic bond term for that "
                                 "pair, so at lambda = 0 the bond would have no restoring force. Build the System with "
                                 "flexibleConstraints=True (it keeps bond terms for constrained bonds), use "
                                 "interpolate=False (the model then holds the bond), or removeConstraints=False.")

    # Check every force before building anything.
    for force in system.getForces():
        if MLForce.isinstance(force):
            raise ValueError("createMixedSystem: the System already holds an MLForce; pass the pure MM System.")
        if _handler(force) is None and not isinstance(force, _NO_REGION_ENERGY):
            raise NotImplementedError(f"createMixedSystem: the System has a {type(force).__name__} "
                                      f"('{force.getName()}'), whose energy of the ML region cannot be separated yet. "
                                      "Supported: HarmonicBondForce, HarmonicAngleForce, PeriodicTorsionForce, "
                                      "RBTorsionForce, CMAPTorsionForce, CustomBondForce, CustomAngleForce, "
                                      "CustomTorsionForce, CustomCompoundBondForce, NonbondedForce, CustomNonbondedForce "
                                      "(plus CMMotionRemover, barostats, thermostats and CustomExternalForce, which hold "
                                      "no interaction inside the region).")
        if interpolate and hasattr(force, "getNumGlobalParameters"):
            for i in range(force.getNumGlobalParameters()):
                if force.getGlobalParameterName(i) == LAMBDA_PARAMETER:
                    raise ValueError(f"createMixedSystem: a {type(force).__name__} of the System already uses the global "
                                     f"parameter '{LAMBDA_PARAMETER}'. Rename it.")

    used = _groups_in_use(system)
    if correctionGroup is None:
        free = [g for g in range(32) if g not in used]
        if not free:
            raise ValueError("createMixedSystem: every force group is in use; pass correctionGroup=")
        correctionGroup = free[0]
    elif not 0 <= int(correctionGroup) <= 31:
        raise ValueError(f"createMixedSystem: correctionGroup must be between 0 and 31, not {correctionGroup}")

    # Net charge of the region.
    for force in system.getForces():
        if isinstance(force, openmm.NonbondedForce):
            charge = sum(_value(force.getParticleParameters(i)[0]) for i in region)
            if abs(charge - round(charge)) > 1e-3:
                warnings.warn(f"createMixedSystem: the MM charges of the ML region sum to {charge:.4f} e, not an integer. "
                              "The region probably cuts through a molecule or residue; the ML model sees a region whose "
                              "charge state is ill defined.", stacklevel=2)

    # Electrostatic embedding: the charges, the cutoff and what the MM side must allow.
    if electrostatic:
        from .embedding import systemCharges
        cutoffValue = float(_strip_units(cutoff))
        if not cutoffValue > 0 or not math.isfinite(cutoffValue):
            raise ValueError(f"createMixedSystem: the embedding cutoff must be a positive distance, not {cutoff}")
        charges = systemCharges(system)
        for force in system.getForces():
            if isinstance(force, openmm.NonbondedForce) and (force.getNumParticleParameterOffsets() or
                                                             force.getNumExceptionParameterOffsets()):
                raise NotImplementedError("createMixedSystem: electrostatic embedding does not support a NonbondedForce "
                                          "with particle or exception parameter offsets.")
        crossing = sorted({(min(a.index, b.index), max(a.index, b.index)) for a, b in topology.bonds()
                           if (a.index in mlSet) != (b.index in mlSet)})
        if crossing:
            warnings.warn(f"createMixedSystem: {len(crossing)} bond(s) cross the ML/MM boundary (e.g. atoms {crossing[0]}). "
                          "Electrostatic embedding has no link atoms or charge redistribution: the MM charges next to the "
                          "cut sit right beside the region and the model sees them. Prefer a region of whole molecules.",
                          stacklevel=2)

    # The model, checked before the System is copied.
    module = _resolve_model(model, topology, mlAtoms, modelArgs)
    periodic = system.usesPeriodicBoundaryConditions()
    if compile:
        if electrostatic:
            raise ValueError("createMixedSystem: compile=True is not available with electrostatic embedding yet")
        if isinstance(module, torch.jit.ScriptModule):
            raise ValueError("createMixedSystem: compile=True needs a torch.nn.Module or a registered model name; a "
                             "TorchScript model cannot be compiled (it is not traceable Python)")
        regionModel = _compiled_region_model(module, periodic, interpolate, len(mlAtoms), usesDoublePrecision)
    elif electrostatic:
        terms = _embedding_terms(embeddingTerms, topology, mlAtoms, charges, cutoffValue, switchDistance)
        regionModel = _embedded_model(module, periodic, interpolate, terms)
    else:
        regionModel = _region_model(module, periodic, interpolate)

    mixed = openmm.XmlSerializer.clone(system)
    for i in reversed(removed):
        mixed.removeConstraint(i)
    corrections = []
    for index, force in enumerate(system.getForces()):
        handler = _handler(force)
        if handler is None:
            continue
        if electrostatic and isinstance(force, openmm.NonbondedForce):
            correction = _nonbonded(force, region, interpolate, correctionGroup, includeCoulomb=False)
            if interpolate:
                # The MM System stays whole; the correction removes the region's charges at lambda = 1.
                correction.append(_region_electrostatics(force, region, correctionGroup))
            else:
                _remove_region_charges(mixed.getForce(index), region)
        else:
            correction = handler(force, region, interpolate, correctionGroup)
        corrections += correction if isinstance(correction, list) else [correction] if correction is not None else []
    for f in corrections:
        mixed.addForce(f)
    ml = MLForce(regionModel, mlAtoms)
    if electrostatic:
        ml.setEmbedding(cutoffValue, charges)
    ml.setUsesPeriodicBoundaryConditions(periodic)
    ml.setUsesDoublePrecision(usesDoublePrecision)
    if interpolate:
        ml.addGlobalParameter(LAMBDA_PARAMETER, 1.0)
        ml.addEnergyParameterDerivative(LAMBDA_PARAMETER)
    ml.setForceGroup(correctionGroup)
    ml.setName("ML/MM correction: ML energy of the region")
    mixed.addForce(ml)
    return mixed


# ----------------------------------------------------------------------------------------------
# Using a mixed System
# ----------------------------------------------------------------------------------------------

def interpolationEnergies(context, lambdas):
    """The potential energy at each lambda, from one evaluation at the Context's current lambda.

    ``E(lambda) = E_MM + lambda * C`` is linear in lambda and every correction force reports
    ``dE/dlambda = C``, so the energy of every lambda state (the input MBAR needs) costs one
    energy evaluation, not one per state.

    Parameters
    ----------
    context : openmm.Context
        A Context of a System made by ``createMixedSystem(..., interpolate=True)``.
    lambdas : sequence of float

    Returns
    -------
    openmm.unit.Quantity
        A list of energies in kJ/mol, one per lambda.
    """
    state = context.getState(getEnergy=True, getParameterDerivatives=True)
    derivatives = state.getEnergyParameterDerivatives()
    if LAMBDA_PARAMETER not in derivatives:
        raise ValueError(f"interpolationEnergies: the Context has no '{LAMBDA_PARAMETER}' derivative; build the System "
                         "with createMixedSystem(..., interpolate=True).")
    slope = derivatives[LAMBDA_PARAMETER]
    total = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    base = total - context.getParameter(LAMBDA_PARAMETER) * slope
    return [base + float(lam) * slope for lam in lambdas] * unit.kilojoule_per_mole


def mtsGroups(system, correctionGroup, innerSteps):
    """The ``groups`` argument of a multiple-time-step integrator for a mixed System.

    Every MM force group is evaluated ``innerSteps`` times per outer step; the correction group
    (the ML force and the region's MM energy) once, on the outer step::

        groups = mtsGroups(mixed, correctionGroup, 4)
        integrator = openmm.MTSLangevinIntegrator(300*kelvin, 1/picosecond, 2*femtoseconds, groups)

    Parameters
    ----------
    system : openmm.System
        The mixed System.
    correctionGroup : int
        The group passed to (or chosen by) :func:`createMixedSystem`.
    innerSteps : int
        MM steps per outer step.

    Returns
    -------
    list of (int, int)
    """
    if int(innerSteps) < 1:
        raise ValueError("mtsGroups: innerSteps must be at least 1")
    groups = sorted(_groups_in_use(system) - {correctionGroup})
    return [(correctionGroup, 1)] + [(g, int(innerSteps)) for g in groups]
