"""What MLForce costs beyond the model itself, on the CPU-side platforms.

For an 18-atom and a ~200-atom ML region, and for the 18-atom ligand inside the 36,309-atom
T4 lysozyme L99A + p-xylene complex, this times (medians and minima of repeated calls):

  direct       the model's forward + backward called directly in PyTorch from Python
  C++ warm     the same from C++, exactly as the kernel calls it (build/benchmarks/BenchModel):
               the floor; "C++ cold" writes an unrelated 8 MiB buffer before each call (more
               than the L2 cache), as a large Context's evaluation does to the caches
  empty        Context.getState(getEnergy, getForces) of a force group that holds nothing
  MLForce      the same call for the group holding the MLForce
  PythonForce  the same model through OpenMM's PythonForce restricted to the region
               (openmm-ml's coupling), in the same run, as the peer

The empty and MLForce calls alternate, and "paired" is the median over rounds of
(MLForce - empty), which is less sensitive to drift than the difference of two medians.  It reports
overhead = MLForce - empty - (C++ floor), in microseconds.  A diagnostic row repeats the
18-atom Reference case with the same 8 MiB sweep before every call (outside the timed region): it
shows how much of the large-System cost is the model running with cold caches.  The machines are shared and
noisy: compare columns of one run, not figures across runs.

With --compiled, the 18-atom and complex cases are repeated with the same model compiled by
openmmhybrid.compileModel (AOTInductor: energy and forces in native code); the floors are then the
compiled model's (BenchModel runs the package).  --only-compiled-complex times just the complex,
both ways.

Usage: python benchmarks/bench_mlforce_overhead.py [--repeats 300] [--threads 2] [--skip-complex]
       [--compiled | --only-compiled-complex]
"""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np
import openmm
import torch

import openmmhybrid

import common


class PairDistanceMLP(torch.nn.Module):
    """An ANI-sized stand-in: radial Gaussian features of every pair distance within 0.52 nm,
    summed per atom, through a 3-layer MLP (64-64-1) per atom, summed.  Float32, like ANI."""

    def __init__(self, features=32, hidden=64):
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.register_buffer("centers", torch.linspace(0.08, 0.52, features))
        self.l1 = torch.nn.Linear(features, hidden)
        self.l2 = torch.nn.Linear(hidden, hidden)
        self.l3 = torch.nn.Linear(hidden, 1)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=generator) * 0.2)

    def forward(self, positions):
        d = positions.unsqueeze(0) - positions.unsqueeze(1)
        r2 = (d * d).sum(-1) + torch.eye(positions.shape[0], dtype=positions.dtype)  # no 0 on the diagonal
        r = torch.sqrt(r2)
        cutoff = 0.5 * (torch.cos(torch.pi * torch.clamp(r / 0.52, max=1.0)) + 1.0) * (1.0 - torch.eye(positions.shape[0]))
        g = torch.exp(-((r.unsqueeze(-1) - self.centers) ** 2) / 0.002) * cutoff.unsqueeze(-1)
        atom_features = g.sum(1)
        h = torch.nn.functional.celu(self.l1(atom_features), 0.1)
        h = torch.nn.functional.celu(self.l2(h), 0.1)
        return self.l3(h).sum()


SWEEP_BYTES = 8 << 20


def sweeper(sweep):
    """before(name, i) for common's timers: write `sweep` (a numpy array) before each call."""
    if sweep is None:
        return None

    def before(name, i):
        sweep[:] = i
    return before


def timed(function, repeats, warmup=20, sweep=None):
    """(median, min) in us of function(); sweep: a numpy array written before each call, untimed."""
    return common.median_min(common.repeated(function, repeats, warmup, sweeper(sweep)), 1e6)


def interleaved(functions, repeats, sweep=None, warmup=20):
    """Times of several calls made in rotation (so drift on a shared machine hits all alike):
    {name: (median, min)} in us, plus "paired": the median over rounds of MLForce - empty."""
    samples = common.interleaved(functions, repeats, warmup, sweeper(sweep))
    result = {name: common.median_min(t, 1e6) for name, t in samples.items()}
    result["paired"] = common.paired_median(samples["MLForce"], samples["empty"], 1e6)
    return result


def direct_timer(model, positions):
    pos = torch.tensor(positions, dtype=torch.float32, requires_grad=True)

    def run():
        energy = model(pos)
        grad, = torch.autograd.grad(energy, pos)
        return energy.item(), grad
    return run


def cpp_floor(scripted, positions, repeats, touch_bytes):
    """(warm median, warm min, cold median, cold min) of BenchModel, or None if it is not built.
    `scripted` is a ScriptModule, or the path of a compiled package (.pt2)."""
    binary = os.path.join(common.ROOT, "build", "benchmarks", "BenchModel")
    if not os.path.exists(binary):
        return None
    with tempfile.TemporaryDirectory() as tmp:
        pos_file = os.path.join(tmp, "pos.txt")
        if isinstance(scripted, str):
            model_file = scripted
        else:
            model_file = os.path.join(tmp, "model.pt")
            torch.jit.save(scripted, model_file)
        np.savetxt(pos_file, positions)
        out = subprocess.check_output([binary, model_file, pos_file, str(repeats), str(touch_bytes)], text=True)
    return tuple(float(x) for x in out.split())


def measure(system, positions, atoms, model, platform_name, repeats, box=None, sweep=None, compiled=None):
    """Times of the empty group, MLForce group and PythonForce group for one System.  With
    `compiled` (a folder), MLForce and the floors use the model compiled by compileModel there."""
    scripted = torch.jit.script(model)
    package = None
    if compiled is not None:
        package = os.path.join(compiled, f"model{len(atoms)}.pt2")
        if not os.path.exists(package):
            openmmhybrid.compileModel(model, len(atoms), package)
    ml = openmmhybrid.MLForce(package or scripted, atoms)
    # The model on as many threads as the floors below use (the CPU platform's default is 1, which
    # is what a simulation step wants; see docs/benchmarks.md), so that the difference is the coupling.
    ml.setProperty("modelThreads", str(torch.get_num_threads()))
    ml.setForceGroup(30)
    system.addForce(ml)
    peer = common.python_force(scripted, atoms)
    peer.setForceGroup(29)
    system.addForce(peer)
    platform = openmm.Platform.getPlatformByName(platform_name)
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), platform)
    context.setPositions(positions)
    if box is not None:
        context.setPeriodicBoxVectors(*box)

    def group(g):
        return lambda: context.getState(getEnergy=True, getForces=True, groups={g})
    result = interleaved({"empty": group(31), "MLForce": group(30)}, repeats, sweep)
    result["PythonForce"] = timed(group(29), repeats, sweep=sweep)
    pos = np.asarray(context.getState(getPositions=True).getPositions(asNumpy=True)._value)[atoms]
    if package is None:
        result["direct"] = timed(direct_timer(scripted, pos), repeats, sweep=sweep)
        result["cpp"] = cpp_floor(scripted, pos, repeats, SWEEP_BYTES)
    else:
        runner = torch._inductor.aoti_load_package(package)
        x = torch.tensor(pos, dtype=torch.float32)
        result["direct"] = timed(lambda: runner(x), repeats, sweep=sweep)
        result["cpp"] = cpp_floor(package, pos, repeats, SWEEP_BYTES)
    # Consistency: both couplings give the model's energy.
    e_ml = context.getState(getEnergy=True, groups={30}).getPotentialEnergy()._value
    e_py = context.getState(getEnergy=True, groups={29}).getPotentialEnergy()._value
    e_direct = scripted(torch.tensor(pos, dtype=torch.float32)).item()
    assert abs(e_ml - e_direct) < 1e-3 * max(1.0, abs(e_direct)), (e_ml, e_direct)
    assert abs(e_py - e_direct) < 1e-3 * max(1.0, abs(e_direct)), (e_py, e_direct)
    return result


def cluster(n, seed=0):
    """n atoms at liquid-like density (about 0.1 nm^-3 ... spacing ~0.15 nm), no overlaps."""
    rng = np.random.default_rng(seed)
    side = int(np.ceil(n ** (1 / 3)))
    grid = np.array([(i, j, k) for i in range(side) for j in range(side) for k in range(side)][:n], dtype=float)
    return grid * 0.15 + rng.normal(scale=0.01, size=(n, 3))


def report(title, result):
    direct, empty, ml, peer, cpp = (result[k] for k in ("direct", "empty", "MLForce", "PythonForce", "cpp"))
    if cpp is None:
        cpp = (float("nan"),) * 4
    warm = (ml[0] - empty[0] - cpp[0], ml[1] - empty[1] - cpp[1])
    cold = (ml[0] - empty[0] - cpp[2], ml[1] - empty[1] - cpp[3])
    print(f"| {title} | {direct[0]:.0f} / {direct[1]:.0f} | {cpp[0]:.0f} / {cpp[1]:.0f} | {cpp[2]:.0f} / {cpp[3]:.0f} | "
          f"{empty[0]:.0f} / {empty[1]:.0f} | {ml[0]:.0f} / {ml[1]:.0f} | {peer[0]:.0f} / {peer[1]:.0f} | "
          f"{warm[0]:.0f} / {warm[1]:.0f} | {cold[0]:.0f} / {cold[1]:.0f} | {peer[0] - ml[0]:.0f} | "
          f"{(peer[0] - empty[0]) / max(ml[0] - empty[0], 1e-9):.2f} | {result['paired']:.0f} | "
          f"{result['paired'] - cpp[0]:.0f} / {result['paired'] - cpp[2]:.0f} |", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=300)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--skip-complex", action="store_true")
    parser.add_argument("--compiled", action="store_true",
                        help="also time the same model compiled with openmmhybrid.compileModel (AOTInductor)")
    parser.add_argument("--only-compiled-complex", action="store_true",
                        help="time only the T4L complex, TorchScript and compiled (the issue-2 criterion)")
    args = parser.parse_args()
    compiled_dir = tempfile.mkdtemp(prefix="bench-compiled-") if (args.compiled or args.only_compiled_complex) else None
    torch.set_num_threads(args.threads)
    print(f"# MLForce overhead, {args.threads} torch threads, {args.repeats} repeats; model: PairDistanceMLP (float32); "
          "times in us, median / min")
    print()
    print(common.machine_header())
    print()
    print("| case | model from Python | model from C++, warm | model from C++, cold | empty group | MLForce group | "
          "PythonForce group | MLForce overhead vs C++ warm | vs C++ cold | PythonForce - MLForce | "
          "PythonForce / MLForce (beyond empty) | paired MLForce - empty | paired overhead vs C++ warm / cold |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    model = PairDistanceMLP()
    for n in (() if args.only_compiled_complex else (18, 200)):
        for platform_name in ("Reference", "CPU"):
            system = openmm.System()
            for _ in range(n):
                system.addParticle(12.0)
            result = measure(system, cluster(n), list(range(n)), model, platform_name, args.repeats)
            report(f"{n}-atom region alone, {platform_name}", result)
            if n == 18 and platform_name == "Reference":
                system = openmm.System()
                for _ in range(n):
                    system.addParticle(12.0)
                sweep = np.zeros(SWEEP_BYTES // 8)
                result = measure(system, cluster(n), list(range(n)), model, platform_name, args.repeats, sweep=sweep)
                report(f"{n}-atom region alone, Reference, 8 MiB written before each call (diagnostic)", result)
            if compiled_dir and n == 18:
                system = openmm.System()
                for _ in range(n):
                    system.addParticle(12.0)
                result = measure(system, cluster(n), list(range(n)), model, platform_name, args.repeats, compiled=compiled_dir)
                report(f"{n}-atom region alone, {platform_name}, compiled model", result)
    if not args.skip_complex:
        inputs = common.load("complex")
        inpcrd, ligand, system = inputs.inpcrd, inputs.ligand, inputs.system
        repeats = args.repeats
        result = measure(openmm.XmlSerializer.clone(system), inpcrd.positions, ligand, model, "CPU", repeats, box=inpcrd.boxVectors)
        report(f"18-atom ligand in the {system.getNumParticles()}-atom T4L complex, CPU", result)
        if compiled_dir:
            result = measure(openmm.XmlSerializer.clone(system), inpcrd.positions, ligand, model, "CPU", repeats,
                             box=inpcrd.boxVectors, compiled=compiled_dir)
            report(f"18-atom ligand in the {system.getNumParticles()}-atom T4L complex, CPU, compiled model", result)


if __name__ == "__main__":
    sys.exit(main())
