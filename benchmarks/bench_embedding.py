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

import numpy as np
import openmm
import torch

import openmmhybrid
from openmmhybrid import MLForce
from openmmhybrid.embedding import EmbeddedModel, FixedChargeCoupling, TholePolarization, systemCharges

import common

SYSTEMS = {"complex": "complex", "water": "pxylene"}  # row name: common.load's name


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
    print(f"# bench_embedding: CPU platform, {args.threads} threads, cutoff {args.cutoff} nm, {args.rounds} rounds")
    print()
    print(common.machine_header())
    rows = []
    for name, key in SYSTEMS.items():
        inputs = common.load(key)
        topology, system, crd, ligand = inputs.topology, inputs.system, inputs.inpcrd, inputs.ligand
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
        calls = {label: (lambda g=groups[label]: context.getState(getEnergy=True, getForces=True, groups={g}))
                 for label in labels}
        for call in calls.values():  # warm up
            for _ in range(5):
                call()
        times = common.interleaved(calls, args.rounds)
        t = {label: np.array(v) * 1e6 for label, v in times.items()}
        envStep = common.paired_median(t["trivial+env"], t["trivial"])
        model = common.paired_median(t["ANI-1x"], t["empty"])
        embedded = common.paired_median(t["ANI-1x+emb"], t["empty"])
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
