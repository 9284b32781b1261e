"""openmm-hybrid's models as openmm-ml potentials (the entry points of `openmmml.potentials`).

`MLPotential("hybrid-ani1x")` is openmm-ml's own API running the project's ANI-1x in an MLForce;
the expected numbers come from the project's ANI-1x evaluated directly (createSystem) and from
the project's own createMixedSystem on the same region (createMixedSystem, with link atoms).
"""
import importlib.metadata

import numpy as np
import openmm
import openmm.unit as unit
import pytest
import torch

import openmmhybrid
from openmmhybrid.models import atomicNumbers
from openmmhybrid.models.ani import ANI1x
from precision import bound, networkTerms

mlpotential = pytest.importorskip("openmmml.mlpotential", reason="openmm-ml (the peer) is not installed")
import openmmhybrid.mlpotential  # noqa: E402  (needs openmmml)
KJ = unit.kilojoule_per_mole
LAMBDA = "lambda_interpolate"


def reference():
    platform = openmm.Platform.getPlatformByName("Reference")
    return platform


def ml_forces(system):
    return [openmmhybrid.MLForce.cast(f) for f in system.getForces() if openmmhybrid.MLForce.isinstance(f)]


def test_entry_points_are_declared():
    """The installed package declares hybrid-ani1x, hybrid-ani1ccx and hybrid-ani2x for openmm-ml,
    and openmm-ml has registered them when its module was imported."""
    names = {e.name for e in importlib.metadata.entry_points(group="openmmml.potentials")}
    assert {"hybrid-ani1x", "hybrid-ani1ccx", "hybrid-ani2x"} <= names
    assert "hybrid-ani1x" in mlpotential.MLPotential._implFactories


def test_create_system_runs_the_model_in_an_mlforce(dipeptide):
    """createSystem over the 22 dipeptide atoms in vacuum: one MLForce, and its energy is the
    project's float64 ANI-1x on those positions (the same model: rounding of one evaluation)."""
    import openmm.app as app
    prm, crd, _ = dipeptide
    modeller = app.Modeller(prm.topology, crd.positions)
    modeller.deleteWater()
    modeller.topology.setPeriodicBoxVectors(None)
    system = mlpotential.MLPotential("hybrid-ani1x").createSystem(modeller.topology, precision="double")
    forces = ml_forces(system)
    assert len(forces) == 1 and forces[0].getAtoms() == list(range(22)) and forces[0].getUsesDoublePrecision()
    for force in forces:
        force.setProperty("modelThreads", "1")
    c = openmm.Context(system, openmm.VerletIntegrator(0.001), reference())
    c.setPositions(modeller.positions)
    energy = c.getState(getEnergy=True).getPotentialEnergy().value_in_unit(KJ)
    model = ANI1x(atomicNumbers(modeller.topology, range(22)))
    x = torch.tensor(np.array(modeller.positions.value_in_unit(unit.nanometer)), dtype=torch.float64)
    expected = model(x).item()
    # The same scripted code on the same float64 inputs, but MLForce sums in another order (the
    # ensemble's 8 x 22 atomic outputs): eps64 of the network energy, through its rounding terms.
    assert energy == pytest.approx(expected, abs=bound(expected - model.selfEnergy, torch.float64,
                                                       networkTerms(384, 4, 8 * 22)) + 4 * np.spacing(expected))


def test_create_mixed_system_agrees_with_ours(dipeptide):
    """openmm-ml's mechanical embedding of the ALA residue (its link-atom virtual sites) with
    hybrid-ani1x, against openmm-hybrid's createMixedSystem with its own caps: the same energy at
    lambda 0, 0.5 and 1 to within 1e-3 kJ/mol (test_linkatoms.py explains the 5e-5 kJ/mol offset:
    openmm-ml's extra particles shift the dispersion correction, and it uses a rounded Coulomb
    constant)."""
    prm, crd, system = dipeptide
    ala = [a.index for a in prm.topology.atoms() if a.residue.name == "ALA"]
    theirs = mlpotential.MLPotential("hybrid-ani1x").createMixedSystem(prm.topology, system, ala, interpolate=True,
                                                                       precision="double")
    ours = openmmhybrid.createMixedSystem(prm.topology, system, ala, "ani1x", interpolate=True,
                                          usesDoublePrecision=True)
    assert theirs.getNumParticles() == system.getNumParticles() + 2  # its two caps
    contexts = []
    for s in (theirs, ours):
        c = openmm.Context(s, openmm.VerletIntegrator(0.001), reference())
        c.setPeriodicBoxVectors(*crd.boxVectors)
        padding = [openmm.Vec3(0, 0, 0) * unit.nanometer] * (s.getNumParticles() - system.getNumParticles())
        c.setPositions(list(crd.positions) + padding)
        c.computeVirtualSites()
        contexts.append(c)
    for lam in (0.0, 0.5, 1.0):
        values = []
        for c in contexts:
            c.setParameter(LAMBDA, lam)
            values.append(c.getState(getEnergy=True).getPotentialEnergy().value_in_unit(KJ))
        assert abs(values[0] - values[1]) < 1e-3, (lam, values)


def test_unknown_model_name():
    with pytest.raises(ValueError, match="openmm-hybrid has no model 'nosuch'"):
        openmmhybrid.mlpotential.HybridPotentialImplFactory().createImpl("hybrid-nosuch")
