import os
import sys

import openmm
import openmm.app as app
import openmm.unit as unit
import pytest

sys.path.insert(0, os.path.dirname(__file__))
import openmmhybrid  # noqa: E402,F401  (loads the plugins)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = os.path.join(ROOT, "examples", "data")

CPU_PLATFORMS = [name for name in ("Reference", "CPU")
                 if name in [openmm.Platform.getPlatform(i).getName() for i in range(openmm.Platform.getNumPlatforms())]]


@pytest.fixture(scope="module", autouse=True)
def _torch_global_state():
    """Put torch's process-wide settings back after each test module: mace-torch's MACECalculator
    (the MACE tests' reference) sets the default dtype to float64 for the whole process, which
    changes the float32 buffers torchani builds in later modules."""
    import torch
    dtype = torch.get_default_dtype()
    yield
    torch.set_default_dtype(dtype)


@pytest.fixture(params=CPU_PLATFORMS)
def platform(request):
    """Every CPU-side platform that exists here (the CUDA tests live in test_cuda_*.py)."""
    return openmm.Platform.getPlatformByName(request.param)


@pytest.fixture
def data_dir():
    return DATA


def amber(name, prmtop, inpcrd, **kwargs):
    """(prmtop, inpcrd, System) for a shipped input in examples/data/<name>: PME 0.9 nm, HBonds
    unless kwargs say otherwise."""
    folder = os.path.join(DATA, name)
    prm = app.AmberPrmtopFile(os.path.join(folder, prmtop))
    crd = app.AmberInpcrdFile(os.path.join(folder, inpcrd))
    options = dict(nonbondedMethod=app.PME, nonbondedCutoff=0.9 * unit.nanometer, constraints=app.HBonds)
    options.update(kwargs)
    return prm, crd, prm.createSystem(**options)


@pytest.fixture(scope="module")
def pxylene():
    """(prmtop, inpcrd, System) of p-xylene in 1,054 TIP3P waters (PME 0.9 nm, HBonds); a test
    module may define its own ``pxylene`` for another shape of the same input."""
    return amber("pxylene-water", "pxylene_water.prmtop", "pxylene_water.inpcrd")


@pytest.fixture(scope="module")
def dipeptide():
    """(prmtop, inpcrd, System) of the alanine dipeptide in water (PME 0.9 nm, HBonds)."""
    return amber("alanine-dipeptide-water", "alanine-dipeptide.prmtop", "alanine-dipeptide.inpcrd")


def openmm_ml_peer(name, makeModel):
    """openmm-ml's MLPotential ``name``, registered here to run ``makeModel(topology, atoms)`` in an
    MLForce (float64) on the atoms openmm-ml gives: the peer's construction around our model."""
    pytest.importorskip("openmmml", reason="the peer implementation to compare against")
    from openmmml.mlpotential import MLPotential, MLPotentialImpl, MLPotentialImplFactory

    class Impl(MLPotentialImpl):
        def addForces(self, topology, system, atoms, forceGroup, **args):
            force = openmmhybrid.MLForce(makeModel(topology, list(atoms)), list(atoms), usesDoublePrecision=True,
                                         usesPeriodicBoundaryConditions=system.usesPeriodicBoundaryConditions())
            force.setForceGroup(forceGroup)
            system.addForce(force)

    class Factory(MLPotentialImplFactory):
        def createImpl(self, name, **args):
            return Impl()

    MLPotential.registerImplFactory(name, Factory())
    return MLPotential(name)
