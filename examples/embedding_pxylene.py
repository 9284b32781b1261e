"""p-xylene with ANI-1x and electrostatic embedding, in water and in the T4 lysozyme L99A pocket.

For each system this builds the ML/MM System with ``embedding='electrostatic'`` (ANI-1x on the
18 ligand atoms, the MM charges within 1 nm handed to the model, fixed-charge Coulomb coupling
plus Thole polarization), minimizes briefly, runs Langevin dynamics with the native
multiple-time-step integrator (embedded ML every 2 fs, MM every 1 fs), and at regular frames
compares the ligand-environment electrostatic interaction three ways:

  MM (PME)      what mechanical embedding uses: the MM electrostatic interaction of the ligand's
                charges with everything else, with PME (E(all) - E(ligand charges off) -
                E(ligand charges only), three PME sums)
  coupling      the FixedChargeCoupling term: the same ligand charges against the MM charges within
                the cutoff, switched to zero between 0.8 and 1 nm (a truncated Coulomb sum)
  polarization  the TholePolarization term: the induction energy of the ligand in the MM field

This is a demonstration of what the terms add, not a validation: coupling and MM (PME) differ only
by the truncation; polarization is the new physics, and its size depends on the published
polarizabilities, not on a fit to this system.  Lennard-Jones between the ligand and the rest is
MM in both embeddings and is not shown.

Usage: python examples/embedding_pxylene.py [--steps 400] [--interval 20] [--out embedding-output]
       [--markdown docs/embedding_demo.md] [--plot docs/embedding.png]
"""
import argparse
import os
import sys
import time
from datetime import date

import numpy as np
import openmm
import openmm.app as app
import openmm.unit as unit
import torch

import openmmhybrid
from openmmhybrid import MLForce
from openmmhybrid.embedding import EmbeddedModel, FixedChargeCoupling, TholePolarization, systemCharges

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "data")
SYSTEMS = {
    "water": ("p-xylene in water", "pxylene-water", "pxylene_water.prmtop", "pxylene_water.inpcrd"),
    "pocket": ("p-xylene in the T4L L99A pocket", "t4l-l99a-pxylene-water", "complex.prmtop", "complex.inpcrd"),
}


class _Zero(torch.nn.Module):
    def forward(self, positions):
        return (positions * 0.0).sum()


def analysis_context(system, ligand, charges, numbers, cutoff, box, platform):
    """One Context whose force groups give the three interaction energies."""
    out = openmm.System()
    for i in range(system.getNumParticles()):
        out.addParticle(system.getParticleMass(i))
    out.setDefaultPeriodicBoxVectors(*box)
    for group, term in ((1, FixedChargeCoupling([charges[i] for i in ligand], cutoff)),
                        (2, TholePolarization(numbers, cutoff))):
        force = MLForce(EmbeddedModel(_Zero(), [term]), ligand, usesPeriodicBoundaryConditions=True)
        force.setEmbedding(cutoff, charges)
        force.setForceGroup(group)
        out.addForce(force)
    nonbonded = next(f for f in system.getForces() if isinstance(f, openmm.NonbondedForce))
    ligandSet = set(ligand)
    for group, keep in ((3, lambda i: True), (4, lambda i: i not in ligandSet), (5, lambda i: i in ligandSet)):
        copy = openmm.XmlSerializer.clone(nonbonded)
        for i in range(copy.getNumParticles()):
            q = charges[i] if keep(i) else 0.0
            copy.setParticleParameters(i, q, 1.0, 0.0)
        for i in range(copy.getNumExceptions()):
            a, b, chargeProd, _, _ = copy.getExceptionParameters(i)
            copy.setExceptionParameters(i, a, b, chargeProd if keep(a) and keep(b) else 0.0, 1.0, 0.0)
        copy.setUseDispersionCorrection(False)
        copy.setReciprocalSpaceForceGroup(-1)
        copy.setForceGroup(group)
        out.addForce(copy)
    return openmm.Context(out, openmm.VerletIntegrator(0.001), platform)


def interaction_energies(context, positions):
    context.setPositions(positions)

    def energy(group):
        return context.getState(getEnergy=True, groups={group}).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)

    return energy(3) - energy(4) - energy(5), energy(1), energy(2)


def run(name, args, platform):
    title, folder, prmtop, inpcrd = SYSTEMS[name]
    prm = app.AmberPrmtopFile(os.path.join(DATA, folder, prmtop))
    crd = app.AmberInpcrdFile(os.path.join(DATA, folder, inpcrd))
    system = prm.createSystem(nonbondedMethod=app.PME, nonbondedCutoff=0.9 * unit.nanometer, constraints=app.HBonds)
    ligand = openmmhybrid.selectAtoms(prm.topology, residueName="TMP")
    charges = systemCharges(system)
    numbers = [a.element.atomic_number for a in prm.topology.atoms() if a.index in set(ligand)]
    cutoff = args.cutoff
    mixed = openmmhybrid.createMixedSystem(prm.topology, system, ligand, "ani1x", embedding="electrostatic",
                                           cutoff=cutoff * unit.nanometer)
    integrator = openmmhybrid.createMTSIntegrator(mixed, 2 * unit.femtosecond, 2, temperature=300 * unit.kelvin)
    integrator.setRandomNumberSeed(2026)
    context = openmm.Context(mixed, integrator, platform)
    context.setPositions(crd.positions)
    context.setPeriodicBoxVectors(*crd.boxVectors)
    print(f"\n{title}: {system.getNumParticles()} particles, {len(ligand)} ML atoms (ANI-1x), embedding cutoff {cutoff} nm")
    openmm.LocalEnergyMinimizer.minimize(context, 10.0, args.minimize)
    context.setVelocitiesToTemperature(300 * unit.kelvin, 2026)
    ml = next(MLForce.cast(f) for f in mixed.getForces() if MLForce.isinstance(f))
    analysis = analysis_context(system, ligand, charges, numbers, cutoff, crd.boxVectors, platform)
    rows = []
    start = time.time()
    os.makedirs(args.out, exist_ok=True)
    trajectory = app.DCDFile(open(os.path.join(args.out, f"{name}.dcd"), "wb"), prm.topology, 0.002)
    for frame in range(args.steps // args.interval + 1):
        if frame > 0:
            integrator.step(args.interval)
        state = context.getState(getPositions=True, getEnergy=True, enforcePeriodicBox=False)
        positions = state.getPositions(asNumpy=True)
        trajectory.writeModel(positions, periodicBoxVectors=state.getPeriodicBoxVectors())
        mm, coupling, polarization = interaction_energies(analysis, positions)
        t = frame * args.interval * 0.002
        rows.append((t, mm, coupling, polarization, ml.getNumEnvironmentAtoms(context)))
        elapsed = time.time() - start
        done = frame / max(1, args.steps // args.interval)
        left = elapsed / done * (1 - done) if done > 0 else float("nan")
        print(f"  t = {t:6.3f} ps  MM(PME) {mm:8.1f}  coupling {coupling:8.1f}  polarization {polarization:7.2f} kJ/mol  "
              f"environment {rows[-1][4]} atoms   [{100 * done:3.0f}%, {left:4.0f} s left]", flush=True)
    return title, np.array(rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--systems", default="water,pocket", help="comma-separated: water, pocket")
    parser.add_argument("--steps", type=int, default=400, help="outer steps (2 fs) per system")
    parser.add_argument("--interval", type=int, default=20, help="outer steps between analysed frames")
    parser.add_argument("--minimize", type=int, default=200, help="minimizer iterations")
    parser.add_argument("--cutoff", type=float, default=1.0, help="embedding cutoff (nm)")
    parser.add_argument("--platform", default="CPU")
    parser.add_argument("--out", default="embedding-output", help="folder for the trajectories")
    parser.add_argument("--markdown", help="write the summary table here")
    parser.add_argument("--plot", help="write a PNG of the energies per frame here")
    args = parser.parse_args()
    platform = openmm.Platform.getPlatformByName(args.platform)
    results = [run(name.strip(), args, platform) for name in args.systems.split(",")]

    lines = [f"Demonstration, not a validation ({date.today()}, {args.platform} platform, "
             f"{args.steps * 0.002:.1f} ps of ANI-1x/MM dynamics with electrostatic embedding per system, "
             f"{len(results[0][1])} frames, cutoff {args.cutoff} nm; mean +- standard deviation over frames, kJ/mol):",
             "",
             "| System | MM (PME) electrostatic interaction | coupling (truncated, switched) | coupling - MM | "
             "polarization | environment atoms |",
             "|---|---|---|---|---|---|"]
    for title, rows in results:
        mm, coupling, polarization, count = rows[:, 1], rows[:, 2], rows[:, 3], rows[:, 4]
        lines.append(f"| {title} | {mm.mean():.1f} +- {mm.std():.1f} | {coupling.mean():.1f} +- {coupling.std():.1f} | "
                     f"{(coupling - mm).mean():.1f} +- {(coupling - mm).std():.1f} | "
                     f"{polarization.mean():.2f} +- {polarization.std():.2f} | {count.mean():.0f} |")
    print("\n" + "\n".join(lines))
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write("\n".join(lines) + "\n")
        print(f"wrote {args.markdown}")
    if args.plot:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 4), squeeze=False)
        for ax, (title, rows) in zip(axes[0], results):
            ax.plot(rows[:, 0], rows[:, 1], "k-", label="MM (PME): mechanical embedding")
            ax.plot(rows[:, 0], rows[:, 2], "C0--", label="coupling (truncated Coulomb)")
            ax.plot(rows[:, 0], rows[:, 2] + rows[:, 3], "C3-", label="coupling + polarization")
            ax.set_title(title)
            ax.set_xlabel("time (ps)")
            ax.set_ylabel("ligand-environment electrostatics (kJ/mol)")
            ax.legend(fontsize=8)
        fig.suptitle("Electrostatic vs mechanical embedding of p-xylene (demonstration)")
        fig.tight_layout()
        fig.savefig(args.plot, dpi=110)
        print(f"wrote {args.plot}")


if __name__ == "__main__":
    sys.exit(main())
