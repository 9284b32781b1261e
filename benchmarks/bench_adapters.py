"""Each model adapter through MLForce against the same model through openmm-ml's PythonForce path.

p-xylene (18 atoms, the ML region) in 1,054 TIP3P waters: PME 0.9 nm, HBonds,
LangevinMiddleIntegrator 1 fs (random weights move atoms more than trained ones), CPU platform.
For each adapter the model file is a random-weight model of the published architecture's size,
written by the library itself (``tests/python/zoo_<adapter>.py``, ``size="realistic"``):

  mace        MACE-OFF23-small's architecture (float64, as MACE-OFF ships)
  aimnet2     AIMNet2 wB97M-D3's architecture (float32, as aimnet ships it)
  torchmdnet  AceFF-1.0's TensorNet (float32)
  nequip      a NequIP model of the tutorial's size (float32): MLForce reads it as nequip-compile's
              TorchScript .nequip.pth, openmm-ml (nequip's load_saved_model, which cannot read that)
              as a .nequip.zip package of the same model (same builder and seed: the same weights)

Two Systems per adapter, built from the same model and timed interleaved in blocks (drift on a
shared machine hits both alike):

  MLForce     openmmhybrid.createMixedSystem(..., model=<name>, modelArgs={"modelPath": file})
  openmm-ml   openmmml.MLPotential(<name>, modelPath=file).createMixedSystem(..., mlLongRange=False
              except for AIMNet2, whose long-range terms openmm-ml knows):
              the library's model called from a PythonForce every step (openmm-ml's name for a
              local AIMNet2 file is 'aimnet')

plus the MM System alone, and ANI-1ccx against ANI-1x (both through MLForce).  Reports ms per step
(median and min over blocks) and the ratio openmm-ml / MLForce.

Usage: python benchmarks/bench_adapters.py [--adapters nequip,mace,aimnet2,torchmdnet,ani]
       [--blocks 3] [--steps 10] [--threads 2] [--model-threads N]
"""
import argparse
import os
import statistics
import sys
import tempfile
import warnings

import openmm
import openmm.unit as unit

import openmmhybrid

import common

sys.path.insert(0, os.path.join(common.ROOT, "tests", "python"))


def modelFile(adapter, folder):
    """(openmm-hybrid name, openmm-ml name, file for MLForce, file for openmm-ml, openmm-ml keyword
    arguments) of a realistic random-weight model of ``adapter``.  The two files are the same
    file, except for nequip: the adapter reads nequip-compile's TorchScript ``.nequip.pth``, which
    openmm-ml's nequip potential (nequip's ``load_saved_model``) cannot; it gets the same model
    (same builder, arguments and seed: the same weights) as a ``.nequip.zip`` package."""
    if adapter == "mace":
        import torch
        from zoo_mace import saveMACE
        path = saveMACE(os.path.join(folder, "mace.model"), size="realistic", dtype=torch.float64)
        return "mace", "mace", path, path, {}
    if adapter == "aimnet2":
        from zoo_aimnet2 import saveAIMNet2
        path = saveAIMNet2(os.path.join(folder, "aimnet2.pt"), size="realistic")
        return "aimnet2", "aimnet", path, path, {}
    if adapter == "torchmdnet":
        from zoo_torchmdnet import tensornet
        path = tensornet(os.path.join(folder, "tensornet.ckpt"), size="realistic")
        return "torchmdnet", "torchmdnet", path, path, {}
    if adapter == "nequip":
        from zoo_nequip import nequipModel, nequipPeerFile
        ours = nequipModel(os.path.join(folder, "nequip.nequip.pth"), size="realistic", dtype="float32")
        theirs = nequipPeerFile(os.path.join(folder, "nequip.nequip.zip"), size="realistic", dtype="float32")
        return "nequip", "nequip", ours, theirs, {"lengthScale": 0.1, "energyScale": 96.48533212331002}
    raise ValueError(f"unknown adapter {adapter!r}")


def withModelThreads(system, threads):
    """``system`` with its MLForce running the model on ``threads`` threads (MLForce's
    ``modelThreads``; its default on the CPU platform is 1, beside OpenMM's own threads)."""
    if threads is not None:
        common.ml_force(system).setProperty("modelThreads", str(threads))
    return system


def openmmMLSystem(name, path, kwargs, inputs):
    from openmmml import MLPotential
    potential = MLPotential(name, modelPath=path, **kwargs)
    # mlLongRange=False: the models are local (the region is whole and small); openmm-ml's AIMNet2
    # knows its own long-range terms and refuses the option.
    options = {} if name == "aimnet" else {"mlLongRange": False}
    return potential.createMixedSystem(inputs.topology, inputs.system, inputs.ligand, **options)


def timeSystems(systems, inputs, platform, properties, blocks, steps):
    contexts = {}
    for name, system in systems.items():
        integrator = openmm.LangevinMiddleIntegrator(300 * unit.kelvin, 1 / unit.picosecond, 1 * unit.femtosecond)
        integrator.setRandomNumberSeed(1)
        context = common.make_context(system, integrator, platform, inputs.inpcrd.boxVectors, inputs.inpcrd.positions,
                                      properties)
        integrator.step(3)  # first calls: TorchScript optimization, Warp kernels, caches
        contexts[name] = (context, integrator)

    def block(context, integrator):
        return lambda: (integrator.step(steps), context.getState(getEnergy=True))

    seconds = common.interleaved({name: block(*run) for name, run in contexts.items()}, blocks)
    return {name: [t / steps * 1e3 for t in samples] for name, samples in seconds.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--adapters", default="nequip,mace,aimnet2,torchmdnet,ani",
                        help="each runs in a process of its own (the libraries change process-wide state: "
                        "torch_geometric replaces torch.index_select, e3nn and nequip set global modes)")
    parser.add_argument("--rows-only", dest="rowsOnly", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--blocks", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--model-threads", dest="modelThreads", type=int, default=None,
                        help="MLForce's modelThreads (default: its own default, 1 on the CPU platform); openmm-ml's "
                        "PythonForce runs the model on torch's threads (--threads)")
    args = parser.parse_args()
    import torch
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    inputs = common.load("pxylene")
    platform = openmm.Platform.getPlatformByName("CPU")
    properties = {"Threads": str(args.threads)}
    adapters = args.adapters.split(",")
    if len(adapters) > 1 or not args.rowsOnly:
        return _perProcess(args, adapters)
    with tempfile.TemporaryDirectory() as folder:
        _rows(adapters[0], folder, inputs, platform, properties, args)
    return 0


def _perProcess(args, adapters):
    """The header, the MM row, then each adapter's rows from a process of its own."""
    import subprocess
    inputs = common.load("pxylene")
    platform = openmm.Platform.getPlatformByName("CPU")
    properties = {"Threads": str(args.threads)}
    print(f"# Adapters through MLForce against openmm-ml's PythonForce path; p-xylene in water (3,180 atoms), "
          f"PME 0.9 nm, HBonds, LangevinMiddle 1 fs, CPU platform, {args.threads} threads (OpenMM and torch), "
          f"MLForce modelThreads {args.modelThreads or 'default (1)'}; "
          f"{args.blocks} blocks of {args.steps} steps, interleaved; random-weight models of the published sizes")
    print()
    print(common.machine_header())
    print()
    print("| model | path | ms/step, median / min | openmm-ml / MLForce |")
    print("|---|---|---|---|")
    mm = timeSystems({"MM": inputs.system}, inputs, platform, properties, args.blocks, args.steps)["MM"]
    print(f"| (none) | MM alone | {statistics.median(mm):.2f} / {min(mm):.2f} | |")
    sys.stdout.flush()
    for adapter in adapters:
        command = [sys.executable, os.path.abspath(__file__), "--adapters", adapter, "--rows-only", "--blocks",
                   str(args.blocks), "--steps", str(args.steps), "--threads", str(args.threads)]
        if args.modelThreads is not None:
            command += ["--model-threads", str(args.modelThreads)]
        result = subprocess.run(command, capture_output=True, text=True)
        rows = [line for line in result.stdout.splitlines() if line.startswith("|")]
        print("\n".join(rows) if rows else f"| {adapter} | failed | {(result.stderr.strip().splitlines() or ['?'])[-1][:150]} | |")
        sys.stdout.flush()
    return 0


def _rows(adapter, folder, inputs, platform, properties, args):
    """The table rows of one adapter (or 'ani': ANI-1ccx against ANI-1x)."""
    if adapter == "ani":
        systems = {name: withModelThreads(openmmhybrid.createMixedSystem(inputs.topology, inputs.system,
                                                                         inputs.ligand, name), args.modelThreads)
                   for name in ("ani1x", "ani1ccx")}
        times = timeSystems(systems, inputs, platform, properties, args.blocks, args.steps)
        for name, t in times.items():
            print(f"| {name} | MLForce | {statistics.median(t):.2f} / {min(t):.2f} | |")
        ratio = statistics.median(times["ani1ccx"]) / statistics.median(times["ani1x"])
        print(f"| ani1ccx / ani1x | | {ratio:.2f} | |")
        return
    ours, theirs, path, peerPath, kwargs = modelFile(adapter, folder)
    systems = {"MLForce": withModelThreads(openmmhybrid.createMixedSystem(
        inputs.topology, inputs.system, inputs.ligand, ours, modelArgs={"modelPath": path}), args.modelThreads)}
    try:
        systems["openmm-ml"] = openmmMLSystem(theirs, peerPath, kwargs, inputs)
    except Exception as error:  # the peer's failure is reported, not fatal
        message = (str(error).splitlines() or [""])[0][:120]
        print(f"| {adapter} | openmm-ml | failed: {type(error).__name__}: {message} | |")
    times = timeSystems(systems, inputs, platform, properties, args.blocks, args.steps)
    base = statistics.median(times["MLForce"])
    for name, t in times.items():
        ratio = f"{statistics.median(t) / base:.2f}" if name == "openmm-ml" else ""
        print(f"| {adapter} | {name} | {statistics.median(t):.2f} / {min(t):.2f} | {ratio} |")
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
