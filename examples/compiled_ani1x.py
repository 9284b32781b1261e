"""ANI-1x p-xylene in water with the model compiled ahead of time (AOTInductor), against the same
model as TorchScript.

It builds the ML/MM System twice with createMixedSystem, once as TorchScript and once with
compile=True. Compiling traces ANI-1x's energy, forces and dE/dlambda into native code. The script
checks that both Systems give the same energy, forces and dE/dlambda, then times the ML force's
group alone and full steps.

Usage: python examples/compiled_ani1x.py [--steps 200] [--platform CPU]
"""
import argparse
import os
import time

import numpy as np
import openmm
import openmm.app as app
import openmm.unit as unit

from openmmhybrid import LAMBDA_PARAMETER, MLForce, createMixedSystem

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "data", "pxylene-water")
KJ = unit.kilojoule_per_mole


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--platform", default="CPU", choices=["Reference", "CPU"])
    args = parser.parse_args()

    prm = app.AmberPrmtopFile(os.path.join(DATA, "pxylene_water.prmtop"))
    crd = app.AmberInpcrdFile(os.path.join(DATA, "pxylene_water.inpcrd"))
    system = prm.createSystem(nonbondedMethod=app.PME, nonbondedCutoff=0.9 * unit.nanometer, constraints=app.HBonds)
    ligand = [a.index for a in prm.topology.atoms() if a.residue.name == "TMP"]
    platform = openmm.Platform.getPlatformByName(args.platform)

    results = {}
    for label, compile in (("TorchScript", False), ("compiled", True)):
        start = time.perf_counter()
        mixed = createMixedSystem(prm.topology, system, ligand, "ani1x", interpolate=True, correctionGroup=1, compile=compile)
        setup = time.perf_counter() - start
        group = next(f.getForceGroup() for f in mixed.getForces() if MLForce.isinstance(f))
        integrator = openmm.LangevinMiddleIntegrator(300 * unit.kelvin, 1 / unit.picosecond, 0.002 * unit.picoseconds)
        integrator.setRandomNumberSeed(1)
        context = openmm.Context(mixed, integrator, platform)
        context.setPeriodicBoxVectors(*crd.boxVectors)
        context.setPositions(crd.positions)
        state = context.getState(getEnergy=True, getForces=True, getParameterDerivatives=True)
        energy = state.getPotentialEnergy().value_in_unit(KJ)
        forces = state.getForces(asNumpy=True).value_in_unit(KJ / unit.nanometer)
        dlambda = state.getEnergyParameterDerivatives()[LAMBDA_PARAMETER]
        # The ML force's group alone, repeated.
        for _ in range(5):
            context.getState(getForces=True, groups={group})
        start = time.perf_counter()
        for _ in range(50):
            context.getState(getForces=True, groups={group})
        group_ms = (time.perf_counter() - start) / 50 * 1e3
        integrator.step(10)
        start = time.perf_counter()
        integrator.step(args.steps)
        context.getState(getEnergy=True)
        step_ms = (time.perf_counter() - start) / args.steps * 1e3
        results[label] = (energy, forces, dlambda)
        print(f"{label:12s} set-up {setup:5.1f} s   ML group alone {group_ms:6.2f} ms   step {step_ms:6.2f} ms "
              f"({args.steps * 0.002 / (step_ms * args.steps / 1e3) * 86400 / 1e3:.1f} ns/day)   "
              f"E = {energy:.3f} kJ/mol   dE/dlambda = {dlambda:.3f} kJ/mol")

    (e0, f0, d0), (e1, f1, d1) = results["TorchScript"], results["compiled"]
    print(f"compiled - TorchScript: energy {e1 - e0:+.4f} kJ/mol, dE/dlambda {d1 - d0:+.4f} kJ/mol, "
          f"largest force difference {np.abs(f1 - f0).max():.4f} kJ/mol/nm")
    assert abs(e1 - e0) < 1e-2 and abs(d1 - d0) < 1e-2 and np.abs(f1 - f0).max() < 0.1, "the two models disagree"


if __name__ == "__main__":
    main()
