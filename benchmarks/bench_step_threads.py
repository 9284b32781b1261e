"""What the ML force costs inside a simulation step on the CPU platform, by model thread count.

The T4L L99A + p-xylene complex (36,309 atoms, PME 0.9 nm, HBonds) with ANI-1x on the ligand
(createMixedSystem), LangevinMiddleIntegrator 2 fs, CPU platform.  For each setting of MLForce's
`modelThreads` property (0: torch's own thread count; 1: the CPU platform's default) and each model
format (TorchScript; compiled with compileModel), it times steps of the mixed System and of the
same System without its MLForce (the ligand frozen, as in bench_cuda.py), alternating, and reports the difference per step: what the ML
force really adds to a step.  During a step OpenMM's CPU platform computes PME and the nonbonded
forces on its own threads while the ML force runs, so a model that also wants every core competes
with them.

Usage: python benchmarks/bench_step_threads.py [--steps 60] [--rounds 3] [--no-compiled]
"""
import argparse
import os
import statistics
import time
from datetime import date

import openmm
import openmm.app as app
import openmm.unit as unit
import torch

import openmmhybrid
from openmmhybrid.mixed import createMixedSystem

import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_cuda import without_ml  # noqa: E402  (the same baseline as the GPU benchmark)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "examples", "data", "t4l-l99a-pxylene-water")


def minimized(system, crd):
    """Positions after 200 L-BFGS iterations (the shipped coordinates are not minimized for ANI-1x)."""
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("CPU"))
    context.setPeriodicBoxVectors(*crd.boxVectors)
    context.setPositions(crd.positions)
    openmm.LocalEnergyMinimizer.minimize(context, 10.0, 200)
    return context.getState(getPositions=True).getPositions()


def step_time(system, crd, positions, steps, warmup):
    integrator = openmm.LangevinMiddleIntegrator(300 * unit.kelvin, 1 / unit.picosecond, 0.002 * unit.picoseconds)
    integrator.setRandomNumberSeed(1)
    context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName("CPU"))
    context.setPeriodicBoxVectors(*crd.boxVectors)
    context.setPositions(positions)
    context.setVelocitiesToTemperature(300 * unit.kelvin, 1)
    integrator.step(warmup)
    context.getState(getEnergy=True)
    start = time.perf_counter()
    integrator.step(steps)
    context.getState(getEnergy=True)
    return (time.perf_counter() - start) / steps * 1e3


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-compiled", action="store_true")
    args = parser.parse_args()
    prm = app.AmberPrmtopFile(os.path.join(DATA, "complex.prmtop"))
    crd = app.AmberInpcrdFile(os.path.join(DATA, "complex.inpcrd"))
    system = prm.createSystem(nonbondedMethod=app.PME, nonbondedCutoff=0.9 * unit.nanometer, constraints=app.HBonds)
    ligand = [a.index for a in prm.topology.atoms() if a.residue.name == "TMP"]
    formats = [("TorchScript", False)] + ([] if args.no_compiled else [("compiled", True)])
    print(f"# ML force cost per step on the CPU platform, {date.today()}, {os.cpu_count()} cores, OpenMM "
          f"{openmm.version.version}, torch {torch.__version__} ({torch.get_num_threads()} threads), {args.steps} steps "
          f"after {args.warmup}, {args.rounds} rounds; ms per step, median over rounds")
    print()
    print("| model | modelThreads | step with ML | step without ML | ML force per step |")
    print("|---|---|---:|---:|---:|")
    for label, compile in formats:
        mixed = createMixedSystem(prm.topology, system, ligand, "ani1x", compile=compile)
        index = next(i for i in range(mixed.getNumForces()) if openmmhybrid.MLForce.isinstance(mixed.getForce(i)))
        without = without_ml(mixed, ligand)
        positions = minimized(mixed, crd)
        for threads in ("0", "1"):
            openmmhybrid.MLForce.cast(mixed.getForce(index)).setProperty("modelThreads", threads)
            pairs = [(step_time(mixed, crd, positions, args.steps, args.warmup),
                      step_time(without, crd, positions, args.steps, args.warmup))
                     for _ in range(args.rounds)]
            with_ml = statistics.median(p[0] for p in pairs)
            base = statistics.median(p[1] for p in pairs)
            extra = statistics.median(p[0] - p[1] for p in pairs)
            name = f"{threads} (torch's {torch.get_num_threads()})" if threads == "0" else threads
            print(f"| {label} | {name} | {with_ml:.1f} | {base:.1f} | {extra:.1f} |", flush=True)


if __name__ == "__main__":
    main()
