"""The adapters by name: the registry, the region's charge, the command's model keys and openmm-ml.

Each adapter's own file (``test_model_<adapter>.py``) checks its numbers against its library.
This file checks what joins them to the rest: every name of every adapter is registered and
listed by ``openmm-hybrid models``; ``createMixedSystem(model=name, modelArgs=...)`` builds the
same model as the adapter's ``create``; a model that takes a total charge gets the region's MM
charge unless one is given; the config keys ``model_path``, ``charge`` and ``model_options``
reach the model; openmm-ml's ``MLPotential('hybrid-<name>')`` runs each adapter in an MLForce.
The model files are tiny random-weight models written by each library (``zoo_<adapter>.py``).
"""
import importlib.metadata
import os
import warnings

import openmm
import openmm.app as app
import openmm.unit as unit
import pytest
import torch

import openmmhybrid
from openmmhybrid import models
from openmmhybrid.cli import main
from openmmhybrid.job import ConfigError, loadConfig
from openmmhybrid.job.runner import buildMixedSystem, modelArguments
from conftest import DATA
from precision import bound

torch.set_num_threads(1)

KJ = unit.kilojoule_per_mole
PRMTOP = os.path.join(DATA, "pxylene-water", "pxylene_water.prmtop")
INPCRD = os.path.join(DATA, "pxylene-water", "pxylene_water.inpcrd")


def _aimnet2File(folder):
    pytest.importorskip("aimnet", reason="the AIMNet2 adapter's library")
    from zoo_aimnet2 import saveAIMNet2
    return saveAIMNet2(os.path.join(folder, "aimnet2.pt"), elements=("H", "C", "N", "O"))


def _maceFile(folder):
    pytest.importorskip("mace", reason="the MACE adapter's library")
    from zoo_mace import saveMACE
    return saveMACE(os.path.join(folder, "tiny.model"))


@pytest.fixture(scope="module")
def aimnet2File(tmp_path_factory):
    return _aimnet2File(str(tmp_path_factory.mktemp("aimnet2")))


@pytest.fixture(scope="module")
def pxyleneInputs():
    prmtop = app.AmberPrmtopFile(PRMTOP)
    inpcrd = app.AmberInpcrdFile(INPCRD)
    system = prmtop.createSystem(nonbondedMethod=app.PME, nonbondedCutoff=0.9 * unit.nanometer, constraints=app.HBonds)
    ligand = [a.index for a in prmtop.topology.atoms() if a.residue.name == "TMP"]
    return prmtop.topology, inpcrd, system, ligand


def test_every_adapter_name_is_registered_and_described():
    """Each adapter's NAMES are model names, and `describeModels` gives each its adapter's row."""
    rows = {row["name"]: row for row in models.describeModels()}
    for module in models.ADAPTERS:
        adapter = models._adapterModule(module)
        assert adapter.NAMES, module
        for name, entry in adapter.NAMES.items():
            assert name in models.availableModels()
            row = rows[name]
            assert row["charge"] == entry["charge"] and row["licence"] == entry["licence"]
            assert row["source"].startswith(entry["source"])
            assert (row["folder"] is None) == (entry["file"] is None)
    assert rows["mace-off23-small"]["folder"].endswith("MACE-OFF23_small.model")


def test_takes_charge_follows_the_factory_signature():
    assert models.takesCharge("aimnet2") and models.takesCharge("torchmdnet") and models.takesCharge("mace")
    assert not models.takesCharge("ani1x") and not models.takesCharge("no-such-model")


def test_a_name_builds_the_adapters_model(aimnet2File, pxyleneInputs):
    """createModel('aimnet2', ..., modelPath=f) is the adapter's create(...): equal energies."""
    from openmmhybrid.models import aimnet2
    topology, inpcrd, _, ligand = pxyleneInputs
    x = torch.tensor(inpcrd.getPositions(asNumpy=True).value_in_unit(unit.nanometer)[ligand])
    byName = models.createModel("aimnet2", topology, ligand, modelPath=aimnet2File)
    direct = aimnet2.create(topology, ligand, name="aimnet2", modelPath=aimnet2File)
    assert byName(x).item() == direct(x).item()


def test_the_region_charge_reaches_a_model_that_takes_one(pxyleneInputs):
    """createMixedSystem passes the region's MM charge, rounded, to a named model with a `charge`
    keyword; a given charge wins; a region whose charges do not sum to an integer must give one."""
    topology, _, system, ligand = pxyleneInputs
    seen = []

    def factory(topology, atoms, charge=0):
        seen.append(charge)
        return openmmhybrid.models.ani.ANI1x(models.atomicNumbers(topology, atoms))

    models.registerModel("test-charged", factory)
    try:
        assert models.takesCharge("test-charged")
        openmmhybrid.createMixedSystem(topology, system, ligand, "test-charged")
        assert seen == [0]
        nonbonded = next(f for f in system.getForces() if isinstance(f, openmm.NonbondedForce))
        modified = openmm.XmlSerializer.clone(system)
        force = next(f for f in modified.getForces() if isinstance(f, openmm.NonbondedForce))
        q, sigma, epsilon = nonbonded.getParticleParameters(ligand[0])
        force.setParticleParameters(ligand[0], q + 1.0 * unit.elementary_charge, sigma, epsilon)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            openmmhybrid.createMixedSystem(topology, modified, ligand, "test-charged")
            assert seen[-1] == 1
            openmmhybrid.createMixedSystem(topology, modified, ligand, "test-charged", modelArgs={"charge": -2})
            assert seen[-1] == -2
            force.setParticleParameters(ligand[0], q + 0.5 * unit.elementary_charge, sigma, epsilon)
            with pytest.raises(ValueError, match=r"sum to 0\.50[0-9]* e, not an integer.*modelArgs=\{'charge': N\}"):
                openmmhybrid.createMixedSystem(topology, modified, ligand, "test-charged")
    finally:
        models._factories.pop("test-charged")


def _config(tmp_path, text):
    path = tmp_path / "run.toml"
    path.write_text(f'[input]\nprmtop = "{PRMTOP}"\ninpcrd = "{INPCRD}"\n[ml]\nresidue = "TMP"\n' + text)
    return str(path)


def test_config_keys_reach_the_model(tmp_path, aimnet2File):
    """[ml] model_path (relative to the config), charge and model_options become the model's keyword
    arguments; ani2x's model_path is its weightsDir."""
    os.symlink(aimnet2File, tmp_path / "model.pt")
    config = loadConfig(_config(tmp_path, 'model = "aimnet2"\nmodel_path = "model.pt"\ncharge = 0\n'
                                          'model_options = { precision = "double" }\n'))
    assert modelArguments(config) == {"modelPath": str(tmp_path / "model.pt"), "charge": 0, "precision": "double"}
    config = loadConfig(_config(tmp_path, 'model = "ani2x"\nmodel_path = "weights"\n'))
    assert modelArguments(config) == {"weightsDir": str(tmp_path / "weights")}
    config = loadConfig(_config(tmp_path, ""), {"model": "aimnet2", "model_options": "precision=double,multiplicity=1"})
    assert modelArguments(config) == {"precision": "double", "multiplicity": 1}
    build = buildMixedSystem(loadConfig(_config(tmp_path, 'model = "aimnet2"\nmodel_path = "model.pt"\n')), log=lambda m: None)
    assert type(build.module).__name__ == "AIMNet2"


@pytest.mark.parametrize("text, message", [
    ('model = "ani1x"\ncharge = 1\n', "has no total-charge input, so charge cannot be set"),
    ('model = "model.pt"\nmodel_path = "x.pt"\n', "is a TorchScript file, which takes none of them"),
    ('model = "aimnet2"\nmodel_options = { precision = [1] }\n', "model_options.precision must be a string"),
    ('model = "aimnet2"\nmodel_options = "precision"\n', "must be key=value pairs"),
])
def test_bad_model_keys_are_one_line(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        modelArguments(loadConfig(_config(tmp_path, text)))


def test_command_runs_an_adapter_by_name_and_says_what_is_missing(tmp_path, capsys, aimnet2File):
    """`openmm-hybrid run --model aimnet2 --model-path F --dry-run` evaluates the energy; without
    the file the command prints one line naming what to give."""
    config = _config(tmp_path, "")
    status = main(["run", config, "--model", "aimnet2", "--model-path", aimnet2File, "--dry-run", "--platform",
                   "Reference", "--output", str(tmp_path / "out")])
    out = capsys.readouterr()
    assert status == 0, out.err
    assert "model aimnet2" in out.out and "dry run" in out.out
    status = main(["run", config, "--model", "mace-off23-small", "--dry-run", "--output", str(tmp_path / "out2")])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1
    assert "no model file given" in err[0] and "model_path" in err[0] and "MACE-OFF23_small.model" in err[0]


def test_setup_declares_every_name_as_an_openmm_ml_potential():
    """setup.py's openmmml.potentials entry points are `hybrid-` + every built-in name (they are
    listed there by hand; this keeps the two lists equal)."""
    declared = {e.name for e in importlib.metadata.entry_points(group="openmmml.potentials")
                if e.value.startswith("openmmhybrid.")}
    builtIn = {n for n in models.availableModels() if n.startswith("ani") or hasattr(models._factories[n], "adapter")}
    assert declared == {"hybrid-" + n for n in builtIn}


def test_openmm_ml_runs_an_adapter_through_mlforce(aimnet2File, pxyleneInputs):
    """MLPotential('hybrid-aimnet2', modelPath=f).createSystem puts the adapter in an MLForce whose
    energy is the adapter's (float32 network: the bound of its sum over the region)."""
    pytest.importorskip("openmmml", reason="the openmm-ml entry points")
    from openmmml import MLPotential
    from openmmhybrid.models import aimnet2
    topology, inpcrd, _, ligand = pxyleneInputs
    sub = app.Modeller(topology, inpcrd.positions)
    sub.delete([a for a in topology.atoms() if a.index not in set(ligand)])
    system = MLPotential("hybrid-aimnet2", modelPath=aimnet2File).createSystem(sub.topology)
    forces = [f for f in system.getForces() if openmmhybrid.MLForce.isinstance(f)]
    assert len(forces) == 1
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(sub.positions)
    energy = context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(KJ)
    x = torch.tensor(sub.getPositions().value_in_unit(unit.nanometer), dtype=torch.float32)
    expected = aimnet2.create(sub.topology, list(range(len(ligand))), modelPath=aimnet2File)(x).item()
    assert energy == pytest.approx(expected, abs=bound(abs(expected), torch.float32, len(ligand)))


def test_mace_by_openmm_ml_name_reads_the_file_under_the_weights_root(tmp_path, monkeypatch, pxyleneInputs):
    """openmm-ml's name 'mace-off23-small' with no modelPath reads MACE-OFF23_small.model under the
    weights root (here a random-weight file put there), as it would a downloaded MACE-OFF23."""
    path = _maceFile(str(tmp_path))
    monkeypatch.setenv("OPENMMHYBRID_WEIGHTS", str(tmp_path))
    os.rename(path, tmp_path / "MACE-OFF23_small.model")
    topology, _, system, ligand = pxyleneInputs
    mixed = openmmhybrid.createMixedSystem(topology, system, ligand, "mace-off23-small")
    assert sum(openmmhybrid.MLForce.isinstance(f) for f in mixed.getForces()) == 1


def test_models_command_lists_the_adapters(capsys, tmp_path, monkeypatch):
    """`openmm-hybrid models` shows each adapter name with its elements (or that they come from the
    file), charge support, source, the default file under the weights root and the licence."""
    monkeypatch.setenv("OPENMMHYBRID_WEIGHTS", str(tmp_path))
    (tmp_path / "aimnet2_wb97m_d3_0.pt").write_bytes(b"")
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    blocks = {block.split()[0]: block for block in out.split("\n\n") if block.strip()}
    for module in models.ADAPTERS:
        for name in models._adapterModule(module).NAMES:
            assert "licence:" in blocks[name] and "charge:" in blocks[name], name
    assert "elements: those of the model file" in blocks["mace"]
    assert "elements: H B C N O F Si P S Cl As Se Br I" in blocks["aimnet2"]
    assert f"file:     {tmp_path / 'aimnet2_wb97m_d3_0.pt'} (present)" in blocks["aimnet2"]
    assert f"file:     {tmp_path / 'MACE-OFF23_small.model'} (not there)" in blocks["mace-off23-small"]
    assert "Academic Software License" in blocks["mace-off23-small"] or "ASL" in blocks["mace-off23-small"]
    assert "run code when loaded" in out
