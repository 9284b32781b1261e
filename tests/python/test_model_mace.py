"""Tests of openmmhybrid.models.mace, the MACE adapter (mace-torch ``.model`` files).

The models are mace-torch's own ``ScaleShiftMACE`` with random weights (zoo_mace.py, "tiny"),
saved as the ``.model`` file mace-torch writes.  The reference is mace-torch's ASE calculator
(``MACECalculator``) on the same file: its own neighbour list, its own input pipeline and its own
total energy.  Molecules: p-xylene (H, C; residue TMP of examples/data/pxylene-water, 18 atoms,
about 0.75 nm across, so that many pairs lie beyond the 0.4 nm cutoff) and a seeded 12-atom
cluster of H, C, N, O and S.

Bounds (tests/python/precision.py): a MACE energy is a sum over the n atoms of readouts of node
features, each built from messages summed over the n - 1 other atoms (the pairs beyond the cutoff
add exact zeros), through dot products at most WIDTH wide, LAYERS of them per interaction; so
``n (n - 1) WIDTH LAYERS`` rounding steps at the scale of the interaction energy, plus, where the
reference sums the atomic reference energies (E0s) in the model's dtype, n steps at the scale of
the E0s.  A force component: the n - 1 pair terms of one atom, the same depth, at n times the
largest force component.
"""
import math
import os
import warnings

import numpy as np
import openmm
import openmm.unit as unit
import pytest
import torch

pytest.importorskip("mace", reason="the MACE adapter needs mace-torch (pip install mace-torch)")

import openmmhybrid  # noqa: E402
from openmmhybrid import MLForce  # noqa: E402
from openmmhybrid.models import EV_TO_KJ_PER_MOL  # noqa: E402
from openmmhybrid.models import mace as macemodel  # noqa: E402
from adapter_checks import (ZeroModel, displacedEnergy, energyAndGradient, mlforceState,  # noqa: E402
                            oneResidueTopology, pxyleneRegion, rigidlyMoved, shortDynamics, xmlRoundTripStates)
from precision import bound, boxMatrix, centralDifference, nonbondedBounds  # noqa: E402
from zoo_mace import SIZES, saveMACE  # noqa: E402

torch.set_num_threads(1)

KJ = unit.kilojoule_per_mole
NM = unit.nanometer
#: kJ/mol/nm per eV/Angstrom.
FORCE_UNIT = EV_TO_KJ_PER_MOL * 10.0


def _cluster(symbols, seed=5, spacing=0.1, extent=0.7):
    """Seeded positions (nm) of ``symbols``, no two closer than ``spacing``, in a cube of ``extent``."""
    rng = np.random.default_rng(seed)
    positions = []
    while len(positions) < len(symbols):
        x = rng.uniform(0.0, extent, 3)
        if all(np.linalg.norm(x - p) >= spacing for p in positions):
            positions.append(x)
    return oneResidueTopology(symbols, residueName="MOL", numbered=True), list(range(len(symbols))), np.array(positions)


CLUSTER_SYMBOLS = ["C", "H", "H", "N", "O", "S", "H", "C", "O", "H", "N", "H"]
MOLECULES = {"pxylene": pxyleneRegion(), "cluster": _cluster(CLUSTER_SYMBOLS)}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The tiny model saved as mace-torch does: float64, float32, and one with a total charge input."""
    folder = tmp_path_factory.mktemp("mace")
    return {"float64": saveMACE(folder / "tiny64.model"),
            "float32": saveMACE(folder / "tiny32.model", dtype=torch.float32),
            "charged": saveMACE(folder / "charged.model", chargeEmbedding=True)}


@pytest.fixture(scope="module")
def models(files):
    """Our module for each molecule on the float64 file, in float64 and in float32."""
    built = {}
    for name, (topology, atoms, _) in MOLECULES.items():
        for precision in ("double", "single"):
            built[name, precision] = macemodel.create(topology, atoms, modelPath=files["float64"], precision=precision)
    return built


def _calculator(path, dtype):
    from mace.calculators import MACECalculator
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.load's weights_only notice
        return MACECalculator(model_paths=str(path), device="cpu", default_dtype=dtype)


@pytest.fixture(scope="module")
def calculators(files):
    return {"double": _calculator(files["float64"], "float64"), "single": _calculator(files["float64"], "float32")}


def theirs(calculator, topology, atoms, positions, **info):
    """mace-torch's calculator: (energy in kJ/mol, gradient in kJ/mol/nm)."""
    from ase import Atoms
    symbols = [a.element.symbol for a in topology.atoms()]
    molecule = Atoms([symbols[i] for i in atoms], positions=np.asarray(positions) * 10.0)
    molecule.info.update(info)
    molecule.calc = calculator
    return molecule.get_potential_energy() * EV_TO_KJ_PER_MOL, -molecule.get_forces() * FORCE_UNIT


# An upper estimate of the widest dot product of the tiny model (4 hidden channels, doubled for
# the 0e and 1o irreps, times its interactions and the 4 Bessel functions: 64) and of the dot
# products per interaction (radial MLP 2, linear up, tensor product, linear, product basis,
# readout: 7).
WIDTH = 2 * int(SIZES["tiny"]["hidden_irreps"].split("x")[0]) * SIZES["tiny"]["num_interactions"] * 4
LAYERS = 7 * SIZES["tiny"]["num_interactions"]


def energy_bound(model, energy, n, dtype, referenceRounded):
    """Two evaluations of the same MACE energy (see the module docstring); ``referenceRounded``:
    one of them sums the E0s in ``dtype``."""
    e0 = abs(model.referenceEnergy) * EV_TO_KJ_PER_MOL
    interaction = abs(energy - model.referenceEnergy * EV_TO_KJ_PER_MOL)
    total = bound(interaction, dtype, n * (n - 1) * WIDTH * LAYERS) + 2 * np.spacing(abs(energy))
    return total + (bound(e0, dtype, n) if referenceRounded else 0.0)


def force_bound(gradient, dtype):
    n = len(gradient)
    return bound(np.abs(gradient).max() * n, dtype, (n - 1) * WIDTH * LAYERS)


# ---------------------------------------------------------------------------------------------
# Against mace-torch's own evaluation


@pytest.mark.parametrize("name", MOLECULES)
@pytest.mark.parametrize("precision", ["double", "single"])
def test_matches_mace_calculator(name, precision, models, calculators):
    """The module called directly against mace-torch's calculator on the same file and coordinates
    (p-xylene n = 18, the cluster n = 12; scale: the interaction energy, the E0s, which the
    calculator sums in the model's dtype, and n times the largest force)."""
    topology, atoms, positions = MOLECULES[name]
    model = models[name, precision]
    dtype = torch.float64 if precision == "double" else torch.float32
    energy, gradient = energyAndGradient(model, positions, dtype)
    expected_energy, expected_gradient = theirs(calculators[precision], topology, atoms, positions)
    assert energy.dtype == torch.float64 and energy.dim() == 0
    tolerance = energy_bound(model, expected_energy, len(atoms), dtype, referenceRounded=True)
    print(f"{name} {precision}: |dE| = {abs(energy.item() - expected_energy):.2e} kJ/mol (bound {tolerance:.1e}), "
          f"max |dF| = {np.abs(gradient - expected_gradient).max():.2e} (bound "
          f"{force_bound(expected_gradient, dtype):.1e}, max |F| {np.abs(expected_gradient).max():.0f})")
    assert abs(energy.item() - expected_energy) <= tolerance
    np.testing.assert_allclose(gradient, expected_gradient, rtol=0, atol=force_bound(expected_gradient, dtype))
    assert np.abs(expected_gradient).max() > 1.0  # the forces are not trivially zero


@pytest.mark.parametrize("precision", ["double", "single"])
def test_mlforce_matches_mace_calculator(precision, models, calculators, platform):
    """Through MLForce in a Context (p-xylene, n = 18; the kernel runs the scripted module on the
    platform's float32 or float64 positions) against mace-torch's calculator, as above."""
    topology, atoms, positions = MOLECULES["pxylene"]
    model = models["pxylene", precision]
    dtype = torch.float64 if precision == "double" else torch.float32
    energy, forces = mlforceState(model, positions, platform, double=precision == "double")
    if dtype == torch.float32:
        positions = np.asarray(positions, dtype=np.float32)  # what the kernel hands the model
    expected_energy, expected_gradient = theirs(calculators[precision], topology, atoms, positions)
    assert abs(energy - expected_energy) <= energy_bound(model, expected_energy, len(atoms), dtype, True)
    np.testing.assert_allclose(-forces, expected_gradient, rtol=0, atol=force_bound(expected_gradient, dtype))


def test_forces_match_finite_differences(models):
    """float64 forces of the cluster (n = 12) against central differences of the energy (h = 1e-4
    nm); the rounding of two energies: the bound of two evaluations at the scale of |E|."""
    topology, atoms, positions = MOLECULES["cluster"]
    model = models["cluster", "double"]
    energy, gradient = energyAndGradient(model, positions)
    n = len(atoms)
    rounding = bound(abs(energy.item()), torch.float64, n * (n - 1) * WIDTH * LAYERS)
    for atom, axis in [(0, 0), (3, 1), (4, 2), (5, 0), (11, 1)]:
        force, error = centralDifference(displacedEnergy(model, positions, atom, axis), 1e-4, rounding)
        assert abs(-gradient[atom, axis] - force) <= error, (atom, axis)
    assert np.abs(gradient).max() > 10.0


def test_rotation_and_translation_invariance(models):
    """float64, the cluster (n = 12): the moved positions (up to 3 nm) round at eps64, which moves
    the energy by |x| |F| per coordinate over 3n coordinates, plus two evaluations' rounding."""
    topology, atoms, positions = MOLECULES["cluster"]
    model = models["cluster", "double"]
    energy, gradient = energyAndGradient(model, positions)
    rotation, moved = rigidlyMoved(positions, [2.1, -1.7, 0.4], seed=7)
    energy2, gradient2 = energyAndGradient(model, moved)
    n = len(atoms)
    scale = np.abs(moved).max() * np.abs(gradient).max() * n
    tolerance = bound(scale, torch.float64, 3 * n) + energy_bound(model, energy.item(), n, torch.float64, False)
    assert abs(energy2.item() - energy.item()) <= tolerance
    np.testing.assert_allclose(gradient2, gradient @ rotation.T, rtol=0, atol=2 * force_bound(gradient, torch.float64))


def test_system_xml_round_trip_is_bitwise(models, platform):
    """The System serialized and read back (the scripted model travels inside the XML) gives the
    same energy and forces, bit for bit, on the same platform."""
    topology, atoms, positions = MOLECULES["pxylene"]
    states = xmlRoundTripStates(models["pxylene", "double"], positions, platform)
    assert states[0].getPotentialEnergy() == states[1].getPotentialEnergy()
    assert (states[0].getForces(asNumpy=True) == states[1].getForces(asNumpy=True)).all()


def test_short_md_stays_finite(models, platform):
    """20 steps of Langevin dynamics (0.5 fs, 300 K) of the cluster under the model alone."""
    topology, atoms, positions = MOLECULES["cluster"]
    masses = [atom.element.mass for atom in topology.atoms()]
    start, _, energy, moved = shortDynamics(models["cluster", "single"], masses, positions, platform, seed=1)
    assert np.isfinite(moved).all() and np.isfinite(energy)
    assert np.abs(moved - positions).max() > 0 and energy != start


def test_mixed_system_on_pxylene(pxylene, models):
    """createMixedSystem(prmtop.topology, system, TMP atoms, model=<our module>) on p-xylene in
    water (float64, CPU): the energy is finite; the MLForce's energy is the module's energy of the
    region's positions; and the mixed System's energy minus that of the same mixed System with a
    zero model is the module's energy (E = MM + (ML - region MM): only the ML term differs)."""
    prmtop, inpcrd, system = pxylene
    atoms = openmmhybrid.selectAtoms(prmtop.topology, residueName="TMP")
    model = models["pxylene", "double"]
    totals = []
    for m in (model, ZeroModel()):
        mixed = openmmhybrid.createMixedSystem(prmtop.topology, system, atoms, m, usesDoublePrecision=True)
        for force in mixed.getForces():
            force.setForceGroup(30 if MLForce.isinstance(force) else 0)
        context = openmm.Context(mixed, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("CPU"))
        context.setPeriodicBoxVectors(*inpcrd.boxVectors)
        context.setPositions(inpcrd.positions)
        totals.append(context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(KJ))
        if m is model:
            ml = context.getState(getEnergy=True, groups={30}).getPotentialEnergy().value_in_unit(KJ)
    assert all(math.isfinite(t) for t in totals)
    x = np.asarray(inpcrd.getPositions(asNumpy=True).value_in_unit(NM))[atoms]
    with torch.no_grad():
        expected = model(torch.tensor(x)).item()
    n = len(atoms)
    tolerance = energy_bound(model, expected, n, torch.float64, False)
    assert abs(ml - expected) <= tolerance
    # Two Contexts' MM energies (the zero model's total is MM - region MM) round differently: the
    # CPU platform's float32 pair terms, summed in other neighbour-list blocks.
    mm, _ = nonbondedBounds(system, boxMatrix(inpcrd), abs(totals[1]), 0.0, openmm.Platform.getPlatformByName("CPU"))
    assert abs((totals[0] - totals[1]) - expected) <= tolerance + mm + 4 * np.spacing(abs(totals[0]))


# ---------------------------------------------------------------------------------------------
# Set-up: elements, files, charge, precision


def test_uncovered_element_names_the_atom(files):
    topology, atoms, _ = _cluster(["C", "H", "Cl", "H"])
    with pytest.raises(ValueError, match=r"ML atom 2 \(Cl2 of residue MOL .*\) is Cl; the MACE model in .* covers "
                                         r"only H, C, N, O and S"):
        macemodel.create(topology, atoms, modelPath=files["float64"])


def test_missing_file(tmp_path, monkeypatch):
    topology, atoms, _ = MOLECULES["cluster"]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        macemodel.create(topology, atoms, modelPath=tmp_path / "nowhere.model")
    with pytest.raises(FileNotFoundError, match="no model file given"):
        macemodel.create(topology, atoms)
    monkeypatch.setenv("OPENMMHYBRID_WEIGHTS", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"ACEsuit/mace-off/main/mace_off23/MACE-OFF23_small\.model"):
        macemodel.create(topology, atoms, name="mace-off23-small")


def test_named_model_reads_its_canonical_file(tmp_path, monkeypatch, files):
    """'mace-off23-small' with no path reads MACE-OFF23_small.model under the weights root."""
    monkeypatch.setenv("OPENMMHYBRID_WEIGHTS", str(tmp_path))
    os.symlink(files["float64"], tmp_path / "MACE-OFF23_small.model")
    topology, atoms, positions = MOLECULES["cluster"]
    named = macemodel.create(topology, atoms, name="MACE-OFF23-small")
    direct = macemodel.create(topology, atoms, modelPath=files["float64"])
    x = torch.tensor(positions)
    assert named(x).item() == direct(x).item()  # the same file, the same code


def test_not_a_mace_file(tmp_path):
    topology, atoms, _ = MOLECULES["cluster"]
    path = tmp_path / "weights.pt"
    torch.save({"a": torch.zeros(2)}, path)
    with pytest.raises(ValueError, match="not a mace-torch model"):
        macemodel.create(topology, atoms, modelPath=path)


def test_charge_is_warned_without_a_charge_input(files):
    topology, atoms, positions = MOLECULES["cluster"]
    with pytest.warns(UserWarning, match="has no total-charge input and treats the ML region \\(charge 1\\) as neutral"):
        charged = macemodel.create(topology, atoms, modelPath=files["float64"], charge=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        neutral = macemodel.create(topology, atoms, modelPath=files["float64"])
    x = torch.tensor(positions)
    assert charged(x).item() == neutral(x).item()


def test_charge_embedding_model_is_refused(files):
    """A model with mace-torch's total charge and spin embedding (the inputs MACE-OMOL takes) is
    refused at set-up, saying why: mace-torch 0.3.16 cannot compile its embedding to TorchScript,
    and MLForce runs models only as TorchScript."""
    from e3nn.util import jit
    import zoo_mace

    with pytest.raises(RuntimeError, match="GenericJointEmbedding"):
        jit.compile(zoo_mace.buildMACE(chargeEmbedding=True))  # the limitation itself
    topology, atoms, _ = MOLECULES["cluster"]
    with pytest.raises(ValueError, match="total_charge, total_spin through mace-torch's GenericJointEmbedding"):
        macemodel.create(topology, atoms, modelPath=files["charged"], charge=1)


def test_missing_mace_says_what_to_install(files, monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "mace", None)
    monkeypatch.setitem(sys.modules, "mace.modules", None)
    topology, atoms, _ = MOLECULES["cluster"]
    with pytest.raises(ImportError, match="pip install mace-torch"):
        macemodel.create(topology, atoms, modelPath=files["float64"])


def _runsIn(model):
    return model.nodeAttrs.dtype, next(model.model.parameters()).dtype


def test_precision_default_is_the_files_dtype(files, models):
    """None: the dtype the file was saved in; 'single' and 'double' cast, whatever the positions'
    dtype; float32 against float64 of the same file (p-xylene, n = 18): the float32 rounding of
    the interaction energy only (our E0s are summed in float64 in both)."""
    topology, atoms, positions = MOLECULES["pxylene"]
    assert _runsIn(macemodel.create(topology, atoms, modelPath=files["float64"])) == (torch.float64,) * 2
    assert _runsIn(macemodel.create(topology, atoms, modelPath=files["float32"])) == (torch.float32,) * 2
    assert _runsIn(models["pxylene", "single"]) == (torch.float32,) * 2
    assert _runsIn(macemodel.create(topology, atoms, modelPath=files["float32"], precision="double")) == \
        (torch.float64,) * 2
    single, double = models["pxylene", "single"], models["pxylene", "double"]
    e32, g32 = energyAndGradient(single, positions, torch.float64)  # float64 positions, run in float32
    e64, g64 = energyAndGradient(double, positions, torch.float32)  # float32 positions, run in float64
    assert e32.dtype == e64.dtype == torch.float64
    e64exact, g64exact = energyAndGradient(double, positions)
    assert abs(e32.item() - e64exact.item()) <= energy_bound(double, e64exact.item(), len(atoms), torch.float32, False)
    np.testing.assert_allclose(g32, g64exact, rtol=0, atol=force_bound(g64exact, torch.float32))
    assert e32.item() != e64exact.item()  # it did run in float32
    with pytest.raises(ValueError, match="precision"):
        macemodel.create(topology, atoms, modelPath=files["float64"], precision="half")


def test_box_is_accepted_and_ignored(models):
    topology, atoms, positions = MOLECULES["cluster"]
    x = torch.tensor(positions)
    model = models["cluster", "double"]
    assert model(x, torch.eye(3, dtype=torch.float64) * 3.0).item() == model(x).item()


# ---------------------------------------------------------------------------------------------
# Static shapes


FORBIDDEN = ("nonzero", "masked_select", "unique", "argwhere", ".item()", "aten::item")


def _allCode(module):
    """The TorchScript code of a scripted module and all its submodules."""
    code = []
    for m in [module] + [m for _, m in module.named_modules()]:
        try:
            code.append(m.code)
        except (AttributeError, RuntimeError):
            pass
    return "\n".join(code)


def test_scripted_forward_has_no_data_dependent_ops(models):
    """What keeps the module capturable in a CUDA graph: the scripted code (ours and the compiled
    MACE inside it) calls no nonzero, masked_select, unique, argwhere or item, and its inlined
    graph has no op that reads a tensor's value on the host (aten::Int, aten::Float, aten::Bool,
    aten::item); at run time (forward and backward under a dispatch mode that records every
    op) no op with a data-dependent output shape runs and nothing is indexed with a boolean mask."""
    from torch.utils._python_dispatch import TorchDispatchMode

    scripted = torch.jit.script(models["cluster", "double"])
    code = _allCode(scripted)
    for forbidden in FORBIDDEN:
        assert forbidden not in code, forbidden
    kinds = {node.kind() for node in scripted.inlined_graph.nodes()}
    assert "aten::scatter_add_" in kinds and "aten::index" in kinds  # the graph holds MACE's message passing
    assert "aten::cumsum" in kinds and "aten::scatter" in kinds  # and the packed edge list
    for kind in ("aten::nonzero", "aten::masked_select", "aten::unique", "aten::_unique2", "aten::argwhere",
                 "aten::item", "aten::Int", "aten::Float", "aten::Bool", "aten::IntImplicit", "aten::FloatImplicit"):
        assert kind not in kinds, kind

    class Record(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ops, self.boolIndex = set(), False

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            name = func._overloadpacket.__name__
            self.ops.add(name)
            if name in ("index", "index_put", "index_put_"):
                indices = args[1] if len(args) > 1 else []
                self.boolIndex |= any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in indices)
            if name == "_local_scalar_dense" and not isinstance(args[0], torch.Tensor):
                # A CPU kernel reading its own 0-dim operand (a CPU scalar, never a device sync)
                # reaches the mode already unwrapped.
                return args[0]
            return func(*args, **(kwargs or {}))

    x = torch.tensor(MOLECULES["cluster"][2], requires_grad=True)
    record = Record()
    with record:
        energy = scripted(x)
        energy.backward()
    assert "mul" in record.ops and "index" in record.ops  # the recording saw the model
    assert "cumsum" in record.ops and "scatter" in record.ops  # the packed edge list
    for op in ("nonzero", "masked_select", "unique", "_unique2", "unique_dim", "unique_consecutive", "argwhere"):
        assert op not in record.ops, op
    assert not record.boolIndex


def test_all_pairs_equal_the_library_neighbour_list(files, calculators):
    """The padding edges add exactly zero: p-xylene stretched 4.5-fold (n = 18, every pair at
    least 0.48 nm apart, beyond the 0.4 nm cutoff), where mace-torch's own neighbour list has no
    pair at all and our edge list only padding, gives its energy, and forces of exactly zero."""
    topology, atoms, positions = MOLECULES["pxylene"]
    spread = positions * 4.5
    model = macemodel.create(topology, atoms, modelPath=files["float64"])
    energy, gradient = energyAndGradient(model, spread)
    expected, expected_gradient = theirs(calculators["double"], topology, atoms, spread)
    assert abs(energy.item() - expected) <= energy_bound(model, expected, len(atoms), torch.float64, True)
    # No neighbour at all: each atom's energy is its E0 plus the readout of its isolated features,
    # and the forces are exactly zero in both.
    assert np.abs(gradient).max() == 0.0 and np.abs(expected_gradient).max() == 0.0


def _allPairsEnergy(model, positions):
    """The energy and gradient of ``model``'s compiled MACE on every ordered pair of the region,
    with no padding (the graph of the adapter before its edge list): the reference that the
    fixed-capacity edge list must reproduce."""
    x = torch.tensor(positions, dtype=torch.float64, requires_grad=True)
    pairs = model.pairs
    data = {"positions": x.to(model.dtype) * 10.0, "node_attrs": model.nodeAttrs, "edge_index": pairs,
            "shifts": torch.zeros(pairs.shape[1], 3, dtype=model.dtype), "batch": model.batch, "ptr": model.ptr,
            "cell": model.cell, "head": model.head}
    out = model.model(data, training=False, compute_force=False)
    energy = (out["interaction_energy"][0].to(torch.float64) + model.referenceEnergy) * EV_TO_KJ_PER_MOL
    energy.backward()
    return energy.item(), x.grad.numpy()


def test_padding_contributes_nothing(files):
    """float64, p-xylene (n = 18) and the cluster (n = 12): the edge list at its own capacity and
    at the capacity of every pair (mostly padding) gives the energy and gradient of MACE on all
    ordered pairs with no padding, within two evaluations' rounding."""
    for name in MOLECULES:
        topology, atoms, positions = MOLECULES[name]
        model = macemodel.create(topology, atoms, modelPath=files["float64"])
        expected, expected_gradient = _allPairsEnergy(model, positions)
        n = len(atoms)
        for capacity in (None, n * (n - 1)):
            if capacity is not None:
                model.setCapacity(capacity)
            energy, gradient = energyAndGradient(model, positions)
            assert model.capacity < n * (n - 1) if capacity is None else model.capacity == capacity
            assert abs(energy.item() - expected) <= energy_bound(model, expected, n, torch.float64, False), name
            np.testing.assert_allclose(gradient, expected_gradient, rtol=0,
                                       atol=force_bound(expected_gradient, torch.float64))


def test_capacity_grows_on_the_cpu(files):
    """float64, p-xylene (n = 18): first evaluated stretched 1.6-fold (few pairs within the
    cutoff, so a small capacity), then at its own positions (more pairs than that capacity): the
    capacity grows, and energy and gradient are those of a fresh model; a capacity set too small
    with setCapacity grows the same way on the CPU."""
    topology, atoms, positions = MOLECULES["pxylene"]
    fresh = macemodel.create(topology, atoms, modelPath=files["float64"])
    expected, expected_gradient = energyAndGradient(fresh, positions)
    first = fresh.capacity
    for build in ("stretched", "setCapacity"):
        model = torch.jit.script(macemodel.create(topology, atoms, modelPath=files["float64"]))
        if build == "stretched":
            energyAndGradient(model, positions * 1.6)
        else:
            model.setCapacity(5)
        small = model.capacity
        assert small < first - 16, (small, first)
        energy, gradient = energyAndGradient(model, positions)
        assert model.capacity > small
        n = len(atoms)
        assert abs(energy.item() - expected.item()) <= energy_bound(fresh, expected.item(), n, torch.float64, False)
        np.testing.assert_allclose(gradient, expected_gradient, rtol=0,
                                   atol=force_bound(expected_gradient, torch.float64))


LARGE_SYMBOLS = list(np.random.default_rng(11).choice(["H", "H", "C", "C", "N", "O"], 80))


def test_large_cluster_matches_mace_calculator(files, calculators):
    """float64, a seeded cluster of 80 H, C, N and O atoms (at least 0.1 nm apart in a 0.93 nm
    cube, about molecular density): most pairs lie beyond the cutoff, so the edge list holds far
    fewer than the n (n - 1) = 6320 ordered pairs; energy and forces against mace-torch's
    calculator, directly and scripted."""
    topology, atoms, positions = _cluster(LARGE_SYMBOLS, seed=3, extent=0.93)
    model = macemodel.create(topology, atoms, modelPath=files["float64"])
    expected, expected_gradient = theirs(calculators["double"], topology, atoms, positions)
    n = len(atoms)
    for module in (model, torch.jit.script(model)):
        energy, gradient = energyAndGradient(module, positions)
        assert abs(energy.item() - expected) <= energy_bound(model, expected, n, torch.float64, True)
        np.testing.assert_allclose(gradient, expected_gradient, rtol=0,
                                   atol=force_bound(expected_gradient, torch.float64))
    assert model.capacity < n * (n - 1) // 3, model.capacity
    assert np.abs(expected_gradient).max() > 1.0


def test_importing_mace_leaves_weights_only_loading_on():
    """mace-torch's import sets TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1, which turns off weights-only
    unpickling for every later torch.load of the process that does not pass weights_only; the
    adapter puts the variable back (run in a fresh process, where nothing has imported mace yet)."""
    import subprocess
    import sys
    code = ("import os, mace as probe; assert os.environ.get('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD') == '1'\n"
            "os.environ.pop('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD')\n"
            "import importlib, sys; del sys.modules['mace']\n"
            "from openmmhybrid.models import mace; mace._importMACE()\n"
            "assert 'TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD' not in os.environ, 'left set'\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={k: v for k, v in os.environ.items() if k != "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"})
    assert result.returncode == 0, result.stderr[-2000:]
