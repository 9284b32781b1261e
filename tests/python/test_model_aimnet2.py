"""Tests of openmmhybrid.models.aimnet2: AIMNet2 (aimnet 0.2.5) as a static-shape TorchScript module.

The models are random-weight AIMNet2s that aimnet itself builds and saves in its v2 ``.pt`` format
(tests/python/zoo_aimnet2.py, 'tiny': 4 features x 4 shifts, hidden layers of 16), with the
published wB97M-D3 file's terms: SRCoulomb inside, the calculator's full Coulomb and DFT-D3
outside.  The references are aimnet's own evaluations of the same file: in float64 its model's
dense all-pairs forward (``forward_prepared``) plus its ``LRCoulomb`` and ``DFTD3`` modules; in
float32 its ``AIMNet2Calculator`` (its neighbour lists, nvalchemi-toolkit-ops D3 kernels).
"""
import sys
import warnings

import numpy as np
import openmm
import openmm.app as app
import openmm.unit as unit
import pytest
import torch

aimnet = pytest.importorskip("aimnet", reason="the AIMNet2 adapter reads models with aimnet (pip install aimnet==0.2.5)")

import openmmhybrid  # noqa: E402
from openmmhybrid.models import EV_TO_KJ_PER_MOL, aimnet2  # noqa: E402
from adapter_checks import (ZeroModel, displacedEnergy, energyAndGradient, mlforceState,  # noqa: E402
                            oneResidueTopology, pxyleneRegion, rigidlyMoved, shortDynamics, xmlRoundTripStates)
from precision import EPS32, EPS64, bound, centralDifference, networkTerms  # noqa: E402
from zoo_aimnet2 import saveAIMNet2  # noqa: E402

torch.set_num_threads(1)
KJ = unit.kilojoule_per_mole
NM = unit.nanometer


def _pxyleneRegion():
    topology, atoms, x = pxyleneRegion()
    elements = [a.element.atomic_number for a in topology.atoms()]
    return [elements[i] for i in atoms], x


PXYLENE_NUMBERS, PXYLENE = _pxyleneRegion()
# p-xylene with a methyl H made Cl, another S and a ring H made N-like O: all six covered elements.
MIXED_NUMBERS = list(PXYLENE_NUMBERS)
_hydrogens = [i for i, z in enumerate(MIXED_NUMBERS) if z == 1]
MIXED_NUMBERS[_hydrogens[0]], MIXED_NUMBERS[_hydrogens[4]], MIXED_NUMBERS[_hydrogens[8]] = 17, 16, 8
_carbons = [i for i, z in enumerate(MIXED_NUMBERS) if z == 6]
MIXED_NUMBERS[_carbons[1]] = 7
MOLECULES = {"pxylene": (PXYLENE_NUMBERS, PXYLENE), "mixed": (MIXED_NUMBERS, PXYLENE)}


def topologyOf(numbers):
    return oneResidueTopology(numbers, residueName="LIG")


@pytest.fixture(scope="module")
def modelPath(tmp_path_factory):
    return saveAIMNet2(tmp_path_factory.mktemp("aimnet2") / "tiny.pt")


def make(path, numbers, **kwargs):
    return aimnet2.create(topologyOf(numbers), list(range(len(numbers))), modelPath=path, **kwargs)


def libraryFloat64(path, numbers, positions, charge=0):
    """aimnet's own float64 evaluation: its model's dense all-pairs forward, then its LRCoulomb
    (the calculator's 'simple' full Coulomb) and DFTD3 (its differentiable torch path), in
    kJ/mol and kJ/mol/nm."""
    from aimnet import nbops
    from aimnet.models import load_model
    from aimnet.modules import DFTD3, LRCoulomb
    model, meta = load_model(path)
    model = model.double()
    x = torch.tensor(positions * 10.0, dtype=torch.float64, requires_grad=True)
    data = {"coord": x[None], "numbers": torch.tensor([numbers]), "charge": torch.tensor([float(charge)],
                                                                                       dtype=torch.float64)}
    data = model.forward_prepared(nbops.calc_masks(nbops.set_nb_mode(data)))
    data = LRCoulomb(key_in="charges", key_out="energy", method="simple", rc=meta["coulomb_sr_rc"],
                     subtract_sr=False).double()(data)
    data = DFTD3(**meta["d3_params"]).double()(data, hessian=True)
    energy = data["energy"].sum()
    gradient, = torch.autograd.grad(energy, x)
    return energy.item() * EV_TO_KJ_PER_MOL, gradient.numpy() * EV_TO_KJ_PER_MOL * 10.0


def libraryCalculator(path, numbers, positions, charge=0):
    """aimnet's AIMNet2Calculator (float32, its neighbour lists and D3 kernels): kJ/mol, kJ/mol/nm."""
    from aimnet.calculators import AIMNet2Calculator
    calc = AIMNet2Calculator(path, device="cpu")
    out = calc({"coord": torch.tensor(positions * 10.0, dtype=torch.float32), "numbers": torch.tensor(numbers),
                "charge": torch.tensor([float(charge)])}, forces=True)
    return out["energy"].item() * EV_TO_KJ_PER_MOL, -out["forces"].detach().double().numpy() * EV_TO_KJ_PER_MOL * 10.0


def roundingTerms(model):
    """Rounding steps reaching the energy: the widest dot product of the network (its largest
    Linear input), through every Linear layer of the passes and the energy head, for each atom
    and each of its n neighbours summed in the convolutions."""
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    return networkTerms(max(m.in_features for m in linears), len(linears), model.natoms ** 2)


def energyScale(model, positions):
    """The magnitude of what is computed in the model's dtype (kJ/mol): the energy without the
    atomic shifts, which are a float64 constant (their float64 sum rounds at eps64 of their
    magnitudes, added too)."""
    energy = model(torch.tensor(positions, dtype=torch.float64)).item()
    shifts = float(model.atomicShift.sum()) * EV_TO_KJ_PER_MOL
    return abs(energy - shifts) + EPS64 / EPS32 * float(model.atomicShift.abs().sum()) * EV_TO_KJ_PER_MOL


def forceScale(gradient):
    """A force component sums the n atoms' contributions, each up to the largest force."""
    return np.abs(gradient).max() * len(gradient)


# ---------------------------------------------------------------------------------------------
# 1. Against the library

@pytest.mark.parametrize("name", MOLECULES)
def test_float64_matches_aimnet(name, modelPath, platform):
    """float64, n = 18 atoms: the module (eager) and MLForce (TorchScript in the kernel) against
    aimnet's float64 dense forward + LRCoulomb + DFTD3 of the same file.  Bound: 8 sqrt(T) eps64 S
    with T = widest Linear input x Linear layers x n^2 (:func:`roundingTerms`), S = the atomic
    shifts' magnitudes + |E| (energy) or n x the largest force (forces).  Measured: energies equal
    to the last bit, forces within 1e-13 kJ/mol/nm (bounds 2e-10 and 1e-9)."""
    numbers, positions = MOLECULES[name]
    model = make(modelPath, numbers, precision="double")
    expectedEnergy, expectedGradient = libraryFloat64(modelPath, numbers, positions)
    energy, gradient = energyAndGradient(model, positions)
    eBound = bound(energyScale(model, positions), torch.float64, roundingTerms(model))
    fBound = bound(forceScale(expectedGradient), torch.float64, roundingTerms(model))
    print(f"{name}: |dE| = {abs(energy.item() - expectedEnergy):.1e} (bound {eBound:.1e}) kJ/mol, max |dF| = "
          f"{np.abs(gradient - expectedGradient).max():.1e} (bound {fBound:.1e}) kJ/mol/nm")
    assert energy.dtype == torch.float64 and energy.dim() == 0
    assert abs(energy.item() - expectedEnergy) <= eBound
    np.testing.assert_allclose(gradient, expectedGradient, rtol=0, atol=fBound)
    assert np.abs(expectedGradient).max() > 1.0  # forces of a real size
    kernelEnergy, kernelForces = mlforceState(model, positions, platform, double=True)
    assert abs(kernelEnergy - expectedEnergy) <= 2 * eBound
    np.testing.assert_allclose(kernelForces, -expectedGradient, rtol=0, atol=2 * fBound)


def test_float32_matches_aimnet_calculator(modelPath, platform):
    """float32, n = 18 (all six elements): the module and MLForce against aimnet's
    AIMNet2Calculator (float32, packed neighbour lists, nvalchemi-toolkit-ops D3 kernel).  Bounds
    as the float64 test with eps32.  Measured: |dE| = 3.7e-5 kJ/mol (bound 0.11), max |dF| = 9e-4 kJ/mol/nm (bound 0.59)."""
    numbers, positions = MOLECULES["mixed"]
    model = make(modelPath, numbers)
    assert model.a0.dtype == torch.float32  # the file's dtype by default
    expectedEnergy, expectedGradient = libraryCalculator(modelPath, numbers, positions)
    energy, gradient = energyAndGradient(model, positions, torch.float32)
    eBound = bound(energyScale(model, positions), torch.float32, roundingTerms(model))
    fBound = bound(forceScale(expectedGradient), torch.float32, roundingTerms(model))
    print(f"float32: |dE| = {abs(energy.item() - expectedEnergy):.1e} (bound {eBound:.1e}), max |dF| = "
          f"{np.abs(gradient - expectedGradient).max():.1e} (bound {fBound:.1e})")
    assert abs(energy.item() - expectedEnergy) <= eBound
    np.testing.assert_allclose(gradient, expectedGradient, rtol=0, atol=fBound)
    kernelEnergy, kernelForces = mlforceState(model, positions, platform, double=False)
    assert abs(kernelEnergy - energy.item()) <= eBound
    np.testing.assert_allclose(kernelForces, -gradient, rtol=0, atol=fBound)


def test_precision_single_double_and_default(modelPath):
    """precision: None is the file's float32, 'double' float64; either returns a float64 scalar
    whatever the positions' dtype, and the two agree to float32's rounding (n = 18, as above)."""
    numbers, positions = MOLECULES["mixed"]
    default, single, double = (make(modelPath, numbers, precision=p) for p in (None, "single", "double"))
    assert default.a0.dtype == single.a0.dtype == torch.float32 and double.a0.dtype == torch.float64
    for model in (default, double):
        for dtype in (torch.float32, torch.float64):
            e = model(torch.tensor(positions, dtype=dtype))
            assert e.dtype == torch.float64 and e.dim() == 0
    e32, g32 = energyAndGradient(single, positions, torch.float64)
    e64, g64 = energyAndGradient(double, positions)
    assert e32.item() == default(torch.tensor(positions)).item()  # same code, same inputs
    assert abs(e32.item() - e64.item()) <= bound(energyScale(double, positions), torch.float32, roundingTerms(double))
    np.testing.assert_allclose(g32, g64, rtol=0, atol=bound(forceScale(g64), torch.float32, roundingTerms(double)))
    assert e32.item() != e64.item()  # the float32 model really ran in float32
    with pytest.raises(ValueError, match="precision"):
        make(modelPath, numbers, precision="half")


# ---------------------------------------------------------------------------------------------
# 2-4. Finite differences, invariance, serialization

def test_forces_match_finite_differences(modelPath):
    """float64, n = 18: six coordinates' forces against central differences (h = 1e-4 nm, with
    precision.centralDifference's truncation and rounding bound)."""
    numbers, positions = MOLECULES["mixed"]
    model = make(modelPath, numbers, precision="double")
    _, gradient = energyAndGradient(model, positions)
    rounding = bound(energyScale(model, positions), torch.float64, roundingTerms(model))
    for atom, axis in [(0, 0), (3, 1), (7, 2), (10, 0), (14, 1), (17, 2)]:
        numeric, error = centralDifference(displacedEnergy(model, positions, atom, axis), 1e-4, rounding)
        assert abs(-gradient[atom, axis] - numeric) <= error, (atom, axis)


def test_rotation_and_translation_invariance(modelPath):
    """float64, n = 18: energy unchanged and forces rotated under a rotation and a translation,
    to the rounding of the moved coordinates (|x| up to 5 nm: eps64 |x| |F| per coordinate)."""
    numbers, positions = MOLECULES["mixed"]
    model = make(modelPath, numbers, precision="double")
    energy, gradient = energyAndGradient(model, positions)
    rotation, moved = rigidlyMoved(positions, [3.1, -2.7, 0.4], seed=7)
    energy2, gradient2 = energyAndGradient(model, moved)
    terms = roundingTerms(model)
    shift = np.abs(moved).max() * np.abs(gradient).sum()
    assert abs(energy2.item() - energy.item()) <= bound(energyScale(model, positions) + shift, torch.float64, terms)
    # The forces move by |x| times the Hessian; the Hessian is below |F| / (0.01 nm) here (the
    # network's Angstrom length scale), over n atoms.
    hessian = np.abs(gradient).max() / 0.01 * len(positions)
    np.testing.assert_allclose(gradient2, gradient @ rotation.T, rtol=0,
                               atol=bound(forceScale(gradient) + np.abs(moved).max() * hessian, torch.float64, terms))


def test_xml_round_trip_is_bitwise(modelPath, platform):
    """A System with the MLForce, serialized and read back, gives the same energy to the bit (n = 18)."""
    numbers, positions = MOLECULES["pxylene"]
    model = make(modelPath, numbers, precision="double")
    energies = [s.getPotentialEnergy().value_in_unit(KJ) for s in xmlRoundTripStates(model, positions, platform)]
    assert energies[0] == energies[1]


# ---------------------------------------------------------------------------------------------
# 5. Dynamics and createMixedSystem

def test_short_md_stays_finite(modelPath, platform):
    """20 steps of LangevinMiddleIntegrator (0.5 fs, 300 K) on the 18-atom region alone, float32."""
    numbers, positions = MOLECULES["pxylene"]
    model = make(modelPath, numbers)
    masses = [app.Element.getByAtomicNumber(z).mass for z in numbers]
    _, _, energy, x = shortDynamics(model, masses, positions, platform, seed=1)
    assert np.isfinite(x).all() and np.isfinite(energy)
    assert np.abs(x - positions).max() > 0  # it moved


def test_create_mixed_system_on_pxylene(modelPath, pxylene):
    """createMixedSystem(prmtop.topology, system, TMP atoms, model=<AIMNet2>) in float64 on CPU:
    the total is finite, and the correction (ML - region MM) minus that with a zero model (the
    region's MM energy, which cancels) is the module's energy of the region's positions, to the
    rounding of two float64 code paths (TorchScript in the kernel, eager here)."""
    prm, crd, system = pxylene
    atoms = openmmhybrid.selectAtoms(prm.topology, residueName="TMP")
    model = aimnet2.create(prm.topology, atoms, modelPath=modelPath, precision="double")

    def correction(m):
        mixed = openmmhybrid.createMixedSystem(prm.topology, system, atoms, m, usesDoublePrecision=True,
                                               correctionGroup=7)
        c = openmm.Context(mixed, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("CPU"))
        c.setPeriodicBoxVectors(*crd.boxVectors)
        c.setPositions(crd.positions)
        return (c.getState(getEnergy=True, groups={7}).getPotentialEnergy().value_in_unit(KJ),
                c.getState(getEnergy=True).getPotentialEnergy().value_in_unit(KJ))

    (withModel, total), (withZero, _) = correction(model), correction(ZeroModel())
    x = np.asarray(crd.getPositions(asNumpy=True).value_in_unit(NM))[atoms]
    with torch.no_grad():
        expected = model(torch.tensor(x)).item()
    assert np.isfinite(total)
    tolerance = 2 * bound(energyScale(model, x), torch.float64, roundingTerms(model)) + 4 * np.spacing(abs(withZero))
    assert abs((withModel - withZero) - expected) <= tolerance


# ---------------------------------------------------------------------------------------------
# 6. Refusals and charge

def test_uncovered_element_names_the_atom(modelPath):
    numbers = [6, 1, 1, 9]  # F is not among the file's H, C, N, O, S, Cl
    with pytest.raises(ValueError, match=r"ML atom 3 \(F of residue LIG 1\) is F; the AIMNet2 model in 'tiny.pt' "
                                         r"covers only H, C, N, O, S and Cl"):
        make(modelPath, numbers)


def test_missing_file_and_legacy_jpt_are_refused(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        make(tmp_path / "nowhere.pt", [6, 1])
    monkeypatch.setenv("OPENMMHYBRID_WEIGHTS", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"aimnet2_wb97m_d3_0\.pt"):
        aimnet2.create(topologyOf([6, 1]), [0, 1])
    jpt = tmp_path / "old.jpt"
    jpt.write_bytes(b"not read")
    with pytest.raises(ValueError, match=r"legacy TorchScript \.jpt.*aimnet convert"):
        make(jpt, [6, 1])


def test_charge_is_passed_and_changes_the_energy(modelPath):
    """The total charge reaches the charge equilibration: the energy changes with it, and the
    float64 energy of charge +1 is aimnet's for charge +1 (bounds as test_float64_matches_aimnet)."""
    numbers, positions = MOLECULES["mixed"]
    neutral = make(modelPath, numbers, precision="double")
    cation = make(modelPath, numbers, precision="double", charge=1)
    x = torch.tensor(positions)
    e0, e1 = neutral(x).item(), cation(x).item()
    eBound = bound(energyScale(cation, positions), torch.float64, roundingTerms(cation))
    assert abs(e1 - e0) > 1e3 * eBound
    expected, _ = libraryFloat64(modelPath, numbers, positions, charge=1)
    assert abs(e1 - expected) <= eBound


def test_multiplicity_is_warned_for_a_closed_shell_model_and_rxn_refuses_charge(modelPath):
    numbers = MOLECULES["pxylene"][0]
    with pytest.warns(UserWarning, match="no spin input"):
        make(modelPath, numbers, multiplicity=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        make(modelPath, numbers)  # multiplicity 1: no warning
    with pytest.raises(ValueError, match="trained on neutral systems only"):
        aimnet2.create(topologyOf(numbers), list(range(len(numbers))), name="aimnet2-rxn", modelPath=modelPath,
                       charge=1)
    with pytest.raises(ValueError, match="unknown model name"):
        aimnet2.create(topologyOf(numbers), list(range(len(numbers))), name="aimnet3", modelPath=modelPath)
    with pytest.raises(ValueError, match="unknown option"):
        make(modelPath, numbers, cutoff=5.0)


def test_missing_aimnet_says_what_to_install(modelPath, monkeypatch):
    monkeypatch.setitem(sys.modules, "aimnet.models", None)
    with pytest.raises(ImportError, match=r"pip install aimnet"):
        make(modelPath, [6, 1])


def test_names_match_aimnets_registry():
    """Each name's file and URL are those of ensemble member 0 of aimnet's registry alias."""
    from aimnet.calculators.model_registry import load_model_registry
    registry = load_model_registry()
    for name, info in aimnet2.NAMES.items():
        entry = registry["models"][registry["aliases"][name]]
        assert (info["file"], info["url"]) == (entry["file"], entry["url"]), name
        assert set(info) == {"elements", "charge", "source", "licence", "file", "url"}


# ---------------------------------------------------------------------------------------------
# 7. Static shapes

def test_scripted_code_has_no_data_dependent_ops(modelPath):
    """What keeps the module capturable in a CUDA graph: the scripted energy (network, Coulomb,
    D3) calls no nonzero, masked_select, unique, argwhere or item."""
    numbers = MOLECULES["mixed"][0]
    scripted = torch.jit.script(make(modelPath, numbers))
    code = "".join(getattr(scripted, m).code for m in ("forward", "energyEV", "_conv", "_envelope", "_pairCoulomb",
                                                       "_dispersion"))
    assert "_dispersion" in code and "_pairCoulomb" in code
    for forbidden in ("nonzero", "masked_select", "unique", "argwhere", "item(", "tolist"):
        assert forbidden not in code, forbidden
