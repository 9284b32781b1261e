"""``openmm-hybrid fe`` end to end, and its bad input.

- The shipped p-xylene hydration config with its quick protocol (fixed seeds, CPU platform): not
  converged, but a complete calculation.  MBAR over 3 windows and BAR on 16 switches each way
  must agree on ddG within 4 of their combined standard errors (a check that fails by chance with
  probability 6e-5).
- Resuming and Dask workers must give the same numbers as one uninterrupted run, which only a
  bitwise reproducible platform can show: OpenMM's CPU platform is not (two runs of the same MM
  System with the same seed and one thread differ by 3e-6 nm after 100 steps, measured
  2026-12-01), the Reference platform is.  So those tests run a tiny calculation on Reference
  (tests/data/fe/fe_pxylene_tiny.toml: 2 windows of 10 samples per leg).
"""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from openmmhybrid.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIGS = os.path.join(ROOT, "examples", "configs")
HYDRATION = os.path.join(CONFIGS, "fe_pxylene_hydration.toml")
BINDING = os.path.join(CONFIGS, "fe_t4l_pxylene_binding.toml")
DATA = os.path.join(ROOT, "examples", "data")
TINY = os.path.join(ROOT, "tests", "data", "fe", "fe_pxylene_tiny.toml")
QUICK = ["--quick"]


def _fe(args, capsys=None):
    status = main(["fe", *args])
    return status


def _result(folder):
    with open(os.path.join(folder, "result.json")) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def mbarRun(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("fe") / "mbar")
    assert _fe([HYDRATION, *QUICK, "--output", out]) == 0
    return out


@pytest.fixture(scope="module")
def neqRun(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("fe") / "neq")
    assert _fe([HYDRATION, *QUICK, "--method", "neq", "--output", out]) == 0
    return out


@pytest.fixture(scope="module")
def tinyRun(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("fe") / "tiny")
    assert _fe([TINY, "--quick", "--workers", "1", "--threads", "1", "--output", out]) == 0
    return out


def test_mbar_and_neq_agree_on_the_hydration_correction(mbarRun, neqRun):
    mbar, neq = _result(mbarRun), _result(neqRun)
    for result, method, tasks in ((mbar, "mbar", 6), (neq, "neq", 2 * (2 + 2 * 16))):
        assert result["method"] == method and result["quick"] is True and result["units"] == "kJ/mol"
        assert result["tasks"] == {"done": tasks, "total": tasks}
        assert set(result["legs"]) == {"water", "vacuum"} and result["legNames"] == ["water", "vacuum"]
        ddG = result["ddG"]
        # mechanical embedding: the solute-water coupling is MM in both states, so ddG is small; the
        # quick protocol's standard error is a few tenths of a kJ/mol (0.37 measured for both)
        assert 0.05 < ddG["stderr"] < 1.0, ddG
        assert abs(ddG["value"]) < 4 * ddG["stderr"] + 1.0, ddG
        water, vacuum = result["legs"]["water"], result["legs"]["vacuum"]
        assert ddG["value"] == pytest.approx(water["value"] - vacuum["value"], abs=1e-12)
        assert ddG["stderr"] == pytest.approx(np.hypot(water["stderr"], vacuum["stderr"]), rel=1e-12)
        assert water["particles"] == 3180 and vacuum["particles"] == 18 and water["mlAtoms"] == vacuum["mlAtoms"] == 18
        # both legs carry the same offset (ML - MM of the region at the water leg's start, ANI-1x's
        # atomic energies included: about -816,000 kJ/mol), which ddG does not see
        assert water["offset"] == vacuum["offset"] and -830000 < water["offset"] < -800000
        with open(os.path.join(result_folder(result, mbarRun, neqRun), "report.md")) as f:
            report = f.read()
        assert "NOT converged" in report and f"{ddG['value']:.2f} ± {ddG['stderr']:.2f}" in report
    difference = mbar["ddG"]["value"] - neq["ddG"]["value"]
    combined = np.hypot(mbar["ddG"]["stderr"], neq["ddG"]["stderr"])
    assert abs(difference) < 4 * combined, (mbar["ddG"], neq["ddG"])
    # the MBAR details: overlap rows sum to 1, neighbours overlap; the NEQ works are there
    water = mbar["legs"]["water"]
    overlap = np.array(water["overlap"])
    assert overlap.shape == (3, 3) and np.allclose(overlap.sum(axis=1), 1)
    assert min(overlap[0, 1], overlap[1, 2]) > 0.03
    assert water["convergence"]["forward"][-1][0] == pytest.approx(water["value"])
    works = neq["legs"]["water"]
    assert len(works["forwardWorks"]) == len(works["reverseWorks"]) == 16


def result_folder(result, mbarRun, neqRun):
    return mbarRun if result["method"] == "mbar" else neqRun


def test_alchemlyb_reads_the_reduced_potentials(mbarRun):
    """u_nk/<ligand>-<leg>.parquet is alchemlyb's u_nk: its MBAR on every sample gives what
    mbarEstimate gives on the same samples (the same estimator: to 1e-6 kT)."""
    import pandas as pd
    from alchemlyb.estimators import MBAR
    from openmmhybrid.freeenergy import mbarEstimate
    u_nk = pd.read_parquet(os.path.join(mbarRun, "u_nk", "fe_pxylene_hydration-water.parquet"))
    assert u_nk.attrs == {"temperature": 298.15, "energy_unit": "kT"}
    assert list(u_nk.index.names) == ["time", "lambda"] and list(u_nk.columns) == [0.0, 0.5, 1.0]
    assert u_nk.shape == (300, 3)
    estimator = MBAR().fit(u_nk)
    counts = [int((u_nk.index.get_level_values("lambda") == lam).sum()) for lam in u_nk.columns]
    ours = mbarEstimate(u_nk.to_numpy().T, counts)
    assert estimator.delta_f_.loc[0.0, 1.0] == pytest.approx(ours.value, abs=1e-6)
    # and the decorrelated estimate of result.json is the same free energy within its error
    water = _result(mbarRun)["legs"]["water"]
    kT = _result(mbarRun)["kT_kJ_per_mol"]
    assert abs(ours.value * kT - water["value"]) < 3 * water["stderr"]


def test_a_finished_run_resumed_does_no_work(tinyRun, capsys):
    tasks = os.path.join(tinyRun, "tasks")
    stamps = {os.path.join(r, f): os.stat(os.path.join(r, f)).st_mtime_ns for r, _, fs in os.walk(tasks) for f in fs}
    before = _result(tinyRun)
    assert before["tasks"] == {"done": 4, "total": 4} and before["ddG"]["value"] is not None
    # every result carries the settings that made it, and the key is their hash
    with np.load(os.path.join(tasks, "fe_pxylene_tiny", "water", "window-0000.npz")) as data:
        settings = json.loads(str(data["_settings"]))
        assert len(str(data["_key"])) == 24 and set(data.files) >= {"u_kn", "dudl", "_seed"}
    assert settings["method"] == "mbar" and settings["protocol"]["lambdas"] == [0.0, 1.0]
    assert set(settings["files"]) == {"pxylene_water.prmtop", "pxylene_water.inpcrd"} and settings["seed"] > 11
    capsys.readouterr()
    assert _fe([TINY, "--quick", "--workers", "1", "--threads", "1", "--output", tinyRun, "--resume"]) == 0
    out = capsys.readouterr().out
    assert "4 of 4 tasks are done already" in out and "window-0000 (" not in out
    assert {p: os.stat(p).st_mtime_ns for p in stamps} == stamps
    assert _result(tinyRun)["ddG"] == before["ddG"]


def test_a_killed_run_resumed_gives_the_uninterrupted_result(tinyRun, tmp_path):
    """The command killed (SIGKILL) after its first task, then --resume: the numbers of the
    uninterrupted run, with the finished task not rerun."""
    out = str(tmp_path / "killed")
    command = [sys.executable, "-m", "openmmhybrid", "fe", TINY, "--quick", "--workers", "1", "--threads", "1", "--output", out]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    tasks = os.path.join(out, "tasks", "fe_pxylene_tiny", "water")

    def finished():
        return sorted(f for f in os.listdir(tasks) if f.endswith(".npz") and not f.startswith(".tmp")) \
            if os.path.isdir(tasks) else []

    deadline = time.time() + 300
    try:
        while time.time() < deadline and process.poll() is None and not finished():
            time.sleep(0.05)
        assert process.poll() is None, "the run ended before it could be killed"
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()
    done = finished()
    assert len(done) == 1, done
    stamps = {f: os.stat(os.path.join(tasks, f)).st_mtime_ns for f in done}
    assert _fe([TINY, "--quick", "--workers", "1", "--threads", "1", "--output", out]) == 2  # the folder is not empty: --resume is needed
    # the analysis of what is done: 1 of 4 tasks, no estimate yet, and the report says so
    assert _fe([TINY, "--quick", "--workers", "1", "--threads", "1", "--output", out, "--analyze"]) == 0
    partial = _result(out)
    assert partial["tasks"] == {"done": 1, "total": 4} and partial["ddG"] == {"value": None, "stderr": None}
    assert partial["legs"]["water"]["done"] == 1 and partial["legs"]["vacuum"]["done"] == 0
    with open(os.path.join(out, "report.md")) as f:
        assert "not done (1 of 2 tasks)" in f.read()
    assert {f: os.stat(os.path.join(tasks, f)).st_mtime_ns for f in done} == stamps
    assert _fe([TINY, "--quick", "--workers", "1", "--threads", "1", "--output", out, "--resume"]) == 0
    assert {f: os.stat(os.path.join(tasks, f)).st_mtime_ns for f in done} == stamps
    resumed, uninterrupted = _result(out), _result(tinyRun)
    assert resumed["tasks"] == uninterrupted["tasks"] == {"done": 4, "total": 4}
    for leg in ("water", "vacuum"):
        assert resumed["legs"][leg]["value"] == uninterrupted["legs"][leg]["value"]
        assert resumed["legs"][leg]["stderr"] == uninterrupted["legs"][leg]["stderr"]
    assert resumed["ddG"] == uninterrupted["ddG"]


def test_two_dask_workers_give_what_one_process_gives(tinyRun, tmp_path):
    pytest.importorskip("distributed")
    out = str(tmp_path / "two")
    assert _fe([TINY, "--quick", "--threads", "1", "--output", out, "--workers", "2"]) == 0
    two, one = _result(out), _result(tinyRun)
    assert two["workers"] == 2 and two["tasks"] == one["tasks"]
    for leg in ("water", "vacuum"):
        assert two["legs"][leg]["value"] == one["legs"][leg]["value"]
    assert two["ddG"] == one["ddG"]


def test_the_binding_config_sets_up(capsys):
    """The shipped binding calculation: both legs build, their ML regions agree, and the tasks are
    counted (a dry run: nothing is simulated)."""
    assert _fe([BINDING, "--quick", "--dry-run", "--output", os.devnull + "-not-written"]) == 0
    out = capsys.readouterr().out
    assert "complex: 36309 particles, ML region C8H10 (18 atoms)" in out
    assert "solvent: 3180 particles, ML region C8H10 (18 atoms)" in out
    assert "dry run: 2 legs are consistent; 6 tasks would run" in out


# -- bad input: one line each, exit status 2 ---------------------------------------------------------


def _config(tmp_path, text):
    path = tmp_path / "fe.toml"
    path.write_text(text.replace("DATA", DATA.replace("\\", "/")))
    return str(path)


WATER = """
[fe]
calculation = "hydration"
[ml]
residue = "TMP"
[water]
prmtop = "DATA/pxylene-water/pxylene_water.prmtop"
inpcrd = "DATA/pxylene-water/pxylene_water.inpcrd"
"""


@pytest.mark.parametrize("text, message", [
    (WATER + "[mbar]\nlambdas = [0.1, 0.5, 1.0]\n", "must rise from 0 to 1"),
    (WATER + "[mbar]\nlambdas = [0.0, 0.5, 0.9]\n", "must rise from 0 to 1"),
    (WATER + "[quick.mbar]\nlambdas = [0.0, 0.6, 0.5, 1.0]\n", "must rise from 0 to 1"),
    (WATER + "[neq]\nswitch_steps = 0\n", "a switch needs at least one step"),
    (WATER + "[neq]\nswitches = 1\n", "at least 2 switches"),
    (WATER + "[mbar]\nsamples = 10.5\n", "samples must be an integer"),
    (WATER + "[neq]\none_sided = 1\n", "one_sided must be true or false"),
    (WATER + "[mbar]\nwindows = 3\n", "unknown key 'windows' in [mbar]"),
    (WATER.replace('calculation = "hydration"', 'calculation = "solvation"'), "calculation must be one of"),
    (WATER + "[dynamics]\npressure = 1\n", "'pressure' does not apply to a free-energy leg"),
    (WATER + "[complex]\nprmtop = 'x'\n", "a hydration calculation has the legs water and vacuum, not 'complex'"),
    (WATER.replace("[water]", "[fe2]"), "unknown table or key 'fe2'"),
    (WATER.replace('calculation = "hydration"', 'calculation = "binding"').replace("[water]", "[complex]"),
     "the solvent leg has no input"),
    (WATER.replace("prmtop =", "topology ="), "unknown key 'topology' in the water leg"),
])
def test_bad_configs(tmp_path, capsys, text, message):
    assert _fe([_config(tmp_path, text), "--dry-run", "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err


def test_a_missing_state_file(tmp_path, capsys):
    text = WATER.replace('prmtop = "DATA/pxylene-water/pxylene_water.prmtop"\ninpcrd = "DATA/pxylene-water/pxylene_water.inpcrd"',
                         f'system = "{tmp_path}/system.xml"\nstate = "{tmp_path}/missing-state.xml"\n'
                         'pdb = "DATA/t4l-l99a-pxylene-water/complex.pdb"')
    (tmp_path / "system.xml").write_text("<System/>")
    assert _fe([_config(tmp_path, text), "--dry-run", "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "water leg" in err and "missing-state.xml' does not exist" in err, err


def test_legs_whose_ml_regions_differ(tmp_path, capsys):
    """The same atom indices select p-xylene in one leg and part of alanine dipeptide in the other."""
    text = f"""
[fe]
calculation = "binding"
[ml]
atoms = "0-17"
[complex]
prmtop = "DATA/pxylene-water/pxylene_water.prmtop"
inpcrd = "DATA/pxylene-water/pxylene_water.inpcrd"
[solvent]
prmtop = "DATA/alanine-dipeptide-water/alanine-dipeptide.prmtop"
inpcrd = "DATA/alanine-dipeptide-water/alanine-dipeptide.inpcrd"
[dynamics]
minimize_iterations = 5
"""
    assert _fe([_config(tmp_path, text), "--dry-run", "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "the ML regions of the legs differ" in err and "complex: C8H10" in err, err


def test_resume_with_other_settings_is_refused(tinyRun, capsys):
    assert _fe([TINY, "--threads", "1", "--output", tinyRun, "--resume"]) == 2  # the production protocol, not the quick one
    err = capsys.readouterr().err
    assert "--resume: the settings or input files" in err and "differ" in err


@pytest.mark.parametrize("args, message", [
    (["--workers", "0"], "--workers must be at least 1"),
    (["--workers", "2", "--scheduler", "tcp://127.0.0.1:8786"], "not both"),
    (["--scheduler", "127.0.0.1:8786"], "scheduler must be a Dask scheduler address"),
])
def test_bad_flags(capsys, args, message):
    assert _fe([HYDRATION, "--dry-run", *args]) == 2
    assert message in capsys.readouterr().err


def test_a_client_of_ones_own(tinyRun, tmp_path):
    """runFreeEnergy(..., client=...) runs the tasks on a given Dask cluster (as the dask-jobqueue
    template examples/fe_dask_cluster.py does) and leaves it open: the numbers of one process."""
    pytest.importorskip("distributed")
    from distributed import Client, LocalCluster
    from openmmhybrid.freeenergy import loadFEConfig, runFreeEnergy
    fe = loadFEConfig(TINY, {"output": str(tmp_path / "own"), "threads": 1}, quick=True)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster) as client:
        lines = []
        result = runFreeEnergy(fe, client=client, log=lines.append)
        assert any("tasks on the Dask cluster of" in line for line in lines)
        assert client.status == "running"
    assert result["ddG"] == _result(tinyRun)["ddG"]


def test_several_ligands(tmp_path, capsys):
    """[[ligand]] tables: each ligand has its own region and legs, and its own seeds; the dry run
    sets up all four legs."""
    text = """
[fe]
calculation = "hydration"
[ml]
model = "ani1x"
[[ligand]]
name = "p-xylene"
residue = "TMP"
water = {prmtop = "DATA/pxylene-water/pxylene_water.prmtop", inpcrd = "DATA/pxylene-water/pxylene_water.inpcrd"}
[[ligand]]
name = "alanine dipeptide"
region = "not water"
water = {prmtop = "DATA/alanine-dipeptide-water/alanine-dipeptide.prmtop", inpcrd = "DATA/alanine-dipeptide-water/alanine-dipeptide.inpcrd"}
[dynamics]
minimize_iterations = 5
"""
    assert _fe([_config(tmp_path, text), "--quick", "--dry-run", "--output", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "p-xylene / water: 3180 particles, ML region C8H10 (18 atoms)" in out
    assert "p-xylene / vacuum: 18 particles" in out
    assert "alanine dipeptide / water:" in out and "ML region C6H12N2O2 (22 atoms)" in out
    assert "alanine dipeptide / vacuum: 22 particles" in out
    assert "dry run: 4 legs are consistent; 12 tasks would run" in out


@pytest.mark.parametrize("text, message", [
    ("[[ligand]]\nresidue = 'TMP'\n", "needs a name"),
    ("[[ligand]]\nname = 'a'\nresidue = 'TMP'\nwater = {prmtop = 'x.prmtop', inpcrd = 'x.inpcrd'}\n"
     "[[ligand]]\nname = 'a'\nresidue = 'TMP'\n", "two ligands are called 'a'"),
    ("[[ligand]]\nname = 'a'\ncolour = 'red'\n", "unknown key 'colour' in the ligand 'a'"),
])
def test_bad_ligand_tables(tmp_path, capsys, text, message):
    assert _fe([_config(tmp_path, "[fe]\ncalculation = 'hydration'\n" + text), "--dry-run"]) == 2
    assert message in capsys.readouterr().err
