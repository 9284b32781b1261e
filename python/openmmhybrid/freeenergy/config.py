"""The settings of ``openmm-hybrid fe``: a TOML file and flags, checked before any long work.

A calculation has one or more ligands; each ligand has two legs, whose MM -> ML/MM corrections
give ddG = dG(first leg) - dG(second leg):

- ``calculation = "binding"``: legs ``complex`` and ``solvent`` (the ligand in its complex, and in
  water);
- ``calculation = "hydration"``: legs ``water`` and ``vacuum``; the vacuum leg, unless given, is the
  ML region's molecule taken out of the water leg (:func:`~.vacuum.extractMolecule`).

The file::

    [fe]                      # calculation, method, output, workers, scheduler, seed, name, threads
    [ml]                      # the [ml] keys of `openmm-hybrid run`: region, model, embedding, ...
    [dynamics]                # temperature, friction, timestep, inner_steps, minimize(_iterations)
    [platform]                # platform, precision, threads, cuda_graphs
    [complex] / [solvent]     # each leg's input: the [input] keys of `openmm-hybrid run`
    [water] / [vacuum]        #   (prmtop + inpcrd, prepared, system + state + pdb, pdb + forcefield)
    [mbar]  [neq]             # the production protocols
    [quick.mbar] [quick.neq]  # what --quick runs instead (defaults: QUICK)

Several ligands: ``[[ligand]]`` tables, each with ``name``, its region keys (which override
[ml]) and its legs as inline tables (``complex = {prmtop = "...", inpcrd = "..."}``).

The [ml], [dynamics], [platform] and leg keys are the settings of :mod:`openmmhybrid.job.config`,
checked and converted by it, so they mean here what they mean for ``openmm-hybrid run``.
"""
import copy
import os
from dataclasses import dataclass, field

from ..job.config import SETTINGS, ConfigError, loadConfig, resolvePaths, settingByName
from .protocols import MBARProtocol, NEQProtocol
from .tasks import gpuCount

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

__all__ = ["FEConfig", "LigandSpec", "loadFEConfig", "LEGS", "PRODUCTION", "QUICK"]

#: The legs of each calculation, in the order of ddG = dG(first) - dG(second).
LEGS = {"binding": ("complex", "solvent"), "hydration": ("water", "vacuum")}

#: The production protocols (the [mbar] and [neq] tables override them key by key).  MBAR: 11
#: windows of 500 samples every 250 steps after 5,000 steps; NEQ (as Rufa et al. 2020): 100
#: switches each way of 5,000 steps, from snapshots every 1,000 steps after 5,000 steps.
PRODUCTION = {"mbar": {"lambdas": [i / 10 for i in range(11)], "equilibration_steps": 5000, "samples": 500,
                       "interval": 250},
              "neq": {"switches": 100, "switch_steps": 5000, "equilibration_steps": 5000, "interval": 1000,
                      "one_sided": False}}

#: What --quick runs (the [quick.mbar] and [quick.neq] tables override them): small enough for CI
#: on 2 cores, and labelled as not converged wherever a number is shown.
QUICK = {"mbar": {"lambdas": [0.0, 0.5, 1.0], "equilibration_steps": 200, "samples": 100, "interval": 10},
         "neq": {"switches": 16, "switch_steps": 20, "equilibration_steps": 200, "interval": 20, "one_sided": False}}

_PROTOCOL_KEYS = {"mbar": ("lambdas", "equilibration_steps", "samples", "interval"),
                  "neq": ("switches", "switch_steps", "equilibration_steps", "interval", "one_sided")}

#: [fe] keys and their defaults.
FE_DEFAULTS = {"calculation": "binding", "method": "mbar", "output": "fe-output", "workers": "auto", "scheduler": None,
               "seed": 2026, "name": None, "threads": None}

#: The tables of `openmm-hybrid run` that an fe config shares (each holds that section's settings).
_RUN_SECTIONS = ("ml", "dynamics", "platform")
#: The [dynamics] keys that apply to a free-energy leg (constant volume, Langevin dynamics).
_DYNAMICS = ("temperature", "friction", "timestep", "inner_steps", "minimize", "minimize_iterations")
_REGION_KEYS = ("region", "residue", "atoms", "side_chain", "residues")
_INPUT_KEYS = tuple(s.name for s in SETTINGS if s.section == "input")


@dataclass
class LigandSpec:
    """One ligand: its name and, per leg, the `openmm-hybrid run` config of that leg (inputs,
    region, model, dynamics, platform: every setting converted), or for an extracted vacuum leg
    the name of the leg it is taken from."""

    name: str
    #: leg name -> the leg's run config (a dict of :mod:`openmmhybrid.job.config` settings).
    legs: dict
    #: leg name -> the leg it is extracted from (a vacuum leg without input of its own).
    extractedFrom: dict = field(default_factory=dict)


@dataclass
class FEConfig:
    """A checked ``openmm-hybrid fe`` configuration."""

    calculation: str
    method: str
    output: str
    workers: int
    scheduler: object
    seed: int
    quick: bool
    ligands: list
    #: The protocol of ``method`` (an :class:`MBARProtocol` or :class:`NEQProtocol`).
    protocol: object
    #: The protocol tables as given (for the record).
    protocolSettings: dict
    configFile: object = None
    #: Threads of each task: OpenMM's CPU platform and torch (None: all cores, shared among the
    #: workers of a local cluster).  Results are bitwise reproducible only on the Reference
    #: platform with the same threads.
    threads: object = None

    @property
    def legNames(self):
        return LEGS[self.calculation]

    @property
    def temperature(self):
        return next(iter(self.ligands[0].legs.values()))["temperature"]


def _fail(message):
    raise ConfigError(message)


def _protocol(method, table, where):
    unknown = sorted(set(table) - set(_PROTOCOL_KEYS[method]))
    if unknown:
        _fail(f"unknown key '{unknown[0]}' in {where}; the keys are {', '.join(_PROTOCOL_KEYS[method])}")
    values = dict(table)
    for key in values:
        if key == "lambdas":
            if not isinstance(values[key], (list, tuple)) or not all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) for v in values[key]):
                _fail(f"{where} lambdas must be a list of numbers from 0 to 1, not {values[key]!r}")
        elif key == "one_sided":
            if not isinstance(values[key], bool):
                _fail(f"{where} one_sided must be true or false, not {values[key]!r}")
        elif isinstance(values[key], bool) or not isinstance(values[key], int):
            _fail(f"{where} {key} must be an integer, not {values[key]!r}")
    try:
        if method == "mbar":
            return MBARProtocol(lambdas=tuple(values["lambdas"]), equilibrationSteps=values["equilibration_steps"],
                                samples=values["samples"], interval=values["interval"])
        return NEQProtocol(switches=values["switches"], switchSteps=values["switch_steps"],
                           equilibrationSteps=values["equilibration_steps"], interval=values["interval"],
                           oneSided=values["one_sided"])
    except ValueError as error:
        _fail(f"{where}: {error}")


def _legInput(table, base, where):
    """A leg's [input] keys, with paths made absolute relative to ``base``."""
    if not isinstance(table, dict):
        _fail(f"{where} must be a table of input keys (prmtop, inpcrd, prepared, system, state, pdb, ...), "
              f"not {table!r}")
    out = {}
    for key, value in table.items():
        setting = settingByName(key)
        if setting is None or setting.section != "input":
            _fail(f"unknown key '{key}' in {where}; a leg takes the input keys of `openmm-hybrid run`: "
                  f"{', '.join(_INPUT_KEYS)}")
        if (setting.kind == "path" and isinstance(value, str)) or (setting.kind == "paths" and isinstance(value, list)):
            value = resolvePaths(setting, value, base)  # loadConfig checks the rest
        out[key] = value
    return out


def _runSettings(data, base, where):
    """The [ml], [dynamics] and [platform] keys of ``data`` (checked against the run schema)."""
    out = {}
    for section in _RUN_SECTIONS:
        table = data.get(section, {})
        if not isinstance(table, dict):
            _fail(f"[{section}] must be a table, not {table!r}")
        for key, value in table.items():
            setting = settingByName(key)
            if setting is None or setting.section != section:
                _fail(f"unknown key '{key}' in [{section}] of {where}")
            if section == "dynamics" and key not in _DYNAMICS:
                _fail(f"'{key}' does not apply to a free-energy leg ({where}); [dynamics] takes "
                      f"{', '.join(_DYNAMICS)} (the legs run Langevin dynamics at constant volume)")
            if key == "lambda":
                _fail(f"'lambda' is not a setting of a free-energy calculation ({where}): the protocol sets it")
            if key == "model" and isinstance(value, str):
                value = resolvePaths(setting, value, base)
            out[key] = value
    return out


def _legConfig(runSettings, inputs, region, leg, ligand):
    """The full run config of one leg, checked by :func:`openmmhybrid.job.config.loadConfig`."""
    overrides = dict(runSettings)
    if region:
        for key in _REGION_KEYS:
            overrides.pop(key, None)
        overrides.update(region)
    overrides.update(inputs)
    overrides["output"] = os.devnull  # not used: a leg writes no run outputs
    overrides["progress"] = False
    try:
        config = loadConfig(None, overrides)  # the paths are absolute already
    except ConfigError as error:
        _fail(f"ligand {ligand}, {leg} leg: {error}")
    return config


def defaultWorkers(platform):
    """workers = "auto": one local worker per GPU on CUDA and OpenCL (at least one), else one per
    core; 1 runs the tasks in the command's own process."""
    if str(platform).upper() in ("CUDA", "OPENCL"):
        return max(1, gpuCount())
    return os.cpu_count() or 1


def loadFEConfig(path, overrides=None, quick=False, mlOverrides=None):
    """Read and check an ``openmm-hybrid fe`` TOML file; ``overrides`` (method, output, workers,
    scheduler, seed) win over its [fe] table, ``mlOverrides`` (e.g. embedding) over its [ml],
    [dynamics] and [platform] keys.  Raises :class:`ConfigError` with one line."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        _fail(f"the config file '{path}' does not exist")
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        _fail(f"'{path}' is not valid TOML: {error}")
    base = os.path.dirname(os.path.abspath(path))
    fe = dict(FE_DEFAULTS)
    table = data.get("fe", {})
    if not isinstance(table, dict):
        _fail("[fe] must be a table")
    for key, value in table.items():
        if key not in FE_DEFAULTS:
            _fail(f"unknown key '{key}' in [fe] of {path}; the keys are {', '.join(FE_DEFAULTS)}")
        fe[key] = value
    fe.update({k: v for k, v in (overrides or {}).items() if v is not None})
    if fe["calculation"] not in LEGS:
        _fail(f"calculation must be one of {', '.join(LEGS)}, not {fe['calculation']!r}")
    if fe["method"] not in ("mbar", "neq"):
        _fail(f"method must be mbar or neq, not {fe['method']!r}")
    for key in ("workers", "seed", "threads"):
        if (key == "threads" and fe[key] is None) or (key == "workers" and fe[key] == "auto"):
            continue
        least = 0 if key == "seed" else 1
        if isinstance(fe[key], bool) or not isinstance(fe[key], int) or fe[key] < least:
            also = " or 'auto'" if key == "workers" else ""
            _fail(f"{key} must be an integer of at least {least}{also}, not {fe[key]!r}")
    if fe["scheduler"] is not None and (not isinstance(fe["scheduler"], str) or "://" not in fe["scheduler"]):
        _fail(f"scheduler must be a Dask scheduler address such as 'tls://10.0.0.5:8786', not {fe['scheduler']!r}")
    known = {"fe", "quick", "mbar", "neq", "ligand"} | set(_RUN_SECTIONS) | {n for legs in LEGS.values() for n in legs}
    for key in data:
        if key not in known:
            _fail(f"unknown table or key '{key}' in {path}; an fe config has [fe], [ml], [dynamics], [platform], "
                  f"[mbar], [neq], [quick.*], its legs ({', '.join(LEGS[fe['calculation']])}) or [[ligand]]")
    legNames = LEGS[fe["calculation"]]
    for other in {n for legs in LEGS.values() for n in legs} - set(legNames):
        if other in data:
            _fail(f"a {fe['calculation']} calculation has the legs {' and '.join(legNames)}, not '{other}'")

    # protocols: the production tables, or with --quick the quick ones
    settings = {}
    for method in ("mbar", "neq"):
        table = copy.deepcopy(PRODUCTION[method])
        given = data.get(method, {})
        if not isinstance(given, dict):
            _fail(f"[{method}] must be a table")
        table.update(given)
        quickTable = copy.deepcopy(QUICK[method])
        quickGiven = data.get("quick", {}).get(method, {}) if isinstance(data.get("quick", {}), dict) else None
        if not isinstance(quickGiven, dict):
            _fail(f"[quick.{method}] must be a table")
        quickTable.update(quickGiven)
        _protocol(method, table, f"[{method}]")
        _protocol(method, quickTable, f"[quick.{method}]")
        settings[method] = quickTable if quick else table
    protocol = _protocol(fe["method"], settings[fe["method"]], f"[{'quick.' if quick else ''}{fe['method']}]")

    run = _runSettings(data, base, path)
    run.update(mlOverrides or {})
    if fe["workers"] == "auto":
        fe["workers"] = defaultWorkers(run.get("platform", "CPU"))
    if "threads" in run:  # [platform] threads: the threads of each task (see FEConfig.threads)
        threads = run.pop("threads")
        if fe["threads"] is None:
            fe["threads"] = threads
    ligands = []
    entries = data.get("ligand")
    if entries is not None:
        if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) for e in entries):
            _fail("[[ligand]] must be one or more tables, each with a name, its region and its legs")
        if any(name in data for name in legNames):
            _fail(f"give the legs inside each [[ligand]], or as [{legNames[0]}] and [{legNames[1]}] for one ligand, "
                  "not both")
    else:
        entries = [dict({"name": fe["name"] or os.path.splitext(os.path.basename(path))[0]},
                        **{n: data[n] for n in legNames if n in data})]
    names = set()
    for i, entry in enumerate(entries):
        name = entry.get("name")
        if not isinstance(name, str) or not name.strip():
            _fail(f"[[ligand]] number {i + 1} needs a name")
        if name in names:
            _fail(f"two ligands are called '{name}'")
        names.add(name)
        region = {}
        for key, value in entry.items():
            if key in ("name",) + legNames:
                continue
            if key not in _REGION_KEYS:
                _fail(f"unknown key '{key}' in the ligand '{name}'; a ligand takes a name, its region "
                      f"({', '.join(_REGION_KEYS)}) and its legs ({', '.join(legNames)})")
            region[key] = value
        legs, extracted = {}, {}
        for leg in legNames:
            given = entry.get(leg)
            if leg == "vacuum" and (given is None or given == {"from": "water"}):
                extracted[leg] = "water"
                given = entry["water"] if isinstance(entry.get("water"), dict) else None
                if given is None:
                    _fail(f"ligand {name}: the vacuum leg is taken from the water leg, which is not given")
            if given is None:
                _fail(f"ligand {name}: the {leg} leg has no input; give [{leg}] (or {leg} = {{...}} in [[ligand]]) "
                      "with prmtop+inpcrd, prepared, or system+state+pdb")
            legs[leg] = _legConfig(run, _legInput(given, base, f"the {leg} leg of {name}"), region, leg, name)
        ligands.append(LigandSpec(name, legs, extracted))
    output = os.path.abspath(os.path.expanduser(fe["output"]))
    return FEConfig(fe["calculation"], fe["method"], output, fe["workers"], fe["scheduler"], fe["seed"], bool(quick),
                    ligands, protocol, settings, os.path.abspath(path), fe["threads"])
