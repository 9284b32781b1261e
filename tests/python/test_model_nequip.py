"""Tests of openmmhybrid.models.nequip: NequIP and Allegro compiled models (.nequip.pth) in an MLForce.

The reference is nequip's own evaluation of the same file: its ASE calculator
(``NequIPCalculator.from_compiled_model``, with nequip's cutoff neighbour list, matscipy), against
the adapter's all-pairs edges.  Models: random weights, built by tests/python/zoo_nequip.py
through nequip's model builders and written as nequip-compile --mode torchscript writes them.
Molecule: p-xylene (residue TMP of examples/data/pxylene-water, 18 atoms, H and C, 7 Angstrom
across: with r_max 4 Angstrom about a third of its pairs are beyond the cutoff).
"""
import warnings

import numpy as np
import openmm
import openmm.app as app
import openmm.unit as unit
import pytest
import torch

pytest.importorskip("nequip", reason="the NequIP adapter needs nequip (pip install nequip)")
pytest.importorskip("allegro", reason="the Allegro models are built with nequip-allegro (pip install nequip-allegro)")

import openmmhybrid  # noqa: E402
from openmmhybrid import MLForce  # noqa: E402
from openmmhybrid.models import EV_TO_KJ_PER_MOL  # noqa: E402
from openmmhybrid.models import nequip as adapter  # noqa: E402
from adapter_checks import (ZeroModel, displacedEnergy, energyAndGradient, mlforceState,  # noqa: E402
                            oneResidueTopology, pxyleneFiles, pxyleneRegion, rigidlyMoved, shortDynamics,
                            xmlRoundTripStates)
from precision import bound, centralDifference, eps  # noqa: E402
import zoo_nequip  # noqa: E402

torch.set_num_threads(1)

KJ = unit.kilojoule_per_mole
NM = unit.nanometer
FAMILIES = ("nequip", "allegro")


@pytest.fixture(scope="module", autouse=True)
def _unoptimized_torchscript():
    """TorchScript's profiling executor spends about 5 s optimizing nequip's graph over the first
    two calls of every loaded copy (3 ms a call after); this file loads dozens of copies, so it
    runs them unoptimized (the same operations, without fusion), restoring the setting after."""
    with torch.jit.optimized_execution(False):
        yield


TOPOLOGY, ATOMS, POSITIONS = pxyleneRegion()
N = len(ATOMS)
PAIRS = N * (N - 1)  # the edges the adapter sums over (the library: those within r_max)
SYMBOLS = [a.element.symbol for a in TOPOLOGY.atoms() if a.index in set(ATOMS)]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Tiny NequIP and Allegro files in float64 and float32 (seed 0, H C N O S)."""
    folder = tmp_path_factory.mktemp("nequip")
    return {(family, dtype): zoo_nequip.BUILDERS[family](folder / f"{family}_{dtype}.nequip.pth", dtype=dtype)
            for family in FAMILIES for dtype in ("float64", "float32")}


def library(path, positions):
    """nequip's ASE calculator on ``positions`` (nm): (energy kJ/mol, forces kJ/mol/nm, per-atom energies kJ/mol)."""
    import ase
    from nequip.integrations.ase import NequIPCalculator

    # nequip freezes the loaded model (torch.jit.freeze), which needs the optimizing executor on.
    with warnings.catch_warnings(), torch.jit.optimized_execution(True):
        warnings.simplefilter("ignore")
        calculator = NequIPCalculator.from_compiled_model(path, device="cpu")
    atoms = ase.Atoms(symbols=SYMBOLS, positions=np.asarray(positions, dtype=np.float64) * 10.0)
    atoms.calc = calculator
    energy = atoms.get_potential_energy() * EV_TO_KJ_PER_MOL
    forces = atoms.get_forces() * EV_TO_KJ_PER_MOL * 10.0
    return energy, forces, atoms.get_potential_energies() * EV_TO_KJ_PER_MOL


def energy_bound(atomic, dtype):
    """Two evaluations of the same compiled model with other edge sets (all pairs against the
    cutoff list: the extra edges add exact zeros, but every edge sum runs in another order):
    the per-atom energies' magnitudes summed, rounded over the n (n - 1) edges reaching them."""
    return bound(np.abs(atomic).sum(), dtype, terms=PAIRS)


def force_bound(forces, dtype):
    """As energy_bound, for a force component: the n atoms' energies, each with gradients up to
    the largest force, summed over the edges."""
    return bound(np.abs(forces).max() * N, dtype, terms=PAIRS)


def create(path, family="nequip", **kwargs):
    return adapter.create(TOPOLOGY, ATOMS, name=family, modelPath=path, **kwargs)


# ---------------------------------------------------------------------------------------------
# 1, 8. Against nequip's own evaluation, float64 and float32


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("family", FAMILIES)
def test_module_equals_library(files, family, dtype):
    """n = 18 (p-xylene), scale: the per-atom energies' magnitudes (about 5,500 kJ/mol) and the
    largest force times n, rounded over the 306 ordered pairs, in the model's dtype (the file's);
    float64 and float32 positions (the model casts them to its dtype)."""
    path = files[family, dtype]
    model = create(path, family)
    torchType = {"float64": torch.float64, "float32": torch.float32}[dtype]
    assert model.dtype == torchType  # the default precision is the file's dtype
    scripted = torch.jit.script(model)
    for inputType in (torch.float64, torch.float32):
        # float32 inputs: the library sees the same rounded positions
        positions = POSITIONS.astype(np.float32).astype(np.float64) if inputType == torch.float32 else POSITIONS
        expected, expectedForces, atomic = library(path, positions)
        energy, gradient = energyAndGradient(scripted, positions, inputType)
        assert energy.dtype == torch.float64 and energy.dim() == 0
        assert abs(energy.item() - expected) <= energy_bound(atomic, torchType)
        # the gradient comes back in the inputs' dtype: float32 inputs round it once more
        returned = 0.5 * eps(inputType) * np.abs(expectedForces).max()
        np.testing.assert_allclose(-gradient, expectedForces, rtol=0,
                                   atol=force_bound(expectedForces, torchType) + returned)
    assert np.abs(expectedForces).max() > 1.0  # the forces compared are not all zero
    cutoff = 4.0 / 10.0
    distances = np.linalg.norm(positions[:, None] - positions[None], axis=-1)
    assert (distances > cutoff).sum() > PAIRS // 4  # many pairs beyond r_max: all pairs is exercised


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("family", FAMILIES)
def test_mlforce_equals_library(files, family, dtype, platform):
    """The module inside an MLForce (float64 inputs for the float64 file, float32 for the float32
    one), against nequip's calculator on the same (rounded) positions: n = 18, scales as
    test_module_equals_library."""
    path = files[family, dtype]
    double = dtype == "float64"
    positions = POSITIONS if double else POSITIONS.astype(np.float32).astype(np.float64)
    energy, forces = mlforceState(create(path, family), positions, platform, double)
    expected, expectedForces, atomic = library(path, positions)
    torchType = torch.float64 if double else torch.float32
    assert abs(energy - expected) <= energy_bound(atomic, torchType)
    np.testing.assert_allclose(forces, expectedForces, rtol=0, atol=force_bound(expectedForces, torchType))


def test_precision_is_the_files(files):
    """A compiled TorchScript model holds its dtype in its code: the matching precision is
    accepted, the other refused."""
    assert create(files["nequip", "float64"], precision="double").dtype == torch.float64
    assert create(files["nequip", "float32"], precision="single").dtype == torch.float32
    with pytest.raises(ValueError, match="compiled in float64"):
        create(files["nequip", "float64"], precision="single")
    with pytest.raises(ValueError, match="compiled in float32"):
        create(files["nequip", "float32"], precision="double")
    with pytest.raises(ValueError, match="precision must be"):
        create(files["nequip", "float64"], precision="half")


# ---------------------------------------------------------------------------------------------
# 2, 3. Finite differences and invariance


@pytest.mark.parametrize("family", FAMILIES)
def test_forces_match_finite_differences(files, family):
    """float64, n = 18: six coordinates, h = 1e-4 nm; the rounding of an energy difference is
    energy_bound (scale: the per-atom energies' magnitudes, over the 306 pairs)."""
    model = torch.jit.script(create(files[family, "float64"], family))
    _, gradient = energyAndGradient(model, POSITIONS)
    _, _, atomic = library(files[family, "float64"], POSITIONS)
    rounding = energy_bound(atomic, torch.float64)
    for atom, axis in [(0, 0), (3, 1), (7, 2), (10, 0), (14, 1), (17, 2)]:
        energyAt = displacedEnergy(model, POSITIONS, atom, axis, noGrad=False)  # the model takes autograd forces
        numeric, tolerance = centralDifference(energyAt, 1e-4, rounding)
        assert abs(-gradient[atom, axis] - numeric) <= tolerance, (atom, axis)
    assert np.abs(gradient).max() > 1.0


@pytest.mark.parametrize("family", FAMILIES)
def test_rotation_and_translation_invariance(files, family):
    """float64, n = 18: a rotated and translated copy (by up to 3 nm) has the same energy, to the
    rounding of the moved positions (|x| |F| over 3n coordinates) plus that of the model's own
    sums (energy_bound), and rotated forces."""
    model = create(files[family, "float64"], family)
    energy, gradient = energyAndGradient(model, POSITIONS)
    _, _, atomic = library(files[family, "float64"], POSITIONS)
    rotation, moved = rigidlyMoved(POSITIONS, [3.1, -2.7, 0.4], seed=7)
    energy2, gradient2 = energyAndGradient(model, moved)
    scale = np.abs(moved).max() * np.abs(gradient).max() * N
    assert abs(energy2.item() - energy.item()) <= bound(scale, torch.float64, 3 * N) + energy_bound(atomic, torch.float64)
    np.testing.assert_allclose(gradient2, gradient @ rotation.T, rtol=0,
                               atol=force_bound(gradient, torch.float64) + bound(scale, torch.float64, 3 * N))
    assert abs(energy2.item() - energy.item()) < 1e-6 * abs(energy.item())


# ---------------------------------------------------------------------------------------------
# 4, 5. Serialization, dynamics, a mixed System


def test_xml_round_trip_is_bitwise(files, platform):
    """The same model and inputs after XmlSerializer: bitwise equal energy and forces."""
    results = [(state.getPotentialEnergy().value_in_unit(KJ), state.getForces(asNumpy=True).value_in_unit(KJ / NM))
               for state in xmlRoundTripStates(create(files["allegro", "float64"], "allegro"), POSITIONS, platform)]
    assert results[0][0] == results[1][0]
    assert np.array_equal(results[0][1], results[1][1])


def test_short_md_stays_finite(files, platform):
    """20 steps of Langevin dynamics (0.5 fs, 300 K) of p-xylene under the NequIP model alone."""
    masses = [atom.element.mass for atom in TOPOLOGY.atoms() if atom.index in set(ATOMS)]
    _, start, energy, positions = shortDynamics(create(files["nequip", "float32"]), masses, POSITIONS, platform, seed=5)
    assert np.isfinite(energy)
    assert np.isfinite(positions).all() and not np.array_equal(positions, start)


def test_mixed_system(files, pxylene):
    """createMixedSystem on p-xylene in water (18 ML atoms, PME, float64 inputs): the correction
    group with the NequIP model minus the same with a zero model is the module's energy of the
    region; rounding: the group's float64 sums (|E_ML| + |E_MM,region| over the region's pairs)
    and the model's two code paths (energy_bound)."""
    prm, crd, system = pxylene
    atoms = openmmhybrid.selectAtoms(prm.topology, residueName="TMP")
    assert list(atoms) == ATOMS
    model = create(files["nequip", "float64"])
    energies = []
    for m in (model, ZeroModel()):
        mixed = openmmhybrid.createMixedSystem(prm.topology, system, atoms, m, usesDoublePrecision=True)
        group = next(f.getForceGroup() for f in mixed.getForces() if MLForce.isinstance(f))
        context = openmm.Context(mixed, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
        context.setPositions(crd.positions)
        context.setPeriodicBoxVectors(*crd.boxVectors)
        total = context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(KJ)
        correction = context.getState(getEnergy=True, groups={group}).getPotentialEnergy().value_in_unit(KJ)
        assert np.isfinite(total) and np.isfinite(correction)
        energies.append((total, correction))
    expected, _ = energyAndGradient(model, POSITIONS)
    _, _, atomic = library(files["nequip", "float64"], POSITIONS)
    regionMM = abs(energies[1][1])
    tolerance = energy_bound(atomic, torch.float64) + bound(abs(expected.item()) + regionMM, torch.float64, PAIRS)
    assert abs((energies[0][1] - energies[1][1]) - expected.item()) <= tolerance
    assert abs((energies[0][0] - energies[1][0]) - expected.item()) <= tolerance + bound(abs(energies[1][0]), torch.float64,
                                                                                         system.getNumParticles())


def test_openmm_ml_peer_equals_adapter(tmp_path):
    """openmm-ml's nequip potential (``MLPotential("nequip")``: nequip's ``load_saved_model``, the
    eager model called from a PythonForce, nequip's cutoff neighbour list) on the same model as a
    package (zoo_nequip.nequipPeerFile: same builder, arguments and seed as the .nequip.pth, so
    bitwise the same weights) against the adapter on the .nequip.pth (TorchScript, all pairs):
    p-xylene alone (a Modeller topology of residue TMP, its 3.2 nm box kept), float64 and float32
    files, energy and forces within the two code paths' rounding (energy_bound, force_bound; the
    per-atom energies from the packaged model)."""
    pytest.importorskip("openmmml", reason="openmm-ml (the peer) is not installed")
    from nequip.data import compute_neighborlist_
    from nequip.model.saved_models.load_utils import load_saved_model
    from openmmml import MLPotential

    prmtop, inpcrd = pxyleneFiles()
    modeller = app.Modeller(prmtop.topology, inpcrd.positions)
    modeller.delete([r for r in prmtop.topology.residues() if r.name != "TMP"])
    topology, positions = modeller.topology, modeller.positions
    assert topology.getNumAtoms() == N
    x = np.asarray(positions.value_in_unit(NM), dtype=np.float64)
    np.testing.assert_array_equal(x, POSITIONS)
    for dtype in ("float64", "float32"):
        torchType = {"float64": torch.float64, "float32": torch.float32}[dtype]
        compiled = zoo_nequip.nequipModel(tmp_path / f"{dtype}.nequip.pth", dtype=dtype)
        package = zoo_nequip.nequipPeerFile(tmp_path / f"{dtype}.nequip.zip", dtype=dtype)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            packaged = load_saved_model(package)
        assert packaged.metadata["model_dtype"] == dtype
        parameters = dict(torch.jit.load(compiled).named_parameters())
        assert set(parameters) == set(dict(packaged.named_parameters()))
        assert all(torch.equal(parameters[k], p) for k, p in packaged.named_parameters())  # the same model
        data = compute_neighborlist_({"pos": torch.tensor(x * 10.0), "atom_types": torch.tensor(
            [packaged.type_names.index(s) for s in SYMBOLS]), "pbc": torch.zeros(3, dtype=torch.bool)}, 4.0)
        atomic = packaged(data)["atomic_energy"].detach().to(torch.float64).numpy() * EV_TO_KJ_PER_MOL

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            system = MLPotential("nequip", modelPath=package, lengthScale=0.1,
                                 energyScale=96.48533212331002).createSystem(topology)
        context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
        context.setPositions(positions)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # openmm-ml returns its energy with requires_grad
            state = context.getState(getEnergy=True, getForces=True)
        peer = state.getPotentialEnergy().value_in_unit(KJ)
        peerForces = state.getForces(asNumpy=True).value_in_unit(KJ / NM)

        energy, gradient = energyAndGradient(adapter.create(topology, list(range(N)), modelPath=compiled), x)
        assert abs(energy.item() - peer) <= energy_bound(atomic, torchType)
        np.testing.assert_allclose(-gradient, peerForces, rtol=0, atol=force_bound(peerForces, torchType))
        assert np.abs(peerForces).max() > 1.0


# ---------------------------------------------------------------------------------------------
# 6. Refusals, charge, types


def test_uncovered_element_names_the_atom(files):
    topology = oneResidueTopology(("C", "H", "Cl"), residueName="MOL")
    with pytest.raises(ValueError, match=r"ML atom 2 \(Cl of residue MOL .*\) is Cl; the nequip model in .* covers only"):
        adapter.create(topology, [0, 1, 2], modelPath=files["nequip", "float64"])


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        create(tmp_path / "nowhere.nequip.pth")
    with pytest.raises(FileNotFoundError, match="no model file given"):
        adapter.create(TOPOLOGY, ATOMS, name="allegro")


def test_other_formats_refused(tmp_path):
    for name in ("model.nequip.pt2", "model.nequip.zip", "last.ckpt"):
        path = tmp_path / name
        path.write_bytes(b"not a model")
        with pytest.raises(ValueError, match=r"only TorchScript models compiled with nequip-compile"):
            create(path)


def test_charge_is_warned_about(files):
    """No total-charge input: a charged region is warned about and computed as neutral."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        neutral = create(files["nequip", "float64"], charge=0)
    with pytest.warns(UserWarning, match="no total-charge input"):
        charged = create(files["nequip", "float64"], charge=1)
    x = torch.tensor(POSITIONS)
    assert charged(x).item() == neutral(x).item()


def test_type_names_option(tmp_path):
    """A model whose types are not element symbols needs typeNames; with it, the energy is that
    of the same weights (same seed and architecture) under symbol type names: same code and
    inputs, bitwise."""
    named = zoo_nequip.nequipModel(tmp_path / "named.nequip.pth", elements=("hyd", "carb"))
    symbols = zoo_nequip.nequipModel(tmp_path / "symbols.nequip.pth", elements=("H", "C"))
    with pytest.raises(ValueError, match="not element symbols; give typeNames"):
        create(named)
    with pytest.raises(ValueError, match="not one of the model's types"):
        create(named, typeNames={"H": "hydrogen", "C": "carb"})
    x = torch.tensor(POSITIONS)
    assert create(named, typeNames={"H": "hyd", "C": "carb"})(x).item() == create(symbols)(x).item()
    assert create(symbols, typeNames={"H": "C", "C": "H"})(x).item() != create(symbols)(x).item()


def test_units(files):
    """lengthUnit and energyUnit scale the input and output: a model said to work in nm and
    kcal/mol sees positions 10x smaller than in Angstrom and returns kcal/mol."""
    x = torch.tensor(POSITIONS)
    path = files["nequip", "float64"]
    default = create(path)(x).item()
    assert create(path, lengthUnit="Angstrom", energyUnit="eV")(x).item() == default
    assert create(path, lengthUnit=unit.angstrom, energyUnit=unit.kilocalorie_per_mole)(x).item() == pytest.approx(
        default / EV_TO_KJ_PER_MOL * 4.184, rel=4 * np.finfo(float).eps)
    assert create(path, lengthUnit="nm")(x * 10.0).item() == default  # the model sees the same numbers
    with pytest.raises(ValueError, match="lengthUnit 'furlong' is not known"):
        create(path, lengthUnit="furlong")


# ---------------------------------------------------------------------------------------------
# 7. Static shapes


def test_forward_has_no_data_dependent_shapes(files):
    """What keeps the module capturable in a CUDA graph: the scripted forward calls no nonzero,
    masked_select, unique, argwhere, boolean indexing or .item(); its edges are a fixed buffer
    of all n (n - 1) ordered pairs."""
    scripted = torch.jit.script(create(files["nequip", "float64"]))
    code = scripted.code
    for forbidden in ("nonzero", "masked_select", "unique", "argwhere", "item(", "index(", "tolist"):
        assert forbidden not in code, forbidden
    assert tuple(scripted.edgeIndex.shape) == (2, PAIRS)
    assert not (scripted.edgeIndex[0] == scripted.edgeIndex[1]).any()
