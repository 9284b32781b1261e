"""Steps per second: openmmhybrid.MTSLangevinIntegrator against openmm.MTSLangevinIntegrator.

ML/MM Systems from createMixedSystem (p-xylene = ANI-1x, the rest MM: PME 0.9 nm, HBonds), with
the ML correction on the outer step and every MM group on the inner steps, the same groups and
substeps for both integrators (from openmmhybrid.mtsGroups):

  pxylene   p-xylene in water, 3,180 atoms
  complex   T4 lysozyme L99A + p-xylene in water, 36,309 atoms

Both integrators run in the same process, interleaved in blocks, so drift on a shared machine hits
both alike.  Also counts the model calls per step of each.  Reports the median (and best) steps
per second, ns/day and the ratio native / OpenMM.

Usage: python benchmarks/bench_mts.py [--systems pxylene complex] [--platform CPU]
           [--dt 4] [--inner 4] [--blocks 5] [--steps N]
"""
import argparse
import os
import platform as host
import statistics
import sys
import time
from datetime import date

import openmm
import openmm.app as app
import openmm.unit as unit
import torch

import openmmhybrid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "examples", "data")
SYSTEMS = {
    "pxylene": ("pxylene-water", "pxylene_water.prmtop", "pxylene_water.inpcrd", 20),
    "complex": ("t4l-l99a-pxylene-water", "complex.prmtop", "complex.inpcrd", 4),
}


def load(name):
    folder, prmtop, inpcrd, steps = SYSTEMS[name]
    prm = app.AmberPrmtopFile(os.path.join(DATA, folder, prmtop))
    crd = app.AmberInpcrdFile(os.path.join(DATA, folder, inpcrd))
    system = prm.createSystem(nonbondedMethod=app.PME, nonbondedCutoff=0.9 * unit.nanometer, constraints=app.HBonds)
    atoms = openmmhybrid.selectAtoms(prm.topology, residueName="TMP")
    mixed = openmmhybrid.createMixedSystem(prm.topology, system, atoms, "ani1x")
    return prm, crd, mixed, steps


def ml_force(system):
    return next(openmmhybrid.MLForce.cast(f) for f in system.getForces() if openmmhybrid.MLForce.isinstance(f))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=list(SYSTEMS))
    parser.add_argument("--platform", default="CPU")
    parser.add_argument("--dt", type=float, default=4.0, help="outer step in fs (default 4)")
    parser.add_argument("--inner", type=int, default=4, help="MM steps per outer step (default 4)")
    parser.add_argument("--blocks", type=int, default=5)
    parser.add_argument("--steps", type=int, default=None, help="outer steps per block (default: per system)")
    args = parser.parse_args()
    platform = openmm.Platform.getPlatformByName(args.platform)
    dt = args.dt * unit.femtoseconds
    print(f"# MTS integrators, {date.today()}, {host.node()} ({os.cpu_count()} cores), OpenMM {openmm.version.version}, "
          f"torch {torch.__version__}, platform {args.platform}; outer step {args.dt} fs (ANI-1x correction), "
          f"{args.inner} MM steps of {args.dt / args.inner:g} fs; Langevin 300 K, 1/ps; {args.blocks} blocks, interleaved")
    print()
    print("| System | integrator | outer steps/s (median / best) | ns/day | model calls/step | native / OpenMM |")
    print("|---|---|---|---|---|---|")
    for name in args.systems:
        prm, crd, mixed, default_steps = load(name)
        steps = args.steps or default_steps
        groups = openmmhybrid.mtsGroups(mixed, ml_force(mixed).getForceGroup(), args.inner)
        runs = {}
        for label, cls in (("openmm.MTSLangevinIntegrator", openmm.MTSLangevinIntegrator),
                           ("openmmhybrid.MTSLangevinIntegrator", openmmhybrid.MTSLangevinIntegrator)):
            integrator = cls(300 * unit.kelvin, 1 / unit.picosecond, dt, groups)
            context = openmm.Context(mixed, integrator, platform)
            context.setPeriodicBoxVectors(*crd.boxVectors)
            context.setPositions(crd.positions)
            context.setVelocitiesToTemperature(300 * unit.kelvin, 1)
            integrator.step(2)
            runs[label] = (context, integrator, [], [])
        for _ in range(args.blocks):
            for label, (context, integrator, rates, calls) in runs.items():
                before = ml_force(mixed).getNumModelCalls(context)
                start = time.perf_counter()
                integrator.step(steps)
                elapsed = time.perf_counter() - start
                rates.append(steps / elapsed)
                calls.append((ml_force(mixed).getNumModelCalls(context) - before) / steps)
        theirs = statistics.median(runs["openmm.MTSLangevinIntegrator"][2])
        for label, (context, integrator, rates, calls) in runs.items():
            rate = statistics.median(rates)
            ns_day = rate * args.dt * 1e-6 * 86400
            print(f"| {name} ({mixed.getNumParticles():,} atoms) | {label} | {rate:.2f} / {max(rates):.2f} | {ns_day:.3f} | "
                  f"{statistics.mean(calls):.2f} | {rate / theirs:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
