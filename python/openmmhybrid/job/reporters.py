"""The OpenMM reporters attached to a run's Simulation: energy components as CSV, a progress bar and
checkpoints; and the file surgery that lets ``--resume`` continue the outputs exactly where the
checkpoint left them."""
import csv
import math
import os
import struct
import sys
import time

import numpy as np
import openmm
import openmm.unit as unit

from ..mlforce import MLForce
from ..regionmodel import regionModel
from ..utils import degreesOfFreedom
from .outputs import CSV_COLUMNS

__all__ = ["EnergyReporter", "ProgressReporter", "CheckpointReporter", "truncateCsv", "truncateDcd", "kabschRmsd",
           "vacuumEnergyFunction"]

KJ = unit.kilojoule_per_mole


def kabschRmsd(reference, positions, fitAtoms, rmsdAtoms):
    """RMSD of ``rmsdAtoms`` between two [n, 3] arrays after the least-squares superposition of
    ``fitAtoms`` (Kabsch), in the units of the input."""
    ref = reference[fitAtoms]
    cur = positions[fitAtoms]
    refCenter, curCenter = ref.mean(axis=0), cur.mean(axis=0)
    h = (cur - curCenter).T @ (ref - refCenter)
    u, _, vt = np.linalg.svd(h)
    d = np.sign(np.linalg.det(u @ vt))
    rotation = u @ np.diag([1.0, 1.0, d]) @ vt
    moved = (positions[rmsdAtoms] - curCenter) @ rotation + refCenter
    return float(np.sqrt(((moved - reference[rmsdAtoms]) ** 2).sum(axis=1).mean()))


class EnergyReporter:
    """One CSV row every ``interval`` steps: the potential split into its ML, embedding and MM
    parts, kinetic and total energy, temperature, ligand RMSD and box volume.

    The parts add up to the potential:

    - ``ML``: the model's energy of the region (times lambda), the force group ``mlGroup``
      minus the embedding energy;
    - ``embedding``: with electrostatic embedding, the ML-MM electrostatic energy the model
      adds (times lambda); empty with mechanical embedding, where that coupling is MM;
    - ``MM``: the rest, i.e. the MM energy with the region's internal MM terms taken out.

    ``vacuumEnergy(positions, box)``, when given, returns the region's vacuum-model energy in
    kJ/mol (times lambda); the embedding energy is the ML group's energy minus it.
    """

    def __init__(self, path, interval, system, mlGroup, vacuumEnergy, reference, fitAtoms, rmsdAtoms,
                 electrostatic, append=False):
        self._interval = interval
        self._mlGroup = mlGroup
        self._vacuumEnergy = vacuumEnergy
        self._electrostatic = electrostatic
        self._reference = reference
        self._fitAtoms, self._rmsdAtoms = fitAtoms, rmsdAtoms
        self._dof = degreesOfFreedom(system)
        self._periodic = system.usesPeriodicBoundaryConditions()
        self._file = open(path, "a" if append else "w", newline="")
        self._writer = csv.writer(self._file)
        if not append:
            self._writer.writerow(CSV_COLUMNS)
            self._file.flush()

    def describeNextReport(self, simulation):
        steps = self._interval - simulation.currentStep % self._interval
        return {"steps": steps, "periodic": False, "include": ["positions", "velocities", "energy"]}

    def components(self, context, state):
        """(potential, ML, embedding or None, MM) in kJ/mol for the Context's current positions."""
        potential = state.getPotentialEnergy().value_in_unit(KJ)
        group = context.getState(getEnergy=True, groups={self._mlGroup}).getPotentialEnergy().value_in_unit(KJ)
        embedding = None
        ml = group
        if self._electrostatic and self._vacuumEnergy is not None:
            positions = state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
            box = state.getPeriodicBoxVectors(asNumpy=True).value_in_unit(unit.nanometer) if self._periodic else None
            ml = self._vacuumEnergy(positions, box)
            embedding = group - ml
        mm = potential - group
        return potential, ml, embedding, mm

    def report(self, simulation, state):
        potential, ml, embedding, mm = self.components(simulation.context, state)
        kinetic = state.getKineticEnergy().value_in_unit(KJ)
        temperature = 2 * kinetic / (self._dof * unit.MOLAR_GAS_CONSTANT_R.value_in_unit(KJ / unit.kelvin))
        positions = state.getPositions(asNumpy=True).value_in_unit(unit.angstrom)
        rmsd = kabschRmsd(self._reference, positions, self._fitAtoms, self._rmsdAtoms)
        volume = state.getPeriodicBoxVolume().value_in_unit(unit.nanometer ** 3) if self._periodic else None
        row = [simulation.currentStep, f"{state.getTime().value_in_unit(unit.picosecond):.6f}", f"{potential:.6f}",
               f"{ml:.6f}", "" if embedding is None else f"{embedding:.6f}", f"{mm:.6f}", f"{kinetic:.6f}",
               f"{potential + kinetic:.6f}", f"{temperature:.4f}", f"{rmsd:.5f}",
               "" if volume is None else f"{volume:.6f}"]
        self._writer.writerow(row)
        self._file.flush()
        if not all(math.isfinite(x) for x in (potential, ml, mm, kinetic)):
            raise FloatingPointError(f"the energy became {potential} kJ/mol at step {simulation.currentStep}")

    def close(self):
        self._file.close()


class ProgressReporter:
    """A progress bar on stderr: percentage, step, ns/day and time left.

    On a terminal it redraws one line; elsewhere (a log file, CI) it prints a line every 10%.
    """

    def __init__(self, totalSteps, firstStep, timestep, label="production", stream=None, enabled=True):
        self._total = totalSteps
        self._first = firstStep
        self._timestep_ns = timestep.value_in_unit(unit.nanosecond)
        self._label = label
        self._stream = stream or sys.stderr
        self._enabled = enabled and totalSteps > firstStep
        self._tty = hasattr(self._stream, "isatty") and self._stream.isatty()
        self._interval = max(1, (totalSteps - firstStep) // (200 if self._tty else 10))
        self._start = None
        self._lastDecile = -1

    def describeNextReport(self, simulation):
        if self._start is None:
            self._start = (time.perf_counter(), simulation.currentStep)
        steps = self._interval - (simulation.currentStep - self._first) % self._interval
        return {"steps": steps, "periodic": None, "include": []}

    def speed(self, step):
        """(ns/day, seconds left) since the first report."""
        if self._start is None or step <= self._start[1]:
            return float("nan"), float("nan")
        elapsed = time.perf_counter() - self._start[0]
        rate = (step - self._start[1]) / elapsed
        return rate * self._timestep_ns * 86400, (self._total - step) / rate

    def report(self, simulation, state):
        if not self._enabled:
            return
        step = simulation.currentStep
        fraction = (step - self._first) / (self._total - self._first)
        nsPerDay, left = self.speed(step)
        width = 30
        filled = int(round(width * min(fraction, 1.0)))
        line = (f"{self._label} [{'#' * filled}{'.' * (width - filled)}] {100 * fraction:5.1f}%  step {step}/{self._total}"
                f"  {nsPerDay:.3g} ns/day  {_clock(left)} left")
        if self._tty:
            self._stream.write("\r" + line + ("\n" if step >= self._total else ""))
            self._stream.flush()
        else:
            decile = int(10 * fraction + 1e-9)
            if decile != self._lastDecile:
                self._lastDecile = decile
                self._stream.write(line + "\n")
                self._stream.flush()


def _clock(seconds):
    if not math.isfinite(seconds):
        return "--:--"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class CheckpointReporter:
    """Writes ``simulation.saveCheckpoint`` every ``interval`` steps, atomically (a crash while
    writing leaves the previous checkpoint)."""

    def __init__(self, path, interval):
        self._path, self._interval = path, interval

    def describeNextReport(self, simulation):
        return {"steps": self._interval - simulation.currentStep % self._interval, "periodic": None, "include": []}

    def report(self, simulation, state):
        self.save(simulation)

    def save(self, simulation):
        temporary = self._path + ".tmp"
        simulation.saveCheckpoint(temporary)
        os.replace(temporary, self._path)


def truncateCsv(path, lastStep):
    """Drop the rows of a run's CSV written after ``lastStep`` (a run that died after its last checkpoint)."""
    if not os.path.exists(path):
        return
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    kept = rows[:1] + [r for r in rows[1:] if r and int(r[0]) <= lastStep]
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(kept)


def truncateDcd(path, frames):
    """Keep the first ``frames`` frames of an OpenMM DCD file and fix its header.  An empty file
    (the DCDReporter opens it at once and writes the header with the first frame) is removed, so
    that the resumed run starts a new one."""
    if not os.path.exists(path):
        return
    if os.path.getsize(path) == 0:
        os.remove(path)
        return
    with open(path, "r+b") as f:
        header = f.read(100)
        if len(header) < 100 or header[4:8] != b"CORD":
            raise ValueError(f"'{path}' is not a DCD file")
        count, firstStep, interval = struct.unpack("<iii", header[8:20])
        hasBox = struct.unpack("<i", header[48:52])[0]
        f.seek(92)
        commentBytes = struct.unpack("<i", f.read(4))[0]
        f.seek(104 + commentBytes)
        numAtoms = struct.unpack("<i", f.read(4))[0]
        headerBytes = 112 + commentBytes
        frameBytes = (56 if hasBox else 0) + 3 * (4 * numAtoms + 8)
        if frames >= count:
            return
        f.truncate(headerBytes + frames * frameBytes)
        f.seek(8)
        f.write(struct.pack("<i", frames))
        f.seek(20)
        f.write(struct.pack("<i", firstStep + max(frames - 1, 0) * interval))


def vacuumEnergyFunction(module, atoms, periodic, double, scale):
    """``f(positions_nm, box_nm) -> scale * E_model(region)`` in kJ/mol, for the reporter.

    The model runs in an :class:`~openmmhybrid.MLForce` of a System that holds the region alone
    (Reference platform), so the region is made whole by the same code as in the run."""
    atoms = list(atoms)
    system = openmm.System()
    for _ in atoms:
        system.addParticle(1.0)
    if periodic:
        system.setDefaultPeriodicBoxVectors(openmm.Vec3(10, 0, 0), openmm.Vec3(0, 10, 0), openmm.Vec3(0, 0, 10))
    force = MLForce(regionModel(module, periodic, interpolate=False), list(range(len(atoms))),
                    usesPeriodicBoundaryConditions=periodic, usesDoublePrecision=double)
    system.addForce(force)
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))

    def energy(positions, box):
        if periodic:
            context.setPeriodicBoxVectors(*[openmm.Vec3(*row) for row in np.asarray(box, dtype=np.float64)])
        context.setPositions(np.asarray(positions, dtype=np.float64)[atoms])
        return scale * context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(KJ)

    return energy
