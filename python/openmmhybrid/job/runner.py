"""Set up and run an ML/MM simulation from a config (what ``openmm-hybrid run`` does)."""
import json
import math
import os
import time

import openmm
import openmm.app as app
import openmm.unit as unit

from .. import adapters
from ..integrators import MTSLangevinIntegrator, mtsGroups
from ..mixed import LAMBDA_PARAMETER, createMixedSystem
from ..mlforce import MLForce
from ..regionmodel import isModelFile, resolveModel
from ..utils import groupsInUse
from .config import ConfigError, SETTINGS, settingByName
from .inputs import oneLine as _one_line, readInputs, selectRegion
from .reporting import (CheckpointReporter, EnergyReporter, ProgressReporter, truncateCsv, truncateDcd,
                        vacuumEnergyFunction)

__all__ = ["prepare", "runJob", "Job", "RESUMABLE_CHANGES"]

KJ = unit.kilojoule_per_mole

#: Settings that may differ between a run and its ``--resume``; any other change is refused.
#: Input files are compared by name, so a moved project folder can be resumed.
RESUMABLE_CHANGES = {"steps", "progress", "report", "threads", "output", "cuda_graphs"}

FILES = {"trajectory": "trajectory.dcd", "energies": "energies.csv", "checkpoint": "checkpoint.chk",
         "structure": "start.pdb", "settings": "run.json", "final": "final_state.xml", "report": "report.md"}


class Job:
    """A run that is set up and ready to go: ``simulation``, ``topology``, ``mlAtoms``, ``mlGroup``,
    ``correctionGroup``, ``vacuumEnergy`` and the config."""


def _free_groups(system, count):
    used = groupsInUse(system)
    free = [g for g in range(32) if g not in used]
    if len(free) < count:
        raise ConfigError("the System uses every force group; openmm-hybrid needs two free ones for the ML correction")
    return free[:count]


def _platform(config):
    name = config["platform"]
    names = [openmm.Platform.getPlatform(i).getName() for i in range(openmm.Platform.getNumPlatforms())]
    if name not in names:
        raise ConfigError(f"the {name} platform is not available here (available: {', '.join(names)})")
    properties = {}
    if config["precision"] is not None:
        properties["Precision"] = config["precision"]
    if config["threads"] is not None:
        properties["Threads"] = str(config["threads"])
    return openmm.Platform.getPlatformByName(name), properties


def prepare(config, log=print):
    """Read the inputs, build the ML/MM System, integrator and Simulation, and evaluate the energy
    once.  Everything that can be wrong with the input fails here, before any long work, with a
    :class:`ConfigError` of one line."""
    platform, properties = _platform(config)
    model = config["model"]
    if isModelFile(model) and not os.path.isfile(model):
        raise ConfigError(f"the model file '{model}' does not exist")
    inputs = readInputs(config)
    topology = inputs.topology
    mlAtoms = selectRegion(config, topology)
    try:
        module = resolveModel(model, topology, mlAtoms)
    except (ValueError, FileNotFoundError, ImportError, TypeError) as error:
        raise ConfigError(f"model {model!r}: {_one_line(error)}") from None

    correctionGroup, mlGroup = _free_groups(inputs.system, 2)
    interpolate = config["lambda"] != 1.0
    electrostatic = config["embedding"] == "electrostatic"
    if config["compile"]:
        log("openmm-hybrid: compiling the model ahead of time (AOTInductor; 10-60 s)")
    try:
        import warnings
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            system = createMixedSystem(topology, inputs.system, mlAtoms, module, interpolate=interpolate,
                                       correctionGroup=correctionGroup, usesDoublePrecision=config["model_double"],
                                       compile=config["compile"],
                                       embedding=config["embedding"], cutoff=config["embedding_cutoff"])
        for warning in caught:
            log(f"warning: {warning.message}")
    except (ValueError, NotImplementedError) as error:
        raise ConfigError(_one_line(error).replace("createMixedSystem: ", "")) from None
    for force in system.getForces():
        if MLForce.isinstance(force):
            force.setForceGroup(mlGroup)
            MLForce.cast(force).setProperty("useCUDAGraphs", "true" if config["cuda_graphs"] else "false")
    if config["pressure"] is not None:
        if not system.usesPeriodicBoundaryConditions():
            raise ConfigError("pressure needs a periodic system (a box); this one has none")
        system.addForce(openmm.MonteCarloBarostat(config["pressure"], config["temperature"],
                                                  config["barostat_interval"]))

    if config["inner_steps"] == 1:
        integrator = openmm.LangevinMiddleIntegrator(config["temperature"], config["friction"], config["timestep"])
    else:
        groups = mtsGroups(system, {correctionGroup, mlGroup}, config["inner_steps"])
        integrator = MTSLangevinIntegrator(config["temperature"], config["friction"], config["timestep"], groups)
    if config["seed"]:
        integrator.setRandomNumberSeed(config["seed"])
        if config["pressure"] is not None:
            system.getForce(system.getNumForces() - 1).setRandomNumberSeed(config["seed"])
    try:
        simulation = app.Simulation(topology, system, integrator, platform, properties)
        if inputs.box is not None:
            simulation.context.setPeriodicBoxVectors(*inputs.box)
        simulation.context.setPositions(inputs.positions)
        if interpolate:
            simulation.context.setParameter(LAMBDA_PARAMETER, config["lambda"])
        if system.getNumConstraints():
            simulation.context.applyConstraints(integrator.getConstraintTolerance())
        state = simulation.context.getState(getEnergy=True)
    except openmm.OpenMMException as error:
        raise ConfigError(_one_line(error)) from None
    energy = state.getPotentialEnergy().value_in_unit(KJ)
    if not math.isfinite(energy):
        raise ConfigError(f"the starting energy is {energy}: check the coordinates (overlapping atoms?) and the model")

    job = Job()
    job.config, job.inputs, job.topology, job.system = config, inputs, topology, system
    job.simulation, job.mlAtoms, job.mlGroup, job.correctionGroup = simulation, mlAtoms, mlGroup, correctionGroup
    job.electrostatic = electrostatic
    takesEnvironment = electrostatic and adapters.takesEnvironment(adapters.scriptModule(module, "openmm-hybrid"))
    job.vacuumEnergy = None if takesEnvironment or not electrostatic else vacuumEnergyFunction(
        module, mlAtoms, system.usesPeriodicBoundaryConditions(), config["model_double"], config["lambda"])
    job.platformName = platform.getName()
    job.startEnergy = energy
    return job


def _settings_record(config):
    record = {}
    for s in SETTINGS:
        value = config[s.name]
        if isinstance(value, unit.Quantity):
            value = f"{value.value_in_unit(s.unit):.12g} {s.unit.get_symbol()}"
        record[s.name] = value
    return record


def _check_resume(config, out):
    path = os.path.join(out, FILES["settings"])
    checkpoint = os.path.join(out, FILES["checkpoint"])
    if not os.path.isfile(checkpoint) or not os.path.isfile(path):
        raise ConfigError(f"--resume: there is no checkpoint in '{out}'; run without --resume first")
    try:
        with open(path) as f:
            saved = json.load(f)["settings"]
    except (ValueError, KeyError, TypeError) as error:
        raise ConfigError(f"--resume: '{path}' is damaged ({_one_line(error)}); start a new run") from None
    current = _settings_record(config)
    changed = [k for k in current if k not in RESUMABLE_CHANGES and k in saved
               and _comparable(k, saved[k]) != _comparable(k, current[k])]
    if changed:
        k = changed[0]
        raise ConfigError(f"--resume: '{k}' was {saved[k]!r} for the checkpointed run and is now {current[k]!r}; a "
                          f"resumed run must use the same settings (only {', '.join(sorted(RESUMABLE_CHANGES))} may "
                          "change)")


def _comparable(name, value):
    setting = settingByName(name)
    kind = setting.kind if setting is not None else None
    if kind == "path" and isinstance(value, str):
        return os.path.basename(value)
    if kind == "paths" and isinstance(value, list):
        return [os.path.basename(v) for v in value]
    if name == "model" and isinstance(value, str):
        return os.path.basename(value)
    return value


def _prepare_output(out, dryRun):
    if os.path.exists(out) and not os.path.isdir(out):
        raise ConfigError(f"the output '{out}' is a file, not a folder; give another output")
    if dryRun:
        return
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as error:
        raise ConfigError(f"cannot create the output folder '{out}': {error.strerror}") from None
    if not os.access(out, os.W_OK):
        raise ConfigError(f"the output folder '{out}' is not writable")


class _Tracked:
    """A reporter that remembers the last step it reported (to finish a report after Ctrl-C)."""

    def __init__(self, reporter, interval):
        self.reporter, self.interval, self.lastStep = reporter, interval, None

    def describeNextReport(self, simulation):
        return self.reporter.describeNextReport(simulation)

    def report(self, simulation, state):
        self.reporter.report(simulation, state)
        self.lastStep = simulation.currentStep

    def catchUp(self, simulation):
        """Write the report due at the current step if the interrupt came before it."""
        step = simulation.currentStep
        if step % self.interval == 0 and self.lastStep != step:
            state = simulation.context.getState(getPositions=True, getVelocities=True, getEnergy=True,
                                                enforcePeriodicBox=False)
            self.report(simulation, state)


def _fit_atoms(topology, mlAtoms):
    """Atoms to superimpose on for the ligand RMSD: the C-alpha atoms outside the region, else the region."""
    region = set(mlAtoms)
    ca = [a.index for a in topology.atoms() if a.name == "CA" and a.element is not None
          and a.element.symbol == "C" and a.index not in region]
    atoms = list(topology.atoms())
    heavy = [a for a in mlAtoms if atoms[a].element is None or atoms[a].element.symbol != "H"] or list(mlAtoms)
    return (ca if len(ca) >= 3 else heavy), heavy


def runJob(config, resume=False, dryRun=False, log=print):
    """Run the simulation ``config`` describes (see :mod:`openmmhybrid.job.config`) and write its
    outputs to ``config['output']``.  Returns the output folder."""
    out = config["output"]
    _prepare_output(out, dryRun)
    if resume:
        _check_resume(config, out)
    log(f"openmm-hybrid: setting up ({config['platform']} platform)")
    start = time.perf_counter()
    job = prepare(config, log=log)
    simulation, topology, system = job.simulation, job.topology, job.system
    mode = (f"MTS: ML every {config['timestep']}, MM every {config['timestep'] / config['inner_steps']}"
            if config["inner_steps"] > 1 else f"time step {config['timestep']}")
    log(f"  input:     {job.inputs.description}: {system.getNumParticles()} atoms"
        + (", periodic" if system.usesPeriodicBoundaryConditions() else ", no box"))
    log(f"  ML region: {len(job.mlAtoms)} atoms, model {config['model']}, {config['embedding']} embedding"
        + (f", lambda {config['lambda']}" if config["lambda"] != 1 else ""))
    log(f"  dynamics:  Langevin {config['temperature']}, {mode}"
        + (f", {config['pressure']}" if config["pressure"] is not None else "") + f", {config['steps']} steps")
    log(f"  start energy {job.startEnergy:.2f} kJ/mol (set-up took {time.perf_counter() - start:.1f} s)")
    if dryRun:
        log("openmm-hybrid: dry run: the input is consistent; nothing was simulated")
        return out

    paths = {k: os.path.join(out, v) for k, v in FILES.items()}
    checkpoint = CheckpointReporter(paths["checkpoint"], config["checkpoint_interval"])
    if resume:
        try:
            with open(paths["checkpoint"], "rb") as f:
                simulation.context.loadCheckpoint(f.read())
        except openmm.OpenMMException as error:
            raise ConfigError(f"--resume: cannot load '{paths['checkpoint']}' ({_one_line(error)}); checkpoints only "
                              "load on the platform and machine that wrote them") from None
        first = simulation.currentStep
        if first > config["steps"]:
            raise ConfigError(f"--resume: the checkpoint is at step {first}, past steps = {config['steps']}; give a "
                              "larger --steps to extend the run")
        try:
            truncateCsv(paths["energies"], first)
            if config["trajectory_interval"]:
                truncateDcd(paths["trajectory"], first // config["trajectory_interval"])
        except (ValueError, IndexError, OSError) as error:
            raise ConfigError(f"--resume: the outputs in '{out}' are damaged ({_one_line(error)}); start a new run") \
                from None
        log(f"openmm-hybrid: resuming at step {first} of {config['steps']}")
    else:
        if config["minimize"]:
            log(f"openmm-hybrid: minimizing (at most {config['minimize_iterations'] or 'unlimited'} iterations)")
            t = time.perf_counter()
            simulation.minimizeEnergy(maxIterations=config["minimize_iterations"])
            e = simulation.context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(KJ)
            log(f"  energy {job.startEnergy:.2f} -> {e:.2f} kJ/mol in {time.perf_counter() - t:.1f} s")
        if job.inputs.velocities is not None:
            simulation.context.setVelocities(job.inputs.velocities)
        else:
            simulation.context.setVelocitiesToTemperature(config["temperature"], config["seed"] or
                                                          int.from_bytes(os.urandom(3), "little"))
        if config["equilibration_steps"]:
            log(f"openmm-hybrid: equilibrating for {config['equilibration_steps']} steps")
            simulation.reporters = [ProgressReporter(config["equilibration_steps"], 0, config["timestep"],
                                                     "equilibration", enabled=config["progress"])]
            simulation.step(config["equilibration_steps"])
            simulation.reporters = []
        simulation.currentStep = 0
        simulation.context.setTime(0)
        first = 0
        state = simulation.context.getState(getPositions=True, enforcePeriodicBox=False)
        with open(paths["structure"], "w") as f:
            app.PDBFile.writeFile(topology, state.getPositions(), f, keepIds=True)
        with open(paths["settings"], "w") as f:
            json.dump({"settings": _settings_record(config)}, f, indent=1)
        stale = [k for k in ("trajectory", "energies", "final", "report") if os.path.exists(paths[k])]
        if stale:
            log(f"openmm-hybrid: replacing the previous run's outputs in {out}/ (use --resume to continue it)")
        for k in stale:
            os.remove(paths[k])
        checkpoint.save(simulation)

    reference = app.PDBFile(paths["structure"]).getPositions(asNumpy=True).value_in_unit(unit.angstrom)
    fitAtoms, rmsdAtoms = _fit_atoms(topology, job.mlAtoms)
    energies = EnergyReporter(paths["energies"], config["report_interval"], system, job.mlGroup, job.vacuumEnergy,
                              reference, fitAtoms, rmsdAtoms, job.electrostatic, append=resume)
    progress = ProgressReporter(config["steps"], first, config["timestep"], enabled=config["progress"])
    tracked = [_Tracked(energies, config["report_interval"])]
    if config["trajectory_interval"]:
        dcd = app.DCDReporter(paths["trajectory"], config["trajectory_interval"],
                              append=resume and os.path.exists(paths["trajectory"]), enforcePeriodicBox=False)
        tracked.insert(0, _Tracked(dcd, config["trajectory_interval"]))
    simulation.reporters = tracked + [checkpoint, progress]
    remaining = config["steps"] - first
    log(f"openmm-hybrid: running {remaining} steps -> {out}/")
    wall = time.perf_counter()
    try:
        simulation.step(max(remaining, 0))
    except KeyboardInterrupt:
        for reporter in tracked:
            reporter.catchUp(simulation)
        checkpoint.save(simulation)
        energies.close()
        raise KeyboardInterrupt(f"interrupted at step {simulation.currentStep}; continue with --resume") from None
    except (openmm.OpenMMException, FloatingPointError, ValueError) as error:
        energies.close()
        raise RuntimeError(f"the simulation failed at step {simulation.currentStep}: {_one_line(error)}. A smaller "
                           "timestep (or fewer inner_steps), a longer minimization, or checking the structure usually "
                           "helps; the last checkpoint is in the output folder.") from None
    wall = time.perf_counter() - wall
    energies.close()
    checkpoint.save(simulation)
    state = simulation.context.getState(getPositions=True, getVelocities=True, getEnergy=True,
                                        getParameters=True)
    with open(paths["final"], "w") as f:
        f.write(openmm.XmlSerializer.serialize(state))
    nsPerDay = remaining * config["timestep"].value_in_unit(unit.nanosecond) / wall * 86400 \
        if wall > 0 and remaining > 0 else float("nan")
    with open(paths["settings"]) as f:
        record = json.load(f)
    if remaining > 0:
        record.setdefault("segments", []).append({
            "first_step": first, "last_step": simulation.currentStep, "wall_seconds": wall, "ns_per_day": nsPerDay,
            "platform": job.platformName, "date": time.strftime("%Y-%m-%d %H:%M"), "machine": _machine()})
    record["summary"] = {"atoms": system.getNumParticles(), "ml_atoms": len(job.mlAtoms),
                         "input": job.inputs.description}
    with open(paths["settings"], "w") as f:
        json.dump(record, f, indent=1)
    if remaining > 0:
        log(f"openmm-hybrid: {remaining} steps in {wall:.1f} s ({nsPerDay:.3g} ns/day)")
    else:
        log(f"openmm-hybrid: the run is already at step {first}; nothing left to run")
    if config["report"]:
        from .report import writeReport
        report = writeReport(out)
        log(f"openmm-hybrid: report: {report}")
    log(f"openmm-hybrid: outputs in {out}/: {', '.join(v for k, v in FILES.items() if os.path.exists(paths[k]))}")
    return out


def _machine():
    import platform as _p
    return f"{_p.machine()}, {os.cpu_count()} CPUs"
