"""Forward + backward time of openmmhybrid's static-shape ANI1x against torchani's own ANI-1x, on CPU.

Both models come from the same weight files (torchani 2.2.4's ``resources/ani-1x_8x``).  One
evaluation is the energy plus its gradient with respect to the positions (what an MD step needs).
Compared, in float32 and float64:

- ``ours``: :class:`openmmhybrid.models.ani.ANI1x`, scripted with ``torch.jit.script`` (as MLForce
  runs it), positions in nm;
- ``torchani``: :func:`openmmhybrid.models.ani.torchaniANI1x` (torchani's pipeline,
  SpeciesConverter -> AEVComputer -> Ensemble -> EnergyShifter), eager and ``torch.jit.script``-ed,
  coordinates in Angstrom.

Molecules: p-xylene (residue TMP of examples/data/pxylene-water, 18 atoms) and p-xylene with its
nearest whole waters (``--waters``, a comma-separated list, default 9: 45 atoms; 0, 9, 27, 44, 94
give 18, 45, 99, 150 and 300 atoms).  With ``--compiled``, ours is also compiled ahead of time by
:func:`openmmhybrid.compileModel` (AOTInductor: energy and forces in one call of native code, as
MLForce runs a ``.pt2`` package).  With ``--memory``, the peak memory of one forward + backward
of ours and of torchani's scripted model is measured in a child process each (Linux: the rise of
the peak resident set size, VmHWM, over the resident size before the evaluation, after a
warm-up evaluation).  Prints a markdown table.

Usage::

    python benchmarks/bench_ani1x.py [--threads N] [--repeats 300] [--warmup 30] [--waters 0,9,27,44,94]
                                     [--compiled] [--memory]
"""
import argparse
import os
import sys
import warnings

import numpy as np
import openmm.unit as unit
import torch

from openmmhybrid.models.ani import ANI1x, torchaniANI1x

import common


def load_molecules(waters):
    """{name: (atomic numbers, positions in nm)} for p-xylene with each number of its nearest
    waters in ``waters`` (a list; 0: p-xylene alone)."""
    if isinstance(waters, int):
        waters = [0, waters] if waters else [0]
    inputs = common.load("pxylene")
    prmtop, inpcrd = inputs.prmtop, inputs.inpcrd
    positions = np.asarray(inpcrd.getPositions(asNumpy=True).value_in_unit(unit.nanometer))
    box = np.array([inpcrd.getBoxVectors()[i][i].value_in_unit(unit.nanometer) for i in range(3)])
    residues = list(prmtop.topology.residues())
    ligand = [r for r in residues if r.name == common.LIGAND][0]
    ligand_atoms = [a.index for a in ligand.atoms()]
    ligand_positions = positions[ligand_atoms]
    centre = ligand_positions.mean(axis=0)
    alone = ([a.element.atomic_number for a in ligand.atoms()], ligand_positions)
    molecules = {}
    if 0 in waters:
        molecules["p-xylene"] = alone
    if any(w > 0 for w in waters):
        candidates = []
        for residue in residues:
            if residue.name not in ("HOH", "WAT"):
                continue
            atoms = list(residue.atoms())
            oxygen = [a for a in atoms if a.element.atomic_number == 8][0]
            # Image the whole water next to the ligand (minimum image of its oxygen).
            shift = -box * np.round((positions[oxygen.index] - centre) / box)
            water = positions[[a.index for a in atoms]] + shift
            distance = np.linalg.norm(ligand_positions - water[atoms.index(oxygen)], axis=1).min()
            candidates.append((distance, [a.element.atomic_number for a in atoms], water))
        candidates.sort(key=lambda c: c[0])
        for count in sorted(w for w in waters if w > 0):
            numbers = list(alone[0])
            coordinates = [ligand_positions]
            for _, z, xyz in candidates[:count]:
                numbers += z
                coordinates.append(xyz)
            molecules[f"p-xylene + {count} waters"] = (numbers, np.concatenate(coordinates))
    return molecules


def _rss_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _child_peak(impl, waters, dtype_name, threads):
    """In a child process: the peak memory (MiB) of one forward + backward above the resident size
    before it, after one warm-up evaluation."""
    if threads is not None:
        torch.set_num_threads(threads)
    numbers, positions = list(load_molecules([waters]).values())[0]
    dtype = getattr(torch, dtype_name)
    if impl == "ours":
        step, _ = ours_step(torch.jit.script(ANI1x(numbers)), positions, dtype)
    else:
        model = torchaniANI1x() if dtype == torch.float32 else torchaniANI1x().double()
        step, _ = torchani_step(torch.jit.script(model), numbers, positions, dtype)
    step()
    import gc
    gc.collect()
    before = _rss_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:  # resets VmHWM to the current resident size
        f.write("5")
    step()
    return max(0, _rss_kib("VmHWM") - before) / 1024.0


def peak_memory(impl, waters, dtype, threads):
    """:func:`_child_peak` in a fresh interpreter, or None where it cannot be measured."""
    import subprocess
    code = (f"import sys; sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r}); import bench_ani1x; "
            f"print(bench_ani1x._child_peak({impl!r}, {waters}, {str(dtype).replace('torch.', '')!r}, {threads!r}))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    try:
        return float(result.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None


def time_it(step, warmup, repeats):
    """Median and minimum wall time of ``step()`` in ms."""
    return common.median_min(common.repeated(step, repeats, warmup), 1e3)


def ours_step(model, positions, dtype):
    x = torch.tensor(positions, dtype=dtype, requires_grad=True)

    def step():
        energy = model(x)
        torch.autograd.grad(energy, x)
    return step, lambda: model(x.detach()).item()


def compiled_step(model, positions, dtype):
    """One call of the AOTInductor package compiled from `model` (energy and forces)."""
    import tempfile
    from openmmhybrid import compileModel

    path = os.path.join(tempfile.mkdtemp(prefix="bench-ani-"), "ani.pt2")
    compileModel(model, len(positions), path, usesDoublePrecision=(dtype == torch.float64))
    runner = torch._inductor.aoti_load_package(path)
    x = torch.tensor(positions, dtype=dtype)
    return lambda: runner(x)


def torchani_step(model, numbers, positions, dtype):
    species = torch.tensor([numbers])
    x = torch.tensor(positions * 10.0, dtype=dtype).unsqueeze(0).requires_grad_()

    def step():
        energy = model((species, x)).energies.sum()
        torch.autograd.grad(energy, x)
    return step, lambda: model((species, x.detach())).energies.item()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    parser.add_argument("--repeats", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--waters", default="0,9", help="numbers of waters added to p-xylene, comma-separated (0: alone)")
    parser.add_argument("--compiled", action="store_true", help="also time ours compiled with openmmhybrid.compileModel")
    parser.add_argument("--memory", action="store_true", help="also measure the peak memory of ours and torchani's")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message=".*torch.jit.*", category=DeprecationWarning)

    waterCounts = [int(w) for w in str(args.waters).split(",") if w.strip()]
    molecules = load_molecules(waterCounts)
    counts = dict(zip(molecules, sorted(waterCounts)))
    # float32 as built (its self energies stay float64; .float() would round them to float32), and .double().
    reference = {torch.float32: torchaniANI1x(), torch.float64: torchaniANI1x().double()}
    try:
        reference_scripted = {dtype: torch.jit.script(model) for dtype, model in reference.items()}
    except Exception as error:  # noqa: BLE001 - report and go on without it
        print(f"torchani's model could not be scripted ({str(error).splitlines()[0]}); eager only", file=sys.stderr)
        reference_scripted = None

    rows = []
    for name, (numbers, positions) in molecules.items():
        model = torch.jit.script(ANI1x(numbers))
        for dtype in (torch.float32, torch.float64):
            step, energy = ours_step(model, positions, dtype)
            ours = time_it(step, args.warmup, args.repeats)
            ours_energy = energy() / model.hartreeToKJPerMol
            step, energy = torchani_step(reference[dtype], numbers, positions, dtype)
            eager = time_it(step, args.warmup, args.repeats)
            difference = abs(energy() - ours_energy)
            scripted = None
            if reference_scripted is not None:
                step, _ = torchani_step(reference_scripted[dtype], numbers, positions, dtype)
                scripted = time_it(step, args.warmup, args.repeats)
            compiled = None
            if args.compiled:
                compiled = time_it(compiled_step(ANI1x(numbers), positions, dtype), args.warmup, args.repeats)
            memory = None
            if args.memory:
                memory = (peak_memory("ours", counts[name], dtype, args.threads),
                          peak_memory("torchani", counts[name], dtype, args.threads))
            rows.append((name, len(numbers), str(dtype).replace("torch.", ""), ours, eager, scripted, difference, compiled,
                         memory))

    def cell(t):
        return "n/a" if t is None else f"{t[0]:.2f} / {t[1]:.2f}"

    def ratio(t, ours):
        return "n/a" if t is None else f"{t[0] / ours[0]:.2f}x"

    print(f"ANI-1x forward + backward on CPU, {torch.get_num_threads()} threads, {args.repeats} repeats after "
          f"{args.warmup} warm-up; times in ms as median / min; ratios of medians (torchani / ours)")
    print()
    print(common.machine_header())
    print()
    def mib(value):
        return "n/a" if value is None else f"{value:.1f}"

    print("| molecule | atoms | dtype | ours (scripted) | torchani eager | torchani scripted "
          "| eager / ours | scripted / ours | abs(dE) vs torchani (Ha) | ours compiled | scripted / compiled "
          "| peak MiB ours | peak MiB torchani |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, atoms, dtype, ours, eager, scripted, difference, compiled, memory in rows:
        print(f"| {name} | {atoms} | {dtype} | {cell(ours)} | {cell(eager)} | {cell(scripted)} "
              f"| {ratio(eager, ours)} | {ratio(scripted, ours)} | {difference:.1e} | {cell(compiled)} "
              f"| {'n/a' if compiled is None else f'{ours[0] / compiled[0]:.2f}x'} "
              f"| {mib(memory[0] if memory else None)} | {mib(memory[1] if memory else None)} |")


if __name__ == "__main__":
    main()
