"""What electrostatic embedding costs per evaluation, on the CPU platform.

For the 18-atom p-xylene in the 36,309-atom T4 lysozyme L99A complex (and in water, 3,180 atoms)
this times Context.getState(getEnergy, getForces) of the force group holding one MLForce, in a
System that holds only that force (so nothing else runs), alternating the variants in rounds:

  empty        a group with no force: the fixed cost of a getState call
  trivial      an MLForce whose model is free (energy = 0 * sum of positions)
  trivial+env  the same with setEmbedding(1 nm): every call also finds the MM charges within the
               cutoff (cell grid over the whole System), writes them into the model's input
               arrays and adds the gradient on them back as forces (the model reads
               0 * mm_positions, so the scatter runs)
  ANI-1x       the ANI-1x model (torchani 2.2.4) on the region, no embedding
  ANI-1x+emb   ANI-1x + FixedChargeCoupling + TholePolarization with the embedding on: the whole
               electrostatically embedded evaluation

The environment step is the paired median of (trivial+env - trivial); the model is the paired
median of (ANI-1x - empty).  The issue's target: environment step <= 10% of the model.

Usage: python benchmarks/bench_embedding.py [--rounds 200] [--threads 2]
"""
import argparse
import os
import platform as host
import statistics
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

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "examples", "data")


class Free(torch.nn.Module):
    def forward(self, positions, box):
        return (positions * 0.0).sum()


class WithBox(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, positions, box):
        return self.model(positions)


class FreeEmbedded(torch.nn.Module):
    def forward(self, positions, box, mm_positions, mm_charges, mm_mask):
        return (positions * 0.0).sum() + (mm_positions * 0.0).sum()


def load(name):
    if name == "complex":
        folder = os.path.join(DATA, "t4l-l99a-pxylene-water")
        prm = app.AmberPrmtopFile(os.path.join(folder, "complex.prmtop"))
        crd = app.AmberInpcrdFile(os.path.join(folder, "complex.inpcrd"))
    else:
        folder = os.path.join(DATA, "pxylene-water")
        prm = app.AmberPrmtopFile(os.path.join(folder, "pxylene_water.prmtop"))
        crd = app.AmberInpcrdFile(os.path.join(folder, "pxylene_water.inpcrd"))
    system = prm.createSystem(nonbondedMethod=app.PME, nonbondedCutoff=0.9 * unit.nanometer, constraints=app.HBonds)
    ligand = [a.index for a in prm.topology.atoms() if a.residue.name in ("TMP", "PXY", "LIG", "MOL")]
    return prm.topology, system, crd, ligand


def variants(topology, system, ligand, cutoff):
    charges = systemCharges(system)
    ani = openmmhybrid.models.createModel("ani1x", topology, ligand)
    atoms = list(topology.atoms())
    numbers = [atoms[i].element.atomic_number for i in ligand]
    terms = [FixedChargeCoupling([charges[i] for i in ligand], cutoff), TholePolarization(numbers, cutoff)]
    out = {}
    out["trivial"] = MLForce(Free(), ligand, usesPeriodicBoundaryConditions=True)
    env = MLForce(FreeEmbedded(), ligand, usesPeriodicBoundaryConditions=True)
    env.setEmbedding(cutoff, charges)
    out["trivial+env"] = env
    out["ANI-1x"] = MLForce(WithBox(ani), ligand, usesPeriodicBoundaryConditions=True)
    embedded = MLForce(EmbeddedModel(ani, terms), ligand, usesPeriodicBoundaryConditions=True)
    embedded.setEmbedding(cutoff, charges)
    out["ANI-1x+emb"] = embedded
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cutoff", type=float, default=1.0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"# bench_embedding: {date.today()}, {host.node()}, {os.cpu_count()} cores, CPU platform, "
          f"{args.threads} threads, torch {torch.__version__}, OpenMM {openmm.__version__}, cutoff {args.cutoff} nm, "
          f"{args.rounds} rounds")
    rows = []
    for name in ("complex", "water"):
        topology, system, crd, ligand = load(name)
        forces = variants(topology, system, ligand, args.cutoff)
        test = openmm.System()
        for i in range(system.getNumParticles()):
            test.addParticle(system.getParticleMass(i))
        test.setDefaultPeriodicBoxVectors(*crd.boxVectors)
        groups = {}
        for g, (label, force) in enumerate(forces.items(), start=1):
            force.setForceGroup(g)
            test.addForce(force)
            groups[label] = g
        groups["empty"] = 31
        platform = openmm.Platform.getPlatformByName("CPU")
        context = openmm.Context(test, openmm.VerletIntegrator(0.001), platform, {"Threads": str(args.threads)})
        context.setPositions(crd.positions)
        labels = ["empty", "trivial", "trivial+env", "ANI-1x", "ANI-1x+emb"]
        times = {label: [] for label in labels}
        for label in labels:  # warm up
            for _ in range(5):
                context.getState(getEnergy=True, getForces=True, groups={groups[label]})
        for _ in range(args.rounds):
            for label in labels:
                start = time.perf_counter()
                context.getState(getEnergy=True, getForces=True, groups={groups[label]})
                times[label].append(time.perf_counter() - start)
        t = {label: np.array(v) * 1e6 for label, v in times.items()}
        envStep = statistics.median(t["trivial+env"] - t["trivial"])
        model = statistics.median(t["ANI-1x"] - t["empty"])
        embedded = statistics.median(t["ANI-1x+emb"] - t["empty"])
        count = forces["trivial+env"].getNumEnvironmentAtoms(context)
        rows.append((name, system.getNumParticles(), count, envStep, model, embedded))
        print(f"\n{name}: {system.getNumParticles()} particles, {len(ligand)} ML atoms, {count} environment atoms "
              f"(capacity {forces['trivial+env'].getEnvironmentCapacity(context)})")
        for label in labels:
            print(f"  {label:12s} median {np.median(t[label]):9.1f} us   min {t[label].min():9.1f} us")
    print("\n| System | particles | environment atoms | environment step (us) | ANI-1x (us) | step / ANI-1x | "
          "ANI-1x + coupling + polarization, embedded (us) |")
    print("|---|---|---|---|---|---|---|")
    for name, n, count, envStep, model, embedded in rows:
        print(f"| {name} | {n} | {count} | {envStep:.0f} | {model:.0f} | {100 * envStep / model:.1f}% | {embedded:.0f} |")


if __name__ == "__main__":
    main()
