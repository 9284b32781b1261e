"""The demo (`make demo`, examples/configs/t4l_pxylene.toml) starts from a shipped equilibrated state:
examples/data/t4l-l99a-pxylene-water/complex_equilibrated.rst7, made by examples/equilibrate_t4l.py."""
import math
import os

import numpy as np
import openmm.app as app
import openmm.unit as unit
import pytest

from conftest import DATA, ROOT
from openmmhybrid.job.config import loadConfig
from openmmhybrid.job.inputs import readInputs
from openmmhybrid.utils import degreesOfFreedom

FOLDER = os.path.join(DATA, "t4l-l99a-pxylene-water")
RST7 = os.path.join(FOLDER, "complex_equilibrated.rst7")
CONFIG = os.path.join(ROOT, "examples", "configs", "t4l_pxylene.toml")
R = unit.MOLAR_GAS_CONSTANT_R.value_in_unit(unit.kilojoule_per_mole / unit.kelvin)


@pytest.fixture(scope="module")
def config():
    return loadConfig(CONFIG)


@pytest.fixture(scope="module")
def inputs(config):
    """What the demo's runner reads: the prmtop's System (PME 0.9 nm, HBonds, rigid water) and the
    rst7's positions, box and velocities."""
    return readInputs(config)


def test_the_config_starts_from_the_equilibrated_state(config):
    assert os.path.samefile(config["inpcrd"], RST7)
    assert os.path.samefile(config["prmtop"], os.path.join(FOLDER, "complex.prmtop"))
    assert config["minimize"] is False
    assert config["temperature"].value_in_unit(unit.kelvin) == 300
    assert config["constraints"] == "HBonds"
    assert config["equilibration_steps"] > 0  # lets the ANI-1x switch-on relax before recording


def test_rst7_has_positions_velocities_and_box(inputs):
    crd = app.AmberInpcrdFile(RST7)
    numAtoms = app.AmberPrmtopFile(os.path.join(FOLDER, "complex.prmtop")).topology.getNumAtoms()
    assert numAtoms == 36309
    assert len(crd.positions) == numAtoms
    assert crd.velocities is not None and len(crd.velocities) == numAtoms
    assert crd.boxVectors is not None
    positions = crd.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
    assert np.all(np.isfinite(positions))
    box = np.array([v.value_in_unit(unit.nanometer) for v in crd.getBoxVectors()])
    assert np.allclose(box, np.diag(np.diag(box)))  # the rectangular box the demo runs in
    # the runner takes the velocities and the box from the inpcrd
    assert inputs.velocities is not None and inputs.box is not None
    assert np.allclose(np.array([v.value_in_unit(unit.nanometer) for v in inputs.box]), box)


def test_kinetic_temperature_is_300_K(inputs):
    """The instantaneous kinetic temperature of N_dof degrees of freedom at T has the standard
    deviation T sqrt(2/N_dof) (the kinetic energy is chi-squared with N_dof degrees of freedom):
    for 36,309 atoms with HBonds and rigid water, N_dof = 73,983 and sigma = 1.56 K.  A state
    equilibrated at 300 K is within 5 sigma (a false failure once in ~2 million); one still heating
    from a minimized structure (272 K two ps in) or with velocities in the wrong unit (Amber's
    A/(1/20.455 ps) read as A/ps: x418 in T) is far outside."""
    system = inputs.system
    masses = np.array([system.getParticleMass(i).value_in_unit(unit.dalton) for i in range(system.getNumParticles())])
    velocities = np.asarray(inputs.velocities.value_in_unit(unit.nanometer / unit.picosecond))
    kinetic = 0.5 * np.sum(masses[:, None] * velocities ** 2)  # kJ/mol
    dof = degreesOfFreedom(system)
    assert 70000 < dof < 80000
    temperature = 2 * kinetic / (dof * R)
    sigma = 300 * math.sqrt(2 / dof)
    assert temperature == pytest.approx(300, abs=5 * sigma), f"{temperature:.2f} K (sigma {sigma:.2f} K)"


def test_density_is_that_of_an_equilibrated_box(inputs):
    """The box comes from the end of the NPT stage: a protein in TIP3P water at 300 K and 1 bar
    has a density near 1.0 g/cm^3 (TIP3P alone ~0.98; the protein adds ~2%)."""
    system = inputs.system
    mass = sum(system.getParticleMass(i).value_in_unit(unit.dalton) for i in range(system.getNumParticles()))
    a, b, c = (v.value_in_unit(unit.nanometer) for v in inputs.box)
    volume = float(np.dot(np.cross(a, b), c))  # nm^3
    density = mass * 1.66053906660e-3 / volume  # Da/nm^3 -> g/cm^3
    assert 0.97 < density < 1.06, f"{density:.4f} g/cm^3"
