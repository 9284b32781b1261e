"""The `openmm-hybrid` command: an end-to-end run, bad input, resuming, the report, the openff path.

The runs are p-xylene (ANI-1x) in water for a few steps.  Expected numbers come from independent
computations: torchani's own ANI-1x for the ML column, the kinetic energy and the degrees of
freedom for the temperature, mdtraj for the trajectory.
"""
import csv
import os
import shutil
import subprocess
import sys

import numpy as np
import openmm
import openmm.app as app
import openmm.unit as unit
import pytest
import torch

from conftest import DATA, ROOT
from precision import EPS32, bound, networkTerms
from openmmhybrid.cli import main
from openmmhybrid.job import ConfigError, loadConfig, templateConfig
from openmmhybrid.job.inputs import OPENFF_MISSING, openffAvailable
from openmmhybrid.job.reporters import kabschRmsd, truncateCsv, truncateDcd

PXYLENE = os.path.join(ROOT, "examples", "configs", "pxylene_water.toml")
PRMTOP = os.path.join(DATA, "pxylene-water", "pxylene_water.prmtop")
INPCRD = os.path.join(DATA, "pxylene-water", "pxylene_water.inpcrd")

FAST = ["--minimize", "false", "--progress", "false", "--seed", "11"]


def run_cli(args, capsys):
    status = main(args)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def read_csv(path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


def dcd_frames(path, topology):
    import mdtraj
    return mdtraj.load_dcd(path, top=mdtraj.Topology.from_openmm(topology))


def printed(text):
    """Half a unit in the last decimal of a number as the command wrote it: its rounding error."""
    return 0.5 * 10.0 ** -len(text.split(".")[1]) if "." in text else 0.5


#: Rounding steps of ANI-1x on p-xylene: 384 AEV inputs, 4 layers, 18 atoms (tests/python/precision.py).
ANI_TERMS = networkTerms(384, 4, 18)


def ani1x(topology):
    """The project's ANI-1x of the TMP residue (for its self energies and float64 forces)."""
    from openmmhybrid.models.ani import ANI1x
    return ANI1x([a.element.atomic_number for a in topology.atoms() if a.residue.name == "TMP"])


def ani_float32_bound(topology, energy):
    """How far a float32 ANI-1x energy (kJ/mol) of the TMP region can be from the float64 one: the
    float32 network part (the energy less the self energies, which are summed in float64 and add
    nothing) through ANI_TERMS rounding steps.  The float32 rounding of the positions (a few 1e-7 nm
    times forces of a few hundred kJ/mol/nm) is well inside it."""
    return bound(energy - ani1x(topology).selfEnergy, np.float32, ANI_TERMS)


def torchani_region_energy(topology, xyz):
    """torchani's own ANI-1x energy (kJ/mol, float64) of the TMP residue at xyz (Angstrom)."""
    from openmmhybrid.models.ani import HARTREE_TO_KJ_PER_MOL, torchaniANI1x
    numbers = [a.element.atomic_number for a in topology.atoms() if a.residue.name == "TMP"]
    reference = torchaniANI1x(periodicTableIndex=True).double()
    hartree = reference((torch.tensor([numbers]), torch.tensor(xyz).unsqueeze(0))).energies.item()
    return hartree * HARTREE_TO_KJ_PER_MOL


@pytest.fixture(scope="module")
def pxylene_topology():
    return app.AmberPrmtopFile(PRMTOP).topology


# ---------------------------------------------------------------------------------------------
# End to end
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("cli") / "run")
    status = main(["run", PXYLENE, "--steps", "20", "--report-interval", "5", "--trajectory-interval", "10",
                   "--checkpoint-interval", "10", "--minimize-iterations", "20", "--progress", "true",
                   "--seed", "5", "--output", out])
    return status, out


def test_run_writes_every_output(finished_run, pxylene_topology):
    status, out = finished_run
    assert status == 0
    for name in ("trajectory.dcd", "energies.csv", "checkpoint.chk", "start.pdb", "run.json", "final_state.xml",
                 "report.md", "energies.png", "temperature.png", "rmsd.png"):
        assert os.path.getsize(os.path.join(out, name)) > 0, name
    header, rows = read_csv(os.path.join(out, "energies.csv"))
    assert [int(r[0]) for r in rows] == [5, 10, 15, 20]
    assert header[:6] == ["step", "time (ps)", "potential (kJ/mol)", "ML (kJ/mol)", "embedding (kJ/mol)", "MM (kJ/mol)"]
    trajectory = dcd_frames(os.path.join(out, "trajectory.dcd"), pxylene_topology)
    assert trajectory.n_frames == 2 and trajectory.n_atoms == 3180
    report = open(os.path.join(out, "report.md")).read()
    for image in ("energies.png", "temperature.png", "rmsd.png"):
        assert f"]({image})" in report


def test_report_command_rebuilds_the_report(finished_run, tmp_path, capsys):
    _, out = finished_run
    os.remove(os.path.join(out, "rmsd.png"))
    status, stdout, _ = run_cli(["report", out], capsys)
    assert status == 0 and stdout.strip().endswith("report.md")
    assert os.path.getsize(os.path.join(out, "rmsd.png")) > 0
    report = open(os.path.join(out, "report.md")).read()
    assert "| steps recorded | 20 (0.08 ps) |" in report  # 4 fs steps (pxylene_water.toml)
    assert "ns/day on CPU" in report
    status, _, err = run_cli(["report", str(tmp_path)], capsys)
    assert status == 2 and "has no energies.csv" in err
    shutil.copy(os.path.join(out, "energies.csv"), tmp_path)
    status, _, err = run_cli(["report", str(tmp_path)], capsys)
    assert status == 2 and "has no run.json" in err


def test_csv_columns_match_independent_numbers(finished_run):
    """ML = torchani's ANI-1x of the region at the final positions; potential = ML + MM;
    temperature = 2 KE / (dof R) with dof counted here; total = potential + kinetic."""
    _, out = finished_run
    header, rows = read_csv(os.path.join(out, "energies.csv"))
    last = dict(zip(header, rows[-1]))
    state = openmm.XmlSerializer.deserialize(open(os.path.join(out, "final_state.xml")).read())
    prmtop = app.AmberPrmtopFile(PRMTOP)
    region = [a.index for a in prmtop.topology.atoms() if a.residue.name == "TMP"]
    xyz = state.getPositions(asNumpy=True).value_in_unit(unit.angstrom)[region]
    value = {name: float(text) for name, text in last.items() if text}
    reference = torchani_region_energy(prmtop.topology, xyz)
    # The float32 model against torchani's float64 one, plus the column's printing.
    assert value["ML (kJ/mol)"] == pytest.approx(
        reference, abs=ani_float32_bound(prmtop.topology, reference) + printed(last["ML (kJ/mol)"]))
    # MM is written as potential - ML (float64): the three columns' printing, and float64 rounding.
    parts = [last["potential (kJ/mol)"], last["ML (kJ/mol)"], last["MM (kJ/mol)"]]
    assert value["potential (kJ/mol)"] == pytest.approx(
        value["ML (kJ/mol)"] + value["MM (kJ/mol)"],
        abs=sum(printed(x) for x in parts) + bound(sum(abs(float(x)) for x in parts), np.float64, 3))
    assert last["embedding (kJ/mol)"] == ""  # mechanical embedding
    kinetic = state.getKineticEnergy().value_in_unit(unit.kilojoule_per_mole)
    # The same State's kinetic energy (final_state.xml keeps every digit): the column's printing,
    # and float64 rounding of the 3N-term sum in case it was summed in another order.
    kinetic_tolerance = bound(kinetic, np.float64, 3 * prmtop.topology.getNumAtoms())
    assert value["kinetic (kJ/mol)"] == pytest.approx(kinetic, abs=printed(last["kinetic (kJ/mol)"]) + kinetic_tolerance)
    system = prmtop.createSystem(nonbondedMethod=app.PME, constraints=app.HBonds)
    dof = 3 * system.getNumParticles() - system.getNumConstraints() - 3
    R = unit.MOLAR_GAS_CONSTANT_R.value_in_unit(unit.kilojoule_per_mole / unit.kelvin)
    temperature = 2 * kinetic / (dof * R)  # one degree of freedom more or less moves it by 0.05 K
    assert value["temperature (K)"] == pytest.approx(
        temperature, abs=printed(last["temperature (K)"]) + temperature * kinetic_tolerance / kinetic
        + bound(temperature, np.float64, 4))
    assert value["total (kJ/mol)"] == pytest.approx(
        value["potential (kJ/mol)"] + kinetic,
        abs=printed(last["total (kJ/mol)"]) + printed(last["potential (kJ/mol)"]) + kinetic_tolerance
        + bound(abs(value["potential (kJ/mol)"]) + kinetic, np.float64, 2))
    assert 0 < value["ligand RMSD (A)"] < 2.0
    volume = state.getPeriodicBoxVolume().value_in_unit(unit.nanometer**3)
    # The same box: the column's printing only.
    assert value["volume (nm^3)"] == pytest.approx(volume, abs=printed(last["volume (nm^3)"]) + bound(volume, np.float64, 3))


def test_python_dash_m_and_console_script(tmp_path):
    """`python -m openmmhybrid` and the installed `openmm-hybrid` script are the same command."""
    out = subprocess.run([sys.executable, "-m", "openmmhybrid", "run", PXYLENE, "--dry-run", "--output",
                          str(tmp_path / "x")], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "18 atoms, model ani1x" in out.stdout and "dry run" in out.stdout
    assert not (tmp_path / "x").exists()
    script = shutil.which("openmm-hybrid", path=os.path.dirname(sys.executable))
    assert script is not None, "the console script openmm-hybrid is not installed next to python"
    out = subprocess.run([script, "template"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "[dynamics]" in out.stdout


def test_template_is_a_valid_config(tmp_path):
    """Every default written by `openmm-hybrid template` reads back as the same setting."""
    path = tmp_path / "t.toml"
    path.write_text(templateConfig())
    with pytest.raises(ConfigError, match="no input"):
        loadConfig(path)
    config = loadConfig(path, {"prmtop": PRMTOP, "inpcrd": INPCRD, "residue": "TMP"})
    assert config["timestep"] == 2 * unit.femtosecond
    assert config["temperature"] == 300 * unit.kelvin
    assert config["steps"] == 5000 and config["model"] == "ani1x" and config["embedding"] == "mechanical"


def test_units_in_strings_and_flags(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(f'prmtop = "{PRMTOP}"\ninpcrd = "{INPCRD}"\natoms = "0-17"\n'
                    '[dynamics]\ntimestep = "0.004 ps"\ntemperature = "310 K"\n')
    config = loadConfig(path, {"friction": "0.5/ps", "embedding_cutoff": "12 A", "pressure": "1 atm"})
    # Float64 parsing and unit conversion: a few roundings (the number, the conversion factors).
    conversion = bound(1.0, np.float64, 4)
    assert config["timestep"].value_in_unit(unit.femtosecond) == pytest.approx(4.0, rel=conversion, abs=0)
    assert config["temperature"].value_in_unit(unit.kelvin) == pytest.approx(310.0, rel=conversion, abs=0)
    assert config["friction"].value_in_unit(unit.picosecond ** -1) == pytest.approx(0.5, rel=conversion, abs=0)
    assert config["embedding_cutoff"].value_in_unit(unit.nanometer) == pytest.approx(1.2, rel=conversion, abs=0)
    assert config["pressure"].value_in_unit(unit.bar) == pytest.approx(1.01325, rel=conversion, abs=0)
    assert config["atoms"] == list(range(18))


def test_relative_paths(tmp_path, monkeypatch):
    """Inputs are relative to the config file, the output folder to where the command runs."""
    folder = tmp_path / "configs"
    folder.mkdir()
    shutil.copy(PRMTOP, folder / "a.prmtop")
    path = folder / "c.toml"
    path.write_text('prmtop = "a.prmtop"\ninpcrd = "a.inpcrd"\nresidue = "TMP"\noutput = "results"\n')
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    config = loadConfig(path)
    assert config["prmtop"] == str(folder / "a.prmtop")
    assert config["output"] == str(work / "results")


def test_electrostatic_embedding_splits_the_energy(tmp_path, capsys):
    """With electrostatic embedding the CSV has an embedding column, and ML + embedding + MM is the
    potential; the ML column is the vacuum model.  The progress bar reaches 100% with ns/day."""
    out = str(tmp_path / "es")
    status, _, err = run_cli(["run", PXYLENE, "--embedding", "electrostatic", "--steps", "4", "--report-interval", "2",
                              "--trajectory-interval", "0", "--report", "false", "--output", out] + FAST
                             + ["--progress", "true"], capsys)
    assert status == 0, err
    last = err.strip().splitlines()[-1]
    assert "100.0%  step 4/4" in last and "ns/day" in last and "0:00 left" in last
    header, rows = read_csv(os.path.join(out, "energies.csv"))
    for row in rows:
        r = dict(zip(header, row))
        embedding = float(r["embedding (kJ/mol)"])
        assert -200 < embedding < 0  # p-xylene's fixed-charge + polarization coupling to water
        # embedding and MM are written as differences (float64): the four columns' printing, and float64 rounding.
        parts = [r["potential (kJ/mol)"], r["ML (kJ/mol)"], r["embedding (kJ/mol)"], r["MM (kJ/mol)"]]
        assert float(r["potential (kJ/mol)"]) == pytest.approx(
            float(r["ML (kJ/mol)"]) + embedding + float(r["MM (kJ/mol)"]),
            abs=sum(printed(x) for x in parts) + bound(sum(abs(float(x)) for x in parts), np.float64, 4))
    assert not os.path.exists(os.path.join(out, "trajectory.dcd"))


def test_mts_lambda_and_barostat(tmp_path):
    """Multiple time steps, a lambda between 0 and 1, and a barostat run; the ML column scales with lambda."""
    out = str(tmp_path / "mts")
    assert main(["run", PXYLENE, "--inner-steps", "2", "--timestep", "2", "--lambda", "0.5", "--pressure", "1",
                 "--barostat-interval", "2", "--steps", "4", "--report-interval", "2", "--report", "false",
                 "--equilibration-steps", "2", "--output", out] + FAST) == 0
    header, rows = read_csv(os.path.join(out, "energies.csv"))
    r = dict(zip(header, rows[-1]))
    assert [int(row[0]) for row in rows] == [2, 4]  # production counts from 0 after equilibration
    assert -420000 < float(r["ML (kJ/mol)"]) < -400000  # half of ANI-1x's ~ -816000 kJ/mol


def test_compile_default_is_the_faster_path():
    """compile unset: compiled for an ANI model on at most 32 atoms on the CPU or Reference platform
    for a run of at least 20,000 model evaluations (where compiling pays for itself); TorchScript
    otherwise.  An explicit setting is kept."""
    from openmmhybrid.job.runner import AUTO_COMPILE_MAX_ATOMS, AUTO_COMPILE_MIN_EVALUATIONS, _compiles

    prmtop = app.AmberPrmtopFile(PRMTOP)
    ani = ani1x(prmtop.topology)
    config = {"platform": "CPU", "steps": AUTO_COMPILE_MIN_EVALUATIONS, "equilibration_steps": 0, "inner_steps": 1}
    assert _compiles(config, ani, 18)
    assert _compiles(dict(config, platform="Reference"), ani, AUTO_COMPILE_MAX_ATOMS)
    assert not _compiles(dict(config, platform="CUDA"), ani, 18)
    assert not _compiles(config, ani, AUTO_COMPILE_MAX_ATOMS + 1)
    assert not _compiles(dict(config, steps=AUTO_COMPILE_MIN_EVALUATIONS - 1), ani, 18)
    # MTS: one model evaluation per outer step; equilibration counts.
    assert not _compiles(dict(config, inner_steps=2), ani, 18)
    assert _compiles(dict(config, steps=AUTO_COMPILE_MIN_EVALUATIONS, equilibration_steps=AUTO_COMPILE_MIN_EVALUATIONS,
                          inner_steps=2), ani, 18)
    assert not _compiles(config, torch.jit.script(ani), 18)  # a TorchScript model cannot be compiled
    assert not _compiles(config, torch.nn.Linear(3, 1), 18)  # nor is another model compiled unasked
    assert loadConfig(None, {"prmtop": PRMTOP, "inpcrd": INPCRD, "residue": "TMP"})["compile"] is None


def test_compiled_model_gives_the_same_energies(tmp_path):
    """compile = true: ANI-1x compiled ahead of time; the energies match the TorchScript run's."""
    rows = {}
    for compile in ("false", "true"):
        out = str(tmp_path / compile)
        assert main(["run", PXYLENE, "--compile", compile, "--steps", "10", "--report-interval", "5", "--report", "false",
                     "--output", out] + FAST) == 0
        header, rows[compile] = read_csv(os.path.join(out, "energies.csv"))
    ml = header.index("ML (kJ/mol)")
    assert len(rows["true"]) == len(rows["false"]) == 2
    # Same start, same seed; the float32 model arithmetic runs in another order, in the energy and
    # in the forces.  A force rounding dF = c F (c = bound(1, float32, ANI_TERMS)) moves atom i by
    # at most c F_i t^2 / 2m_i, which changes the energy by at most c W, W = sum |F_i|^2 t^2 / 2m_i
    # (the ML forces at the start, from the float64 model; the MM forces are the same code).
    prmtop, inpcrd = app.AmberPrmtopFile(PRMTOP), app.AmberInpcrdFile(INPCRD)
    region = [a for a in prmtop.topology.atoms() if a.residue.name == "TMP"]
    model = ani1x(prmtop.topology)
    x = torch.tensor(np.array(inpcrd.positions.value_in_unit(unit.nanometer))[[a.index for a in region]],
                     requires_grad=True)
    (gradient,) = torch.autograd.grad(model(x), x)
    mass = np.array([a.element.mass.value_in_unit(unit.dalton) for a in region])
    for compiled, scripted in zip(rows["true"], rows["false"]):
        t = int(scripted[0]) * 0.002  # ps
        work = float(np.sum(gradient.numpy() ** 2, axis=1) @ (t ** 2 / (2 * mass)))
        network = abs(float(scripted[ml]) - model.selfEnergy)
        assert float(compiled[ml]) == pytest.approx(
            float(scripted[ml]), abs=bound(network + work, np.float32, ANI_TERMS) + 2 * printed(scripted[ml]))


def test_torchscript_model_file(tmp_path, capsys):
    """A TorchScript file as the model: the start energy differs from ANI-1x's by the ANI-1x energy
    of the region, computed here with torchani."""
    class Zero(torch.nn.Module):
        def forward(self, positions):
            return (positions * 0.0).sum()

    path = str(tmp_path / "zero.pt")
    torch.jit.script(Zero()).save(path)
    energies, texts = [], []
    for model in (path, "ani1x"):
        status, out, err = run_cli(["run", PXYLENE, "--model", model, "--platform", "Reference", "--dry-run"], capsys)
        assert status == 0, err
        texts.append(out.split("start energy ")[1].split()[0])
        energies.append(float(texts[-1]))
    prmtop, inpcrd = app.AmberPrmtopFile(PRMTOP), app.AmberInpcrdFile(INPCRD)
    system = prmtop.createSystem(nonbondedMethod=app.PME, constraints=app.HBonds)
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(inpcrd.positions)
    context.applyConstraints(1e-5)  # as the command does before its first energy
    region = [a.index for a in prmtop.topology.atoms() if a.residue.name == "TMP"]
    xyz = context.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.angstrom)[region]
    reference = torchani_region_energy(prmtop.topology, xyz)
    # The MM parts are the same code on the same positions; the float32 ANI-1x against torchani's
    # float64, plus the printing of the two energies (2 decimals).
    assert energies[1] - energies[0] == pytest.approx(
        reference, abs=ani_float32_bound(prmtop.topology, reference) + printed(texts[0]) + printed(texts[1]))


# ---------------------------------------------------------------------------------------------
# Bad input: one line on stderr, exit status 2, before any long work
# ---------------------------------------------------------------------------------------------

def write(tmp_path, text, name="bad.toml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


GOOD = f'[input]\nprmtop = "{PRMTOP}"\ninpcrd = "{INPCRD}"\n[ml]\nresidue = "TMP"\n'
DIPEPTIDE_FILES = os.path.join(DATA, "alanine-dipeptide-water", "alanine-dipeptide")
#: The alanine dipeptide in water with ALA's side chain (CB and its hydrogens) as the ML region.
DIPEPTIDE = (f'[input]\nprmtop = "{DIPEPTIDE_FILES}.prmtop"\ninpcrd = "{DIPEPTIDE_FILES}.inpcrd"\n'
             '[ml]\nside_chain = 2\n')


@pytest.mark.parametrize("text, flags, message", [
    (GOOD + "[dynamics]\ntempreature = 300\n", [], "unknown key 'tempreature' in \\[dynamics\\]"
                                                  ".* did you mean 'temperature'"),
    (GOOD + "steps = 10\n", [], "'steps' belongs in \\[dynamics\\], not \\[ml\\]"),
    (GOOD, ["--timestep", "2 kg"], "timestep: unknown unit 'kg'"),
    (GOOD, ["--temperature", "hot"], "temperature: cannot read 'hot' as a quantity"),
    (GOOD, ["--steps", "-5"], "steps must be at least 0"),
    (GOOD, ["--embedding", "polarizable"], "embedding must be one of mechanical, electrostatic"),
    (GOOD, ["--lambda", "1.5"], "lambda must be between 0 and 1"),
    (GOOD, ["--region", "resname TMP"], "give the ML region one way, not region and residue"),
    (GOOD.replace("pxylene_water.inpcrd", "missing.inpcrd"), [], "the inpcrd file '.*missing.inpcrd' does not exist"),
    (GOOD, ["--model", "models/none.pt"], "the model file '.*none.pt' does not exist"),
    (GOOD, ["--model", "schnet"], "No ML model is registered under the name 'schnet'"),
    (GOOD.replace('"TMP"', '"LIG"'), [], "ML region: no residue is named 'LIG'"),
    (GOOD.replace('residue = "TMP"', 'region = "resname LIG"'), [], "ML region: the selection 'resname LIG' matches "
                                                                      "no atom"),
    (GOOD.replace('residue = "TMP"', 'atoms = [0, 1, 5000]'), [], "ML atom index 5000 is out of range: the System has 3180 particles"),
    (GOOD.replace('residue = "TMP"', 'atoms = [0, 1, 1]'), [], "ML atom index 1 appears more than once"),
    (GOOD.replace("pxylene_water.inpcrd", "../alanine-dipeptide-water/alanine-dipeptide.inpcrd"), [],
     "'pxylene_water.prmtop' has 3180 atoms but 'alanine-dipeptide.inpcrd' has .* coordinates"),
    (GOOD, ["--precision", "double"], "precision applies to the CUDA and OpenCL platforms"),
    (GOOD, ["--resume"], "--resume: there is no checkpoint"),
    ("", [], "no input: give prmtop\\+inpcrd"),
    (GOOD, ["--sdf", "x.sdf"], "give one input, not prmtop and sdf"),
    (GOOD, ["--seed", "99999999999"], "seed must be at most 2147483647"),
    (GOOD, ["--threads", "100000"], "threads must be at most 1024"),
    ("input = 3\n", [], "\\[input\\] must be a table"),
    (GOOD, ["--state", "missing_state.xml"], "the state file '.*missing_state.xml' does not exist"),
    (GOOD, ["--compile", "true", "--platform", "CUDA"], "compile applies to the Reference and CPU platforms, not CUDA"),
    (GOOD, ["--side-chain", "1"], "give the ML region one way, not residue and side_chain"),
    (DIPEPTIDE, ["--side-chain", "1"], "ML region: residue ACE 1 has no side chain to cut at CA-CB"),
    (DIPEPTIDE, ["--side-chain", "9999"], "ML region: no residue numbered 9999"),
    (DIPEPTIDE.replace("side_chain = 2", 'residues = "3-1"'), [], "ML region: residue 1 does not follow residue 3"),
    (DIPEPTIDE.replace("side_chain = 2", 'residues = "2"'), [], "ML region: write a range as 'N-M'"),
    (DIPEPTIDE, ["--link-atom-charges", "shift"], "link_atom_charges must be one of rcd, rc"),
    (DIPEPTIDE.replace("side_chain = 2", "atoms = '0-2'"), [], "the ML region cuts the bond .* which ends on a hydrogen"),
])
def test_bad_input_is_one_line(tmp_path, capsys, text, flags, message):
    config = write(tmp_path, text)
    status, out, err = run_cli(["run", config, "--output", str(tmp_path / "o")] + flags, capsys)
    assert status == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("openmm-hybrid: error: ")
    import re
    assert re.search(message, lines[0]), lines[0]
    assert not os.path.exists(tmp_path / "o" / "trajectory.dcd")


def test_side_chain_with_link_atoms(tmp_path, capsys):
    """`side_chain = 2` (ALA's CB and its hydrogens) with electrostatic embedding: the log names the
    capped bond, and the ML column is the vacuum ANI-1x of the region and its cap, computed here
    independently (float64) at the frame the trajectory holds."""
    from openmmhybrid.linkatoms import linkAtomSetup
    from openmmhybrid.models.ani import ANI1x
    out = str(tmp_path / "side")
    config = write(tmp_path, DIPEPTIDE, "side.toml")
    status, stdout, err = run_cli(["run", config, "--embedding", "electrostatic", "--model-double", "true",
                                   "--steps", "2", "--report-interval", "2", "--trajectory-interval", "2",
                                   "--report", "false", "--output", out] + FAST, capsys)
    assert status == 0, err
    assert "ML region: 4 atoms" in stdout
    assert "link atoms: 1 cut bond(s) capped with hydrogen (distance placement, charges RCD)" in stdout
    assert "link atom 0: caps 10 (CB of ALA 2) - 8 (CA of ALA 2) at 0.1070 nm" in stdout
    prmtop = app.AmberPrmtopFile(DIPEPTIDE_FILES + ".prmtop")
    header, rows = read_csv(os.path.join(out, "energies.csv"))
    row = dict(zip(header, rows[-1]))
    assert int(row["step"]) == 2
    frame = dcd_frames(os.path.join(out, "trajectory.dcd"), prmtop.topology)
    xyz = frame.xyz[-1].astype(np.float64)
    region = [10, 11, 12, 13]
    links = linkAtomSetup(prmtop.topology, prmtop.createSystem(), region)
    capped = np.concatenate([xyz[region], links.capPositions(xyz)])
    model = ANI1x([6, 1, 1, 1, 1]).double()
    expected = model(torch.tensor(capped)).item()
    # The DCD stores float32 coordinates (eps32 x 2 nm): their rounding moves the float64 energy by
    # at most |F| * 1e-7 nm * 5 atoms, a few 1e-4 kJ/mol; plus the printing.
    with torch.enable_grad():
        x = torch.tensor(capped, requires_grad=True)
        (gradient,) = torch.autograd.grad(model(x), x)
    tolerance = float(np.abs(gradient.numpy()).sum()) * EPS32 * 2.0 + printed(row["ML (kJ/mol)"])
    assert float(row["ML (kJ/mol)"]) == pytest.approx(expected, abs=tolerance)


def test_output_that_is_a_file(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    status, _, err = run_cli(["run", write(tmp_path, GOOD), "--output", str(tmp_path / "afile")], capsys)
    assert status == 2 and err.count("\n") == 1
    assert "is a file, not a folder" in err


def test_platform_that_is_not_here(tmp_path, capsys):
    here = [openmm.Platform.getPlatform(i).getName() for i in range(openmm.Platform.getNumPlatforms())]
    absent = [p for p in ("OpenCL", "CUDA") if p not in here]
    if not absent:
        pytest.skip("both OpenCL and CUDA exist on this machine: no absent platform to ask for")
    status, _, err = run_cli(["run", write(tmp_path, GOOD), "--platform", absent[0]], capsys)
    assert status == 2 and err.count("\n") == 1
    assert f"the {absent[0]} platform is not available here (available: " in err and "CPU" in err


def test_element_the_model_does_not_cover(tmp_path, capsys):
    """A sulfur of the T4L complex in the ANI-1x region: named, with the fix."""
    folder = os.path.join(DATA, "t4l-l99a-pxylene-water")
    config = write(tmp_path, f'[input]\nprmtop = "{folder}/complex.prmtop"\ninpcrd = "{folder}/complex.inpcrd"\n'
                             '[ml]\nregion = "resname TMP or (resid 0 and element S)"\n')
    status, _, err = run_cli(["run", config, "--dry-run"], capsys)
    assert status == 2
    assert err.count("\n") == 1
    assert "is S; ANI-1x covers only H, C, N and O. Leave it out of the ML region" in err
    assert "SD of residue MET 1" in err


def test_region_too_large_for_ani1x(tmp_path, capsys, monkeypatch):
    """Every water as the ANI-1x region (3162 atoms: 48 bytes x 3162^2 = 0.45 GiB) on a machine
    with 0.5 GiB stops with the memory it would need, instead of being killed for lack of memory."""
    from openmmhybrid import models
    monkeypatch.setattr(models, "_physical_memory", lambda: 2**29)
    status, _, err = run_cli(["run", write(tmp_path, GOOD.replace('"TMP"', '"HOH"')), "--dry-run"], capsys)
    assert status == 2 and err.count("\n") == 1
    assert "the ML region has 3162 atoms; ANI-1x here holds an n x n distance matrix" in err
    assert "Choose a smaller region" in err


def test_model_with_the_wrong_signature(tmp_path, capsys):
    class Wrong(torch.nn.Module):
        def forward(self, positions, box, charges, extra):
            return positions.sum()

    path = str(tmp_path / "wrong.pt")
    torch.jit.script(Wrong()).save(path)
    status, _, err = run_cli(["run", write(tmp_path, GOOD), "--model", path, "--dry-run"], capsys)
    assert status == 2 and err.count("\n") == 1
    assert "wrong.pt" in err or "forward" in err


def test_model_file_that_is_not_torchscript(tmp_path, capsys):
    path = tmp_path / "notes.pt"
    path.write_text("not a model")
    status, _, err = run_cli(["run", write(tmp_path, GOOD), "--model", str(path), "--dry-run"], capsys)
    assert status == 2 and err.count("\n") == 1
    assert "is not a TorchScript file" in err


def test_missing_config_file_and_bad_toml(tmp_path, capsys):
    status, _, err = run_cli(["run", str(tmp_path / "nope.toml")], capsys)
    assert status == 2 and "the config file '" in err and "does not exist" in err
    status, _, err = run_cli(["run", write(tmp_path, "steps = = 3\n")], capsys)
    assert status == 2 and "is not valid TOML" in err and err.count("\n") == 1


def test_resume_refuses_changed_settings(tmp_path, capsys):
    out = str(tmp_path / "o")
    config = write(tmp_path, GOOD)
    common = ["run", config, "--trajectory-interval", "0", "--report", "false", "--output", out] + FAST
    assert main(common + ["--steps", "2"]) == 0
    status, _, err = run_cli(common + ["--resume", "--steps", "4", "--timestep", "1"], capsys)
    assert status == 2
    assert "--resume: 'timestep' was '2 fs' for the checkpointed run and is now '1 fs'" in err
    assert main(common + ["--resume", "--steps", "4", "--timestep", "2"]) == 0  # the same value, written differently
    status, _, err = run_cli(common + ["--resume", "--steps", "3"], capsys)
    assert status == 2 and "the checkpoint is at step 4, past steps = 3" in err
    moved = str(tmp_path / "moved")
    shutil.copytree(out, moved)
    assert main(["run", config, "--trajectory-interval", "0", "--report", "false", "--output", moved, "--resume",
                 "--steps", "6"] + FAST) == 0  # a moved output folder resumes
    (tmp_path / "moved" / "run.json").write_text("{broken")
    status, _, err = run_cli(["run", config, "--trajectory-interval", "0", "--output", moved, "--resume", "--steps",
                              "8"] + FAST, capsys)
    assert status == 2 and "is damaged" in err


# ---------------------------------------------------------------------------------------------
# Resume
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("inner", ["1", "2"], ids=["langevin-middle", "native-mts"])
def test_resume_gives_the_uninterrupted_trajectory(tmp_path, pxylene_topology, inner):
    """Reference platform, fixed seed: 10 steps + resume to 20 == 20 steps, bit for bit."""
    common = ["run", PXYLENE, "--platform", "Reference", "--inner-steps", inner, "--report-interval", "5",
              "--trajectory-interval", "5", "--checkpoint-interval", "10", "--report", "false"] + FAST
    whole, parts = str(tmp_path / "whole"), str(tmp_path / "parts")
    assert main(common + ["--steps", "20", "--output", whole]) == 0
    assert main(common + ["--steps", "10", "--output", parts]) == 0
    assert main(common + ["--steps", "20", "--output", parts, "--resume"]) == 0
    # Exact: on Reference the restored state (every bit, with the noise stream) goes through the same
    # code as the uninterrupted run (the model too: one process, one thread count, no CPU fusion).
    assert read_csv(os.path.join(whole, "energies.csv")) == read_csv(os.path.join(parts, "energies.csv"))
    a = dcd_frames(os.path.join(whole, "trajectory.dcd"), pxylene_topology)
    b = dcd_frames(os.path.join(parts, "trajectory.dcd"), pxylene_topology)
    assert a.n_frames == b.n_frames == 4
    assert np.array_equal(a.xyz, b.xyz)
    assert not np.array_equal(a.xyz[0], a.xyz[-1])
    sa = openmm.XmlSerializer.deserialize(open(os.path.join(whole, "final_state.xml")).read())
    sb = openmm.XmlSerializer.deserialize(open(os.path.join(parts, "final_state.xml")).read())
    assert np.array_equal(sa.getPositions(asNumpy=True)._value, sb.getPositions(asNumpy=True)._value)
    assert np.array_equal(sa.getVelocities(asNumpy=True)._value, sb.getVelocities(asNumpy=True)._value)
    assert sb.getStepCount() == 20


def test_ctrl_c_writes_the_due_reports_and_resumes_exactly(tmp_path, pxylene_topology, monkeypatch, capsys):
    """An interrupt that arrives when a step returns, before the reporters run: the reports due at
    that step are written with the checkpoint, and resuming gives the uninterrupted run."""
    # Single steps: the interrupt is injected into LangevinMiddleIntegrator.step.
    common = ["run", PXYLENE, "--platform", "Reference", "--report-interval", "5", "--trajectory-interval", "5",
              "--checkpoint-interval", "15", "--report", "false", "--timestep", "2", "--inner-steps", "1"] + FAST
    whole, parts = str(tmp_path / "whole"), str(tmp_path / "parts")
    assert main(common + ["--steps", "20", "--output", whole]) == 0
    original = openmm.LangevinMiddleIntegrator.step
    done = {"steps": 0}

    def interrupted(self, steps):
        original(self, steps)
        done["steps"] += steps
        if done["steps"] == 10:
            raise KeyboardInterrupt

    monkeypatch.setattr(openmm.LangevinMiddleIntegrator, "step", interrupted)
    status, _, err = run_cli(common + ["--steps", "20", "--output", parts], capsys)
    assert status == 130 and "interrupted at step 10; continue with --resume" in err
    monkeypatch.setattr(openmm.LangevinMiddleIntegrator, "step", original)
    assert [int(r[0]) for r in read_csv(os.path.join(parts, "energies.csv"))[1]] == [5, 10]
    assert main(common + ["--steps", "20", "--output", parts, "--resume"]) == 0
    # Exact, as in test_resume_gives_the_uninterrupted_trajectory.
    assert read_csv(os.path.join(whole, "energies.csv")) == read_csv(os.path.join(parts, "energies.csv"))
    a = dcd_frames(os.path.join(whole, "trajectory.dcd"), pxylene_topology)
    b = dcd_frames(os.path.join(parts, "trajectory.dcd"), pxylene_topology)
    assert b.n_frames == 4 and np.array_equal(a.xyz, b.xyz)


def test_resume_after_a_crash_drops_rows_past_the_checkpoint(tmp_path, pxylene_topology):
    """Outputs written after the last checkpoint (a killed run) are cut back before continuing."""
    common = ["run", PXYLENE, "--platform", "Reference", "--report-interval", "5", "--trajectory-interval", "5",
              "--checkpoint-interval", "10", "--report", "false"] + FAST
    whole, crashed = str(tmp_path / "whole"), str(tmp_path / "crashed")
    assert main(common + ["--steps", "20", "--output", whole]) == 0
    assert main(common + ["--steps", "10", "--output", crashed]) == 0
    saved = open(os.path.join(crashed, "checkpoint.chk"), "rb").read()
    assert main(common + ["--steps", "15", "--output", crashed, "--resume"]) == 0
    open(os.path.join(crashed, "checkpoint.chk"), "wb").write(saved)  # as if killed between step 10 and 15
    assert main(common + ["--steps", "20", "--output", crashed, "--resume"]) == 0
    # Exact, as in test_resume_gives_the_uninterrupted_trajectory.
    assert read_csv(os.path.join(whole, "energies.csv")) == read_csv(os.path.join(crashed, "energies.csv"))
    a = dcd_frames(os.path.join(whole, "trajectory.dcd"), pxylene_topology)
    b = dcd_frames(os.path.join(crashed, "trajectory.dcd"), pxylene_topology)
    assert np.array_equal(a.xyz, b.xyz)


def test_resume_before_the_first_trajectory_frame(tmp_path, pxylene_topology):
    """A run that stopped before its first trajectory frame left an empty DCD (the reporter opens
    the file at once, the header comes with the first frame): --resume starts a new one."""
    common = ["run", PXYLENE, "--platform", "Reference", "--report-interval", "5", "--trajectory-interval", "10",
              "--checkpoint-interval", "5", "--report", "false"] + FAST
    out = str(tmp_path / "short")
    assert main(common + ["--steps", "5", "--output", out]) == 0
    assert os.path.getsize(os.path.join(out, "trajectory.dcd")) == 0
    assert main(common + ["--steps", "20", "--output", out, "--resume"]) == 0
    assert dcd_frames(os.path.join(out, "trajectory.dcd"), pxylene_topology).n_frames == 2  # steps 10 and 20
    header, rows = read_csv(os.path.join(out, "energies.csv"))
    assert [int(r[0]) for r in rows] == [5, 10, 15, 20]


def test_version_names_every_binding(capsys):
    """--version: the project's, OpenMM's and torch's versions (with what the build used) and
    torch's CPU kernels, the facts a bug report needs."""
    import openmm
    import torch
    import openmmhybrid
    with pytest.raises(SystemExit) as exit:
        main(["--version"])
    assert exit.value.code == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"openmm-hybrid {openmmhybrid.__version__}"
    assert lines[1] == f"OpenMM {openmm.__version__} (built against {openmmhybrid.build_info['openmm']})"
    assert lines[2] == (f"torch {torch.__version__} (built against {openmmhybrid.build_info['torch']}), "
                        f"CPU capability {torch.backends.cpu.get_cpu_capability()}")


def test_truncate_dcd_and_csv(tmp_path, pxylene_topology):
    path = str(tmp_path / "t.dcd")
    positions = np.random.default_rng(1).random((3180, 3))
    with open(path, "wb") as f:
        dcd = app.DCDFile(f, pxylene_topology, 0.002, 0, 5)
        for k in range(6):
            dcd.writeModel((positions + k) * unit.nanometer, periodicBoxVectors=np.eye(3) * 3.2 * unit.nanometer)
    truncateDcd(path, 4)
    frames = dcd_frames(path, pxylene_topology)
    assert frames.n_frames == 4
    # DCD holds float32 Angstrom: two float32 roundings (nm to A written, A to nm read), each at most
    # eps32/2 of |x|; doubled for the inexact float32 0.1 and the like.
    np.testing.assert_allclose(frames.xyz[3], positions + 3, rtol=0, atol=2 * EPS32 * np.abs(positions + 3).max())
    with open(path, "r+b") as f:  # and OpenMM can keep appending
        dcd = app.DCDFile(f, pxylene_topology, 0.002, 0, 5, append=True)
        dcd.writeModel((positions + 9) * unit.nanometer, periodicBoxVectors=np.eye(3) * 3.2 * unit.nanometer)
    frames = dcd_frames(path, pxylene_topology)
    assert frames.n_frames == 5
    np.testing.assert_allclose(frames.xyz[4], positions + 9, rtol=0, atol=2 * EPS32 * np.abs(positions + 9).max())
    table = tmp_path / "e.csv"
    table.write_text("step,x\n5,a\n10,b\n15,c\n")
    truncateCsv(str(table), 10)
    assert table.read_text().splitlines() == ["step,x", "5,a", "10,b"]


def test_kabsch_rmsd():
    rng = np.random.default_rng(3)
    reference = rng.random((10, 3))
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.linalg.det(q))
    moved = reference @ q.T + [1.0, -2.0, 0.5]
    # Float64: the centring, the 3x3 SVD and the rotation sum over the 10 points' coordinates (|x| < 3).
    tolerance = bound(np.abs(moved).max(), np.float64, 10)
    assert kabschRmsd(reference, moved, list(range(10)), list(range(10))) == pytest.approx(0.0, abs=tolerance)
    shifted = moved.copy()
    shifted[7:] += [0.3, 0.0, 0.0]  # the "ligand" moves 0.3 relative to the fitted "protein"
    assert kabschRmsd(reference, shifted, list(range(7)), [7, 8, 9]) == pytest.approx(0.3, abs=tolerance)


# ---------------------------------------------------------------------------------------------
# Other inputs
# ---------------------------------------------------------------------------------------------

def test_serialized_system_input(tmp_path, capsys):
    """A serialized System + State + PDB topology gives the same start energy as the Amber input."""
    prmtop, inpcrd = app.AmberPrmtopFile(PRMTOP), app.AmberInpcrdFile(INPCRD)
    system = prmtop.createSystem(nonbondedMethod=app.PME, nonbondedCutoff=0.9 * unit.nanometer,
                                 constraints=app.HBonds)
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(inpcrd.positions)
    context.setPeriodicBoxVectors(*inpcrd.boxVectors)
    (tmp_path / "system.xml").write_text(openmm.XmlSerializer.serialize(system))
    (tmp_path / "state.xml").write_text(openmm.XmlSerializer.serialize(context.getState(getPositions=True)))
    prmtop.topology.setPeriodicBoxVectors(inpcrd.boxVectors)
    with open(tmp_path / "top.pdb", "w") as f:
        app.PDBFile.writeFile(prmtop.topology, inpcrd.positions, f)
    energies = []
    for args in (["--system", str(tmp_path / "system.xml"), "--state", str(tmp_path / "state.xml"),
                  "--pdb", str(tmp_path / "top.pdb")], ["--prmtop", PRMTOP, "--inpcrd", INPCRD]):
        status, out, err = run_cli(["run", "--residue", "TMP", "--platform", "Reference", "--dry-run"] + args, capsys)
        assert status == 0, err
        energies.append(out.split("start energy ")[1].split()[0])
    # Exact: the XML round trip keeps every bit of the System and the positions, and the Reference
    # platform runs the same code on them (the same printed digits).
    assert energies[0] == energies[1]


def test_reciprocal_space_group_is_not_taken(tmp_path, capsys):
    """A System whose PME reciprocal space is in its own group (1, the first group free otherwise):
    the ML group avoids it and MTS puts it on the inner step, so the run matches the one with the
    reciprocal space in group 0 (Reference; only the order of the force sums differs)."""
    prmtop, inpcrd = app.AmberPrmtopFile(PRMTOP), app.AmberInpcrdFile(INPCRD)
    with open(tmp_path / "top.pdb", "w") as f:
        app.PDBFile.writeFile(prmtop.topology, inpcrd.positions, f)
    tables = []
    for group in (-1, 1):
        system = prmtop.createSystem(nonbondedMethod=app.PME, nonbondedCutoff=0.9 * unit.nanometer,
                                     constraints=app.HBonds)
        [f for f in system.getForces() if isinstance(f, openmm.NonbondedForce)][0].setReciprocalSpaceForceGroup(group)
        (tmp_path / "system.xml").write_text(openmm.XmlSerializer.serialize(system))
        context = openmm.Context(system, openmm.VerletIntegrator(0.001),
                                 openmm.Platform.getPlatformByName("Reference"))
        context.setPositions(inpcrd.positions)
        context.setPeriodicBoxVectors(*inpcrd.boxVectors)
        (tmp_path / "state.xml").write_text(openmm.XmlSerializer.serialize(context.getState(getPositions=True)))
        out = str(tmp_path / f"o{group}")
        assert main(["run", "--system", str(tmp_path / "system.xml"), "--state", str(tmp_path / "state.xml"),
                     "--pdb", str(tmp_path / "top.pdb"), "--residue", "TMP", "--platform", "Reference",
                     "--inner-steps", "2", "--steps", "4", "--report-interval", "2", "--report", "false",
                     "--trajectory-interval", "0", "--output", out] + FAST) == 0
        tables.append(read_csv(os.path.join(out, "energies.csv")))
    header = tables[0][0]
    for row0, row1 in zip(tables[0][1], tables[1][1]):
        for name, x, y in zip(header, row0, row1):
            if "." not in x:
                assert x == y, name  # the step; the empty embedding column
                continue
            # Float64: the group energies and forces are added in another order (one rounding per
            # force of the System), and the trajectories, which differ by those roundings only, stay
            # within that over 4 steps; plus the printing of the two numbers.
            assert float(x) == pytest.approx(
                float(y), rel=0, abs=printed(x) + printed(y) + bound(float(y), np.float64, system.getNumForces() + 1)), name


def test_vacuum_energy_makes_a_split_region_whole():
    """The reporter's vacuum-model energy (the ML column with electrostatic embedding) images the
    region next to its first atom, as MLForce does: atoms moved by box vectors change nothing."""
    from openmmhybrid.job.reporters import vacuumEnergyFunction
    from openmmhybrid.models.ani import ANI1x
    prmtop, inpcrd = app.AmberPrmtopFile(PRMTOP), app.AmberInpcrdFile(INPCRD)
    region = [a.index for a in prmtop.topology.atoms() if a.residue.name == "TMP"]
    numbers = [a.element.atomic_number for a in prmtop.topology.atoms() if a.residue.name == "TMP"]
    model = ANI1x(numbers)
    positions = np.array(inpcrd.positions.value_in_unit(unit.nanometer))
    box = np.array([v.value_in_unit(unit.nanometer) for v in inpcrd.boxVectors])
    energy = vacuumEnergyFunction(model, region, True, True, 0.5)
    x = torch.tensor(positions[region], dtype=torch.float64, requires_grad=True)
    total = model(x)
    (gradient,) = torch.autograd.grad(total, x)
    expected = 0.5 * float(total.detach())
    # Float64 on both sides: making the region whole (shifts by box vectors and back) rounds each
    # coordinate at eps64 (|x| + 3 L), which moves the energy by the gradient times that; and the
    # total (mostly the self energies) rounds at eps64 |E|.
    reach = np.abs(positions[region]) + 3 * np.abs(box).max()
    tolerance = 0.5 * (bound(np.sum(np.abs(gradient.numpy()) * reach), np.float64, 3 * len(region))
                       + bound(float(total.detach()), np.float64, 2))
    assert energy(positions, box) == pytest.approx(expected, abs=tolerance)
    split = positions.copy()
    split[region[5]] += box[0]
    split[region[11]] -= box[1] + box[2]
    assert energy(split, box) == pytest.approx(expected, abs=tolerance)


def test_state_gives_the_starting_coordinates(finished_run, capsys):
    """`state` with Amber input: a run starts from a previous run's final_state.xml."""
    _, out = finished_run
    final = openmm.XmlSerializer.deserialize(open(os.path.join(out, "final_state.xml")).read())
    status, stdout, err = run_cli(["run", PXYLENE, "--state", os.path.join(out, "final_state.xml"), "--dry-run"],
                                  capsys)
    assert status == 0, err
    assert "starting from final_state.xml" in stdout
    start = stdout.split("start energy ")[1].split()[0]
    header, rows = read_csv(os.path.join(out, "energies.csv"))
    mm = abs(float(dict(zip(header, rows[-1]))["MM (kJ/mol)"]))  # at the final state
    # The same positions (they already satisfy the constraints) on the CPU platform in a new Context:
    # the ML part is the same code on the same inputs; the float32 MM pair energies are added in
    # another order (in float32 within each atom block, in float64 across blocks): eps32 of the MM
    # energy, x8; plus the printing (2 decimals).
    assert float(start) == pytest.approx(final.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole),
                                         abs=printed(start) + bound(mm, np.float32))


def test_pdb_and_forcefield_input(tmp_path, capsys):
    """PDB + OpenMM force-field XML: the T4L complex with amber14 + the shipped GAFF ligand file."""
    folder = os.path.join(DATA, "t4l-l99a-pxylene-water")
    status, out, err = run_cli(["run", "--pdb", os.path.join(folder, "complex.pdb"), "--forcefield",
                                f"amber14-all.xml,amber14/tip3p.xml,{folder}/pxylene_gaff.xml", "--residue", "TMP",
                                "--dry-run"], capsys)
    assert status == 0, err
    assert "36309 atoms, periodic" in out and "18 atoms, model ani1x" in out


def test_pdb_without_forcefield_coverage(tmp_path, capsys):
    folder = os.path.join(DATA, "t4l-l99a-pxylene-water")
    status, _, err = run_cli(["run", "--pdb", os.path.join(folder, "complex.pdb"), "--forcefield",
                              "amber14-all.xml,amber14/tip3p.xml", "--residue", "TMP", "--dry-run"], capsys)
    assert status == 2 and err.count("\n") == 1
    assert "the force field does not cover 'complex.pdb'" in err and "TMP" in err
    status, _, err = run_cli(["run", "--pdb", os.path.join(folder, "complex.pdb"), "--forcefield",
                              "amber14-all.xml,missing/ligand.xml", "--residue", "TMP", "--dry-run"], capsys)
    assert status == 2 and err.count("\n") == 1
    assert 'Could not locate file "missing/ligand.xml"' in err


SDF = os.path.join(DATA, "pxylene-water", "pxylene.sdf")


def test_sdf_without_openff_says_so_in_one_line(tmp_path, capsys, monkeypatch):
    import openmmhybrid.job.inputs as inputs
    monkeypatch.setattr(inputs, "openffAvailable", lambda: False)
    status, _, err = run_cli(["run", "--sdf", SDF, "--dry-run"], capsys)
    assert status == 2 and err.count("\n") == 1
    assert OPENFF_MISSING.split(";")[0] in err


@pytest.mark.skipif(not openffAvailable(), reason="openff-toolkit is not installed (it is not on PyPI; conda-forge "
                                                  "has it): the SDF + SMIRNOFF input cannot run here")
def test_sdf_with_openff(tmp_path, capsys):
    out = str(tmp_path / "sdf")
    status, stdout, err = run_cli(["run", "--sdf", SDF, "--steps", "4", "--report-interval", "2", "--report", "false",
                                   "--output", out] + FAST, capsys)
    assert status == 0, err
    assert "18 atoms, no box" in stdout
    header, rows = read_csv(os.path.join(out, "energies.csv"))
    assert len(rows) == 2
