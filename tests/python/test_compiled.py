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


def test_embedding_is_refused(plain):
    _, path = plain
    system, force = compiled_system(path)
    force.setEmbedding(1.0, [0.1] * 10)
    assert "embedding is not available with compiled models" in context_error(system)


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

def test_mixed_system_with_compiled_model(platform):
    """The compiled mixed System gives the same energies, forces and dE/dlambda as the TorchScript one."""
    from conftest import amber
    from openmmhybrid import LAMBDA_PARAMETER, createMixedSystem

    prm, crd, system = amber("pxylene-water", "pxylene_water.prmtop", "pxylene_water.inpcrd")
    ligand = [a.index for a in prm.topology.atoms() if a.residue.name == "TMP"]
    model = PairMLP(dtype=torch.float32)
    results = []
    for compile in (False, True):
        mixed = createMixedSystem(prm.topology, system, ligand, model, interpolate=True, compile=compile)
        context = openmm.Context(mixed, openmm.VerletIntegrator(0.001), platform)
        context.setPeriodicBoxVectors(*crd.boxVectors)
        context.setPositions(crd.positions)
        context.setParameter(LAMBDA_PARAMETER, 0.4)
        state = context.getState(getEnergy=True, getForces=True, getParameterDerivatives=True)
        results.append((state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole),
                        state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer),
                        state.getEnergyParameterDerivatives()[LAMBDA_PARAMETER]))
    (e0, f0, d0), (e1, f1, d1) = results
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


def test_mixed_system_compile_refusals():
    from conftest import amber
    from openmmhybrid import createMixedSystem

    prm, crd, system = amber("pxylene-water", "pxylene_water.prmtop", "pxylene_water.inpcrd")
    ligand = [a.index for a in prm.topology.atoms() if a.residue.name == "TMP"]
    with pytest.raises(ValueError, match="electrostatic embedding"):
        createMixedSystem(prm.topology, system, ligand, PairMLP(), embedding="electrostatic", compile=True)
    with pytest.raises(ValueError, match="TorchScript model cannot be compiled"):
        createMixedSystem(prm.topology, system, ligand, torch.jit.script(PairMLP()), compile=True)
