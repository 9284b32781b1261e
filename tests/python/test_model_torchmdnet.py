"""Tests of openmmhybrid.models.torchmdnet: TorchMD-Net TensorNet checkpoints in an MLForce.

The checkpoints are written by torchmd-net and Lightning themselves with random weights
(zoo_torchmdnet.py: tiny TensorNets, a few thousand parameters).  The references are
torchmd-net's own evaluation of the same file (``load_model`` and its forward, with its own
neighbour list): its pure-PyTorch TensorNet path (the one it takes without warp-lang) and its
default warp-kernel path, plus finite differences, symmetry, and MLForce inside OpenMM.
Molecules: alanine dipeptide (22 atoms, H/C/N/O, 0.88 nm long, so pairs lie beyond TensorNet's
0.5 nm cutoff) and p-xylene (18 atoms, H/C) in examples/data.
"""
import sys
import warnings

import numpy as np
import openmm
import openmm.unit as unit
import pytest
import torch

torchmdnet = pytest.importorskip("torchmdnet", reason="the TorchMD-Net adapter reads checkpoints with torchmd-net "
                                                      "(pip install torchmd-net==3.1.0); not installed")

import openmmhybrid  # noqa: E402
from openmmhybrid.models import EV_TO_KJ_PER_MOL  # noqa: E402
from openmmhybrid.models import torchmdnet as tmd  # noqa: E402
from precision import EPS64, bound, centralDifference, networkTerms  # noqa: E402
import zoo_torchmdnet as zoo  # noqa: E402
from adapter_checks import (ZeroModel, energyAndGradient, mlforceState, oneResidueTopology,  # noqa: E402
                            rigidlyMoved, xmlRoundTripStates)

torch.set_num_threads(1)

KJ = unit.kilojoule_per_mole
NM = unit.nanometer
ANGSTROM_PER_NM = 10.0


# ---------------------------------------------------------------------------------------------
# Fixtures and helpers

@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Tiny TensorNet checkpoints: trained with a total charge in float32 and float64, without one
    (float32), and an SO(3) one (float64)."""
    folder = tmp_path_factory.mktemp("torchmdnet")
    return {
        "f32": zoo.tensornet(folder / "f32.ckpt", precision=32, seed=1),
        "f64": zoo.tensornet(folder / "f64.ckpt", precision=64, seed=2),
        "neutral": zoo.tensornet(folder / "neutral.ckpt", precision=32, charge=False, seed=3),
        "so3": zoo.tensornet(folder / "so3.ckpt", precision=64, group="SO(3)", seed=4),
    }


@pytest.fixture(scope="module")
def peptide(dipeptide):
    """(topology, atoms, atomic numbers, positions in nm) of the alanine dipeptide (22 atoms)."""
    prm, crd, _ = dipeptide
    atoms = openmmhybrid.selectAtoms(prm.topology, selection="not water")
    positions = np.asarray(crd.getPositions(asNumpy=True).value_in_unit(NM), dtype=np.float64)[atoms]
    numbers = [a.element.atomic_number for a in prm.topology.atoms() if a.index in set(atoms)]
    return prm.topology, atoms, numbers, positions


def library(path, numbers, positions, charge, dtype, pure=False, monkeypatch=None):
    """torchmd-net's own evaluation of the file: load_model and its forward with its own neighbour
    list.  (energy in kJ/mol, dE/dx in kJ/mol/nm).  ``pure``: its pure-PyTorch TensorNet path (what
    it runs without warp-lang), else its default warp kernels."""
    from torchmdnet.models import tensornet
    from torchmdnet.models.model import load_model
    if pure:
        for name in ("compose_tensor", "decompose_tensor", "tensor_matmul_o3", "tensor_matmul_so3"):
            monkeypatch.setattr(tensornet, name, getattr(tensornet, "_" + name))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = load_model(path)
    if pure:
        rep = model.representation_model
        for module in [rep, rep.tensor_embedding, *rep.layers]:
            module.opt = False
    energy, negative = model(torch.tensor(numbers), torch.tensor(positions * ANGSTROM_PER_NM, dtype=dtype),
                             q=torch.tensor([float(charge)], dtype=dtype))
    return float(energy.detach()) * EV_TO_KJ_PER_MOL, -negative.detach().numpy() * EV_TO_KJ_PER_MOL * ANGSTROM_PER_NM


def layers(model):
    """Layers of dot products between the positions and an atomic energy: embedding (radial
    projection, pair embedding, 2 scalar layers, tensor layer), 5 per interaction, 3 at the end."""
    return 5 + 5 * len(model.layers) + 3


def width(model, n):
    """The widest sum: a 3F-input layer, or a message summed over n partners."""
    return max(3 * model.hidden, n)


def energyScale(model, positions):
    """sum |E_i| + |mean| in kJ/mol: the magnitudes added up into the energy (atomic energies
    with their reference energies, in the model's dtype)."""
    with torch.no_grad():
        atomic = model.atomicEnergies(torch.tensor(positions * ANGSTROM_PER_NM, dtype=model.dtype))
    return (atomic.abs().sum().item() + abs(model.shift.item())) * EV_TO_KJ_PER_MOL


def pathsEnergyBound(model, positions, dtype):
    """Two code paths, same dtype: each of the n atomic energies through the layers of sums of
    width() terms, at the scale of what is added up."""
    n = len(positions)
    return bound(energyScale(model, positions), dtype, networkTerms(width(model, n), layers(model), n))


def pathsForceBound(model, gradient, dtype):
    """Two code paths, same dtype: a force component sums the gradients of the n atomic energies
    (each up to the largest force) back through the layers."""
    n = len(gradient)
    return bound(np.abs(gradient).max() * n, dtype, networkTerms(width(model, n), layers(model)))


def beyondCutoff(positions, cutoffNm=0.5):
    """How many ordered pairs are at least the cutoff apart."""
    d = np.linalg.norm(positions[:, None] - positions[None], axis=-1)
    return int((d >= cutoffNm).sum())


# ---------------------------------------------------------------------------------------------
# 1. Against torchmd-net's own evaluation

@pytest.mark.parametrize("key,dtype", [("f32", torch.float32), ("f64", torch.float64), ("so3", torch.float64)])
def test_matches_library_pure_pytorch_path(key, dtype, files, peptide, monkeypatch):
    """n = 22 (dipeptide, charge +1), both dtypes and both TensorNet groups: energy and forces of
    the module (eager and scripted) against torchmd-net's forward on its own neighbour list, in its
    pure-PyTorch TensorNet path (the same equations, another order of every sum): bounds of two code
    paths, scale sum |E_i| for the energy and n max |F| for a force component.  The dipeptide has
    pairs beyond the 0.5 nm cutoff, which the library's list drops and the module masks."""
    topology, atoms, numbers, positions = peptide
    assert beyondCutoff(positions) > 50
    model = tmd.create(topology, atoms, modelPath=files[key], charge=1)
    assert model.dtype == dtype
    energy, gradient = energyAndGradient(model, positions, dtype)
    scripted = torch.jit.script(model)
    energyS, gradientS = energyAndGradient(scripted, positions, dtype)
    expected, expectedGradient = library(files[key], numbers, positions, 1, dtype, pure=True, monkeypatch=monkeypatch)
    eBound, fBound = pathsEnergyBound(model, positions, dtype), pathsForceBound(model, expectedGradient, dtype)
    print(f"{key}: |dE| = {abs(energy.item() - expected):.1e} kJ/mol (bound {eBound:.1e}), max |dF| = "
          f"{np.abs(gradient - expectedGradient).max():.1e} kJ/mol/nm (bound {fBound:.1e})")
    for e, g in ((energy, gradient), (energyS, gradientS)):
        assert abs(e.item() - expected) <= eBound
        np.testing.assert_allclose(g, expectedGradient, rtol=0, atol=fBound)
    assert np.abs(expectedGradient).max() > 10  # a force worth comparing


@pytest.mark.parametrize("key,dtype", [("f32", torch.float32), ("f64", torch.float64)])
def test_matches_library_warp_path(key, dtype, files, peptide):
    """n = 22: against torchmd-net's default evaluation (load_model's forward with warp kernels
    for the neighbour list and TensorNet's tensor algebra).  The warp kernels of torchmd-net 3.1.0
    round part of a float64 evaluation in float32 (measured: up to 4e-10 relative to the energy,
    6e-7 to 2e-6 kJ/mol on these models, where the pure-PyTorch path agrees with the module to
    1e-12 kJ/mol), so both dtypes take the float32 bound of two code paths; scales as above."""
    topology, atoms, numbers, positions = peptide
    model = tmd.create(topology, atoms, modelPath=files[key], charge=1)
    energy, gradient = energyAndGradient(model, positions, dtype)
    expected, expectedGradient = library(files[key], numbers, positions, 1, dtype)
    eBound = pathsEnergyBound(model, positions, torch.float32)
    fBound = pathsForceBound(model, expectedGradient, torch.float32)
    print(f"{key} (warp): |dE| = {abs(energy.item() - expected):.1e} kJ/mol (bound {eBound:.1e}), max |dF| = "
          f"{np.abs(gradient - expectedGradient).max():.1e} kJ/mol/nm (bound {fBound:.1e})")
    assert abs(energy.item() - expected) <= eBound
    np.testing.assert_allclose(gradient, expectedGradient, rtol=0, atol=fBound)


@pytest.mark.parametrize("key,double", [("f32", False), ("f64", True)])
def test_mlforce_matches_module(key, double, files, peptide, platform):
    """n = 22 in an MLForce (TorchScript in the C++ kernel, float32 or float64 positions) against the
    module called eagerly: two code paths in the model's dtype, scales as above."""
    topology, atoms, numbers, positions = peptide
    model = tmd.create(topology, atoms, modelPath=files[key], charge=1)
    energy, forces = mlforceState(model, positions, platform, double, seed=5)
    inputs = positions if double else positions.astype(np.float32).astype(np.float64)
    expected, gradient = energyAndGradient(model, inputs, torch.float64 if double else torch.float32)
    assert abs(energy - expected.item()) <= pathsEnergyBound(model, positions, model.dtype)
    np.testing.assert_allclose(forces, -gradient, rtol=0, atol=pathsForceBound(model, gradient, model.dtype))


# ---------------------------------------------------------------------------------------------
# 2-3. Finite differences, invariance, the cutoff

def test_forces_match_finite_differences(files, peptide):
    """n = 22, float64: dE/dx of 6 coordinates against central differences (h = 1e-5 nm), with
    the truncation and rounding bound of precision.centralDifference (rounding: two evaluations
    of the same code, scale sum |E_i|)."""
    topology, atoms, numbers, positions = peptide
    model = tmd.create(topology, atoms, modelPath=files["f64"], charge=1)
    _, gradient = energyAndGradient(model, positions)
    rounding = bound(energyScale(model, positions), torch.float64, len(positions))
    for atom, axis in [(0, 0), (4, 1), (6, 2), (8, 0), (15, 1), (21, 2)]:
        def energyAt(dx):
            moved = positions.copy()
            moved[atom, axis] += dx
            with torch.no_grad():
                return model(torch.tensor(moved)).item()
        numeric, error = centralDifference(energyAt, 1e-5, rounding)
        assert abs(-gradient[atom, axis] - numeric) <= error, (atom, axis)


def test_rotation_and_translation_invariance(files, peptide):
    """n = 22, float64: a rotated and translated copy has the same energy and rotated forces, to
    the rounding of the moved coordinates (eps64 |x| per coordinate, times |F|, over 3n
    coordinates) and of two evaluations (scale sum |E_i|)."""
    topology, atoms, numbers, positions = peptide
    model = tmd.create(topology, atoms, modelPath=files["f64"], charge=1)
    energy, gradient = energyAndGradient(model, positions)
    rotation, moved = rigidlyMoved(positions, [3.1, -2.7, 0.4])
    energy2, gradient2 = energyAndGradient(model, moved)
    shift = 4 * EPS64 * np.abs(moved).max()
    tolerance = bound(energyScale(model, positions), torch.float64, 3 * len(positions)) \
        + np.abs(gradient).sum() * shift
    assert abs(energy2.item() - energy.item()) <= tolerance
    # A force moves by the Hessian times the coordinates' rounding: max row sum of |H| times shift.
    hessian = torch.autograd.functional.hessian(lambda x: model(x.reshape(-1, 3)), torch.tensor(positions).reshape(-1))
    forceTolerance = pathsForceBound(model, gradient, torch.float64) + hessian.abs().sum(1).max().item() * shift
    np.testing.assert_allclose(gradient2, gradient @ rotation.T, rtol=0, atol=forceTolerance)


def test_cutoff_is_exact(files):
    """Two molecules (CH4 and H2O) 1 nm apart, beyond the 0.5 nm cutoff: the energy is the sum of
    the two computed alone (each with the model's mean shift once, so one shift subtracted), and
    the forces are each molecule's own: the pairs between them contribute exactly nothing but
    rounding (float64, scale sum |E_i|)."""
    methane = np.array([[0, 0, 0], [0.063, 0.063, 0.063], [-0.063, -0.063, 0.063], [-0.063, 0.063, -0.063],
                        [0.063, -0.063, -0.063]], dtype=np.float64)
    water = np.array([[0, 0, 0], [0.0957, 0, 0], [-0.024, 0.0927, 0]], dtype=np.float64) + np.array([1.0, 0.2, 0])
    both = np.concatenate([methane, water])
    full = tmd.create(oneResidueTopology("CHHHHOHH", numbered=True), range(8), modelPath=files["f64"])
    a = tmd.create(oneResidueTopology("CHHHH", numbered=True), range(5), modelPath=files["f64"])
    b = tmd.create(oneResidueTopology("OHH", numbered=True), range(3), modelPath=files["f64"])
    energy, gradient = energyAndGradient(full, both)
    ea, ga = energyAndGradient(a, methane)
    eb, gb = energyAndGradient(b, water)
    shift = full.shift.item() * EV_TO_KJ_PER_MOL
    tolerance = bound(energyScale(full, both), torch.float64, len(both))
    assert abs(energy.item() - (ea.item() + eb.item() - shift)) <= tolerance
    np.testing.assert_allclose(gradient, np.concatenate([ga, gb]), rtol=0,
                               atol=pathsForceBound(full, gradient, torch.float64))
    assert np.abs(gradient).max() > 1


# ---------------------------------------------------------------------------------------------
# 4-5. Serialization, dynamics, a mixed System

def test_xml_round_trip_is_bitwise(files, peptide, platform):
    """The System with the MLForce serialized and read back gives the same energy, bitwise (the
    same scripted model on the same platform and inputs)."""
    topology, atoms, numbers, positions = peptide
    model = tmd.create(topology, atoms, modelPath=files["f32"], charge=1)
    original, copy = xmlRoundTripStates(model, positions, platform)
    assert original.getPotentialEnergy() == copy.getPotentialEnergy()


def test_short_md_stays_finite(files, peptide):
    """20 steps of Langevin dynamics (0.5 fs) of the dipeptide on the model alone stay finite."""
    topology, atoms, numbers, positions = peptide
    model = tmd.create(topology, atoms, modelPath=files["f32"], charge=0)
    system = openmm.System()
    for a in [a for a in topology.atoms() if a.index in set(atoms)]:
        system.addParticle(a.element.mass)
    system.addForce(openmmhybrid.MLForce(model, list(range(len(atoms)))))
    integrator = openmm.LangevinMiddleIntegrator(300 * unit.kelvin, 1 / unit.picosecond, 0.0005 * unit.picoseconds)
    integrator.setRandomNumberSeed(3)
    context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName("CPU"))
    context.setPositions(positions)
    context.setVelocitiesToTemperature(300 * unit.kelvin, 3)
    integrator.step(20)
    state = context.getState(getEnergy=True, getPositions=True)
    assert np.isfinite(state.getPotentialEnergy().value_in_unit(KJ))
    moved = state.getPositions(asNumpy=True).value_in_unit(NM)
    assert np.isfinite(moved).all() and np.abs(moved - positions).max() > 0


def test_mixed_system_on_pxylene(files, pxylene):
    """createMixedSystem(..., model=<the module>) on p-xylene (18 atoms, H and C): the correction
    group is finite, and minus the correction of a zero model (the region's MM energy, the same
    code on the same inputs) it is the module's energy of the region positions (kernel against
    eager, float64: two code paths; plus the rounding of the two corrections)."""
    prm, crd, system = pxylene
    atoms = openmmhybrid.selectAtoms(prm.topology, residueName="TMP")
    assert len(atoms) == 18
    model = tmd.create(prm.topology, atoms, modelPath=files["f64"])
    group = 7

    def correction(m):
        mixed = openmmhybrid.createMixedSystem(prm.topology, system, atoms, m, usesDoublePrecision=True,
                                               correctionGroup=group)
        c = openmm.Context(mixed, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("CPU"))
        c.setPeriodicBoxVectors(*crd.boxVectors)
        c.setPositions(crd.positions)
        return c.getState(getEnergy=True, groups={group}).getPotentialEnergy().value_in_unit(KJ)

    ours_, zero = correction(model), correction(ZeroModel())
    assert np.isfinite(ours_)
    x = np.asarray(crd.getPositions(asNumpy=True).value_in_unit(NM), dtype=np.float64)[atoms]
    expected = energyAndGradient(model, x)[0].item()
    tolerance = pathsEnergyBound(model, x, torch.float64) + 4 * np.spacing(max(abs(ours_), abs(zero)))
    assert abs((ours_ - zero) - expected) <= tolerance


# ---------------------------------------------------------------------------------------------
# 6. Refusals and charge

def test_uncovered_element_is_refused(files):
    """The zoo model covers H, C, N, O, S: F (inside max_z, no reference energy) and Cl (beyond
    max_z) are refused, naming the atom."""
    with pytest.raises(ValueError, match=r"ML atom 1 \(F1 of residue MOL .*\) is F; the TorchMD-Net model in .* "
                                         r"covers only H, C, N, O and S"):
        tmd.create(oneResidueTopology("CFHH", numbered=True), range(4), modelPath=files["f32"])
    with pytest.raises(ValueError, match=r"ML atom 2 \(Cl2 .*\) is Cl"):
        tmd.create(oneResidueTopology(["C", "H", "Cl"], numbered=True), range(3), modelPath=files["f32"])
    assert tmd.create(oneResidueTopology("CHHS", numbered=True), range(4), modelPath=files["f32"]) is not None


def test_missing_file_is_refused(tmp_path, monkeypatch):
    topology = oneResidueTopology("CH", numbered=True)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        tmd.create(topology, [0, 1], modelPath=tmp_path / "nowhere.ckpt")
    with pytest.raises(FileNotFoundError, match="no model file given"):
        tmd.create(topology, [0, 1])
    monkeypatch.setenv("OPENMMHYBRID_WEIGHTS", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"huggingface\.co/Acellera/AceFF-1\.0.*aceff_v1\.0\.ckpt"):
        tmd.create(topology, [0, 1], name="aceff-1.0")


def test_charge_is_passed_where_the_model_takes_it(files, peptide, monkeypatch):
    """A model trained with a total charge: the energy changes with the charge, and matches the
    library's with the same q (pure path, float64, bounds as in test 1).  One trained without:
    a nonzero charge warns and gives the neutral energy (the same code and inputs: bitwise)."""
    topology, atoms, numbers, positions = peptide
    e = {c: energyAndGradient(tmd.create(topology, atoms, modelPath=files["f64"], charge=c), positions)[0].item() for c in (0, -1)}
    assert abs(e[-1] - e[0]) > 1e3 * pathsEnergyBound(tmd.create(topology, atoms, modelPath=files["f64"]), positions,
                                                      torch.float64)
    model = tmd.create(topology, atoms, modelPath=files["f64"], charge=-1)
    expected, _ = library(files["f64"], numbers, positions, -1, torch.float64, pure=True, monkeypatch=monkeypatch)
    assert abs(e[-1] - expected) <= pathsEnergyBound(model, positions, torch.float64)

    neutral = tmd.create(topology, atoms, modelPath=files["neutral"], charge=0)
    with pytest.warns(UserWarning, match="trained without a total charge input, so it treats the region"):
        charged = tmd.create(topology, atoms, modelPath=files["neutral"], charge=1)
    x = torch.tensor(positions)
    assert charged(x).item() == neutral(x).item()


def test_other_architectures_and_unsafe_files_are_refused(files, tmp_path):
    """A TensorNet2 checkpoint is refused; a checkpoint pickling an object that weights_only=True
    refuses is refused with the trustFile hint, and loads with trustFile=True; the zoo's Lightning
    checkpoints load with weights_only=True."""
    checkpoint = torch.load(files["f32"], map_location="cpu", weights_only=True)  # the claim of the docstring
    topology = oneResidueTopology("CH", numbered=True)
    other = dict(checkpoint, hyper_parameters=dict(checkpoint["hyper_parameters"], model="tensornet2"))
    torch.save(other, tmp_path / "tn2.ckpt")
    with pytest.raises(ValueError, match="TensorNet2"):
        tmd.create(topology, [0, 1], modelPath=tmp_path / "tn2.ckpt")
    import argparse
    unsafe = dict(checkpoint, extra=argparse.Namespace(a=1))
    torch.save(unsafe, tmp_path / "unsafe.ckpt")
    with pytest.raises(ValueError, match="trustFile=True"):
        tmd.create(topology, [0, 1], modelPath=tmp_path / "unsafe.ckpt")
    trusted = tmd.create(topology, [0, 1], modelPath=tmp_path / "unsafe.ckpt", trustFile=True)
    plain = tmd.create(topology, [0, 1], modelPath=files["f32"])
    x = torch.tensor([[0.0, 0.0, 0.0], [0.109, 0.0, 0.0]])
    assert trusted(x).item() == plain(x).item()


def test_missing_torchmdnet_says_how_to_install(files, monkeypatch):
    monkeypatch.setitem(sys.modules, "torchmdnet.models", None)
    with pytest.raises(ImportError, match=r"pip install torchmd-net"):
        tmd.create(oneResidueTopology("CH", numbered=True), [0, 1], modelPath=files["f32"])


# ---------------------------------------------------------------------------------------------
# 7. Static shapes

def test_scripted_forward_has_no_data_dependent_ops(files):
    """What keeps the module capturable in a CUDA graph: the scripted forward (inlined) calls no
    nonzero, masked_select, unique, argwhere, item or tensor indexing (boolean-mask indexing is
    aten::index), and no torchmd-net or warp operator."""
    model = torch.jit.script(tmd.create(oneResidueTopology("CHHHHO", numbered=True), range(6), modelPath=files["f32"]))
    graph = str(model.forward.inlined_graph)
    assert "aten::layer_norm" in graph  # the graph is the module's
    for forbidden in ("aten::nonzero", "aten::masked_select", "aten::unique", "aten::argwhere", "aten::item",
                      "aten::index(", "aten::index_put", "torchmdnet::", "warp", "prim::PythonOp"):
        assert forbidden not in graph, forbidden


# ---------------------------------------------------------------------------------------------
# 8. Precision

def test_precision(files, peptide):
    """Default: the file's dtype; "single"/"double" override it whatever dtype the positions come
    in; the energy is a float64 0-dim tensor; single against double within the float32 bound of
    two code paths (the float32 weights are the float64 ones rounded)."""
    topology, atoms, numbers, positions = peptide
    default32 = tmd.create(topology, atoms, modelPath=files["f32"])
    default64 = tmd.create(topology, atoms, modelPath=files["f64"])
    assert default32.dtype == torch.float32 and default64.dtype == torch.float64
    single = tmd.create(topology, atoms, modelPath=files["f64"], precision="single")
    double = tmd.create(topology, atoms, modelPath=files["f64"], precision="double")
    assert single.dtype == torch.float32 and single.eye.dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in single.parameters())
    for inputs in (torch.float32, torch.float64):
        e32 = single(torch.tensor(positions, dtype=inputs))
        e64 = double(torch.tensor(positions, dtype=inputs))
        assert e32.dtype == torch.float64 and e32.dim() == 0 and e64.dtype == torch.float64
        assert abs(e32.item() - e64.item()) <= pathsEnergyBound(double, positions, torch.float32)
    assert e32.item() != e64.item()  # single really ran in float32
    with pytest.raises(ValueError, match="precision"):
        tmd.create(topology, atoms, modelPath=files["f64"], precision="half")
