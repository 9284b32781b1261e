"""The vacuum leg of a hydration free energy: the solute alone, cut out of the solvated leg's System.

A hydration free energy needs the solute in water and the solute in vacuum, with the same MM
parameters.  :func:`extractMolecule` builds the second from the first: given the solvated leg's
Topology, MM System (whatever it was read from: an Amber prmtop, an OpenMM ForceField, a serialized
System) and positions, it returns the molecule made of the given atoms alone, with no solvent, no
periodic box and no cutoff.  It copies the terms it knows (the standard bonded forces and their
custom forms, NonbondedForce, CMAP, constraints, virtual sites, hydrogen masses) and refuses, with
one line saying what to do instead, anything it cannot copy faithfully: atoms that are not whole
molecules, and forces of other types that act on the molecule.
"""
import operator

import openmm
import openmm.unit as unit

__all__ = ["extractMolecule"]

#: Forces that set the ensemble, not the potential: not carried into the vacuum leg.
_DROPPED = (openmm.MonteCarloBarostat, openmm.MonteCarloAnisotropicBarostat, openmm.MonteCarloMembraneBarostat,
            openmm.MonteCarloFlexibleBarostat, openmm.AndersenThermostat)

_GIVE = "give whole molecules, or the vacuum leg's own input"


class _Extraction:
    """The index map of the kept atoms and the messages about them."""

    def __init__(self, topology, kept):
        self.kept = kept
        self.index = {old: new for new, old in enumerate(kept)}
        self.atoms = list(topology.atoms()) if topology is not None else None

    def describe(self, i):
        if self.atoms is None:
            return f"atom {i}"
        atom = self.atoms[i]
        residue = atom.residue
        return f"atom {i} ({atom.name} of residue {residue.name} {residue.id})"

    def notWhole(self, inside, outside, how):
        return ValueError(f"the {len(self.kept)} atoms given are not a whole molecule: {self.describe(inside)} is "
                          f"bonded to {self.describe(outside)} outside it{how}; {_GIVE}")

    def term(self, particles, force):
        """The new indices of a term's particles (of ``force``, or a constraint for None); None if
        they are all outside; ValueError if the term straddles."""
        particles = [int(p) for p in particles]
        inside = [p for p in particles if p in self.index]
        if not inside:
            return None
        if len(inside) < len(particles):
            outside = next(p for p in particles if p not in self.index)
            what = "a constraint" if force is None else f"a {type(force).__name__} term"
            raise self.notWhole(inside[0], outside, f" (by {what})")
        return [self.index[p] for p in particles]


def _checkAtoms(atoms, count):
    try:
        values = [operator.index(a) for a in atoms]
    except (TypeError, ValueError):
        raise ValueError(f"atoms must be a list of atom indices, not {atoms!r}") from None
    if not values:
        raise ValueError("atoms is empty: give the indices of the molecule's atoms (e.g. a residue's)")
    if len(set(values)) < len(values):
        seen, repeated = set(), []
        for a in values:
            if a in seen and a not in repeated:
                repeated.append(a)
            seen.add(a)
        raise ValueError(f"atoms lists atom(s) {repeated[:5]} more than once: give each atom once")
    bad = [a for a in values if a < 0 or a >= count]
    if bad:
        raise ValueError(f"atoms has index(es) {bad[:5]} outside the System's {count} particles (0 to {count - 1}): "
                         f"give indices of the System's own atoms")
    return sorted(values)


def _positions(positions, kept, count):
    if unit.is_quantity(positions):
        values = positions.value_in_unit(unit.nanometer)
    else:
        values = positions
    values = list(values)
    if len(values) != count:
        raise ValueError(f"there are {len(values)} positions for a System of {count} particles: give the "
                         f"positions of the same System")
    kept = [values[i] for i in kept]
    kept = [row.value_in_unit(unit.nanometer) if unit.is_quantity(row) else row for row in kept]
    return unit.Quantity([openmm.Vec3(*(float(x) for x in row)) for row in kept], unit.nanometer)


def _topology(topology, ex):
    new = openmm.app.Topology()
    atoms = {}
    for chain in topology.chains():
        newChain = None
        for residue in chain.residues():
            newResidue = None
            for atom in residue.atoms():
                if atom.index not in ex.index:
                    continue
                if newChain is None:
                    newChain = new.addChain(chain.id)
                if newResidue is None:
                    newResidue = new.addResidue(residue.name, newChain, residue.id, residue.insertionCode)
                atoms[atom.index] = new.addAtom(atom.name, atom.element, newResidue, atom.id)
    # The new Topology holds the atoms in the order of its chains; the System's order is the sorted indices.
    if list(atoms) != ex.kept:
        raise ValueError("the Topology's atoms are not in the order of its chains and residues, so the vacuum "
                         "Topology cannot follow the System's order; give the vacuum leg's own input")
    for bond in topology.bonds():
        a, b = bond[0].index, bond[1].index
        if a in ex.index and b in ex.index:
            new.addBond(atoms[a], atoms[b], bond.type, bond.order)
        elif a in ex.index or b in ex.index:
            inside, outside = (a, b) if a in ex.index else (b, a)
            raise ex.notWhole(inside, outside, "")
    return new


def _virtualSite(site, ex, i):
    parents = [site.getParticle(j) for j in range(site.getNumParticles())]
    missing = [p for p in parents if p not in ex.index]
    if missing:
        raise ValueError(f"the {len(ex.kept)} atoms given are not a whole molecule: {ex.describe(i)} is a virtual "
                         f"site placed from {ex.describe(missing[0])} outside it; {_GIVE}")
    p = [ex.index[q] for q in parents]
    if type(site) is openmm.TwoParticleAverageSite:
        return openmm.TwoParticleAverageSite(p[0], p[1], site.getWeight(0), site.getWeight(1))
    if type(site) is openmm.ThreeParticleAverageSite:
        return openmm.ThreeParticleAverageSite(p[0], p[1], p[2], site.getWeight(0), site.getWeight(1),
                                               site.getWeight(2))
    if type(site) is openmm.OutOfPlaneSite:
        return openmm.OutOfPlaneSite(p[0], p[1], p[2], site.getWeight12(), site.getWeight13(), site.getWeightCross())
    if type(site) is openmm.LocalCoordinatesSite:
        return openmm.LocalCoordinatesSite(p, site.getOriginWeights(), site.getXWeights(), site.getYWeights(),
                                           site.getLocalPosition())
    raise ValueError(f"{ex.describe(i)} is a virtual site of type {type(site).__name__}, which extractMolecule "
                     f"cannot copy; give the vacuum leg's own input files")


def _globals(old, new):
    for k in range(old.getNumGlobalParameters()):
        new.addGlobalParameter(old.getGlobalParameterName(k), old.getGlobalParameterDefaultValue(k))
    if hasattr(old, "getNumEnergyParameterDerivatives"):
        for k in range(old.getNumEnergyParameterDerivatives()):
            new.addEnergyParameterDerivative(old.getEnergyParameterDerivativeName(k))


def _harmonicBond(f, ex):
    new = openmm.HarmonicBondForce()
    for k in range(f.getNumBonds()):
        *p, length, K = f.getBondParameters(k)
        if (q := ex.term(p, f)) is not None:
            new.addBond(*q, length, K)
    return new if new.getNumBonds() else None


def _harmonicAngle(f, ex):
    new = openmm.HarmonicAngleForce()
    for k in range(f.getNumAngles()):
        *p, angle, K = f.getAngleParameters(k)
        if (q := ex.term(p, f)) is not None:
            new.addAngle(*q, angle, K)
    return new if new.getNumAngles() else None


def _periodicTorsion(f, ex):
    new = openmm.PeriodicTorsionForce()
    for k in range(f.getNumTorsions()):
        *p, periodicity, phase, K = f.getTorsionParameters(k)
        if (q := ex.term(p, f)) is not None:
            new.addTorsion(*q, periodicity, phase, K)
    return new if new.getNumTorsions() else None


def _rbTorsion(f, ex):
    new = openmm.RBTorsionForce()
    for k in range(f.getNumTorsions()):
        values = f.getTorsionParameters(k)
        if (q := ex.term(values[:4], f)) is not None:
            new.addTorsion(*q, *values[4:])
    return new if new.getNumTorsions() else None


def _cmap(f, ex):
    new = openmm.CMAPTorsionForce()
    maps = {}
    for k in range(f.getNumTorsions()):
        m, *p = f.getTorsionParameters(k)
        if (q := ex.term(p, f)) is None:
            continue
        if m not in maps:
            maps[m] = new.addMap(*f.getMapParameters(m))
        new.addTorsion(maps[m], *q)
    return new if new.getNumTorsions() else None


def _customBonded(kind):
    """The copier of a CustomBondForce, CustomAngleForce or CustomTorsionForce (``kind`` 'Bond',
    'Angle' or 'Torsion': the three share one API but for that word)."""
    def copy(f, ex):
        new = type(f)(f.getEnergyFunction())
        _globals(f, new)
        for k in range(getattr(f, f"getNumPer{kind}Parameters")()):
            getattr(new, f"addPer{kind}Parameter")(getattr(f, f"getPer{kind}ParameterName")(k))
        for k in range(getattr(f, f"getNum{kind}s")()):
            *p, values = getattr(f, f"get{kind}Parameters")(k)
            if (q := ex.term(p, f)) is not None:
                getattr(new, f"add{kind}")(*q, values)
        return new if getattr(new, f"getNum{kind}s")() else None
    return copy


def _nonbonded(f, ex):
    if not f.getIncludeDirectSpace():
        raise ValueError("the System's NonbondedForce leaves out direct space (another force computes it), which "
                         "extractMolecule cannot copy; give the vacuum leg's own input files")
    new = openmm.NonbondedForce()
    new.setNonbondedMethod(openmm.NonbondedForce.NoCutoff)
    new.setUseDispersionCorrection(False)
    new.setUseSwitchingFunction(False)
    for old in ex.kept:
        new.addParticle(*f.getParticleParameters(old))
    exceptions = {}
    for k in range(f.getNumExceptions()):
        *p, chargeProd, sigma, epsilon = f.getExceptionParameters(k)
        if (q := ex.term(p, f)) is not None:
            exceptions[k] = new.addException(*q, chargeProd, sigma, epsilon)
    for k in range(f.getNumGlobalParameters()):
        new.addGlobalParameter(f.getGlobalParameterName(k), f.getGlobalParameterDefaultValue(k))
    for k in range(f.getNumParticleParameterOffsets()):
        parameter, particle, *scales = f.getParticleParameterOffset(k)
        if particle in ex.index:
            new.addParticleParameterOffset(parameter, ex.index[particle], *scales)
    for k in range(f.getNumExceptionParameterOffsets()):
        parameter, exception, *scales = f.getExceptionParameterOffset(k)
        if exception in exceptions:
            new.addExceptionParameterOffset(parameter, exceptions[exception], *scales)
    return new


def _motionRemover(f, ex):
    return openmm.CMMotionRemover(f.getFrequency())


_COPIES = {openmm.HarmonicBondForce: _harmonicBond, openmm.HarmonicAngleForce: _harmonicAngle,
           openmm.PeriodicTorsionForce: _periodicTorsion, openmm.RBTorsionForce: _rbTorsion,
           openmm.CMAPTorsionForce: _cmap, openmm.CustomBondForce: _customBonded("Bond"),
           openmm.CustomAngleForce: _customBonded("Angle"), openmm.CustomTorsionForce: _customBonded("Torsion"),
           openmm.NonbondedForce: _nonbonded, openmm.CMMotionRemover: _motionRemover}


def _particlesOf(force):
    """The particles a force of a type extractMolecule does not copy acts on; None when that is every one
    (or cannot be told)."""
    if isinstance(force, openmm.CustomExternalForce):
        return {force.getParticleParameters(k)[0] for k in range(force.getNumParticles())}
    if isinstance(force, openmm.CustomCompoundBondForce):
        return {p for k in range(force.getNumBonds()) for p in force.getBondParameters(k)[0]}
    if isinstance(force, openmm.CustomCentroidBondForce):
        return {p for k in range(force.getNumGroups()) for p in force.getGroupParameters(k)[0]}
    if isinstance(force, openmm.CustomHbondForce):
        found = set()
        for k in range(force.getNumDonors()):
            found.update(force.getDonorParameters(k)[:3])
        for k in range(force.getNumAcceptors()):
            found.update(force.getAcceptorParameters(k)[:3])
        return found - {-1}
    if isinstance(force, openmm.RMSDForce):
        return set(force.getParticles()) or None
    return None


def extractMolecule(topology, system, positions, atoms):
    """The molecule made of ``atoms`` alone, in vacuum: (topology, system, positions).

    The vacuum leg of a hydration free energy from the solvated leg's MM System, whatever it was
    read from (an Amber prmtop, an OpenMM ForceField, a serialized System): the same parameters,
    without the solvent, the periodic box and the cutoff.

    Parameters
    ----------
    topology : openmm.app.Topology or None
        The solvated leg's Topology (its atoms in the System's order); None for none, in which case
        only the System's terms are checked for whole molecules and no Topology is returned.
    system : openmm.System
        The solvated leg's MM System.  Not modified.
    positions : Quantity or list
        Its positions, one per particle (a length Quantity, or plain numbers in nm).
    atoms : list of int
        The indices of the molecule's atoms (virtual sites included), in any order.  The new
        System's particle ``i`` is ``sorted(atoms)[i]``: the atoms keep their original order.

    Returns
    -------
    topology : openmm.app.Topology or None
        Only the kept atoms, with their chains, residues (names and ids), names, elements and the
        bonds among them; no periodic box.
    system : openmm.System
        The kept particles' masses (repartitioned hydrogen masses too), virtual sites (remapped),
        constraints among them, and their terms of: HarmonicBondForce, HarmonicAngleForce,
        PeriodicTorsionForce, RBTorsionForce, CMAPTorsionForce (with the maps they use),
        CustomBondForce, CustomAngleForce and CustomTorsionForce (expression, global parameters,
        per-term parameters, energy parameter derivatives), NonbondedForce (charges, sigmas,
        epsilons, the exceptions among them, global parameters and the parameter offsets of the
        kept particles and exceptions; NoCutoff, no dispersion correction, no switching function),
        and CMMotionRemover.  Each force keeps its force group and name; one with no term on the
        kept atoms is left out.  Barostats and the Andersen thermostat are dropped.  The System
        has no periodic boundary conditions.
    positions : Quantity
        The kept atoms' positions, a list of Vec3 in nm.  They are copied as they are: the
        molecule must be whole in them (as in an inpcrd file or an OpenMM State), not wrapped
        into the box atom by atom.

    Raises
    ------
    ValueError
        When ``atoms`` is empty, repeats an atom or has an index outside the System; when the
        atoms are not whole molecules (a bond of the Topology, a bonded term, a constraint, a
        NonbondedForce exception or a virtual site joins a kept particle with a dropped one); when
        a force of a type it does not copy (e.g. CustomExternalForce, CustomNonbondedForce,
        GBSAOBCForce, a plugin's force) acts on a kept atom: then the vacuum leg needs its own
        input files.  Such a force that acts only on dropped atoms is left out.
    """
    count = system.getNumParticles()
    if topology is not None and topology.getNumAtoms() != count:
        raise ValueError(f"the Topology has {topology.getNumAtoms()} atoms but the System {count} particles: give the "
                         f"Topology of the same System")
    kept = _checkAtoms(atoms, count)
    newPositions = _positions(positions, kept, count)
    ex = _Extraction(topology, kept)
    newTopology = _topology(topology, ex) if topology is not None else None

    new = openmm.System()
    for old in kept:
        new.addParticle(system.getParticleMass(old))
    for i in range(count):
        if not system.isVirtualSite(i):
            continue
        site = system.getVirtualSite(i)
        if i in ex.index:
            new.setVirtualSite(ex.index[i], _virtualSite(site, ex, i))
        else:
            inside = [site.getParticle(j) for j in range(site.getNumParticles()) if site.getParticle(j) in ex.index]
            if inside:
                raise ValueError(f"the {len(kept)} atoms given are not a whole molecule: {ex.describe(i)} outside it "
                                 f"is a virtual site placed from {ex.describe(inside[0])}; {_GIVE}")
    for k in range(system.getNumConstraints()):
        p1, p2, distance = system.getConstraintParameters(k)
        if (q := ex.term([p1, p2], None)) is not None:
            new.addConstraint(*q, distance)

    for index, force in enumerate(system.getForces()):
        if isinstance(force, _DROPPED):
            continue
        copy = _COPIES.get(type(force))
        if copy is None:
            touched = _particlesOf(force)
            inside = sorted(ex.index) if touched is None else sorted(touched & ex.index.keys())
            if inside:
                name = type(force).__name__
                reach = "acts on every particle" if touched is None else f"acts on {ex.describe(inside[0])}"
                raise ValueError(f"the System's {name} (force {index}) {reach} of the molecule, and extractMolecule "
                                 f"cannot carry a {name} into vacuum; give the vacuum leg's own input files "
                                 f"(its prmtop, ForceField or System) instead")
            continue
        result = copy(force, ex)
        if result is None:
            continue
        result.setForceGroup(force.getForceGroup())
        result.setName(force.getName())
        new.addForce(result)
    return newTopology, new, newPositions
