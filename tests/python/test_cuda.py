"""The CUDA platform plugin on a GPU: CUDA against Reference, graphs on against off, MTS, errors.

Every test here needs an NVIDIA GPU, a CUDA build of torch and OpenMM's CUDA platform (the
OpenMM-CUDA-13 wheel); elsewhere the whole module is skipped with that reason.  On a GPU machine,
`.ci/gpu` builds the project against the installed torch and runs this file and the GPU benchmark
(see docs/gpu.md).
"""
import math
import os

import numpy as np
import openmm
import openmm.app as app
import openmm.unit as unit
import pytest
import torch

from conftest import DATA, amber
from models import PairMLP, PeriodicPairMLP, ScaledPairMLP
from precision import EPS32, EPS64, SAFETY, bound, networkTerms

import openmmhybrid
from openmmhybrid import MLForce
from openmmhybrid.embedding import systemCharges


def _cuda_available():
    names = [openmm.Platform.getPlatform(i).getName() for i in range(openmm.Platform.getNumPlatforms())]
    if "CUDA" not in names:
        return False, "OpenMM has no CUDA platform here (install OpenMM-CUDA-13 and run on an NVIDIA GPU)"
    if not torch.cuda.is_available():
        return False, "torch sees no CUDA device (a CPU build of torch, or no NVIDIA GPU)"
    if not any("OpenMMHybridCUDA" in name for name in openmmhybrid._loader._loaded):
        failures = [f for f in openmm.Platform.getPluginLoadFailures() if "OpenMMHybrid" in f]
        return False, f"openmm-hybrid's CUDA plugin is not loaded: {failures or 'not built (see build_info.json)'}"
    return True, ""


CUDA, WHY = _cuda_available()
pytestmark = pytest.mark.skipif(not CUDA, reason=f"GPU test: {WHY}")

PRECISIONS = ["single", "mixed", "double"]
KJ = unit.kilojoule_per_mole
FORCE_UNIT = KJ / unit.nanometer


def cuda(precision="mixed"):
    return openmm.Platform.getPlatformByName("CUDA"), {"Precision": precision}


def reference():
    return openmm.Platform.getPlatformByName("Reference"), {}


def make_context(system, positions, platform_and_props, integrator=None, box=None):
    platform, props = platform_and_props
    context = openmm.Context(system, integrator or openmm.VerletIntegrator(0.001), platform, props)
    if box is not None:
        context.setPeriodicBoxVectors(*box)
    context.setPositions(positions)
    return context


def energy_forces(context, groups=-1):
    state = context.getState(getEnergy=True, getForces=True, groups=groups)
    return state.getPotentialEnergy().value_in_unit(KJ), state.getForces(asNumpy=True).value_in_unit(FORCE_UNIT)


def bare_system(system, force):
    out = openmm.System()
    for i in range(system.getNumParticles()):
        out.addParticle(system.getParticleMass(i))
    out.setDefaultPeriodicBoxVectors(*system.getDefaultPeriodicBoxVectors())
    out.addForce(force)
    return out


#: nm: PairMLP's Gaussian features have width sqrt(0.01): the length over which its forces change by
#: their own size (the Coulomb terms of the embedding models change more slowly).
WIDTH = 0.1
#: The CUDA platform adds forces as 64-bit fixed point, 2^32 units per kJ/mol/nm (this plugin and OpenMM).
FIXED_POINT = 2 * 2.0 ** -32


def position_rounding(precision, model_double):
    """The relative rounding of the positions the model sees on CUDA against Reference: float32
    storage ("single") or float32 model inputs (Reference rounds them too, but after making the
    region whole in another order); a float plus a float correction ("mixed", about 2^-46); double."""
    if precision == "single" or not model_double:
        return EPS32
    return EPS32 ** 2 if precision == "mixed" else EPS64


def box_nm(box):
    return np.array([v.value_in_unit(unit.nanometer) for v in box])


def cuda_bounds(magnitude, dtype, terms, positions, f_ref, box, rounding):
    """(energy, force) bounds between a model evaluated on CUDA and on Reference (precision.py).

    The network: GPU and CPU kernels round differently, bound(magnitude, dtype, terms) for the
    energy and bound(max |F|, dtype, terms) for the forces.  The inputs: each coordinate of an atom
    the model sees rounds at rounding * (|x| + L) (made whole, so up to a box length L beyond |x|),
    which moves the energy by at most sum |F| times that (first order, worst case) and the forces by
    max |F| / WIDTH times that for each coordinate (bound over them).  The forces are added in fixed
    point."""
    involved = np.abs(f_ref).max(axis=1) > 0
    reach = np.abs(np.asarray(positions)[involved]).max() + np.abs(box_nm(box)).max()
    coordinates = 3 * int(involved.sum())
    fmax = np.abs(f_ref).max()
    energy = bound(magnitude, dtype, terms) + rounding * reach * np.abs(f_ref).sum()
    force = (bound(fmax, dtype, terms) + SAFETY * math.sqrt(coordinates) * rounding * reach * fmax / WIDTH
             + FIXED_POINT)
    return energy, force


@pytest.fixture(scope="module")
def pxylene():
    prm, crd, system = amber("pxylene-water", "pxylene_water.prmtop", "pxylene_water.inpcrd")
    ml = [a.index for a in prm.topology.atoms() if a.residue.name == "TMP"]
    box = crd.boxVectors
    return prm.topology, system, ml, crd.positions, box


class Coulomb(torch.nn.Module):
    """PairMLP on the region plus a plain Coulomb sum between region partial charges and the
    environment (a device-independent embedding model with a closed-form reference)."""

    def __init__(self, charges, dtype):
        super().__init__()
        self.pair = PairMLP(dtype=dtype)
        self.register_buffer("q", torch.tensor(charges, dtype=dtype))

    def forward(self, positions, box, mm_positions, mm_charges, mm_mask):
        return self.energy(positions, mm_positions, mm_charges, mm_mask)

    def energy(self, positions, mm_positions, mm_charges, mm_mask):
        d = positions.unsqueeze(1) - mm_positions.unsqueeze(0)
        r = torch.linalg.norm(d, dim=2)
        qq = self.q.unsqueeze(1) * torch.where(mm_mask, mm_charges, torch.zeros_like(mm_charges)).unsqueeze(0)
        return self.pair(positions) + 138.935456 * (qq / r).sum()


class CoulombNoBox(Coulomb):
    def forward(self, positions, mm_positions, mm_charges, mm_mask):
        return self.energy(positions, mm_positions, mm_charges, mm_mask)


# ----------------------------------------------------------------------------------------------
# CUDA against Reference
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("model_double", [False, True])
def test_mechanical_matches_reference(pxylene, precision, model_double):
    topology, system, ml, positions, box = pxylene
    dtype = torch.float64 if model_double else torch.float32
    model = PeriodicPairMLP(dtype=dtype)
    force = MLForce(model, ml, usesPeriodicBoundaryConditions=True, usesDoublePrecision=model_double)
    test = bare_system(system, force)
    e_ref, f_ref = energy_forces(make_context(test, positions, reference(), box=box))
    e_gpu, f_gpu = energy_forces(make_context(test, positions, cuda(precision), box=box))
    xyz = np.array(positions.value_in_unit(unit.nanometer))
    magnitude = model.magnitude(xyz[ml]) + 5 * np.trace(box_nm(box))  # the pair terms and the box term
    e_tol, f_tol = cuda_bounds(magnitude, dtype, PairMLP.rounding_terms(len(ml)), xyz, f_ref, box,
                               position_rounding(precision, model_double))
    assert e_gpu == pytest.approx(e_ref, rel=0, abs=e_tol)
    assert np.abs(f_gpu - f_ref).max() <= f_tol
    # Only the region feels the force.
    others = np.setdiff1d(np.arange(system.getNumParticles()), ml)
    assert np.abs(f_gpu[others]).max() == 0.0


@pytest.mark.parametrize("precision", PRECISIONS)
def test_embedding_matches_reference(pxylene, precision):
    topology, system, ml, positions, box = pxylene
    charges = systemCharges(system)
    region_q = [charges[i] for i in ml]
    model = Coulomb(region_q, torch.float64)
    force = MLForce(model, ml, usesPeriodicBoundaryConditions=True, usesDoublePrecision=True)
    force.setEmbedding(1.0, charges)
    test = bare_system(system, force)
    ref = make_context(test, positions, reference(), box=box)
    gpu = make_context(test, positions, cuda(precision), box=box)
    e_ref, f_ref = energy_forces(ref)
    e_gpu, f_gpu = energy_forces(gpu)
    assert force.getNumEnvironmentAtoms(gpu) == force.getNumEnvironmentAtoms(ref) > 100
    assert force.getEnvironmentCapacity(gpu) >= force.getNumEnvironmentAtoms(gpu)
    # The magnitudes summed: the pair terms, and the Coulomb terms between the region and its
    # environment (the MM atoms the model moves; nearest images, the box is cubic).
    xyz = np.array(positions.value_in_unit(unit.nanometer))
    environment = np.setdiff1d(np.flatnonzero(np.abs(f_ref).max(axis=1) > 0), ml)
    d = xyz[environment][:, None] - xyz[ml][None]
    d -= np.round(d / box_nm(box).diagonal()) * box_nm(box).diagonal()
    q = np.array(charges)
    coulomb = 138.935456 * np.sum(np.abs(q[environment][:, None] * q[ml][None]) / np.linalg.norm(d, axis=2))
    terms = PairMLP.rounding_terms(len(ml)) + 4 * len(ml) * len(environment)
    e_tol, f_tol = cuda_bounds(model.pair.magnitude(xyz[ml]) + coulomb, torch.float64, terms, xyz, f_ref, box,
                               position_rounding(precision, True))
    assert e_gpu == pytest.approx(e_ref, rel=0, abs=e_tol)
    assert np.abs(f_gpu - f_ref).max() <= f_tol
    # Forces reach MM atoms (the environment), not only the region.
    others = np.setdiff1d(np.arange(system.getNumParticles()), ml)
    assert np.abs(f_gpu[others]).max() > 1.0


def test_matches_reference_after_reordering(pxylene):
    """OpenMM reorders atoms every 250 steps; the region's gather and the scatter must follow."""
    topology, system, ml, positions, box = pxylene
    system = openmm.XmlSerializer.clone(system)
    model = PeriodicPairMLP()
    force = MLForce(model, ml, usesPeriodicBoundaryConditions=True)
    force.setForceGroup(5)
    system.addForce(force)
    integrator = openmm.LangevinMiddleIntegrator(300 * unit.kelvin, 1 / unit.picosecond, 0.002 * unit.picoseconds)
    integrator.setRandomNumberSeed(7)
    gpu = make_context(system, positions, cuda("double"), integrator, box=box)
    gpu.setVelocitiesToTemperature(300 * unit.kelvin, 7)
    integrator.step(300)
    state = gpu.getState(getPositions=True)
    ref = make_context(system, state.getPositions(), reference(), box=state.getPeriodicBoxVectors())
    e_gpu, f_gpu = energy_forces(gpu, groups={5})
    e_ref, f_ref = energy_forces(ref, groups={5})
    # float32 inputs (the distances are float32 arithmetic, then float64 weights): as a float32 model.
    xyz = state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
    cell = state.getPeriodicBoxVectors()
    e_tol, f_tol = cuda_bounds(model.magnitude(xyz[ml]) + 5 * np.trace(box_nm(cell)), torch.float32,
                               PairMLP.rounding_terms(len(ml)), xyz, f_ref, cell, position_rounding("double", False))
    assert e_gpu == pytest.approx(e_ref, rel=0, abs=e_tol)
    assert np.abs(f_gpu - f_ref).max() <= f_tol


def test_parameters_and_derivatives(pxylene):
    topology, system, ml, positions, box = pxylene
    x = np.array(positions.value_in_unit(unit.nanometer))[ml]
    for graphs in ("false", "true"):
        model = ScaledPairMLP()
        force = MLForce(model, ml, usesDoublePrecision=True)
        force.addGlobalParameter("scale", 1.0)
        force.addGlobalParameter("shift", 0.0)
        force.addEnergyParameterDerivative("scale")
        force.setProperty("useCUDAGraphs", graphs)
        force.setProperty("CUDAGraphWarmupSteps", "1")
        test = bare_system(system, force)
        test.setDefaultPeriodicBoxVectors(*box)
        gpu = make_context(test, positions, cuda("double"))
        ref = make_context(test, positions, reference())
        for scale, shift in [(1.0, 0.0), (0.5, 2.0), (0.5, 2.0), (2.0, -1.0), (0.25, 3.0)]:
            for context in (gpu, ref):
                context.setParameter("scale", scale)
                context.setParameter("shift", shift)
            s_gpu = gpu.getState(getEnergy=True, getForces=True, getParameterDerivatives=True)
            s_ref = ref.getState(getEnergy=True, getForces=True, getParameterDerivatives=True)
            # float64 on both, the same float64 positions (no box): the network's rounding only.
            pair = model.magnitude(x)
            terms = PairMLP.rounding_terms(len(ml))
            assert s_gpu.getPotentialEnergy().value_in_unit(KJ) == pytest.approx(
                s_ref.getPotentialEnergy().value_in_unit(KJ), rel=0, abs=bound(abs(scale) * pair + abs(shift), np.float64, terms))
            assert s_gpu.getEnergyParameterDerivatives()["scale"] == pytest.approx(
                s_ref.getEnergyParameterDerivatives()["scale"], rel=0, abs=bound(pair, np.float64, terms))


# ----------------------------------------------------------------------------------------------
# CUDA graphs
# ----------------------------------------------------------------------------------------------

def _graph_run(system, ml, positions, box, graphs, model):
    force = MLForce(model, ml, usesPeriodicBoundaryConditions=True)
    force.setProperty("useCUDAGraphs", "true" if graphs else "false")
    force.setProperty("CUDAGraphWarmupSteps", "2")
    test = bare_system(system, force)
    context = make_context(test, positions, cuda("mixed"), box=box)
    rng = np.random.default_rng(3)
    base = np.array(positions.value_in_unit(unit.nanometer))
    results = []
    for step in range(8):
        # New positions each time: a replayed graph must read the current ones.
        moved = base + rng.normal(scale=0.002, size=base.shape) * (step > 0)
        context.setPositions(moved * unit.nanometer)
        results.append(energy_forces(context))
    return results


def test_graphs_on_and_off_agree(pxylene):
    topology, system, ml, positions, box = pxylene
    model = PeriodicPairMLP(dtype=torch.float32)
    on = _graph_run(system, ml, positions, box, True, model)
    off = _graph_run(system, ml, positions, box, False, PeriodicPairMLP(dtype=torch.float32))
    energies = [e for e, _ in off]
    assert len(set(np.round(energies, 6))) > 1, "the positions did not change between evaluations"
    # The same kernels on the same inputs, but the backward pass's atomic additions (and cuBLAS's
    # choice of algorithm inside a graph) can change the order of the float32 sums: the network's
    # bound (magnitude at the unmoved positions; the 0.002 nm moves change it by a few per cent).
    magnitude = model.magnitude(np.array(positions.value_in_unit(unit.nanometer))[ml]) + 5 * np.trace(box_nm(box))
    terms = PairMLP.rounding_terms(len(ml))
    for (e1, f1), (e2, f2) in zip(on, off):
        assert e1 == pytest.approx(e2, rel=0, abs=bound(magnitude, np.float32, terms))
        assert np.abs(f1 - f2).max() <= bound(np.abs(f2).max(), np.float32, terms) + FIXED_POINT


def test_ani1x_is_captured(pxylene, capfd):
    """The project's static-shape ANI-1x runs in a CUDA graph (no fallback message)."""
    pytest.importorskip("torchani")
    topology, system, ml, positions, box = pxylene
    model = openmmhybrid.models.createModel("ani1x", topology, ml)
    on = _graph_run(system, ml, positions, box, True, model)
    off = _graph_run(system, ml, positions, box, False, model)
    assert "could not be captured" not in capfd.readouterr().err
    # float32 network sums in another order (as in test_graphs_on_and_off_agree): the network part
    # (less the self energies, float64 constants) through 384 AEV inputs, 4 layers, the region's atoms.
    terms = networkTerms(384, 4, len(ml))
    selfEnergy = model.selfEnergy
    for (e1, f1), (e2, f2) in zip(on, off):
        assert e1 == pytest.approx(e2, rel=0, abs=bound(e2 - selfEnergy, np.float32, terms))
        assert np.abs(f1 - f2).max() <= bound(np.abs(f2).max(), np.float32, terms) + FIXED_POINT


def test_uncapturable_model_falls_back(pxylene, capfd):
    class Syncs(torch.nn.Module):
        def forward(self, positions, box):
            energy = (positions ** 2).sum()
            if energy.item() > 1e12:  # a host synchronization: cannot be captured
                energy = energy * 2
            return energy

    topology, system, ml, positions, box = pxylene
    results = _graph_run(system, ml, positions, box, True, Syncs())
    assert "could not be captured" in capfd.readouterr().err
    expected = [(np.array(positions.value_in_unit(unit.nanometer))[ml] ** 2).sum()]
    # float32 inputs (each square rounds at eps32 of itself) and a float32 sum of the 3n squares.
    assert results[0][0] == pytest.approx(expected[0], rel=0, abs=bound(expected[0], np.float32, 2 * 3 * len(ml)))
    assert all(np.isfinite(e) for e, _ in results)


# ----------------------------------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------------------------------

class NaNAfter(torch.nn.Module):
    def forward(self, positions, box):
        return (positions ** 2).sum() * float("nan")


def test_nan_energy_raises(pxylene):
    topology, system, ml, positions, box = pxylene
    force = MLForce(NaNAfter(), ml, usesPeriodicBoundaryConditions=True)
    context = make_context(bare_system(system, force), positions, cuda(), box=box)
    with pytest.raises(openmm.OpenMMException, match="non-finite"):
        context.getState(getEnergy=True)
    # Force-only evaluations report it at the next evaluation (the device flag).
    integrator = context.getIntegrator()
    with pytest.raises(openmm.OpenMMException, match="non-finite"):
        integrator.step(3)
        context.getState(getForces=True)
        integrator.step(1)


def test_environment_overflow_raises(pxylene):
    """The environment arrays cannot grow inside a graph: outgrowing them is an error, never silent."""
    topology, system, ml, positions, box = pxylene
    charges = systemCharges(system)
    force = MLForce(CoulombNoBox([charges[i] for i in ml], torch.float64), ml, usesDoublePrecision=True)
    force.setEmbedding(1.0, charges)
    # A non-periodic copy whose region starts far from the water (an empty environment, so the
    # automatic capacity is small) and then moves back into it.
    pos = np.array(positions.value_in_unit(unit.nanometer))
    nonperiodic = openmm.System()
    for i in range(system.getNumParticles()):
        nonperiodic.addParticle(system.getParticleMass(i))
    nonperiodic.addForce(force)
    away = pos.copy()
    away[ml] += np.array([20.0, 0, 0])
    context = make_context(nonperiodic, away * unit.nanometer, cuda("double"))
    context.getState(getEnergy=True)
    assert force.getNumEnvironmentAtoms(context) == 0
    context.setPositions(pos * unit.nanometer)
    with pytest.raises(openmm.OpenMMException, match="setEmbeddingCapacity"):
        context.getState(getEnergy=True, getForces=True)


@pytest.mark.parametrize("embedding", ["mechanical", "electrostatic"])
def test_link_atoms_match_reference(embedding):
    """The ALA residue of the alanine dipeptide (two cut peptide bonds, two caps; with electrostatic
    embedding also the redistributed charges of the two MM atoms of the cut bonds): the correction
    group on CUDA (double) against Reference, ANI-1x in float64."""
    # Reaction field: CUDA rounds PME grids to other sizes than Reference (see test_mts_matches_reference).
    prm, crd, system = amber("alanine-dipeptide-water", "alanine-dipeptide.prmtop", "alanine-dipeptide.inpcrd",
                             nonbondedMethod=app.CutoffPeriodic)
    ala = [a.index for a in prm.topology.atoms() if a.residue.name == "ALA"]
    mixed = openmmhybrid.createMixedSystem(prm.topology, system, ala, "ani1x", embedding=embedding,
                                           usesDoublePrecision=True, correctionGroup=1)
    ml = next(MLForce.cast(f) for f in mixed.getForces() if MLForce.isinstance(f))
    assert len(ml.getAtoms()) == len(ala) + 2 + (4 if embedding == "electrostatic" else 0)
    e_ref, f_ref = energy_forces(make_context(mixed, crd.positions, reference(), box=crd.boxVectors), groups={1})
    e_gpu, f_gpu = energy_forces(make_context(mixed, crd.positions, cuda("double"), box=crd.boxVectors), groups={1})
    xyz = np.array(crd.positions.value_in_unit(unit.nanometer))
    # ANI-1x on 12 atoms (384 AEV inputs, 4 layers); the MM correction terms and the embedding add
    # a few hundred more float64 roundings, inside the same sqrt-terms bound.
    e_tol, f_tol = cuda_bounds(abs(e_ref), torch.float64, networkTerms(384, 4, 12) + 1000, xyz, f_ref,
                               crd.boxVectors, position_rounding("double", True))
    assert e_gpu == pytest.approx(e_ref, rel=0, abs=e_tol)
    assert np.abs(f_gpu - f_ref).max() <= f_tol
    # The caps' forces reach the MM atoms of the cut bonds (4 and 16).
    assert np.abs(f_gpu[[4, 16]]).max() > 1.0


def test_ani_neighbour_capacity_on_the_gpu():
    """On a GPU the ANI-1x capacities are sized on the first evaluation and not checked afterwards
    (no host synchronization): an evaluation that needs more returns NaN, never a wrong energy;
    setCapacity makes room."""
    pytest.importorskip("torchani")
    from openmmhybrid.models.ani import ANI1x
    numbers = [6, 1, 1, 1, 1] * 8
    generator = torch.Generator().manual_seed(5)
    dilute = (torch.rand(40, 3, generator=generator, dtype=torch.float64) * 2.0).cuda()
    model = torch.jit.script(ANI1x(numbers)).cuda()
    assert torch.isfinite(model(dilute))
    dense = dilute * 0.3
    assert torch.isnan(model(dense))
    model.core64.setCapacity(40 * 39, 39, 40 * 39 * 38 // 2)
    cpu = torch.jit.script(ANI1x(numbers))
    expected = cpu(dense.cpu()).item()
    assert model(dense).item() == pytest.approx(expected, rel=1e-12)


# ----------------------------------------------------------------------------------------------
# MTS integrators
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("thermostat", [False, True])
def test_mts_matches_reference(thermostat):
    # Reaction field, not PME: CUDA rounds PME grids up to FFT-friendly sizes, so PME forces differ
    # between the platforms by about the Ewald tolerance, which is not what this test is about.
    prm, crd, system = amber("alanine-dipeptide-water", "alanine-dipeptide.prmtop", "alanine-dipeptide.inpcrd",
                             nonbondedMethod=app.CutoffPeriodic)
    ml = [a.index for a in prm.topology.atoms() if a.residue.name in ("ACE", "ALA", "NME")]
    force = MLForce(PeriodicPairMLP(), ml, usesPeriodicBoundaryConditions=True, usesDoublePrecision=True)
    force.setForceGroup(1)
    system.addForce(force)
    results = []
    for platform in (reference(), cuda("double")):
        if thermostat:
            integrator = openmmhybrid.MTSLangevinIntegrator(300 * unit.kelvin, 1 / unit.picosecond, 0.004 * unit.picoseconds,
                                                            [(1, 1), (0, 4)])
            integrator.setRandomNumberSeed(11)
        else:
            integrator = openmmhybrid.MTSIntegrator(0.004 * unit.picoseconds, [(1, 1), (0, 4)])
        context = make_context(system, crd.positions, platform, integrator, box=crd.boxVectors)
        context.setVelocitiesToTemperature(300 * unit.kelvin, 5)
        integrator.step(20)
        state = context.getState(getPositions=True, getVelocities=True, getEnergy=True)
        results.append((state.getPositions(asNumpy=True).value_in_unit(unit.nanometer),
                        state.getKineticEnergy().value_in_unit(KJ), force.getNumModelCalls(context)))
    (x_ref, k_ref, calls_ref), (x_gpu, k_gpu, calls_gpu) = results
    assert calls_gpu == calls_ref
    # Both platforms compute in float64 (forces in 64-bit fixed point on CUDA, 2^-32); what dominates
    # is the constraints: each platform's CCMA stops within ctol * d of every constraint length d,
    # so an inner step can leave them that far apart (a random walk over the 20 x 4 inner steps).
    longest = max(system.getConstraintParameters(i)[2].value_in_unit(unit.nanometer)
                  for i in range(system.getNumConstraints()))
    assert np.abs(x_gpu - x_ref).max() < SAFETY * math.sqrt(20 * 4) * integrator.getConstraintTolerance() * longest
    # Not a rounding bound: the kinetic energy follows the positions checked above; 1e-3 of it is the
    # share of a handful of its ~4,500 degrees of freedom, far below what a wrong kick or thermostat does.
    assert k_gpu == pytest.approx(k_ref, rel=1e-3)


# ----------------------------------------------------------------------------------------------
# A long ML/MM run of the T4L + p-xylene complex
# ----------------------------------------------------------------------------------------------

def test_t4l_long_run_is_stable():
    pytest.importorskip("torchani")
    from openmmhybrid import createMixedSystem, mtsGroups

    folder = os.path.join(DATA, "t4l-l99a-pxylene-water")
    prm = app.AmberPrmtopFile(os.path.join(folder, "complex.prmtop"))
    crd = app.AmberInpcrdFile(os.path.join(folder, "complex.inpcrd"))
    system = prm.createSystem(nonbondedMethod=app.PME, nonbondedCutoff=0.9 * unit.nanometer, constraints=app.HBonds)
    ml = [a.index for a in prm.topology.atoms() if a.residue.name == "TMP"]
    mixed = createMixedSystem(prm.topology, system, ml, "ani1x", correctionGroup=2)
    for i in range(mixed.getNumForces()):
        if MLForce.isinstance(mixed.getForce(i)):
            MLForce.cast(mixed.getForce(i)).setProperty("useCUDAGraphs", "true")
    integrator = openmmhybrid.MTSLangevinIntegrator(300 * unit.kelvin, 1 / unit.picosecond, 0.002 * unit.picoseconds,
                                                    mtsGroups(mixed, 2, 2))
    integrator.setRandomNumberSeed(2026)
    context = make_context(mixed, crd.positions, cuda("mixed"), integrator, box=crd.boxVectors)
    openmm.LocalEnergyMinimizer.minimize(context, 10.0, 200)
    context.setVelocitiesToTemperature(300 * unit.kelvin, 2026)
    dof = 3 * system.getNumParticles() - system.getNumConstraints() - 3
    temperatures = []
    for block in range(20):
        integrator.step(500)
        state = context.getState(getEnergy=True)
        energy = state.getPotentialEnergy().value_in_unit(KJ)
        assert math.isfinite(energy), f"non-finite energy after {500 * (block + 1)} steps"
        kinetic = state.getKineticEnergy().value_in_unit(KJ)
        temperatures.append(2 * kinetic / (dof * unit.MOLAR_GAS_CONSTANT_R.value_in_unit(KJ / unit.kelvin)))
    late = np.array(temperatures[10:])
    # Statistical: with ~75,000 degrees of freedom one sample of the temperature fluctuates by
    # 300 K x sqrt(2 / dof) = 1.5 K, so these are many standard errors; MTS resonance heats by more.
    assert abs(late.mean() - 300) < 10, temperatures
    # No drift: the two halves of the second half agree.
    assert abs(late[:5].mean() - late[5:].mean()) < 8, temperatures
