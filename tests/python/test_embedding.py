"""Electrostatic embedding: the environment step in MLForce, the embedding terms, and
createMixedSystem(..., embedding='electrostatic').

Independent references: NumPy brute-force sums over every MM charge at its true minimum image
(searched over all 27 neighbouring images), a NumPy self-consistent iteration for the induced
dipoles, OpenMM's own CustomNonbondedForce, and finite differences of the energy.
"""
import itertools
import math

import numpy as np
import openmm
import openmm.unit as unit
import pytest
import torch

import openmmhybrid
from openmmhybrid import MLForce
from openmmhybrid.embedding import (COULOMB_CONSTANT, VDS98_DAMPING, VDS98_POLARIZABILITIES, EmbeddedModel,
                                    FixedChargeCoupling, TholePolarization, systemCharges)

from conftest import amber
from models import PairMLP

BOHR3_NM3 = 0.0529177210903 ** 3


# ----------------------------------------------------------------------------------------------
# Independent NumPy references
# ----------------------------------------------------------------------------------------------

def min_image(d, box):
    """The true minimum image of displacement(s) d [..., 3]: searched over all 27 neighbouring cells
    after wrapping to the reduced box (works for any triclinic box, no OpenMM convention used)."""
    box = np.asarray(box, dtype=float)
    frac = d @ np.linalg.inv(box)
    d = (frac - np.round(frac)) @ box
    best = d.copy()
    bestR = np.linalg.norm(d, axis=-1)
    for shift in itertools.product((-1, 0, 1), repeat=3):
        trial = d + np.asarray(shift, dtype=float) @ box
        r = np.linalg.norm(trial, axis=-1)
        better = r < bestR
        best[better] = trial[better]
        bestR = np.minimum(bestR, r)
    return best


SOFTMIN = 0.02  # nm, the soft minimum's smoothing length in openmmhybrid.embedding


def weight(r, cutoff, switchDistance):
    """The switch of one MM atom from its distances r [n] to the ML atoms (see FixedChargeCoupling)."""
    if switchDistance is None:
        return float(r.min() < cutoff)
    end = cutoff - SOFTMIN * math.log(len(r))
    R = -SOFTMIN * math.log(np.sum(np.exp(-(r - r.min()) / SOFTMIN))) + r.min()
    if R >= end:
        return 0.0
    x = min(1.0, max(0.0, (R - switchDistance) / (end - switchDistance)))
    return 1 - 10 * x**3 + 15 * x**4 - 6 * x**5


def environment(pos, mlAtoms, charges, cutoff, box):
    """{MM atom: displacement from each ML atom [n, 3]} for every charged atom within the cutoff of
    any ML atom."""
    ml = set(mlAtoms)
    out = {}
    for j in range(len(pos)):
        if j in ml or charges[j] == 0:
            continue
        d = pos[mlAtoms] - pos[j]
        if box is not None:
            d = min_image(d, box)
        if np.linalg.norm(d, axis=1).min() < cutoff:
            out[j] = d
    return out


def coupling_reference(pos, mlAtoms, mlCharges, charges, cutoff, switchDistance, box):
    energy = 0.0
    for j, d in environment(pos, mlAtoms, charges, cutoff, box).items():
        r = np.linalg.norm(d, axis=1)
        energy += COULOMB_CONSTANT * charges[j] * weight(r, cutoff, switchDistance) * np.sum(np.asarray(mlCharges) / r)
    return energy


def polarization_reference(pos, mlAtoms, atomicNumbers, charges, cutoff, switchDistance, box):
    """Induced dipoles by self-consistent iteration (not a linear solve) in the damped, switched
    MM field."""
    alpha = np.array([VDS98_POLARIZABILITIES[z] * BOHR3_NM3 for z in atomicNumbers])
    n = len(mlAtoms)
    env = environment(pos, mlAtoms, charges, cutoff, box)
    field = np.zeros((n, 3))
    for j, d in env.items():
        r = np.linalg.norm(d, axis=1)
        v = VDS98_DAMPING * r / alpha ** (1 / 3)
        damp = 1 - (1 + v + v * v / 2) * np.exp(-v)
        field += (charges[j] * damp * weight(r, cutoff, switchDistance) / r**3)[:, None] * d
    region = pos[mlAtoms]
    T = np.zeros((n, n, 3, 3))
    for i in range(n):
        for j in range(n):
            if i == j:
                continue
            d = region[i] - region[j]
            r = np.linalg.norm(d)
            v = VDS98_DAMPING * r / (alpha[i] * alpha[j]) ** (1 / 6)
            l3 = 1 - (1 + v + v * v / 2) * math.exp(-v)
            l5 = l3 - v**3 / 6 * math.exp(-v)
            T[i, j] = 3 * l5 * np.outer(d, d) / r**5 - l3 * np.eye(3) / r**3
    mu = alpha[:, None] * field
    for _ in range(2000):
        new = alpha[:, None] * (field + np.einsum("ijab,jb->ia", T, mu))
        if np.abs(new - mu).max() < 1e-15:
            break
        mu = 0.5 * mu + 0.5 * new
    else:
        raise AssertionError("the induced dipoles did not converge")
    return -0.5 * COULOMB_CONSTANT * np.sum(mu * field)


# ----------------------------------------------------------------------------------------------
# Fixtures
# ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pxylene():
    prm, crd, system = amber("pxylene-water", "pxylene_water.prmtop", "pxylene_water.inpcrd")
    ml = [a.index for a in prm.topology.atoms() if a.residue.name == "TMP"]
    positions = np.array(crd.positions.value_in_unit(unit.nanometer))
    box = np.array([v.value_in_unit(unit.nanometer) for v in crd.boxVectors])
    return prm.topology, system, ml, positions, box


class Zero(torch.nn.Module):
    def forward(self, positions):
        return (positions * 0.0).sum()


def bare_system(system, force, box=None):
    """A System with the same particles and only ``force``."""
    out = openmm.System()
    for i in range(system.getNumParticles()):
        out.addParticle(system.getParticleMass(i))
    if box is not None:
        out.setDefaultPeriodicBoxVectors(*box)
    out.addForce(force)
    return out


def evaluate(system, positions, platform, box=None, groups=-1, parameters=None):
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), platform)
    if box is not None:
        context.setPeriodicBoxVectors(*box)
    context.setPositions(positions)
    for name, value in (parameters or {}).items():
        context.setParameter(name, value)
    state = context.getState(getEnergy=True, getForces=True, groups=groups)
    return (state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole),
            state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer), context)


def embedding_force(system, ml, terms, cutoff=1.0, periodic=True, double=True, charges=None):
    model = EmbeddedModel(Zero(), terms)
    force = MLForce(model if periodic else _NoBox(model), ml, usesPeriodicBoundaryConditions=periodic,
                    usesDoublePrecision=double)
    force.setEmbedding(cutoff, systemCharges(system) if charges is None else charges)
    return force


class _NoBox(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, positions, mm_positions, mm_charges, mm_mask):
        return self.model(positions, torch.zeros((3, 3), dtype=positions.dtype), mm_positions, mm_charges, mm_mask)


# ----------------------------------------------------------------------------------------------
# The environment step and the coupling
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("switchDistance", [0.8, None])
def test_coupling_energy_matches_brute_force(pxylene, platform, switchDistance):
    topology, system, ml, pos, box = pxylene
    charges = systemCharges(system)
    mlCharges = [charges[i] for i in ml]
    force = embedding_force(system, ml, [FixedChargeCoupling(mlCharges, 1.0, switchDistance)])
    energy, _, context = evaluate(bare_system(system, force, box), pos, platform)
    expected = coupling_reference(pos, ml, mlCharges, charges, 1.0, switchDistance, box)
    assert energy == pytest.approx(expected, rel=1e-9, abs=1e-9)
    assert abs(expected) > 1.0  # a real interaction, not a vacuous comparison
    assert force.getNumEnvironmentAtoms(context) == len(environment(pos, ml, charges, 1.0, box))


def test_float32_inputs_agree_with_double(pxylene, platform):
    topology, system, ml, pos, box = pxylene
    charges = systemCharges(system)
    term = FixedChargeCoupling([charges[i] for i in ml], 1.0)
    e64, f64, _ = evaluate(bare_system(system, embedding_force(system, ml, [term]), box), pos, platform)
    e32, f32, _ = evaluate(bare_system(system, embedding_force(system, ml, [term], double=False), box), pos, platform)
    assert e32 == pytest.approx(e64, rel=1e-5)
    assert np.abs(f32 - f64).max() < 1e-3 * np.abs(f64).max()


def test_hard_cutoff_coupling_equals_openmm_coulomb(pxylene, platform):
    """Without a switch the coupling is the plain Coulomb interaction of the region's MM charges with
    every charge in the environment: an OpenMM CustomBondForce over those pairs (minimum image)
    computes the same."""
    topology, system, ml, pos, box = pxylene
    charges = systemCharges(system)
    force = embedding_force(system, ml, [FixedChargeCoupling([charges[i] for i in ml], 1.0, None)])
    energy, _, _ = evaluate(bare_system(system, force, box), pos, platform)
    coulomb = openmm.CustomBondForce(f"{COULOMB_CONSTANT!r}*chargeProd/r")
    coulomb.addPerBondParameter("chargeProd")
    coulomb.setUsesPeriodicBoundaryConditions(True)
    for j in environment(pos, ml, charges, 1.0, box):
        for i in ml:
            coulomb.addBond(i, j, [charges[i] * charges[j]])
    reference, _, _ = evaluate(bare_system(system, coulomb, box), pos, openmm.Platform.getPlatformByName("Reference"))
    assert energy == pytest.approx(reference, rel=1e-9)
    assert coulomb.getNumBonds() > 10000


@pytest.mark.parametrize("case", ["small region", "large region (cell grid)", "non-periodic"])
def test_triclinic_box_environment_is_the_minimum_image(platform, case):
    """Random charges in a skewed box: the environment and the energy match a brute force over all
    27 neighbouring images.  The large region spans several grid cells of the search."""
    rng = np.random.default_rng(7)
    scale, n, spread, cutoff = (1.0, 6, 0.15, 1.0) if case != "large region (cell grid)" else (2.0, 60, 0.6, 0.7)
    box = scale * np.array([[4.0, 0, 0], [1.3, 3.8, 0], [-1.1, 1.2, 3.9]])
    m = int(1500 * scale**3)
    region = scale * np.array([2.0, 1.5, 1.0]) + spread * rng.standard_normal((n, 3))
    frac = rng.random((m, 3))
    others = frac @ box
    pos = np.vstack([region, others])
    charges = list(rng.uniform(-0.8, 0.8, n + m))
    charges[n + 5] = 0.0
    ml = list(range(n))
    system = openmm.System()
    for _ in range(n + m):
        system.addParticle(1.0)
    periodic = case != "non-periodic"
    if periodic:
        system.setDefaultPeriodicBoxVectors(*[openmm.Vec3(*v) for v in box])
    mlCharges = charges[:n]
    model = EmbeddedModel(Zero(), [FixedChargeCoupling(mlCharges, cutoff, 0.7 * cutoff)])
    force = MLForce(model if periodic else _NoBox(model), ml, usesPeriodicBoundaryConditions=periodic,
                    usesDoublePrecision=True)
    force.setEmbedding(cutoff, charges)
    system.addForce(force)
    energy, forces, context = evaluate(system, pos, platform)
    expected = coupling_reference(pos, ml, mlCharges, charges, cutoff, 0.7 * cutoff, box if periodic else None)
    assert energy == pytest.approx(expected, rel=1e-9)
    count = len(environment(pos, ml, charges, cutoff, box if periodic else None))
    assert force.getNumEnvironmentAtoms(context) == count > 50


def test_environment_does_not_depend_on_the_thread_count(pxylene):
    topology, system, ml, pos, box = pxylene
    charges = systemCharges(system)
    cpu = openmm.Platform.getPlatformByName("CPU")
    results = []
    for threads in ("1", "2", "3"):
        force = embedding_force(system, ml, [FixedChargeCoupling([charges[i] for i in ml], 1.0)])
        context = openmm.Context(bare_system(system, force, box), openmm.VerletIntegrator(0.001), cpu, {"Threads": threads})
        context.setPositions(pos)
        state = context.getState(getEnergy=True, getForces=True)
        results.append((state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole),
                        state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer)))
    for energy, forces in results[1:]:
        assert energy == results[0][0]
        assert np.array_equal(forces, results[0][1])


def test_forces_on_ml_and_mm_atoms_match_finite_differences(pxylene, platform):
    topology, system, ml, pos, box = pxylene
    charges = systemCharges(system)
    atomicNumbers = [a.element.atomic_number for a in topology.atoms() if a.index in ml]
    terms = [FixedChargeCoupling([charges[i] for i in ml], 1.0, 0.7), TholePolarization(atomicNumbers, 1.0, 0.7)]
    sys_ = bare_system(system, embedding_force(system, ml, terms), box)
    energy, forces, context = evaluate(sys_, pos, platform)
    # An ML atom, a near MM atom, and an MM atom in the switching shell.
    env = environment(pos, ml, charges, 1.0, box)
    rmin = {j: np.linalg.norm(d, axis=1).min() for j, d in env.items()}
    near = min(rmin, key=rmin.get)
    shell = next(j for j, r in sorted(rmin.items()) if 0.75 < r < 0.95)
    far = next(j for j in range(len(pos)) if j not in env and j not in ml)
    assert np.all(forces[far] == 0)
    h = 1e-5
    for atom in (ml[0], ml[7], near, shell):
        for k in range(3):
            shifted = []
            for sign in (1, -1):
                p = pos.copy()
                p[atom, k] += sign * h
                context.setPositions(p)
                shifted.append(context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole))
            numeric = -(shifted[0] - shifted[1]) / (2 * h)
            assert forces[atom, k] == pytest.approx(numeric, rel=1e-5, abs=1e-5), (atom, k)
    assert np.abs(forces[near]).max() > 1.0


def test_polarization_energy_matches_self_consistent_numpy(pxylene, platform):
    topology, system, ml, pos, box = pxylene
    charges = systemCharges(system)
    atomicNumbers = [a.element.atomic_number for a in topology.atoms() if a.index in ml]
    force = embedding_force(system, ml, [TholePolarization(atomicNumbers, 1.0, 0.8)])
    energy, _, _ = evaluate(bare_system(system, force, box), pos, platform)
    expected = polarization_reference(pos, ml, atomicNumbers, charges, 1.0, 0.8, box)
    assert energy == pytest.approx(expected, rel=1e-6)
    assert expected < -1.0  # induction is attractive and not negligible in water


def vacuum_with_ion(ionCharge=1.0):
    """p-xylene (18 ML atoms, its MM charges) plus one ion, non-periodic."""
    prm, crd, system = amber("pxylene-water", "pxylene_water.prmtop", "pxylene_water.inpcrd")
    ml = [a.index for a in prm.topology.atoms() if a.residue.name == "TMP"]
    pos = np.array(crd.positions.value_in_unit(unit.nanometer))[ml]
    pos -= pos.mean(0)
    charges = [systemCharges(system)[i] for i in ml] + [ionCharge]
    numbers = [a.element.atomic_number for a in prm.topology.atoms() if a.index in ml]
    out = openmm.System()
    for _ in range(len(ml) + 1):
        out.addParticle(12.0)
    return out, list(range(len(ml))), pos, charges, numbers


def test_energy_is_continuous_as_an_ion_crosses_the_cutoff():
    system, ml, region, charges, numbers = vacuum_with_ion()
    # A charged region (+0.9 e), so that the ion's interaction at the cutoff is large (about
    # 125 kJ/mol): a neutral ligand sees an ion at 1 nm only through its small multipoles.
    mlCharges = [q + 0.05 for q in charges[:len(ml)]]
    charges = mlCharges + charges[len(ml):]
    reference = openmm.Platform.getPlatformByName("Reference")

    def scan(switchDistance):
        terms = [FixedChargeCoupling(mlCharges, 1.0, switchDistance), TholePolarization(numbers, 1.0, switchDistance)]
        force = MLForce(_NoBox(EmbeddedModel(Zero(), terms)), ml, usesDoublePrecision=True)
        force.setEmbedding(1.0, charges)
        sys_ = openmm.System()
        for i in range(system.getNumParticles()):
            sys_.addParticle(12.0)
        sys_.addForce(force)
        context = openmm.Context(sys_, openmm.VerletIntegrator(0.001), reference)
        # The ion moves along x past the atom with the largest x: it leaves the cutoff at x = xmax + 1.
        xmax = region[:, 0].max()
        energies = []
        for x in np.linspace(xmax + 0.85, xmax + 1.05, 401):
            context.setPositions(np.vstack([region, [[x, region[np.argmax(region[:, 0]), 1],
                                                      region[np.argmax(region[:, 0]), 2]]]]))
            energies.append(context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole))
        return np.array(energies)

    # A jump shows in the second difference at the same size; a smooth curve has |E''| h^2 there
    # (h = 0.5 pm): below 0.01 kJ/mol here, against a jump of about 125 kJ/mol without the switch.
    switched = scan(0.8)
    assert np.abs(np.diff(switched, 2)).max() < 0.05
    assert switched[-1] == 0.0 and abs(switched[0]) > 10.0  # it does reach zero, from a large energy
    hard = scan(None)
    assert np.abs(np.diff(hard, 2)).max() > 50.0  # the unswitched coupling jumps, so the test can tell them apart


def test_invariance_under_rotation_and_translation():
    system, ml, region, charges, numbers = vacuum_with_ion(-1.0)
    rng = np.random.default_rng(3)
    ions = region.mean(0) + np.array([[0.55, 0.2, -0.1]])
    pos = np.vstack([region, ions])
    terms = [FixedChargeCoupling(charges[:len(ml)], 1.0), TholePolarization(numbers, 1.0)]
    force = MLForce(_NoBox(EmbeddedModel(PairMLP(), terms)), ml, usesDoublePrecision=True)
    force.setEmbedding(1.0, charges)
    system.addForce(force)
    reference = openmm.Platform.getPlatformByName("Reference")
    energy, forces, _ = evaluate(system, pos, reference)
    q, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    moved = pos @ q.T + np.array([1.7, -3.2, 0.4])
    energy2, forces2, _ = evaluate(system, moved, reference)
    assert energy2 == pytest.approx(energy, rel=1e-10)
    assert np.abs(forces2 - forces @ q.T).max() < 1e-8 * np.abs(forces).max()


def test_padding_is_distinct_and_far_outside_the_cutoff(pxylene, platform):
    """A probe model returns, as its 'energy', the smallest distance from a padding entry to any ML
    atom plus 1000 per coincident padding pair plus 100 per padding entry with a charge or a true mask."""

    class Probe(torch.nn.Module):
        def forward(self, positions, box, mm_positions, mm_charges, mm_mask):
            pad = ~mm_mask
            p = mm_positions[pad]
            dmin = torch.cdist(positions, p).min()
            pairs = torch.cdist(p, p) + torch.eye(p.shape[0], dtype=p.dtype) * 1e9
            coincident = (pairs < 1e-6).sum()
            bad = (mm_charges[pad] != 0).sum()
            return dmin + 1000.0 * coincident + 100.0 * bad

    topology, system, ml, pos, box = pxylene
    force = MLForce(Probe(), ml, usesPeriodicBoundaryConditions=True, usesDoublePrecision=True)
    force.setEmbedding(1.0, systemCharges(system))
    force.setEmbeddingCapacity(2000)
    energy, _, context = evaluate(bare_system(system, force, box), pos, platform)
    assert force.getEnvironmentCapacity(context) == 2000 > force.getNumEnvironmentAtoms(context)
    assert 2.0 < energy < 100.0


def test_capacity_grows_and_says_so_once(pxylene, platform, capfd):
    topology, system, ml, pos, box = pxylene
    charges = systemCharges(system)
    term = FixedChargeCoupling([charges[i] for i in ml], 1.0)
    auto = embedding_force(system, ml, [term])
    expected, expectedForces, context = evaluate(bare_system(system, auto, box), pos, platform)
    count = auto.getNumEnvironmentAtoms(context)
    assert auto.getEnvironmentCapacity(context) >= count
    small = embedding_force(system, ml, [term])
    small.setEmbeddingCapacity(16)
    capfd.readouterr()
    energy, forces, context = evaluate(bare_system(system, small, box), pos, platform)
    for _ in range(3):
        context.getState(getEnergy=True)
    message = capfd.readouterr().err
    assert message.count("growing it to") == 1 and "capacity of 16" in message
    assert small.getEnvironmentCapacity(context) >= count
    assert energy == pytest.approx(expected, rel=1e-12)
    assert np.abs(forces - expectedForces).max() < 1e-9


def test_box_too_small_for_cutoff_and_region(pxylene, platform):
    topology, system, ml, pos, box = pxylene
    force = embedding_force(system, ml, [FixedChargeCoupling([0.0] * len(ml), 1.4)], cutoff=1.4)
    with pytest.raises(openmm.OpenMMException, match="smaller than the shortest box width"):
        evaluate(bare_system(system, force, box), pos, platform)


def test_embedding_bad_input(pxylene):
    topology, system, ml, pos, box = pxylene
    reference = openmm.Platform.getPlatformByName("Reference")
    force = MLForce(EmbeddedModel(Zero(), []), ml, usesPeriodicBoundaryConditions=True)
    with pytest.raises(openmm.OpenMMException, match="cutoff must be a positive"):
        force.setEmbedding(0.0, systemCharges(system))
    with pytest.raises(openmm.OpenMMException, match="cutoff must be a positive"):
        force.setEmbedding(-1.0, systemCharges(system))
    with pytest.raises(ValueError, match="positive"):
        FixedChargeCoupling([0.0], 0.0)
    # Charges of the wrong length.
    force.setEmbedding(1.0, [0.1] * 10)
    with pytest.raises(openmm.OpenMMException, match="10 charges, but the System has"):
        evaluate(bare_system(system, force, box), pos, reference)
    # A model without the environment arguments.
    plain = MLForce(PairMLP(), ml, usesPeriodicBoundaryConditions=True)
    plain.setEmbedding(1.0, systemCharges(system))
    with pytest.raises(openmm.OpenMMException, match="mm_positions, mm_charges, mm_mask"):
        evaluate(bare_system(system, plain, box), pos, reference)
    # Model-provided forces cannot carry the MM forces.
    withForces = embedding_force(system, ml, [])
    withForces.setOutputsForces(True)
    with pytest.raises(openmm.OpenMMException, match="setOutputsForces"):
        evaluate(bare_system(system, withForces, box), pos, reference)
    # An element without a polarizability.
    with pytest.raises(ValueError, match="atomic number 26.*van Duijnen-Swart"):
        TholePolarization([6, 26], 1.0)


def test_serialization_round_trip(pxylene, platform):
    topology, system, ml, pos, box = pxylene
    charges = systemCharges(system)
    force = embedding_force(system, ml, [FixedChargeCoupling([charges[i] for i in ml], 1.0)], cutoff=1.0)
    force.setEmbeddingCapacity(1234)
    sys_ = bare_system(system, force, box)
    copy = openmm.XmlSerializer.deserialize(openmm.XmlSerializer.serialize(sys_))
    restored = MLForce.cast(copy.getForce(0))
    assert restored.usesEmbedding()
    assert restored.getEmbeddingCutoff() == 1.0 * unit.nanometer
    assert restored.getEmbeddingCharges() == force.getEmbeddingCharges()  # bit for bit
    assert restored.getEmbeddingCapacity() == 1234
    e1, f1, _ = evaluate(sys_, pos, platform)
    e2, f2, _ = evaluate(copy, pos, platform)
    assert e1 == e2 and np.array_equal(f1, f2)


# ----------------------------------------------------------------------------------------------
# createMixedSystem(..., embedding='electrostatic')
# ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def mixed_pair(pxylene):
    topology, system, ml, pos, box = pxylene
    model = PairMLP()
    interp = openmmhybrid.createMixedSystem(topology, system, ml, model, interpolate=True, embedding="electrostatic",
                                            usesDoublePrecision=True)
    direct = openmmhybrid.createMixedSystem(topology, system, ml, model, embedding="electrostatic",
                                            usesDoublePrecision=True)
    return interp, direct


def test_lambda_zero_is_exactly_mm(pxylene, mixed_pair, platform):
    topology, system, ml, pos, box = pxylene
    interp, _ = mixed_pair
    e0, f0, _ = evaluate(system, pos, platform)
    e, f, _ = evaluate(interp, pos, platform, parameters={openmmhybrid.LAMBDA_PARAMETER: 0.0})
    if platform.getName() == "Reference":
        assert e == e0
        assert np.array_equal(f, f0)
    else:
        # The CPU platform sums nonbonded terms in float32 across threads in an order that differs
        # between Contexts, even of the same System.
        assert e == pytest.approx(e0, rel=1e-7)
        assert np.abs(f - f0).max() < 1e-5 * np.abs(f0).max()


def test_lambda_one_equals_the_embedded_system(pxylene, mixed_pair, platform):
    topology, system, ml, pos, box = pxylene
    interp, direct = mixed_pair
    e1, f1, _ = evaluate(direct, pos, platform)
    e, f, _ = evaluate(interp, pos, platform, parameters={openmmhybrid.LAMBDA_PARAMETER: 1.0})
    # Reference: double-precision rounding of two extra PME sums; CPU: its float32 forces.
    tolerance = 1e-6 if platform.getName() == "Reference" else 1e-2
    assert e == pytest.approx(e1, abs=tolerance * 10)
    assert np.abs(f - f1).max() < tolerance * 10


def test_embedded_system_removes_the_region_charges(pxylene, mixed_pair):
    """At lambda = 1 the MM electrostatics are those of the System with the region's charges zeroed,
    and the ML group holds the model plus the embedding terms."""
    topology, system, ml, pos, box = pxylene
    _, direct = mixed_pair
    charges = systemCharges(system)
    nonbonded = next(f for f in direct.getForces() if isinstance(f, openmm.NonbondedForce))
    assert all(nonbonded.getParticleParameters(i)[0].value_in_unit(unit.elementary_charge) == 0 for i in ml)
    assert all(nonbonded.getParticleParameters(i)[0].value_in_unit(unit.elementary_charge) == charges[i]
               for i in range(len(charges)) if i not in ml)
    for i in range(nonbonded.getNumExceptions()):
        a, b, chargeProd, _, _ = nonbonded.getExceptionParameters(i)
        if a in ml or b in ml:
            assert chargeProd.value_in_unit(unit.elementary_charge**2) == 0
    ml_force = next(MLForce.cast(f) for f in direct.getForces() if MLForce.isinstance(f))
    assert ml_force.usesEmbedding() and ml_force.getEmbeddingCharges() == charges
    reference = openmm.Platform.getPlatformByName("Reference")
    group = ml_force.getForceGroup()
    e, _, context = evaluate(direct, pos, reference, groups={group})
    model = PairMLP()
    x = torch.tensor(pos[ml], dtype=torch.float64)
    atomicNumbers = [a.element.atomic_number for a in topology.atoms() if a.index in ml]
    coupling = coupling_reference(pos, ml, [charges[i] for i in ml], charges, 1.0, 0.8, box)
    polarization = polarization_reference(pos, ml, atomicNumbers, charges, 1.0, 0.8, box)
    # The correction group also holds minus the region's internal MM bonded and LJ energy.
    mm_only = openmm.XmlSerializer.clone(direct)
    for i in reversed(range(mm_only.getNumForces())):
        if MLForce.isinstance(mm_only.getForce(i)):
            mm_only.removeForce(i)
    e_corr_mm, _, _ = evaluate(mm_only, pos, reference, groups={group})
    assert e == pytest.approx(float(model(x).detach()) + coupling + polarization + e_corr_mm, rel=1e-6)


def test_interpolation_path_is_linear(pxylene, mixed_pair):
    topology, system, ml, pos, box = pxylene
    interp, _ = mixed_pair
    reference = openmm.Platform.getPlatformByName("Reference")
    energies = [evaluate(interp, pos, reference, parameters={openmmhybrid.LAMBDA_PARAMETER: lam})[0]
                for lam in (0.0, 0.5, 1.0)]
    assert energies[1] == pytest.approx(0.5 * (energies[0] + energies[2]), abs=1e-6)
    _, _, context = evaluate(interp, pos, reference, parameters={openmmhybrid.LAMBDA_PARAMETER: 0.3})
    predicted = openmmhybrid.interpolationEnergies(context, [0.0, 1.0]).value_in_unit(unit.kilojoule_per_mole)
    assert predicted[0] == pytest.approx(energies[0], abs=1e-6)
    assert predicted[1] == pytest.approx(energies[2], abs=1e-6)


def test_mixed_embedded_serialization_round_trip(pxylene, mixed_pair):
    topology, system, ml, pos, box = pxylene
    interp, _ = mixed_pair
    copy = openmm.XmlSerializer.deserialize(openmm.XmlSerializer.serialize(interp))
    reference = openmm.Platform.getPlatformByName("Reference")
    for lam in (0.0, 0.6):
        e1, f1, _ = evaluate(interp, pos, reference, parameters={openmmhybrid.LAMBDA_PARAMETER: lam})
        e2, f2, _ = evaluate(copy, pos, reference, parameters={openmmhybrid.LAMBDA_PARAMETER: lam})
        assert e1 == e2 and np.array_equal(f1, f2)


def test_mixed_embedding_bad_input(pxylene):
    topology, system, ml, pos, box = pxylene
    with pytest.raises(ValueError, match="positive distance"):
        openmmhybrid.createMixedSystem(topology, system, ml, PairMLP(), embedding="electrostatic", cutoff=0.0)
    with pytest.raises(ValueError, match="'mechanical' or 'electrostatic'"):
        openmmhybrid.createMixedSystem(topology, system, ml, PairMLP(), embedding="polarizable")
    noCharges = openmm.XmlSerializer.clone(system)
    for i in reversed(range(noCharges.getNumForces())):
        if isinstance(noCharges.getForce(i), openmm.NonbondedForce):
            noCharges.removeForce(i)
    with pytest.raises(ValueError, match="has no NonbondedForce"):
        openmmhybrid.createMixedSystem(topology, noCharges, ml, PairMLP(), embedding="electrostatic")

    class WrongEmbedding(torch.nn.Module):
        def forward(self, positions, mm_positions, mm_charges, mm_mask):
            return positions.sum()

    with pytest.raises(ValueError, match="takes 4 arguments, but a periodic System passes 5"):
        openmmhybrid.createMixedSystem(topology, system, ml, WrongEmbedding(), embedding="electrostatic")
    with pytest.raises(ValueError, match="unknown embedding term"):
        openmmhybrid.createMixedSystem(topology, system, ml, PairMLP(), embedding="electrostatic",
                                       embeddingTerms=["dispersion"])


def test_user_embedding_model_is_used_as_is(pxylene):
    """A model that follows the embedding contract itself (EMLE-style) goes in unchanged."""

    class Own(torch.nn.Module):
        def forward(self, positions, box, mm_positions, mm_charges, mm_mask):
            return 2.0 * (mm_charges * mm_mask.to(mm_charges.dtype)).sum()

    topology, system, ml, pos, box = pxylene
    mixed = openmmhybrid.createMixedSystem(topology, system, ml, Own(), embedding="electrostatic", cutoff=0.9,
                                           usesDoublePrecision=True)
    force = next(MLForce.cast(f) for f in mixed.getForces() if MLForce.isinstance(f))
    e, _, _ = evaluate(bare_system(system, openmm.XmlSerializer.clone(force), box), pos,
                       openmm.Platform.getPlatformByName("Reference"))
    charges = systemCharges(system)
    expected = 2.0 * sum(charges[j] for j in environment(pos, ml, charges, 0.9, box))
    assert e == pytest.approx(expected, abs=1e-9)


def test_ani1x_with_electrostatic_embedding_runs_dynamics(pxylene):
    pytest.importorskip("torchani")
    topology, system, ml, pos, box = pxylene
    mixed = openmmhybrid.createMixedSystem(topology, system, ml, "ani1x", embedding="electrostatic")
    integrator = openmmhybrid.createMTSIntegrator(mixed, 2 * unit.femtosecond, 2, temperature=300 * unit.kelvin)
    context = openmm.Context(mixed, integrator, openmm.Platform.getPlatformByName("CPU"))
    context.setPositions(pos)
    context.setPeriodicBoxVectors(*box)
    integrator.step(10)
    state = context.getState(getEnergy=True, getPositions=True)
    energy = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    assert math.isfinite(energy)
    moved = np.abs(state.getPositions(asNumpy=True).value_in_unit(unit.nanometer) - pos).max()
    assert 1e-4 < moved < 0.1
