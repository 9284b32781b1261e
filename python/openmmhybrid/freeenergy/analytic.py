"""A calculation whose answer is known exactly, to check the engine end to end: harmonic
oscillators whose force constant lambda changes.

N independent particles in 3D with U(lambda) = 1/2 k(lambda) r^2, k(lambda) = k0 + lambda (k1 - k0),
have f(1) - f(0) = (3N/2) ln(k1/k0) kT: the configurational integral of a Gaussian (the kinetic part
does not depend on lambda).  :func:`harmonicLeg` builds that System as a :class:`~.sampling.Leg`,
and :func:`harmonicTask` runs one window or switch of it as a :class:`~.tasks.Task` (a module-level
function, so Dask workers can import it).
"""
import math

import numpy as np
import openmm
import openmm.unit as unit

from ..utils import LAMBDA_PARAMETER
from .sampling import Leg, sampleEndState, sampleWindow, switch

__all__ = ["harmonicLeg", "harmonicExact", "harmonicTask", "HARMONIC"]

#: The default oscillators: force constants (kJ/mol/nm^2), particles, mass (amu), temperature (K).
HARMONIC = {"k0": 200.0, "k1": 400.0, "particles": 4, "mass": 12.0, "temperature": 300.0}


def harmonicExact(k0=HARMONIC["k0"], k1=HARMONIC["k1"], particles=HARMONIC["particles"]):
    """f(1) - f(0) in kT."""
    return 1.5 * particles * math.log(k1 / k0)


def harmonicLeg(k0=HARMONIC["k0"], k1=HARMONIC["k1"], particles=HARMONIC["particles"], mass=HARMONIC["mass"],
                temperature=HARMONIC["temperature"], linear=True, platform="Reference"):
    """The oscillators as a Leg (Langevin, 2 fs, friction 5/ps)."""
    system = openmm.System()
    # a one-particle CustomCompoundBondForce: it can report dE/dlambda, CustomExternalForce cannot
    force = openmm.CustomCompoundBondForce(1, f"0.5*({k0} + {LAMBDA_PARAMETER}*({k1 - k0}))*(x1*x1 + y1*y1 + z1*z1)")
    force.addGlobalParameter(LAMBDA_PARAMETER, 0.0)
    if linear:
        force.addEnergyParameterDerivative(LAMBDA_PARAMETER)
    for i in range(particles):
        system.addParticle(mass)
        force.addBond([i], [])
    system.addForce(force)
    positions = [openmm.Vec3(0.05 * i, 0, 0) for i in range(particles)] * unit.nanometer
    return Leg(system=system, positions=positions, temperature=temperature * unit.kelvin,
               timestep=2 * unit.femtosecond, friction=5.0 / unit.picosecond, linear=linear, platform=platform)


def harmonicTask(task, lambdas=(0.0, 0.25, 0.5, 0.75, 1.0), samples=400, interval=25, switchSteps=50):
    """One task on :func:`harmonicLeg`: kind 'window' (index = the window) -> u_kn and dudl;
    'forward' or 'reverse' (index = the switch) -> the work, from a snapshot drawn with the
    task's seed."""
    leg = harmonicLeg()
    if task.kind == "window":
        result = sampleWindow(leg, task.index, list(lambdas), 500, samples, interval, seed=task.seed)
        return {"u_kn": result["u_kn"], "dudl": result["dudl"]}
    forward = task.kind == "forward"
    snapshot = sampleEndState(leg, 0.0 if forward else 1.0, 500, 1, 1, seed=task.seed)[0]
    return {"work": np.array([switch(leg, snapshot, forward, switchSteps, seed=task.seed + 1)])}
