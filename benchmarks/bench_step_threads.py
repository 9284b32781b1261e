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
import statistics

import openmm
import openmm.unit as unit
import torch

import openmmhybrid

import common


def step_time(system, crd, positions, steps, warmup):
    integrator = openmm.LangevinMiddleIntegrator(300 * unit.kelvin, 1 / unit.picosecond, 0.002 * unit.picoseconds)
    integrator.setRandomNumberSeed(1)
    seconds, _ = common.time_steps(system, integrator, openmm.Platform.getPlatformByName("CPU"), crd.boxVectors, positions,
                                   steps, warmup)
    return seconds * 1e3


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-compiled", action="store_true")
    args = parser.parse_args()
    inputs = common.load("complex")
    crd, system, ligand = inputs.inpcrd, inputs.system, inputs.ligand
    formats = [("TorchScript", False)] + ([] if args.no_compiled else [("compiled", True)])
    print(f"# ML force cost per step on the CPU platform, {args.steps} steps after {args.warmup}, {args.rounds} rounds; "
          "ms per step, median over rounds")
    print()
    print(common.machine_header())
    print()
    print("| model | modelThreads | step with ML | step without ML | ML force per step |")
    print("|---|---|---:|---:|---:|")
    for label, compile in formats:
        mixed = openmmhybrid.createMixedSystem(inputs.topology, system, ligand, "ani1x", compile=compile)
        without = common.without_ml(mixed, ligand)  # the same baseline as the GPU benchmark
        positions = common.minimized(mixed, crd.boxVectors, crd.positions, openmm.Platform.getPlatformByName("CPU"))
        for threads in ("0", "1"):
            common.ml_force(mixed).setProperty("modelThreads", threads)
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
