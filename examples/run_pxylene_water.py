"""A short ML/MM simulation of p-xylene in water with openmmhybrid.MLForce used directly (no CLI).

The ML region is the p-xylene (residue TMP, 18 atoms).  Its bonded terms (bonds, angles, torsions
wholly inside the region) are taken out of the MM System and evaluated instead by a PyTorch model
inside the running Context; everything else (water, ligand-water and the ligand's own nonbonded
pairs) stays MM.  The model here is the ligand's own GAFF bonded energy written in PyTorch, so the
ML/MM potential must equal the pure MM one: the script checks that before it runs dynamics.  Swap
in any model that follows the MLForce contract (positions [n, 3] in nm -> energy in kJ/mol).

Usage: python examples/run_pxylene_water.py [--steps 2000] [--platform CPU] [--out demo-output]
"""
import argparse
import math
import os
import sys
import time

import openmm
import openmm.app as app
import openmm.unit as unit
import torch

import openmmhybrid

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "data", "pxylene-water")


class BondedModel(torch.nn.Module):
    """Harmonic bonds and angles and periodic torsions among the region's atoms (region indices)."""

    def __init__(self, bonds, angles, torsions):
        super().__init__()
        self.register_buffer("b_idx", torch.tensor([b[:2] for b in bonds], dtype=torch.long).reshape(-1, 2))
        self.register_buffer("b_par", torch.tensor([b[2:] for b in bonds], dtype=torch.float64).reshape(-1, 2))
        self.register_buffer("a_idx", torch.tensor([a[:3] for a in angles], dtype=torch.long).reshape(-1, 3))
        self.register_buffer("a_par", torch.tensor([a[3:] for a in angles], dtype=torch.float64).reshape(-1, 2))
        self.register_buffer("t_idx", torch.tensor([t[:4] for t in torsions], dtype=torch.long).reshape(-1, 4))
        self.register_buffer("t_par", torch.tensor([t[4:] for t in torsions], dtype=torch.float64).reshape(-1, 3))

    def forward(self, positions):
        pos = positions.to(torch.float64)
        d = pos[self.b_idx[:, 1]] - pos[self.b_idx[:, 0]]
        r = torch.linalg.norm(d, dim=1)
        energy = (0.5 * self.b_par[:, 1] * (r - self.b_par[:, 0]) ** 2).sum()
        u = pos[self.a_idx[:, 0]] - pos[self.a_idx[:, 1]]
        v = pos[self.a_idx[:, 2]] - pos[self.a_idx[:, 1]]
        cos = (u * v).sum(1) / (torch.linalg.norm(u, dim=1) * torch.linalg.norm(v, dim=1))
        theta = torch.acos(torch.clamp(cos, -1.0, 1.0))
        energy = energy + (0.5 * self.a_par[:, 1] * (theta - self.a_par[:, 0]) ** 2).sum()
        b1 = pos[self.t_idx[:, 1]] - pos[self.t_idx[:, 0]]
        b2 = pos[self.t_idx[:, 2]] - pos[self.t_idx[:, 1]]
        b3 = pos[self.t_idx[:, 3]] - pos[self.t_idx[:, 2]]
        n1 = torch.linalg.cross(b1, b2)
        n2 = torch.linalg.cross(b2, b3)
        m = torch.linalg.cross(n1, b2 / torch.linalg.norm(b2, dim=1, keepdim=True))
        phi = torch.atan2((m * n2).sum(1), (n1 * n2).sum(1))
        energy = energy + (self.t_par[:, 2] * (1 + torch.cos(self.t_par[:, 0] * phi - self.t_par[:, 1]))).sum()
        return energy


def split_bonded_terms(system, region):
    """Remove the bonded terms wholly inside region from system; return them in region indices."""
    local = {atom: i for i, atom in enumerate(region)}
    bonds, angles, torsions = [], [], []
    for force in system.getForces():
        if isinstance(force, openmm.HarmonicBondForce):
            for i in range(force.getNumBonds()):
                a, b, r0, k = force.getBondParameters(i)
                if a in local and b in local:
                    bonds.append((local[a], local[b], r0._value, k._value))
                    force.setBondParameters(i, a, b, r0, 0.0)
        elif isinstance(force, openmm.HarmonicAngleForce):
            for i in range(force.getNumAngles()):
                a, b, c, theta0, k = force.getAngleParameters(i)
                if all(x in local for x in (a, b, c)):
                    angles.append((local[a], local[b], local[c], theta0._value, k._value))
                    force.setAngleParameters(i, a, b, c, theta0, 0.0)
        elif isinstance(force, openmm.PeriodicTorsionForce):
            for i in range(force.getNumTorsions()):
                a, b, c, d, n, phase, k = force.getTorsionParameters(i)
                if all(x in local for x in (a, b, c, d)):
                    torsions.append((local[a], local[b], local[c], local[d], n, phase._value, k._value))
                    force.setTorsionParameters(i, a, b, c, d, n, phase, 0.0)
    return bonds, angles, torsions


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=2000, help="MD steps of 2 fs (default 2000 = 4 ps)")
    parser.add_argument("--platform", default="CPU", help="OpenMM platform (Reference, CPU)")
    parser.add_argument("--out", default="demo-output", help="folder for the trajectory and energies")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)

    prmtop = app.AmberPrmtopFile(os.path.join(DATA, "pxylene_water.prmtop"))
    inpcrd = app.AmberInpcrdFile(os.path.join(DATA, "pxylene_water.inpcrd"))
    settings = dict(nonbondedMethod=app.PME, nonbondedCutoff=0.9 * unit.nanometer, constraints=app.HBonds)
    mm_system = prmtop.createSystem(**settings)
    system = prmtop.createSystem(**settings)
    region = [atom.index for atom in prmtop.topology.atoms() if atom.residue.name == "TMP"]
    bonds, angles, torsions = split_bonded_terms(system, region)
    model = BondedModel(bonds, angles, torsions)
    force = openmmhybrid.MLForce(model, region, usesDoublePrecision=True)
    force.setForceGroup(1)
    system.addForce(force)
    print(f"System: {system.getNumParticles()} atoms; ML region: {len(region)} atoms of residue TMP "
          f"({len(bonds)} bonds, {len(angles)} angles, {len(torsions)} torsions moved from MM to the model)")

    platform = openmm.Platform.getPlatformByName(args.platform)
    energies = []
    for s in (mm_system, system):
        context = openmm.Context(s, openmm.VerletIntegrator(0.001), platform)
        context.setPositions(inpcrd.positions)
        context.setPeriodicBoxVectors(*inpcrd.boxVectors)
        energies.append(context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole))
        del context
    print(f"Potential energy: pure MM {energies[0]:.4f} kJ/mol, ML/MM {energies[1]:.4f} kJ/mol "
          f"(difference {energies[1] - energies[0]:+.2e})")
    if abs(energies[1] - energies[0]) > 1e-3 * abs(energies[0]):
        sys.exit("The ML/MM energy does not match the MM energy: something is wrong with the set-up.")

    integrator = openmm.LangevinMiddleIntegrator(300 * unit.kelvin, 1 / unit.picosecond, 2 * unit.femtoseconds)
    integrator.setRandomNumberSeed(2026)
    simulation = app.Simulation(prmtop.topology, system, integrator, platform)
    simulation.context.setPositions(inpcrd.positions)
    simulation.context.setPeriodicBoxVectors(*inpcrd.boxVectors)
    print("Minimizing...")
    simulation.minimizeEnergy(maxIterations=200)
    simulation.context.setVelocitiesToTemperature(300 * unit.kelvin, 2026)
    interval = max(args.steps // 20, 1)
    trajectory = os.path.join(args.out, "pxylene_water.dcd")
    log = os.path.join(args.out, "pxylene_water.csv")
    simulation.reporters.append(app.DCDReporter(trajectory, interval))
    simulation.reporters.append(app.StateDataReporter(log, interval, step=True, time=True, potentialEnergy=True,
                                                      temperature=True, speed=True))
    simulation.reporters.append(app.StateDataReporter(sys.stdout, interval, step=True, potentialEnergy=True,
                                                      temperature=True, speed=True, progress=True,
                                                      remainingTime=True, totalSteps=args.steps))
    start = time.time()
    simulation.step(args.steps)
    elapsed = time.time() - start
    ml = simulation.context.getState(getEnergy=True, groups={1}).getPotentialEnergy()
    ns_per_day = args.steps * 2e-6 / (elapsed / 86400)
    print(f"Done: {args.steps} steps in {elapsed:.1f} s ({ns_per_day:.2f} ns/day on {args.platform}); "
          f"final ML-region energy {ml}")
    print(f"Trajectory: {trajectory}\nEnergies:   {log}")
    if not math.isfinite(ml.value_in_unit(unit.kilojoule_per_mole)):
        sys.exit("non-finite energy")


if __name__ == "__main__":
    main()
