"""Make the equilibrated starting state of the demo (`make demo`, examples/configs/t4l_pxylene.toml).

The T4 lysozyme L99A / p-xylene / water system in examples/data/t4l-l99a-pxylene-water/ is a
minimized structure with no velocities: a run that starts from it spends its first picoseconds
heating up (272 K -> 300 K) and its MM energy climbs by ~17,000 kJ/mol.  This script runs a short
MM equilibration once and ships the result, so the demo starts at 300 K and stays stationary.

What it does:

1. loads complex.prmtop/complex.inpcrd and builds the same MM System as the demo config (PME,
   0.9 nm cutoff, HBonds constraints, rigid water);
2. calls :func:`openmmhybrid.prepare.equilibrate.equilibrate`: minimization (500 iterations, solute
   heavy atoms restrained), Langevin dynamics at 300 K (2 fs, friction 1/ps) with the solute's
   heavy atoms held by restraints released in 4 stages (1000 -> 1 kJ/mol/nm^2), then unrestrained
   at 1 bar (Monte Carlo barostat every 25 steps), all with a fixed seed;
3. writes the final positions (A), velocities and box as an Amber ASCII restart,
   ``complex_equilibrated.rst7``, reads it back with ``openmm.app.AmberInpcrdFile`` and checks
   the positions, velocities and box against the State (to 1e-4 relative);
4. prints a table of the stages (MM energy without restraints, temperature, volume, wall time).

The demo runs at constant volume in the box written here (the box of the last NPT step).

The shipped file was made on 2026-12-01 (OpenMM 8.6.1, CPU platform, 2 cores) with

    python examples/equilibrate_t4l.py --restrained-ps 20 --released-ps 40 --seed 2026 --threads 2

It took 39.7 minutes: 2.2 ns/day of MM dynamics on that shared machine (3.7 ns/day when nothing
else runs, i.e. about 25 minutes).  Its stages (MM energy without the restraints):

| stage | steps | ps | restraint (kJ/mol/nm^2) | MM energy (kJ/mol) | T (K) | volume (nm^3) | wall (s) |
|---|---|---|---|---|---|---|---|
| minimized | 0 | 0 | 1000 | -611,343 | 0.0 | 382.68 | 34 |
| restrained 1/4 | 2500 | 5 | 1000 | -497,254 | 298.2 | 382.68 | 151 |
| restrained 2/4 | 2500 | 5 | 100 | -494,930 | 302.0 | 382.68 | 232 |
| restrained 3/4 | 2500 | 5 | 10 | -494,721 | 300.0 | 382.68 | 220 |
| restrained 4/4 | 2500 | 5 | 1 | -495,111 | 300.1 | 382.68 | 131 |
| released | 20000 | 40 | 0 | -499,426 | 302.1 | 364.50 | 1610 |

The box shrank by 4.8% (density 0.965 -> 1.013 g/cm^3).  With CUDA (``--platform CUDA``; not
measured) it should take a minute or two; the result then differs in its random numbers, not in kind.

Amber restart units: coordinates in A, box lengths in A, velocities in A per (1/20.455) ps;
ParmEd's ``Rst7.vels`` takes A/ps and does the scaling when it writes.
"""
import argparse
import os
import sys
import time

import numpy as np
import openmm
import openmm.app as app
import openmm.unit as unit
import parmed

from openmmhybrid.prepare.equilibrate import equilibrate

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "data", "t4l-l99a-pxylene-water")
TEMPERATURE = 300 * unit.kelvin
PRESSURE = 1 * unit.bar
TIMESTEP = 2 * unit.femtosecond


def buildSystem(prmtop):
    """The demo's MM System (examples/configs/t4l_pxylene.toml: PME, 0.9 nm, HBonds, rigid water)."""
    return prmtop.createSystem(nonbondedMethod=app.PME, nonbondedCutoff=0.9 * unit.nanometer,
                               constraints=app.HBonds, rigidWater=True)


def writeRst7(path, state, title):
    """Write ``state``'s positions, velocities and (rectangular) box as an ASCII Amber restart."""
    positions = state.getPositions(asNumpy=True).value_in_unit(unit.angstrom)
    velocities = state.getVelocities(asNumpy=True).value_in_unit(unit.angstrom / unit.picosecond)
    a, b, c = (v.value_in_unit(unit.angstrom) for v in state.getPeriodicBoxVectors())
    lengths = [float(np.linalg.norm(v)) for v in (a, b, c)]
    angles = [float(np.degrees(np.arccos(np.dot(x, y) / (np.linalg.norm(x) * np.linalg.norm(y)))))
              for x, y in ((b, c), (a, c), (a, b))]
    if np.abs(positions).max() >= 999.0:
        raise ValueError("a coordinate does not fit the rst7 format (%12.7f)")
    rst7 = parmed.amber.Rst7(natom=len(positions), title=title[:80])
    rst7.coordinates = positions.reshape(-1)
    rst7.vels = velocities.reshape(-1)  # A/ps: ParmEd divides by 20.455 when it writes
    rst7.box = lengths + angles
    rst7.time = state.getTime().value_in_unit(unit.picosecond)
    rst7.write(path)


def checkRst7(path, state, tolerance=1e-4):
    """Read ``path`` back with OpenMM's reader; the largest deviations, relative to each quantity's
    largest magnitude; raises if any exceeds ``tolerance``."""
    inpcrd = app.AmberInpcrdFile(path)
    if inpcrd.velocities is None or inpcrd.boxVectors is None:
        raise RuntimeError(f"{path} has no velocities or no box")
    pairs = {
        "positions": (inpcrd.getPositions(asNumpy=True).value_in_unit(unit.nanometer),
                      state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)),
        "velocities": (inpcrd.getVelocities(asNumpy=True).value_in_unit(unit.nanometer / unit.picosecond),
                       state.getVelocities(asNumpy=True).value_in_unit(unit.nanometer / unit.picosecond)),
        "box": (np.array([v.value_in_unit(unit.nanometer) for v in inpcrd.getBoxVectors()]),
                np.array([v.value_in_unit(unit.nanometer) for v in state.getPeriodicBoxVectors()])),
    }
    deviations = {}
    for name, (read, written) in pairs.items():
        deviations[name] = float(np.abs(read - written).max() / np.abs(written).max())
        if not deviations[name] <= tolerance:
            raise RuntimeError(f"{path}: the {name} read back differ by {deviations[name]:.1e} (relative)")
    return deviations


def stageTable(rows):
    """The rows of :func:`equilibrate` as a Markdown table."""
    lines = ["| stage | steps | ps | restraint (kJ/mol/nm^2) | MM energy (kJ/mol) | T (K) | volume (nm^3) | wall (s) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        volume = f"{r['volume']:.2f}" if r["volume"] is not None else "-"
        lines.append(f"| {r['stage']} | {r['steps']} | {r['steps'] * TIMESTEP.value_in_unit(unit.picosecond):g} | "
                     f"{r['restraint']:g} | {r['potential']:,.0f} | {r['temperature']:.1f} | {volume} | "
                     f"{r['seconds']:.0f} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(DATA, "complex_equilibrated.rst7"),
                        help="the restart file to write (default: %(default)s)")
    parser.add_argument("--restrained-ps", type=float, default=20.0,
                        help="ps with the solute's heavy atoms restrained, in 4 stages (default: %(default)s)")
    parser.add_argument("--released-ps", type=float, default=40.0,
                        help="ps unrestrained at 1 bar (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=2026, help="random seed, > 0 (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=2, help="CPU platform threads (default: %(default)s)")
    parser.add_argument("--platform", default="CPU", help="OpenMM platform (default: %(default)s)")
    parser.add_argument("--minimize-iterations", type=int, default=500,
                        help="minimizer iterations before the dynamics (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.seed <= 0:
        parser.error("--seed must be > 0 (a fixed seed makes the file reproducible)")

    prmtop = app.AmberPrmtopFile(os.path.join(DATA, "complex.prmtop"))
    inpcrd = app.AmberInpcrdFile(os.path.join(DATA, "complex.inpcrd"))
    system = buildSystem(prmtop)
    platform = openmm.Platform.getPlatformByName(args.platform)
    properties = {"Threads": str(args.threads)} if args.platform == "CPU" else None
    steps = lambda ps: int(round(ps / TIMESTEP.value_in_unit(unit.picosecond)))  # noqa: E731
    restrained, released = steps(args.restrained_ps), steps(args.released_ps)
    print(f"equilibrate_t4l: {system.getNumParticles()} atoms, {args.platform}"
          f"{f' ({args.threads} threads)' if properties else ''}; {restrained} steps restrained + {released} "
          f"released at 2 fs, {TEMPERATURE}, {PRESSURE}, seed {args.seed}", flush=True)

    start = time.perf_counter()
    state, rows = equilibrate(system, prmtop.topology, inpcrd.positions, inpcrd.boxVectors,
                              temperature=TEMPERATURE, pressure=PRESSURE, restrainedSteps=restrained,
                              releasedSteps=released, timestep=TIMESTEP, stages=4,
                              minimizeIterations=args.minimize_iterations, platform=platform,
                              properties=properties, seed=args.seed, log=lambda line: print(line, flush=True))
    wall = time.perf_counter() - start
    dynamics = sum(r["seconds"] for r in rows if r["steps"])
    nsPerDay = (restrained + released) * TIMESTEP.value_in_unit(unit.nanosecond) / dynamics * 86400 if dynamics else 0

    title = (f"T4L L99A p-xylene: {args.restrained_ps:g}+{args.released_ps:g} ps MM equilibration, 300 K, 1 bar, "
             f"seed {args.seed}")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    writeRst7(args.out, state, title)
    deviations = checkRst7(args.out, state)

    print()
    print(stageTable(rows))
    print()
    print(f"wall time {wall:.0f} s ({wall / 60:.1f} min); dynamics {nsPerDay:.2f} ns/day")
    print("read back with AmberInpcrdFile: largest relative deviation "
          + ", ".join(f"{k} {v:.1e}" for k, v in deviations.items()))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
