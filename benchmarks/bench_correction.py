"""What the ML/MM correction group costs: electrostatic against mechanical embedding.

For the 18-atom p-xylene in water (3,180 atoms) and in the T4L L99A complex (36,309 atoms) this
builds ``openmmhybrid.createMixedSystem(..., 'ani1x', interpolate=False)`` three ways and times
``Context.getState(getEnergy, getForces)`` of the correction's force group alone (the MLForce and
the region's MM terms with the opposite sign: everything ML/MM adds to the MM step), alternating
the Systems in rounds:

  mechanical                 embedding='mechanical'
  electrostatic              embedding='electrostatic' with the default terms (Coulomb coupling
                             and Thole polarization in one pass, pair sums in the model's float32)
  electrostatic, float64     the same with embeddingTerms=['coulomb', 'polarization']: the two
                             terms separately, in float64 (the default before 2026-12-01)

and, with --compiled, the mechanical and the electrostatic System with compile=True (the model and
the embedding terms in one AOTInductor package), plus an empty force group (the fixed cost of a
getState call).  Reports the medians of the paired differences from the empty group in ms and the
ratios electrostatic / mechanical (the target of issue 20: at most 1.3).

Usage: python benchmarks/bench_correction.py [--rounds 100] [--threads 2] [--systems pxylene,complex] [--compiled]
"""
import argparse
import warnings

import numpy as np
import openmm

import openmmhybrid

import common


def correctionGroup(system):
    """The force group of the MLForce (createMixedSystem puts the correction there)."""
    return common.ml_force(system).getForceGroup()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--systems", default="pxylene,complex")
    parser.add_argument("--compiled", action="store_true", help="also the two Systems with compile=True")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    print(f"# bench_correction: the correction group of createMixedSystem('ani1x'), CPU platform, {args.threads} "
          f"threads, embedding cutoff 1 nm, {args.rounds} alternating rounds; ms, median of paired differences from "
          "an empty group")
    print()
    print(common.machine_header())
    print()
    header = ("| System | particles | mechanical (ms) | electrostatic (ms) | electrostatic, float64 terms (ms) | "
              "electrostatic / mechanical | float64 terms / mechanical |")
    if args.compiled:
        header += (" mechanical, compiled (ms) | electrostatic, compiled (ms) | compiled: electrostatic / mechanical | "
                   "electrostatic compiled / mechanical TorchScript |")
    print(header)
    print("|---" * header.count(" | ") + "|---|")
    platform = openmm.Platform.getPlatformByName("CPU")
    for key in args.systems.split(","):
        inputs = common.load(key)
        topology, system, ligand = inputs.topology, inputs.system, inputs.ligand
        built = {
            "mechanical": openmmhybrid.createMixedSystem(topology, system, ligand, "ani1x"),
            "electrostatic": openmmhybrid.createMixedSystem(topology, system, ligand, "ani1x", embedding="electrostatic"),
            "float64": openmmhybrid.createMixedSystem(topology, system, ligand, "ani1x", embedding="electrostatic",
                                                      embeddingTerms=["coulomb", "polarization"]),
        }
        if args.compiled:
            built["mechanical, compiled"] = openmmhybrid.createMixedSystem(topology, system, ligand, "ani1x", compile=True)
            built["electrostatic, compiled"] = openmmhybrid.createMixedSystem(topology, system, ligand, "ani1x",
                                                                               embedding="electrostatic", compile=True)
        calls = {}
        for label, mixed in built.items():
            context = openmm.Context(mixed, openmm.VerletIntegrator(0.001), platform, {"Threads": str(args.threads)})
            context.setPeriodicBoxVectors(*inputs.inpcrd.boxVectors)
            context.setPositions(inputs.inpcrd.positions)
            group = correctionGroup(mixed)
            calls[label] = (lambda c=context, g=group: c.getState(getEnergy=True, getForces=True, groups={g}))
            if label == "mechanical":
                empty = next(g for g in range(32) if all(f.getForceGroup() != g for f in mixed.getForces()))
                calls["empty"] = (lambda c=context, g=empty: c.getState(getEnergy=True, groups={g}))
        for call in calls.values():  # warm up: TorchScript's profiling runs, capacities
            for _ in range(5):
                call()
        times = common.interleaved(calls, args.rounds)
        t = {label: np.array(v) * 1e3 for label, v in times.items()}
        cost = {label: common.paired_median(t[label], t["empty"]) for label in built}
        print(f"| {key} | {system.getNumParticles()} | {cost['mechanical']:.2f} | {cost['electrostatic']:.2f} | "
              f"{cost['float64']:.2f} | {cost['electrostatic'] / cost['mechanical']:.2f} | "
              f"{cost['float64'] / cost['mechanical']:.2f} |" + (
                  f" {cost['mechanical, compiled']:.2f} | {cost['electrostatic, compiled']:.2f} | "
                  f"{cost['electrostatic, compiled'] / cost['mechanical, compiled']:.2f} | "
                  f"{cost['electrostatic, compiled'] / cost['mechanical']:.2f} |" if args.compiled else ""), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
