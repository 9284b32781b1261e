"""A short MM equilibration that leaves a starting state at the thermostat's temperature.

:func:`equilibrate` minimizes, then runs Langevin dynamics with the solute's heavy atoms held by
harmonic restraints that are released in stages, then unrestrained (at constant pressure when a
pressure is given).  The result is an :class:`openmm.State` with positions, velocities and box,
which ``openmm-hybrid run`` starts from without minimizing again.
"""
import math
import time

import openmm
import openmm.unit as unit

from ..utils import degreesOfFreedom, freeForceGroup, mdValue

__all__ = ["equilibrate", "soluteHeavyAtoms", "RESTRAINT_PARAMETER"]

#: The global parameter (kJ/mol/nm^2) of the positional restraints during equilibration.
RESTRAINT_PARAMETER = "openmmhybrid_restraint_k"

_SOLVENT = {"HOH", "WAT", "TIP3", "SOL", "NA", "CL", "K", "MG", "CA", "ZN", "Na+", "Cl-", "K+", "LI", "RB", "CS", "F",
            "BR", "I", "SOD", "CLA", "POT"}


def soluteHeavyAtoms(topology):
    """Indices of the heavy atoms of everything but water and monatomic ions."""
    atoms = []
    for residue in topology.residues():
        residueAtoms = list(residue.atoms())
        if residue.name.upper() in {s.upper() for s in _SOLVENT} or len(residueAtoms) == 1:
            continue
        atoms += [a.index for a in residueAtoms if a.element is not None and a.element.symbol != "H"]
    return atoms


def equilibrate(system, topology, positions, box=None, temperature=300 * unit.kelvin, pressure=None,
                restrainedSteps=5000, releasedSteps=5000, timestep=2 * unit.femtosecond,
                restraint=1000 * unit.kilojoule_per_mole / unit.nanometer ** 2, stages=4,
                minimize=True, minimizeIterations=0, platform=None, properties=None, seed=0, log=print):
    """Minimize, then equilibrate ``system`` with the solute restrained, then released.

    Parameters
    ----------
    system : openmm.System
        The MM System (not changed: a copy gets the restraints and, with a pressure, a barostat).
    topology : openmm.app.Topology
        Which atoms are solute heavy atoms (:func:`soluteHeavyAtoms`).
    positions, box
        Starting coordinates and periodic box vectors (None for a System without a box).
    temperature, pressure : Quantity
        Thermostat temperature; barostat pressure for the unrestrained part (None: constant volume).
    restrainedSteps : int
        Steps with restraints, in ``stages`` stages whose force constants go from ``restraint``
        down to ``restraint / 10**(stages-1)``.
    releasedSteps : int
        Steps with no restraint.
    minimize : bool
        Minimize first, with the full restraint (False: the positions are minimized already).
    minimizeIterations : int
        Minimizer iterations (0: to convergence).
    seed : int
        Seed of the velocities, thermostat and barostat (0: a new one).
    log : callable
        Receives a line after each stage (energy, temperature, volume, time taken).

    Returns
    -------
    (openmm.State, list of dict)
        The final state (positions, velocities, box; no energies), and one row per stage:
        ``stage``, ``steps``, ``restraint`` (kJ/mol/nm^2), ``potential`` (kJ/mol), ``temperature``
        (K), ``volume`` (nm^3 or None), ``seconds``.
    """
    system = openmm.XmlSerializer.clone(system)
    periodic = box is not None
    heavy = soluteHeavyAtoms(topology)
    k0 = mdValue(restraint)
    hasRestraint = bool(heavy)
    restraintGroup = freeForceGroup(system, "the equilibration's restraints") if hasRestraint else None
    if hasRestraint:
        distance = "periodicdistance(x, y, z, x0, y0, z0)" if periodic else "sqrt((x-x0)^2 + (y-y0)^2 + (z-z0)^2)"
        hold = openmm.CustomExternalForce(f"0.5 * {RESTRAINT_PARAMETER} * {distance}^2")
        hold.addGlobalParameter(RESTRAINT_PARAMETER, k0)
        for name in ("x0", "y0", "z0"):
            hold.addPerParticleParameter(name)
        xyz = positions.value_in_unit(unit.nanometer) if unit.is_quantity(positions) else positions
        for i in heavy:
            hold.addParticle(i, [float(xyz[i][0]), float(xyz[i][1]), float(xyz[i][2])])
        hold.setForceGroup(restraintGroup)
        system.addForce(hold)
    barostat = None
    if pressure is not None and periodic and releasedSteps > 0:
        barostat = openmm.MonteCarloBarostat(pressure, temperature, 25)
        barostat.setFrequency(0)  # off while restrained
        if seed:
            barostat.setRandomNumberSeed(seed)
        system.addForce(barostat)
    integrator = openmm.LangevinMiddleIntegrator(temperature, 1.0 / unit.picosecond, timestep)
    if seed:
        integrator.setRandomNumberSeed(seed)
    args = [platform] + ([properties] if properties else []) if platform is not None else []
    context = openmm.Context(system, integrator, *args)
    if periodic:
        context.setPeriodicBoxVectors(*box)
    context.setPositions(positions)
    dof = degreesOfFreedom(system)
    rows = []

    def record(stage, steps, k, seconds):
        state = context.getState(getEnergy=True)
        energy = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
        if hasRestraint:
            energy -= context.getState(getEnergy=True, groups={restraintGroup}).getPotentialEnergy().value_in_unit(
                unit.kilojoule_per_mole)
        kinetic = state.getKineticEnergy().value_in_unit(unit.kilojoule_per_mole)
        temperatureK = 2 * kinetic / (dof * unit.MOLAR_GAS_CONSTANT_R.value_in_unit(
            unit.kilojoule_per_mole / unit.kelvin)) if dof else 0.0
        volume = state.getPeriodicBoxVolume().value_in_unit(unit.nanometer ** 3) if periodic else None
        if not math.isfinite(energy):
            raise RuntimeError(f"equilibration: the energy is {energy} after {stage}; the structure has a clash "
                               "that minimization could not remove")
        rows.append(dict(stage=stage, steps=steps, restraint=k, potential=energy, temperature=temperatureK,
                         volume=volume, seconds=seconds))
        line = (f"  {stage}: {steps} steps, restraint {k:g} kJ/mol/nm^2, MM energy {energy:,.0f} kJ/mol, "
                f"{temperatureK:.1f} K")
        if volume is not None:
            line += f", volume {volume:.2f} nm^3"
        log(line + f" ({seconds:.0f} s)")

    if minimize:
        start = time.perf_counter()
        openmm.LocalEnergyMinimizer.minimize(context, 10.0, minimizeIterations)
        record("minimized", 0, k0 if hasRestraint else 0.0, time.perf_counter() - start)
    context.setVelocitiesToTemperature(temperature, *([seed] if seed else []))
    if hasRestraint and restrainedSteps > 0:
        perStage = [restrainedSteps // stages + (1 if i < restrainedSteps % stages else 0) for i in range(stages)]
        for i, steps in enumerate(perStage):
            k = k0 / 10 ** i
            context.setParameter(RESTRAINT_PARAMETER, k)
            start = time.perf_counter()
            integrator.step(steps)
            record(f"restrained {i + 1}/{stages}", steps, k, time.perf_counter() - start)
    elif restrainedSteps > 0:
        releasedSteps += restrainedSteps
    if hasRestraint:
        context.setParameter(RESTRAINT_PARAMETER, 0.0)
    if releasedSteps > 0:
        if barostat is not None:
            barostat.setFrequency(25)
            context.reinitialize(preserveState=True)
        start = time.perf_counter()
        integrator.step(releasedSteps)
        record("released", releasedSteps, 0.0, time.perf_counter() - start)
    state = context.getState(getPositions=True, getVelocities=True)
    return state, rows
