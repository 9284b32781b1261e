"""Tests of the named ANI models beyond ANI-1x: 'ani1ccx' (weights extracted at set-up from the
torchani 2.0 wheel) and 'ani2x' (weight files the user gives), and `openmm-hybrid models`.

The reference is torchani's own pipeline built from the same NeuroChem files
(:func:`torchaniEnsemble`: torchani's ``neurochem`` loaders and ``AEVComputer``, independent of
the project's static-shape code).  No package ships real ANI-2x weights (torchani 2.0-2.1 have
none, 2.2.x empty placeholders, 2.7 and later none), so ANI-2x is tested on a synthetic folder
that this file writes in NeuroChem format: ANI-2x's AEV constants (7 elements, 1008 features) and
small random networks, read by both implementations.
"""
import bz2
import math
import os
import shutil
import subprocess
import sys
import warnings

import numpy as np
import openmm
import openmm.unit as unit
import pytest
import torch

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # torchani warns at import about optional extras (ase, cuaev)
    torchani = pytest.importorskip("torchani", reason="the ANI models read their weights with torchani 2.2.4")

import openmmhybrid  # noqa: E402
from openmmhybrid import models  # noqa: E402
from openmmhybrid.cli import main  # noqa: E402
from openmmhybrid.models import ani  # noqa: E402
from openmmhybrid.models.ani import (ANI, ANI1ccx, ANI1x, ANI2x, HARTREE_TO_KJ_PER_MOL,  # noqa: E402
                                     torchaniANI1x, torchaniEnsemble)
from conftest import ROOT, amber  # noqa: E402
from precision import bound, networkTerms  # noqa: E402
from test_ani1x import MOLECULES, ours, theirs, to_hartree  # noqa: E402

KJ = unit.kilojoule_per_mole
GROUP = 7  # the correction's force group in the mixed Systems here


def _ani1ccxDir():
    """The installed ANI-1ccx folder; a missing one fails with the set-up command to run."""
    try:
        return ani.ani1ccxWeightsDir()
    except FileNotFoundError as error:
        pytest.fail(f"{error}")


# ---------------------------------------------------------------------------------------------
# ANI-1ccx

@pytest.fixture(scope="module")
def ccx_reference():
    """torchani's ANI-1ccx (float64) from the installed folder: atomic numbers and Angstrom in, Hartree out."""
    return torchaniEnsemble(_ani1ccxDir()).double()


def test_generic_torchani_builder_is_torchaniANI1x():
    """torchaniANI1x(weightsDir=) is the same generic NeuroChem pipeline as torchaniEnsemble: the
    same modules and, on the same folder, the same parameters and self energies."""
    folder = _ani1ccxDir()
    a, b = torchaniANI1x(weightsDir=folder), torchaniEnsemble(folder)
    assert [type(m).__name__ for m in a] == [type(m).__name__ for m in b]
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_ani1ccx_is_read_from_its_own_files():
    """The self energies and constants are ANI-1ccx's, not ANI-1x's: sae_linfit.dat of the folder
    (C -38.0375 Hartree, ANI-1x -38.0365), and the energy of one molecule differs."""
    numbers, positions = MOLECULES["pxylene"]
    ccx, x1 = ANI1ccx(numbers), ANI1x(numbers)
    _, sae = torchani.neurochem.load_sae(os.path.join(_ani1ccxDir(), "sae_linfit.dat"), return_dict=True)
    symbols = {1: "H", 6: "C"}
    assert ccx.selfEnergy == pytest.approx(sum(sae[symbols[z]] for z in numbers) * HARTREE_TO_KJ_PER_MOL, rel=1e-15)
    assert sae["C"] == pytest.approx(-38.03750806057356, abs=1e-12)
    e_ccx, e_1x = (m(torch.tensor(positions)).item() for m in (ccx, x1))
    assert abs(e_ccx - e_1x) > 100.0  # kJ/mol: another model, not the same weights under another name


@pytest.mark.parametrize("name", MOLECULES)
def test_ani1ccx_matches_torchani(name, ccx_reference):
    """Energies and forces of ANI1ccx against torchani's ANI-1ccx from the same files, float64.

    The issue asks for 1e-6 Hartree; the bound derived from the arithmetic is far smaller: other
    code and another order of every sum, down to the 384-input dot products of the 4 layers of
    the 8 members for each of the n atoms, at the scale of the total energy (self energies
    included): 8 sqrt(384 x 4 x 8 n) eps64 |E|, 4e-10 Hartree for the dipeptide.  Measured: about
    1e-13 Hartree."""
    numbers, positions = MOLECULES[name]
    model = ANI1ccx(numbers)
    energy, gradient = ours(model, positions)
    energy_h, gradient_h = to_hartree(energy.item(), gradient)
    expected_energy, expected_gradient = theirs(ccx_reference, numbers, positions)
    energy_bound = bound(expected_energy, torch.float64, terms=networkTerms(384, 4, 8 * len(numbers)))
    force_bound = bound(np.abs(expected_gradient).max() * len(numbers), torch.float64, terms=networkTerms(384, 4, 8))
    print(f"{name}: |dE| = {abs(energy_h - expected_energy):.1e} Hartree (bound {energy_bound:.1e}), "
          f"max |dF| = {np.abs(gradient_h - expected_gradient).max():.1e} Hartree/A (bound {force_bound:.1e})")
    assert abs(energy_h - expected_energy) < 1e-6
    assert abs(energy_h - expected_energy) < energy_bound
    np.testing.assert_allclose(gradient_h, expected_gradient, rtol=0, atol=force_bound)


def _correction(topology, system, crd, atoms, model, **kwargs):
    """The correction group's energy (the model on the region minus its MM energy), float64, CPU."""
    mixed = openmmhybrid.createMixedSystem(topology, system, atoms, model, usesDoublePrecision=True,
                                           correctionGroup=GROUP, **kwargs)
    c = openmm.Context(mixed, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("CPU"))
    c.setPeriodicBoxVectors(*crd.boxVectors)
    c.setPositions(crd.positions)
    return c.getState(getEnergy=True, groups={GROUP}).getPotentialEnergy().value_in_unit(KJ)


def _regionEnergy(model, crd, atoms):
    x = np.array(crd.positions.value_in_unit(unit.nanometer))[atoms]
    with torch.no_grad():
        return model(torch.tensor(x, dtype=torch.float64)).item()


def _byNameTolerance(*energies_and_models):
    """Kernel (TorchScript in MLForce) against eager, float64: each model's network energy through 4
    layers of 384 inputs (1008 for ANI-2x) for n atoms x members, plus one rounding of each total."""
    total = 0.0
    for e, model, width, members in energies_and_models:
        n = len(model.atomicNumbers)
        total += bound(abs(e - model.selfEnergy), torch.float64, networkTerms(width, 4, n * members))
        total += bound(abs(e), torch.float64, 2)
    return total


def test_ani1ccx_by_name_in_createMixedSystem():
    """createMixedSystem(..., 'ani1ccx'): the correction minus ani1x's is ANI-1ccx minus ANI-1x on
    the region (the region's MM energy, the same in both, cancels)."""
    prm, crd, system = amber("pxylene-water", "pxylene_water.prmtop", "pxylene_water.inpcrd")
    atoms = openmmhybrid.selectAtoms(prm.topology, residueName="TMP")
    numbers = models.atomicNumbers(prm.topology, atoms)
    ccx, x1 = ANI1ccx(numbers), ANI1x(numbers)
    e_ccx, e_1x = _regionEnergy(ccx, crd, atoms), _regionEnergy(x1, crd, atoms)
    difference = (_correction(prm.topology, system, crd, atoms, "ani1ccx")
                  - _correction(prm.topology, system, crd, atoms, "ani1x"))
    tolerance = _byNameTolerance((e_ccx, ccx, 384, 8), (e_1x, x1, 384, 8)) + 4 * np.spacing(abs(e_ccx))
    assert abs(difference - (e_ccx - e_1x)) <= tolerance


def test_missing_ani1ccx_weights_name_the_setup_command(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENMMHYBRID_WEIGHTS", str(tmp_path))
    assert ani.weightsRoot() == str(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"ANI-1ccx weights are not installed: '.*ani-1ccx_8x' does not "
                                                r"exist.*`make build`.*python python/fetch_ani_weights\.py"):
        ANI1ccx([6, 1, 1, 1, 1])
    prm, _, system = amber("pxylene-water", "pxylene_water.prmtop", "pxylene_water.inpcrd")
    atoms = openmmhybrid.selectAtoms(prm.topology, residueName="TMP")
    with pytest.raises(FileNotFoundError, match="OPENMMHYBRID_WEIGHTS"):
        openmmhybrid.createMixedSystem(prm.topology, system, atoms, "ani1ccx")


def test_fetch_script_extracts_the_installed_folder(tmp_path):
    """python/fetch_ani_weights.py into a fresh folder, from the wheel `make build` left in the
    cache (nothing downloaded): the same files as the installed folder, byte for byte, plus the
    licence; a second run does nothing."""
    script = os.path.join(ROOT, "python", "fetch_ani_weights.py")
    cache = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "openmmhybrid")
    if not os.path.isfile(os.path.join(cache, "torchani-2.0-py3-none-any.whl")):
        pytest.skip(f"no torchani 2.0 wheel in {cache} (the weights were not fetched here by make build)")
    out = subprocess.run([sys.executable, script, str(tmp_path / "w"), "--cache", cache], capture_output=True,
                         text=True, check=True).stdout.strip()
    assert out == str(tmp_path / "w" / "ani-1ccx_8x")

    def listing(folder):
        return sorted(os.path.relpath(os.path.join(d, f), folder) for d, _, fs in os.walk(folder) for f in fs)

    installed = _ani1ccxDir()
    assert listing(out) == listing(installed) and len(listing(out)) == 341  # 339 of the wheel, LICENSE, SOURCE
    for name in ("sae_linfit.dat", "train3/networks/ANN-N.nnf-l1.wparam"):
        with open(os.path.join(out, name), "rb") as a, open(os.path.join(installed, name), "rb") as b:
            assert a.read() == b.read()
    with open(os.path.join(out, "LICENSE")) as f:
        assert "Permission is hereby granted, free of charge" in f.read()
    again = subprocess.run([sys.executable, script, str(tmp_path / "w"), "--cache", str(tmp_path / "no-cache")],
                           capture_output=True, text=True, check=True)
    assert again.stdout.strip() == out and not (tmp_path / "no-cache").exists()


# ---------------------------------------------------------------------------------------------
# ANI-2x on a synthetic NeuroChem folder

ANI2X_ELEMENTS = ["H", "C", "N", "O", "S", "F", "Cl"]  # the .params order (torchani's ANI-2x)
ANI2X_PARAMS = """TM = 1
Rcr = 5.1000e+00
Rca = 3.5000e+00
EtaR = [1.9700000e+01]
ShfR = [{shfr}]
Zeta = [1.4100000e+01]
ShfZ = [{shfz}]
EtaA = [1.2500000e+01]
ShfA = [{shfa}]
Atyp = [H,C,N,O,S,F,Cl]
"""
ANI2X_WIDTH = 7 * 16 + 28 * 8 * 4  # 1008 features
HIDDEN = (12, 8)  # small networks: 1008 -> 12 -> 8 -> 1, CELU between
MEMBERS = 2
# Self energies (Hartree) of about ANI-2x's size; synthetic.
SAE = {"H": -0.59786, "C": -38.08934, "N": -54.71197, "O": -75.19107, "S": -398.15771, "F": -99.80349,
       "Cl": -460.16819}


def _floats(values):
    return ",".join(f"{v:.7e}" for v in values)


def _nnf_text(symbol, sizes):
    layers = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        activation = 6 if i == len(sizes) - 2 else 9  # 9: CELU(0.1), 6: linear (torchani.neurochem)
        layers.append(f"layer [\nnodes={n_out};\nactivation={activation};\ntype=0;\nblocksize={n_in};\n"
                      f"weights=FILE:ANN-{symbol}.nnf-l{i + 1}.wparam[{n_in * n_out}];\n"
                      f"biases=FILE:ANN-{symbol}.nnf-l{i + 1}.bparam[{n_out}];\n]\n")
    return f"inputsize={sizes[0]};\natom_net {symbol} $\n{''.join(layers)}\n $ \n"


def write_neurochem(folder, rng, width=ANI2X_WIDTH, members=MEMBERS):
    """An ANI-2x-shaped NeuroChem folder with random networks, as torchani.neurochem reads it:
    the .params text, sae_linfit.dat ('H,0=value'), train<i>/networks/ANN-<X>.nnf (a header up to
    '=', a newline, then bzip2 of the text and a NUL), .wparam ([out, in] float32) and .bparam."""
    os.makedirs(folder)
    shfr = 0.8 + (5.1 - 0.8) / 16 * np.arange(16)
    shfa = 0.8 + (3.5 - 0.8) / 8 * np.arange(8)
    shfz = np.pi / 8 + np.pi / 4 * np.arange(4)
    with open(os.path.join(folder, "rHCNOSFCl-5.1R_16-3.5A_a8-4.params"), "w") as f:
        f.write(ANI2X_PARAMS.format(shfr=_floats(shfr), shfa=_floats(shfa), shfz=_floats(shfz)))
    with open(os.path.join(folder, "sae_linfit.dat"), "w") as f:
        f.write("".join(f"{s},{i}={SAE[s]!r}\n" for i, s in enumerate(ANI2X_ELEMENTS)))
    sizes = (width,) + HIDDEN + (1,)
    for member in range(members):
        networks = os.path.join(folder, f"train{member}", "networks")
        os.makedirs(networks)
        for symbol in ANI2X_ELEMENTS:
            with open(os.path.join(networks, f"ANN-{symbol}.nnf"), "wb") as f:
                f.write(b"1234=\n" + bz2.compress(_nnf_text(symbol, sizes).encode("ascii") + b"\0"))
            for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
                w = rng.normal(scale=1.0 / np.sqrt(n_in), size=(n_out, n_in)).astype("<f4")
                b = rng.normal(scale=0.1, size=n_out).astype("<f4")
                w.tofile(os.path.join(networks, f"ANN-{symbol}.nnf-l{i + 1}.wparam"))
                b.tofile(os.path.join(networks, f"ANN-{symbol}.nnf-l{i + 1}.bparam"))
    return folder


@pytest.fixture(scope="module")
def ani2x_dir(tmp_path_factory):
    return write_neurochem(str(tmp_path_factory.mktemp("weights") / "ani-2x_8x"), np.random.default_rng(2020))


def _halogenated_dipeptide():
    """The alanine dipeptide with F, Cl and S in place of two hydrogens and an oxygen: all 7 elements."""
    numbers, positions = MOLECULES["alanine_dipeptide"]
    numbers = list(numbers)
    numbers[0], numbers[2], numbers[15] = 9, 17, 16  # ACE H1 -> F, ACE H2 -> Cl, ALA O -> S
    return numbers, positions


ANI2X_MOLECULES = {"halogenated_dipeptide": _halogenated_dipeptide(), "pxylene": MOLECULES["pxylene"]}


@pytest.fixture(scope="module")
def ani2x_reference(ani2x_dir):
    return torchaniEnsemble(ani2x_dir).double()


@pytest.mark.parametrize("name", ANI2X_MOLECULES)
def test_ani2x_matches_torchani_on_synthetic_weights(name, ani2x_dir, ani2x_reference):
    """AEVs (1008 features: 7 radial blocks, 28 element pairs), energies and forces of ANI2x
    against torchani's pipeline from the same synthetic files, float64.  Bounds as for ANI-1ccx,
    with the 1008-input first layer, 3 layers and 2 members."""
    numbers, positions = ANI2X_MOLECULES[name]
    model = ANI2x(numbers, weightsDir=ani2x_dir)
    coordinates = torch.tensor(positions * 10.0).unsqueeze(0)
    species = ani2x_reference[0]((torch.tensor([numbers]), coordinates))
    expected_aev = ani2x_reference[1](species).aevs[0]
    aev = model.aev(torch.tensor(positions))
    assert aev.shape == (len(numbers), 1008)
    if name == "halogenated_dipeptide":  # features of S, F and Cl neighbours really are exercised
        assert all((expected_aev[:, 16 * k:16 * (k + 1)] != 0).any() for k in range(7))
    torch.testing.assert_close(aev, expected_aev, rtol=0, atol=bound(expected_aev.abs().max().item(), torch.float64,
                                                                     terms=len(numbers) ** 2))
    energy, gradient = ours(model, positions)
    energy_h, gradient_h = to_hartree(energy.item(), gradient)
    expected_energy, expected_gradient = theirs(ani2x_reference, numbers, positions)
    assert model.selfEnergy == pytest.approx(math.fsum(SAE[ani._symbol(z)] for z in numbers) * HARTREE_TO_KJ_PER_MOL,
                                             rel=1e-15)
    energy_bound = bound(expected_energy, torch.float64, terms=networkTerms(ANI2X_WIDTH, 3, MEMBERS * len(numbers)))
    force_bound = bound(np.abs(expected_gradient).max() * len(numbers), torch.float64,
                        terms=networkTerms(ANI2X_WIDTH, 3, MEMBERS))
    print(f"{name}: |dE| = {abs(energy_h - expected_energy):.1e} Hartree (bound {energy_bound:.1e}), "
          f"network energy {(energy.item() - model.selfEnergy) / HARTREE_TO_KJ_PER_MOL:.3f} Hartree, "
          f"max |dF| = {np.abs(gradient_h - expected_gradient).max():.1e} (bound {force_bound:.1e})")
    assert abs(energy_h - expected_energy) < energy_bound
    np.testing.assert_allclose(gradient_h, expected_gradient, rtol=0, atol=force_bound)
    assert np.abs(expected_gradient).max() > 1e-3  # forces of a real size, not zeros on both sides


def test_ani2x_scripts_and_is_a_generic_ani(ani2x_dir, tmp_path):
    """The scripted module (what MLForce runs) gives the eager energy; ANI(numbers, folder) is the same model."""
    numbers, positions = ANI2X_MOLECULES["halogenated_dipeptide"]
    model = ANI2x(numbers, weightsDir=ani2x_dir)
    path = str(tmp_path / "ani2x.pt")
    torch.jit.script(model).save(path)
    x = torch.tensor(positions)
    e = model(x).item()
    assert torch.jit.load(path)(x).item() == pytest.approx(e, abs=_byNameTolerance((e, model, 1008, MEMBERS)))
    assert ANI(numbers, weightsDir=ani2x_dir)(x).item() == e


def test_ani2x_by_name_with_model_args(ani2x_dir):
    """createMixedSystem(..., model='ani2x', modelArgs={'weightsDir': folder}) on the alanine
    dipeptide in water: the correction minus ani1x's is the two models' difference on the region."""
    prm, crd, system = amber("alanine-dipeptide-water", "alanine-dipeptide.prmtop", "alanine-dipeptide.inpcrd")
    atoms = [a.index for a in prm.topology.atoms() if a.residue.name != "HOH"]
    numbers = models.atomicNumbers(prm.topology, atoms)
    x2, x1 = ANI2x(numbers, weightsDir=ani2x_dir), ANI1x(numbers)
    e2, e1 = _regionEnergy(x2, crd, atoms), _regionEnergy(x1, crd, atoms)
    difference = (_correction(prm.topology, system, crd, atoms, "ani2x", modelArgs={"weightsDir": ani2x_dir})
                  - _correction(prm.topology, system, crd, atoms, "ani1x"))
    tolerance = _byNameTolerance((e2, x2, 1008, MEMBERS), (e1, x1, 384, 8)) + 4 * np.spacing(abs(e2))
    assert abs(difference - (e2 - e1)) <= tolerance


def test_ani2x_default_folder_under_the_weights_root(ani2x_dir, tmp_path, monkeypatch):
    """Without weightsDir, ANI2x takes ani-2x_8x under $OPENMMHYBRID_WEIGHTS (how the command, which
    has no modelArgs, finds user files)."""
    os.symlink(ani2x_dir, tmp_path / "ani-2x_8x")
    monkeypatch.setenv("OPENMMHYBRID_WEIGHTS", str(tmp_path))
    numbers, positions = ANI2X_MOLECULES["halogenated_dipeptide"]
    x = torch.tensor(positions)
    assert ANI2x(numbers)(x).item() == ANI2x(numbers, weightsDir=ani2x_dir)(x).item()


def test_ani2x_without_files_says_what_to_give(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENMMHYBRID_WEIGHTS", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"ANI-2x needs its weight files, and none were given.*"
                                                r"modelArgs=\{'weightsDir': folder\}.*\*\.params.*sae_linfit\.dat"):
        ANI2x([6, 1, 17])
    prm, _, system = amber("alanine-dipeptide-water", "alanine-dipeptide.prmtop", "alanine-dipeptide.inpcrd")
    atoms = [a.index for a in prm.topology.atoms() if a.residue.name != "HOH"]
    with pytest.raises(FileNotFoundError, match="ANI-2x needs its weight files"):
        openmmhybrid.createMixedSystem(prm.topology, system, atoms, "ani2x")
    with pytest.raises(FileNotFoundError, match=r"The ANI-2x weights folder '.*nowhere' does not exist"):
        ANI2x([6, 1], weightsDir=tmp_path / "nowhere")


def test_ani2x_incomplete_folder_names_the_missing_files(ani2x_dir, tmp_path):
    broken = str(tmp_path / "ani-2x_8x")
    shutil.copytree(ani2x_dir, broken)
    os.remove(os.path.join(broken, "sae_linfit.dat"))
    os.remove(os.path.join(broken, "train1", "networks", "ANN-Cl.nnf-l2.wparam"))
    os.remove(os.path.join(broken, "train0", "networks", "ANN-S.nnf"))
    with pytest.raises(FileNotFoundError) as error:
        ANI2x([6, 1], weightsDir=broken)
    message = str(error.value)
    assert "is incomplete; missing (3): " in message
    for name in ("sae_linfit.dat", os.path.join("train1", "networks", "ANN-Cl.nnf-l2.wparam"),
                 os.path.join("train0", "networks", "ANN-S.nnf")):
        assert name in message
    os.remove(os.path.join(broken, "rHCNOSFCl-5.1R_16-3.5A_a8-4.params"))
    with pytest.raises(FileNotFoundError, match=r"missing \(\d+\): \*\.params \(the AEV constants\)"):
        ANI2x([6, 1], weightsDir=broken)


def test_ani2x_refuses_torchani_224s_empty_placeholders():
    """torchani 2.2.4 installs an ani-2x_8x folder of empty files: named as placeholders, not loaded."""
    folder = os.path.join(os.path.dirname(ani.defaultWeightsDir()), "ani-2x_8x")
    if not os.path.isdir(folder):
        pytest.skip("this torchani has no ani-2x_8x folder")
    with pytest.raises(FileNotFoundError, match=r"is incomplete; empty \(\d+\): .*placeholders"):
        ANI2x([6, 1], weightsDir=folder)


def test_ani2x_refuses_other_models_and_mismatched_networks(ani2x_dir, tmp_path):
    with pytest.raises(ValueError, match=r"ANI-2x: the weights in .* cover H, C, N and O \(rHCNO.*\), not ANI-2x's "
                                         r"H, C, N, O, F, S and Cl"):
        ANI2x([6, 1], weightsDir=ani.defaultWeightsDir())
    wrong = write_neurochem(str(tmp_path / "wrong"), np.random.default_rng(1), width=384, members=1)
    with pytest.raises(ValueError, match=r"takes 384 inputs, but the AEV constants .* give 1008 features"):
        ANI2x([6, 1], weightsDir=wrong)
    with pytest.raises(ValueError, match=r"atom 1 is Br \(Z=35\); ANI-2x covers only H, C, N, O, F, S and Cl"):
        ANI2x([6, 35], weightsDir=ani2x_dir)


def test_ani2x_factory_names_the_uncovered_atom(ani2x_dir):
    """By name, an element outside ANI-2x is named with its atom and residue before any file is read."""
    import openmm.app as app
    topology = app.Topology()
    residue = topology.addResidue("LIG", topology.addChain())
    for element in ("C", "Br"):
        topology.addAtom(element, app.Element.getBySymbol(element), residue)
    with pytest.raises(ValueError, match=r"ML atom 1 \(Br of residue LIG 1\) is Br; ANI-2x covers only "
                                         r"H, C, N, O, F, S and Cl"):
        models.createModel("ani2x", topology, [0, 1], weightsDir=ani2x_dir)


# ---------------------------------------------------------------------------------------------
# openmm-hybrid models

def test_models_command_lists_names_elements_and_weights(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENMMHYBRID_WEIGHTS", str(tmp_path))
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    blocks = {block.split()[0]: block for block in out.split("\n\n") if block.strip()}
    assert {"ani1x", "ani1ccx", "ani2x"} <= set(blocks)
    assert "elements: H C N O\n" in blocks["ani1x"] + "\n" and "torchani 2.2.4 wheel" in blocks["ani1x"]
    assert f"{ani.defaultWeightsDir()} (present)" in blocks["ani1x"]
    assert "torchani 2.0 wheel, extracted at set-up" in blocks["ani1ccx"]
    assert f"{tmp_path / 'ani-1ccx_8x'} (not there)" in blocks["ani1ccx"]
    assert "elements: H C N O F S Cl" in blocks["ani2x"] and "your files" in blocks["ani2x"]
    assert f"{tmp_path / 'ani-2x_8x'} (not there)" in blocks["ani2x"]
    for name in ("ani1x", "ani1ccx", "ani2x"):
        assert "neutral only" in blocks[name] and "licence:" in blocks[name]
    (tmp_path / "ani-1ccx_8x").mkdir()
    assert main(["models"]) == 0
    assert f"{tmp_path / 'ani-1ccx_8x'} (present)" in capsys.readouterr().out
    assert main(["models", "--names"]) == 0
    assert capsys.readouterr().out.split() == models.availableModels()


def test_models_command_shows_a_registered_factory(capsys):
    def toy(topology, atoms, **kwargs):
        raise NotImplementedError

    models.registerModel("toy-listed", toy)
    try:
        assert main(["models"]) == 0
        block = next(b for b in capsys.readouterr().out.split("\n\n") if b.startswith("toy-listed"))
        assert "registered: test_models." in block and "toy" in block and "not known here" in block
    finally:
        models._factories.pop("toy-listed")
