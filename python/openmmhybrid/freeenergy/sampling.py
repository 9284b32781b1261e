"""Sampling along lambda: equilibrium windows and nonequilibrium switches on one construction.

A :class:`Leg` is an OpenMM System whose potential depends on a global parameter (by default
``lambda_interpolate``, what ``createMixedSystem(..., interpolate=True)`` adds), with its starting
coordinates, temperature and integrator settings.  On it:

- :func:`sampleWindow` runs Langevin dynamics at one lambda and returns the reduced potential of
  every sample in every state of a schedule (the input of MBAR), with dE/dlambda for decorrelation.
- :func:`sampleEndState` returns equilibrium snapshots at lambda = 0 or 1.
- :func:`switch` drives lambda from one end to the other over a number of steps from a snapshot
  and returns the work (the input of BAR and Jarzynski): at each step lambda moves one increment
  at fixed coordinates (the work is the energy change), then the integrator takes a step.

Every function takes a ``seed`` and is deterministic for a given seed, platform and machine.
"""
import math
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
import openmm
import openmm.unit as unit

from ..integrators import MTSLangevinIntegrator, mtsGroups
from ..utils import LAMBDA_PARAMETER
from .estimators import kT

__all__ = ["Leg", "sampleWindow", "sampleEndState", "switch", "checkSchedule", "snapshotArrays", "setSnapshot"]


@dataclass
class Leg:
    """One leg of a free-energy calculation: a System with a lambda parameter and where it starts."""

    #: The System; its potential depends on the global parameter ``parameter``.
    system: openmm.System
    #: Starting positions (and box vectors, or None).
    positions: Any
    box: Optional[Any] = None
    temperature: Any = field(default_factory=lambda: 298.15 * unit.kelvin)
    timestep: Any = field(default_factory=lambda: 2 * unit.femtosecond)
    friction: Any = field(default_factory=lambda: 1.0 / unit.picosecond)
    #: MTS: inner MM steps per outer step, and the force groups on the outer step (None: one step).
    innerSteps: int = 1
    outerGroups: Optional[set] = None
    #: The global parameter that lambda sets.
    parameter: str = LAMBDA_PARAMETER
    #: Whether the energy is linear in lambda with its derivative reported (createMixedSystem's
    #: interpolation): then every state's energy comes from one evaluation.
    linear: bool = True
    #: The force groups whose energy depends on lambda (None: all).  With a linear leg a switch
    #: needs only their dE/dlambda at each step, not the whole System's energy.
    lambdaGroups: Optional[set] = None
    platform: Optional[str] = None
    properties: Optional[dict] = None

    def context(self, lam, seed):
        """A Context at ``lam`` and the starting coordinates, with its integrator."""
        if self.innerSteps > 1:
            integrator = MTSLangevinIntegrator(self.temperature, self.friction, self.timestep,
                                               mtsGroups(self.system, self.outerGroups, self.innerSteps))
        else:
            integrator = openmm.LangevinMiddleIntegrator(self.temperature, self.friction, self.timestep)
        if seed:
            integrator.setRandomNumberSeed(seed)
        args = []
        if self.platform is not None:
            args.append(openmm.Platform.getPlatformByName(self.platform))
            if self.properties:
                args.append(self.properties)
        context = openmm.Context(self.system, integrator, *args)
        if self.box is not None:
            context.setPeriodicBoxVectors(*self.box)
        context.setPositions(self.positions)
        context.setParameter(self.parameter, float(lam))
        return context, integrator

    def energies(self, context, lambdas):
        """The potential energy (kJ/mol) at each lambda, at the Context's coordinates."""
        if self.linear:
            state = context.getState(getEnergy=True, getParameterDerivatives=True)
            slope = state.getEnergyParameterDerivatives()[self.parameter]
            total = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
            base = total - context.getParameter(self.parameter) * slope
            return np.array([base + lam * slope for lam in lambdas])
        current = context.getParameter(self.parameter)
        out = []
        for lam in lambdas:
            context.setParameter(self.parameter, float(lam))
            out.append(context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole))
        context.setParameter(self.parameter, current)
        return np.array(out)


    def slope(self, context):
        """dE/dlambda (kJ/mol) at the Context's coordinates, from the lambda-dependent groups only
        (a linear leg)."""
        if self.lambdaGroups is None:
            state = context.getState(getParameterDerivatives=True)
        else:
            state = context.getState(getParameterDerivatives=True, groups=self.lambdaGroups)
        return state.getEnergyParameterDerivatives()[self.parameter]


def checkSchedule(lambdas):
    """The lambda schedule as floats; ValueError unless it rises from 0 to 1."""
    values = [float(v) for v in lambdas]
    if len(values) < 2 or values[0] != 0.0 or values[-1] != 1.0 or any(b <= a for a, b in zip(values, values[1:])):
        raise ValueError(f"the lambda schedule must rise from 0 to 1 with at least two states, not {values}")
    return values


def sampleWindow(leg, window, lambdas, equilibrationSteps, samples, interval, seed=0, state=None):
    """Sample state ``lambdas[window]`` and evaluate every sample in every state.

    Returns
    -------
    dict
        'u_kn' (K x samples: reduced potentials), 'dudl' (samples: dU/dlambda in kT, from the
        two neighbouring states' difference when not linear), 'lambda', 'seed', and 'state'
        (the final State, to start a neighbouring window from).
    """
    lambdas = checkSchedule(lambdas)
    lam = lambdas[window]
    context, integrator = leg.context(lam, seed)
    if state is not None:
        context.setState(state)
        context.setParameter(leg.parameter, lam)
    else:
        context.setVelocitiesToTemperature(leg.temperature, *([seed] if seed else []))
    beta = 1.0 / kT(leg.temperature)
    integrator.step(int(equilibrationSteps))
    u = np.empty((len(lambdas), int(samples)))
    dudl = np.empty(int(samples))
    for n in range(int(samples)):
        integrator.step(int(interval))
        energies = leg.energies(context, lambdas)
        u[:, n] = beta * energies
        if leg.linear:
            dudl[n] = beta * (energies[-1] - energies[0]) / (lambdas[-1] - lambdas[0])
        else:
            i = min(window, len(lambdas) - 2)
            dudl[n] = beta * (energies[i + 1] - energies[i]) / (lambdas[i + 1] - lambdas[i])
    final = context.getState(getPositions=True, getVelocities=True)
    return {"u_kn": u, "dudl": dudl, "lambda": lam, "seed": seed, "state": final}


def sampleEndState(leg, lam, equilibrationSteps, samples, interval, seed=0):
    """``samples`` equilibrium snapshots (States with positions and velocities) at ``lam``."""
    context, integrator = leg.context(lam, seed)
    context.setVelocitiesToTemperature(leg.temperature, *([seed] if seed else []))
    integrator.step(int(equilibrationSteps))
    snapshots = []
    for _ in range(int(samples)):
        integrator.step(int(interval))
        snapshots.append(context.getState(getPositions=True, getVelocities=True))
    return snapshots


def snapshotArrays(state):
    """A State's positions, velocities (nm, nm/ps) and box (nm) as plain arrays (to store)."""
    arrays = {"positions": np.asarray(state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)),
              "velocities": np.asarray(state.getVelocities(asNumpy=True).value_in_unit(unit.nanometer / unit.picosecond))}
    box = state.getPeriodicBoxVectors(asNumpy=True)
    if box is not None:
        arrays["box"] = np.asarray(box.value_in_unit(unit.nanometer))
    return arrays


def setSnapshot(context, snapshot):
    """Put a snapshot (an openmm.State, or the arrays of :func:`snapshotArrays`) into ``context``."""
    if isinstance(snapshot, openmm.State):
        context.setState(snapshot)
        return
    if "box" in snapshot:
        context.setPeriodicBoxVectors(*[openmm.Vec3(*row) for row in np.asarray(snapshot["box"])])
    context.setPositions(np.asarray(snapshot["positions"]))
    context.setVelocities(np.asarray(snapshot["velocities"]))


def switch(leg, snapshot, forward, steps, seed=0):
    """The work (kT) of switching lambda from 0 to 1 (``forward``) or 1 to 0 over ``steps`` steps,
    starting from ``snapshot`` (a State at the starting end, or its :func:`snapshotArrays`).

    The protocol is lambda_i = i/steps (reversed for the reverse direction): before step i,
    lambda moves from lambda_(i-1) to lambda_i at fixed coordinates, adding the energy change to
    the work; the last increment is followed by no step.  For a linear leg the change is the
    increment times dE/dlambda, evaluated on the leg's ``lambdaGroups`` only."""
    steps = int(steps)
    if steps < 1:
        raise ValueError(f"a switch needs at least one step, not {steps}")
    start, end = (0.0, 1.0) if forward else (1.0, 0.0)
    context, integrator = leg.context(start, seed)
    setSnapshot(context, snapshot)
    context.setParameter(leg.parameter, start)
    beta = 1.0 / kT(leg.temperature)
    work = 0.0
    previous = start
    for i in range(1, steps + 1):
        lam = start + (end - start) * i / steps
        if leg.linear:  # E(lam) - E(previous) = (lam - previous) dE/dlambda, exactly
            work += (lam - previous) * leg.slope(context)
        else:
            energies = leg.energies(context, [previous, lam])
            work += energies[1] - energies[0]
        context.setParameter(leg.parameter, lam)
        previous = lam
        if i < steps:
            integrator.step(1)
    if not math.isfinite(work):
        raise RuntimeError(f"the {'forward' if forward else 'reverse'} switch gave a work of {work}")
    return beta * work
