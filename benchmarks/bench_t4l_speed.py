"""ns/day of the T4L L99A + p-xylene complex on the CPU platform: MM, ML/MM with each model path and
integrator, and openmm-ml's PythonForce path, in one run.

The complex: 36,309 atoms, PME 0.9 nm, HBonds, ANI-1x on the 18 ligand atoms (mechanical
embedding), Langevin at 300 K with 1/ps friction, from the same minimized positions.  Runs, each
in a fresh Context and interleaved over rounds (so drift on a shared machine hits all alike):

  MM                      the MM System, LangevinMiddleIntegrator 2 fs
  ML/MM TorchScript       createMixedSystem(..., "ani1x"), LangevinMiddleIntegrator 2 fs
  ML/MM compiled          the same with compile=True (AOTInductor)
  ML/MM MTS TorchScript   MTSLangevinIntegrator: ML every 4 fs, MM every 2 fs (inner_steps = 2)
  ML/MM MTS compiled      the same, compiled
  openmm-ml PythonForce   openmm-ml 1.8's createMixedSystem with its ANI coupling: torchani's model
                          called from a PythonForce through openmm-ml's own compute function
                          (openmmml.models.anipotential._computeANI).  openmm-ml 1.8 has no
                          'ani1x' name and torchani 2.2.4 ships no ANI-1ccx weights, so the
                          potential is registered here as openmm-ml's ANI implementation with
                          torchani's ANI-1x; LangevinMiddleIntegrator 2 fs

and, only when named in --runs (the experiment on why a compiled model once ran slower than
TorchScript inside a step):
  ML/MM TorchScript (2 model threads)    ML/MM TorchScript with the MLForce's modelThreads = 2
  ML/MM compiled (2 model threads)       the same compiled (the package's OpenMP runtime on 2 threads)
Prints ns/day (median and best over rounds) and the ratios to MM and to the openmm-ml path.

Usage: python benchmarks/bench_t4l_speed.py [--steps 40] [--warmup 10] [--rounds 3] [--runs NAMES]
"""
import argparse
import statistics
import time

import openmm
import openmm.unit as unit

import openmmhybrid

import common

TEMPERATURE = 300 * unit.kelvin
FRICTION = 1 / unit.picosecond


def langevin(step):
    integrator = openmm.LangevinMiddleIntegrator(TEMPERATURE, FRICTION, step)
    integrator.setRandomNumberSeed(1)
    return integrator


def mts(system, outer, inner):
    correction = next(f.getForceGroup() for f in system.getForces() if openmmhybrid.MLForce.isinstance(f))
    groups = openmmhybrid.mtsGroups(system, correction, inner)
    integrator = openmmhybrid.MTSLangevinIntegrator(TEMPERATURE, FRICTION, outer, groups)
    integrator.setRandomNumberSeed(1)
    return integrator


def openmm_ml_system(inputs):
    """openmm-ml's mechanical embedding with its PythonForce ANI coupling, for torchani's ANI-1x."""
    import functools
    import torch
    from openmmhybrid.models.ani import torchaniANI1x
    from openmmml.mlpotential import MLPotential, MLPotentialImplFactory
    from openmmml.models import anipotential

    class PeerANI1x(anipotential.ANIPotentialImpl):
        def addForces(self, topology, system, atoms, forceGroup, **args):
            # openmm-ml 1.8's ANIPotentialImpl.addForces, with torchani's ANI-1x as the model.
            # torchani's own ANI-1x pipeline from the weights torchani 2.2.4 ships
            # (torchani.models.ANI1x() would try to download its model zoo).
            model = torchaniANI1x(periodicTableIndex=True)
            included = [list(topology.atoms())[i] for i in atoms]
            species = torch.tensor([[atom.element.atomic_number for atom in included]])
            pbc = torch.tensor([True, True, True], dtype=torch.bool) if system.usesPeriodicBoundaryConditions() else None
            force = openmm.PythonForce(functools.partial(anipotential._computeANI, model=model, species=species, pbc=pbc))
            force.setForceGroup(forceGroup)
            force.setUsesPeriodicBoundaryConditions(system.usesPeriodicBoundaryConditions())
            force.setParticles(atoms)
            system.addForce(force)

    class Factory(MLPotentialImplFactory):
        def createImpl(self, name, **args):
            return PeerANI1x(name)

    MLPotential.registerImplFactory("bench-peer-ani1x", Factory())
    return MLPotential("bench-peer-ani1x").createMixedSystem(inputs.topology, inputs.system, inputs.ligand)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=40, help="timed integrator steps per run")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", default=None, help="comma-separated subset of the run names (default: all)")
    args = parser.parse_args()
    inputs = common.load("complex")
    crd = inputs.inpcrd
    cpu = openmm.Platform.getPlatformByName("CPU")
    two, four = 0.002 * unit.picoseconds, 0.004 * unit.picoseconds

    start = time.perf_counter()
    mixed = openmmhybrid.createMixedSystem(inputs.topology, inputs.system, inputs.ligand, "ani1x")
    compiled = openmmhybrid.createMixedSystem(inputs.topology, inputs.system, inputs.ligand, "ani1x", compile=True)
    setup = time.perf_counter() - start
    runs = {
        "MM": (inputs.system, lambda: langevin(two), two),
        "ML/MM TorchScript": (mixed, lambda: langevin(two), two),
        "ML/MM compiled": (compiled, lambda: langevin(two), two),
        "ML/MM MTS TorchScript": (mixed, lambda: mts(mixed, four, 2), four),
        "ML/MM MTS compiled": (compiled, lambda: mts(compiled, four, 2), four),
    }
    extra = {}
    for name, system in (("ML/MM TorchScript (2 model threads)", mixed), ("ML/MM compiled (2 model threads)", compiled)):
        threaded = openmm.XmlSerializer.clone(system)
        common.ml_force(threaded).setProperty("modelThreads", "2")
        extra[name] = (threaded, lambda: langevin(two), two)
    try:
        runs["openmm-ml PythonForce"] = (openmm_ml_system(inputs), lambda: langevin(two), two)
    except Exception as error:  # noqa: BLE001 - the peer is optional; say why it is missing
        print(f"openmm-ml path left out: {str(error).splitlines()[0]}")
    if args.runs:
        wanted = [name.strip() for name in args.runs.split(",")]
        runs = {name: {**runs, **extra}[name] for name in wanted}
    positions = common.minimized(mixed, crd.boxVectors, crd.positions, cpu)
    results = {name: [] for name in runs}
    for _ in range(args.rounds):
        for name, (system, integrator, step) in runs.items():
            if system.getNumParticles() > len(positions):  # openmm-ml's extra particles (none here: no cut bonds)
                raise RuntimeError(f"{name}: the System has particles the positions lack")
            seconds, _ = common.time_steps(system, integrator(), cpu, crd.boxVectors, positions, args.steps, args.warmup)
            results[name].append(step.value_in_unit(unit.nanoseconds) * 86400.0 / seconds)
    print(f"# T4L L99A + p-xylene (36,309 atoms), CPU platform: ns/day, {args.steps} steps after {args.warmup}, "
          f"{args.rounds} rounds; median / best")
    print()
    print(common.machine_header())
    print()
    print(f"Set-up of the two mixed Systems (the compiled one includes compiling): {setup:.0f} s")
    print()
    print("| run | ns/day | / MM | / openmm-ml |")
    print("|---|---:|---:|---:|")
    median = {name: statistics.median(values) for name, values in results.items()}
    peer = median.get("openmm-ml PythonForce")
    for name, values in results.items():
        to_mm = f"{median[name] / median['MM']:.2f}x" if "MM" in median else "n/a"
        to_peer = f"{median[name] / peer:.2f}x" if peer else "n/a"
        print(f"| {name} | {median[name]:.2f} / {max(values):.2f} | {to_mm} | {to_peer} |")


if __name__ == "__main__":
    main()
