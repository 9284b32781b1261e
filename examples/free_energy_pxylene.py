"""MM -> ML/MM correction to the hydration free energy of p-xylene, with MBAR.

    ddA = dA(water) - dA(vacuum),   dA(leg) = A(lambda=1) - A(lambda=0)

for the mixed potential E(lambda) = E_MM + lambda * (E_ML(p-xylene) - E_MM(p-xylene)) built by
:func:`openmmhybrid.createMixedSystem` with ``interpolate=True`` and the ``'ani1x'`` model.  Adding
ddA to the MM (GAFF) hydration free energy gives the hydration free energy with ANI-1x for the
solute's internal energy (mechanical embedding: solute-water interactions stay GAFF/TIP3P).

- Water leg: ``examples/data/pxylene-water`` (3,180 atoms, PME 0.9 nm, HBonds, 1.5 amu hydrogens,
  LangevinMiddleIntegrator 4 fs, 298.15 K, friction 1/ps, CPU platform).
- Vacuum leg: the same prmtop with the water stripped (ParmEd), no cutoff, same integrator.  Both
  legs use the same ligand parameters and the same ML model, so the ML model's atomic self energies
  (a constant of about -815,870 kJ/mol for p-xylene) cancel in ddA; the script subtracts them from
  the model anyway, so the reduced potentials stay O(kT).
- Lambda windows: ``--windows`` equally spaced states (default 6: 0, 0.2, ..., 1).  In each window:
  ``--equilibrate`` ps of equilibration, then ``--production`` ps sampled every ``--interval`` ps.
  The energy of every state is computed from each sample in one evaluation
  (:func:`openmmhybrid.interpolationEnergies`: E is linear in lambda and every correction force
  reports dE/dlambda).  Samples are decorrelated with pymbar's statistical inefficiency of
  dE/dlambda before MBAR.
- Output (``--out``, default ``fe-output/``): ``free_energy.png`` (overlap matrices and <dE/dlambda>
  of both legs), ``free_energy.json`` (all numbers) and a printed summary.

Usage: python examples/free_energy_pxylene.py [--windows 6] [--production 30] [--out fe-output]
The defaults take about 20 minutes on 2 CPU cores (``make free-energy``).
"""
import argparse
import json
import os
import sys
import time
import warnings

import numpy as np
import openmm
import openmm.app as app
import openmm.unit as unit
import torch

import openmmhybrid

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "data", "pxylene-water")
TEMPERATURE = 298.15 * unit.kelvin
KT = (unit.MOLAR_GAS_CONSTANT_R * TEMPERATURE).value_in_unit(unit.kilojoule_per_mole)


class WithoutSelfEnergies(torch.nn.Module):
    """The ML model minus a constant (its atomic self energies), so energies stay near zero."""

    def __init__(self, model, offset: float):
        super().__init__()
        self.model = model
        self.offset = offset

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        return self.model(positions) - self.offset


def build_legs(model_name):
    """(name, topology, mixed System, positions, box) for the water and vacuum legs."""
    import parmed
    prmtop, inpcrd = os.path.join(DATA, "pxylene_water.prmtop"), os.path.join(DATA, "pxylene_water.inpcrd")
    structure = parmed.load_file(prmtop, inpcrd)
    legs = []
    for name in ("water", "vacuum"):
        if name == "water":
            s = structure
            system = s.createSystem(nonbondedMethod=app.PME, nonbondedCutoff=0.9 * unit.nanometer,
                                    constraints=app.HBonds, rigidWater=True, flexibleConstraints=False,
                                    hydrogenMass=1.5 * unit.amu)
            box = s.box_vectors
        else:
            s = structure[":TMP"]
            system = s.createSystem(nonbondedMethod=app.NoCutoff, constraints=app.HBonds, flexibleConstraints=False,
                                    hydrogenMass=1.5 * unit.amu)
            box = None
        topology = s.topology
        atoms = openmmhybrid.selectAtoms(topology, residueName="TMP")
        model = openmmhybrid.models.createModel(model_name, topology, atoms)
        offset = float(getattr(model, "selfEnergy", 0.0))
        mixed = openmmhybrid.createMixedSystem(topology, system, atoms, WithoutSelfEnergies(model, offset),
                                               interpolate=True)
        legs.append((name, topology, mixed, s.positions, box))
    return legs


def run_leg(name, system, positions, box, lambdas, args):
    """Sample every window; returns u_kln-style arrays: reduced energies [window][sample][state]."""
    platform = openmm.Platform.getPlatformByName(args.platform)
    steps_per_sample = max(1, round(args.interval / args.timestep))
    n_samples = max(2, round(args.production / args.interval))
    equilibration = max(1, round(args.equilibrate / args.timestep))
    reduced, slopes = [], []
    integrator = openmm.LangevinMiddleIntegrator(TEMPERATURE, 1 / unit.picosecond, args.timestep * unit.picosecond)
    integrator.setRandomNumberSeed(args.seed)
    context = openmm.Context(system, integrator, platform)
    if box is not None:
        context.setPeriodicBoxVectors(*box)
    context.setPositions(positions)
    context.setParameter(openmmhybrid.LAMBDA_PARAMETER, lambdas[0])
    openmm.LocalEnergyMinimizer.minimize(context, 10.0, 200)
    context.setVelocitiesToTemperature(TEMPERATURE, args.seed)
    start = time.time()
    for k, lam in enumerate(lambdas):
        context.setParameter(openmmhybrid.LAMBDA_PARAMETER, lam)
        integrator.step(equilibration)
        u, c = [], []
        for n in range(n_samples):
            integrator.step(steps_per_sample)
            energies = openmmhybrid.interpolationEnergies(context, lambdas).value_in_unit(unit.kilojoule_per_mole)
            u.append(np.array(energies) / KT)
            c.append((energies[-1] - energies[0]) / KT)
        reduced.append(np.array(u))
        slopes.append(np.array(c))
        elapsed = time.time() - start
        print(f"  {name}: window {k + 1}/{len(lambdas)} (lambda {lam:.2f}) done, <dE/dlambda> = "
              f"{np.mean(c) * KT:9.2f} kJ/mol, {elapsed:6.0f} s elapsed, "
              f"about {elapsed / (k + 1) * (len(lambdas) - k - 1):5.0f} s to go", flush=True)
    return reduced, slopes


def mbar(reduced, slopes, lambdas):
    """Decorrelate, run MBAR; returns dA (kT), its error, the overlap matrix and TI data."""
    import pymbar
    from pymbar import timeseries
    kept, n_k, inefficiencies = [], [], []
    for u, c in zip(reduced, slopes):
        g = timeseries.statistical_inefficiency(c) if np.std(c) > 0 else 1.0
        idx = timeseries.subsample_correlated_data(c, g=g)
        kept.append(u[idx])
        n_k.append(len(idx))
        inefficiencies.append(float(g))
    u_kn = np.concatenate(kept, axis=0).T  # [state, sample]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        analysis = pymbar.MBAR(u_kn, np.array(n_k), solver_protocol="robust")
        result = analysis.compute_free_energy_differences()
        overlap = analysis.compute_overlap()["matrix"]
    K = len(lambdas)
    return {"dA_kT": float(result["Delta_f"][0, K - 1]), "error_kT": float(result["dDelta_f"][0, K - 1]),
            "overlap": overlap.tolist(), "samples_kept": n_k, "statistical_inefficiency": inefficiencies,
            "mean_dEdlambda_kT": [float(np.mean(c)) for c in slopes],
            "sem_dEdlambda_kT": [float(np.std(c, ddof=1) * np.sqrt(g / len(c))) for c, g in zip(slopes, inefficiencies)]}


def plot(results, lambdas, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    for ax, leg in zip(axes[:2], ("water", "vacuum")):
        overlap = np.array(results[leg]["overlap"])
        image = ax.imshow(overlap, vmin=0, vmax=1, cmap="viridis")
        ax.set_title(f"{leg} leg: MBAR overlap matrix")
        ax.set_xticks(range(len(lambdas)), [f"{x:.2f}" for x in lambdas], rotation=90)
        ax.set_yticks(range(len(lambdas)), [f"{x:.2f}" for x in lambdas])
        ax.set_xlabel("lambda")
        ax.set_ylabel("lambda")
        for i in range(len(lambdas)):
            for j in range(len(lambdas)):
                ax.text(j, i, f"{overlap[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if overlap[i, j] < 0.5 else "black")
        fig.colorbar(image, ax=ax, fraction=0.046)
    ax = axes[2]
    for leg, marker in (("water", "o"), ("vacuum", "s")):
        mean = np.array(results[leg]["mean_dEdlambda_kT"]) * KT
        sem = np.array(results[leg]["sem_dEdlambda_kT"]) * KT
        ax.errorbar(lambdas, mean, yerr=sem, marker=marker, capsize=3, label=leg)
    ax.set_xlabel("lambda")
    ax.set_ylabel("<dE/dlambda> (kJ/mol)")
    ax.set_title(f"ddA = {results['ddA_kJ_per_mol']:.2f} +- {results['ddA_error_kJ_per_mol']:.2f} kJ/mol")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="ani1x", help="registered ML model name (default ani1x)")
    parser.add_argument("--windows", type=int, default=6, help="number of lambda windows (default 6)")
    parser.add_argument("--equilibrate", type=float, default=5.0, help="ps of equilibration per window (default 5)")
    parser.add_argument("--production", type=float, default=30.0, help="ps of sampling per window (default 30)")
    parser.add_argument("--interval", type=float, default=0.2, help="ps between samples (default 0.2)")
    parser.add_argument("--timestep", type=float, default=0.004, help="ps (default 0.004, with 1.5 amu hydrogens)")
    parser.add_argument("--platform", default="CPU")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--out", default="fe-output")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    lambdas = list(np.linspace(0.0, 1.0, args.windows))
    print(f"MM -> ML/MM ({args.model}) correction to the hydration free energy of p-xylene: {args.windows} windows, "
          f"{args.equilibrate} ps equilibration + {args.production} ps sampling (every {args.interval} ps) per window, "
          f"{args.timestep * 1000:.0f} fs steps, {TEMPERATURE}, platform {args.platform}", flush=True)
    results = {"settings": vars(args), "lambdas": lambdas, "kT_kJ_per_mol": KT}
    start = time.time()
    for name, topology, system, positions, box in build_legs(args.model):
        print(f"{name} leg: {system.getNumParticles()} particles", flush=True)
        reduced, slopes = run_leg(name, system, positions, box, lambdas, args)
        results[name] = mbar(reduced, slopes, lambdas)
        r = results[name]
        print(f"  {name}: dA = {r['dA_kT'] * KT:.3f} +- {r['error_kT'] * KT:.3f} kJ/mol "
              f"(samples kept per window: {r['samples_kept']})", flush=True)
    dda = (results["water"]["dA_kT"] - results["vacuum"]["dA_kT"]) * KT
    error = np.hypot(results["water"]["error_kT"], results["vacuum"]["error_kT"]) * KT
    results.update(ddA_kJ_per_mol=dda, ddA_error_kJ_per_mol=error, wall_seconds=time.time() - start)
    with open(os.path.join(args.out, "free_energy.json"), "w") as f:
        json.dump(results, f, indent=1)
    plot(results, lambdas, os.path.join(args.out, "free_energy.png"))
    print(f"ddA (MM -> ML/MM, water - vacuum) = {dda:.2f} +- {error:.2f} kJ/mol "
          f"({dda / 4.184:.2f} +- {error / 4.184:.2f} kcal/mol); {time.time() - start:.0f} s; "
          f"plot and numbers in {args.out}/", flush=True)
    smallest = min(min(np.diag(np.array(results[leg]["overlap"]), 1)) for leg in ("water", "vacuum"))
    if smallest < 0.03:
        print(f"warning: the smallest overlap between neighbouring windows is {smallest:.3f}; add windows or sampling.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
