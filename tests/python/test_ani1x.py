"""Tests of openmmhybrid.models.ani.ANI1x, the static-shape ANI-1x.

The reference is torchani's own ANI-1x ensemble built from the same shipped weight files
(:func:`torchaniANI1x`), plus finite differences, symmetry, and MLForce inside OpenMM.
Molecules: p-xylene (H, C; residue TMP of examples/data/pxylene-water) and alanine dipeptide
(H, C, N, O; coordinates below).
"""
import os
import warnings

import numpy as np
import openmm
import openmm.app as app
import openmm.unit as unit
import pytest
import torch

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # torchani warns at import about optional extras (ase, cuaev)
    torchani = pytest.importorskip(
        "torchani", reason="ANI1x reads its weights with torchani (pip install torchani==2.2.4, setuptools<81, "
                           "importlib_metadata, lark); not installed")

from openmmhybrid import MLForce  # noqa: E402
from openmmhybrid.models import ani  # noqa: E402
from openmmhybrid.models.ani import ANI1x, HARTREE_TO_KJ_PER_MOL, torchaniANI1x  # noqa: E402
from precision import bound, networkTerms  # noqa: E402

KJ = unit.kilojoule_per_mole
NM = unit.nanometer
DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "examples", "data")

# ACE-ALA-NME: (atomic number, x, y, z in Angstrom), the first 22 atoms of openmmtools'
# alanine-dipeptide-explicit (MIT licence), as in shared/data/alanine-dipeptide-water.
ALANINE_DIPEPTIDE = np.array([
    (1, 15.9081745, 11.9692554, 16.0887376),  # ACE H1
    (6, 15.3772539, 12.8994663, 15.8864236),  # ACE CH3
    (1, 14.4705674, 12.9396154, 16.4900842),  # ACE H2
    (1, 15.1121570, 12.9447762, 14.8301237),  # ACE H3
    (6, 16.2444450, 14.1135468, 16.2253753),  # ACE C
    (8, 17.3824473, 13.9641059, 16.6647591),  # ACE O
    (7, 15.6989683, 15.3142922, 16.0182746),  # ALA N
    (1, 14.7592066, 15.3862303, 15.6552704),  # ALA H
    (6, 16.4175862, 16.5406327, 16.2998410),  # ALA CA
    (1, 16.6830859, 16.5723495, 17.3565355),  # ALA HA
    (6, 17.6960364, 16.6299321, 15.4732728),  # ALA CB
    (1, 17.4457854, 16.6085548, 14.4126043),  # ALA HB1
    (1, 18.2148775, 17.5601067, 15.7049610),  # ALA HB2
    (1, 18.3425233, 15.7850529, 15.7106183),  # ALA HB3
    (6, 15.5675811, 17.7606820, 15.9751026),  # ALA C
    (8, 14.4281062, 17.6276186, 15.5342725),  # ALA O
    (7, 16.1255317, 18.9534919, 16.1944672),  # NME N
    (1, 17.0659732, 19.0119080, 16.5581383),  # NME H
    (6, 15.4197488, 20.1900762, 15.9255217),  # NME C
    (1, 14.4251903, 19.9650242, 15.5404170),  # NME H1
    (1, 15.3303961, 20.7657892, 16.8467552),  # NME H2
    (1, 15.9719836, 20.7709491, 15.1867907),  # NME H3
])

# Bounds for comparing two evaluations (tests/python/precision.py).  The networks' widest dot
# product sums the 384 AEV entries, through 4 layers; the energy sums 8 members' outputs for each
# atom.  Measured on AVX-512, AVX2 and scalar kernels (2026-12-01), as multiples of the bound's
# eps32 * scale: float32 energies of two code paths 8 (bound ~100), their forces 62 (bound 313);
# float32 against float64 energies 117 (bound 313), forces 3,250 (bound 5,600 for p-xylene).
ANI_WIDTH, ANI_LAYERS, ANI_MEMBERS = 384, 4, 8


def network_scale(model, positions):
    """|network energy| in kJ/mol: the part of the energy computed in the positions' dtype (the
    self energies are a float64 constant, the same in every code path)."""
    return abs(model.networkEnergy(torch.tensor(positions, dtype=torch.float64)).item()) * HARTREE_TO_KJ_PER_MOL


def paths_energy_bound(model, positions, dtype):
    """Two code paths, same dtype: each atom's 8 member outputs round at a few eps of the network
    energy; adding the float64 self energies rounds the total once more (2 ulp: both paths)."""
    total = abs(model.selfEnergy) + network_scale(model, positions)
    return bound(network_scale(model, positions), dtype, terms=ANI_MEMBERS * len(positions)) + 2 * np.spacing(total)


def torchani_energy_bound(energy_hartree, n):
    """Ours against torchani in float64 (Hartree): other code, other order of every sum, down to
    the 384-input dot products of the 4 layers of the 8 members for each of the n atoms."""
    return bound(energy_hartree, torch.float64, terms=networkTerms(ANI_WIDTH, ANI_LAYERS, ANI_MEMBERS * n))


def torchani_force_bound(gradient_hartree):
    """As torchani_energy_bound, for the n atomic energies (each with gradients up to the largest
    force) that sum into one force component."""
    n = len(gradient_hartree)
    return bound(np.abs(gradient_hartree).max() * n, torch.float64, terms=networkTerms(ANI_WIDTH, ANI_LAYERS, ANI_MEMBERS))


def paths_force_bound(gradient, dtype):
    """Two code paths, same dtype: a force component is back-propagated through the 4 layers of
    384-input dot products, at the scale of the largest force."""
    return bound(np.abs(gradient).max(), dtype, terms=networkTerms(ANI_WIDTH, ANI_LAYERS))


def float32_energy_bound(model, positions):
    """float32 against float64: the float32 weights and positions are the float64 ones rounded, so
    every product of the 4 layers of 384-input dot products carries eps32."""
    return bound(network_scale(model, positions), torch.float32, terms=networkTerms(ANI_WIDTH, ANI_LAYERS))


def float32_force_bound(gradient64):
    """float32 against float64 forces: as the energy, for each of the n atomic energies whose
    gradients (each up to the largest force) sum into one force component."""
    scale = np.abs(gradient64).max() * len(gradient64)
    return bound(scale, torch.float32, terms=networkTerms(ANI_WIDTH, ANI_LAYERS))


def _pxylene():
    prmtop = app.AmberPrmtopFile(os.path.join(DATA, "pxylene-water", "pxylene_water.prmtop"))
    inpcrd = app.AmberInpcrdFile(os.path.join(DATA, "pxylene-water", "pxylene_water.inpcrd"))
    atoms = [a for a in prmtop.topology.atoms() if a.residue.name == "TMP"]
    positions = inpcrd.getPositions(asNumpy=True).value_in_unit(NM)[[a.index for a in atoms]]
    return [a.element.atomic_number for a in atoms], np.asarray(positions, dtype=np.float64)


MOLECULES = {
    "pxylene": _pxylene(),
    "alanine_dipeptide": ([int(z) for z in ALANINE_DIPEPTIDE[:, 0]], ALANINE_DIPEPTIDE[:, 1:] / 10.0),
}


@pytest.fixture(scope="module")
def reference():
    """torchani's ANI-1x (float64), taking atomic numbers and Angstrom, returning Hartree."""
    return torchaniANI1x(periodicTableIndex=True).double()


@pytest.fixture(scope="module")
def models():
    return {name: ANI1x(numbers) for name, (numbers, _) in MOLECULES.items()}


def ours(model, positions, dtype=torch.float64):
    """Energy (kJ/mol, float) and gradient (kJ/mol/nm, float64 numpy) of ANI1x."""
    x = torch.tensor(positions, dtype=dtype, requires_grad=True)
    energy = model(x)
    (gradient,) = torch.autograd.grad(energy, x)
    return energy, gradient.double().numpy()


def theirs(reference, numbers, positions):
    """Energy (Hartree, float) and gradient (Hartree/Angstrom, numpy) of torchani's ANI-1x."""
    x = torch.tensor(positions * 10.0, dtype=torch.float64).unsqueeze(0).requires_grad_()
    energy = reference((torch.tensor([numbers]), x)).energies.sum()
    (gradient,) = torch.autograd.grad(energy, x)
    return energy.item(), gradient[0].numpy()


def to_hartree(energy_kj, gradient_kj_nm):
    return energy_kj / HARTREE_TO_KJ_PER_MOL, gradient_kj_nm / HARTREE_TO_KJ_PER_MOL / 10.0


def test_unit_constant_is_torchanis():
    assert HARTREE_TO_KJ_PER_MOL == torchani.units.HARTREE_TO_KJOULEMOL


@pytest.mark.parametrize("name", MOLECULES)
def test_aev_matches_torchani(name, models, reference):
    numbers, positions = MOLECULES[name]
    coordinates = torch.tensor(positions * 10.0).unsqueeze(0)
    species = reference[0]((torch.tensor([numbers]), coordinates))
    expected = reference[1](species).aevs[0]
    aev = models[name].aev(torch.tensor(positions))
    assert aev.shape == (len(numbers), 384)
    assert (expected != 0).any(dim=0)[64:].sum() > 50  # the angular part really is exercised
    # float64, other code: an angular entry sums over the pairs of neighbours (n^2 terms).
    scale = expected.abs().max().item()
    torch.testing.assert_close(aev, expected, rtol=0, atol=bound(scale, torch.float64, terms=len(numbers) ** 2))


@pytest.mark.parametrize("name", MOLECULES)
def test_energy_and_forces_match_torchani(name, models, reference):
    numbers, positions = MOLECULES[name]
    energy, gradient = ours(models[name], positions)
    assert energy.dtype == torch.float64 and energy.dim() == 0
    energy_h, gradient_h = to_hartree(energy.item(), gradient)
    expected_energy, expected_gradient = theirs(reference, numbers, positions)
    assert abs(energy_h - expected_energy) < torchani_energy_bound(expected_energy, len(numbers))  # measured ~1e-13
    np.testing.assert_allclose(gradient_h, expected_gradient, rtol=0, atol=torchani_force_bound(expected_gradient))


@pytest.mark.parametrize("name", MOLECULES)
def test_float32_keeps_the_energy(name, models):
    numbers, positions = MOLECULES[name]
    model = models[name]
    rng = np.random.default_rng(11)
    for trial in range(4):
        displaced = positions + (rng.normal(scale=0.003, size=positions.shape) if trial else 0.0)
        energy64, gradient64 = ours(model, displaced, torch.float64)
        energy32, gradient32 = ours(model, displaced, torch.float32)
        assert energy32.dtype == torch.float64 and energy32.dim() == 0
        tolerance = float32_energy_bound(model, displaced)
        assert abs(energy32.item() - energy64.item()) < tolerance
        np.testing.assert_allclose(gradient32, gradient64, rtol=0, atol=float32_force_bound(gradient64))
    # What float32 could not do: resolve the total energy itself (0.0625 or 0.125 kJ/mol here).
    resolution = abs(float(np.spacing(np.float32(energy64.item()))))
    assert resolution > 4 * tolerance
    # The same total assembled in float32 (network + self energies) carries that rounding.
    naive = (model.networkEnergy(torch.tensor(displaced, dtype=torch.float32)) * HARTREE_TO_KJ_PER_MOL
             + torch.tensor(model.selfEnergy, dtype=torch.float32))
    assert naive.dtype == torch.float32 and abs(naive.item() - energy64.item()) < resolution


def test_forces_match_finite_differences(models):
    numbers, positions = MOLECULES["alanine_dipeptide"]
    model = models["alanine_dipeptide"]
    _, gradient = ours(model, positions)
    step = 1e-5  # nm
    atoms = [1, 4, 5, 6, 7, 8, 16, 21]  # C, C, O, N, H, C, N, H: every element, kept short for speed
    numeric = np.zeros_like(positions)
    with torch.no_grad():
        for i in atoms:
            for k in range(3):
                plus, minus = positions.copy(), positions.copy()
                plus[i, k] += step
                minus[i, k] -= step
                numeric[i, k] = (model(torch.tensor(plus)).item() - model(torch.tensor(minus)).item()) / (2 * step)
    # Measured: at most 2e-3 kJ/mol/nm (1e-6 of the largest force).  The truncation error is not
    # purely O(h^2): CELU's second derivative jumps where a neuron's input crosses 0.  Rounding adds
    # eps64 * |E| / h = 2.2e-16 * 1.3e6 / 1e-5 = 3e-5 kJ/mol/nm, below that.
    np.testing.assert_allclose(gradient[atoms], numeric[atoms], rtol=0, atol=1e-5 * np.abs(gradient).max())
    assert np.abs(gradient[atoms]).max() > 100


def test_rotation_and_translation_invariance(models):
    numbers, positions = MOLECULES["alanine_dipeptide"]
    model = models["alanine_dipeptide"]
    energy, gradient = ours(model, positions)
    rng = np.random.default_rng(7)
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    rotation = q * np.sign(np.diag(r))
    if np.linalg.det(rotation) < 0:
        rotation[:, 0] *= -1
    moved = positions @ rotation.T + np.array([3.1, -2.7, 0.4])
    energy2, gradient2 = ours(model, moved)
    # float64: the moved positions (up to 5 nm) are rounded at eps64, which moves the energy by
    # |x| * |F| per coordinate, summed over 3n coordinates ...
    scale = np.abs(moved).max() * np.abs(gradient).max() * len(positions)
    assert abs(energy2.item() - energy.item()) < bound(scale, torch.float64, terms=3 * len(positions))
    # ... and the forces by |x| times the Hessian (below 1e6 kJ/mol/nm^2 here), same count.
    hessian_scale = np.abs(moved).max() * 1e6 * len(positions)
    np.testing.assert_allclose(gradient2, gradient @ rotation.T, rtol=0,
                               atol=bound(hessian_scale, torch.float64, terms=3 * len(positions)))


def test_masked_pairs_have_finite_gradients(models, reference):
    """An atom far beyond both cutoffs, and collinear triples (cos = +-1), stay finite and match torchani."""
    numbers, positions = MOLECULES["pxylene"]
    far = positions.copy()
    far[-1] = positions[:-1].mean(axis=0) + np.array([1.0, 0.0, 0.0])  # 1 nm from the ring centre
    energy, gradient = ours(models["pxylene"], far)
    assert np.isfinite(gradient).all() and np.isfinite(energy.item())
    assert np.abs(gradient[-1]).max() < 1e-12  # no neighbour within 0.52 nm: no force on it
    energy_h, gradient_h = to_hartree(energy.item(), gradient)
    expected_energy, expected_gradient = theirs(reference, numbers, far)
    assert abs(energy_h - expected_energy) < torchani_energy_bound(expected_energy, len(numbers))
    np.testing.assert_allclose(gradient_h, expected_gradient, rtol=0, atol=torchani_force_bound(expected_gradient))

    line = [6, 1, 1, 8]
    positions = np.array([[0.0, 0.0, 0.0], [0.109, 0.0, 0.0], [-0.109, 0.0, 0.0], [0.25, 0.0, 0.0]])
    energy, gradient = ours(ANI1x(line), positions)
    assert np.isfinite(gradient).all()
    energy_h, gradient_h = to_hartree(energy.item(), gradient)
    expected_energy, expected_gradient = theirs(reference, line, positions)
    assert abs(energy_h - expected_energy) < torchani_energy_bound(expected_energy, len(line))
    np.testing.assert_allclose(gradient_h, expected_gradient, rtol=0, atol=torchani_force_bound(expected_gradient))


def test_box_is_accepted_and_ignored(models):
    numbers, positions = MOLECULES["pxylene"]
    x = torch.tensor(positions)
    box = torch.eye(3, dtype=torch.float64) * 3.2
    assert models["pxylene"](x, box).item() == models["pxylene"](x).item()  # same code, same inputs


def test_torchscript_save_and_load(models, tmp_path):
    numbers, positions = MOLECULES["alanine_dipeptide"]
    model = models["alanine_dipeptide"]
    scripted = torch.jit.script(model)
    path = str(tmp_path / "ani1x.pt")
    torch.jit.save(scripted, path)
    loaded = torch.jit.load(path)
    for dtype in (torch.float64, torch.float32):
        x = torch.tensor(positions, dtype=dtype)
        expected = model(x).item()
        tolerance = paths_energy_bound(model, positions, dtype)  # TorchScript fuses: another code path
        assert scripted(x).item() == pytest.approx(expected, abs=tolerance)
        assert loaded(x).item() == pytest.approx(expected, abs=tolerance)
        assert loaded(x, torch.eye(3, dtype=dtype)).item() == pytest.approx(expected, abs=tolerance)
        assert loaded(x).item() == scripted(x).item()  # the saved module is the same code, same inputs
    energy, gradient = ours(loaded, positions)
    _, expected_gradient = ours(model, positions)
    np.testing.assert_allclose(gradient, expected_gradient, rtol=0, atol=paths_force_bound(expected_gradient, torch.float64))


def test_unsupported_element_names_atom_and_element():
    with pytest.raises(ValueError, match=r"atom 3 is S \(Z=16\); ANI-1x covers only H, C, N and O"):
        ANI1x([6, 1, 1, 16, 1])
    with pytest.raises(ValueError, match="atom 0 is Cl"):
        ANI1x([17])
    with pytest.raises(ValueError, match="empty"):
        ANI1x([])


def test_missing_weights_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ANI1x([6, 1], weightsDir=tmp_path / "nowhere")


def test_missing_torchani_says_how_to_install(monkeypatch):
    monkeypatch.setattr(ani.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ImportError, match=r"pip install torchani==2\.2\.4"):
        ANI1x([6, 1])


def _mlforce_state(model, positions, platform, double):
    """Energy and forces of an MLForce on a region placed in arbitrary order inside a larger System."""
    n = positions.shape[0]
    total = n + 3
    order = np.random.default_rng(3).permutation(total)[:n]  # ML atom i is particle order[i]
    system = openmm.System()
    for _ in range(total):
        system.addParticle(12.0)
    force = MLForce(model, [int(i) for i in order])
    if double:
        force.setUsesDoublePrecision(True)
    # The model on as many threads as the direct evaluation it is compared with: in float32 the
    # order of ANI-1x's reductions (which the thread count changes) shows at the 1e-4 relative level.
    force.setProperty("modelThreads", "0")
    system.addForce(force)
    all_positions = np.zeros((total, 3))
    all_positions[:] = [5.0, 5.0, 5.0]
    all_positions[order] = positions
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), platform)
    context.setPositions(all_positions)
    state = context.getState(getEnergy=True, getForces=True)
    forces = state.getForces(asNumpy=True).value_in_unit(KJ / NM)
    return state.getPotentialEnergy().value_in_unit(KJ), forces[order]


@pytest.mark.parametrize("name", MOLECULES)
def test_mlforce_float32(name, models, platform):
    numbers, positions = MOLECULES[name]
    model = models[name]
    energy, forces = _mlforce_state(model, positions, platform, double=False)
    expected_energy, expected_gradient = ours(model, np.asarray(positions, dtype=np.float32), torch.float32)
    # The kernel runs the model through TorchScript, the reference eagerly: two float32 code paths.
    assert energy == pytest.approx(expected_energy.item(), abs=paths_energy_bound(model, positions, torch.float32))
    np.testing.assert_allclose(forces, -expected_gradient, rtol=0, atol=paths_force_bound(expected_gradient, torch.float32))


@pytest.mark.parametrize("name", MOLECULES)
def test_mlforce_float64(name, models, platform):
    numbers, positions = MOLECULES[name]
    model = models[name]
    energy, forces = _mlforce_state(model, positions, platform, double=True)
    expected_energy, expected_gradient = ours(model, positions, torch.float64)
    # TorchScript in the kernel against eager PyTorch: two float64 code paths.
    assert energy == pytest.approx(expected_energy.item(), abs=paths_energy_bound(model, positions, torch.float64))
    np.testing.assert_allclose(forces, -expected_gradient, rtol=0, atol=paths_force_bound(expected_gradient, torch.float64))


# ---------------------------------------------------------------------------------------------
# Neighbour lists: a region the size of a ligand and its pocket
# ---------------------------------------------------------------------------------------------

def _water_cluster(waters):
    """p-xylene and its ``waters`` nearest whole waters (minimum image): (numbers, nm positions)."""
    prmtop = app.AmberPrmtopFile(os.path.join(DATA, "pxylene-water", "pxylene_water.prmtop"))
    inpcrd = app.AmberInpcrdFile(os.path.join(DATA, "pxylene-water", "pxylene_water.inpcrd"))
    x = np.asarray(inpcrd.getPositions(asNumpy=True).value_in_unit(NM), dtype=np.float64)
    box = np.array([inpcrd.getBoxVectors()[i][i].value_in_unit(NM) for i in range(3)])
    residues = list(prmtop.topology.residues())
    ligand = [a.index for a in residues[0].atoms()]
    centre = x[ligand].mean(0)
    candidates = []
    for residue in residues[1:]:
        atoms = [a.index for a in residue.atoms()]
        shift = -box * np.round((x[atoms[0]] - centre) / box)
        water = x[atoms] + shift
        candidates.append((np.linalg.norm(water[0] - centre), atoms, water))
    candidates.sort(key=lambda c: c[0])
    numbers = [a.element.atomic_number for a in residues[0].atoms()]
    positions = [x[ligand]]
    for _, atoms, water in candidates[:waters]:
        numbers += [8, 1, 1]
        positions.append(water)
    return numbers, np.concatenate(positions)


@pytest.fixture(scope="module")
def cluster():
    """150 atoms: p-xylene and 44 waters, the size of a ligand with its pocket."""
    return _water_cluster(44)


def test_large_region_matches_torchani(cluster, reference):
    """150 atoms in float64: energy and forces equal to torchani's (the dense O(n^3) formulation
    this replaced matched torchani to the same bounds) to the rounding of two code paths."""
    numbers, positions = cluster
    model = torch.jit.script(ANI1x(numbers))
    energy, gradient = ours(model, positions)
    e_ours, g_ours = to_hartree(energy.item(), gradient)
    e_ref, g_ref = theirs(reference, numbers, positions)
    assert abs(e_ours - e_ref) <= torchani_energy_bound(e_ref, len(numbers))
    assert abs(e_ours - e_ref) <= 1e-10 * abs(e_ref)
    assert np.abs(g_ours - g_ref).max() <= torchani_force_bound(g_ref)
    # The packed arrays are far smaller than all pairs and triples: 150^2 and 150^3 / 2.
    core = model.core64
    assert core.capacityR < 0.3 * 150 * 149
    assert core.capacityA < 0.01 * 150 * 149 * 148 / 2
    assert core.capacityK < 40


def test_capacity_grows_and_never_drops_a_neighbour(cluster, reference):
    """Sized on a dilute geometry (the cluster stretched 1.6x: few neighbours), then evaluated on
    the real one (many more): the capacities grow in that evaluation and the energy is torchani's;
    a third geometry within the capacities keeps them (the shapes stay fixed)."""
    numbers, positions = cluster
    centre = positions.mean(0)
    model = torch.jit.script(ANI1x(numbers))
    ours(model, centre + 1.6 * (positions - centre))
    small = (model.core64.capacityR, model.core64.capacityK, model.core64.capacityA)
    energy, gradient = ours(model, positions)
    grown = (model.core64.capacityR, model.core64.capacityK, model.core64.capacityA)
    assert all(g > s for g, s in zip(grown, small)), (small, grown)
    e_ours, g_ours = to_hartree(energy.item(), gradient)
    e_ref, g_ref = theirs(reference, numbers, positions)
    assert abs(e_ours - e_ref) <= torchani_energy_bound(e_ref, len(numbers))
    assert np.abs(g_ours - g_ref).max() <= torchani_force_bound(g_ref)
    ours(model, positions + np.random.default_rng(3).normal(scale=0.002, size=positions.shape))
    assert (model.core64.capacityR, model.core64.capacityK, model.core64.capacityA) == grown


def test_large_region_finite_differences(cluster):
    """Forces of the 150-atom cluster in float64 against central differences of the energy, for
    six coordinates (h = 1e-5 nm: truncation h^2 |F'''| ~ 1e-6 kJ/mol/nm for ANI's ~0.1 nm
    length scale; rounding eps64 |E| / h ~ 2e-5 kJ/mol/nm for |E| ~ 1e6 kJ/mol)."""
    numbers, positions = cluster
    model = torch.jit.script(ANI1x(numbers))
    _, gradient = ours(model, positions)
    h = 1e-5
    for atom, axis in [(0, 0), (5, 1), (17, 2), (18, 0), (100, 1), (149, 2)]:
        plus, minus = positions.copy(), positions.copy()
        plus[atom, axis] += h
        minus[atom, axis] -= h
        with torch.no_grad():
            difference = (model(torch.tensor(plus)).item() - model(torch.tensor(minus)).item()) / (2 * h)
        energy = abs(model(torch.tensor(positions)).item())
        assert gradient[atom, axis] == pytest.approx(difference, abs=1e-3 + 4 * np.finfo(np.float64).eps * energy / h)


def test_neighbour_lists_have_no_data_dependent_shapes():
    """What keeps the module capturable in a CUDA graph: the scripted code calls no nonzero,
    masked_select, unique or boolean-mask indexing (its one host read, of the neighbour counts, is
    skipped on a GPU once the capacities are sized)."""
    model = torch.jit.script(ANI1x([6, 1, 1, 1, 1]))
    code = model.core64.code + model.core64.aev_and_overflow.code + model.core64._capacities.code
    for forbidden in ("nonzero", "masked_select", "unique", "argwhere"):
        assert forbidden not in code, forbidden
    assert "is_cuda" in model.core64._capacities.code
