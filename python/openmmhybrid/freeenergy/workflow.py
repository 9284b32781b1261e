"""``openmm-hybrid fe``: the MM -> ML/MM correction of every leg of a binding or hydration free
energy, and ddG, from a config (:mod:`.config`).

What :func:`runFreeEnergy` does:

1. **Set up and check** every leg here, before any long work: read its inputs, take the vacuum
   leg's molecule out of the water leg where asked, build the ML/MM System with lambda
   (:func:`openmmhybrid.job.runner.buildMixedSystem`, the construction ``openmm-hybrid run`` uses),
   minimize a start without velocities, and check that the two legs of a ligand have the same ML
   region.  The offset of a ligand (the region's ML - MM energy difference at the first leg's
   start, a constant that cancels in ddG) is taken off every leg's estimate, so that reduced
   potentials and works stay of the order of kT.
2. **Run the tasks** (:func:`~.tasks.runJobs`): MBAR windows, or NEQ end states then switches,
   here or on Dask; each writes its result atomically into ``OUTPUT/tasks``, keyed by the leg's
   settings and the contents of its input files, so ``--resume`` reruns nothing finished.
3. **Analyze** whatever is done: ``result.json``, ``results.csv``, ``report.md`` with plots, and
   the reduced potentials of each MBAR leg as alchemlyb's ``u_nk`` DataFrame
   (``u_nk/<ligand>-<leg>.parquet``) or the works of each NEQ leg (``works/<ligand>-<leg>.csv``).
"""
import csv
import datetime
import functools
import hashlib
import json
import math
import os
import time
import warnings

import numpy as np
import openmm
import openmm.unit as unit

from ..job.config import ConfigError
from ..job.inputs import Inputs, readInputs, selectRegion
from ..utils import firstLine
from .estimators import kT
from .protocols import runProtocolTask
from .report import FILES as REPORT_FILES, _safe, writeReport
from .sampling import Leg
from .tasks import ResultStore, daskClient, gpuCount, runJobs

__all__ = ["runFreeEnergy", "analyzeFreeEnergy", "buildLeg", "FILES"]

#: The files of an fe output folder (the report's own from :mod:`.report`).
FILES = {"plan": "plan.json", "result": "result.json", **REPORT_FILES}

#: Settings that do not change a leg's numbers' meaning, left out of its key (so a calculation can
#: be resumed on another platform or with other threads).
_UNKEYED = {"output", "progress", "report", "platform", "precision", "threads", "cuda_graphs", "steps",
            "report_interval", "trajectory_interval", "checkpoint_interval", "_config_file", "seed"}

_LEGS = {}  # the legs this process has built: key -> Leg (each Dask worker builds a leg once)


def _jsonable(value):
    if unit.is_quantity(value):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def _digest(path):
    """sha256 of a file, or of a folder's files (a prepared folder)."""
    h = hashlib.sha256()
    files = [path] if os.path.isfile(path) else sorted(
        os.path.join(root, f) for root, _, names in os.walk(path) for f in names)
    for name in files:
        h.update(os.path.relpath(name, path).encode() if name != path else b"")
        with open(name, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def _inputFiles(config):
    files = []
    for key in ("prmtop", "inpcrd", "pdb", "system", "state", "prepared", "sdf"):
        if config.get(key) is not None:
            files.append(config[key])
    files += [f for f in (config.get("forcefield") or []) if os.path.exists(f)]
    for key in ("model", "model_path"):
        if config.get(key) and os.path.exists(str(config[key])):
            files.append(config[key])
    return files


def legKey(config, extractedFrom, method, protocolSettings, seed):
    """(key, record): the key of a leg's results, a hash of the record (its settings, the protocol,
    the seed of its first task and the contents of its input files, as JSON text)."""
    record = {"settings": {k: _jsonable(v) for k, v in sorted(config.items()) if k not in _UNKEYED},
              "extractedFrom": extractedFrom, "method": method, "protocol": _jsonable(protocolSettings), "seed": seed,
              "files": {os.path.basename(f): _digest(f) for f in _inputFiles(config)}}
    text = json.dumps(record, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:24], text


def _quietLog(line):
    pass


def buildLeg(config, extract=False, threads=None):
    """The :class:`~.sampling.Leg` of one leg's run config: lambda = 0 is its MM System, 1 its ML/MM
    System.  With ``extract``, the ML region's molecule alone in vacuum (taken out of the inputs).
    ``threads``: torch's threads, and the CPU platform's.  The start is minimized (MM, lambda = 0) as
    ``openmm-hybrid run`` does: if ``minimize``, or by default if it has no velocities, up to
    ``minimize_iterations``.  Built once per process."""
    if threads is not None:
        import torch
        torch.set_num_threads(int(threads))
    key = json.dumps({"config": _jsonable(config), "extract": extract, "threads": threads}, sort_keys=True,
                     default=str)
    if key in _LEGS:
        return _LEGS[key]
    from ..job.runner import buildMixedSystem, platformOf
    config = dict(config)
    if threads is not None and config["platform"] == "CPU":
        config["threads"] = threads
    inputs = readInputs(config)
    if extract:
        from .vacuum import extractMolecule
        atoms = selectRegion(config, inputs.topology, inputs)
        try:
            topology, system, positions = extractMolecule(inputs.topology, inputs.system, inputs.positions, atoms)
        except ValueError as error:
            raise ConfigError(f"the vacuum leg: {firstLine(error)}") from None
        inputs = Inputs(topology, system, positions, None, None, f"the ML region of {inputs.description}, in vacuum")
        for name in ("region", "residue", "atoms", "side_chain", "residues"):
            config[name] = None  # the whole molecule
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        built = buildMixedSystem(config, _quietLog, interpolate=True, inputs=inputs)
    _, properties = platformOf(config)
    if config["platform"] in ("CUDA", "OpenCL"):
        device = _workerDevice()
        if device is not None:
            properties["DeviceIndex"] = str(device)
    leg = Leg(system=built.system, positions=inputs.positions, box=inputs.box, temperature=config["temperature"],
              timestep=config["timestep"], friction=config["friction"], innerSteps=config["inner_steps"],
              outerGroups={built.correctionGroup, built.mlGroup}, linear=True,
              lambdaGroups={built.correctionGroup, built.mlGroup}, platform=config["platform"],
              properties=properties or None)
    leg.mlAtoms, leg.topology = list(built.mlAtoms), inputs.topology
    context, _ = leg.context(0.0, 1)
    if config["minimize"] or (config["minimize"] is None and inputs.velocities is None):
        openmm.LocalEnergyMinimizer.minimize(context, 10.0, config["minimize_iterations"])
        leg.positions = context.getState(getPositions=True).getPositions(asNumpy=True)
    # the switches take dE/dlambda from the correction's groups alone: check that nothing else
    # depends on lambda (else use the whole System).  dE/dlambda at the start is also the
    # ligand's offset (E(1) - E(0), the energy being linear in lambda).
    whole = context.getState(getParameterDerivatives=True).getEnergyParameterDerivatives()[leg.parameter]
    if abs(leg.slope(context) - whole) > 1e-6 * max(1.0, abs(whole)):
        leg.lambdaGroups = None
    leg.startSlope = whole
    del context
    _LEGS[key] = leg
    return leg


def _workerDevice():
    """The GPU of this Dask worker (its number in a LocalCluster, modulo the GPUs), or None."""
    try:
        from distributed import get_worker
        name = get_worker().name
    except (ImportError, ValueError):
        return None
    count = gpuCount()
    return int(name) % count if isinstance(name, int) and count else None


def _formula(topology, atoms):
    counts = {}
    elements = {a.index: a.element for a in topology.atoms()}
    for i in atoms:
        symbol = elements[i].symbol if elements[i] is not None else "?"
        counts[symbol] = counts.get(symbol, 0) + 1
    order = sorted(counts, key=lambda s: (s not in ("C",), s not in ("H",), s))
    return "".join(f"{s}{counts[s] if counts[s] > 1 else ''}" for s in order)


class _Plan:
    """The legs of a calculation: for each (ligand, leg) its factory, store, tasks and offset."""

    def __init__(self, fe, log):
        self.fe, self.entries = fe, []
        threads = fe.threads
        if threads is None and fe.workers > 1 and fe.scheduler is None:
            threads = max(1, (os.cpu_count() or 1) // fe.workers)
        for i, ligand in enumerate(fe.ligands):
            offset, regions = None, {}
            for j, legName in enumerate(fe.legNames):
                config = ligand.legs[legName]
                extract = legName in ligand.extractedFrom
                factory = functools.partial(buildLeg, config, extract, threads)
                start = time.perf_counter()
                try:
                    leg = factory()
                except ConfigError as error:
                    raise ConfigError(f"ligand {ligand.name}, {legName} leg: {error}") from None
                regions[legName] = (len(leg.mlAtoms), _formula(leg.topology, leg.mlAtoms))
                log(f"  {ligand.name} / {legName}: {leg.system.getNumParticles()} particles, ML region "
                    f"{regions[legName][1]} ({regions[legName][0]} atoms)"
                    + (", taken out of the water leg" if extract else "")
                    + f"; built in {time.perf_counter() - start:.1f} s")
                if offset is None:
                    offset = float(leg.startSlope) / kT(leg.temperature)
                seed = fe.seed + 1_000_000 * (len(fe.legNames) * i + j) + 1
                key, record = legKey(config, legName if not extract else f"extracted from {ligand.extractedFrom[legName]}",
                                     fe.method, fe.protocolSettings[fe.method], seed)
                store = ResultStore(fe.output, key, record)
                name = f"{ligand.name}/{legName}"
                self.entries.append({"ligand": ligand.name, "leg": legName, "factory": factory, "store": store,
                                     "key": key, "seed": seed, "name": name, "offset": offset,
                                     "particles": leg.system.getNumParticles(), "mlAtoms": len(leg.mlAtoms),
                                     "temperature": leg.temperature, "timestep": leg.timestep})
            (a, fa), (b, fb) = regions[fe.legNames[0]], regions[fe.legNames[1]]
            if (a, fa) != (b, fb):
                raise ConfigError(f"ligand {ligand.name}: the ML regions of the legs differ ({fe.legNames[0]}: {fa}, "
                                  f"{a} atoms; {fe.legNames[1]}: {fb}, {b} atoms); select the same molecule in both")

    def phases(self):
        """The tasks in the order they can run: [[(entry, task), ...], ...]."""
        protocol = self.fe.protocol
        if self.fe.method == "mbar":
            return [[(e, t) for e in self.entries for t in protocol.tasks(e["name"], e["seed"])]]
        return [[(e, t) for e in self.entries for t in protocol.endTasks(e["name"], e["seed"])],
                [(e, t) for e in self.entries for t in protocol.switchTasks(e["name"], e["seed"])]]

    def jobs(self, phase):
        protocol = self.fe.protocol
        return [(t, functools.partial(runProtocolTask, protocol, e["factory"], e["store"].folder, e["store"].key),
                 e["store"]) for e, t in phase]

    def adoptOffsets(self, previous):
        """Use the offsets an earlier run of the same calculation recorded (``plan.json``), so that
        a resumed calculation reports its legs against the same constant, wherever it runs."""
        for e in self.entries:
            offset = (previous or {}).get("legs", {}).get(e["name"], {}).get("offset_kT")
            if offset is not None:
                e["offset"] = float(offset)

    def record(self):
        return {"calculation": self.fe.calculation, "method": self.fe.method, "quick": self.fe.quick,
                "legs": {e["name"]: {"key": e["key"], "offset_kT": e["offset"]} for e in self.entries}}


def _checkOutput(fe, plan, resume):
    """Check the output folder against the plan; on resume, take the offsets it recorded."""
    path = os.path.join(fe.output, FILES["plan"])
    if not os.path.isfile(path):
        if resume and os.path.isdir(os.path.join(fe.output, "tasks")):
            raise ConfigError(f"--resume: '{fe.output}' has no {FILES['plan']}; it is not an fe output folder")
        return
    with open(path) as f:
        previous = json.load(f)
    if not resume:
        raise ConfigError(f"the output folder '{fe.output}' holds a calculation already; give --resume to continue it "
                          "(nothing finished is rerun), or another --output")
    now = plan.record()
    changed = [name for name in now["legs"] if previous.get("legs", {}).get(name, {}).get("key")
               != now["legs"][name]["key"]]
    if previous.get("method") != now["method"] or previous.get("quick") != now["quick"] or changed:
        what = ", ".join(changed) if changed else f"method {previous.get('method')} (quick {previous.get('quick')})"
        raise ConfigError(f"--resume: the settings or input files of {what} differ from those '{fe.output}' was made "
                          "with; give the same config, or another --output")
    plan.adoptOffsets(previous)


def runFreeEnergy(fe, resume=False, log=print, analyzeOnly=False, dryRun=False, client=None):
    """Run (or with ``resume``, continue) the calculation ``fe`` (an :class:`~.config.FEConfig`) and
    write its results; returns the result dict (also ``OUTPUT/result.json``).  With ``analyzeOnly``,
    only the analysis of what is done; with ``dryRun``, only the set-up and its checks (returns
    None).  ``client``: a Dask Client to run the tasks on (e.g. of a dask-jobqueue cluster; it is
    left open), instead of the one ``fe.workers`` or ``fe.scheduler`` asks for."""
    import torch
    torchThreads = torch.get_num_threads()
    try:
        return _runFreeEnergy(fe, resume, log, analyzeOnly, dryRun, client)
    finally:
        torch.set_num_threads(torchThreads)  # the legs set their own


def _runFreeEnergy(fe, resume, log, analyzeOnly, dryRun, given):
    start = time.perf_counter()
    log(f"openmm-hybrid fe: {fe.calculation} correction MM -> ML/MM by {fe.method.upper()}"
        + (" (QUICK protocol: not converged)" if fe.quick else "") + f"; setting up {len(fe.ligands)} ligand(s)")
    plan = _Plan(fe, log)
    if dryRun:
        _checkOutput(fe, plan, resume)
        log(f"openmm-hybrid fe: dry run: {len(plan.entries)} legs are consistent; "
            f"{sum(len(p) for p in plan.phases())} tasks would run; nothing was simulated")
        return None
    if analyzeOnly:
        if not os.path.isfile(os.path.join(fe.output, FILES["plan"])):
            raise ConfigError(f"'{fe.output}' holds no fe calculation to analyze")
        _checkOutput(fe, plan, resume=True)
    else:
        _checkOutput(fe, plan, resume)
        os.makedirs(fe.output, exist_ok=True)
        with open(os.path.join(fe.output, FILES["plan"]), "w") as f:
            json.dump(plan.record(), f, indent=1)
        phases = plan.phases()
        total = sum(len(p) for p in phases)
        where = (f"the Dask cluster of {given}" if given is not None else
                 f"the Dask scheduler at {fe.scheduler}" if fe.scheduler else
                 f"a local Dask cluster of {fe.workers} worker processes" if fe.workers > 1 else "this process")
        log(f"openmm-hybrid fe: {total} tasks on {where} -> {fe.output}/tasks")
        client, cluster = given, None
        interrupted = False
        try:
            if client is None and (fe.scheduler or fe.workers > 1):
                client, cluster = daskClient(fe.workers, fe.scheduler)
            for phase in phases:
                runJobs(plan.jobs(phase), log=log, client=client)
        except KeyboardInterrupt:
            interrupted = True
            log("openmm-hybrid fe: interrupted; analysing what is done (continue with --resume)")
        finally:
            if client is not None and client is not given:
                client.close()
            if cluster is not None:
                cluster.close()
    result = analyzeFreeEnergy(fe, plan, time.perf_counter() - start)
    ddG = result["ddG"]
    text = ("not done" if ddG["value"] is None else f"{ddG['value']:.2f} ± {ddG['stderr']:.2f} kJ/mol")
    log(f"openmm-hybrid fe: ddG = {text} ({result['tasks']['done']}/{result['tasks']['total']} tasks done)"
        + (" [QUICK: not converged]" if fe.quick else "") + f"; report: {os.path.join(fe.output, FILES['report'])}")
    if not analyzeOnly and interrupted:
        raise KeyboardInterrupt("interrupted; continue with --resume")
    return result


def _pair(value, stderr):
    return {"value": None if value is None else float(value), "stderr": None if stderr is None else float(stderr)}


def analyzeFreeEnergy(fe, plan, wallSeconds=None):
    """The estimates of every leg from what is done; writes result.json, results.csv, report.md,
    and the u_nk / works files.  Returns the result dict."""
    from .. import __version__
    from ..job.runner import machineDescription
    import torch
    protocol = fe.protocol
    phases = plan.phases()
    allTasks = [(e, t) for phase in phases for e, t in phase]
    ligands = {}
    for e in plan.entries:
        tasks = [t for entry, t in allTasks if entry is e]
        scale = kT(e["temperature"])
        analysis = protocol.analyze(e["store"], tasks, offset=e["offset"])
        leg = {"value": None, "stderr": None, "done": analysis["done"], "total": analysis["total"],
               "particles": e["particles"], "mlAtoms": e["mlAtoms"], "offset": e["offset"] * scale,
               "estimator": "mbar" if fe.method == "mbar" else "jarzynski" if protocol.oneSided else "bar"}
        estimate = analysis["estimate"]
        if estimate is not None:
            leg.update(value=estimate.value * scale, stderr=estimate.stderr * scale)
            d = estimate.details
            if fe.method == "mbar":
                c = d["convergence"]
                leg.update(lambdas=list(protocol.lambdas), overlap=d["overlap"], samples=d["N_k"],
                           dudlMean=[v * scale for v in d["dudl_mean"]],
                           convergence={"fractions": c["fractions"],
                                        "forward": [[v * scale, s * scale] for v, s in c["forward"]],
                                        "reverse": [[v * scale, s * scale] for v, s in c["reverse"]]})
                _writeUnk(fe, e, tasks, protocol)
            else:
                leg.update(forwardWorks=[w * scale for w in d["forwardWorks"]],
                           reverseWorks=[w * scale for w in d["reverseWorks"]],
                           jarzynski=_pair(d["jarzynski"][0] * scale, d["jarzynski"][1] * scale))
                _writeWorks(fe, e, d)
        ligands.setdefault(e["ligand"], {"legs": {}})["legs"][e["leg"]] = leg
    for entry in ligands.values():
        a, b = (entry["legs"][n] for n in fe.legNames)
        if a["value"] is None or b["value"] is None:
            entry["ddG"] = _pair(None, None)
        else:
            entry["ddG"] = _pair(a["value"] - b["value"], math.hypot(a["stderr"], b["stderr"]))
    first = ligands[fe.ligands[0].name]
    done = sum(leg["done"] for entry in ligands.values() for leg in entry["legs"].values())
    total = sum(leg["total"] for entry in ligands.values() for leg in entry["legs"].values())
    config = fe.ligands[0].legs[fe.legNames[0]]
    result = {"calculation": fe.calculation, "method": fe.method, "quick": fe.quick, "units": "kJ/mol",
              "temperature_K": config["temperature"].value_in_unit(unit.kelvin),
              "kT_kJ_per_mol": kT(config["temperature"]), "legNames": list(fe.legNames),
              "ddG": first["ddG"], "legs": first["legs"], "ligands": ligands,
              "tasks": {"done": done, "total": total}, "workers": fe.workers, "scheduler": fe.scheduler,
              "wallSeconds": wallSeconds, "machine": machineDescription(), "date": datetime.date.today().isoformat(),
              "versions": {"openmm-hybrid": __version__, "OpenMM": openmm.__version__, "torch": torch.__version__},
              "model": config["model"], "embedding": config["embedding"],
              "settings": {"protocol": {fe.method: _jsonable(fe.protocolSettings[fe.method])}, "seed": fe.seed,
                           "config": fe.configFile,
                           "legs": {f"{l.name}/{n}": {k: _jsonable(v) for k, v in l.legs[n].items()
                                                      if v is not None and k not in _UNKEYED}
                                    for l in fe.ligands for n in fe.legNames}}}
    if fe.quick:
        result["note"] = "QUICK protocol: a test of the machinery, not a converged free energy"
    os.makedirs(fe.output, exist_ok=True)
    _atomicJson(os.path.join(fe.output, FILES["result"]), result)
    writeReport(fe.output, result)
    return result


def _atomicJson(path, data):
    temporary = path + ".tmp"
    with open(temporary, "w") as f:
        json.dump(data, f, indent=1)
    os.replace(temporary, path)


def _writeUnk(fe, entry, tasks, protocol):
    """Every sample's reduced potential in every state, as alchemlyb's u_nk DataFrame: index
    (time in ps, lambda), a column per lambda, attrs temperature and energy_unit 'kT'."""
    import pandas as pd
    frames = []
    dt = entry["timestep"].value_in_unit(unit.picosecond) * protocol.interval
    lambdas = list(protocol.lambdas)
    for task in tasks:
        u = entry["store"].load(task)["u_kn"] - np.asarray(lambdas)[:, None] * entry["offset"]
        lam = lambdas[task.index]
        index = pd.MultiIndex.from_arrays([dt * np.arange(1, u.shape[1] + 1), np.full(u.shape[1], lam)],
                                          names=["time", "lambda"])
        frames.append(pd.DataFrame(u.T, index=index, columns=lambdas))
    frame = pd.concat(frames)
    frame.attrs = {"temperature": entry["temperature"].value_in_unit(unit.kelvin), "energy_unit": "kT"}
    folder = os.path.join(fe.output, "u_nk")
    os.makedirs(folder, exist_ok=True)
    frame.to_parquet(os.path.join(folder, f"{_safe(entry['ligand'])}-{entry['leg']}.parquet"))


def _writeWorks(fe, entry, details):
    folder = os.path.join(fe.output, "works")
    os.makedirs(folder, exist_ok=True)
    scale = kT(entry["temperature"])
    with open(os.path.join(folder, f"{_safe(entry['ligand'])}-{entry['leg']}.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["direction", "switch", "work_kT", "work_kJ_per_mol"])
        for direction, works in (("forward", details["forwardWorks"]), ("reverse", details["reverseWorks"])):
            for i, w in enumerate(works):
                writer.writerow([direction, i, f"{w:.8g}", f"{w * scale:.8g}"])

