"""The settings of an ML/MM run: one schema for the TOML file and the command-line flags.

Every setting has a section (the TOML table it lives in), a type, a default and a line of help.
A TOML file may use the tables or write every key at top level; a flag is the key with ``-`` for
``_`` (``inner_steps`` -> ``--inner-steps``).  Flags override the file.

Physical quantities are numbers in the unit the schema names (``timestep = 2`` is 2 fs) or
strings with a unit (``timestep = "0.002 ps"``, ``--temperature "310 K"``); they come out as
:mod:`openmm.unit` quantities.
"""
import difflib
import math
import os
import re

import openmm.unit as unit

from ..prepare.build import DEFAULTS as PREPARE_DEFAULTS
from ..prepare.forcefields import PROTEIN_FORCEFIELDS, waterFiles

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

__all__ = ["ConfigError", "SETTINGS", "SECTIONS", "Setting", "loadConfig", "templateConfig"]


class ConfigError(ValueError):
    """A setting that is unknown, malformed or inconsistent; the message says which and how to fix it."""


class Setting:
    """One setting: name, section, kind ('str', 'int', 'float', 'bool', 'path', 'paths', 'atoms', 'residue',
    'quantity'), default, help, and for quantities the default unit and what it measures."""

    def __init__(self, name, section, kind, default, help, unit=None, choices=None, minimum=None, maximum=None):
        self.name, self.section, self.kind, self.default, self.help = name, section, kind, default, help
        self.unit, self.choices, self.minimum, self.maximum = unit, choices, minimum, maximum

    @property
    def flag(self):
        return "--" + self.name.replace("_", "-")


_PER_PS = unit.picosecond ** -1

SETTINGS = [
    # input
    Setting("prmtop", "input", "path", None, "Amber topology (with inpcrd)"),
    Setting("inpcrd", "input", "path", None, "Amber coordinates (with prmtop)"),
    Setting("pdb", "input", "path", None, "PDB file: coordinates and topology (with forcefield), or the topology of a "
            "serialized system"),
    Setting("forcefield", "input", "paths", None, "OpenMM force-field XML files for the pdb, e.g. "
            "['amber14-all.xml', 'amber14/tip3p.xml', 'ligand.xml']"),
    Setting("system", "input", "path", None, "serialized openmm.System XML (with state and pdb)"),
    Setting("state", "input", "path", None, "serialized openmm.State XML: positions, box, velocities (with system; "
            "with other inputs, where to start, e.g. a previous run's final_state.xml)"),
    Setting("prepared", "input", "path", None, "a folder made by `openmm-hybrid prepare` (System, topology, starting "
            "state; its ligands are the default ML region); with [prepare] settings, where it is made (default "
            "prepared-system); relative to where the command runs, like output"),
    Setting("sdf", "input", "path", None, "ligand SDF parametrized with a SMIRNOFF force field (needs openff-toolkit)"),
    Setting("smirnoff", "input", "str", "openff-2.1.0.offxml", "SMIRNOFF force field for sdf"),
    Setting("nonbonded_cutoff", "input", "quantity", 0.9 * unit.nanometer, "direct-space cutoff when the System is "
            "built here (PME if the input is periodic)", unit=unit.nanometer),
    Setting("constraints", "input", "str", "HBonds", "constraints when the System is built here",
            choices=["none", "HBonds", "AllBonds", "HAngles"]),
    # prepare
    Setting("protein", "prepare", "path", None, "protein PDB or PDBx/mmCIF; PDBFixer adds missing atoms and hydrogens"),
    Setting("ligand", "prepare", "files", None, "ligand files: SDF/MOL ('file.sdf:NAME' picks one molecule), MOL2 "
            "(its charges are kept) or PDB with smiles; residues LIG, LG2, ..."),
    Setting("smiles", "prepare", "strings", None, "one SMILES per ligand, in order, for ligands given as PDB ('' for "
            "the others)"),
    Setting("protein_forcefield", "prepare", "str", PREPARE_DEFAULTS["forcefield"], "protein force field (OpenMM's files)",
            choices=list(PROTEIN_FORCEFIELDS)),
    Setting("water_model", "prepare", "str", None, "water model (default: tip3p for amber14 and charmm36, opc for "
            "amber19); `openmm-hybrid prepare --help` lists them"),
    Setting("ligand_forcefield", "prepare", "str", PREPARE_DEFAULTS["ligandForcefield"], "'gaff2' (GAFF2 types, AM1-BCC charges: AmberTools) or a "
            "SMIRNOFF name such as 'openff-2.2.1' (needs openff-toolkit)"),
    Setting("padding", "prepare", "quantity", PREPARE_DEFAULTS["padding"], "least distance from the solute to the box edge",
            unit=unit.nanometer),
    Setting("box_shape", "prepare", "str", PREPARE_DEFAULTS["boxShape"], "periodic box shape (a dodecahedron holds about 30% less "
            "water than a cube)", choices=["cube", "dodecahedron", "octahedron"]),
    Setting("ionic_strength", "prepare", "quantity", PREPARE_DEFAULTS["ionicStrength"], "NaCl added after neutralizing (0: neutralize "
            "only)", unit=unit.molar),
    Setting("ph", "prepare", "float", PREPARE_DEFAULTS["pH"], "pH of the protonation states (PDBFixer's default pKas)", minimum=0,
            maximum=14),
    Setting("prepare_equilibration", "prepare", "bool", True, "after minimizing, a short MM equilibration (solute "
            "heavy atoms restrained, then free at 1 bar) so the run starts with velocities at temperature"),
    Setting("restrained_steps", "prepare", "int", PREPARE_DEFAULTS["restrainedSteps"], "equilibration steps of 2 fs with the solute's heavy atoms "
            "restrained (released in 4 stages)", minimum=0),
    Setting("released_steps", "prepare", "int", PREPARE_DEFAULTS["releasedSteps"], "equilibration steps of 2 fs with no restraint, at 1 bar",
            minimum=0),
    Setting("prepare_minimize_iterations", "prepare", "int", PREPARE_DEFAULTS["minimizeIterations"], "minimizer iterations of prepare (0: to "
            "convergence)", minimum=0),
    # ml
    Setting("region", "ml", "str", None, "ML region as an mdtraj selection, e.g. 'resname TMP'"),
    Setting("residue", "ml", "str", None, "ML region: every atom of residues with this name"),
    Setting("atoms", "ml", "atoms", None, "ML region: atom indices from 0, e.g. [0, 1, 2] or '0-17,20'"),
    Setting("side_chain", "ml", "residue", None, "ML region: the side chain of one residue, numbered as in the input "
            "(e.g. 153 or 'A:153'), cut at CA-CB"),
    Setting("residues", "ml", "residue", None, "ML region: residues N to M of one chain, e.g. '10-12' or 'A:10-12', "
            "cut at the peptide bonds"),
    Setting("link_atoms", "ml", "bool", True, "cap each covalent bond the region cuts with a hydrogen link atom "
            "(false: open valences, with a warning)"),
    Setting("link_atom_placement", "ml", "str", "distance", "a cap at the sum of covalent radii from its ML atom "
            "(openmm-ml's) or at a fixed fraction of the bond", choices=["distance", "ratio"]),
    Setting("link_atom_charges", "ml", "str", "rcd", "electrostatic embedding: how the charge of the MM atom of a cut "
            "bond is redistributed (Lin-Truhlar redistributed charge and dipole, or charge)", choices=["rcd", "rc"]),
    Setting("model", "ml", "str", "ani1x", "a registered model name or a TorchScript file (a file runs its code "
            "when evaluated: use files you trust)"),
    Setting("model_path", "ml", "path", None, "the model's file, for a model name that reads one (mace, aimnet2, "
            "torchmdnet, nequip and their openmm-ml names; a folder for ani2x): `openmm-hybrid models` lists which. "
            "Pickled checkpoints (.model, .ckpt) and TorchScript files run code when loaded: use files you trust"),
    Setting("charge", "ml", "int", None, "the ML region's total charge, for a model that takes one (default: the "
            "region's MM charges summed and rounded; required when they do not sum to an integer)"),
    Setting("model_options", "ml", "options", None, "further keyword arguments of a named model, e.g. "
            "{ precision = \"double\" } or { energyUnit = \"kcal/mol\" } (`openmm-hybrid models` and the user guide "
            "list each model's)"),
    Setting("model_double", "ml", "bool", False, "hand the model float64 positions"),
    Setting("compile", "ml", "bool", None, "compile the model ahead of time (AOTInductor; Reference/CPU platforms; "
            "takes seconds to a minute at set-up). Default: yes where it is the faster path, an ANI model (ani1x, "
            "ani1ccx, ani2x) on at most 32 atoms on the CPU or Reference platform, for a run of at least 20,000 model "
            "evaluations; else no"),
    Setting("embedding", "ml", "str", "mechanical", "ML-MM coupling", choices=["mechanical", "electrostatic"]),
    Setting("embedding_cutoff", "ml", "quantity", 1.0 * unit.nanometer, "MM charges within this distance of the "
            "region are seen by the model (electrostatic embedding)", unit=unit.nanometer),
    Setting("lambda", "ml", "float", 1.0, "0 = pure MM, 1 = full ML/MM; in between interpolates the energy"),
    # dynamics
    Setting("temperature", "dynamics", "quantity", 300 * unit.kelvin, "thermostat temperature", unit=unit.kelvin),
    Setting("friction", "dynamics", "quantity", 1.0 * _PER_PS, "Langevin friction", unit=_PER_PS),
    Setting("timestep", "dynamics", "quantity", 2 * unit.femtosecond, "time step; with inner_steps > 1 the outer "
            "step, at which the ML correction is evaluated", unit=unit.femtosecond),
    Setting("inner_steps", "dynamics", "int", 1, "MM steps per time step (1: a single time step; n > 1: multiple "
            "time steps with MM at timestep/n)", minimum=1),
    Setting("pressure", "dynamics", "quantity", None, "Monte Carlo barostat pressure (none: constant volume)",
            unit=unit.bar),
    Setting("barostat_interval", "dynamics", "int", 25, "steps between barostat moves", minimum=1),
    Setting("steps", "dynamics", "int", 5000, "production steps (time steps; the run's total, also with --resume)",
            minimum=0),
    Setting("minimize", "dynamics", "bool", None, "minimize the energy first (default: yes, unless the input has "
            "velocities: an equilibrated start)"),
    Setting("minimize_iterations", "dynamics", "int", 500, "maximum minimizer iterations (0: to convergence)",
            minimum=0),
    Setting("equilibration_steps", "dynamics", "int", 0, "steps after minimization that are not recorded",
            minimum=0),
    Setting("seed", "dynamics", "int", 0, "random seed of velocities and thermostat (0: a new one each run)",
            minimum=0),
    # output
    Setting("output", "output", "path", "hybrid-output", "output folder"),
    Setting("report_interval", "output", "int", 100, "steps between rows of energies.csv", minimum=1),
    Setting("trajectory_interval", "output", "int", 500, "steps between trajectory frames (0: no trajectory)",
            minimum=0),
    Setting("checkpoint_interval", "output", "int", 1000, "steps between checkpoints (one is also written at "
            "the end and on Ctrl-C)", minimum=1),
    Setting("progress", "output", "bool", True, "show a progress bar"),
    Setting("report", "output", "bool", True, "write report.md with plots at the end"),
    # platform
    Setting("platform", "platform", "str", "CPU", "OpenMM platform", choices=["Reference", "CPU", "CUDA", "OpenCL"]),
    Setting("precision", "platform", "str", None, "CUDA/OpenCL precision", choices=["single", "mixed", "double"]),
    Setting("threads", "platform", "int", None, "CPU platform threads (default: all cores)", minimum=1, maximum=1024),
    Setting("cuda_graphs", "platform", "bool", True, "CUDA platform: run the ML force in a CUDA graph (a model that "
            "cannot be captured falls back with a message)"),
]

SECTIONS = ["input", "prepare", "ml", "dynamics", "output", "platform"]
_BY_NAME = {s.name: s for s in SETTINGS}


def settingByName(name):
    """The :class:`Setting` called ``name`` (a config key), or None."""
    return _BY_NAME.get(name)

_UNITS = {
    "fs": unit.femtosecond, "femtosecond": unit.femtosecond, "femtoseconds": unit.femtosecond,
    "ps": unit.picosecond, "picosecond": unit.picosecond, "picoseconds": unit.picosecond,
    "ns": unit.nanosecond, "nanosecond": unit.nanosecond, "nanoseconds": unit.nanosecond,
    "k": unit.kelvin, "kelvin": unit.kelvin,
    "nm": unit.nanometer, "nanometer": unit.nanometer, "nanometers": unit.nanometer,
    "a": unit.angstrom, "å": unit.angstrom, "angstrom": unit.angstrom, "angstroms": unit.angstrom,
    "bar": unit.bar, "atm": unit.atmosphere, "atmosphere": unit.atmosphere,
    "/ps": _PER_PS, "1/ps": _PER_PS, "ps^-1": _PER_PS, "ps-1": _PER_PS, "/fs": unit.femtosecond ** -1,
    "1/fs": unit.femtosecond ** -1,
    "m": unit.molar, "molar": unit.molar, "mol/l": unit.molar, "mm": unit.millimolar, "millimolar": unit.millimolar,
}


def _quantity(setting, value):
    if isinstance(value, bool):
        raise ConfigError(f"{setting.name} must be a number in {setting.unit.get_symbol()} or a string with a unit, "
                          f"not {value!r}")
    if isinstance(value, (int, float)):
        number, quantityUnit = float(value), setting.unit
    else:
        match = re.fullmatch(r"\s*([-+0-9.eE]+)\s*(.*?)\s*", str(value))
        try:
            number = float(match.group(1)) if match else None
        except ValueError:
            number = None
        if number is None:
            raise ConfigError(f"{setting.name}: cannot read {value!r} as a quantity; write e.g. "
                              f"'{_example(setting)}'")
        symbol = match.group(2)
        quantityUnit = setting.unit if symbol == "" else _UNITS.get(symbol.lower())
        if quantityUnit is None:
            raise ConfigError(f"{setting.name}: unknown unit {symbol!r} in {value!r}; write e.g. '{_example(setting)}'")
        if not quantityUnit.is_compatible(setting.unit):
            raise ConfigError(f"{setting.name}: {value!r} is not in units of {setting.unit.get_symbol()}; write e.g. "
                              f"'{_example(setting)}'")
    if not math.isfinite(number) or number < 0 or (number == 0 and setting.name not in ("friction", "ionic_strength")):
        raise ConfigError(f"{setting.name} must be positive, not {value!r}")
    return (number * quantityUnit).in_units_of(setting.unit)


def _example(setting):
    default = setting.default
    if default is None:
        return f"1 {setting.unit.get_symbol()}"
    return f"{default.value_in_unit(setting.unit):g} {setting.unit.get_symbol()}"


def _parse_atoms(name, value):
    if isinstance(value, str):
        atoms = []
        for part in value.replace(" ", "").split(","):
            if not part:
                continue
            match = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
            if not match:
                raise ConfigError(f"{name}: cannot read {part!r}; write indices and ranges like '0-17,20'")
            first, last = int(match.group(1)), int(match.group(2) or match.group(1))
            if last < first:
                raise ConfigError(f"{name}: the range {part!r} is empty")
            atoms.extend(range(first, last + 1))
        value = atoms
    if not isinstance(value, (list, tuple)) or not all(isinstance(a, int) and not isinstance(a, bool) for a in value):
        raise ConfigError(f"{name} must be a list of atom indices or a string like '0-17,20', not {value!r}")
    if not value:
        raise ConfigError(f"{name} is empty")
    return list(value)


def _options(name, value):
    """A table of keyword arguments: a TOML table, or ``'key=value,key=value'`` from a flag (each value
    read as TOML, else taken as a string)."""
    if isinstance(value, str):
        table = {}
        for item in filter(None, (v.strip() for v in value.split(","))):
            key, sep, text = item.partition("=")
            if not sep or not key.strip():
                raise ConfigError(f"{name} must be key=value pairs separated by commas, not {value!r}")
            try:
                table[key.strip()] = tomllib.loads(f"v = {text.strip()}")["v"]
            except tomllib.TOMLDecodeError:
                table[key.strip()] = text.strip()
        value = table
    if not isinstance(value, dict) or not all(isinstance(k, str) and k.isidentifier() for k in value):
        raise ConfigError(f"{name} must be a table of keyword arguments, e.g. {{ energyUnit = \"kcal/mol\" }}, "
                          f"not {value!r}")
    for key, item in value.items():
        if not isinstance(item, (str, int, float, bool)):
            raise ConfigError(f"{name}.{key} must be a string, number or true/false, not {item!r}")
    return dict(value)


def convert(setting, value):
    """Check ``value`` (from TOML or a flag string) against ``setting`` and convert it."""
    name = setting.name
    if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null")
                         and setting.kind not in ("str", "path")):
        return None
    kind = setting.kind
    if kind == "quantity":
        return _quantity(setting, value)
    if kind == "atoms":
        return _parse_atoms(name, value)
    if kind == "residue":
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{name} must be a residue number or range like 153, 'A:153' or '10-12', not {value!r}")
        return value.strip()
    if kind in ("files", "strings"):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",")] if kind == "files" else [value]
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{name} must be a list of {'file names' if kind == 'files' else 'strings'}, not {value!r}")
        if kind == "files" and (not value or not all(v.strip() for v in value)):
            raise ConfigError(f"{name} must name at least one file, not {value!r}")
        return [v.strip() for v in value]
    if kind == "paths":
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)) or not value or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{name} must be a list of file names, not {value!r}")
        return list(value)
    if kind == "options":
        return _options(name, value)
    if kind == "bool":
        if isinstance(value, str) and value.strip().lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
            return value.strip().lower() in ("true", "yes", "on", "1")
        if not isinstance(value, bool):
            raise ConfigError(f"{name} must be true or false, not {value!r}")
        return value
    if kind in ("int", "float"):
        if isinstance(value, bool):
            raise ConfigError(f"{name} must be a number, not {value!r}")
        try:
            number = float(value) if kind == "float" else int(str(value).strip()) if isinstance(value, str) else value
        except ValueError:
            raise ConfigError(f"{name} must be {'an integer' if kind == 'int' else 'a number'}, not {value!r}") from None
        if kind == "int" and (not isinstance(number, int) or isinstance(number, bool)):
            raise ConfigError(f"{name} must be an integer, not {value!r}")
        if kind == "float" and not math.isfinite(float(number)):
            raise ConfigError(f"{name} must be a finite number, not {value!r}")
        if setting.minimum is not None and number < setting.minimum:
            raise ConfigError(f"{name} must be at least {setting.minimum}, not {value!r}")
        maximum = setting.maximum if setting.maximum is not None else 2 ** 31 - 1 if kind == "int" else None
        if maximum is not None and number > maximum:
            raise ConfigError(f"{name} must be at most {maximum}, not {value!r}")
        return float(number) if kind == "float" else number
    # str, path
    if not isinstance(value, str):
        raise ConfigError(f"{name} must be a string, not {value!r}")
    if setting.choices:
        for choice in setting.choices:
            if value.lower() == choice.lower():
                return choice
        raise ConfigError(f"{name} must be one of {', '.join(setting.choices)}, not {value!r}")
    return value


def _unknown(key, where):
    close = difflib.get_close_matches(key, list(_BY_NAME) + SECTIONS, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else "; the keys are listed by `openmm-hybrid template`"
    return ConfigError(f"unknown key '{key}'{where}{hint}")


def loadConfig(path=None, overrides=None):
    """The settings from a TOML file (optional) and overrides (flag values), checked and converted.

    Relative input paths in the file are taken relative to the file's folder; the output and prepared folders
    and paths given as overrides, relative to the working directory.

    Returns
    -------
    dict
        Every setting's name -> value (defaults filled in); ``_config_file`` holds the file.

    Raises
    ------
    ConfigError
        An unknown key or section, a value of the wrong type, range or unit, an unreadable file.
    """
    raw, base = {}, os.getcwd()
    if path is not None:
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise ConfigError(f"the config file '{path}' does not exist")
        try:
            with open(path, "rb") as f:
                data = tomllib.load(f)
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
            raise ConfigError(f"'{path}' is not valid TOML: {error}") from None
        base = os.path.dirname(os.path.abspath(path))
        for key, value in data.items():
            if key in SECTIONS and isinstance(value, dict):
                for inner, innerValue in value.items():
                    setting = _BY_NAME.get(inner)
                    if setting is None:
                        raise _unknown(inner, f" in [{key}] of {path}")
                    if setting.section != key:
                        raise ConfigError(f"'{inner}' belongs in [{setting.section}], not [{key}] ({path})")
                    raw[inner] = innerValue
            elif key in _BY_NAME:  # 'output' and 'platform' are keys as well as tables
                raw[key] = value
            elif key in SECTIONS:
                raise ConfigError(f"[{key}] must be a table (a [{key}] header followed by its keys), not {value!r}")
            else:
                raise _unknown(key, f" in {path}")
    config = {}
    for setting in SETTINGS:
        if setting.name in raw:
            value = convert(setting, raw[setting.name])
            if setting.name in ("output", "prepared"):
                value = os.path.abspath(os.path.expanduser(value))  # where the command runs, not where the file is
            else:
                value = resolvePaths(setting, value, base)
            config[setting.name] = value
        else:
            config[setting.name] = setting.default
    for name, value in (overrides or {}).items():
        setting = _BY_NAME.get(name)
        if setting is None:
            raise _unknown(name, "")
        value = convert(setting, value)
        if setting.kind == "path" and value is not None:
            value = os.path.abspath(os.path.expanduser(value))
        elif setting.kind == "files" and value is not None:
            value = [_relativeFile(os.getcwd(), v) for v in value]
        config[name] = value
    _check(config)
    config["_config_file"] = os.path.abspath(path) if path is not None else None
    return config


def resolvePaths(setting, value, base):
    """``value`` of ``setting`` with its relative file names taken relative to ``base`` (a config
    file's folder): paths, file lists, force-field files that exist there (names such as
    'amber14-all.xml' are looked up in OpenMM's data otherwise) and a model file."""
    if value is None:
        return None
    if setting.kind == "path":
        return os.path.normpath(os.path.join(base, os.path.expanduser(value)))
    if setting.kind == "files":
        return [_relativeFile(base, v) for v in value]
    if setting.kind == "paths":
        return [os.path.normpath(os.path.join(base, v)) if os.path.exists(os.path.join(base, v)) else v for v in value]
    if setting.name == "model" and os.path.exists(os.path.join(base, value)):
        return os.path.normpath(os.path.join(base, value))
    return value


def _relativeFile(base, spec):
    """A file name (maybe 'file.sdf:NAME') taken relative to ``base``."""
    path, name = spec, None
    if not os.path.exists(os.path.join(base, os.path.expanduser(spec))) and ":" in os.path.basename(spec):
        path, _, name = spec.rpartition(":")
    path = os.path.normpath(os.path.join(base, os.path.expanduser(path)))
    return path if name is None else f"{path}:{name}"


#: Where `prepare` writes when [prepare] names a protein or ligands and `prepared` is not given
#: (relative to where the command runs, like the output folder).
DEFAULT_PREPARED = "prepared-system"


def preparesHere(config):
    """Whether the config asks for a set-up by `prepare` (a protein or ligands in [prepare])."""
    return config.get("protein") is not None or config.get("ligand") is not None


def _check(config):
    if preparesHere(config):
        for key in ("prmtop", "pdb", "system", "sdf", "forcefield"):
            if config[key] is not None:
                raise ConfigError(f"give one input: [prepare] protein/ligand, or {key}, not both")
        if config["prepared"] is None:
            config["prepared"] = os.path.abspath(DEFAULT_PREPARED)
        if config["smiles"] is not None and len(config["smiles"]) > len(config["ligand"] or []):
            raise ConfigError(f"{len(config['smiles'])} SMILES for {len(config['ligand'] or [])} ligands: give one "
                              "SMILES per ligand, in order ('' for a ligand from an SDF/MOL2)")
        try:
            waterFiles(config["protein_forcefield"], config["water_model"])
        except ValueError as error:
            raise ConfigError(str(error)) from None
    elif config["smiles"] is not None:
        raise ConfigError("smiles needs ligand (the ligand PDB files it describes)")
    if config["prepared"] is not None:
        for key in ("prmtop", "pdb", "system", "sdf", "forcefield", "state"):
            if config[key] is not None:
                raise ConfigError(f"give one input: prepared (a folder from `openmm-hybrid prepare`) or {key}, not both")
        if not preparesHere(config) and not os.path.isdir(config["prepared"]):
            raise ConfigError(f"the prepared folder '{config['prepared']}' does not exist; make it with "
                              "`openmm-hybrid prepare`")
        _regions(config)
        _checkRun(config)
        return
    _checkInputs(config)
    _checkRun(config)


def _checkInputs(config):
    inputs = [k for k in ("prmtop", "pdb", "system", "sdf") if config[k] is not None]
    if config["prmtop"] is not None and config["inpcrd"] is None:
        raise ConfigError("prmtop needs inpcrd (the Amber coordinates)")
    if config["inpcrd"] is not None and config["prmtop"] is None:
        raise ConfigError("inpcrd needs prmtop (the Amber topology)")
    if config["system"] is not None:
        if config["state"] is None or config["pdb"] is None:
            raise ConfigError("system needs state (positions and box) and pdb (the topology: elements and residues)")
        if config["prmtop"] is not None or config["forcefield"] is not None or config["sdf"] is not None:
            raise ConfigError("give one input: prmtop+inpcrd, pdb+forcefield, system+state+pdb, or sdf")
    elif config["state"] is not None and config["sdf"] is not None:
        raise ConfigError("state cannot be combined with sdf")
    elif config["pdb"] is not None and config["forcefield"] is None:
        raise ConfigError("pdb needs forcefield (OpenMM force-field XML files), or system and state")
    if config["forcefield"] is not None and config["pdb"] is None:
        raise ConfigError("forcefield needs pdb (the structure to build the System for)")
    if len([k for k in inputs if k != "pdb" or config["system"] is None]) != 1:
        if not inputs:
            raise ConfigError("no input: give prmtop+inpcrd, pdb+forcefield, system+state+pdb, or sdf")
        raise ConfigError(f"give one input, not {' and '.join(inputs)}")
    regions = _regions(config)
    if not regions and config["sdf"] is None:
        raise ConfigError("no ML region: give region (a selection), residue (a residue name), atoms (indices), "
                          "side_chain (a residue number) or residues (a range)")


def _regions(config):
    """The region settings given; ConfigError for more than one."""
    regions = [k for k in ("region", "residue", "atoms", "side_chain", "residues") if config[k] is not None]
    if len(regions) > 1:
        raise ConfigError(f"give the ML region one way, not {' and '.join(regions)}")
    return regions


def _checkRun(config):
    if not 0.0 <= config["lambda"] <= 1.0:
        raise ConfigError(f"lambda must be between 0 and 1, not {config['lambda']}")
    if config["precision"] is not None and config["platform"] not in ("CUDA", "OpenCL"):
        raise ConfigError(f"precision applies to the CUDA and OpenCL platforms, not {config['platform']} "
                          "(Reference is double, CPU mixed)")
    if config["threads"] is not None and config["platform"] != "CPU":
        raise ConfigError("threads applies to the CPU platform only")
    if config["compile"] and config["platform"] not in ("Reference", "CPU"):
        raise ConfigError(f"compile applies to the Reference and CPU platforms, not {config['platform']} "
                          "(on CUDA, cuda_graphs gives the speed-up)")


def templateConfig():
    """A TOML file with every setting, its default and its help, as text."""
    lines = ["# openmm-hybrid run configuration: `openmm-hybrid run THIS.toml`.",
             "# Every key is also a flag (inner_steps -> --inner-steps). Quantities are numbers in the unit shown",
             "# or strings with a unit (\"2 fs\", \"310 K\"). Relative input paths are relative to this file,",
             "# the output folder to where the command runs."]
    for section in SECTIONS:
        lines += ["", f"[{section}]"]
        for s in SETTINGS:
            if s.section != section:
                continue
            help = s.help + (f" ({s.unit.get_symbol()})" if s.unit is not None else "")
            if s.choices:
                help += f"; one of {', '.join(s.choices)}"
            if s.default is None:
                lines.append(f"# {s.name} =   # {help}")
            else:
                lines.append(f"{s.name} = {_toml(s, s.default)}   # {help}")
    return "\n".join(lines) + "\n"


def _toml(setting, value):
    if setting.kind == "quantity":
        return f"{value.value_in_unit(setting.unit):g}"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value)
