"""Compiled models (AOTInductor packages from openmmhybrid.compileModel) in MLForce, on every
CPU-side platform.  Expected numbers come from the uncompiled model evaluated directly in PyTorch
or from finite differences.  Compiling takes seconds per model, so each package is built once per
module.
"""

import numpy as np
import openmm
import openmm.unit as unit
import pytest
import torch

from openmmhybrid import MLForce, compileModel
from models import PairMLP
from precision import bound
from test_mlforce import (check_finite_differences, direct_energy_and_forces, energy_tolerance, evaluate,
                          force_tolerance, make_system, random_positions, random_rotation)

ATOMS = [7, 2, 4, 0, 5, 9]


class PeriodicScaled(PairMLP):
    """PairMLP times a parameter, plus 5 * trace(box): checks the box and the parameter arrive."""

    def forward(self, positions, box, scale):
        return scale * self.pair_energy(positions) + 5.0 * torch.trace(box)


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    """(model, package path): PairMLP, float64, 6 atoms, no box."""
    model = PairMLP(dtype=torch.float64)
    path = tmp_path_factory.mktemp("compiled") / "plain.pt2"
    compileModel(model, len(ATOMS), path, usesDoublePrecision=True)
    return model, str(path)


@pytest.fixture(scope="module")
def periodic(tmp_path_factory):
    """(model, package path): PeriodicScaled, float32, 6 atoms, box and one parameter with its
    energy derivative."""
    model = PeriodicScaled(dtype=torch.float32)
    path = tmp_path_factory.mktemp("compiled") / "periodic.pt2"
    compileModel(model, len(ATOMS), path, periodic=True, parameters=[("scale", 1.0)], derivatives=["scale"])
    return model, str(path)


def compiled_system(path, double=True, periodic=False, box=None, atoms=ATOMS):
    system = make_system(10, box)
    force = MLForce(path, atoms, usesPeriodicBoundaryConditions=periodic, usesDoublePrecision=double)
    system.addForce(force)
    return system, force


def test_energy_and_forces_match_pytorch(plain, platform):
    model, path = plain
    system, force = compiled_system(path)
    pos = random_positions(10, 1)
    energy, forces, _ = evaluate(system, pos, platform)
    expected_energy, expected_forces = direct_energy_and_forces(model, pos[ATOMS])
    # Inductor's generated C++ against eager PyTorch, float64: two code paths.
    assert energy == pytest.approx(expected_energy, abs=energy_tolerance(model, pos[ATOMS]))
    np.testing.assert_allclose(forces[ATOMS], expected_forces, rtol=0,
                               atol=force_tolerance(model, pos[ATOMS], expected_forces))
    others = [i for i in range(10) if i not in ATOMS]
    assert np.all(forces[others] == 0.0)


def test_forces_are_finite_differences_of_energy(plain, platform):
    _, path = plain
    system, _ = compiled_system(path)
    check_finite_differences(system, random_positions(10, 2), platform, ATOMS[:3], 1e-5)


def test_rotation_and_translation_invariance(plain, platform):
    _, path = plain
    system, _ = compiled_system(path)
    rng = np.random.default_rng(3)
    pos = random_positions(10, 3)
    energy, forces, _ = evaluate(system, pos, platform)
    rotation = random_rotation(rng)
    moved = pos @ rotation.T + np.array([1.5, -2.0, 0.7])
    energy2, forces2, _ = evaluate(system, moved, platform)
    # Same code, positions rounded differently: the rounding bound at the moved coordinates' scale.
    model, scale = PairMLP(), max(1.0, np.abs(moved).max())
    assert energy2 == pytest.approx(energy, abs=scale * energy_tolerance(model, pos[ATOMS]))
    np.testing.assert_allclose(forces2, forces @ rotation.T, rtol=0,
                               atol=scale * force_tolerance(model, pos[ATOMS], forces[ATOMS]))


def test_box_and_parameter_reach_the_compiled_model(periodic, platform):
    model, path = periodic
    box = [openmm.Vec3(2.5, 0, 0), openmm.Vec3(0, 2.6, 0), openmm.Vec3(0, 0, 2.7)]
    system, force = compiled_system(path, double=False, periodic=True, box=box)
    force.addGlobalParameter("scale", 1.0)
    force.addEnergyParameterDerivative("scale")
    pos = random_positions(10, 4, scale=0.5)
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), platform)
    context.setPositions(pos)
    box_tensor = torch.tensor([[2.5, 0, 0], [0, 2.6, 0], [0, 0, 2.7]], dtype=torch.float32)
    pair = model.pair_energy(torch.tensor(pos[ATOMS], dtype=torch.float32)).item()
    for scale in (1.0, 0.5, 2.0):
        context.setParameter("scale", scale)
        energy, forces, derivatives = evaluate(system, pos, platform, context=context, derivatives=True)
        expected_energy, expected_forces = direct_energy_and_forces(model, pos[ATOMS], torch.float32, box_tensor,
                                                                    torch.tensor(scale))
        # float32, compiled against eager; the box term 5 trace(box) adds 3 roundings of ~40 kJ/mol.
        tolerance = abs(scale) * energy_tolerance(model, pos[ATOMS], torch.float32) + bound(
            5.0 * np.trace(box_tensor.numpy()), torch.float32, 3)
        assert energy == pytest.approx(expected_energy, abs=tolerance)
        np.testing.assert_allclose(forces[ATOMS], expected_forces, rtol=0,
                                   atol=abs(scale) * force_tolerance(model, pos[ATOMS], expected_forces, torch.float32))
        # dE/dscale = the pair energy
        assert derivatives["scale"] == pytest.approx(pair, abs=energy_tolerance(model, pos[ATOMS], torch.float32))


def test_serialization_round_trip(plain, platform):
    model, path = plain
    system, _ = compiled_system(path)
    pos = random_positions(10, 5)
    energy, forces, _ = evaluate(system, pos, platform)
    copy = openmm.XmlSerializer.deserialize(openmm.XmlSerializer.serialize(system))
    energy2, forces2, _ = evaluate(copy, pos, platform)
    assert energy2 == energy  # the same package on the same inputs: bitwise
    np.testing.assert_array_equal(forces2, forces)


def test_dynamics_with_a_compiled_model(plain, platform):
    """A few Verlet steps: the model is called every step and the energy stays finite."""
    _, path = plain
    system, force = compiled_system(path)
    context = openmm.Context(system, openmm.VerletIntegrator(0.0005), platform)
    context.setPositions(random_positions(10, 6))
    context.getIntegrator().step(20)
    assert force.getNumModelCalls(context) >= 20
    assert np.isfinite(context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole))


# --- Errors ----------------------------------------------------------------------------------------

def context_error(system):
    with pytest.raises(openmm.OpenMMException) as error:
        openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    return str(error.value)


def test_wrong_number_of_atoms(plain):
    _, path = plain
    message = context_error(compiled_system(path, atoms=ATOMS[:4])[0])
    assert "compiled for 6 ML atoms" in message and "has 4" in message


def test_wrong_dtype(plain):
    _, path = plain
    message = context_error(compiled_system(path, double=False)[0])
    assert "float64" in message and "setUsesDoublePrecision(True)" in message


def test_wrong_inputs(plain):
    _, path = plain
    box = [openmm.Vec3(3, 0, 0), openmm.Vec3(0, 3, 0), openmm.Vec3(0, 0, 3)]
    message = context_error(compiled_system(path, periodic=True, box=box)[0])
    assert "takes (positions)" in message and "passes (positions,box)" in message


def test_package_without_environment_is_refused_with_embedding(plain):
    _, path = plain
    system, force = compiled_system(path)
    force.setEmbedding(1.0, [0.1] * 10)
    message = context_error(system)
    assert "takes (positions)" in message and "passes (positions,mm_positions,mm_charges,mm_mask)" in message
    assert "embedding=" in message


# --- Electrostatic embedding: a package with the environment's inputs --------------------------

class EmbeddedPair(PairMLP):
    """PairMLP plus a softened Coulomb coupling of fixed ML charges to the environment:
    forward(positions, mm_positions, mm_charges, mm_mask), the non-periodic embedding contract."""

    def __init__(self, charges, dtype=torch.float64):
        super().__init__(dtype=dtype)
        self.register_buffer("charges", torch.tensor(charges, dtype=dtype))

    def forward(self, positions, mm_positions, mm_charges, mm_mask):
        r2 = ((positions.unsqueeze(1) - mm_positions.unsqueeze(0)) ** 2).sum(dim=2)
        Q = torch.where(mm_mask, mm_charges, torch.zeros_like(mm_charges))
        return self.pair_energy(positions) + 138.935 * (self.charges.unsqueeze(1) * Q / torch.sqrt(r2 + 0.01)).sum()


N_EMBEDDED = 40       # particles: the region ATOMS among the first 10, the rest MM point charges
EMBEDDING_CUTOFF = 0.5


def embedded_inputs(seed=3):
    rng = np.random.default_rng(seed)
    positions = rng.uniform(0, 1.2, size=(N_EMBEDDED, 3))
    charges = rng.uniform(-0.8, 0.8, size=N_EMBEDDED)
    charges[[1, 13, 27]] = 0.0  # uncharged particles are never in the environment
    return positions, [float(q) for q in charges]


def environment_of(positions, charges, cutoff=EMBEDDING_CUTOFF):
    """The MM atoms the force must hand the model, in particle order (non-periodic)."""
    return [j for j in range(N_EMBEDDED) if j not in ATOMS and charges[j] != 0.0
            and np.linalg.norm(positions[ATOMS] - positions[j], axis=1).min() < cutoff]


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    """(model, package path): EmbeddedPair, float64, 6 ML atoms, compiled with embedding=True."""
    _, charges = embedded_inputs()
    model = EmbeddedPair([0.3, -0.2, 0.1, -0.4, 0.25, -0.05])
    path = tmp_path_factory.mktemp("compiled") / "embedded.pt2"
    compileModel(model, len(ATOMS), path, usesDoublePrecision=True, embedding=True)
    return model, str(path)


def embedded_system(path, charges, capacity=0, cutoff=EMBEDDING_CUTOFF):
    system = make_system(N_EMBEDDED)
    force = MLForce(path, ATOMS, usesDoublePrecision=True)
    force.setEmbedding(cutoff, charges)
    force.setEmbeddingCapacity(capacity)
    system.addForce(force)
    return system, force


def direct_embedded(model, positions, charges, env):
    """The reference: the model in PyTorch on the environment the force should find, no padding."""
    pos = torch.tensor(positions[ATOMS], requires_grad=True)
    mm = torch.tensor(positions[env], requires_grad=True)
    q = torch.tensor([charges[j] for j in env], dtype=torch.float64)
    energy = model(pos, mm, q, torch.ones(len(env), dtype=torch.bool))
    energy.backward()
    forces = np.zeros((N_EMBEDDED, 3))
    forces[ATOMS] = -pos.grad.numpy()
    forces[env] = -mm.grad.numpy()
    return energy.item(), forces, model.pair_energy(pos).item()


def embedded_tolerances(model, positions, forces, env):
    """Two float64 code paths: PairMLP's bounds, plus the coupling's sum of n m terms."""
    pairs = len(ATOMS) * len(env)
    coupling = 138.935 * 0.8 * 0.4 / 0.1 * pairs  # every term is at most k |q| |Q| / 0.1 nm
    energy = energy_tolerance(model, positions[ATOMS]) + bound(coupling, torch.float64, pairs)
    force = force_tolerance(model, positions[ATOMS], forces, torch.float64) + bound(np.abs(forces).max() * pairs,
                                                                                  torch.float64, pairs)
    return energy, force


def test_embedded_package_matches_pytorch(embedded, platform):
    """Energy, forces on the region and on the environment, against the model in PyTorch."""
    model, path = embedded
    positions, charges = embedded_inputs()
    env = environment_of(positions, charges)
    assert 5 < len(env) < N_EMBEDDED - len(ATOMS) - 3  # some MM atoms are in, some out
    system, force = embedded_system(path, charges)
    energy, forces, _ = evaluate(system, positions, platform)
    expected, expected_forces, vacuum = direct_embedded(model, positions, charges, env)
    energy_tol, force_tol = embedded_tolerances(model, positions, expected_forces, env)
    assert energy == pytest.approx(expected, abs=energy_tol)
    assert abs(expected - vacuum) > 1.0  # the environment contributes
    assert np.abs(forces - expected_forces).max() <= force_tol
    outside = [j for j in range(N_EMBEDDED) if j not in ATOMS and j not in env]
    assert np.all(forces[outside] == 0)
    assert np.abs(forces[env]).max() > 1.0


def test_embedded_package_forces_are_finite_differences(embedded, platform):
    model, path = embedded
    positions, charges = embedded_inputs()
    env = environment_of(positions, charges)
    system, _ = embedded_system(path, charges)
    # An ML atom and two environment atoms (moving one by 1e-5 nm keeps the environment the same).
    check_finite_differences(system, positions, platform, [ATOMS[0], env[0], env[-1]], 1e-5)


def test_embedded_package_capacity_grows(embedded, platform, capfd):
    """A capacity below the environment grows in the running Context (the package's capacity is a
    free dimension) and says so once; the results are those of the automatic capacity, up to the
    float64 rounding of other padding; an empty environment runs with the minimum capacity."""
    model, path = embedded
    positions, charges = embedded_inputs()
    env = environment_of(positions, charges)
    small, force = embedded_system(path, charges, capacity=4)
    context = openmm.Context(small, openmm.VerletIntegrator(0.001), platform)
    context.setPositions(positions)
    energy, forces, _ = evaluate(small, positions, platform, context=context)
    assert force.getEnvironmentCapacity(context) >= len(env) > 4
    assert capfd.readouterr().err.count("growing it to") == 1
    reference, reference_forces, _ = evaluate(embedded_system(path, charges)[0], positions, platform)
    energy_tol, force_tol = embedded_tolerances(model, positions, reference_forces, env)
    assert energy == pytest.approx(reference, abs=energy_tol)
    assert np.abs(forces - reference_forces).max() <= force_tol
    # Far apart: no MM atom within 0.01 nm of the region.
    empty, force = embedded_system(path, charges, cutoff=0.01)
    context = openmm.Context(empty, openmm.VerletIntegrator(0.001), platform)
    context.setPositions(positions)
    energy, forces, _ = evaluate(empty, positions, platform, context=context)
    assert force.getNumEnvironmentAtoms(context) == 0 and force.getEnvironmentCapacity(context) == 64
    vacuum, vacuum_forces = direct_energy_and_forces(PairMLP(), positions[ATOMS])
    assert energy == pytest.approx(vacuum, abs=energy_tolerance(model, positions[ATOMS]))
    assert np.all(forces[[j for j in range(N_EMBEDDED) if j not in ATOMS]] == 0)


def test_embedded_package_serialization_round_trip(embedded, platform):
    _, path = embedded
    positions, charges = embedded_inputs()
    system, _ = embedded_system(path, charges)
    restored = openmm.XmlSerializer.deserialize(openmm.XmlSerializer.serialize(system))
    e0, f0, _ = evaluate(system, positions, platform)
    e1, f1, _ = evaluate(restored, positions, platform)
    assert e1 == e0 and np.array_equal(f1, f0)  # the same package on the same inputs


def test_embedded_package_rotation_and_translation_invariance(embedded, platform):
    model, path = embedded
    positions, charges = embedded_inputs()
    env = environment_of(positions, charges)
    system, _ = embedded_system(path, charges)
    energy, forces, _ = evaluate(system, positions, platform)
    rotation = random_rotation(np.random.default_rng(5))
    moved = (positions - 0.6) @ rotation.T + np.array([0.3, -1.1, 2.0])
    energy2, forces2, _ = evaluate(system, moved, platform)
    energy_tol, force_tol = embedded_tolerances(model, positions, forces, env)
    assert energy2 == pytest.approx(energy, abs=energy_tol)
    assert np.abs(forces2 - forces @ rotation.T).max() <= force_tol


def test_derivatives_must_match_the_package(periodic):
    _, path = periodic
    box = [openmm.Vec3(3, 0, 0), openmm.Vec3(0, 3, 0), openmm.Vec3(0, 0, 3)]
    system, force = compiled_system(path, double=False, periodic=True, box=box)
    force.addGlobalParameter("scale", 1.0)  # but no addEnergyParameterDerivative("scale")
    message = context_error(system)
    assert "derivatives with respect to (scale)" in message and "asks for ()" in message


def test_damaged_package(plain, tmp_path):
    _, path = plain
    data = open(path, "rb").read()
    damaged = tmp_path / "damaged.pt2"
    damaged.write_bytes(data[: len(data) // 2])
    with pytest.raises(openmm.OpenMMException, match="could not load"):
        MLForce(str(damaged), ATOMS)


def test_compile_model_argument_errors(tmp_path):
    with pytest.raises(TypeError, match="not a TorchScript module"):
        compileModel(torch.jit.script(PairMLP()), 6, tmp_path / "x.pt2")
    with pytest.raises(ValueError, match="numAtoms"):
        compileModel(PairMLP(), 0, tmp_path / "x.pt2")

    class Vector(torch.nn.Module):
        def forward(self, positions):
            return positions.sum(dim=1)

    with pytest.raises(ValueError, match="one scalar energy"):
        compileModel(Vector(), 6, tmp_path / "x.pt2")
    with pytest.raises(ValueError, match="not one of the parameters"):
        compileModel(PairMLP(), 6, tmp_path / "x.pt2", derivatives=["lambda"])


# --- createMixedSystem(compile=True) --------------------------------------------------------------

def mixed_both_ways(prm, crd, system, ligand, model, platform, lambdaValue, **options):
    """[(energy, forces, dE/dlambda) of createMixedSystem(..., interpolate=True) with TorchScript,
    the same compiled] at lambda = lambdaValue."""
    from openmmhybrid import LAMBDA_PARAMETER, createMixedSystem

    results = []
    for compile in (False, True):
        mixed = createMixedSystem(prm.topology, system, ligand, model, interpolate=True, compile=compile, **options)
        context = openmm.Context(mixed, openmm.VerletIntegrator(0.001), platform)
        context.setPeriodicBoxVectors(*crd.boxVectors)
        context.setPositions(crd.positions)
        context.setParameter(LAMBDA_PARAMETER, lambdaValue)
        state = context.getState(getEnergy=True, getForces=True, getParameterDerivatives=True)
        results.append((state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole),
                        state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer),
                        state.getEnergyParameterDerivatives()[LAMBDA_PARAMETER]))
    return results


def test_mixed_system_with_compiled_model(platform):
    """The compiled mixed System gives the same energies, forces and dE/dlambda as the TorchScript one."""
    from conftest import amber

    prm, crd, system = amber("pxylene-water", "pxylene_water.prmtop", "pxylene_water.inpcrd")
    ligand = [a.index for a in prm.topology.atoms() if a.residue.name == "TMP"]
    model = PairMLP(dtype=torch.float32)
    (e0, f0, d0), (e1, f1, d1) = mixed_both_ways(prm, crd, system, ligand, model, platform, 0.4)
    # The ML part: float32, compiled against TorchScript.  The MM part is the same code, but two
    # Contexts on the CPU platform may sum float32 terms over threads in other orders: one float32
    # rounding of the MM energy and forces.
    positions = crd.getPositions(asNumpy=True).value_in_unit(unit.nanometer)[ligand]
    ml_energy = energy_tolerance(model, positions, torch.float32)
    ml_forces = force_tolerance(model, positions, f0[ligand], torch.float32)
    assert e1 == pytest.approx(e0, abs=ml_energy + bound(e0, torch.float32, 1))
    assert np.abs(f1 - f0).max() < ml_forces + bound(np.abs(f0).max(), torch.float32, 1)
    assert d1 == pytest.approx(d0, abs=ml_energy)
    assert abs(d0) > 1.0  # the derivative is not trivially zero


def test_mixed_system_compiled_with_electrostatic_embedding(platform):
    """compile=True with electrostatic embedding: the region model and the default embedding terms
    in one package.  Energies, forces on every atom (the region and its environment) and
    dE/dlambda equal the TorchScript System's within float32 bounds: the model's, and the float32
    pair sums over the n x m environment (test_embedding's bound of the same sums)."""
    from conftest import amber
    from openmmhybrid.embedding import systemCharges
    from test_embedding import coupling_sums, polarization_sums

    prm, crd, system = amber("pxylene-water", "pxylene_water.prmtop", "pxylene_water.inpcrd")
    ligand = [a.index for a in prm.topology.atoms() if a.residue.name == "TMP"]
    model = PairMLP(dtype=torch.float32)
    (e0, f0, d0), (e1, f1, d1) = mixed_both_ways(prm, crd, system, ligand, model, platform, 0.6,
                                                 embedding="electrostatic")
    positions = crd.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
    box = np.array([v.value_in_unit(unit.nanometer) for v in crd.boxVectors])
    charges = systemCharges(system)
    numbers = [a.element.atomic_number for a in prm.topology.atoms() if a.index in ligand]
    coupling = coupling_sums(positions, ligand, [charges[i] for i in ligand], charges, 1.0, 0.8, box)
    polarization = polarization_sums(positions, ligand, numbers, charges, 1.0, 0.8, box)
    magnitude, terms = coupling.magnitude + polarization.magnitude, coupling.terms + polarization.terms
    ml_energy = energy_tolerance(model, positions[ligand], torch.float32) + bound(magnitude, torch.float32, terms)
    ml_forces = (force_tolerance(model, positions[ligand], f0[ligand], torch.float32)
                 + bound(np.abs(f0).max(), torch.float32, terms))
    # The MM part: one float32 rounding of its energy and forces (threads may sum in other orders).
    assert e1 == pytest.approx(e0, abs=ml_energy + bound(e0, torch.float32, 1))
    assert np.abs(f1 - f0).max() < ml_forces + bound(np.abs(f0).max(), torch.float32, 1)
    assert d1 == pytest.approx(d0, abs=ml_energy)
    assert abs(d0) > 1.0


def test_mixed_system_compile_refusals():
    from conftest import amber
    from openmmhybrid import createMixedSystem

    prm, crd, system = amber("pxylene-water", "pxylene_water.prmtop", "pxylene_water.inpcrd")
    ligand = [a.index for a in prm.topology.atoms() if a.residue.name == "TMP"]
    with pytest.raises(ValueError, match="TorchScript model cannot be compiled"):
        createMixedSystem(prm.topology, system, ligand, torch.jit.script(PairMLP()), compile=True)
