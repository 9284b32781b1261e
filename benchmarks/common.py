"""What the benchmark scripts share: the shipped Amber inputs, timing loops, a machine header and
the MLForce helpers.

The scripts run as ``python benchmarks/bench_x.py`` from the repository root; Python puts the
script's folder on ``sys.path``, so ``import common`` finds this module.
"""
import datetime
import os
import platform
import shlex
import socket
import statistics
import subprocess
import sys
import time
from typing import NamedTuple

import openmm
import openmm.app as app
import openmm.unit as unit
import torch

import openmmhybrid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "examples", "data")

# name: (folder under examples/data, file stem of the .prmtop and .inpcrd)
SYSTEMS = {
    "pxylene": ("pxylene-water", "pxylene_water"),      # p-xylene in 1,054 TIP3P waters, 3,180 atoms
    "complex": ("t4l-l99a-pxylene-water", "complex"),   # T4 lysozyme L99A + p-xylene in water, 36,309 atoms
}
LIGAND = "TMP"  # the residue name of p-xylene, the ML region, in both


class Inputs(NamedTuple):
    prmtop: app.AmberPrmtopFile
    inpcrd: app.AmberInpcrdFile
    system: openmm.System
    ligand: list  # particle indices of residue TMP

    @property
    def topology(self):
        return self.prmtop.topology


def load(name, **options):
    """The shipped Amber inputs `name` (a key of SYSTEMS) and their MM System: PME with a 0.9 nm
    cutoff and HBonds constraints unless `options` (createSystem's keywords) say otherwise."""
    folder, stem = SYSTEMS[name]
    prmtop = app.AmberPrmtopFile(os.path.join(DATA, folder, stem + ".prmtop"))
    inpcrd = app.AmberInpcrdFile(os.path.join(DATA, folder, stem + ".inpcrd"))
    settings = dict(nonbondedMethod=app.PME, nonbondedCutoff=0.9 * unit.nanometer, constraints=app.HBonds)
    settings.update(options)
    system = prmtop.createSystem(**settings)
    return Inputs(prmtop, inpcrd, system, openmmhybrid.selectAtoms(prmtop.topology, residueName=LIGAND))


# ---- timing ---------------------------------------------------------------------------------------

def interleaved(functions, rounds, warmup=0, before=None):
    """Wall times in seconds of calls made in rotation, so that drift on a shared machine hits every
    function alike: {name: [seconds, one per round]}.  `warmup` untimed rounds come first;
    before(name, i), if given, runs untimed before the timed call of `name` in round i."""
    for _ in range(warmup):
        for function in functions.values():
            function()
    samples = {name: [] for name in functions}
    for i in range(rounds):
        for name, function in functions.items():
            if before is not None:
                before(name, i)
            start = time.perf_counter()
            function()
            samples[name].append(time.perf_counter() - start)
    return samples


def repeated(function, repeats, warmup=0, before=None):
    """Wall times in seconds of `repeats` calls of function() after `warmup` untimed ones;
    before(name, i) as in interleaved (name is None)."""
    return interleaved({None: function}, repeats, warmup, before)[None]


def median_min(samples, scale=1.0):
    """(median, minimum) of `samples`, times `scale` (1e3: seconds to ms, 1e6: to us)."""
    return statistics.median(samples) * scale, min(samples) * scale


def paired_median(a, b, scale=1.0):
    """The median over rounds of a - b (less sensitive to drift than the difference of medians)."""
    return statistics.median(x - y for x, y in zip(a, b)) * scale


# ---- simulations ----------------------------------------------------------------------------------

def make_context(system, integrator, platform_, box, positions, properties=None, temperature=300 * unit.kelvin):
    """A Context with the box and positions set and velocities drawn at `temperature` (seed 1)."""
    context = openmm.Context(system, integrator, platform_, properties or {})
    context.setPeriodicBoxVectors(*box)
    context.setPositions(positions)
    context.setVelocitiesToTemperature(temperature, 1)
    return context


def minimized(system, box, positions, platform_, properties=None, iterations=200):
    """Positions after `iterations` L-BFGS iterations (the shipped coordinates are not minimized
    for ANI-1x)."""
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), platform_, properties or {})
    context.setPeriodicBoxVectors(*box)
    context.setPositions(positions)
    openmm.LocalEnergyMinimizer.minimize(context, 10.0, iterations)
    return context.getState(getPositions=True).getPositions()


def time_steps(system, integrator, platform_, box, positions, steps, warmup, properties=None):
    """(seconds per step, potential energy in kJ/mol) of `steps` steps in a fresh Context after
    `warmup` steps; each end waits for the device with getState(getEnergy=True)."""
    context = make_context(system, integrator, platform_, box, positions, properties)
    integrator.step(warmup)
    context.getState(getEnergy=True)
    start = time.perf_counter()
    integrator.step(steps)
    state = context.getState(getEnergy=True)
    elapsed = time.perf_counter() - start
    return elapsed / steps, state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)


# ---- the MLForce in a System ----------------------------------------------------------------------

def ml_force_index(system):
    """The index of the (first) MLForce in `system`."""
    return next(i for i in range(system.getNumForces()) if openmmhybrid.MLForce.isinstance(system.getForce(i)))


def ml_force(system):
    """The (first) MLForce in `system`, as an MLForce."""
    return openmmhybrid.MLForce.cast(system.getForce(ml_force_index(system)))


def without_ml(mixed, ligand):
    """The mixed System without its MLForce, everything else evaluated as before.  Without the ML
    energy the ligand has no internal forces (the correction removed its MM ones), so it is frozen
    (zero masses, its constraints removed) to keep the run stable."""
    system = openmm.XmlSerializer.clone(mixed)
    system.removeForce(ml_force_index(system))
    frozen = set(ligand)
    for i in reversed(range(system.getNumConstraints())):
        a, b, _ = system.getConstraintParameters(i)
        if a in frozen or b in frozen:
            system.removeConstraint(i)
    for a in ligand:
        system.setParticleMass(a, 0.0)
    return system


def python_force(scripted, atoms, device=None):
    """The peer coupling (openmm-ml's): OpenMM's PythonForce on `atoms` running the TorchScript
    model `scripted` (positions in nm to energy in kJ/mol) on `device`."""
    def compute(state):
        pos = torch.tensor(state.getPositions(asNumpy=True)._value, dtype=torch.float32, device=device, requires_grad=True)
        energy = scripted(pos)
        grad, = torch.autograd.grad(energy, pos)
        return energy.item(), -grad.cpu().numpy()
    force = openmm.PythonForce(compute)
    force.setParticles(atoms)
    return force


# ---- what ran where -------------------------------------------------------------------------------

def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    if sys.platform == "darwin":
        try:
            return subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True).stdout.strip()
        except OSError:
            pass
    return platform.processor() or platform.machine()


def gpu():
    """'name (driver version)' of CUDA device 0, or None without one."""
    if not torch.cuda.is_available():
        return None
    try:
        driver = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True,
                                text=True).stdout.strip()
    except OSError:
        driver = "?"
    return f"{torch.cuda.get_device_name(0)} (driver {driver})"


def machine():
    """What a benchmark figure depends on, besides the script's own settings."""
    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "host": socket.gethostname(),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "os": platform.platform(),
        "openmm": openmm.version.full_version,
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch_threads": torch.get_num_threads(),
        "command": shlex.join(["python"] + sys.argv),
    }
    device = gpu()
    if device is not None:
        info["gpu"] = device
    return info


def machine_header():
    """Two markdown lines for the top of a benchmark's output: the machine and the command."""
    m = machine()
    gpu_part = f", GPU {m['gpu']}" if "gpu" in m else ""
    return (f"Machine: {m['date']}, host {m['host']}, {m['cpu']}, {m['cores']} cores{gpu_part}, {m['os']}; "
            f"OpenMM {m['openmm']}, torch {m['torch']} (CPU capability {m['cpu_capability']}, "
            f"{m['torch_threads']} threads)  \n"
            f"Command: `{m['command']}`")
