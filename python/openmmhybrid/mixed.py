"""Turn an MM System into an ML/MM System.

The construction (one design for mechanical embedding, lambda interpolation and multiple time
steps)::

    E(lambda) = E_MM + lambda * (E_ML(region) - E_MM,region)

The mixed System is the user's MM System, unchanged (all its forces, constraints and virtual
sites), plus a *correction* in its own force group:

- an :class:`~openmmhybrid.MLForce` evaluating the model on the region, times ``lambda``;
- minus ``lambda`` times the MM energy of the region alone, as ordinary OpenMM forces: every
  bonded term wholly inside the region (and, when the region cuts covalent bonds and they are
  capped with link atoms, the angles and torsions the caps stand for: :mod:`openmmhybrid.linkatoms`),
  and the region's internal nonbonded pairs with their
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
import math
import warnings

import openmm
import openmm.unit as unit

from . import adapters
from .embedding import systemCharges
from .linkatoms import CHARGE_SCHEMES, PLACEMENTS, findLinkBonds, linkAtomSetup, regionTerms
from .mlforce import MLForce
from .regionenergy import checkSupported, regionElectrostatics, regionEnergyForces, removeRegionCharges
from .regionmodel import (compileUnavailable, compiledRegionModel, embeddedModel, regionCharge, regionModel, resolveModel,
                          withRegionCharge)
from .regionmodel import embeddingTerms as buildEmbeddingTerms
from .utils import LAMBDA_PARAMETER, atomIndices, freeForceGroup, mdValue

__all__ = ["createMixedSystem", "interpolationEnergies"]

WHO = "createMixedSystem"


def createMixedSystem(topology, system, mlAtoms, model, interpolate=False, removeConstraints=False,
                      correctionGroup=None, usesDoublePrecision=False, modelArgs=None, embedding="mechanical",
                      cutoff=1.0 * unit.nanometer, embeddingTerms=None, switchDistance="default", compile=False,
                      linkAtoms=True, linkAtomDistances=None, linkAtomPlacement="distance", linkAtomCharges="rcd"):
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
        ``forward(positions, mm_positions, mm_charges, mm_mask)``.  Default: both named terms in
        one pass (:class:`~openmmhybrid.embedding.CoulombAndPolarization`), the environment's pair
        sums in the model's precision (float32 unless ``usesDoublePrecision``).
        Ignored when ``model`` itself follows the embedding contract (it takes ``mm_positions``).
    switchDistance : float, Quantity, None or 'default'
        Where the named terms' switch starts (default: cutoff - 0.2 nm); None for a hard cutoff.
    compile : bool
        Compile the region's model ahead of time with :func:`~openmmhybrid.compileModel`
        (AOTInductor: energy, forces and dE/dlambda in native code; several times faster on the
        CPU for small regions), with the embedding terms of electrostatic embedding compiled in.
        A ``torch.nn.Module`` or a registered name, and the Reference or CPU platform.  Takes
        seconds to a minute.
    linkAtoms : bool
        Cap every bond the region cuts with a hydrogen link atom (the default; nothing changes for
        a region of whole molecules).  The model then sees the region's atoms followed by one cap
        per cut bond (a module given as ``model`` must be built for those atoms: see
        :meth:`~openmmhybrid.linkatoms.LinkAtoms.cappedTopology`), and the MM angles and torsions
        the caps stand for are replaced as openmm-ml 1.8 does; see :mod:`openmmhybrid.linkatoms`
        and ``docs/user_guide.md#cutting-covalent-bonds``.  False keeps the open valences, with a
        warning naming the cut bonds.
    linkAtomDistances : sequence of (int, int, distance), optional
        Cap distances from the ML atom for particular cut bonds (openmm-ml's argument); default:
        the sum of the covalent radii of the ML atom and hydrogen.
    linkAtomPlacement : 'distance' or 'ratio'
        A cap at a fixed distance from its ML atom (the default, as openmm-ml), or at a fixed
        fraction of the bond (distance / the MM equilibrium length; the g-factor scheme).
    linkAtomCharges : 'rcd' or 'rc'
        Electrostatic embedding: how the charge of the MM atom of a cut bond is redistributed
        (Lin and Truhlar 2005): redistributed charge and dipole (the default) or redistributed
        charge.

    Returns
    -------
    openmm.System

    Raises
    ------
    ValueError
        Empty region, index out of range or repeated, a virtual site as ML atom, an ML atom
        constrained to an MM atom, a removed constraint without a bond term (interpolate=True), a
        name that is not registered, an element the model does not cover, a cut bond that cannot
        be capped (see :func:`~openmmhybrid.linkatoms.linkAtomSetup`).
    NotImplementedError
        A force class whose region energy cannot be separated (the message names the class).
    """
    if embedding not in ("mechanical", "electrostatic"):
        raise ValueError(f"createMixedSystem: embedding must be 'mechanical' or 'electrostatic', not {embedding!r}")
    electrostatic = embedding == "electrostatic"
    if topology.getNumAtoms() != system.getNumParticles():
        raise ValueError(f"createMixedSystem: the topology has {topology.getNumAtoms()} atoms but the System has "
                         f"{system.getNumParticles()} particles; they must describe the same particles.")
    mlAtoms = atomIndices(mlAtoms, WHO, system.getNumParticles())
    region = _region(system, mlAtoms)
    links = _linkAtoms(topology, system, mlAtoms, linkAtoms, linkAtomDistances, linkAtomPlacement, linkAtomCharges,
                       electrostatic)
    linkPairs = {(min(b.mlAtom, b.mmAtom), max(b.mlAtom, b.mmAtom)) for b in links.bonds} if links else set()
    removed = _constraintsToRemove(system, set(mlAtoms), region, removeConstraints, interpolate, linkPairs)
    _checkForces(system, interpolate)
    if correctionGroup is None:
        correctionGroup = freeForceGroup(system, WHO)
    elif not 0 <= int(correctionGroup) <= 31:
        raise ValueError(f"createMixedSystem: correctionGroup must be between 0 and 31, not {correctionGroup}")
    if links is None:
        _warnFractionalCharge(system, region)
    if electrostatic:
        cutoffValue, charges = _embeddingSettings(system, cutoff)

    # The model, checked before the System is copied.  With link atoms it sees the region and its caps.
    if links is None:
        modelTopology, modelAtoms = topology, mlAtoms
    else:
        modelTopology, modelAtoms = links.cappedTopology(topology)
    modelArgs = withRegionCharge(model, modelArgs, system, region)
    module = resolveModel(model, topology, mlAtoms, modelArgs, links)
    periodic = system.usesPeriodicBoundaryConditions()
    if compile:
        reason = compileUnavailable(module)
        if reason is not None:
            raise ValueError(f"createMixedSystem: {reason}")
    numForceAtoms = len(modelAtoms) if links is None else len(links.forceAtoms)
    if electrostatic:
        modelCharges = list(charges) + [0.0] * (len(modelAtoms) - len(mlAtoms))  # caps carry no charge
        terms = buildEmbeddingTerms(embeddingTerms, modelTopology, modelAtoms, modelCharges, cutoffValue, switchDistance,
                                    "double" if usesDoublePrecision else "single")
        regionModule = embeddedModel(module, periodic, interpolate, terms, links, charges, script=not compile)
        if compile:
            regionModule = compiledRegionModel(regionModule, periodic, interpolate, numForceAtoms, usesDoublePrecision,
                                               embedded=True)
    elif compile:
        if links is not None:
            module = links.wrap(module, periodic and adapters.takesBox(module))
        regionModule = compiledRegionModel(module, periodic, interpolate, numForceAtoms, usesDoublePrecision)
    else:
        if links is not None:
            scripted = adapters.scriptModule(module, WHO)
            module = links.wrap(scripted, periodic and adapters.takesBox(scripted))
        regionModule = regionModel(module, periodic, interpolate)
    selection = regionTerms(topology, system, region, links)

    mixed = openmm.XmlSerializer.clone(system)
    for i in reversed(removed):
        mixed.removeConstraint(i)
    for index, force in enumerate(system.getForces()):
        if electrostatic and isinstance(force, openmm.NonbondedForce):
            corrections = regionEnergyForces(force, region, interpolate, correctionGroup, includeCoulomb=False,
                                             terms=selection)
            if interpolate:
                # The MM System stays whole; the correction removes the region's charges at lambda = 1.
                corrections.append(regionElectrostatics(force, region, correctionGroup))
            else:
                removeRegionCharges(mixed.getForce(index), region)
        else:
            corrections = regionEnergyForces(force, region, interpolate, correctionGroup, terms=selection)
        for correction in corrections:
            mixed.addForce(correction)
    ml = MLForce(regionModule, mlAtoms if links is None else links.forceAtoms)
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


def _region(system, mlAtoms):
    """The ML atoms plus every virtual site built from ML atoms only."""
    mlSet = set(mlAtoms)
    for a in mlAtoms:
        if system.isVirtualSite(a):
            raise ValueError(f"createMixedSystem: particle {a} is a virtual site; an ML model needs real atoms. Leave it "
                             "out of mlAtoms: a virtual site whose parent atoms are all ML atoms is handled automatically.")
    region = set(mlSet)
    for i in range(system.getNumParticles()):
        if system.isVirtualSite(i):
            site = system.getVirtualSite(i)
            if all(site.getParticle(k) in mlSet for k in range(site.getNumParticles())):
                region.add(i)
    return region


def _constraintsToRemove(system, mlSet, region, removeConstraints, interpolate, linkPairs=()):
    """The indices of the constraints to remove; refuses constraints across the boundary other than
    capped bonds (``linkPairs``: a cut bond's length may be constrained, its cap follows it)."""
    removed = []
    for i in range(system.getNumConstraints()):
        a, b, _ = system.getConstraintParameters(i)
        if (min(a, b), max(a, b)) in linkPairs:
            continue
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
                    if mdValue(k) > 0:
                        bonded.add((min(a, b), max(a, b)))
        for i in removed:
            a, b, _ = system.getConstraintParameters(i)
            if (min(a, b), max(a, b)) not in bonded:
                raise ValueError(f"createMixedSystem: removeConstraints=True with interpolate=True would remove the "
                                 f"constraint between atoms {a} and {b}, but the System has no harmonic bond term for that "
                                 "pair, so at lambda = 0 the bond would have no restoring force. Build the System with "
                                 "flexibleConstraints=True (it keeps bond terms for constrained bonds), use "
                                 "interpolate=False (the model then holds the bond), or removeConstraints=False.")
    return removed


def _checkForces(system, interpolate):
    """Every force of the System can be handled, before anything is built."""
    for force in system.getForces():
        if MLForce.isinstance(force):
            raise ValueError("createMixedSystem: the System already holds an MLForce; pass the pure MM System.")
        checkSupported(force, WHO)
        if interpolate and hasattr(force, "getNumGlobalParameters"):
            for i in range(force.getNumGlobalParameters()):
                if force.getGlobalParameterName(i) == LAMBDA_PARAMETER:
                    raise ValueError(f"createMixedSystem: a {type(force).__name__} of the System already uses the global "
                                     f"parameter '{LAMBDA_PARAMETER}'. Rename it.")


def _warnFractionalCharge(system, region):
    if any(isinstance(force, openmm.NonbondedForce) for force in system.getForces()):
        charge = regionCharge(system, region)
        if abs(charge - round(charge)) > 1e-3:
            warnings.warn(f"createMixedSystem: the MM charges of the ML region sum to {charge:.4f} e, not an integer. "
                          "The region probably cuts through a molecule or residue; the ML model sees a region whose "
                          "charge state is ill defined.", stacklevel=3)


def _embeddingSettings(system, cutoff):
    """Electrostatic embedding: (cutoff in nm, the System's charges), after checking what the MM
    side must allow."""
    cutoffValue = mdValue(cutoff)
    if not cutoffValue > 0 or not math.isfinite(cutoffValue):
        raise ValueError(f"createMixedSystem: the embedding cutoff must be a positive distance, not {cutoff}")
    for force in system.getForces():
        if isinstance(force, openmm.NonbondedForce) and (force.getNumParticleParameterOffsets() or
                                                         force.getNumExceptionParameterOffsets()):
            raise NotImplementedError("createMixedSystem: electrostatic embedding does not support a NonbondedForce "
                                      "with particle or exception parameter offsets.")
    return cutoffValue, systemCharges(system)


def _linkAtoms(topology, system, mlAtoms, linkAtoms, distances, placement, chargeScheme, electrostatic):
    """The :class:`~openmmhybrid.linkatoms.LinkAtoms` of the region, or None (no cut bond, or
    ``linkAtoms=False``: then a warning names the cut bonds)."""
    if placement not in PLACEMENTS:
        raise ValueError(f"createMixedSystem: linkAtomPlacement must be one of {', '.join(PLACEMENTS)}, not {placement!r}")
    if chargeScheme not in CHARGE_SCHEMES:
        raise ValueError(f"createMixedSystem: linkAtomCharges must be one of {', '.join(CHARGE_SCHEMES)}, not "
                         f"{chargeScheme!r}")
    if not linkAtoms:
        if distances:
            raise ValueError("createMixedSystem: linkAtomDistances needs linkAtoms=True")
        cut = findLinkBonds(topology, mlAtoms, system)
        if cut:
            shown = ", ".join(f"{a}-{b}" for a, b in cut[:6]) + (", ..." if len(cut) > 6 else "")
            warnings.warn(f"createMixedSystem: the ML region cuts {len(cut)} covalent bond(s) ({shown}) and linkAtoms=False: "
                          "the model sees open valences there, and with electrostatic embedding the MM charges at the "
                          "cut sit right beside the region. Use linkAtoms=True (the default) or a region of whole "
                          "molecules.", stacklevel=3)
        return None
    return linkAtomSetup(topology, system, mlAtoms, distances, placement, chargeScheme if electrostatic else None, WHO)


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
