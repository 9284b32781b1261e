"""The report of an ``openmm-hybrid fe`` calculation (openmmhybrid.freeenergy.report) on synthetic
result dicts: one binding ligand by MBAR, hydration by nonequilibrium switching, two ligands and a
partial calculation.  Checks report.md's numbers and warnings, the PNG plots and results.csv."""
import copy
import csv
import os

import numpy as np

from openmmhybrid.freeenergy.report import writeReport

KT = 2.494


def mbarLeg(value, stderr, overlap=None, done=3, total=3):
    lambdas = [0.0, 0.5, 1.0]
    if overlap is None:
        overlap = [[0.6, 0.3, 0.1], [0.3, 0.4, 0.3], [0.1, 0.3, 0.6]]
    return {"value": value, "stderr": stderr, "done": done, "total": total, "particles": 2500, "mlAtoms": 18,
            "estimator": "mbar", "lambdas": lambdas, "overlap": overlap, "samples": [120, 95, 110],
            "dudlMean": [-3.0, -1.5, 0.4],
            "convergence": {"fractions": [0.25, 0.5, 0.75, 1.0],
                            "forward": [[value + 1.0, 0.9], [value + 0.5, 0.6], [value + 0.2, 0.5], [value, stderr]],
                            "reverse": [[value - 0.8, 0.9], [value - 0.3, 0.6], [value - 0.1, 0.5], [value, stderr]]}}


def base(calculation, method, legNames, ligands, quick=False):
    done = sum(leg["done"] for lig in ligands.values() for leg in lig["legs"].values())
    total = sum(leg["total"] for lig in ligands.values() for leg in lig["legs"].values())
    first = next(iter(ligands.values()))
    return {"calculation": calculation, "method": method, "quick": quick, "temperature_K": 300.0,
            "kT_kJ_per_mol": KT, "legNames": legNames, "ddG": first["ddG"], "ligands": ligands,
            "tasks": {"done": done, "total": total}, "workers": 2, "wallSeconds": 754.0, "machine": "testbox",
            "date": "2025-01-02", "versions": {"openmm-hybrid": "0.1", "OpenMM": "8.2", "torch": "2.5"},
            "settings": {"lambdas": 3, "samples": 100, "model": "ani1x"}, "embedding": "mechanical",
            "model": "ani1x"}


def bindingMBAR(quick=True, overlap=None):
    ligands = {"benzene": {"ddG": {"value": -1.23, "stderr": 0.45},
                           "legs": {"complex": mbarLeg(-10.5, 0.3, overlap), "solvent": mbarLeg(-9.27, 0.34)}}}
    return base("binding", "mbar", ["complex", "solvent"], ligands, quick=quick)


def neqLeg(value, stderr, forward, reverse, done=20, total=20):
    return {"value": value, "stderr": stderr, "done": done, "total": total, "particles": 1800, "mlAtoms": 12,
            "estimator": "bar", "forwardWorks": list(forward), "reverseWorks": list(reverse),
            "jarzynski": {"value": value + 0.3, "stderr": stderr * 1.5}}


def hydrationNEQ(spread=0.5):
    rng = np.random.default_rng(1)
    water = neqLeg(4.2, 0.21, 4.2 + 0.5 + spread * rng.standard_normal(10),
                   -4.2 + 0.5 + spread * rng.standard_normal(10))
    vacuum = neqLeg(1.1, 0.05, 1.1 + 0.1 + 0.2 * rng.standard_normal(10), -1.1 + 0.1 + 0.2 * rng.standard_normal(10))
    ligands = {"ethanol": {"ddG": {"value": 3.1, "stderr": 0.22}, "legs": {"water": water, "vacuum": vacuum}}}
    return base("hydration", "neq", ["water", "vacuum"], ligands)


def read(folder):
    with open(os.path.join(folder, "report.md")) as f:
        report = f.read()
    with open(os.path.join(folder, "results.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    return report, rows


def row(rows, ligand, leg):
    [found] = [r for r in rows if r["ligand"] == ligand and r["leg"] == leg]
    return found


def assertPNG(folder, name):
    path = os.path.join(folder, name)
    assert os.path.isfile(path), name
    assert os.path.getsize(path) > 1000, name
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_binding_mbar_report(tmp_path):
    folder = str(tmp_path)
    path = writeReport(folder, bindingMBAR(quick=True))
    assert path == os.path.join(folder, "report.md")
    report, rows = read(folder)
    assert report.startswith("# ")
    assert "binding" in report.splitlines()[0] and "ani1x" in report.splitlines()[0]
    assert "Adding ΔΔG to the MM binding free energy gives the binding free energy with the ML/MM potential" in report
    assert "{" not in report.split("## Settings")[0]  # no unformatted placeholder
    # The quick warning in bold, before the results.
    assert "**Quick protocol" in report and "NOT converged" in report
    assert report.index("NOT converged") < report.index("## Results")
    assert "-1.23 ± 0.45" in report
    assert f"{-1.23 / 4.184:.2f} ± {0.45 / 4.184:.2f}" in report  # kcal/mol
    assert "-10.50 ± 0.30" in report and "-9.27 ± 0.34" in report
    assert "ΔΔG = ΔG(complex) − ΔG(solvent)" in report
    assert "testbox" in report and "2025-01-02" in report and "12 min 34 s" in report and "6 of 6" in report
    assert "Partial" not in report
    for leg in ("complex", "solvent"):
        for kind in ("overlap", "convergence", "dudl"):
            assertPNG(folder, f"{kind}-benzene-{leg}.png")
            assert f"({kind}-benzene-{leg}.png)" in report
    assert "Smallest neighbour overlap: 0.300" in report
    assert "**Warning" not in report
    assert "## Settings" in report and '"samples": 100' in report
    assert report.index("## Settings") > report.index("## benzene: solvent")
    assert float(row(rows, "benzene", "ddG")["value_kJ_per_mol"]) == -1.23
    assert float(row(rows, "benzene", "ddG")["stderr_kJ_per_mol"]) == 0.45
    assert float(row(rows, "benzene", "complex")["value_kJ_per_mol"]) == -10.5
    assert float(row(rows, "benzene", "solvent")["stderr_kJ_per_mol"]) == 0.34
    assert row(rows, "benzene", "complex")["done"] == "3" and row(rows, "benzene", "complex")["total"] == "3"
    assert len(rows) == 3


def test_not_quick_has_no_warning(tmp_path):
    writeReport(str(tmp_path), bindingMBAR(quick=False))
    report, _ = read(str(tmp_path))
    assert "NOT converged" not in report


def test_low_overlap_warns(tmp_path):
    overlap = [[0.98, 0.02, 0.0], [0.02, 0.6, 0.38], [0.0, 0.38, 0.62]]
    writeReport(str(tmp_path), bindingMBAR(overlap=overlap))
    report, _ = read(str(tmp_path))
    assert "Smallest neighbour overlap: 0.020 (between λ = 0 and 0.5)" in report
    assert "**Warning: the overlap between λ = 0 and 0.5 is 0.020" in report


def test_hydration_neq_report(tmp_path):
    folder = str(tmp_path)
    writeReport(folder, hydrationNEQ(spread=0.5))
    report, rows = read(folder)
    assert "hydration" in report.splitlines()[0]
    assert "NOT converged" not in report
    assert "3.10 ± 0.22" in report and "4.20 ± 0.21" in report
    assert "ΔΔG = ΔG(water) − ΔG(vacuum)" in report
    for leg in ("water", "vacuum"):
        assertPNG(folder, f"works-ethanol-{leg}.png")
    assert "| Jarzynski (forward only) | 4.50 ± 0.32 |" in report
    assert "| BAR (forward and reverse) | 4.20 ± 0.21 |" in report
    assert "more or longer switches" not in report
    assert float(row(rows, "ethanol", "ddG")["value_kJ_per_mol"]) == 3.1
    assert float(row(rows, "ethanol", "water")["value_kJ_per_mol"]) == 4.2
    assert row(rows, "ethanol", "ddG")["total"] == "40"


def test_wide_work_distribution_gets_a_note(tmp_path):
    writeReport(str(tmp_path), hydrationNEQ(spread=4 * KT))
    report, _ = read(str(tmp_path))
    assert "BAR may be unreliable; use more or longer switches" in report


def test_two_ligands(tmp_path):
    folder = str(tmp_path)
    result = bindingMBAR(quick=False)
    second = copy.deepcopy(result["ligands"]["benzene"])
    second["ddG"] = {"value": 2.5, "stderr": 0.6}
    second["legs"]["complex"]["value"] = -6.0
    result["ligands"]["4-methyl phenol/(R)"] = second
    writeReport(folder, result)
    report, rows = read(folder)
    table = [line for line in report.splitlines() if line.startswith("| benzene |") or line.startswith("| 4-methyl")]
    assert len(table) == 2
    assert "-1.23 ± 0.45" in table[0] and "2.50 ± 0.60" in table[1] and "-6.00 ± 0.30" in table[1]
    assertPNG(folder, "overlap-4-methyl_phenol_R-complex.png")
    assertPNG(folder, "convergence-4-methyl_phenol_R-solvent.png")
    assert "(overlap-4-methyl_phenol_R-complex.png)" in report
    assert float(row(rows, "4-methyl phenol/(R)", "ddG")["value_kJ_per_mol"]) == 2.5
    assert float(row(rows, "4-methyl phenol/(R)", "complex")["value_kJ_per_mol"]) == -6.0
    assert len(rows) == 6


def test_partial_calculation(tmp_path):
    folder = str(tmp_path)
    result = bindingMBAR(quick=False)
    ligand = result["ligands"]["benzene"]
    ligand["legs"]["complex"] = {"value": None, "stderr": None, "done": 1, "total": 3, "particles": 2500,
                                 "mlAtoms": 18, "estimator": "mbar"}
    ligand["ddG"] = {"value": None, "stderr": None}
    result["ddG"] = ligand["ddG"]
    result["tasks"] = {"done": 4, "total": 6}
    writeReport(folder, result)
    report, rows = read(folder)
    assert "**Partial calculation: 4 of 6 tasks done.**" in report
    assert "benzene/complex (not done (1 of 3 tasks))" in report
    assert "not done (1 of 3 tasks)" in report.split("## Results")[1]
    assert not os.path.exists(os.path.join(folder, "overlap-benzene-complex.png"))
    assertPNG(folder, "overlap-benzene-solvent.png")
    complex_ = row(rows, "benzene", "complex")
    assert complex_["value_kJ_per_mol"] == "" and complex_["stderr_kJ_per_mol"] == ""
    assert complex_["done"] == "1" and complex_["total"] == "3"
    assert row(rows, "benzene", "ddG")["value_kJ_per_mol"] == ""
    assert float(row(rows, "benzene", "solvent")["value_kJ_per_mol"]) == -9.27


def test_one_sided_switching(tmp_path):
    """A one-sided leg (Jarzynski, forward works only): no BAR row, no reverse works, and a wide
    spread suggests both directions."""
    result = hydrationNEQ(spread=4 * KT)
    for leg in result["ligands"]["ethanol"]["legs"].values():
        leg.update(estimator="jarzynski", reverseWorks=[], jarzynski={"value": leg["value"], "stderr": leg["stderr"]})
    writeReport(str(tmp_path), result)
    report, rows = read(str(tmp_path))
    assert "BAR (forward and reverse)" not in report and "| Jarzynski (forward only) | 4.20 ± 0.21 |" in report
    assert "−reverse W" not in report and "by Jarzynski" in report
    assert "Jarzynski may be unreliable; use more or longer switches, or both directions (BAR)" in report
    assertPNG(str(tmp_path), "works-ethanol-water.png")
    assert float(row(rows, "ethanol", "water")["value_kJ_per_mol"]) == 4.2
