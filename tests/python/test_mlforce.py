"""Tests of openmmhybrid.MLForce on every CPU-side platform (Reference, CPU).

Every expected number comes from evaluating the same model directly in PyTorch, from a closed
form, or from finite differences of the energy.
"""
import copy
import os
import pickle

import numpy as np
import openmm
import openmm.unit as unit
import pytest
import torch

import openmmhybrid
from openmmhybrid import MLForce
from conftest import amber
from precision import bound
from models import (BadForces, BadOutput, Constant, FirstDistance, Float64Linear, PairMLP, PeriodicPairMLP,
                    ReturnsForces, ScaledPairMLP, TwoInputs)

KJ = unit.kilojoule_per_mole
NM = unit.nanometer


def make_system(n, box=None):
    system = openmm.System()
    for _ in range(n):
        system.addParticle(12.0)
    if box is not None:
        system.setDefaultPeriodicBoxVectors(*box)
    return system


def evaluate(system, positions, platform, groups=-1, derivatives=False, context=None):
    """Energy (kJ/mol), forces (kJ/mol/nm, numpy) and parameter derivatives of a System."""
    if context is None:
        context = openmm.Context(system, openmm.VerletIntegrator(0.001), platform)
        context.setPositions(positions)
    state = context.getState(getEnergy=True, getForces=True, getParameterDerivatives=derivatives, groups=groups)
    energy = state.getPotentialEnergy().value_in_unit(KJ)
    forces = state.getForces(asNumpy=True).value_in_unit(KJ / NM)
    return energy, forces, (state.getEnergyParameterDerivatives() if derivatives else None)


def random_positions(n, seed, scale=0.6):
    return np.random.default_rng(seed).uniform(0, scale, size=(n, 3))


def direct_energy_and_forces(model, positions, dtype=torch.float64, *args):
    """The reference: the model evaluated directly in PyTorch."""
    pos = torch.tensor(positions, dtype=dtype, requires_grad=True)
    energy = model(pos, *args)
    energy.backward()
    return energy.item(), -pos.grad.numpy().astype(np.float64)


ATOMS = [7, 2, 4, 0, 5, 9]  # a region in arbitrary order inside a 10-particle system


def energy_tolerance(model, positions, dtype=torch.float64):
    """Two code paths (the kernel's TorchScript and eager PyTorch) computing PairMLP's energy in dtype."""
    return bound(model.magnitude(positions), dtype, model.rounding_terms(len(positions)))


def force_tolerance(model, positions, forces, dtype=torch.float64):
    """The same for forces: a force component sums the gradients of n - 1 pairs, each up to the
    largest force."""
    n = len(positions)
    return bound(np.abs(forces).max() * (n - 1), dtype, model.rounding_terms(n))


def ml_system(model, n=10, atoms=ATOMS, double=True, **kwargs):
    system = make_system(n, kwargs.pop("box", None))
    force = MLForce(model, atoms, **kwargs)
    force.setUsesDoublePrecision(double)
    system.addForce(force)
    return system, force


# --- Energy, forces, invariance ------------------------------------------------------------------

def test_energy_and_forces_match_pytorch(platform):
    model = PairMLP()
    system, _ = ml_system(model)
    pos = random_positions(10, 1)
    energy, forces, _ = evaluate(system, pos, platform)
    expected_energy, expected_forces = direct_energy_and_forces(model, pos[ATOMS])
    assert abs(expected_energy) > 1.0  # the test model is not trivially zero here
    assert energy == pytest.approx(expected_energy, abs=energy_tolerance(model, pos[ATOMS]))
    np.testing.assert_allclose(forces[ATOMS], expected_forces, rtol=0,
                               atol=force_tolerance(model, pos[ATOMS], expected_forces))
    others = [i for i in range(10) if i not in ATOMS]
    np.testing.assert_array_equal(forces[others], 0.0)  # nothing is written there


def test_float32_inputs(platform):
    model = PairMLP(dtype=torch.float32)
    system, force = ml_system(model, double=False)
    assert not force.getUsesDoublePrecision()
    pos = random_positions(10, 2)
    energy, forces, _ = evaluate(system, pos, platform)
    expected_energy, expected_forces = direct_energy_and_forces(PairMLP(dtype=torch.float64), pos[ATOMS])
    # float32 against float64: positions and weights rounded to float32, float32 arithmetic.
    assert energy == pytest.approx(expected_energy, abs=energy_tolerance(model, pos[ATOMS], torch.float32))
    np.testing.assert_allclose(forces[ATOMS], expected_forces, rtol=0,
                               atol=force_tolerance(model, pos[ATOMS], expected_forces, torch.float32))


def check_finite_differences(system, pos, platform, atoms, tolerance, h=1e-5):
    """Each force component on `atoms` against the central difference of the energy (float64:
    the truncation error h^2/6 times the third derivative, and the rounding eps64 |E| / h, are
    both about 1e-10 here, far below tolerance)."""
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), platform)
    context.setPositions(pos)
    _, forces, _ = evaluate(system, pos, platform, context=context)
    for atom in atoms:
        for k in range(3):
            plus, minus = pos.copy(), pos.copy()
            plus[atom, k] += h
            minus[atom, k] -= h
            context.setPositions(plus)
            e_plus = evaluate(system, plus, platform, context=context)[0]
            context.setPositions(minus)
            e_minus = evaluate(system, minus, platform, context=context)[0]
            assert -(e_plus - e_minus) / (2 * h) == pytest.approx(forces[atom, k], rel=tolerance, abs=tolerance)


def test_forces_are_finite_differences_of_energy(platform):
    system, _ = ml_system(PairMLP())
    check_finite_differences(system, random_positions(10, 3), platform, ATOMS[:3], 1e-6)


def random_rotation(rng):
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] *= -1
    return q


def test_rotation_and_translation_invariance(platform):
    system, _ = ml_system(PairMLP())
    pos = random_positions(10, 4)
    rng = np.random.default_rng(5)
    rotation, shift = random_rotation(rng), rng.normal(size=3) * 3.0
    energy, forces, _ = evaluate(system, pos, platform)
    moved = pos @ rotation.T + shift
    energy2, forces2, _ = evaluate(system, moved, platform)
    # Same code, positions rounded differently (up to |x| eps64 each, moving each pair distance):
    # the pair terms' rounding bound at the scale of the moved coordinates.
    model, scale = PairMLP(), max(1.0, np.abs(moved).max())
    assert energy2 == pytest.approx(energy, abs=scale * energy_tolerance(model, pos[ATOMS]))
    np.testing.assert_allclose(forces2, forces @ rotation.T, rtol=0,
                               atol=scale * force_tolerance(model, pos[ATOMS], forces[ATOMS]))


# --- Periodic systems ----------------------------------------------------------------------------

def test_periodic_region_split_across_box_edge(platform):
    a, b, c = openmm.Vec3(2.5, 0, 0), openmm.Vec3(0.4, 2.5, 0), openmm.Vec3(-0.3, 0.5, 2.5)
    box = np.array([[2.5, 0, 0], [0.4, 2.5, 0], [-0.3, 0.5, 2.5]])
    atoms = [0, 1, 2, 3, 4]
    model = PeriodicPairMLP()
    system, force = ml_system(model, n=6, atoms=atoms, box=(a, b, c), usesPeriodicBoundaryConditions=True)
    assert force.usesPeriodicBoundaryConditions()
    whole = np.array([[2.45, 2.48, 2.47], [2.58, 2.49, 2.46], [2.47, 2.59, 2.55], [2.55, 2.57, 2.60],
                      [2.40, 2.55, 2.52], [1.0, 1.0, 1.0]])
    expected, expected_forces = direct_energy_and_forces(model, whole[atoms], torch.float64, torch.tensor(box))
    split = whole.copy()
    split[1] -= box[0]
    split[2] -= box[1] + box[2]
    split[3] += box[0] - box[1] - 2 * box[2]
    split[4] += 3 * box[2]
    for positions in (whole, split):
        energy, forces, _ = evaluate(system, positions, platform)
        # Kernel against eager, and a region unwrapped from coordinates up to 10 nm (box rounding).
        scale = max(1.0, np.abs(positions).max())
        tolerance = scale * energy_tolerance(model, whole[atoms]) + bound(5.0 * np.trace(box), torch.float64, 3)
        assert energy == pytest.approx(expected, abs=tolerance)
        np.testing.assert_allclose(forces[atoms], expected_forces, rtol=0,
                                   atol=scale * force_tolerance(model, whole[atoms], expected_forces))


# --- Global parameters and derivatives ------------------------------------------------------------

def test_global_parameters_and_derivatives(platform):
    model = ScaledPairMLP()
    system, force = ml_system(model)
    force.addGlobalParameter("scale", 1.5)
    force.addGlobalParameter("shift", 1.0 * unit.kilocalorie_per_mole)  # a Quantity, stored in kJ/mol
    assert force.getGlobalParameterDefaultValue(1) == pytest.approx(4.184)
    force.addEnergyParameterDerivative("scale")
    force.addEnergyParameterDerivative("shift")
    pos = random_positions(10, 6)
    pair, _ = direct_energy_and_forces(PairMLP(), pos[ATOMS])
    # Kernel against eager, float64; the parameters scale the pair terms (|scale| <= 1.5).
    tolerance = 1.5 * energy_tolerance(PairMLP(), pos[ATOMS]) + bound(4.184, torch.float64)
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), platform)
    context.setPositions(pos)
    energy, _, derivs = evaluate(system, pos, platform, derivatives=True, context=context)
    assert energy == pytest.approx(1.5 * pair + 4.184, abs=tolerance)
    assert derivs["scale"] == pytest.approx(pair, abs=tolerance)
    assert derivs["shift"] == 1.0  # d(scale * E + shift)/dshift: autograd's seed, exactly one
    context.setParameter("scale", -0.5)
    context.setParameter("shift", 2.0)
    energy, forces, derivs = evaluate(system, pos, platform, derivatives=True, context=context)
    assert energy == pytest.approx(-0.5 * pair + 2.0, abs=tolerance)
    _, pair_forces = direct_energy_and_forces(PairMLP(), pos[ATOMS])
    np.testing.assert_allclose(forces[ATOMS], -0.5 * pair_forces, rtol=0,
                               atol=force_tolerance(PairMLP(), pos[ATOMS], pair_forces))
    # dE/dscale against a finite difference: the energy is linear in scale, so only rounding,
    # eps64 |E| / h ~ 1e-10 relative, separates them.
    h = 1e-6
    context.setParameter("scale", -0.5 + h)
    e_plus = evaluate(system, pos, platform, context=context)[0]
    context.setParameter("scale", -0.5 - h)
    e_minus = evaluate(system, pos, platform, context=context)[0]
    assert (e_plus - e_minus) / (2 * h) == pytest.approx(derivs["scale"], rel=1e-6)


def test_model_outputs_forces(platform):
    system, force = ml_system(ReturnsForces(), atoms=[3, 1, 8], outputsForces=True)
    assert force.getOutputsForces()
    pos = random_positions(10, 7)
    energy, forces, _ = evaluate(system, pos, platform)
    expected = (pos[[3, 1, 8]] ** 2).sum()
    assert energy == pytest.approx(expected, abs=bound(expected, torch.float64, 9))  # 9 squares, another order
    for i, atom in enumerate([3, 1, 8]):
        np.testing.assert_array_equal(forces[atom], [i, -i, 2 * i])  # small integers, copied unchanged


# --- Objects, serialization, copies, contexts ------------------------------------------------------

def test_is_a_real_openmm_force_and_cast():
    system, force = ml_system(PairMLP())
    assert isinstance(force, openmm.Force)
    assert not force.thisown  # the System owns it now
    generic = system.getForce(0)
    assert type(generic) is openmm.Force
    typed = MLForce.cast(generic)
    assert isinstance(typed, MLForce) and typed.getAtoms() == ATOMS
    typed.setForceGroup(5)
    assert system.getForce(0).getForceGroup() == 5  # the same C++ object
    bond = openmm.HarmonicBondForce()
    assert not MLForce.isinstance(bond)
    with pytest.raises(TypeError, match="not an MLForce"):
        MLForce.cast(bond)


def test_serialization_round_trip(platform):
    model = ScaledPairMLP()
    system, force = ml_system(model)
    force.setForceGroup(2)
    force.setName("ligand")
    force.addGlobalParameter("scale", 0.7)
    force.addGlobalParameter("shift", 0.0)
    force.addEnergyParameterDerivative("scale")
    force.setProperty("useCUDAGraphs", True)
    xml = openmm.XmlSerializer.serialize(system)
    assert "<Model" in xml and "base64" in xml
    restored_system = openmm.XmlSerializer.deserialize(xml)
    restored = MLForce.cast(restored_system.getForce(0))
    assert restored.getAtoms() == ATOMS
    assert restored.getModelData() == force.getModelData()
    assert (restored.getForceGroup(), restored.getName()) == (2, "ligand")
    assert restored.getProperties() == {"useCUDAGraphs": "true"}
    assert restored.getEnergyParameterDerivativeName(0) == "scale"
    pos = random_positions(10, 8)
    e1, f1, d1 = evaluate(system, pos, platform, derivatives=True)
    e2, f2, d2 = evaluate(restored_system, pos, platform, derivatives=True)
    assert e1 == e2 and d1["scale"] == d2["scale"]  # same model, same inputs: bitwise
    np.testing.assert_array_equal(f1, f2)
    # The force alone, too
    force_xml = openmm.XmlSerializer.serialize(force)
    assert MLForce.cast(openmm.XmlSerializer.deserialize(force_xml)).getAtoms() == ATOMS


def test_deepcopy_and_pickle(platform):
    system, force = ml_system(PairMLP())
    pos = random_positions(10, 9)
    expected = evaluate(system, pos, platform)[0]
    force_copy = copy.deepcopy(force)
    assert isinstance(force_copy, MLForce) and force_copy.getAtoms() == ATOMS
    assert force_copy.getModelData() == force.getModelData()
    pickled = pickle.loads(pickle.dumps(force_copy))
    assert isinstance(pickled, MLForce) and pickled.getAtoms() == ATOMS
    for other in (copy.deepcopy(system), pickle.loads(pickle.dumps(system))):
        assert evaluate(other, pos, platform)[0] == expected
    system2 = make_system(10)
    system2.addForce(pickled)
    assert evaluate(system2, pos, platform)[0] == expected


def test_two_contexts_of_one_system(platform):
    model = PairMLP()
    system, _ = ml_system(model)
    contexts = [openmm.Context(system, openmm.VerletIntegrator(0.001), platform) for _ in range(2)]
    positions = [random_positions(10, 10), random_positions(10, 11)]
    for context, pos in zip(contexts, positions):
        context.setPositions(pos)
    for _ in range(2):  # interleaved evaluations stay independent
        for context, pos in zip(contexts, positions):
            energy = evaluate(system, pos, platform, context=context)[0]
            assert energy == pytest.approx(direct_energy_and_forces(model, pos[ATOMS])[0],
                                           abs=energy_tolerance(model, pos[ATOMS]))


def test_model_from_file_and_module_agree(tmp_path, platform):
    model = torch.jit.script(PairMLP())
    path = tmp_path / "model.pt"
    torch.jit.save(model, str(path))
    pos = random_positions(10, 12)
    energies = []
    for source in (str(path), path, model, PairMLP()):
        system, force = ml_system(source)
        energies.append(evaluate(system, pos, platform)[0])
    assert MLForce(str(path), [0]).getFile() == str(path)
    assert len(set(energies)) == 1  # one scripted model whatever the source: bitwise
    restored = MLForce(str(path), [0]).getModel()
    assert isinstance(restored, torch.jit.ScriptModule)


def test_force_groups_beside_mm(platform):
    system, force = ml_system(PairMLP())
    force.setForceGroup(3)
    bond = openmm.HarmonicBondForce()
    bond.addBond(1, 3, 0.2, 500.0)
    system.addForce(bond)
    pos = random_positions(10, 13)
    ml = direct_energy_and_forces(PairMLP(), pos[ATOMS])[0]
    r = np.linalg.norm(pos[1] - pos[3])
    mm = 0.5 * 500.0 * (r - 0.2) ** 2
    ml_tolerance = energy_tolerance(PairMLP(), pos[ATOMS])
    mm_tolerance = bound(mm, torch.float64, 4)  # one bond: a distance and a square
    assert evaluate(system, pos, platform, groups={3})[0] == pytest.approx(ml, abs=ml_tolerance)
    assert evaluate(system, pos, platform, groups={0})[0] == pytest.approx(mm, abs=mm_tolerance)
    assert evaluate(system, pos, platform)[0] == pytest.approx(ml + mm, abs=ml_tolerance + mm_tolerance)


def test_beside_mm_forces_in_pxylene_water(platform):
    """The ML force on p-xylene next to the full Amber/PME system of p-xylene in water."""
    prmtop, inpcrd, system = amber("pxylene-water", "pxylene_water.prmtop", "pxylene_water.inpcrd")
    ligand = [atom.index for atom in prmtop.topology.atoms() if atom.residue.name == "TMP"]
    assert len(ligand) == 18
    model = PairMLP()
    system.addForce(MLForce(model, ligand, usesDoublePrecision=True))
    system.getForce(system.getNumForces() - 1).setForceGroup(1)
    integrator = openmm.LangevinMiddleIntegrator(300 * unit.kelvin, 1 / unit.picosecond, 0.001 * unit.picoseconds)
    integrator.setRandomNumberSeed(1)
    context = openmm.Context(system, integrator, platform)
    context.setPeriodicBoxVectors(*inpcrd.boxVectors)
    context.setPositions(inpcrd.positions)
    pos = context.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(NM)
    ml, ml_forces = direct_energy_and_forces(model, pos[ligand])
    state = context.getState(getEnergy=True, getForces=True, groups={1})
    assert state.getPotentialEnergy().value_in_unit(KJ) == pytest.approx(ml, abs=energy_tolerance(model, pos[ligand]))
    total = context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(KJ)
    mm = context.getState(getEnergy=True, groups={0}).getPotentialEnergy().value_in_unit(KJ)
    # The MM energy is computed twice: the CPU platform sums its float32 nonbonded terms over
    # threads in an order that can change between calls (measured 1.5e-5 kJ/mol): one float32
    # rounding of the MM energy.  The ML energy, far larger than that, must be in the total once.
    tolerance = bound(mm, torch.float32, 1)
    assert abs(ml) > 10 * tolerance
    assert total == pytest.approx(mm + ml, abs=tolerance)
    integrator.step(20)
    final = context.getState(getEnergy=True)
    assert np.isfinite(final.getPotentialEnergy().value_in_unit(KJ))


# --- Bad input ---------------------------------------------------------------------------------------

def context_for(force, n=10, positions=None):
    system = make_system(n)
    system.addForce(force)
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(random_positions(n, 14) if positions is None else positions)
    return context


def test_bad_atom_lists():
    with pytest.raises(openmm.OpenMMException, match="empty"):
        MLForce(PairMLP(), [])
    with pytest.raises(openmm.OpenMMException, match="appears more than once"):
        MLForce(PairMLP(), [0, 1, 2, 1])
    with pytest.raises(openmm.OpenMMException, match="negative"):
        MLForce(PairMLP(), [0, -3])
    with pytest.raises(TypeError, match="not an integer"):
        MLForce(PairMLP(), [0, 1.5])
    with pytest.raises(openmm.OpenMMException, match=r"atom index 12 .* out of range: the System has 10 particles"):
        context_for(MLForce(PairMLP(), [0, 12]))
    force = MLForce(PairMLP(), [0, 1])
    with pytest.raises(openmm.OpenMMException, match="appears more than once"):
        force.setAtoms([3, 3])
    assert force.getAtoms() == [0, 1]


def test_bad_model_sources(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        MLForce(str(tmp_path / "missing.pt"), [0])
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(openmm.OpenMMException, match="could not load a TorchScript model"):
        MLForce(str(corrupt), [0])
    with pytest.raises(TypeError, match="must be a path"):
        MLForce(42, [0])

    class NotScriptable(torch.nn.Module):
        def forward(self, positions):
            return torch.tensor(np.sum(positions.detach().numpy()))

    with pytest.raises(ValueError, match="could not convert"):
        MLForce(NotScriptable(), [0])


def test_wrong_signature():
    with pytest.raises(openmm.OpenMMException, match=r"forward\(positions, other\) takes 2 arguments, but the force passes 1"):
        context_for(MLForce(TwoInputs(), [0, 1]))
    force = MLForce(PairMLP(), [0, 1], usesPeriodicBoundaryConditions=True)
    with pytest.raises(openmm.OpenMMException, match=r"takes 1 argument, but the force passes 2: \(positions, box\)"):
        context_for(force)
    force = MLForce(PairMLP(), [0, 1])
    force.addGlobalParameter("lambda", 1.0)
    with pytest.raises(openmm.OpenMMException, match=r"passes 2: \(positions, lambda\)"):
        context_for(force)


@pytest.mark.parametrize("kind, message", [
    ("per_atom", r"single floating point energy.*shape \[2\]"),
    ("integer", "single floating point energy.*Long"),
    ("nan", "non-finite energy"),
    ("inf", "non-finite energy"),
])
def test_bad_outputs(kind, message):
    context = context_for(MLForce(BadOutput(kind), [0, 1]))
    with pytest.raises(openmm.OpenMMException, match=message):
        context.getState(getEnergy=True)
    # Dynamics stops with the same error instead of silently going on.
    with pytest.raises(openmm.OpenMMException, match=message):
        context.getIntegrator().step(1)


def test_bad_force_outputs():
    with pytest.raises(openmm.OpenMMException, match=r"forces the model returned have shape \[2, 2\]"):
        context_for(MLForce(BadForces(), [0, 1], outputsForces=True)).getState(getForces=True)
    with pytest.raises(openmm.OpenMMException, match="must return a tuple"):
        context_for(MLForce(PairMLP(), [0, 1], outputsForces=True)).getState(getForces=True)
    with pytest.raises(openmm.OpenMMException, match=r"call setOutputsForces\(True\)"):
        context_for(MLForce(ReturnsForces(), [0, 1])).getState(getForces=True)


def test_dtype_mismatch_hint():
    # A float64 model fed float32 inputs fails inside the model; the message says how to fix it.
    with pytest.raises(openmm.OpenMMException, match=r"setUsesDoublePrecision\(True\)"):
        context_for(MLForce(Float64Linear(), [0, 1, 2])).getState(getForces=True)


def test_bad_parameters_and_properties():
    force = MLForce(PairMLP(), [0, 1])
    with pytest.raises(openmm.OpenMMException, match="not a global parameter"):
        force.addEnergyParameterDerivative("x")
    force.addGlobalParameter("x", 1.0)
    with pytest.raises(openmm.OpenMMException, match="already been added"):
        force.addGlobalParameter("x", 2.0)
    with pytest.raises(openmm.OpenMMException, match="out of range"):
        force.getGlobalParameterName(5)
    with pytest.raises(openmm.OpenMMException, match="unknown property 'colour'"):
        force.setProperty("colour", "blue")
    with pytest.raises(openmm.OpenMMException, match="must be 'true' or 'false'"):
        force.setProperty("useCUDAGraphs", "maybe")
    assert "useCUDAGraphs" in MLForce.getSupportedProperties()
    with pytest.raises(openmm.OpenMMException, match="modelThreads must be a non-negative integer"):
        force.setProperty("modelThreads", "-1")
    with pytest.raises(openmm.OpenMMException, match="modelThreads must be a non-negative integer"):
        force.setProperty("modelThreads", "two")


@pytest.mark.parametrize("threads", ["0", "1", "2"])
def test_model_threads(platform, threads):
    """modelThreads changes where the model runs, not its result, and leaves the caller's thread
    count as it was."""
    model = PairMLP()
    pos = random_positions(10, 8)
    system, force = ml_system(model)
    expected = evaluate(system, pos, platform)
    system, force = ml_system(model)
    force.setProperty("modelThreads", threads)
    before = torch.get_num_threads()
    energy, forces, _ = evaluate(system, pos, platform)
    assert torch.get_num_threads() == before
    # Another thread count reorders the parallel reductions: a second code path in float64.
    assert energy == pytest.approx(expected[0], abs=energy_tolerance(model, pos[ATOMS]))
    np.testing.assert_allclose(forces, expected[1], rtol=0, atol=force_tolerance(model, pos[ATOMS], expected[1][ATOMS]))


def test_nan_positions_give_an_error_not_a_crash():
    pos = random_positions(10, 15)
    pos[1] = pos[0]  # two ML atoms on top of each other: the norm's gradient is NaN
    context = context_for(MLForce(FirstDistance(), [0, 1, 2]), positions=pos)
    with pytest.raises(openmm.OpenMMException, match="non-finite force"):
        context.getState(getForces=True)


def test_constant_model_gives_zero_forces(platform):
    system, _ = ml_system(Constant())
    energy, forces, _ = evaluate(system, random_positions(10, 16), platform)
    assert energy == 1.0  # 0 * x + 1 is exact
    np.testing.assert_array_equal(forces, 0.0)


def test_build_info_is_recorded():
    assert openmmhybrid.build_info["openmm"] == openmm.version.short_version
    assert openmmhybrid.build_info["torch"].split("+")[0] == torch.__version__.split("+")[0]
    assert os.path.isdir(openmmhybrid.plugin_directory())
