"""Cost of one MD step of a mixed ML/MM System: interpolate=True against interpolate=False.

p-xylene (18 atoms, the ML region) in 1,054 TIP3P waters: PME 0.9 nm, HBonds,
LangevinMiddleIntegrator 2 fs, CPU platform.  Times, in the same run and interleaved in blocks
(so drift on a shared machine hits all alike):

  MM                     the MM System alone
  ML/MM                  openmmhybrid.createMixedSystem(..., interpolate=False)
  ML/MM, lambda          openmmhybrid.createMixedSystem(..., interpolate=True), lambda = 0.5
  openmm-ml, lambda      openmm-ml's createMixedSystem(interpolate=True) with the same model
                         (its CustomCVForce construction; the model is our MLForce, registered
                         through MLPotential.registerImplFactory), if openmmml is installed

Reports ms per step (median and min over blocks) and the ratio lambda / no lambda.

Usage: python benchmarks/bench_mixed_step.py [--model ani1x] [--blocks 10] [--steps 50]
"""
import argparse
import statistics
import sys

import openmm
import openmm.unit as unit

import openmmhybrid

import common


def openmm_ml_system(topology, system, atoms, model):
    from openmmml.mlpotential import MLPotential, MLPotentialImpl, MLPotentialImplFactory

    class Impl(MLPotentialImpl):
        def addForces(self, topology, system, atoms, forceGroup, **args):
            force = openmmhybrid.MLForce(model, list(atoms))
            force.setUsesPeriodicBoundaryConditions(system.usesPeriodicBoundaryConditions())
            force.setForceGroup(forceGroup)
            system.addForce(force)

    class Factory(MLPotentialImplFactory):
        def createImpl(self, name, **args):
            return Impl()

    MLPotential.registerImplFactory("openmmhybrid-bench", Factory())
    return MLPotential("openmmhybrid-bench").createMixedSystem(topology, system, atoms, interpolate=True,
                                                                removeConstraints=False, mlLongRange=False)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="ani1x")
    parser.add_argument("--blocks", type=int, default=10)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--platform", default="CPU")
    args = parser.parse_args()
    inputs = common.load("pxylene")
    prm, crd, system, atoms = inputs.prmtop, inputs.inpcrd, inputs.system, inputs.ligand
    model = openmmhybrid.models.createModel(args.model, prm.topology, atoms)
    systems = {"MM": system,
               "ML/MM": openmmhybrid.createMixedSystem(prm.topology, system, atoms, model),
               "ML/MM, lambda": openmmhybrid.createMixedSystem(prm.topology, system, atoms, model, interpolate=True)}
    try:
        systems["openmm-ml, lambda"] = openmm_ml_system(prm.topology, system, atoms, model)
    except ImportError:
        pass
    platform = openmm.Platform.getPlatformByName(args.platform)
    contexts = {}
    for name, s in systems.items():
        integrator = openmm.LangevinMiddleIntegrator(300 * unit.kelvin, 1 / unit.picosecond, 2 * unit.femtosecond)
        integrator.setRandomNumberSeed(1)
        context = common.make_context(s, integrator, platform, crd.boxVectors, crd.positions)
        if "lambda" in name:
            context.setParameter("lambda_interpolate", 0.5)
        integrator.step(10)
        contexts[name] = (context, integrator)

    def block(context, integrator):
        return lambda: (integrator.step(args.steps), context.getState(getEnergy=True))

    seconds = common.interleaved({name: block(*run) for name, run in contexts.items()}, args.blocks,
                                 before=lambda name, i: contexts[name][0].getState(getEnergy=True))
    times = {name: [t / args.steps * 1e3 for t in samples] for name, samples in seconds.items()}
    print(f"# Step cost, platform {args.platform}; model {args.model}; "
          f"p-xylene in water (3,180 atoms), PME 0.9 nm, HBonds, LangevinMiddle 2 fs; "
          f"{args.blocks} blocks of {args.steps} steps, interleaved; ms per step, median / min")
    print()
    print(common.machine_header())
    print()
    print("| System | ms/step | relative to ML/MM without lambda |")
    print("|---|---|---|")
    base = statistics.median(times["ML/MM"])
    for name, t in times.items():
        print(f"| {name} | {statistics.median(t):.2f} / {min(t):.2f} | {statistics.median(t) / base:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
