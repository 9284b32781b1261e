"""Read a run's inputs into an OpenMM topology, MM System and coordinates, and pick the ML region.

Everything here is quick and runs before any long work, so bad input stops a run at once.
"""
import os
from dataclasses import dataclass
from typing import Any, Optional

import openmm
import openmm.app as app
import openmm.unit as unit

from ..prepare.ligand import openffAvailable
from ..selection import selectAtoms
from ..utils import firstLine
from .config import ConfigError

__all__ = ["Inputs", "readInputs", "selectRegion"]


@dataclass
class Inputs:
    """What the run starts from."""

    #: The topology of the whole system.
    topology: app.Topology
    #: The MM System.
    system: openmm.System
    #: The starting coordinates.
    positions: Any
    #: The periodic box vectors, or None for a system without a box.
    box: Optional[Any]
    #: The starting velocities, or None to draw them from the temperature.
    velocities: Optional[Any]
    #: What was read, in one line (for the log and report.md).
    description: str
    #: A prepared folder's ligand residue names (the default ML region); None for other inputs.
    ligandResidues: Optional[list] = None


def _need(path, what):
    if not os.path.isfile(path):
        raise ConfigError(f"the {what} file '{path}' does not exist")


def _constraints(config):
    return {"none": None, "HBonds": app.HBonds, "AllBonds": app.AllBonds, "HAngles": app.HAngles}[config["constraints"]]


def readInputs(config):
    """Build :class:`Inputs` from the config's input settings; raises ConfigError with one line.

    With ``state`` and an input other than a serialized System, the state's positions, box and
    velocities replace the input's coordinates (to start from a previous run's final state)."""
    if config.get("prepared") is not None:
        return _prepared(config)
    if config["system"] is not None:
        return _serialized(config)
    if config["prmtop"] is not None:
        inputs = _amber(config)
    elif config["pdb"] is not None:
        inputs = _pdb_forcefield(config)
    else:
        return _sdf(config)
    if config["state"] is not None:
        state = _read_state(config["state"])
        _check_count(inputs.topology, len(state.getPositions()), config["prmtop"] or config["pdb"], config["state"])
        inputs.positions = state.getPositions()
        if inputs.box is not None:
            inputs.box = state.getPeriodicBoxVectors()
            inputs.topology.setPeriodicBoxVectors(inputs.box)
        inputs.velocities = _velocities(state)
        inputs.description += f", starting from {os.path.basename(config['state'])}"
    return inputs


def _read_state(path):
    _need(path, "state")
    try:
        with open(path) as f:
            state = openmm.XmlSerializer.deserialize(f.read())
    except Exception as error:
        raise ConfigError(f"cannot read the serialized State '{path}': {firstLine(error)}") from None
    if not isinstance(state, openmm.State):
        raise ConfigError(f"'{path}' holds a {type(state).__name__}, not a State")
    return state


def _velocities(state):
    try:
        return state.getVelocities()
    except Exception:
        return None


def _check_count(topology, numCoordinates, topologyFile, coordinatesFile):
    if topology.getNumAtoms() != numCoordinates:
        raise ConfigError(f"'{os.path.basename(topologyFile)}' has {topology.getNumAtoms()} atoms but "
                          f"'{os.path.basename(coordinatesFile)}' has {numCoordinates} coordinates; they must describe "
                          "the same system")


def _amber(config):
    _need(config["prmtop"], "prmtop")
    _need(config["inpcrd"], "inpcrd")
    try:
        prmtop = app.AmberPrmtopFile(config["prmtop"])
    except Exception as error:
        raise ConfigError(f"cannot read the prmtop '{config['prmtop']}': {firstLine(error)}") from None
    try:
        inpcrd = app.AmberInpcrdFile(config["inpcrd"])
    except Exception as error:
        raise ConfigError(f"cannot read the inpcrd '{config['inpcrd']}': {firstLine(error)}") from None
    _check_count(prmtop.topology, len(inpcrd.positions), config["prmtop"], config["inpcrd"])
    box = inpcrd.boxVectors
    if box is not None:
        prmtop.topology.setPeriodicBoxVectors(box)
    method = app.PME if box is not None else app.NoCutoff
    kwargs = dict(nonbondedMethod=method, constraints=_constraints(config))
    if box is not None:
        kwargs["nonbondedCutoff"] = config["nonbonded_cutoff"]
    system = prmtop.createSystem(**kwargs)
    velocities = inpcrd.velocities if getattr(inpcrd, "velocities", None) is not None else None
    return Inputs(prmtop.topology, system, inpcrd.positions, box, velocities,
                  f"Amber {os.path.basename(config['prmtop'])} + {os.path.basename(config['inpcrd'])}")


def _read_pdb(path):
    _need(path, "pdb")
    try:
        return app.PDBFile(path)
    except Exception as error:
        raise ConfigError(f"cannot read the PDB file '{path}': {firstLine(error)}") from None


def _pdb_forcefield(config):
    pdb = _read_pdb(config["pdb"])
    try:
        forcefield = app.ForceField(*config["forcefield"])
    except Exception as error:
        raise ConfigError(f"cannot load the force field {config['forcefield']}: {firstLine(error)} "
                          "(give files that exist or names OpenMM ships, e.g. amber14-all.xml)") from None
    box = pdb.topology.getPeriodicBoxVectors()
    kwargs = dict(nonbondedMethod=app.PME if box is not None else app.NoCutoff, constraints=_constraints(config))
    if box is not None:
        kwargs["nonbondedCutoff"] = config["nonbonded_cutoff"]
    try:
        system = forcefield.createSystem(pdb.topology, **kwargs)
    except Exception as error:
        raise ConfigError(f"the force field does not cover '{os.path.basename(config['pdb'])}': {firstLine(error)}") \
            from None
    return Inputs(pdb.topology, system, pdb.positions, box, None,
                  f"{os.path.basename(config['pdb'])} + {', '.join(os.path.basename(f) for f in config['forcefield'])}")


def _serialized(config):
    _need(config["system"], "system")
    _need(config["state"], "state")
    pdb = _read_pdb(config["pdb"])
    try:
        with open(config["system"]) as f:
            system = openmm.XmlSerializer.deserialize(f.read())
    except Exception as error:
        raise ConfigError(f"cannot read the serialized System '{config['system']}': {firstLine(error)}") from None
    if not isinstance(system, openmm.System):
        raise ConfigError(f"'{config['system']}' holds a {type(system).__name__}, not a System")
    state = _read_state(config["state"])
    positions = state.getPositions()
    _check_count(pdb.topology, system.getNumParticles(), config["pdb"], config["system"])
    _check_count(pdb.topology, len(positions), config["pdb"], config["state"])
    box = state.getPeriodicBoxVectors() if system.usesPeriodicBoundaryConditions() else None
    if box is not None:
        pdb.topology.setPeriodicBoxVectors(box)
    return Inputs(pdb.topology, system, positions, box, _velocities(state),
                  f"serialized {os.path.basename(config['system'])} + {os.path.basename(config['state'])}")


def _prepared(config):
    """A folder from `openmm-hybrid prepare`: its System, topology and starting state."""
    from ..prepare import PrepareError, Prepared
    try:
        prepared = Prepared.load(config["prepared"])
    except PrepareError as error:
        raise ConfigError(str(error)) from None
    settings = prepared.manifest.get("settings", {})
    cutoff = settings.get("nonbonded_cutoff_nm")
    if cutoff is not None and abs(cutoff - config["nonbonded_cutoff"].value_in_unit(unit.nanometer)) > 1e-9:
        raise ConfigError(f"the prepared folder's System has a {cutoff:g} nm cutoff, not "
                          f"{config['nonbonded_cutoff']}; set nonbonded_cutoff = {cutoff:g}, or prepare again with it")
    if settings.get("constraints") not in (None, config["constraints"]):
        raise ConfigError(f"the prepared folder's System has constraints = {settings['constraints']}, not "
                          f"{config['constraints']}; set constraints = \"{settings['constraints']}\", or prepare again")
    try:
        state = prepared.state()
        topology, system = prepared.topology(state), prepared.system()
    except Exception as error:
        raise ConfigError(f"cannot read the prepared folder '{config['prepared']}': {firstLine(error)}; prepare it "
                          "again") from None
    _check_count(topology, system.getNumParticles(), prepared.path("topology"), prepared.path("system"))
    box = state.getPeriodicBoxVectors() if system.usesPeriodicBoundaryConditions() else None
    ligands = ", ".join(f"{l['residue']} ({l['source']})" for l in prepared.manifest.get("ligands", []))
    return Inputs(topology, system, state.getPositions(), box, _velocities(state),
                  f"prepared {os.path.basename(prepared.folder)}/" + (f" (ligands {ligands})" if ligands else ""),
                  ligandResidues=prepared.ligandResidues)


OPENFF_MISSING = ("a ligand SDF needs openff-toolkit, which is not installed (it is not on PyPI: conda install -c "
                  "conda-forge openff-toolkit); or parametrize the ligand elsewhere and give prmtop+inpcrd or "
                  "pdb+forcefield")


def _sdf(config):
    """A ligand alone, in vacuum, from an SDF and a SMIRNOFF force field (openff-toolkit)."""
    _need(config["sdf"], "sdf")
    if not openffAvailable():
        raise ConfigError(OPENFF_MISSING)
    from openff.toolkit import ForceField, Molecule
    try:
        molecule = Molecule.from_file(config["sdf"], allow_undefined_stereo=True)
    except Exception as error:
        raise ConfigError(f"openff-toolkit cannot read '{config['sdf']}': {firstLine(error)}") from None
    if isinstance(molecule, list):
        raise ConfigError(f"'{config['sdf']}' holds {len(molecule)} molecules; give one ligand")
    if not molecule.conformers:
        raise ConfigError(f"'{config['sdf']}' has no 3D coordinates")
    try:
        forcefield = ForceField(config["smirnoff"])
        offTopology = molecule.to_topology()
        system = forcefield.create_openmm_system(offTopology)
    except Exception as error:
        raise ConfigError(f"SMIRNOFF '{config['smirnoff']}' cannot parametrize the ligand: {firstLine(error)}") \
            from None
    topology = offTopology.to_openmm()
    coordinates = molecule.conformers[0].m_as("nanometer")
    positions = [openmm.Vec3(*map(float, xyz)) for xyz in coordinates] * unit.nanometer
    return Inputs(topology, system, positions, None, None,
                  f"{os.path.basename(config['sdf'])} with {config['smirnoff']} (vacuum)")


def selectRegion(config, topology, inputs=None):
    """The ML region's atom indices from ``region``, ``residue``, ``atoms``, ``side_chain`` or
    ``residues`` (with none given: the ligands of a prepared folder, or all atoms of an SDF
    ligand); ConfigError when it matches nothing."""
    try:
        if config["region"] is not None:
            return selectAtoms(topology, selection=config["region"])
        if config["residue"] is not None:
            return selectAtoms(topology, residueName=config["residue"])
        if config["atoms"] is not None:
            return selectAtoms(topology, indices=config["atoms"])
        if config["side_chain"] is not None:
            return selectAtoms(topology, sideChain=config["side_chain"])
        if config["residues"] is not None:
            return selectAtoms(topology, residues=config["residues"])
    except ValueError as error:
        message = str(error)
        for prefix in ("selectAtoms(sideChain=...): ", "selectAtoms(residues=...): ", "selectAtoms: "):
            message = message.replace(prefix, "ML region: ")
        raise ConfigError(message) from None
    ligands = inputs.ligandResidues if inputs is not None else None
    if ligands is not None:
        if not ligands:
            raise ConfigError("the prepared folder has no ligand, so there is no default ML region: give region, "
                              "residue, atoms, side_chain or residues")
        return selectAtoms(topology, selection=" or ".join(f"resname {name}" for name in ligands))
    return list(range(topology.getNumAtoms()))
