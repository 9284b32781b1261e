"""GPU benchmark: the T4L L99A + p-xylene complex (36,309 atoms) with ANI-1x on the ligand.

Rows (one run, same system, same model, mixed precision, PME 0.9 nm, HBonds, 300 K):

  (a) MM            the Amber system alone, LangevinMiddleIntegrator 2 fs
  (b) ML/MM         the mixed System (ANI-1x on the 18 ligand atoms), LangevinMiddle 2 fs,
                    MLForce with CUDA graphs, and again without
  (c) ML/MM MTS     the same with MTSLangevinIntegrator: ML correction once per outer step,
                    MM on inner steps of 2 fs (outer 4 fs and 8 fs)
  (d) PythonForce   the same model through OpenMM's PythonForce on the ligand atoms (openmm-ml's
                    coupling: positions to the host, torch on the GPU from Python, forces back)
  (e) ML/MM - ML    the mixed System with the MLForce removed and the ligand frozen (what (b)
                    costs without the ML force)

and the model alone (forward + backward on the GPU, eager and in a torch CUDA graph).  The
per-evaluation overhead beyond the model is (b) - (e) - model time, per step, in microseconds, with
graphs (against the graphed model) and without (against the eager model).

Usage: python benchmarks/bench_cuda.py [--steps 2000] [--json out.json] [--markdown out.md]
       [--platform CUDA]   (another platform and tiny --steps only smoke-test the script)
"""
import argparse
import json
import sys
import time

import numpy as np
import openmm
import openmm.unit as unit
import torch

import openmmhybrid
from openmmhybrid import createMixedSystem, mtsGroups

import common

ML_GROUP = 2


def ns_per_day(system, positions, box, integrator, platform, properties, steps, warmup):
    """(ns/day, ms per step) over `steps` steps after `warmup` steps."""
    seconds, energy = common.time_steps(system, integrator, platform, box, positions, steps, warmup, properties)
    if not np.isfinite(energy):
        raise RuntimeError("non-finite energy in the benchmark run")
    dt = integrator.getStepSize().value_in_unit(unit.nanosecond)
    return dt / seconds * 86400, seconds * 1e3


def langevin():
    return openmm.LangevinMiddleIntegrator(300 * unit.kelvin, 1 / unit.picosecond, 0.002 * unit.picoseconds)


def model_times(model, positions, device, repeats):
    """Forward + backward of the scripted model on the device: (eager ms, graphed ms or None)."""
    scripted = torch.jit.script(model).to(device)
    x = torch.tensor(positions, dtype=torch.float32, device=device, requires_grad=True)

    def step():
        energy = scripted(x)
        return torch.autograd.grad(energy, x)[0]

    for _ in range(5):
        step()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    sync()
    eager = (time.perf_counter() - start) / repeats * 1e3
    if device.type != "cuda":
        return eager, None
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            step()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    graph.replay()
    sync()
    start = time.perf_counter()
    for _ in range(repeats):
        graph.replay()
    sync()
    return eager, (time.perf_counter() - start) / repeats * 1e3


def python_force_system(mixed, model, ligand, device):
    """The mixed System with its MLForce replaced by a PythonForce running the same model."""
    scripted = torch.jit.script(model).to(device)
    system = openmm.XmlSerializer.clone(mixed)
    index = common.ml_force_index(system)
    group = system.getForce(index).getForceGroup()
    system.removeForce(index)
    force = common.python_force(scripted, ligand, device)
    force.setForceGroup(group)
    system.addForce(force)
    return system


def with_graphs(mixed, on):
    system = openmm.XmlSerializer.clone(mixed)
    common.ml_force(system).setProperty("useCUDAGraphs", "true" if on else "false")
    return system


def describe_device(platform_name):
    device = common.gpu() if platform_name == "CUDA" else None
    return device or common.cpu_model()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=2000, help="timed steps per row (default 2000)")
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--platform", default="CUDA")
    parser.add_argument("--precision", default="mixed")
    parser.add_argument("--json")
    parser.add_argument("--markdown")
    args = parser.parse_args()

    platform = openmm.Platform.getPlatformByName(args.platform)
    properties = {"Precision": args.precision} if args.platform in ("CUDA", "OpenCL") else {}
    device = torch.device("cuda" if args.platform == "CUDA" and torch.cuda.is_available() else "cpu")
    print(common.machine_header(), flush=True)
    inputs = common.load("complex")
    topology, system, crd, ligand = inputs.topology, inputs.system, inputs.inpcrd, inputs.ligand
    model = openmmhybrid.models.createModel("ani1x", topology, ligand)
    mixed = createMixedSystem(topology, system, ligand, model, correctionGroup=ML_GROUP)
    # Minimized once (the shipped coordinates are not minimized for ANI-1x); every row starts there.
    start = common.minimized(mixed, crd.boxVectors, crd.positions, platform, properties, iterations=300)
    steps, warmup = args.steps, args.warmup
    rows = []

    def row(label, system_, integrator, steps_=steps):
        t0 = time.perf_counter()
        nsday, ms = ns_per_day(system_, start, crd.boxVectors, integrator, platform, properties, steps_, warmup)
        rows.append({"row": label, "ns_per_day": nsday, "ms_per_step": ms, "steps": steps_})
        print(f"{label:<44s} {nsday:10.1f} ns/day  {ms:8.3f} ms/step   ({time.perf_counter() - t0:.0f} s)", flush=True)

    positions = np.array(crd.positions.value_in_unit(unit.nanometer))[ligand]
    eager, graphed = model_times(model, positions, device, 200)
    print(f"model forward+backward: eager {eager:.3f} ms, graphed {graphed if graphed is None else round(graphed, 3)} ms", flush=True)

    row("(a) MM, LangevinMiddle 2 fs", system, langevin())
    row("(b) ML/MM every step, graphs", with_graphs(mixed, True), langevin())
    row("(b') ML/MM every step, no graphs", with_graphs(mixed, False), langevin())
    row("(e) mixed System without the MLForce (ligand frozen)", common.without_ml(mixed, ligand), langevin())
    for inner in (2, 4):
        integrator = openmmhybrid.MTSLangevinIntegrator(300 * unit.kelvin, 1 / unit.picosecond, inner * 0.002 * unit.picoseconds,
                                                        mtsGroups(mixed, ML_GROUP, inner))
        row(f"(c) ML/MM MTS, outer {2 * inner} fs / inner 2 fs, graphs", with_graphs(mixed, True), integrator, max(steps // inner, 10))
    row("(d) PythonForce on the ligand (openmm-ml)", python_force_system(mixed, model, ligand, device), langevin(), max(steps // 4, 10))

    by = {r["row"][:4]: r for r in rows}
    step_b, step_b0, step_e = by["(b) "]["ms_per_step"], by["(b')"]["ms_per_step"], by["(e) "]["ms_per_step"]
    summary = {
        "overhead_graphs_us": (step_b - step_e) * 1e3 - (graphed if graphed is not None else eager) * 1e3,
        "overhead_no_graphs_us": (step_b0 - step_e) * 1e3 - eager * 1e3,
        "b_over_d": by["(b) "]["ns_per_day"] / by["(d) "]["ns_per_day"],
        "c_over_a": max(r["ns_per_day"] for r in rows if r["row"].startswith("(c)")) / by["(a) "]["ns_per_day"],
        "model_eager_ms": eager, "model_graphed_ms": graphed,
    }
    machine = common.machine()
    info = {"date": machine["date"], "device": describe_device(args.platform),
            "platform": args.platform, "precision": args.precision, "openmm": machine["openmm"],
            "torch": machine["torch"], "steps": steps, "atoms": system.getNumParticles(), "ml_atoms": len(ligand),
            "machine": machine}
    print(json.dumps(summary, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"info": info, "rows": rows, "summary": summary}, f, indent=1)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(f"{info['date']}, {info['device']}, OpenMM {info['openmm']}, torch {info['torch']}, {args.platform} "
                    f"{args.precision} precision, {info['atoms']} atoms, ANI-1x on {len(ligand)}, {steps} timed steps\n\n"
                    f"{common.machine_header()}\n\n")
            f.write("| run | ns/day | ms/step |\n| --- | ---: | ---: |\n")
            for r in rows:
                f.write(f"| {r['row']} | {r['ns_per_day']:.1f} | {r['ms_per_step']:.3f} |\n")
            f.write(f"\nModel forward+backward: eager {eager:.3f} ms, graphed "
                    f"{'-' if graphed is None else f'{graphed:.3f}'} ms.  Overhead beyond the model per evaluation: "
                    f"{summary['overhead_graphs_us']:.0f} us with graphs, {summary['overhead_no_graphs_us']:.0f} us without.  "
                    f"(b)/(d) = {summary['b_over_d']:.2f}; best (c)/(a) = {summary['c_over_a']:.2f}.\n")


if __name__ == "__main__":
    sys.exit(main())
