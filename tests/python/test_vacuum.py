"""extractMolecule: the vacuum leg of a hydration free energy cut out of the solvated leg's System.

The reference is independent of the code under test: ParmEd reads the same prmtop, keeps residue
TMP (p-xylene, atoms 0-17) and builds its own System with NoCutoff.  Energies on the Reference
platform (double precision) must agree to 1e-6 kJ/mol and forces to 1e-6 kJ/mol/nm.
"""
import os

import numpy as np
import openmm
import openmm.app as app
import openmm.unit as unit
import parmed
import pytest

from openmmhybrid.freeenergy.vacuum import extractMolecule

DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "examples", "data")
PRMTOP = os.path.join(DATA, "pxylene-water", "pxylene_water.prmtop")
INPCRD = os.path.join(DATA, "pxylene-water", "pxylene_water.inpcrd")
TMP = list(range(18))  # residue TMP, p-xylene
WATER = [18, 19, 20]  # the first TIP3P water (O, H1, H2)
KJ = unit.kilojoule_per_mole

# Measured here on the Reference platform (ParmEd's vacuum System gives the same to 1e-7):
PXYLENE_FLEXIBLE = -1.355224  # kJ/mol, no constraints
PXYLENE_HBONDS = -1.441097  # kJ/mol, HBonds: the C-H bonds carry no bond term (their 0.0859 kJ/mol)
WATER_FLEXIBLE = 2.738689  # kJ/mol, rigidWater=False: the bonds' strain; every pair in a TIP3P water is excluded


@pytest.fixture(scope="module")
def amber():
    return app.AmberPrmtopFile(PRMTOP), app.AmberInpcrdFile(INPCRD)


def solvated(amber, **options):
    prmtop, _ = amber
    return prmtop.createSystem(nonbondedMethod=app.PME, nonbondedCutoff=0.9 * unit.nanometer, **options)


def reference(selection, **options):
    """ParmEd's own vacuum System of ``selection`` and its positions."""
    structure = parmed.load_file(PRMTOP, INPCRD)[selection]
    return structure.createSystem(nonbondedMethod=app.NoCutoff, **options), structure.positions


def evaluate(system, positions, groups=-1):
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(positions)
    state = context.getState(getEnergy=True, getForces=True, groups=groups)
    return (state.getPotentialEnergy().value_in_unit(KJ),
            state.getForces(asNumpy=True).value_in_unit(KJ / unit.nanometer))


def energyByForce(system, positions):
    """The energy of each force type (kJ/mol), each force on its own in a copy of ``system``."""
    copy = openmm.XmlSerializer.deserialize(openmm.XmlSerializer.serialize(system))
    for i, force in enumerate(copy.getForces()):
        force.setForceGroup(i)
    out = {}
    for i, force in enumerate(copy.getForces()):
        name = type(force).__name__
        out[name] = out.get(name, 0.0) + evaluate(copy, positions, {i})[0]
    return out


def test_pxylene_matches_parmed_force_by_force(amber):
    system = solvated(amber, constraints=None, rigidWater=False)
    groups = {"HarmonicBondForce": 1, "HarmonicAngleForce": 2, "PeriodicTorsionForce": 3, "NonbondedForce": 4}
    for force in system.getForces():
        force.setForceGroup(groups.get(type(force).__name__, 0))
    topology, vacuum, positions = extractMolecule(amber[0].topology, system, amber[1].positions, TMP)

    assert topology.getNumAtoms() == 18 and topology.getNumBonds() == 18  # 8 C-C (ring + 2 methyl) + 10 C-H
    assert [r.name for r in topology.residues()] == ["TMP"]
    assert [a.name for a in topology.atoms()][:3] == ["C1", "C2", "C3"]
    assert topology.getPeriodicBoxVectors() is None and not vacuum.usesPeriodicBoundaryConditions()
    assert vacuum.getNumParticles() == 18 and vacuum.getNumConstraints() == 0
    nonbonded = next(f for f in vacuum.getForces() if isinstance(f, openmm.NonbondedForce))
    assert nonbonded.getNonbondedMethod() == openmm.NonbondedForce.NoCutoff
    assert not nonbonded.getUseDispersionCorrection()
    for force in vacuum.getForces():  # each force kept its group
        assert force.getForceGroup() == groups.get(type(force).__name__, 0)

    ref, refPositions = reference(":TMP", constraints=None, rigidWater=False)
    energy, forces = evaluate(vacuum, positions)
    refEnergy, refForces = evaluate(ref, refPositions)
    assert energy == pytest.approx(PXYLENE_FLEXIBLE, abs=1e-5)
    assert energy == pytest.approx(refEnergy, abs=1e-6)
    assert np.abs(forces - refForces).max() < 1e-6
    refByForce = energyByForce(ref, refPositions)
    for name, group in groups.items():
        assert evaluate(vacuum, positions, {group})[0] == pytest.approx(refByForce[name], abs=1e-6), name


def test_pxylene_hbonds_and_heavy_hydrogens(amber):
    system = solvated(amber, constraints=app.HBonds, hydrogenMass=1.5 * unit.amu)
    system.addForce(openmm.MonteCarloBarostat(1 * unit.bar, 298 * unit.kelvin))
    _, vacuum, positions = extractMolecule(amber[0].topology, system, amber[1].positions, TMP)
    ref, refPositions = reference(":TMP", constraints=app.HBonds, hydrogenMass=1.5 * unit.amu,
                                  flexibleConstraints=False)

    masses = [vacuum.getParticleMass(i).value_in_unit(unit.amu) for i in range(18)]
    assert masses == pytest.approx([system.getParticleMass(i).value_in_unit(unit.amu) for i in TMP], abs=0)
    assert masses == pytest.approx([ref.getParticleMass(i).value_in_unit(unit.amu) for i in range(18)], abs=1e-6)
    assert masses[8:] == [1.5] * 10 and sum(masses) == pytest.approx(8 * 12.01078 + 10 * 1.007947, abs=1e-6)

    def constraints(s):
        return sorted((min(p, q), max(p, q), round(d.value_in_unit(unit.nanometer), 8))
                      for p, q, d in (s.getConstraintParameters(k) for k in range(s.getNumConstraints())))

    assert vacuum.getNumConstraints() == 10
    assert constraints(vacuum) == constraints(ref)

    energy, forces = evaluate(vacuum, positions)
    refEnergy, refForces = evaluate(ref, refPositions)
    assert energy == pytest.approx(PXYLENE_HBONDS, abs=1e-5)
    assert energy == pytest.approx(refEnergy, abs=1e-6)
    assert np.abs(forces - refForces).max() < 1e-6


def test_unsorted_atoms_keep_the_original_order(amber):
    system = solvated(amber)
    topology, vacuum, positions = extractMolecule(amber[0].topology, system, amber[1].positions, TMP[::-1])
    assert [a.name for a in topology.atoms()] == [a.name for a in list(amber[0].topology.atoms())[:18]]
    assert positions.value_in_unit(unit.nanometer) == [amber[1].positions[i].value_in_unit(unit.nanometer)
                                                       for i in TMP]


@pytest.mark.parametrize("rigid, constraints, energy", [(True, 3, 0.0), (False, 0, WATER_FLEXIBLE)],
                         ids=["rigid", "flexible"])
def test_one_water(amber, rigid, constraints, energy):
    system = solvated(amber, rigidWater=rigid)
    topology, vacuum, positions = extractMolecule(amber[0].topology, system, amber[1].positions, WATER)
    assert [r.name for r in topology.residues()] == ["HOH"] and topology.getNumBonds() == 2
    assert vacuum.getNumConstraints() == constraints
    ref, refPositions = reference(":2", rigidWater=rigid, flexibleConstraints=False)
    assert ref.getNumConstraints() == constraints
    mine, refEnergy = evaluate(vacuum, positions)[0], evaluate(ref, refPositions)[0]
    assert mine == pytest.approx(energy, abs=1e-5)
    assert mine == pytest.approx(refEnergy, abs=1e-6)


def test_custom_terms_cmap_and_parameter_offsets(amber):
    """Terms the prmtop does not have, added to both the solvated System and ParmEd's reference."""
    def extras(system, solvent):
        bond = openmm.CustomBondForce("k*(r-r0)^2")
        bond.addGlobalParameter("k", 50.0)
        bond.addPerBondParameter("r0")
        bond.addBond(0, 3, [0.25])
        bond.setForceGroup(5)
        angle = openmm.CustomAngleForce("ka*(theta-t0)^2")
        angle.addGlobalParameter("ka", 3.0)
        angle.addPerAngleParameter("t0")
        angle.addAngle(0, 1, 2, [1.9])
        torsion = openmm.CustomTorsionForce("kt*(1+cos(2*theta))")
        torsion.addGlobalParameter("kt", 0.7)
        torsion.addTorsion(0, 1, 2, 3, [])
        rb = openmm.RBTorsionForce()
        rb.addTorsion(6, 0, 1, 2, 0.3, -0.2, 0.1, 0.05, 0.0, 0.0)
        cmap = openmm.CMAPTorsionForce()
        grid = [0.1 * np.sin(i) + 0.05 * np.cos(3 * i) for i in range(24 * 24)]
        cmap.addMap(24, [0.0] * 24 * 24)  # unused: not copied
        cmap.addMap(24, grid)
        cmap.addTorsion(1, 0, 1, 2, 3, 1, 2, 3, 4)
        for force in (bond, angle, torsion, rb, cmap):
            system.addForce(force)
        if solvent:
            waterOnly = openmm.CMAPTorsionForce()  # acts on waters only: left out
            waterOnly.addMap(24, grid)
            waterOnly.addTorsion(0, 18, 19, 20, 21, 19, 20, 21, 22)
            system.addForce(waterOnly)
        nonbonded = next(f for f in system.getForces() if isinstance(f, openmm.NonbondedForce))
        nonbonded.addGlobalParameter("lam", 1.0)
        for i in (0, 8):
            nonbonded.addParticleParameterOffset("lam", i, 0.1, 0.0, 0.01)
        pair = next(k for k in range(nonbonded.getNumExceptions())
                    if sorted(nonbonded.getExceptionParameters(k)[:2]) == [0, 3])
        nonbonded.addExceptionParameterOffset("lam", pair, 0.02, 0.0, 0.0)
        if solvent:
            nonbonded.addParticleParameterOffset("lam", 30, 0.3, 0.0, 0.0)  # a water's: not copied
        return system

    system = extras(solvated(amber, constraints=None, rigidWater=False), True)
    _, vacuum, positions = extractMolecule(amber[0].topology, system, amber[1].positions, TMP)
    names = [type(f).__name__ for f in vacuum.getForces()]
    assert names == ["HarmonicBondForce", "HarmonicAngleForce", "PeriodicTorsionForce", "NonbondedForce",
                     "CMMotionRemover", "CustomBondForce", "CustomAngleForce", "CustomTorsionForce", "RBTorsionForce",
                     "CMAPTorsionForce"]
    assert vacuum.getForce(5).getForceGroup() == 5
    assert vacuum.getForce(9).getNumMaps() == 1
    nonbonded = vacuum.getForce(3)
    assert nonbonded.getNumParticleParameterOffsets() == 2 and nonbonded.getNumExceptionParameterOffsets() == 1

    ref, refPositions = reference(":TMP", constraints=None, rigidWater=False)
    extras(ref, False)
    contexts = []
    for s, p in ((vacuum, positions), (ref, refPositions)):
        context = openmm.Context(s, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
        context.setPositions(p)
        contexts.append(context)
    for lam, k in ((1.0, 50.0), (0.3, 20.0)):
        energies = []
        for context in contexts:
            context.setParameter("lam", lam)
            context.setParameter("k", k)
            energies.append(context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(KJ))
        assert energies[0] == pytest.approx(energies[1], abs=1e-6)
        assert abs(energies[0] - PXYLENE_FLEXIBLE) > 0.1  # the extra terms count


def sitesSystem():
    """Two three-atom molecules (0-2 and 3-5); the second carries one virtual site of each kind (6-9)."""
    system = openmm.System()
    for mass in (12.0, 1.0, 1.0, 16.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0):
        system.addParticle(mass)
    system.setVirtualSite(6, openmm.TwoParticleAverageSite(3, 4, 0.3, 0.7))
    system.setVirtualSite(7, openmm.ThreeParticleAverageSite(3, 4, 5, 0.5, 0.3, 0.2))
    system.setVirtualSite(8, openmm.OutOfPlaneSite(3, 4, 5, 0.2, 0.3, 0.5))
    system.setVirtualSite(9, openmm.LocalCoordinatesSite([3, 4, 5], [1, 0, 0], [-1, 1, 0], [-1, 0, 1],
                                                         openmm.Vec3(0.02, 0.01, 0.03)))
    bonds = openmm.HarmonicBondForce()
    for i, j in ((0, 1), (0, 2), (3, 4), (3, 5)):
        bonds.addBond(i, j, 0.1, 1000.0)
    nonbonded = openmm.NonbondedForce()
    for q in (-0.4, 0.2, 0.2, 0.0, 0.4, 0.4, -0.3, -0.2, -0.2, -0.1):
        nonbonded.addParticle(q, 0.3, 0.5)
    exclusions = [(0, 1), (0, 2), (1, 2)] + [(i, j) for i in range(3, 10) for j in range(i + 1, 10)
                                            if not (i >= 6 and j >= 6)]
    for i, j in exclusions:
        nonbonded.addException(i, j, 0.0, 0.3, 0.0)
    system.addForce(bonds)
    system.addForce(nonbonded)
    topology = app.Topology()
    chain = topology.addChain()
    atoms = []
    for r, names in enumerate((("C", "H1", "H2"), ("O", "H1", "H2", "V1", "V2", "V3", "V4"))):
        residue = topology.addResidue(f"M{r}", chain)
        for name in names:
            atoms.append(topology.addAtom(name, app.element.hydrogen if name.startswith("H") else None, residue))
    for i, j in ((0, 1), (0, 2), (3, 4), (3, 5)):
        topology.addBond(atoms[i], atoms[j])
    positions = [openmm.Vec3(0, 0, 0), openmm.Vec3(0.1, 0, 0), openmm.Vec3(0, 0.1, 0), openmm.Vec3(0.5, 0.4, 0.3),
                 openmm.Vec3(0.59, 0.42, 0.31), openmm.Vec3(0.49, 0.5, 0.33)] + [openmm.Vec3(0, 0, 0)] * 4
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(positions)
    context.computeVirtualSites()
    return topology, system, context.getState(getPositions=True).getPositions()


def test_virtual_sites_are_remapped():
    topology, system, positions = sitesSystem()
    full = evaluate(system, positions)
    # The second molecule alone equals the whole minus the first alone (no exception joins them, so
    # the difference is the molecules' mutual Coulomb and LJ energy, computed here by hand).
    newTopology, vacuum, newPositions = extractMolecule(topology, system, positions, [9, 8, 7, 6, 5, 4, 3])
    assert vacuum.getNumParticles() == 7 and [vacuum.isVirtualSite(i) for i in range(7)] == [False] * 3 + [True] * 4
    assert [type(vacuum.getVirtualSite(i)).__name__ for i in range(3, 7)] == [
        "TwoParticleAverageSite", "ThreeParticleAverageSite", "OutOfPlaneSite", "LocalCoordinatesSite"]
    assert [vacuum.getVirtualSite(i).getParticle(0) for i in range(3, 7)] == [0] * 4
    # The extracted sites sit where the original ones did.
    context = openmm.Context(vacuum, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    moved = np.array(newPositions.value_in_unit(unit.nanometer))
    moved[3:] = 0.0
    context.setPositions(moved)
    context.computeVirtualSites()
    recomputed = context.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.nanometer)
    assert np.abs(recomputed - np.array(newPositions.value_in_unit(unit.nanometer))).max() < 1e-12
    first = extractMolecule(topology, system, positions, [0, 1, 2])[1]
    x = np.array(positions.value_in_unit(unit.nanometer))
    nonbonded = system.getForce(1)
    cross = 0.0
    for i in range(3):
        for j in range(3, 10):
            qi, si, ei = nonbonded.getParticleParameters(i)
            qj, sj, ej = nonbonded.getParticleParameters(j)
            r = np.linalg.norm(x[i] - x[j])
            sigma, epsilon = 0.5 * (si + sj).value_in_unit(unit.nanometer), np.sqrt(ei._value * ej._value)
            cross += 138.93545764438198 * qi._value * qj._value / r
            cross += 4 * epsilon * ((sigma / r) ** 12 - (sigma / r) ** 6)
    second = evaluate(vacuum, newPositions)[0]
    assert second == pytest.approx(full[0] - evaluate(first, x[:3])[0] - cross, abs=1e-6)


def test_serializes_and_drops_the_barostat(amber):
    system = solvated(amber, constraints=app.HBonds)
    system.addForce(openmm.MonteCarloBarostat(1 * unit.bar, 298 * unit.kelvin))
    system.addForce(openmm.AndersenThermostat(298 * unit.kelvin, 1 / unit.picosecond))
    assert system.usesPeriodicBoundaryConditions()
    _, vacuum, positions = extractMolecule(amber[0].topology, system, amber[1].positions, TMP)
    names = [type(f).__name__ for f in vacuum.getForces()]
    assert "MonteCarloBarostat" not in names and "AndersenThermostat" not in names
    assert names == ["HarmonicBondForce", "HarmonicAngleForce", "PeriodicTorsionForce", "NonbondedForce",
                     "CMMotionRemover"]
    again = openmm.XmlSerializer.deserialize(openmm.XmlSerializer.serialize(vacuum))
    assert not again.usesPeriodicBoundaryConditions()
    assert evaluate(again, positions)[0] == pytest.approx(evaluate(vacuum, positions)[0], abs=1e-9)
    assert evaluate(again, positions)[0] == pytest.approx(PXYLENE_HBONDS, abs=1e-5)


def test_an_unsupported_force_on_the_molecule_is_refused(amber):
    system = solvated(amber)
    restraint = openmm.CustomExternalForce("k*(x-x0)^2")
    restraint.addGlobalParameter("k", 1.0)
    restraint.addPerParticleParameter("x0")
    restraint.addParticle(30, [0.0])  # a water's oxygen: not the molecule, so ignored
    system.addForce(restraint)
    _, vacuum, _ = extractMolecule(amber[0].topology, system, amber[1].positions, TMP)
    assert "CustomExternalForce" not in [type(f).__name__ for f in vacuum.getForces()]
    restraint.addParticle(4, [0.0])
    with pytest.raises(ValueError, match=r"CustomExternalForce \(force 5\) acts on atom 4 \(C5 of residue TMP 1\).*"
                                         r"vacuum leg's own input"):
        extractMolecule(amber[0].topology, system, amber[1].positions, TMP)


def test_a_force_on_every_particle_is_refused(amber):
    system = solvated(amber)
    system.addForce(openmm.CustomNonbondedForce("0"))
    for _ in range(system.getNumParticles()):
        system.getForce(system.getNumForces() - 1).addParticle([])
    with pytest.raises(ValueError, match="CustomNonbondedForce .* acts on every particle"):
        extractMolecule(amber[0].topology, system, amber[1].positions, TMP)


@pytest.mark.parametrize("atoms, message", [
    (TMP[:5], r"the 5 atoms given are not a whole molecule: atom \d+ \(C\d of residue TMP 1\) is bonded to atom \d+ "
              r"\(.* of residue TMP 1\) outside it; give whole molecules"),
    (TMP + [18, 19], r"not a whole molecule: atom 18 \(O of residue HOH 2\) is bonded to atom 20"),
    ([], "atoms is empty"),
    ([0, 1, 1], r"atoms lists atom\(s\) \[1\] more than once"),
    (TMP + [3180], r"index\(es\) \[3180\] outside the System's 3180 particles"),
    ([-1], r"index\(es\) \[-1\] outside"),
    ([0.5], "atoms must be a list of atom indices"),
], ids=["half-molecule", "half-water", "empty", "duplicate", "past-the-end", "negative", "not-an-index"])
def test_bad_atoms_are_refused(amber, atoms, message):
    system = solvated(amber)
    with pytest.raises(ValueError, match=message):
        extractMolecule(amber[0].topology, system, amber[1].positions, atoms)


def test_without_a_topology_the_terms_find_a_broken_molecule(amber):
    system = solvated(amber, constraints=app.HBonds)
    with pytest.raises(ValueError, match=r"atom 8 is bonded to atom \d outside it \(by a constraint\)"):
        extractMolecule(None, system, amber[1].positions, TMP[8:] + [18])
    flexible = solvated(amber, constraints=None)
    with pytest.raises(ValueError, match=r"not a whole molecule: atom \d+ is bonded to atom \d+ outside it \(by a "
                                         r"HarmonicBondForce term\)"):
        extractMolecule(None, flexible, amber[1].positions, TMP[:5])
    topology, vacuum, _ = extractMolecule(None, system, amber[1].positions, TMP)
    assert topology is None and vacuum.getNumParticles() == 18


def test_virtual_sites_need_their_molecule():
    topology, system, positions = sitesSystem()
    with pytest.raises(ValueError, match=r"atom 6 \(V1 of residue M1 2\) outside it is a virtual site placed from "
                                         r"atom 3"):
        extractMolecule(topology, system, positions, [3, 4, 5])
    with pytest.raises(ValueError, match=r"atom 9 \(V4 of residue M1 2\) is a virtual site placed from atom 3 "):
        extractMolecule(topology, system, positions, [0, 1, 2, 9])


def test_positions_in_other_forms(amber):
    """A Quantity of a numpy array in Angstrom, and a list of Vec3 Quantities, give the same nm positions."""
    system = solvated(amber)
    expected = [amber[1].positions[i].value_in_unit(unit.nanometer) for i in WATER]
    angstrom = unit.Quantity(np.array(amber[1].positions.value_in_unit(unit.angstrom)), unit.angstrom)
    perAtom = [amber[1].positions[i] for i in range(system.getNumParticles())]
    for positions in (angstrom, perAtom):
        got = extractMolecule(amber[0].topology, system, positions, WATER)[2].value_in_unit(unit.nanometer)
        assert np.abs(np.array(got) - np.array(expected)).max() < 1e-12
    with pytest.raises(ValueError, match="there are 3 positions for a System of 3180 particles"):
        extractMolecule(amber[0].topology, system, expected, WATER)
