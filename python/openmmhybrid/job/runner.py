"""Set up and run an ML/MM simulation from a config (what ``openmm-hybrid run`` does).

:func:`prepare` builds the run and checks it; :func:`runJob` then goes through its steps in order:
set up, start fresh or resume from the checkpoint, run the production steps, and finish (final
state, timings, report).
"""
import json
import math
import os
import time
import warnings
from dataclasses import dataclass
from typing import Callable, Optional

import openmm
import openmm.app as app
import openmm.unit as unit

from .. import adapters, models
from ..integrators import MTSLangevinIntegrator, mtsGroups
from ..linkatoms import linkAtomSetup
from ..mixed import createMixedSystem
from ..mlforce import MLForce
from ..models.ani import ANI
from ..regionmodel import isModelFile, resolveModel, withRegionCharge
from ..utils import LAMBDA_PARAMETER, firstLine, freeForceGroups
from .config import ConfigError, SETTINGS, settingByName
from .inputs import Inputs, readInputs, selectRegion
from .outputs import FILES, outputPaths
from .preparing import prepareFromConfig
from .report import writeReport
from .reporters import (CheckpointReporter, EnergyReporter, ProgressReporter, truncateCsv, truncateDcd,
                        vacuumEnergyFunction)

__all__ = ["prepare", "runJob", "Job", "RESUMABLE_CHANGES", "buildMixedSystem", "MixedBuild", "modelArguments", "platformOf",
           "machineDescription"]

KJ = unit.kilojoule_per_mole

#: Settings that may differ between a run and its ``--resume``; any other change is refused.
#: Input files are compared by name, so a moved project folder can be resumed.
RESUMABLE_CHANGES = {"steps", "progress", "report", "threads", "output", "cuda_graphs", "compile"}

#: ``compile``'s automatic default compiles a region of at most this many model atoms: the compiled
#: package holds every pair and triple of the region, and from about 40 atoms TorchScript's
#: neighbour lists are faster (docs/benchmarks.md, "ANI-1x: model cost").
AUTO_COMPILE_MAX_ATOMS = 32

#: ... for a run of at least this many model evaluations: compiling takes 15-45 s and saves about
#: 1-2 ms per evaluation of an 18-atom ANI-1x on one core (docs/benchmarks.md, "T4L ns/day"), so
#: it pays from about 20,000 evaluations.
AUTO_COMPILE_MIN_EVALUATIONS = 20000


@dataclass
class Job:
    """A run that is set up and ready to go (what :func:`prepare` returns)."""

    #: The checked settings (see :mod:`openmmhybrid.job.config`).
    config: dict[str, object]
    #: What was read from the input files.
    inputs: Inputs
    #: The topology of the whole system.
    topology: app.Topology
    #: The ML/MM System (with the barostat, when there is a pressure).
    system: openmm.System
    #: The Simulation, at the starting coordinates.
    simulation: app.Simulation
    #: The ML region's atom indices.
    mlAtoms: list[int]
    #: The force group of the ML force.
    mlGroup: int
    #: The force group of the MM terms the ML force replaces.
    correctionGroup: int
    #: Whether the embedding is electrostatic.
    electrostatic: bool
    #: ``f(positions_nm, box_nm)``: the region's vacuum-model energy in kJ/mol (times lambda), to
    #: split the embedding energy from the ML energy; None when that split is not possible.
    vacuumEnergy: Optional[Callable[..., float]]
    #: The name of the OpenMM platform the Simulation runs on.
    platformName: str
    #: The potential energy at the starting coordinates, in kJ/mol.
    startEnergy: float
    #: The link atoms that cap the bonds the region cuts (None: it cuts none, or link_atoms is off).
    linkAtoms: Optional[object] = None


# -- prepare: build the System, integrator and Simulation ------------------------------------------


def prepare(config, log=print):
    """Read the inputs, build the ML/MM System, integrator and Simulation, and evaluate the energy
    once.  Everything that can be wrong with the input fails here, before any long work, with a
    :class:`ConfigError` of one line.  Returns a :class:`Job`."""
    platform, properties = platformOf(config)
    built = buildMixedSystem(config, log)
    inputs, mlAtoms, system = built.inputs, built.mlAtoms, built.system
    integrator = _integrator(config, system, {built.correctionGroup, built.mlGroup})
    simulation, energy = _simulation(config, inputs, system, integrator, platform, properties)
    electrostatic = config["embedding"] == "electrostatic"
    return Job(config=config, inputs=inputs, topology=inputs.topology, system=system, simulation=simulation,
               mlAtoms=mlAtoms, mlGroup=built.mlGroup, correctionGroup=built.correctionGroup,
               electrostatic=electrostatic,
               vacuumEnergy=_vacuum_energy(config, built.module, mlAtoms, system, built.links) if electrostatic
               else None, platformName=platform.getName(), startEnergy=energy, linkAtoms=built.links)


@dataclass
class MixedBuild:
    """The ML/MM System of a config, and what it was built from (:func:`buildMixedSystem`)."""

    inputs: Inputs
    mlAtoms: list
    #: The region's link atoms (None: it cuts no bond, or link_atoms is off).
    links: Optional[object]
    #: The region's model (a module, before createMixedSystem wraps it).
    module: object
    system: openmm.System
    correctionGroup: int
    mlGroup: int


def buildMixedSystem(config, log=print, interpolate=None, inputs=None):
    """Read the inputs (unless ``inputs`` are given), pick the ML region, resolve the model and
    build the ML/MM System with the ML force and its correction in two free force groups.

    ``interpolate``: whether the correction is scaled by the lambda parameter (default: when the
    config's lambda is not 1; the free-energy legs always do).  Raises :class:`ConfigError`."""
    model = config["model"]
    if isModelFile(model) and not os.path.isfile(model):
        raise ConfigError(f"the model file '{model}' does not exist")
    if inputs is None:
        inputs = readInputs(config)
    mlAtoms = selectRegion(config, inputs.topology, inputs)
    links = _link_atoms(config, inputs, mlAtoms)
    try:
        modelArgs = withRegionCharge(model, modelArguments(config), inputs.system, mlAtoms)
        module = resolveModel(model, inputs.topology, mlAtoms, modelArgs, links=links)
    except (ValueError, FileNotFoundError, ImportError, TypeError) as error:
        raise ConfigError(f"model {model!r}: {firstLine(error).replace('createMixedSystem: ', '')}") from None
    try:
        correctionGroup, mlGroup = freeForceGroups(inputs.system, 2, "the ML correction")
    except ValueError as error:
        raise ConfigError(str(error)) from None
    if interpolate is None:
        interpolate = _interpolates(config)
    if config["compile"] is None:
        numModelAtoms = len(mlAtoms) + (len(links.bonds) if links else 0)
        config["compile"] = _compiles(config, module, numModelAtoms)
        if config["compile"]:
            log(f"openmm-hybrid: compile is unset, and compiling is the faster path here ({numModelAtoms} model atoms, "
                f"{config['platform']} platform, a run of {AUTO_COMPILE_MIN_EVALUATIONS} or more model evaluations); "
                "set compile = false to skip it")
    system = _mixed_system(config, inputs, mlAtoms, module, correctionGroup, mlGroup, log, interpolate)
    return MixedBuild(inputs, mlAtoms, links, module, system, correctionGroup, mlGroup)


def modelArguments(config):
    """The keyword arguments of a named model from ``[ml]``: ``model_options``, ``model_path``
    (``modelPath``; for ani2x, its ``weightsDir``) and ``charge``; None when none is set.  Raises
    ConfigError when they are set for a model file, which takes none, or when the model takes no
    charge."""
    args = dict(config["model_options"] or {})
    if config["model_path"] is not None:
        args["weightsDir" if config["model"].lower() == "ani2x" else "modelPath"] = config["model_path"]
    if config["charge"] is not None:
        args["charge"] = config["charge"]
    if args and isModelFile(config["model"]):
        raise ConfigError(f"model_path, charge and model_options are for a model given by name; model = "
                          f"'{config['model']}' is a TorchScript file, which takes none of them (remove them, or give "
                          "a name)")
    if "charge" in args and not models.takesCharge(config["model"]):
        raise ConfigError(f"the model {config['model']!r} has no total-charge input, so charge cannot be set; remove it "
                          "(`openmm-hybrid models` says which models take one)")
    return args or None


def platformOf(config):
    """(the OpenMM Platform of ``config``, its properties: Precision, Threads); ConfigError when the
    platform is not available here."""
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


def _link_atoms(config, inputs, mlAtoms):
    """The region's link atoms as createMixedSystem will make them (None without cut bonds or with
    ``link_atoms = false``), so that a named model is built for the region and its caps."""
    if not config["link_atoms"]:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # createMixedSystem gives the same warnings, and they are logged there
            return linkAtomSetup(inputs.topology, inputs.system, mlAtoms, placement=config["link_atom_placement"],
                                 chargeScheme=config["link_atom_charges"] if config["embedding"] == "electrostatic"
                                 else None)
    except ValueError as error:
        raise ConfigError(firstLine(error).replace("createMixedSystem: ", "")) from None


def _compiles(config, module, numModelAtoms):
    """``compile``'s automatic default: whether compiling is the faster path for this run (see
    :data:`AUTO_COMPILE_MAX_ATOMS` and :data:`AUTO_COMPILE_MIN_EVALUATIONS`)."""
    evaluations = (config["steps"] + config["equilibration_steps"]) // config["inner_steps"]
    # The built-in ANI models are the ones whose compiled path is tested and measured.
    return (config["platform"] in ("CPU", "Reference") and isinstance(module, ANI)
            and numModelAtoms <= AUTO_COMPILE_MAX_ATOMS and evaluations >= AUTO_COMPILE_MIN_EVALUATIONS)


def _interpolates(config):
    """Whether the ML correction is scaled by a lambda other than 1 (a global parameter of the Context)."""
    return config["lambda"] != 1.0


def _mixed_system(config, inputs, mlAtoms, module, correctionGroup, mlGroup, log, interpolate):
    """The ML/MM System: the MM System with the ML force in ``mlGroup``, the replaced MM terms in
    ``correctionGroup``, and a barostat when there is a pressure."""
    if config["compile"]:
        log("openmm-hybrid: compiling the model ahead of time (AOTInductor; 10-60 s)")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            system = createMixedSystem(inputs.topology, inputs.system, mlAtoms, module,
                                       interpolate=interpolate, correctionGroup=correctionGroup,
                                       usesDoublePrecision=config["model_double"], compile=config["compile"],
                                       embedding=config["embedding"], cutoff=config["embedding_cutoff"],
                                       linkAtoms=config["link_atoms"], linkAtomPlacement=config["link_atom_placement"],
                                       linkAtomCharges=config["link_atom_charges"])
        for warning in caught:
            if not issubclass(warning.category, (DeprecationWarning, PendingDeprecationWarning, FutureWarning)):
                log(f"warning: {warning.message}")  # torch's deprecation notices are not the user's to act on
    except (ValueError, NotImplementedError) as error:
        raise ConfigError(firstLine(error).replace("createMixedSystem: ", "")) from None
    for force in system.getForces():
        if MLForce.isinstance(force):
            force.setForceGroup(mlGroup)
            MLForce.cast(force).setProperty("useCUDAGraphs", "true" if config["cuda_graphs"] else "false")
    if config["pressure"] is not None:
        if not system.usesPeriodicBoundaryConditions():
            raise ConfigError("pressure needs a periodic system (a box); this one has none")
        barostat = openmm.MonteCarloBarostat(config["pressure"], config["temperature"], config["barostat_interval"])
        if config["seed"]:
            barostat.setRandomNumberSeed(config["seed"])
        system.addForce(barostat)
    return system


def _integrator(config, system, outerGroups):
    """Langevin dynamics; with ``inner_steps`` > 1, multiple time steps with ``outerGroups`` (the ML
    force and its correction) on the outer step."""
    if config["inner_steps"] == 1:
        integrator = openmm.LangevinMiddleIntegrator(config["temperature"], config["friction"], config["timestep"])
    else:
        groups = mtsGroups(system, outerGroups, config["inner_steps"])
        integrator = MTSLangevinIntegrator(config["temperature"], config["friction"], config["timestep"], groups)
    if config["seed"]:
        integrator.setRandomNumberSeed(config["seed"])
    return integrator


def _simulation(config, inputs, system, integrator, platform, properties):
    """The Simulation at the input's coordinates, and its potential energy in kJ/mol (finite)."""
    try:
        simulation = app.Simulation(inputs.topology, system, integrator, platform, properties)
        if inputs.box is not None:
            simulation.context.setPeriodicBoxVectors(*inputs.box)
        simulation.context.setPositions(inputs.positions)
        if _interpolates(config):
            simulation.context.setParameter(LAMBDA_PARAMETER, config["lambda"])
        if system.getNumConstraints():
            simulation.context.applyConstraints(integrator.getConstraintTolerance())
        state = simulation.context.getState(getEnergy=True)
    except openmm.OpenMMException as error:
        raise ConfigError(firstLine(error)) from None
    energy = state.getPotentialEnergy().value_in_unit(KJ)
    if not math.isfinite(energy):
        raise ConfigError(f"the starting energy is {energy}: check the coordinates (overlapping atoms?) and the model")
    return simulation, energy


def _vacuum_energy(config, module, mlAtoms, system, links):
    """The vacuum-model energy of the region (and its caps) for an electrostatic embedding, or None
    for a model that takes the MM environment itself (its energy has no vacuum part to split off)."""
    scripted = adapters.scriptModule(module, "openmm-hybrid")
    if adapters.takesEnvironment(scripted):
        return None
    atoms = list(mlAtoms)
    periodic = system.usesPeriodicBoundaryConditions()
    if links is not None:
        module = links.wrap(scripted, periodic and adapters.takesBox(scripted))
        atoms += links.mmAtoms
    return vacuumEnergyFunction(module, atoms, periodic, config["model_double"], config["lambda"])


# -- runJob: set up, start or resume, run, finish --------------------------------------------------


def runJob(config, resume=False, dryRun=False, log=print):
    """Run the simulation ``config`` describes (see :mod:`openmmhybrid.job.config`) and write its
    outputs to ``config['output']``.  Returns the output folder."""
    out = config["output"]
    if not resume:
        prepareFromConfig(config, log, checkOnly=dryRun)
    job = _set_up(config, resume, dryRun, log)
    if dryRun:
        log("openmm-hybrid: dry run: the input is consistent; nothing was simulated")
        return out
    paths = outputPaths(out)
    checkpoint = CheckpointReporter(paths["checkpoint"], config["checkpoint_interval"])
    first = _resume(job, paths, log) if resume else _start(job, paths, checkpoint, log)
    log(f"openmm-hybrid: running {config['steps'] - first} steps -> {out}/")
    wall = _run(job, paths, first, checkpoint, append=resume)
    _finish(job, paths, first, wall, log)
    return out


def _set_up(config, resume, dryRun, log):
    """Check the output folder (and, to resume, its checkpoint and settings), :func:`prepare` the
    run and log what it is."""
    out = config["output"]
    _check_output(out, create=not dryRun)
    if resume:
        _check_resume(config, out)
    log(f"openmm-hybrid: setting up ({config['platform']} platform)")
    start = time.perf_counter()
    job = prepare(config, log=log)
    system = job.system
    mode = (f"MTS: ML every {config['timestep']}, MM every {config['timestep'] / config['inner_steps']}"
            if config["inner_steps"] > 1 else f"time step {config['timestep']}")
    log(f"  input:     {job.inputs.description}: {system.getNumParticles()} atoms"
        + (", periodic" if system.usesPeriodicBoundaryConditions() else ", no box"))
    log(f"  ML region: {len(job.mlAtoms)} atoms, model {config['model']}, {config['embedding']} embedding"
        + (f", lambda {config['lambda']}" if _interpolates(config) else ""))
    if job.linkAtoms is not None:
        scheme = f", charges {config['link_atom_charges'].upper()}" if job.electrostatic else ""
        log(f"  link atoms: {len(job.linkAtoms.bonds)} cut bond(s) capped with hydrogen ({config['link_atom_placement']}"
            f" placement{scheme})")
        for line in job.linkAtoms.summary(job.topology):
            log(f"    {line}")
    log(f"  dynamics:  Langevin {config['temperature']}, {mode}"
        + (f", {config['pressure']}" if config["pressure"] is not None else "") + f", {config['steps']} steps")
    log(f"  start energy {job.startEnergy:.2f} kJ/mol (set-up took {time.perf_counter() - start:.1f} s)")
    return job


def _check_output(out, create):
    """The output must be a writable folder; ``create`` makes it when it does not exist."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise ConfigError(f"the output '{out}' is a file, not a folder; give another output")
    if not create:
        return
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as error:
        raise ConfigError(f"cannot create the output folder '{out}': {error.strerror}") from None
    if not os.access(out, os.W_OK):
        raise ConfigError(f"the output folder '{out}' is not writable")


def _check_resume(config, out):
    """The output folder has a checkpoint and its run used the same settings, but for
    :data:`RESUMABLE_CHANGES`."""
    path = os.path.join(out, FILES["settings"])
    checkpoint = os.path.join(out, FILES["checkpoint"])
    if not os.path.isfile(checkpoint) or not os.path.isfile(path):
        raise ConfigError(f"--resume: there is no checkpoint in '{out}'; run without --resume first")
    try:
        with open(path) as f:
            saved = json.load(f)["settings"]
    except (ValueError, KeyError, TypeError) as error:
        raise ConfigError(f"--resume: '{path}' is damaged ({firstLine(error)}); start a new run") from None
    current = _settings_record(config)
    changed = [k for k in current if k not in RESUMABLE_CHANGES and k in saved
               and _comparable(k, saved[k]) != _comparable(k, current[k])]
    if changed:
        k = changed[0]
        raise ConfigError(f"--resume: '{k}' was {saved[k]!r} for the checkpointed run and is now {current[k]!r}; a "
                          f"resumed run must use the same settings (only {', '.join(sorted(RESUMABLE_CHANGES))} may "
                          "change)")


def _settings_record(config):
    """The settings as run.json stores them: quantities as text with their unit."""
    record = {}
    for s in SETTINGS:
        value = config[s.name]
        if isinstance(value, unit.Quantity):
            value = f"{value.value_in_unit(s.unit):.12g} {s.unit.get_symbol()}"
        record[s.name] = value
    return record


def _comparable(name, value):
    """A setting's value as resuming compares it: files by name only."""
    setting = settingByName(name)
    kind = setting.kind if setting is not None else None
    if kind == "path" and isinstance(value, str):
        return os.path.basename(value)
    if kind == "paths" and isinstance(value, list):
        return [os.path.basename(v) for v in value]
    if name == "model" and isinstance(value, str):
        return os.path.basename(value)
    return value


def _resume(job, paths, log):
    """Load the checkpoint and cut the outputs back to its step; returns that step."""
    config, simulation = job.config, job.simulation
    try:
        with open(paths["checkpoint"], "rb") as f:
            simulation.context.loadCheckpoint(f.read())
    except openmm.OpenMMException as error:
        raise ConfigError(f"--resume: cannot load '{paths['checkpoint']}' ({firstLine(error)}); checkpoints only "
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
        raise ConfigError(f"--resume: the outputs in '{config['output']}' are damaged ({firstLine(error)}); start a "
                          "new run") from None
    log(f"openmm-hybrid: resuming at step {first} of {config['steps']}")
    return first


def _minimizes(config, inputs):
    """``minimize``; when it is not set: yes, unless the input has velocities (an equilibrated start)."""
    if config["minimize"] is None:
        return inputs.velocities is None
    return config["minimize"]


def _start(job, paths, checkpoint, log):
    """Minimize, set the velocities and equilibrate; then write the starting structure, run.json and
    the first checkpoint, and remove a previous run's outputs.  Returns the first step, 0."""
    config, simulation = job.config, job.simulation
    if _minimizes(config, job.inputs):
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
        try:
            simulation.step(config["equilibration_steps"])
        except (openmm.OpenMMException, FloatingPointError, ValueError) as error:
            raise RuntimeError(f"the equilibration failed at step {simulation.currentStep}: {firstLine(error)}. A "
                               "smaller timestep (or fewer inner_steps), a longer minimization, or checking the "
                               "structure usually helps") from None
        simulation.reporters = []
    simulation.currentStep = 0
    simulation.context.setTime(0)
    state = simulation.context.getState(getPositions=True, enforcePeriodicBox=False)
    with open(paths["structure"], "w") as f:
        app.PDBFile.writeFile(job.topology, state.getPositions(), f, keepIds=True)
    with open(paths["settings"], "w") as f:
        json.dump({"settings": _settings_record(config)}, f, indent=1)
    stale = [k for k in ("trajectory", "energies", "final", "report") if os.path.exists(paths[k])]
    if stale:
        log(f"openmm-hybrid: replacing the previous run's outputs in {config['output']}/ (use --resume to continue "
            "it)")
    for k in stale:
        os.remove(paths[k])
    checkpoint.save(simulation)
    return 0


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
    """Atoms to superimpose on for the ligand RMSD: the C-alpha atoms outside the region, else the
    region's heavy atoms; and the atoms whose RMSD is reported, the region's heavy atoms."""
    region = set(mlAtoms)
    ca = [a.index for a in topology.atoms() if a.name == "CA" and a.element is not None
          and a.element.symbol == "C" and a.index not in region]
    atoms = list(topology.atoms())
    heavy = [a for a in mlAtoms if atoms[a].element is None or atoms[a].element.symbol != "H"] or list(mlAtoms)
    return (ca if len(ca) >= 3 else heavy), heavy


def _run(job, paths, first, checkpoint, append):
    """Run from step ``first`` to ``steps`` with the energy, trajectory, checkpoint and progress
    reporters (``append``: continue the outputs of a resumed run), and write a checkpoint at the
    end; returns the wall time of the steps in s.

    Ctrl-C writes the reports due at the current step and a checkpoint, then raises
    KeyboardInterrupt; a failed step raises RuntimeError."""
    config, simulation = job.config, job.simulation
    reference = app.PDBFile(paths["structure"]).getPositions(asNumpy=True).value_in_unit(unit.angstrom)
    fitAtoms, rmsdAtoms = _fit_atoms(job.topology, job.mlAtoms)
    energies = EnergyReporter(paths["energies"], config["report_interval"], job.system, job.mlGroup,
                              job.vacuumEnergy, reference, fitAtoms, rmsdAtoms, job.electrostatic, append=append)
    tracked = [_Tracked(energies, config["report_interval"])]
    if config["trajectory_interval"]:
        dcd = app.DCDReporter(paths["trajectory"], config["trajectory_interval"],
                              append=append and os.path.exists(paths["trajectory"]), enforcePeriodicBox=False)
        tracked.insert(0, _Tracked(dcd, config["trajectory_interval"]))
    progress = ProgressReporter(config["steps"], first, config["timestep"], enabled=config["progress"])
    simulation.reporters = tracked + [checkpoint, progress]
    start = time.perf_counter()
    try:
        simulation.step(max(config["steps"] - first, 0))
        wall = time.perf_counter() - start
    except KeyboardInterrupt:
        for reporter in tracked:
            reporter.catchUp(simulation)
        checkpoint.save(simulation)
        raise KeyboardInterrupt(f"interrupted at step {simulation.currentStep}; continue with --resume") from None
    except (openmm.OpenMMException, FloatingPointError, ValueError) as error:
        raise RuntimeError(f"the simulation failed at step {simulation.currentStep}: {firstLine(error)}. A smaller "
                           "timestep (or fewer inner_steps), a longer minimization, or checking the structure usually "
                           "helps; the last checkpoint is in the output folder.") from None
    finally:
        energies.close()
    checkpoint.save(simulation)
    return wall


def _finish(job, paths, first, wall, log):
    """Write the final state, add the timing of the steps from ``first`` (``wall`` seconds) to
    run.json, and write report.md."""
    config, simulation = job.config, job.simulation
    steps = simulation.currentStep - first
    state = simulation.context.getState(getPositions=True, getVelocities=True, getEnergy=True, getParameters=True)
    with open(paths["final"], "w") as f:
        f.write(openmm.XmlSerializer.serialize(state))
    nsPerDay = (steps * config["timestep"].value_in_unit(unit.nanosecond) / wall * 86400
                if wall > 0 and steps > 0 else float("nan"))
    with open(paths["settings"]) as f:
        record = json.load(f)
    if steps > 0:
        record.setdefault("segments", []).append({
            "first_step": first, "last_step": simulation.currentStep, "wall_seconds": wall, "ns_per_day": nsPerDay,
            "platform": job.platformName, "date": time.strftime("%Y-%m-%d %H:%M"), "machine": machineDescription()})
    record["summary"] = {"atoms": job.system.getNumParticles(), "ml_atoms": len(job.mlAtoms),
                         "input": job.inputs.description}
    with open(paths["settings"], "w") as f:
        json.dump(record, f, indent=1)
    if steps > 0:
        log(f"openmm-hybrid: {steps} steps in {wall:.1f} s ({nsPerDay:.3g} ns/day)")
    else:
        log(f"openmm-hybrid: the run is already at step {first}; nothing left to run")
    if config["report"]:
        log(f"openmm-hybrid: report: {writeReport(config['output'])}")
    written = [name for role, name in FILES.items() if os.path.exists(paths[role])]
    log(f"openmm-hybrid: outputs in {config['output']}/: {', '.join(written)}")


def machineDescription():
    """The machine a segment ran on, for run.json and the fe result."""
    import platform
    return f"{platform.machine()}, {os.cpu_count()} CPUs"
