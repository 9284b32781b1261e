"""Energy drift against the outer step: NVE with the ML correction on the outer step.

p-xylene (ANI-1x) in water (MM: PME 0.9 nm, Ewald error tolerance 1e-6, the Lennard-Jones switched
from 0.8 nm, HBonds, rigid water), 3,180 atoms, CPU platform.  The tight Ewald tolerance and the
switch remove the energy jumps of pairs crossing the cutoff: with OpenMM's default tolerance (5e-4)
and a truncated LJ those alone make the total energy wander by 1-3 kJ/mol within 0.1 ps at any
step size, which would swamp what the outer step does.  Constraints are solved to 1e-8.
openmmhybrid.createMTSIntegrator(mixed, outer, inner) without a temperature gives an
MTSIntegrator: MM every `outer/inner` fs, the ML correction every `outer` fs.  Each run starts from
the same state (a short Langevin equilibration at 300 K) and runs NVE for --ps picoseconds; the
total energy is sampled every 20 fs.  Rows with one level (outer = inner) are the reference: every
force at the MM step.

Reports, per (MM step, outer step): the standard deviation of the total energy, its drift (slope
of a straight-line fit, in kJ/mol/ns and in kT per ns per degree of freedom), the largest excursion,
the model calls per ps and the wall time per simulated ps.  --plot writes a figure of the drift and
the fluctuation against the outer step.

Usage: python benchmarks/bench_mts_drift.py [--ps 2] [--inner 0.5 1.0] [--outer 0.5 1 2 3 4 6 8]
           [--plot docs/mts_drift.png]
"""
import argparse
import sys
import time

import numpy as np
import openmm
import openmm.unit as unit

import openmmhybrid
from openmmhybrid.utils import degreesOfFreedom

import common

KJ = unit.kilojoule_per_mole
FS = unit.femtoseconds
SAMPLE_FS = 20.0


def setup(platform):
    inputs = common.load("pxylene", switchDistance=0.8 * unit.nanometer, ewaldErrorTolerance=1e-6)
    crd = inputs.inpcrd
    mixed = openmmhybrid.createMixedSystem(inputs.topology, inputs.system, inputs.ligand, "ani1x")
    groups = sorted({f.getForceGroup() for f in mixed.getForces()})
    equilibrate = openmmhybrid.MTSLangevinIntegrator(300 * unit.kelvin, 5 / unit.picosecond, 1 * FS, [(g, 1) for g in groups])
    equilibrate.setRandomNumberSeed(1)
    context = openmm.Context(mixed, equilibrate, platform)
    context.setPeriodicBoxVectors(*crd.boxVectors)
    context.setPositions(crd.positions)
    context.applyConstraints(1e-8)
    context.setVelocitiesToTemperature(300 * unit.kelvin, 1)
    equilibrate.step(200)
    start = context.getState(getPositions=True, getVelocities=True)
    return mixed, start


def run(mixed, start, platform, outer_fs, inner_fs, ps):
    substeps = int(round(outer_fs / inner_fs))
    integrator = openmmhybrid.createMTSIntegrator(mixed, outer_fs * FS, substeps)  # substeps 1: one level
    integrator.setConstraintTolerance(1e-8)
    context = openmm.Context(mixed, integrator, platform)
    context.setState(start)
    ml = common.ml_force(mixed)
    steps_per_sample = max(1, int(round(SAMPLE_FS / outer_fs)))
    samples = int(round(ps * 1000 / (steps_per_sample * outer_fs)))
    energies, times = [], []
    wall = time.perf_counter()
    for i in range(samples + 1):
        s = context.getState(getEnergy=True)
        energies.append((s.getPotentialEnergy() + s.getKineticEnergy()).value_in_unit(KJ))
        times.append(s.getTime().value_in_unit(unit.picosecond))
        if i < samples:
            integrator.step(steps_per_sample)
    wall = time.perf_counter() - wall
    energies = np.array(energies) - energies[0]
    slope = np.polyfit(times, energies, 1)[0]  # kJ/mol/ps
    calls = ml.getNumModelCalls(context) - (samples + 1)  # minus the getState() evaluations
    return dict(std=energies.std(), drift=slope * 1000, excursion=np.abs(energies).max(),
                calls=calls / (times[-1] - times[0]), wall=wall / (times[-1] - times[0]))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ps", type=float, default=2.0, help="NVE length per run in ps (default 2)")
    parser.add_argument("--inner", type=float, nargs="+", default=[0.5, 1.0], help="MM steps in fs")
    parser.add_argument("--outer", type=float, nargs="+", default=[0.5, 1, 2, 3, 4, 6, 8], help="outer steps in fs")
    parser.add_argument("--platform", default="CPU")
    parser.add_argument("--plot", default=None, help="write a figure here (PNG)")
    args = parser.parse_args()
    platform = openmm.Platform.getPlatformByName(args.platform)
    mixed, start = setup(platform)
    kT = (unit.MOLAR_GAS_CONSTANT_R * 300 * unit.kelvin).value_in_unit(KJ)
    dof = degreesOfFreedom(mixed)
    print(f"# NVE energy drift, platform {args.platform}; p-xylene (ANI-1x) in water, 3,180 atoms, {dof} degrees "
          f"of freedom, PME 0.9 nm (tolerance 1e-6), LJ switched from 0.8 nm, HBonds, rigid water; openmmhybrid.MTSIntegrator, "
          f"constraint tolerance 1e-8; "
          f"{args.ps} ps per run from the same equilibrated state; total energy every {SAMPLE_FS:g} fs")
    print()
    print(common.machine_header())
    print()
    print("| MM step (fs) | outer step, ML (fs) | std E (kJ/mol) | drift (kJ/mol/ns) | drift (kT/ns/dof) | max abs dE (kJ/mol) "
          "| model calls/ps | wall s/ps |")
    print("|---|---|---|---|---|---|---|---|")
    results = []
    for inner in args.inner:
        for outer in args.outer:
            ratio = outer / inner
            if outer < inner or abs(ratio - round(ratio)) > 1e-9:
                continue
            try:
                r = run(mixed, start, platform, outer, inner, args.ps)
            except openmm.OpenMMException as error:  # NaN: the outer step is past the stability limit
                print(f"| {inner:g} | {outer:g} | unstable: {str(error).split('.')[0]} | | | | | |", flush=True)
                continue
            results.append((inner, outer, r))
            print(f"| {inner:g} | {outer:g}{' (one level)' if outer == inner else ''} | {r['std']:.2f} | {r['drift']:+.1f} | "
                  f"{r['drift'] / kT / dof:+.5f} | {r['excursion']:.2f} | {r['calls']:.0f} | {r['wall']:.1f} |", flush=True)
    if args.plot:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
        for inner in args.inner:
            rows = [(o, r) for i, o, r in results if i == inner]
            outers = [o for o, _ in rows]
            axes[0].plot(outers, [abs(r["drift"]) / kT / dof for _, r in rows], "o-", label=f"MM step {inner:g} fs")
            axes[1].plot(outers, [r["std"] for _, r in rows], "o-", label=f"MM step {inner:g} fs")
        axes[0].set_ylabel("|drift| (kT / ns / degree of freedom)")
        axes[1].set_ylabel("std of total energy (kJ/mol)")
        for ax in axes:
            ax.set_xlabel("outer step: ML correction interval (fs)")
            ax.set_yscale("log")
            ax.legend()
            ax.grid(alpha=0.3)
        fig.suptitle("NVE with the ML correction on the outer step (p-xylene/ANI-1x in water)", fontsize=10)
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)
        print(f"\nFigure: {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
