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
import statistics
import sys

import openmm
import openmm.unit as unit

import openmmhybrid

import common

SYSTEMS = {"pxylene": 20, "complex": 4}  # common.load's name: outer steps per block by default


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
    print(f"# MTS integrators, platform {args.platform}; outer step {args.dt} fs (ANI-1x correction), "
          f"{args.inner} MM steps of {args.dt / args.inner:g} fs; Langevin 300 K, 1/ps; {args.blocks} blocks, interleaved")
    print()
    print(common.machine_header())
    print()
    print("| System | integrator | outer steps/s (median / best) | ns/day | model calls/step | native / OpenMM |")
    print("|---|---|---|---|---|---|")
    for name in args.systems:
        inputs = common.load(name)
        crd = inputs.inpcrd
        mixed = openmmhybrid.createMixedSystem(inputs.topology, inputs.system, inputs.ligand, "ani1x")
        steps = args.steps or SYSTEMS[name]
        ml = common.ml_force(mixed)
        groups = openmmhybrid.mtsGroups(mixed, ml.getForceGroup(), args.inner)
        runs = {}
        for label, cls in (("openmm.MTSLangevinIntegrator", openmm.MTSLangevinIntegrator),
                           ("openmmhybrid.MTSLangevinIntegrator", openmmhybrid.MTSLangevinIntegrator)):
            integrator = cls(300 * unit.kelvin, 1 / unit.picosecond, dt, groups)
            context = common.make_context(mixed, integrator, platform, crd.boxVectors, crd.positions)
            integrator.step(2)
            runs[label] = (context, integrator)
        before = {label: ml.getNumModelCalls(context) for label, (context, _) in runs.items()}
        seconds = common.interleaved({label: (lambda i=integrator: i.step(steps)) for label, (_, integrator) in runs.items()},
                                     args.blocks)
        theirs = statistics.median(steps / t for t in seconds["openmm.MTSLangevinIntegrator"])
        for label, (context, integrator) in runs.items():
            rates = [steps / t for t in seconds[label]]
            # The mean over blocks of the model calls per step (every block has the same steps).
            calls = (ml.getNumModelCalls(context) - before[label]) / (args.blocks * steps)
            rate = statistics.median(rates)
            ns_day = rate * args.dt * 1e-6 * 86400
            print(f"| {name} ({mixed.getNumParticles():,} atoms) | {label} | {rate:.2f} / {max(rates):.2f} | {ns_day:.3f} | "
                  f"{calls:.2f} | {rate / theirs:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
