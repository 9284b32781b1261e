"""The free-energy engine on a system whose answer is analytic: harmonic oscillators.

N independent particles in 3D with U(lambda) = 1/2 k(lambda) r^2, k(lambda) = k0 + lambda (k1 - k0),
sampled by Langevin dynamics on the Reference platform.  The exact answer is
dF = f(1) - f(0) = (3N/2) ln(k1/k0) kT (the configurational integral of a Gaussian; the kinetic part
does not depend on lambda).  MBAR over windows and BAR on nonequilibrium switches go through the
same Leg and the same code; each must land within 4 of its standard errors of the exact value.
"""
import math

import numpy as np
import openmm
import openmm.unit as unit
import pytest

from openmmhybrid.freeenergy import (Leg, barEstimate, checkSchedule, decorrelatedIndices, jarzynskiEstimate,
                                     mbarEstimate, sampleEndState, sampleWindow, switch)
from openmmhybrid.utils import LAMBDA_PARAMETER

K0, K1 = 200.0, 400.0  # kJ/mol/nm^2
PARTICLES = 4
EXACT = 1.5 * PARTICLES * math.log(K1 / K0)  # kT: 4.159


def oscillators(linear=True):
    system = openmm.System()
    # a one-particle CustomCompoundBondForce: it can report dE/dlambda, CustomExternalForce cannot
    force = openmm.CustomCompoundBondForce(1, f"0.5*({K0} + {LAMBDA_PARAMETER}*({K1 - K0}))*(x1*x1 + y1*y1 + z1*z1)")
    force.addGlobalParameter(LAMBDA_PARAMETER, 0.0)
    if linear:
        force.addEnergyParameterDerivative(LAMBDA_PARAMETER)
    for i in range(PARTICLES):
        system.addParticle(12.0)
        force.addBond([i], [])
    system.addForce(force)
    positions = [openmm.Vec3(0.05 * i, 0, 0) for i in range(PARTICLES)] * unit.nanometer
    return Leg(system=system, positions=positions, temperature=300 * unit.kelvin, timestep=2 * unit.femtosecond,
               friction=5.0 / unit.picosecond, linear=linear, platform="Reference")


@pytest.mark.parametrize("linear", [True, False], ids=["linear", "by-state"])
def test_mbar_windows_give_the_analytic_answer(linear):
    leg = oscillators(linear)
    lambdas = [0.0, 0.25, 0.5, 0.75, 1.0]
    blocks, counts = [], []
    for window in range(len(lambdas)):
        result = sampleWindow(leg, window, lambdas, equilibrationSteps=500, samples=400, interval=25,
                              seed=101 + window)
        keep = decorrelatedIndices(result["dudl"])
        blocks.append(result["u_kn"][:, keep])
        counts.append(len(keep))
    estimate = mbarEstimate(np.concatenate(blocks, axis=1), counts)
    assert estimate.stderr < 0.15
    assert abs(estimate.value - EXACT) < 4 * estimate.stderr, (estimate.value, estimate.stderr, EXACT)
    overlap = np.array(estimate.details["overlap"])
    assert overlap.shape == (5, 5) and np.allclose(overlap.sum(axis=1), 1.0)
    assert all(overlap[i, i + 1] > 0.03 for i in range(4))


def test_nonequilibrium_switching_gives_the_analytic_answer():
    leg = oscillators()
    forward = [switch(leg, s, True, 50, seed=300 + i)
               for i, s in enumerate(sampleEndState(leg, 0.0, 500, 150, 40, seed=7))]
    reverse = [switch(leg, s, False, 50, seed=700 + i)
               for i, s in enumerate(sampleEndState(leg, 1.0, 500, 150, 40, seed=8))]
    estimate = barEstimate(forward, reverse)
    assert estimate.stderr < 0.15
    assert abs(estimate.value - EXACT) < 4 * estimate.stderr, (estimate.value, estimate.stderr, EXACT)
    # second law: the mean forward work is at least dF, the mean reverse work at least -dF
    assert np.mean(forward) >= EXACT - 4 * np.std(forward) / math.sqrt(len(forward))
    assert -np.mean(reverse) <= EXACT + 4 * np.std(reverse) / math.sqrt(len(reverse))
    one_sided = jarzynskiEstimate(forward)
    assert abs(one_sided.value - EXACT) < 4 * one_sided.stderr + 0.1


def test_instantaneous_switch_is_the_energy_difference():
    """One step: lambda jumps at fixed coordinates, so the work is U1(x) - U0(x) exactly."""
    leg = oscillators()
    snapshot = sampleEndState(leg, 0.0, 10, 1, 1, seed=3)[0]
    r2 = np.sum(np.asarray(snapshot.getPositions().value_in_unit(unit.nanometer)) ** 2)
    kT = (unit.MOLAR_GAS_CONSTANT_R * 300 * unit.kelvin).value_in_unit(unit.kilojoule_per_mole)
    assert switch(leg, snapshot, True, 1) == pytest.approx(0.5 * (K1 - K0) * r2 / kT, rel=1e-9)


@pytest.mark.parametrize("schedule", [[0.1, 1.0], [0.0, 0.9], [0.0, 0.5, 0.5, 1.0], [0.0]])
def test_bad_schedules(schedule):
    with pytest.raises(ValueError, match="must rise from 0 to 1"):
        checkSchedule(schedule)


def test_switch_needs_a_step():
    leg = oscillators()
    snapshot = sampleEndState(leg, 0.0, 1, 1, 1, seed=3)[0]
    with pytest.raises(ValueError, match="at least one step"):
        switch(leg, snapshot, True, 0)
