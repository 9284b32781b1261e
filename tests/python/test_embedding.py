"""Electrostatic embedding: the environment step in MLForce, the embedding terms, and
createMixedSystem(..., embedding='electrostatic').

Independent references: NumPy brute-force sums over every MM charge at its true minimum image
(searched over all 27 neighbouring images), a NumPy self-consistent iteration for the induced
dipoles, OpenMM's own CustomNonbondedForce, and finite differences of the energy.
"""
import itertools
import math
import types

import numpy as np
import openmm
import openmm.unit as unit
import pytest
import torch

import openmmhybrid
from openmmhybrid import MLForce
from openmmhybrid.embedding import (VDS98_DAMPING, VDS98_POLARIZABILITIES, CoulombAndPolarization, EmbeddedModel,
                                    FixedChargeCoupling, TholePolarization, systemCharges)
from openmmhybrid.utils import ONE_4PI_EPS0

from conftest import amber
from models import PairMLP
from precision import EPS32, EPS64, SAFETY, bound, centralDifference, nonbondedBounds

BOHR3_NM3 = 0.0529177210903 ** 3
KJ_NM = unit.kilojoule_per_mole / unit.nanometer


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


def switch_slope(r, cutoff, switchDistance):
    """|dS/dR| of the same switch (0 without one)."""
    if switchDistance is None:
        return 0.0
    end = cutoff - SOFTMIN * math.log(len(r))
    R = -SOFTMIN * math.log(np.sum(np.exp(-(r - r.min()) / SOFTMIN))) + r.min()
    x = min(1.0, max(0.0, (R - switchDistance) / (end - switchDistance)))
    return 30 * x**2 * (1 - x) ** 2 / (end - switchDistance)


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


def coupling_sums(pos, mlAtoms, mlCharges, charges, cutoff, switchDistance, box):
    """The coupling energy and the scales of its rounding, as attributes.

    energy; magnitude: the sum of the magnitudes of its terms k |Q_j q_i| S_j / r_ij, terms: their
    number; forceScale: the largest sum of the magnitudes of what one atom's force adds up, the pair
    forces k |Q_j q_i| S_j / r_ij^2 and the switch's k |Q_j| |S'_j| sum_i |q_i| / r_ij for every MM
    atom j it sees (dR_j/dx <= 1), forceTerms: the most that one force adds up (an ML atom's)."""
    q = np.abs(np.asarray(mlCharges, dtype=float))
    energy, magnitude, terms = 0.0, 0.0, 0
    mlForces, mmForce = np.zeros(len(q)), 0.0
    for j, d in environment(pos, mlAtoms, charges, cutoff, box).items():
        r = np.linalg.norm(d, axis=1)
        s = weight(r, cutoff, switchDistance)
        energy += ONE_4PI_EPS0 * charges[j] * s * np.sum(np.asarray(mlCharges) / r)
        magnitude += ONE_4PI_EPS0 * abs(charges[j]) * s * np.sum(q / r)
        terms += len(r)
        pair = ONE_4PI_EPS0 * abs(charges[j]) * q * s / r**2
        switch = ONE_4PI_EPS0 * abs(charges[j]) * switch_slope(r, cutoff, switchDistance) * np.sum(q / r)
        mlForces += pair + switch
        mmForce = max(mmForce, pair.sum() + switch)
    return types.SimpleNamespace(energy=energy, magnitude=magnitude, terms=terms,
                                 forceScale=max(mlForces.max(), mmForce), forceTerms=2 * terms // len(q))


def coupling_reference(pos, mlAtoms, mlCharges, charges, cutoff, switchDistance, box):
    return coupling_sums(pos, mlAtoms, mlCharges, charges, cutoff, switchDistance, box).energy


def polarization_sums(pos, mlAtoms, atomicNumbers, charges, cutoff, switchDistance, box):
    """Induced dipoles by self-consistent iteration (not a linear solve) in the damped, switched
    MM field, as attributes energy, magnitude and terms.

    The scale of its rounding: E = -k/2 mu . F with mu = A^-1 F, so a rounding dF of the field moves
    E by k |mu| |dF|, and the field components are sums of terms of magnitude |Q_j| S_j / r_ij^2;
    the solve adds cond(A) eps |E|.  magnitude = k sum_i |mu_i| sum_j |Q_j| S_j / r_ij^2 +
    cond(A) |E|, terms: the field's terms."""
    alpha = np.array([VDS98_POLARIZABILITIES[z] * BOHR3_NM3 for z in atomicNumbers])
    n = len(mlAtoms)
    env = environment(pos, mlAtoms, charges, cutoff, box)
    field = np.zeros((n, 3))
    fieldMagnitude = np.zeros(n)
    for j, d in env.items():
        r = np.linalg.norm(d, axis=1)
        v = VDS98_DAMPING * r / alpha ** (1 / 3)
        damp = 1 - (1 + v + v * v / 2) * np.exp(-v)
        field += (charges[j] * damp * weight(r, cutoff, switchDistance) / r**3)[:, None] * d
        fieldMagnitude += abs(charges[j]) * damp * weight(r, cutoff, switchDistance) / r**2
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
    energy = -0.5 * ONE_4PI_EPS0 * np.sum(mu * field)
    A = np.diag(np.repeat(1 / alpha, 3)) - T.transpose(0, 2, 1, 3).reshape(3 * n, 3 * n)
    magnitude = (ONE_4PI_EPS0 * np.sum(np.abs(mu).sum(1) * fieldMagnitude)
                 + np.linalg.cond(A) * abs(energy))
    return types.SimpleNamespace(energy=energy, magnitude=magnitude, terms=3 * n * len(env))


def polarization_reference(pos, mlAtoms, atomicNumbers, charges, cutoff, switchDistance, box):
    return polarization_sums(pos, mlAtoms, atomicNumbers, charges, cutoff, switchDistance, box).energy


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
# Bounds on rounding (see precision.py)
# ----------------------------------------------------------------------------------------------

def rounding_response(forcesAt, pos, size, seed=0):
    """How far rounding every coordinate by up to ``size`` moves the forces: SAFETY times the largest
    force change when every coordinate moves by +-size at random (to first order, measured at
    +-1e-7 nm in float64 and scaled by size / 1e-7)."""
    step = np.random.default_rng(seed).choice([-1e-7, 1e-7], size=pos.shape)
    return SAFETY * np.abs(forcesAt(pos + step) - forcesAt(pos)).max() * size / 1e-7


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
    reference = coupling_sums(pos, ml, mlCharges, charges, 1.0, switchDistance, box)
    expected = reference.energy
    # float64, the model (TorchScript) against NumPy: a sum of `terms` terms of total magnitude `magnitude`.
    assert abs(energy - expected) <= bound(reference.magnitude, torch.float64, reference.terms)
    assert abs(expected) > 1.0  # a real interaction, not a vacuous comparison
    assert force.getNumEnvironmentAtoms(context) == len(environment(pos, ml, charges, 1.0, box))


def test_float32_inputs_agree_with_double(pxylene, platform):
    topology, system, ml, pos, box = pxylene
    charges = systemCharges(system)
    term = FixedChargeCoupling([charges[i] for i in ml], 1.0)
    system64 = bare_system(system, embedding_force(system, ml, [term]), box)
    e64, f64, context = evaluate(system64, pos, platform)
    e32, f32, _ = evaluate(bare_system(system, embedding_force(system, ml, [term], double=False), box), pos, platform)
    # The coupling computes in float64 either way; what float32 changes is the rounding of its
    # inputs, each coordinate (imaged within a box length of the positions) by up to eps32/2 |x|,
    # and of its outputs, the energy and forces by eps32/2 of themselves.  Energy: to first order
    # at most sum |F| times that shift.  Forces: the response to such a shift, rounding_response.
    shift = EPS32 / 2 * (np.abs(pos).max() + box.diagonal().max())
    e_bound = np.abs(f64).sum() * shift + EPS32 / 2 * abs(e64)

    def forcesAt(p):
        context.setPositions(p)
        return context.getState(getForces=True).getForces(asNumpy=True).value_in_unit(KJ_NM)
    f_bound = rounding_response(forcesAt, pos, shift) + EPS32 / 2 * np.abs(f64).max()
    assert abs(e32 - e64) <= e_bound
    assert np.abs(f32 - f64).max() <= f_bound


def test_hard_cutoff_coupling_equals_openmm_coulomb(pxylene, platform):
    """Without a switch the coupling is the plain Coulomb interaction of the region's MM charges with
    every charge in the environment: an OpenMM CustomBondForce over those pairs (minimum image)
    computes the same."""
    topology, system, ml, pos, box = pxylene
    charges = systemCharges(system)
    force = embedding_force(system, ml, [FixedChargeCoupling([charges[i] for i in ml], 1.0, None)])
    energy, _, _ = evaluate(bare_system(system, force, box), pos, platform)
    coulomb = openmm.CustomBondForce(f"{ONE_4PI_EPS0!r}*chargeProd/r")
    coulomb.addPerBondParameter("chargeProd")
    coulomb.setUsesPeriodicBoundaryConditions(True)
    for j in environment(pos, ml, charges, 1.0, box):
        for i in ml:
            coulomb.addBond(i, j, [charges[i] * charges[j]])
    reference, _, _ = evaluate(bare_system(system, coulomb, box), pos, openmm.Platform.getPlatformByName("Reference"))
    # float64, the model against OpenMM's expression: the sum over the same pairs.
    sums = coupling_sums(pos, ml, [charges[i] for i in ml], charges, 1.0, None, box)
    assert abs(energy - reference) <= bound(sums.magnitude, torch.float64, sums.terms)
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
    reference = coupling_sums(pos, ml, mlCharges, charges, cutoff, 0.7 * cutoff, box if periodic else None)
    # float64, the model against NumPy (its own minimum images): a sum of `terms` terms.
    assert abs(energy - reference.energy) <= bound(reference.magnitude, torch.float64, reference.terms)
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
    # The same code on the same inputs: the environment is gathered in one contiguous piece per
    # thread, merged in order (the order of the candidates whatever the thread count), and the model
    # runs on one thread on the CPU platform (modelThreads) whatever Threads says.  Bitwise equal.
    for energy, forces in results[1:]:
        assert energy == results[0][0]
        assert np.array_equal(forces, results[0][1])


@pytest.mark.parametrize("form", ["separate", "fused"])
def test_forces_on_ml_and_mm_atoms_match_finite_differences(pxylene, platform, form):
    """The two terms by autograd ('separate'), and CoulombAndPolarization in float64, whose
    gradient over the environment is written out by hand ('fused')."""
    topology, system, ml, pos, box = pxylene
    charges = systemCharges(system)
    atomicNumbers = [a.element.atomic_number for a in topology.atoms() if a.index in ml]
    terms = [FixedChargeCoupling([charges[i] for i in ml], 1.0, 0.7), TholePolarization(atomicNumbers, 1.0, 0.7)]
    if form == "fused":
        terms = [CoulombAndPolarization(*terms, precision="double")]
    sys_ = bare_system(system, embedding_force(system, ml, terms), box)
    energy, forces, context = evaluate(sys_, pos, platform)
    # An ML atom, a near MM atom, and an MM atom in the switching shell.
    env = environment(pos, ml, charges, 1.0, box)
    rmin = {j: np.linalg.norm(d, axis=1).min() for j, d in env.items()}
    near = min(rmin, key=rmin.get)
    shell = next(j for j, r in sorted(rmin.items()) if 0.75 < r < 0.95)
    far = next(j for j in range(len(pos)) if j not in env and j not in ml)
    assert np.all(forces[far] == 0)  # outside the environment: no term reaches it, exact zeros
    # Rounding of one float64 energy: sqrt(terms) eps |E| at random over the coupling's and the
    # polarization's terms.  (Not their sum of magnitudes, 2600 |E| here: each term's error is eps
    # of itself, and they add up at random to eps sqrt(sum t^2), below eps |E| sqrt(terms) since no
    # term is near |E| on average.  The rounding noise measured at fixed positions: 3e-13 kJ/mol,
    # 50 eps |E|, against 1900 eps |E| for the bound.)
    terms = (coupling_sums(pos, ml, [charges[i] for i in ml], charges, 1.0, 0.7, box).terms
             + polarization_sums(pos, ml, atomicNumbers, charges, 1.0, 0.7, box).terms)
    rounding = bound(abs(energy), torch.float64, terms)
    h = 1e-5
    for atom in (ml[0], ml[7], near, shell):
        for k in range(3):
            def energyAt(dx):
                p = pos.copy()
                p[atom, k] += dx
                context.setPositions(p)
                return context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
            numeric, tolerance = centralDifference(energyAt, h, rounding)
            assert abs(forces[atom, k] - numeric) <= tolerance, (atom, k)
    assert np.abs(forces[near]).max() > 1.0


def test_polarization_energy_matches_self_consistent_numpy(pxylene, platform):
    topology, system, ml, pos, box = pxylene
    charges = systemCharges(system)
    atomicNumbers = [a.element.atomic_number for a in topology.atoms() if a.index in ml]
    force = embedding_force(system, ml, [TholePolarization(atomicNumbers, 1.0, 0.8)])
    energy, _, _ = evaluate(bare_system(system, force, box), pos, platform)
    reference = polarization_sums(pos, ml, atomicNumbers, charges, 1.0, 0.8, box)
    expected = reference.energy
    # float64, a linear solve (TorchScript) against a converged iteration (NumPy).
    assert abs(energy - expected) <= bound(reference.magnitude, torch.float64, reference.terms)
    assert expected < -1.0  # induction is attractive and not negligible in water


@pytest.mark.parametrize("precision", ["double", "single"])
def test_fused_terms_equal_the_two_terms(pxylene, platform, precision):
    """CoulombAndPolarization, the default terms (one pass over the environment), against the
    NumPy references of the coupling and of the polarization.  'double': float64, the bound of
    the two sums.  'single': the pair sums over the n x m environment run in float32, so their
    rounding is bounded by the float32 bound of the same sums (n m terms of total magnitude S);
    the region's solve and the final sums stay float64."""
    topology, system, ml, pos, box = pxylene
    charges = systemCharges(system)
    mlCharges = [charges[i] for i in ml]
    atomicNumbers = [a.element.atomic_number for a in topology.atoms() if a.index in ml]
    fused = CoulombAndPolarization(FixedChargeCoupling(mlCharges, 1.0, 0.8),
                                   TholePolarization(atomicNumbers, 1.0, 0.8), precision)
    energy, forces, _ = evaluate(bare_system(system, embedding_force(system, ml, [fused]), box), pos, platform)
    coupling = coupling_sums(pos, ml, mlCharges, charges, 1.0, 0.8, box)
    polarization = polarization_sums(pos, ml, atomicNumbers, charges, 1.0, 0.8, box)
    expected = coupling.energy + polarization.energy
    magnitude, terms = coupling.magnitude + polarization.magnitude, coupling.terms + polarization.terms
    tolerance = bound(magnitude, torch.float64 if precision == "double" else torch.float32, terms)
    assert abs(energy - expected) <= tolerance + bound(magnitude, torch.float64, terms)
    # The forces against autograd through the two separate float64 terms (the fused term's
    # gradient is written out by hand).
    separate = [FixedChargeCoupling(mlCharges, 1.0, 0.8), TholePolarization(atomicNumbers, 1.0, 0.8)]
    e64, f64, _ = evaluate(bare_system(system, embedding_force(system, ml, separate), box), pos, platform)
    scale = np.abs(f64).max()
    if precision == "single":
        assert 0 < abs(energy - e64) <= tolerance  # float32 did run, and stayed within its bound
        assert np.abs(forces - f64).max() <= bound(scale, torch.float32, terms)
    else:
        assert np.abs(forces - f64).max() <= bound(scale, torch.float64, terms)
    with pytest.raises(ValueError, match="same cutoff and switch"):
        CoulombAndPolarization(FixedChargeCoupling(mlCharges, 1.0, 0.8), TholePolarization(atomicNumbers, 1.0, 0.7))


class GeometryCharges(torch.nn.Module):
    """ML charges that depend on the region's geometry: q_i = q0_i + 0.05 tanh(|x_i - centroid| - 0.2)."""

    def __init__(self, charges):
        super().__init__()
        self.register_buffer("q0", torch.tensor(charges, dtype=torch.float64))

    def forward(self, positions):
        x = positions.to(torch.float64)
        return self.q0 + 0.05 * torch.tanh(torch.linalg.norm(x - x.mean(0), dim=1) - 0.2)


@pytest.mark.parametrize("case", ["hard cutoff", "charge model"])
def test_fused_gradient_equals_autograd(pxylene, case):
    """CoulombAndPolarization's hand-written gradient against autograd through the separate terms,
    float64: without the switch, and with ML charges that depend on the positions (their gradient
    comes from autograd, the environment's from the hand-written part)."""
    topology, system, ml, pos, box = pxylene
    charges = systemCharges(system)
    mlCharges = [charges[i] for i in ml]
    atomicNumbers = [a.element.atomic_number for a in topology.atoms() if a.index in ml]
    switch = None if case == "hard cutoff" else 0.8
    coupling = GeometryCharges(mlCharges) if case == "charge model" else mlCharges
    separate = [FixedChargeCoupling(coupling, 1.0, switch), TholePolarization(atomicNumbers, 1.0, switch)]
    fused = [CoulombAndPolarization(FixedChargeCoupling(coupling, 1.0, switch),
                                    TholePolarization(atomicNumbers, 1.0, switch), "double")]
    reference = openmm.Platform.getPlatformByName("Reference")
    e0, f0, _ = evaluate(bare_system(system, embedding_force(system, ml, separate), box), pos, reference)
    e1, f1, _ = evaluate(bare_system(system, embedding_force(system, ml, fused), box), pos, reference)
    terms = len(ml) * len(environment(pos, ml, charges, 1.0, box))
    assert e1 == pytest.approx(e0, abs=bound(abs(e0), torch.float64, terms))
    assert np.abs(f1 - f0).max() <= bound(np.abs(f0).max(), torch.float64, terms)
    assert np.abs(f0[ml]).max() > 1.0


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
    # It does reach zero (exactly: past the switch's end the ion's weight is 0), from a large energy.
    assert switched[-1] == 0.0 and abs(switched[0]) > 10.0
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
    energy2, forces2, context = evaluate(system, moved, reference)
    # float64.  The sums round differently: the model, the coupling and the polarization (their
    # magnitudes and terms).  And the moved coordinates carry about 4 eps |x| of rounding (rotate,
    # add): that moves E by up to sum |F| 4 eps |x|, and the forces by rounding_response.
    e_model = float(PairMLP()(torch.tensor(pos[ml], dtype=torch.float64)).detach())
    switch = 0.8  # "default": the cutoff - 0.2 nm
    coupling = coupling_sums(pos, ml, charges[:len(ml)], charges, 1.0, switch, None)
    polarization = polarization_sums(pos, ml, numbers, charges, 1.0, switch, None)
    count = PairMLP.rounding_terms(len(ml)) + coupling.terms + polarization.terms
    shift = 4 * EPS64 * max(np.abs(pos).max(), np.abs(moved).max())

    def forcesAt(p):
        context.setPositions(p)
        return context.getState(getForces=True).getForces(asNumpy=True).value_in_unit(KJ_NM)
    e_bound = (bound(abs(e_model) + coupling.magnitude + polarization.magnitude, torch.float64, count)
               + np.abs(forces).sum() * shift)
    f_bound = (bound(np.abs(forces).max() + coupling.forceScale, torch.float64, count)
               + rounding_response(forcesAt, moved, shift))
    assert abs(energy2 - energy) <= e_bound
    assert np.abs(forces2 - forces @ q.T).max() <= f_bound


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
    # The same terms, padded to another capacity: torch sums them in other blocks.  float64.
    sums = coupling_sums(pos, ml, [charges[i] for i in ml], charges, 1.0, 0.8, box)
    e_bound = bound(sums.magnitude, torch.float64, sums.terms)
    f_bound = bound(sums.forceScale, torch.float64, sums.forceTerms)
    assert abs(energy - expected) <= e_bound
    assert np.abs(forces - expectedForces).max() <= f_bound


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
        # The CPU platform's float32 nonbonded sums change from one Context to another, even of the
        # same System.
        e_bound, f_bound = nonbondedBounds(system, box, abs(e0), np.abs(f0).max(), platform)
        assert abs(e - e0) <= e_bound
        assert np.abs(f - f0).max() <= f_bound


def test_lambda_one_equals_the_embedded_system(pxylene, mixed_pair, platform):
    topology, system, ml, pos, box = pxylene
    interp, direct = mixed_pair
    e1, f1, _ = evaluate(direct, pos, platform)
    e, f, context = evaluate(interp, pos, platform, parameters={openmmhybrid.LAMBDA_PARAMETER: 1.0})
    # The same energy along two paths: interp adds to the MM NonbondedForce the electrostatics with
    # the region's charges removed minus those with all charges (two more NonbondedForce sums, the
    # CustomCVForce's), direct zeroes the region's charges in one.  Four NonbondedForce sums, each
    # of its own size (|E|, the CV values) and of about the largest force.
    cv = next(x for x in interp.getForces() if isinstance(x, openmm.CustomCVForce))
    scale = abs(e) + abs(e1) + sum(abs(v) for v in cv.getCollectiveVariableValues(context))
    e_bound, f_bound = nonbondedBounds(system, box, scale, 4 * np.abs(f1).max(), platform)
    assert abs(e - e1) <= e_bound
    assert np.abs(f - f1).max() <= f_bound


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
    coupling = coupling_sums(pos, ml, [charges[i] for i in ml], charges, 1.0, 0.8, box)
    polarization = polarization_sums(pos, ml, atomicNumbers, charges, 1.0, 0.8, box)
    # The correction group also holds minus the region's internal MM bonded and LJ energy.
    mm_only = openmm.XmlSerializer.clone(direct)
    for i in reversed(range(mm_only.getNumForces())):
        if MLForce.isinstance(mm_only.getForce(i)):
            mm_only.removeForce(i)
    e_corr_mm, _, _ = evaluate(mm_only, pos, reference, groups={group})
    # float64: the kernel's model and terms against eager PyTorch and NumPy (the scales and terms of
    # each); e_corr_mm is the same code on the same inputs.
    e_model = float(model(x).detach())
    expected = e_model + coupling.energy + polarization.energy + e_corr_mm
    tolerance = bound(abs(e_model) + coupling.magnitude + polarization.magnitude + abs(e_corr_mm), torch.float64,
                      PairMLP.rounding_terms(len(ml)) + coupling.terms + polarization.terms)
    assert abs(e - expected) <= tolerance


def test_interpolation_path_is_linear(pxylene, mixed_pair):
    topology, system, ml, pos, box = pxylene
    interp, _ = mixed_pair
    reference = openmm.Platform.getPlatformByName("Reference")
    energies = [evaluate(interp, pos, reference, parameters={openmmhybrid.LAMBDA_PARAMETER: lam})[0]
                for lam in (0.0, 0.5, 1.0)]
    _, _, context = evaluate(interp, pos, reference, parameters={openmmhybrid.LAMBDA_PARAMETER: 0.3})
    # Reference computes the MM part and the CV values with the same code on the same inputs at
    # every lambda; what rounds differently is adding lambda times the correction to sums of size
    # |E| and the CV values (their difference is the correction), once per force, in float64.
    # Each energy, and the derivative interpolationEnergies extrapolates with, is within half of:
    cv = next(x for x in interp.getForces() if isinstance(x, openmm.CustomCVForce))
    scale = max(abs(e) for e in energies) + sum(abs(v) for v in cv.getCollectiveVariableValues(context))
    tolerance = bound(scale, torch.float64, interp.getNumForces())
    assert abs(energies[1] - 0.5 * (energies[0] + energies[2])) <= 1.5 * tolerance  # three energies
    predicted = openmmhybrid.interpolationEnergies(context, [0.0, 1.0]).value_in_unit(unit.kilojoule_per_mole)
    assert abs(predicted[0] - energies[0]) <= 2 * tolerance  # E(0.3), the derivative, E(lambda)
    assert abs(predicted[1] - energies[2]) <= 2 * tolerance


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
    inside = environment(pos, ml, charges, 0.9, box)
    expected = 2.0 * sum(charges[j] for j in inside)
    # float64, torch's sum against Python's, over the environment's charges.
    tolerance = bound(2.0 * sum(abs(charges[j]) for j in inside), torch.float64, len(inside))
    assert abs(e - expected) <= tolerance


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
