"""createMixedSystem: E(lambda) = E_MM + lambda * (E_ML(region) - E_MM,region)."""
import math
from typing import Optional
import os
import warnings

import numpy as np
import openmm
import openmm.app as app
import openmm.unit as unit
import pytest
import torch

import openmmhybrid
from openmmhybrid.utils import ONE_4PI_EPS0
from conftest import DATA, amber, openmm_ml_peer
from models import PairMLP
from precision import EPS64, bound, boxMatrix, centralDifference, networkTerms, nonbondedBounds

LAMBDA = "lambda_interpolate"
KJ = unit.kilojoule_per_mole


def context(system, crd, platform, positions=None):
    c = openmm.Context(system, openmm.VerletIntegrator(0.001), platform)
    if crd.boxVectors is not None and system.usesPeriodicBoundaryConditions():
        c.setPeriodicBoxVectors(*crd.boxVectors)
    c.setPositions(crd.positions if positions is None else positions)
    return c


def energy(c, groups=-1):
    return c.getState(getEnergy=True, groups=groups).getPotentialEnergy().value_in_unit(KJ)


def forces(c, groups=-1):
    return c.getState(getForces=True, groups=groups).getForces(asNumpy=True).value_in_unit(KJ / unit.nanometer)


def positions_nm(crd):
    return np.array(crd.positions.value_in_unit(unit.nanometer))


def region_model_energy(model, pos):
    with torch.no_grad():
        return model(torch.tensor(pos, dtype=torch.float64)).item()


def test_selection_helpers(pxylene):
    prm, _, _ = pxylene
    by_name = openmmhybrid.selectAtoms(prm.topology, residueName="TMP")
    assert by_name == list(range(18)) or len(by_name) == 18
    assert openmmhybrid.selectAtoms(prm.topology, selection="resname TMP") == by_name
    assert openmmhybrid.selectAtoms(prm.topology, indices=by_name) == by_name
    with pytest.raises(ValueError, match="no residue is named 'XYZ'"):
        openmmhybrid.selectAtoms(prm.topology, residueName="XYZ")
    with pytest.raises(ValueError, match="matches no atom"):
        openmmhybrid.selectAtoms(prm.topology, selection="resname XYZ")
    with pytest.raises(ValueError, match="exactly one"):
        openmmhybrid.selectAtoms(prm.topology)
    with pytest.raises(ValueError, match="out of range"):
        openmmhybrid.selectAtoms(prm.topology, indices=[0, 10**6])


def test_side_chain_and_residue_range(dipeptide):
    """sideChain= is a residue but its backbone (ALA 2: CB, HB1-3); residues= a range of one chain
    (ACE 1 to ALA 2: atoms 0-15); numbers as in the input; bad ones name the fix."""
    prm, _, _ = dipeptide
    top = prm.topology
    assert openmmhybrid.selectAtoms(top, sideChain=2) == [10, 11, 12, 13]
    assert [a.name for a in top.atoms() if a.index in (10, 11, 12, 13)] == ["CB", "HB1", "HB2", "HB3"]
    assert openmmhybrid.selectAtoms(top, sideChain="2") == openmmhybrid.selectAtoms(top, sideChain=2)
    assert openmmhybrid.selectAtoms(top, residues="1-2") == list(range(16))
    assert openmmhybrid.selectAtoms(top, residues=(2, 3)) == list(range(6, 22))
    chain = next(top.chains()).id
    assert openmmhybrid.selectAtoms(top, residues=f"{chain}:2-2") == list(range(6, 16))
    with pytest.raises(ValueError, match="ACE 1 has no side chain"):
        openmmhybrid.selectAtoms(top, sideChain=1)
    with pytest.raises(ValueError, match="no residue numbered 9999"):
        openmmhybrid.selectAtoms(top, sideChain=9999)
    with pytest.raises(ValueError, match="residue 1 does not follow residue 3"):
        openmmhybrid.selectAtoms(top, residues="3-1")
    with pytest.raises(ValueError, match="exactly one"):
        openmmhybrid.selectAtoms(top, sideChain=2, residues="1-2")


@pytest.mark.parametrize("case", ["pxylene", "dipeptide"])
def test_lambda_zero_is_the_mm_system(case, pxylene, dipeptide, platform):
    prm, crd, system = pxylene if case == "pxylene" else dipeptide
    atoms = openmmhybrid.selectAtoms(prm.topology, selection="not water")
    mixed = openmmhybrid.createMixedSystem(prm.topology, system, atoms, PairMLP(), interpolate=True)
    assert mixed.getNumForces() > system.getNumForces() and system.getNumConstraints() == mixed.getNumConstraints()
    mm, ml = context(system, crd, platform), context(mixed, crd, platform)
    ml.setParameter(LAMBDA, 0.0)
    e_mm, e_ml = energy(mm), energy(ml)
    f_mm, f_ml = forces(mm), forces(ml)
    if platform.getName() == "Reference":
        # The same MM code on the same inputs, and every correction term times lambda = 0 adds an
        # exact zero: bitwise equal.
        assert e_ml == e_mm
        assert np.array_equal(f_ml, f_mm)
    else:
        # The CPU platform's float32 nonbonded sums change from one Context to another.
        e_bound, f_bound = nonbondedBounds(system, boxMatrix(crd), abs(e_mm), np.abs(f_mm).max(), platform)
        assert abs(e_ml - e_mm) <= e_bound
        assert np.abs(f_ml - f_mm).max() <= f_bound


def test_lambda_is_linear_and_derivative_matches(pxylene, platform):
    prm, crd, system = pxylene
    atoms = openmmhybrid.selectAtoms(prm.topology, residueName="TMP")
    mixed = openmmhybrid.createMixedSystem(prm.topology, system, atoms, PairMLP(), interpolate=True,
                                           usesDoublePrecision=True)
    c = context(mixed, crd, platform)
    values = {}
    h = 0.2  # E is linear in lambda: any step is exact but for rounding, and a long one divides it least
    for lam in (0.3, 0.3 + h, 0.3 - h):
        c.setParameter(LAMBDA, lam)
        values[lam] = energy(c)
    c.setParameter(LAMBDA, 0.3)
    derivative = c.getState(getParameterDerivatives=True).getEnergyParameterDerivatives()[LAMBDA]
    finite = (values[0.3 + h] - values[0.3 - h]) / (2 * h)
    # float64: the energy is a sum over the forces (scale |E|), the correction a sum over the
    # region's terms (scale |E_ML| + |E_MM,region|).
    e_ml = region_model_energy(PairMLP(), positions_nm(crd)[atoms])
    scale = abs(values[0.3]) + abs(e_ml) + abs(e_ml - derivative)
    tolerance = bound(scale, torch.float64, mixed.getNumForces() + PairMLP.rounding_terms(len(atoms)))
    # Each evaluation of the MM energy: exact on Reference (the same code on the same positions);
    # the CPU platform sums its float32 nonbonded terms over threads in an order that can change
    # from one call to the next (measured up to 8e-6 kJ/mol): one float32 rounding of |E|.
    noise = bound(values[0.3], torch.float32) if platform.getName() == "CPU" else 0.0
    # E is exactly linear in lambda, so the central difference has no truncation error (E''' = 0):
    # its error is the rounding of two energies over 2h, plus the derivative's own.
    assert abs(derivative - finite) <= (tolerance + 2 * noise) / h
    # dE/dlambda = E_ML - E_MM,region, independent of lambda.
    correction_group = mixed.getForce(mixed.getNumForces() - 1).getForceGroup()
    c.setParameter(LAMBDA, 1.0)
    assert abs(energy(c, {correction_group}) - derivative) <= tolerance
    # interpolationEnergies: every state from one evaluation, E(0.3) + (lambda - 0.3) dE/dlambda;
    # three rounded quantities (E(0.3), dE/dlambda, E(lambda)), each within tolerance / 2.
    c.setParameter(LAMBDA, 0.3)
    states = openmmhybrid.interpolationEnergies(c, [0.0, 0.3, 1.0]).value_in_unit(KJ)
    for lam, e in zip((0.0, 0.3, 1.0), states):
        c.setParameter(LAMBDA, lam)
        assert abs(e - energy(c)) <= 2 * tolerance + 2 * noise


def test_correction_forces_match_finite_differences(pxylene, platform):
    prm, crd, system = pxylene
    atoms = openmmhybrid.selectAtoms(prm.topology, residueName="TMP")
    mixed = openmmhybrid.createMixedSystem(prm.topology, system, atoms, PairMLP(), interpolate=True,
                                           usesDoublePrecision=True, correctionGroup=5)
    pos = positions_nm(crd)
    c = context(mixed, crd, platform, pos)
    c.setParameter(LAMBDA, 0.6)
    f = forces(c, {5})
    e0 = energy(c, {5})
    assert np.abs(f[len(atoms):]).max() == 0.0  # nothing on MM atoms: no correction term touches them, exact zeros
    # Rounding of one float64 correction energy: the model part (0.6 |E_ML|) and the MM part.
    e_ml = 0.6 * region_model_energy(PairMLP(), pos[atoms])
    rounding = bound(abs(e_ml) + abs(e0 - e_ml), torch.float64, PairMLP.rounding_terms(len(atoms)))
    rng = np.random.default_rng(1)
    h = 2e-5  # the toy model's Gaussians are 0.1 nm wide: a larger step has an O(h^2) error above 1e-5
    for atom in rng.choice(atoms, 4, replace=False):
        for k in range(3):
            def energyAt(dx):
                moved = pos.copy()
                moved[atom, k] += dx
                c.setPositions(moved)
                return energy(c, {5})
            numeric, tolerance = centralDifference(energyAt, h, rounding)
            assert abs(numeric - f[atom, k]) <= tolerance


def rotation(seed):
    q = np.random.default_rng(seed).normal(size=4)
    a, b, c, d = q / np.linalg.norm(q)
    return np.array([[a*a + b*b - c*c - d*d, 2*(b*c - a*d), 2*(b*d + a*c)],
                     [2*(b*c + a*d), a*a - b*b + c*c - d*d, 2*(c*d - a*b)],
                     [2*(b*d - a*c), 2*(c*d + a*b), a*a - b*b - c*c + d*d]])


def test_correction_is_invariant(pxylene, platform):
    """The correction group only sees the region: rotating and translating the whole vacuum-like
    region leaves its energy unchanged and rotates its forces."""
    prm, crd, system = pxylene
    atoms = openmmhybrid.selectAtoms(prm.topology, residueName="TMP")
    mixed = openmmhybrid.createMixedSystem(prm.topology, system, atoms, PairMLP(), usesDoublePrecision=True)
    g = mixed.getForce(mixed.getNumForces() - 1).getForceGroup()
    pos = positions_nm(crd)
    c = context(mixed, crd, platform, pos)
    e0, f0 = energy(c, {g}), forces(c, {g})[atoms]
    R = rotation(3)
    moved = pos.copy()
    moved[atoms] = (pos[atoms] - pos[atoms].mean(0)) @ R.T + pos[atoms].mean(0) + np.array([0.31, -0.2, 0.45])
    c.setPositions(moved)
    e1, f1 = energy(c, {g}), forces(c, {g})[atoms]
    # float64.  The sums round differently (scale |E_ML| + |E_MM,region|, and the largest force),
    # and the moved coordinates carry about 4 eps |x| of rounding (subtract, rotate, add): that
    # moves E by up to sum |F| 4 eps |x|, and a force by its bonds' stiffness (at most 4 bonds of
    # the stiffest force constant, each stretched by twice that).
    e_ml = region_model_energy(PairMLP(), pos[atoms])
    terms = PairMLP.rounding_terms(len(atoms))
    shift = 4 * EPS64 * max(np.abs(pos[atoms]).max(), np.abs(moved[atoms]).max())
    bonds = next(f for f in system.getForces() if isinstance(f, openmm.HarmonicBondForce))
    stiffest = max(k.value_in_unit(KJ / unit.nanometer**2)
                   for a, b, _, k in (bonds.getBondParameters(i) for i in range(bonds.getNumBonds()))
                   if a in atoms and b in atoms)
    assert abs(e1 - e0) <= bound(abs(e_ml) + abs(e0 - e_ml), torch.float64, terms) + np.abs(f0).sum() * shift
    assert np.abs(f1 - f0 @ R.T).max() <= bound(np.abs(f0).max(), torch.float64, terms) + 4 * stiffest * 2 * shift


# ---------------------------------------------------------------------------------------------
# The correction at lambda = 1 against an independent recomputation

def region_only_mm_energy(prmtop_path, inpcrd_path, mask):
    """MM energy of the region alone (no cutoff), from a ParmEd region-only copy of the same parameters.

    Built with the same HBonds constraints as the full System: a constrained bond has no bond term
    there, so it has none here either."""
    parmed = pytest.importorskip("parmed", reason="the independent region-only System is built with ParmEd")
    structure = parmed.load_file(prmtop_path, inpcrd_path)
    region = structure[mask]
    system = region.createSystem(nonbondedMethod=app.NoCutoff, constraints=app.HBonds, rigidWater=False,
                                 flexibleConstraints=False)
    c = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    c.setPositions(region.positions)
    return energy(c)


@pytest.mark.parametrize("case,mask,resname", [
    ("pxylene", ":TMP", "TMP"),
    ("dipeptide", ":ACE,ALA,NME", None),
    ("complex", ":TMP", "TMP"),
])
def test_correction_equals_model_minus_region_only_mm(case, mask, resname, pxylene, dipeptide):
    if case == "complex":
        folder = "t4l-l99a-pxylene-water"
        prm, crd, system = amber(folder, "complex.prmtop", "complex.inpcrd")
        files = ("complex.prmtop", "complex.inpcrd")
    elif case == "pxylene":
        folder, files = "pxylene-water", ("pxylene_water.prmtop", "pxylene_water.inpcrd")
        prm, crd, system = pxylene
    else:
        folder, files = "alanine-dipeptide-water", ("alanine-dipeptide.prmtop", "alanine-dipeptide.inpcrd")
        prm, crd, system = dipeptide
    atoms = (openmmhybrid.selectAtoms(prm.topology, residueName=resname) if resname
             else openmmhybrid.selectAtoms(prm.topology, selection="not water"))
    model = PairMLP()
    mixed = openmmhybrid.createMixedSystem(prm.topology, system, atoms, model, usesDoublePrecision=True)
    g = mixed.getForce(mixed.getNumForces() - 1).getForceGroup()
    c = context(mixed, crd, openmm.Platform.getPlatformByName("CPU"))
    correction = energy(c, {g})
    e_ml = region_model_energy(model, positions_nm(crd)[atoms])
    e_region = region_only_mm_energy(os.path.join(DATA, folder, files[0]), os.path.join(DATA, folder, files[1]), mask)
    # Not the same parameters to the last bit: ParmEd and OpenMM's reader compute the 1-4
    # Lennard-Jones epsilon by different routes from the prmtop's 9-digit tables (ParmEd rescales
    # through the atom types' combined depths), each within 3 * 5e-9 relative, so 3e-8 apart
    # (measured: 9e-9).  Plus float64 rounding of the two sums.
    lj14 = lj_exception_scale(system, atoms, positions_nm(crd))
    tolerance = 3e-8 * lj14 + bound(abs(e_ml) + abs(e_region) + lj14, torch.float64, PairMLP.rounding_terms(len(atoms)))
    assert abs(correction - (e_ml - e_region)) <= tolerance


def lj_exception_scale(system, atoms, pos):
    """Sum of |E_LJ| over the Lennard-Jones exceptions (1-4 pairs) within the region."""
    nb = next(f for f in system.getForces() if isinstance(f, openmm.NonbondedForce))
    region, total = set(atoms), 0.0
    for i in range(nb.getNumExceptions()):
        a, b, _, sigma, epsilon = nb.getExceptionParameters(i)
        if a in region and b in region and epsilon.value_in_unit(KJ) != 0:
            x = (sigma.value_in_unit(unit.nanometer) / np.linalg.norm(pos[a] - pos[b])) ** 6
            total += abs(4 * epsilon.value_in_unit(KJ) * (x * x - x))
    return total


def lj_coulomb_as_custom(system):
    """The same System with NonbondedForce's Lennard-Jones moved into a CustomNonbondedForce
    (the pattern of alchemical and softcore setups)."""
    system = openmm.XmlSerializer.clone(system)
    nb = next(f for f in system.getForces() if isinstance(f, openmm.NonbondedForce))
    custom = openmm.CustomNonbondedForce("4*eps*((sig/r)^12-(sig/r)^6); sig=0.5*(sig1+sig2); eps=sqrt(eps1*eps2)")
    custom.addPerParticleParameter("sig")
    custom.addPerParticleParameter("eps")
    custom.setNonbondedMethod(openmm.CustomNonbondedForce.CutoffPeriodic)
    custom.setCutoffDistance(nb.getCutoffDistance())
    for i in range(nb.getNumParticles()):
        q, sig, eps = nb.getParticleParameters(i)
        custom.addParticle([sig, eps])
        nb.setParticleParameters(i, q, sig, 0.0)
    for i in range(nb.getNumExceptions()):
        a, b, *_ = nb.getExceptionParameters(i)
        custom.addExclusion(a, b)
    system.addForce(custom)
    return system, custom


def test_custom_nonbonded_pairs(pxylene):
    prm, crd, system = pxylene
    system, custom = lj_coulomb_as_custom(system)
    atoms = openmmhybrid.selectAtoms(prm.topology, residueName="TMP")
    mixed = openmmhybrid.createMixedSystem(prm.topology, system, atoms, PairMLP(), usesDoublePrecision=True,
                                           correctionGroup=3)
    # Independent: the region's non-excluded pairs of the custom LJ, in NumPy.
    pos = positions_nm(crd)
    excluded = {tuple(sorted(custom.getExclusionParticles(i))) for i in range(custom.getNumExclusions())}
    expected, magnitude, pairs = 0.0, 0.0, 0
    for x, a in enumerate(atoms):
        for b in atoms[x + 1:]:
            if (min(a, b), max(a, b)) in excluded:
                continue
            (sa, ea), (sb, eb) = custom.getParticleParameters(a), custom.getParticleParameters(b)
            s, e = 0.5 * (sa + sb), math.sqrt(ea * eb)
            r = np.linalg.norm(pos[a] - pos[b])
            expected += 4 * e * ((s / r) ** 12 - (s / r) ** 6)
            magnitude += abs(4 * e * ((s / r) ** 12 - (s / r) ** 6))
            pairs += 1
    assert expected != 0.0
    by_class = {}
    for f in mixed.getForces():
        if f.getForceGroup() == 3 and "CustomNonbondedForce" in f.getName():
            by_class["custom"] = f
    assert "custom" in by_class
    only = openmm.System()
    for i in range(mixed.getNumParticles()):
        only.addParticle(1.0)
    only.setDefaultPeriodicBoxVectors(*crd.boxVectors)
    only.addForce(openmm.XmlSerializer.clone(by_class["custom"]))
    c = context(only, crd, openmm.Platform.getPlatformByName("Reference"), pos)
    # float64, OpenMM's expression against NumPy: a sum over the pairs of magnitude `magnitude`.
    assert abs(energy(c) + expected) <= bound(magnitude, torch.float64, pairs)
    # And the whole mixed System still has lambda = 1 energy = MM + (ML - region MM).
    c_mm = context(system, crd, openmm.Platform.getPlatformByName("Reference"), pos)
    c_mixed = context(mixed, crd, openmm.Platform.getPlatformByName("Reference"), pos)
    e_mm, e_mixed, e_correction = energy(c_mm), energy(c_mixed), energy(c_mixed, {3})
    # Reference runs the MM forces' code on the same inputs in both Contexts (the same bits); the
    # totals differ only by the float64 rounding of adding each force's energy to a sum of size |E|.
    tolerance = bound(abs(e_mm) + abs(e_correction), torch.float64, mixed.getNumForces())
    assert abs(e_mixed - e_mm - e_correction) <= tolerance


def two_tip4p_waters():
    """Two 4-site waters (TIP4P-Ew parameters) with the charge on a virtual site, no cutoff."""
    system = openmm.System()
    nb = openmm.NonbondedForce()
    bonds, angles = openmm.HarmonicBondForce(), openmm.HarmonicAngleForce()
    o = np.array([0.0, 0.0, 0.0])
    h1 = np.array([0.09572, 0.0, 0.0])
    h2 = np.array([0.09572 * math.cos(math.radians(104.52)), 0.09572 * math.sin(math.radians(104.52)), 0.0])
    positions = []
    for shift in (np.zeros(3), np.array([0.28, 0.05, 0.1])):
        base = system.getNumParticles()
        for mass in (15.999, 1.008, 1.008, 0.0):
            system.addParticle(mass)
        system.setVirtualSite(base + 3, openmm.ThreeParticleAverageSite(base, base + 1, base + 2,
                                                                        0.786646558, 0.106676721, 0.106676721))
        nb.addParticle(0.0, 0.316435, 0.680946)
        nb.addParticle(0.52422, 1.0, 0.0)
        nb.addParticle(0.52422, 1.0, 0.0)
        nb.addParticle(-1.04844, 1.0, 0.0)
        for i in range(4):
            for j in range(i + 1, 4):
                nb.addException(base + i, base + j, 0.0, 1.0, 0.0)
        bonds.addBond(base, base + 1, 0.09572, 5e5)
        bonds.addBond(base, base + 2, 0.09572, 5e5)
        angles.addAngle(base + 1, base, base + 2, math.radians(104.52), 600.0)
        m = 0.786646558 * o + 0.106676721 * (h1 + h2)
        positions += [o + shift, h1 + shift, h2 + shift, m + shift]
    for f in (nb, bonds, angles):
        system.addForce(f)
    topology = app.Topology()
    chain = topology.addChain()
    for w in range(2):
        residue = topology.addResidue("HOH", chain)
        topology.addAtom("O", app.element.oxygen, residue)
        topology.addAtom("H1", app.element.hydrogen, residue)
        topology.addAtom("H2", app.element.hydrogen, residue)
        topology.addAtom("M", None, residue)
    return topology, system, np.array(positions)


def test_virtual_site_in_the_region():
    topology, system, pos = two_tip4p_waters()
    atoms = [0, 1, 2, 4, 5, 6]
    mixed = openmmhybrid.createMixedSystem(topology, system, atoms, PairMLP(), usesDoublePrecision=True,
                                           correctionGroup=2)
    reference = openmm.Platform.getPlatformByName("Reference")
    c = openmm.Context(mixed, openmm.VerletIntegrator(0.001), reference)
    c.setPositions(pos)
    c.computeVirtualSites()
    pos = c.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.nanometer)
    nb = system.getForce(0)
    expected, magnitude = 0.0, 0.0  # intermolecular pairs: O-O Lennard-Jones and the charges on H and M
    for a in range(4):
        for b in range(4, 8):
            qa, sa, ea = [x._value for x in nb.getParticleParameters(a)]
            qb, sb, eb = [x._value for x in nb.getParticleParameters(b)]
            r = np.linalg.norm(pos[a] - pos[b])
            s, e = 0.5 * (sa + sb), math.sqrt(ea * eb)
            expected += ONE_4PI_EPS0 * qa * qb / r + 4 * e * ((s / r) ** 12 - (s / r) ** 6)
            magnitude += abs(ONE_4PI_EPS0 * qa * qb / r) + abs(4 * e * ((s / r) ** 12 - (s / r) ** 6))
    for a, b in ((0, 1), (0, 2), (4, 5), (4, 6)):  # bonds, at their equilibrium length here
        expected += 0.5 * 5e5 * (np.linalg.norm(pos[a] - pos[b]) - 0.09572) ** 2
    e_ml = region_model_energy(PairMLP(), pos[atoms])
    # float64: the model (TorchScript against eager) and 32 pair terms (OpenMM against NumPy).
    tolerance = bound(abs(e_ml) + magnitude, torch.float64, PairMLP.rounding_terms(len(atoms)) + 32)
    assert abs(energy(c, {2}) - (e_ml - expected)) <= tolerance
    with pytest.raises(ValueError, match="particle 3 is a virtual site"):
        openmmhybrid.createMixedSystem(topology, system, [0, 1, 2, 3], PairMLP())


def test_mts_integrator_runs(pxylene):
    prm, crd, system = pxylene
    atoms = openmmhybrid.selectAtoms(prm.topology, residueName="TMP")
    mixed = openmmhybrid.createMixedSystem(prm.topology, system, atoms, PairMLP(dtype=torch.float32), interpolate=True)
    g = mixed.getForce(mixed.getNumForces() - 1).getForceGroup()
    groups = openmmhybrid.mtsGroups(mixed, g, 4)
    assert groups[0] == (g, 1) and (0, 4) in groups
    integrator = openmm.MTSLangevinIntegrator(300 * unit.kelvin, 1 / unit.picosecond, 2 * unit.femtosecond, groups)
    c = openmm.Context(mixed, integrator, openmm.Platform.getPlatformByName("CPU"))
    c.setPositions(crd.positions)
    c.setPeriodicBoxVectors(*crd.boxVectors)
    c.setVelocitiesToTemperature(300 * unit.kelvin, 1)
    integrator.step(10)
    assert np.isfinite(energy(c))


def test_remove_constraints(pxylene):
    prm, crd, _ = pxylene
    atoms = openmmhybrid.selectAtoms(prm.topology, residueName="TMP")
    flexible = prm.createSystem(nonbondedMethod=app.PME, nonbondedCutoff=0.9 * unit.nanometer,
                                constraints=app.HBonds, flexibleConstraints=True)
    inside = sum(1 for i in range(flexible.getNumConstraints())
                 if flexible.getConstraintParameters(i)[0] in atoms)
    assert inside == 10  # p-xylene's ten C-H bonds
    mixed = openmmhybrid.createMixedSystem(prm.topology, flexible, atoms, PairMLP(), removeConstraints=True)
    assert mixed.getNumConstraints() == flexible.getNumConstraints() - inside
    # With interpolation, lambda = 0 needs an MM bond for every removed constraint.
    mixed = openmmhybrid.createMixedSystem(prm.topology, flexible, atoms, PairMLP(), removeConstraints=True,
                                           interpolate=True)
    assert mixed.getNumConstraints() == flexible.getNumConstraints() - inside
    rigid = prm.createSystem(nonbondedMethod=app.PME, nonbondedCutoff=0.9 * unit.nanometer, constraints=app.HBonds)
    with pytest.raises(ValueError, match="interpolate=True would remove.*no harmonic bond term.*flexibleConstraints=True"):
        openmmhybrid.createMixedSystem(prm.topology, rigid, atoms, PairMLP(), removeConstraints=True, interpolate=True)
    # Without it the model holds the bonds: allowed.
    mixed = openmmhybrid.createMixedSystem(prm.topology, rigid, atoms, PairMLP(), removeConstraints=True)
    assert mixed.getNumConstraints() == rigid.getNumConstraints() - inside


def _amber19_alanine_dipeptide():
    """Alanine dipeptide in water with amber19 (ff19SB, TIP3P) and constraints=AllBonds, as in
    openmm-ml's removeConstraints case; the ML region is the dipeptide."""
    folder = os.path.join(DATA, "alanine-dipeptide-water")
    prm = app.AmberPrmtopFile(os.path.join(folder, "alanine-dipeptide.prmtop"))
    crd = app.AmberInpcrdFile(os.path.join(folder, "alanine-dipeptide.inpcrd"))
    forcefield = app.ForceField("amber19-all.xml", "amber19/tip3p.xml")
    system = forcefield.createSystem(prm.topology, nonbondedMethod=app.PME, nonbondedCutoff=0.9 * unit.nanometer,
                                     constraints=app.AllBonds)
    system.setDefaultPeriodicBoxVectors(*crd.boxVectors)
    atoms = [a.index for a in prm.topology.atoms() if a.residue.name in ("ACE", "ALA", "NME")]
    return prm.topology, crd, system, atoms


def _pairs(system):
    return {tuple(sorted(system.getConstraintParameters(i)[:2])) for i in range(system.getNumConstraints())}


def test_remove_constraints_as_openmm_ml():
    """openmm-ml 1.8's removeConstraints=True on a System built with AllBonds: exactly the region's
    constraints go, none is added, and the model holds those bonds (interpolate=False)."""
    peer = pair_mlp_peer("openmmhybrid-test-constraints")
    topology, crd, system, atoms = _amber19_alanine_dipeptide()
    assert len(atoms) == 22
    before = _pairs(system)
    inside = {p for p in before if p[0] in atoms and p[1] in atoms}
    assert len(inside) == 21  # every bond of the dipeptide (22 atoms, no ring)
    assert len(before) - len(inside) == topology.getNumAtoms() - 22  # rigid waters: 3 constraints for 3 atoms
    theirs = peer.createMixedSystem(topology, system, atoms,
                                                                           removeConstraints=True, mlLongRange=False)
    ours = openmmhybrid.createMixedSystem(topology, system, atoms, BoxIgnoringPairMLP(), removeConstraints=True,
                                          usesDoublePrecision=True)
    assert _pairs(theirs) == before - inside
    assert _pairs(ours) == _pairs(theirs)
    assert ours.getNumConstraints() == system.getNumConstraints() - 21
    # The removed bonds have no MM term (AllBonds): the mixed System has no bond force for them.
    for force in ours.getForces():
        if isinstance(force, openmm.HarmonicBondForce):
            bonds = {tuple(sorted(force.getBondParameters(i)[:2])) for i in range(force.getNumBonds())}
            assert not bonds & inside
    context = openmm.Context(ours, openmm.VerletIntegrator(0.0005), openmm.Platform.getPlatformByName("CPU"))
    context.setPositions(crd.positions)
    energy = context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    assert np.isfinite(energy)


def test_remove_constraints_refused_with_interpolation():
    """With interpolate=True, lambda = 0 would leave a removed constraint with no restoring force."""
    topology, _, system, atoms = _amber19_alanine_dipeptide()
    with pytest.raises(ValueError, match=r"removeConstraints=True with interpolate=True would remove the constraint "
                                         r"between atoms \d+ and \d+, but the System has no harmonic bond term"):
        openmmhybrid.createMixedSystem(topology, system, atoms, PairMLP(), removeConstraints=True, interpolate=True)


# ---------------------------------------------------------------------------------------------
# Bad input

def test_bad_input(pxylene):
    prm, crd, system = pxylene
    atoms = openmmhybrid.selectAtoms(prm.topology, residueName="TMP")
    with pytest.raises(ValueError, match="empty"):
        openmmhybrid.createMixedSystem(prm.topology, system, [], PairMLP())
    with pytest.raises(ValueError, match="out of range"):
        openmmhybrid.createMixedSystem(prm.topology, system, atoms + [system.getNumParticles()], PairMLP())
    with pytest.raises(ValueError, match="more than once"):
        openmmhybrid.createMixedSystem(prm.topology, system, atoms + [atoms[0]], PairMLP())
    # A hydrogen of p-xylene left out of the region: a cut bond to a hydrogen cannot be capped,
    # and without link atoms the ML atom is constrained to an MM atom.
    hydrogen = next(a.index for a in prm.topology.atoms() if a.residue.name == "TMP" and a.element.symbol == "H")
    withoutHydrogen = [a for a in atoms if a != hydrogen]
    with pytest.raises(ValueError, match=f"- {hydrogen} .*ends on a hydrogen"):
        openmmhybrid.createMixedSystem(prm.topology, system, withoutHydrogen, PairMLP())
    with pytest.warns(UserWarning, match="cuts 1 covalent bond"), \
            pytest.raises(ValueError, match=f"is constrained to MM atom {hydrogen}"):
        openmmhybrid.createMixedSystem(prm.topology, system, withoutHydrogen, PairMLP(), linkAtoms=False)
    with pytest.raises(ValueError, match="not registered|No ML model is registered"):
        openmmhybrid.createMixedSystem(prm.topology, system, atoms, "nosuchmodel")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        openmmhybrid.createMixedSystem(prm.topology, system, atoms, "/nonexistent/model.pt")
    unsupported = openmm.XmlSerializer.clone(system)
    unsupported.addForce(openmm.CustomGBForce())
    with pytest.raises(NotImplementedError, match="CustomGBForce"):
        openmmhybrid.createMixedSystem(prm.topology, unsupported, atoms, PairMLP())
    with pytest.raises(ValueError, match="topology has"):
        openmmhybrid.createMixedSystem(app.Topology(), system, atoms, PairMLP())


def test_fractional_region_charge_warns(pxylene):
    prm, crd, system = pxylene
    atoms = openmmhybrid.selectAtoms(prm.topology, residueName="TMP")
    carbons = [a.index for a in prm.topology.atoms() if a.residue.name == "TMP" and a.element.symbol == "C"]
    heavy_only = openmm.XmlSerializer.clone(system)
    for i in range(heavy_only.getNumConstraints() - 1, -1, -1):
        a, b, _ = heavy_only.getConstraintParameters(i)
        if a in atoms or b in atoms:
            heavy_only.removeConstraint(i)
    # The carbons alone cut every C-H bond: without link atoms (a cut bond to a hydrogen cannot be
    # capped) the region's MM charges sum to a fraction.
    with pytest.warns(UserWarning, match="not an integer"), pytest.warns(UserWarning, match="cuts 10 covalent bond"):
        openmmhybrid.createMixedSystem(prm.topology, heavy_only, carbons, PairMLP(), linkAtoms=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        openmmhybrid.createMixedSystem(prm.topology, system, atoms, PairMLP())


def test_unsupported_element_with_ani1x():
    pytest.importorskip("torchani", reason="the 'ani1x' model reads its weights from torchani 2.2.4")
    prm, crd, system = amber("t4l-l99a-pxylene-water", "complex.prmtop", "complex.inpcrd")
    chloride = next(a.index for a in prm.topology.atoms() if a.residue.name in ("Cl-", "CL"))
    atoms = openmmhybrid.selectAtoms(prm.topology, residueName="TMP") + [chloride]
    with pytest.raises(ValueError, match="Cl"):
        openmmhybrid.createMixedSystem(prm.topology, system, atoms, "ani1x")


# ---------------------------------------------------------------------------------------------
# The peer: openmm-ml's mechanical embedding with the same model

class BoxIgnoringPairMLP(PairMLP):
    """PairMLP that accepts (and ignores) the box, for periodic MLForces built by hand."""

    def forward(self, positions: torch.Tensor, box: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.pair_energy(positions)



def pair_mlp_peer(name):
    """openmm-ml's MLPotential ``name`` running BoxIgnoringPairMLP through an MLForce (float64)."""
    return openmm_ml_peer(name, lambda topology, atoms: BoxIgnoringPairMLP())


def test_agrees_with_openmm_ml(pxylene, platform):
    """openmm-ml removes the region's MM terms (exclusions); we subtract them.  The reciprocal
    space is the same in both (the same charges), and an excluded pair's erf(alpha r)/r is what our
    plain 1/r takes from the direct-space erfc(alpha r)/r, so the two differ only by rounding:
    measured 7e-12 kJ/mol and 5e-13 kJ/mol/nm on Reference (float64), 6e-6 kJ/mol and 1e-3 kJ/mol/nm
    on CPU (float32), against the bounds of nonbonded_bounds."""
    peer = pair_mlp_peer("openmmhybrid-test-pairmlp")
    prm, crd, system = pxylene
    atoms = openmmhybrid.selectAtoms(prm.topology, residueName="TMP")
    theirs = peer.createMixedSystem(prm.topology, system, atoms,
                                                                         removeConstraints=False, mlLongRange=False)
    ours = openmmhybrid.createMixedSystem(prm.topology, system, atoms, BoxIgnoringPairMLP(), usesDoublePrecision=True)
    c_theirs, c_ours = context(theirs, crd, platform), context(ours, crd, platform)
    difference = energy(c_ours) - energy(c_theirs)
    f_ours, f_theirs = forces(c_ours), forces(c_theirs)
    e_bound, f_bound = nonbondedBounds(system, boxMatrix(crd), abs(energy(c_theirs)), np.abs(f_theirs).max(), platform)
    print(f"ours - openmm-ml: {difference:.2e} kJ/mol (bound {e_bound:.1e}), "
          f"max force difference {np.abs(f_ours - f_theirs).max():.2e} (bound {f_bound:.1e})")
    assert abs(difference) <= e_bound, difference
    assert np.abs(f_ours - f_theirs).max() <= f_bound


def test_ani1x_by_name(pxylene):
    """'ani1x' by name: the correction is ANI-1x on the region minus the same region MM energy a
    toy model's mixed System subtracts."""
    pytest.importorskip("torchani", reason="the 'ani1x' model reads its weights from torchani 2.2.4")
    from openmmhybrid.models.ani import ANI1x
    prm, crd, system = pxylene
    atoms = openmmhybrid.selectAtoms(prm.topology, residueName="TMP")
    pos = positions_nm(crd)
    cpu = openmm.Platform.getPlatformByName("CPU")
    toy = openmmhybrid.createMixedSystem(prm.topology, system, atoms, PairMLP(), usesDoublePrecision=True, correctionGroup=7)
    e_region = region_model_energy(PairMLP(), pos[atoms]) - energy(context(toy, crd, cpu), {7})
    ani = openmmhybrid.createMixedSystem(prm.topology, system, atoms, "ani1x", usesDoublePrecision=True, correctionGroup=7)
    elements = [a.element.atomic_number for a in prm.topology.atoms() if a.index in atoms]
    model = ANI1x(elements)
    e_ani = region_model_energy(model, pos[atoms])
    assert e_ani == pytest.approx(-815870, rel=1e-3)  # includes the atomic self energies (a coarse check of the value)
    # float64 throughout, kernel (TorchScript) against eager: the network energy (|E_ANI - self
    # energies|, through 4 layers of at most 384 inputs for 18 atoms times 8 members), the same
    # float64 self-energy sum added to it in both (a rounding at |E_ANI| each), and the toy
    # model's energy and region MM energy in e_region.
    e_toy = region_model_energy(PairMLP(), pos[atoms])
    tolerance = (bound(abs(e_ani - model.selfEnergy), torch.float64, networkTerms(384, 4, 18 * 8))
                 + bound(abs(e_ani), torch.float64, 2)
                 + bound(abs(e_toy) + abs(e_region), torch.float64, PairMLP.rounding_terms(len(atoms))))
    assert abs(energy(context(ani, crd, cpu), {7}) - (e_ani - e_region)) <= tolerance


# ---------------------------------------------------------------------------------------------
# CustomNonbondedForce details: tabulated functions, interaction groups (overlapping, asymmetric)

class Zero(torch.nn.Module):
    def forward(self, positions):
        return (positions * 0.0).sum()


def small_custom_system(expression, groups=()):
    rng = np.random.default_rng(5)
    pos = rng.uniform(0, 0.8, size=(6, 3))
    system = openmm.System()
    topology = app.Topology()
    residue = topology.addResidue("MOL", topology.addChain())
    for i in range(6):
        system.addParticle(12.0)
        topology.addAtom(f"C{i}", app.element.carbon, residue)
    force = openmm.CustomNonbondedForce(expression)
    force.addPerParticleParameter("a")
    force.addPerParticleParameter("b")
    force.addTabulatedFunction("tab", openmm.Continuous1DFunction(np.linspace(1.0, 3.0, 30) ** 2, 0.0, 2.0))
    for i in range(6):
        force.addParticle([0.5 + 0.3 * i, -0.2 * i])
    force.addExclusion(0, 4)
    for s1, s2 in groups:
        force.addInteractionGroup(s1, s2)
    system.addForce(force)
    return topology, system, pos


@pytest.mark.parametrize("groups", [(), (([0, 1], [2, 3, 5]), ([0], [2, 3]), ([2], [0, 1]))])
def test_custom_nonbonded_tabulated_and_interaction_groups(groups):
    """Zero model, so the mixed System at lambda = 1 is the MM System without the region's pairs:
    the same force with every region pair excluded (OpenMM's own bookkeeping)."""
    expression = "a1*tab(r) + b2*r; "  # asymmetric in particles 1 and 2, with a tabulated function
    topology, system, pos = small_custom_system(expression, groups)
    region = [0, 1, 2, 3]
    mixed = openmmhybrid.createMixedSystem(topology, system, region, Zero())
    reference = openmm.XmlSerializer.clone(system)
    force = reference.getForce(0)
    excluded = {tuple(sorted(force.getExclusionParticles(i))) for i in range(force.getNumExclusions())}
    for x, a in enumerate(region):
        for b in region[x + 1:]:
            if (a, b) not in excluded:
                force.addExclusion(a, b)
    platform = openmm.Platform.getPlatformByName("Reference")
    c_mixed = openmm.Context(mixed, openmm.VerletIntegrator(0.001), platform)
    c_ref = openmm.Context(reference, openmm.VerletIntegrator(0.001), platform)
    c_mm = openmm.Context(system, openmm.VerletIntegrator(0.001), platform)
    for c in (c_mixed, c_ref, c_mm):
        c.setPositions(pos)
    assert abs(energy(c_mm) - energy(c_ref)) > 0.1  # the region's pairs matter
    # float64, all pairs minus the region's against the other pairs: 15 pair terms, each at most
    # max|a| * 9 (the table's largest value) + max|b| * r; a pair force at most max|a| * 6 (the
    # table's steepest slope) + max|b|, 5 of them on each atom.
    a, b = (np.abs([force.getParticleParameters(i)[k] for i in range(6)]).max() for k in (0, 1))
    r = np.linalg.norm(pos[:, None] - pos[None], axis=2).max()
    e_bound = bound(15 * (a * 9 + b * r), torch.float64, 15)
    f_bound = bound(5 * (a * 6 + b), torch.float64, 5)
    assert abs(energy(c_mixed) - energy(c_ref)) <= e_bound
    assert np.abs(forces(c_mixed) - forces(c_ref)).max() <= f_bound


def test_reciprocal_space_group_and_existing_lambda(pxylene):
    prm, crd, system = pxylene
    system = openmm.XmlSerializer.clone(system)
    nb = next(f for f in system.getForces() if isinstance(f, openmm.NonbondedForce))
    nb.setReciprocalSpaceForceGroup(1)
    atoms = openmmhybrid.selectAtoms(prm.topology, residueName="TMP")
    mixed = openmmhybrid.createMixedSystem(prm.topology, system, atoms, PairMLP())
    group = mixed.getForce(mixed.getNumForces() - 1).getForceGroup()
    assert group == 2  # 0 (MM) and 1 (PME reciprocal space) are taken
    assert sorted(openmmhybrid.mtsGroups(mixed, group, 2)) == [(0, 2), (1, 2), (2, 1)]
    # A global parameter named lambda_interpolate in the MM System only clashes when interpolating.
    extra = openmm.CustomBondForce("0*lambda_interpolate*r")
    extra.addGlobalParameter("lambda_interpolate", 0.3)
    extra.addBond(atoms[0], atoms[1])
    system.addForce(extra)
    openmmhybrid.createMixedSystem(prm.topology, system, atoms, PairMLP())
    with pytest.raises(ValueError, match="already uses the global parameter 'lambda_interpolate'"):
        openmmhybrid.createMixedSystem(prm.topology, system, atoms, PairMLP(), interpolate=True)


def test_model_registry_and_torchscript_file(pxylene, tmp_path, monkeypatch):
    prm, crd, system = pxylene
    atoms = openmmhybrid.selectAtoms(prm.topology, residueName="TMP")
    calls = []

    def factory(topology, region, scale=1.0):
        calls.append((len(region), scale))
        return PairMLP()

    openmmhybrid.models.registerModel("Toy-Pair", factory)
    assert "toy-pair" in openmmhybrid.models.availableModels()
    by_name = openmmhybrid.createMixedSystem(prm.topology, system, atoms, "toy-pair", modelArgs={"scale": 2.0},
                                             usesDoublePrecision=True, correctionGroup=4)
    assert calls == [(18, 2.0)]
    path = tmp_path / "pair.pt"
    torch.jit.save(torch.jit.script(PairMLP()), str(path))
    by_file = openmmhybrid.createMixedSystem(prm.topology, system, atoms, str(path), usesDoublePrecision=True,
                                             correctionGroup=4)
    cpu = openmm.Platform.getPlatformByName("CPU")
    # The same TorchScript graph, once through a file, on the same inputs: bitwise equal.
    assert energy(context(by_file, crd, cpu), {4}) == energy(context(by_name, crd, cpu), {4})

    # A backend in another package, found through the 'openmmhybrid.models' entry point group.
    class EntryPoint:
        name = "from-entry-point"

        def load(self):
            return factory

    monkeypatch.setattr(openmmhybrid.models, "_entry_points_loaded", False)
    monkeypatch.setattr(openmmhybrid.models.importlib.metadata, "entry_points",
                        lambda group: [EntryPoint()] if group == "openmmhybrid.models" else [])
    openmmhybrid.models.createModel("from-entry-point", prm.topology, atoms)
    assert len(calls) == 2


def test_bonded_classes_cancel_inside_the_region():
    """CMAP, RB and custom bonded terms wholly inside the region are subtracted exactly: with a
    zero model the mixed System's energy and forces are those of the terms that leave the region."""
    rng = np.random.default_rng(11)
    n = 8
    pos = rng.uniform(0, 0.6, size=(n, 3))
    system = openmm.System()
    topology = app.Topology()
    residue = topology.addResidue("MOL", topology.addChain())
    for i in range(n):
        system.addParticle(12.0)
        topology.addAtom(f"C{i}", app.element.carbon, residue)
    cmap = openmm.CMAPTorsionForce()
    grid = 12
    phi, psi = np.meshgrid(np.arange(grid) * 2 * np.pi / grid, np.arange(grid) * 2 * np.pi / grid, indexing="ij")
    cmap.addMap(grid, (3 * np.cos(phi) * np.sin(2 * psi) + np.cos(psi)).T.ravel().tolist())
    cmap.addTorsion(0, 0, 1, 2, 3, 1, 2, 3, 4)
    cmap.addTorsion(0, 3, 4, 5, 6, 4, 5, 6, 7)
    rb = openmm.RBTorsionForce()
    rb.addTorsion(0, 1, 2, 3, 1.0, -2.0, 0.5, 0.3, -0.1, 0.05)
    rb.addTorsion(4, 5, 6, 7, 0.2, 1.0, -0.5, 0.3, 0.1, 0.0)
    angle = openmm.CustomAngleForce("k*(theta-t0)^2; t0=1.9")
    angle.addPerAngleParameter("k")
    angle.addAngle(0, 1, 2, [40.0])
    angle.addAngle(3, 4, 5, [30.0])
    compound = openmm.CustomCompoundBondForce(3, "w*f(distance(p1,p2)) + angle(p1,p2,p3)")
    compound.addPerBondParameter("w")
    compound.addTabulatedFunction("f", openmm.Continuous1DFunction(np.linspace(0, 1, 20) ** 3, 0.0, 2.0))
    compound.addBond([0, 1, 2], [2.0])
    compound.addBond([2, 3, 4], [1.5])
    for force in (cmap, rb, angle, compound):
        system.addForce(force)
    platform = openmm.Platform.getPlatformByName("Reference")

    def evaluate(s, groups=-1):
        c = openmm.Context(s, openmm.VerletIntegrator(0.001), platform)
        c.setPositions(pos)
        return energy(c, groups), forces(c, groups)

    # float64: each class against its copy as a custom force (another expression, or the same code);
    # the scales are the four forces' energies and largest forces, 8 terms in all.
    separate = openmm.XmlSerializer.clone(system)
    for i in range(separate.getNumForces()):
        separate.getForce(i).setForceGroup(i)
    parts = [evaluate(separate, {i}) for i in range(separate.getNumForces())]
    e_bound = bound(sum(abs(e) for e, _ in parts), torch.float64, 8)
    f_bound = bound(sum(np.abs(f).max() for _, f in parts), torch.float64, 8)
    # Region = everything: nothing is left.
    e, f = evaluate(openmmhybrid.createMixedSystem(topology, system, list(range(n)), Zero()))
    assert abs(e) <= e_bound and np.abs(f).max() <= f_bound
    # Region = atoms 0-3: the terms within it cancel; the rest equals a System of only those.
    e, f = evaluate(openmmhybrid.createMixedSystem(topology, system, [0, 1, 2, 3], Zero(), interpolate=True))
    outside = openmm.XmlSerializer.clone(system)
    outside.getForce(0).setTorsionParameters(0, 0, 0, 1, 2, 3, 1, 2, 3, 4)  # keep: it reaches atom 4
    outside.getForce(1).setTorsionParameters(0, 0, 1, 2, 3, 0, 0, 0, 0, 0, 0)
    outside.getForce(2).setAngleParameters(0, 0, 1, 2, [0.0])
    outside.getForce(3).setBondParameters(0, [0, 1, 2], [0.0])
    e_outside, f_outside = evaluate(outside)
    e_compound_angle = float(np.arccos(np.dot(pos[0] - pos[1], pos[2] - pos[1]) /
                                       (np.linalg.norm(pos[0] - pos[1]) * np.linalg.norm(pos[2] - pos[1]))))
    assert abs(e - (e_outside - e_compound_angle)) <= e_bound
