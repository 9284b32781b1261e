"""From a protein PDB and ligand files to a prepared folder that ``openmm-hybrid run`` starts from.

:func:`prepareSystem` checks everything that is quick first (force-field names, the ligands, the
protein, overlaps), then does the long work (AM1-BCC charges, solvation, minimization, an optional
restrained equilibration), and writes the folder; :class:`Prepared` reads it back.

The folder::

    system.xml      the MM System (serialized)           topology.pdb   the topology and coordinates
    state.xml       the starting state (positions, velocities, box)
    ligands/        LIG.xml (OpenMM ffxml), LIG.mol2 (GAFF2 types, charges), LIG.frcmod (parmchk2)
    prepare.log     every step and what it changed         prepared.json  settings, inputs, results
"""
import datetime
import hashlib
import json
import math
import os
import platform as _platform_module
import time
from dataclasses import dataclass
from typing import Optional

import numpy as np
import openmm
import openmm.app as app
import openmm.unit as unit

from .equilibrate import equilibrate
from .forcefields import PROTEIN_FORCEFIELDS, modellerWaterModel, proteinForceField, waterFiles
from .ligand import (OPENFF_MISSING, PrepareError, _ligandTopology, amberTools, openffAvailable, parametrizeLigand,
                     readLigand)
from .protein import fixProtein

__all__ = ["prepareSystem", "Prepared", "PREPARED_FILES", "DEFAULTS", "ligandResidueNames", "settingsKey"]

#: The files of a prepared folder, by role.
PREPARED_FILES = {"system": "system.xml", "state": "state.xml", "topology": "topology.pdb", "log": "prepare.log",
                  "manifest": "prepared.json", "ligands": "ligands"}

#: Ligand atoms closer than this to a protein atom (nm, heavy atoms) are an overlap.
OVERLAP_DISTANCE = 0.12
#: A ligand whose nearest protein atom is farther than this (nm) is probably in another frame.
FAR_DISTANCE = 1.5

#: The defaults of :func:`prepareSystem`, which the command's [prepare] settings take too.
DEFAULTS = {"forcefield": "amber14", "padding": 1.0 * unit.nanometer, "boxShape": "dodecahedron",
            "ionicStrength": 0.15 * unit.molar, "pH": 7.0, "ligandForcefield": "gaff2", "restrainedSteps": 5000,
            "releasedSteps": 5000, "minimizeIterations": 2000}

_CONSTRAINTS = {"none": None, "HBonds": app.HBonds, "AllBonds": app.AllBonds, "HAngles": app.HAngles}


def ligandResidueNames(count):
    """The residue names of ``count`` ligands: 'LIG', then 'LG2', 'LG3', ..."""
    return ["LIG" if i == 0 else f"LG{i + 1}" if i < 9 else f"L{i + 1:02d}" for i in range(count)]


def _fileHash(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def settingsKey(settings, inputFiles):
    """A hash of the settings and the contents of the input files: a prepared folder with the same
    key can be reused as it is."""
    record = {"settings": settings, "files": [_fileHash(p) for p in inputFiles]}
    return hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()


def _nm(value):
    return float(value.value_in_unit(unit.nanometer)) if unit.is_quantity(value) else float(value)


class _Log:
    """Lines to the caller's log and to prepare.log."""

    def __init__(self, log):
        self.log, self.lines, self.start = log, [], time.perf_counter()

    def __call__(self, line):
        self.lines.append(f"[{time.perf_counter() - self.start:7.1f} s] {line}")
        self.log(line)


def _checkOverlaps(proteinTopology, proteinPositions, ligands, log):
    """PrepareError when a ligand's heavy atom sits on a protein or another ligand's heavy atom;
    ``ligands`` holds (topology, positions, source) triples."""
    def heavy(topology, positions):
        xyz = np.asarray(positions.value_in_unit(unit.nanometer))
        atoms = [a for a in topology.atoms() if a.element is not None and a.element.symbol != "H"]
        return atoms, xyz[[a.index for a in atoms]] if atoms else np.zeros((0, 3))

    others = []
    if proteinTopology is not None:
        others.append(("the protein", *heavy(proteinTopology, proteinPositions)))
    for topology, positions, source in ligands:
        atoms, xyz = heavy(topology, positions)
        nearestProtein = None
        for what, otherAtoms, otherXyz in others:
            if not len(otherXyz) or not len(xyz):
                continue
            d = np.linalg.norm(xyz[:, None, :] - otherXyz[None, :, :], axis=2)
            i, j = np.unravel_index(np.argmin(d), d.shape)
            if d[i, j] < OVERLAP_DISTANCE:
                o = otherAtoms[j]
                raise PrepareError(f"the ligand {source} overlaps {what}: its atom {atoms[i].name} is {d[i, j]:.2f} nm from "
                                   f"{o.name} of {o.residue.name} {o.residue.id}; give the ligand posed in the "
                                   "binding site, in the protein file's frame (docked or from the crystal structure)")
            if what == "the protein":
                nearestProtein = d[i, j]
        if nearestProtein is not None and nearestProtein > FAR_DISTANCE:
            log(f"warning: the ligand {source} is {nearestProtein:.1f} nm from the nearest protein atom: is it in the "
                "protein file's frame?")
        others.append((f"the ligand {source}", atoms, xyz))


#: The minimizer stops when the RMS of the force components (kJ/mol/nm) is below this.
MINIMIZE_TOLERANCE = 10.0


class _MinimizationProgress(openmm.MinimizationReporter):
    """Counts the minimizer's iterations and logs progress every 500.

    OpenMM's minimizer runs L-BFGS once per strength of its constraint restraints, each run up to
    ``maxIterations`` (the iteration index starts again at 0): the last run tells whether it
    converged or stopped at the limit."""

    def __init__(self, log, maxIterations):
        super().__init__()
        self.log, self.maxIterations, self.total, self.energy, self.last = log, maxIterations, 0, None, -1

    def report(self, iteration, x, grad, args):
        self.total += 1
        self.last = iteration
        self.energy = args["system energy"]
        if self.total % 500 == 0:
            self.log(f"  minimizing: iteration {self.total}, {self.energy:,.0f} kJ/mol")
        return False

    def converged(self):
        """Whether the last L-BFGS run stopped before the iteration limit."""
        return not self.maxIterations or self.last + 1 < self.maxIterations



@dataclass
class Prepared:
    """A prepared folder, read back: what ``openmm-hybrid run --prepared DIR`` starts from."""

    #: The folder.
    folder: str
    #: prepared.json: the settings, the inputs and what was done.
    manifest: dict

    @classmethod
    def load(cls, folder):
        """Read ``folder`` (written by :func:`prepareSystem`); PrepareError if it is not one."""
        path = os.path.join(folder, PREPARED_FILES["manifest"])
        if not os.path.isfile(path):
            raise PrepareError(f"'{folder}' is not a prepared folder (it has no {PREPARED_FILES['manifest']}); make one "
                               "with `openmm-hybrid prepare`")
        with open(path) as f:
            manifest = json.load(f)
        for role in ("system", "state", "topology"):
            if not os.path.isfile(os.path.join(folder, PREPARED_FILES[role])):
                raise PrepareError(f"the prepared folder '{folder}' has no {PREPARED_FILES[role]}; prepare it again")
        return cls(folder=os.path.abspath(folder), manifest=manifest)

    def path(self, role):
        """The path of one of :data:`PREPARED_FILES` in the folder."""
        return os.path.join(self.folder, PREPARED_FILES[role])

    @property
    def ligandResidues(self):
        """The ligands' residue names ('LIG', 'LG2', ...), the default ML region."""
        return [ligand["residue"] for ligand in self.manifest.get("ligands", [])]

    def topology(self, state=None):
        """The Topology (from topology.pdb, with the box of ``state``, by default state.xml's)."""
        topology = app.PDBFile(self.path("topology")).topology
        box = (state or self.state()).getPeriodicBoxVectors()
        topology.setPeriodicBoxVectors(box)
        return topology

    def system(self):
        """The MM System."""
        with open(self.path("system")) as f:
            return openmm.XmlSerializer.deserialize(f.read())

    def state(self):
        """The starting State: positions, velocities (after an equilibration) and box."""
        with open(self.path("state")) as f:
            return openmm.XmlSerializer.deserialize(f.read())

    def ligandAtoms(self, topology=None):
        """Indices of the ligands' atoms (the default ML region)."""
        names = set(self.ligandResidues)
        topology = topology or self.topology()
        return [a.index for a in topology.atoms() if a.residue.name in names]


def prepareSystem(output, protein=None, ligands=(), smiles=None, forcefield=DEFAULTS["forcefield"], water=None,
                  padding=DEFAULTS["padding"], boxShape=DEFAULTS["boxShape"], ionicStrength=DEFAULTS["ionicStrength"],
                  pH=DEFAULTS["pH"], ligandForcefield=DEFAULTS["ligandForcefield"], nonbondedCutoff=0.9 * unit.nanometer,
                  constraints="HBonds", equilibrate_=True, restrainedSteps=DEFAULTS["restrainedSteps"],
                  releasedSteps=DEFAULTS["releasedSteps"], temperature=300 * unit.kelvin, pressure=1.0 * unit.bar,
                  platform=None, properties=None, seed=0, minimizeIterations=DEFAULTS["minimizeIterations"],
                  cache=True, reuse=True, overwrite=False, checkOnly=False, log=print):
    """Prepare a protein-ligand (or ligand-in-water) System for ML/MM and write it to ``output``.

    Parameters
    ----------
    output : str
        The folder to write (created; files in it are replaced).
    protein : str, optional
        A PDB/mmCIF of the protein (PDBFixer completes it). None: the ligands alone in water.
    ligands : sequence of str
        Ligand files: SDF/MOL ('file.sdf:NAME' picks one molecule), MOL2 (its charges are kept), or
        PDB with a SMILES in ``smiles``.
    smiles : sequence of str or None, optional
        One SMILES per ligand (None or '' for the ones that do not need it).
    forcefield : str
        'amber14', 'amber19' or 'charmm36' (:data:`~openmmhybrid.prepare.forcefields.PROTEIN_FORCEFIELDS`).
    water : str, optional
        The water model (None: the force field's default: tip3p, opc, tip3p).
    padding, boxShape, ionicStrength, pH
        Solvation: the minimum protein-box distance, 'cube', 'dodecahedron' or 'octahedron', NaCl
        added after neutralizing (0 M: only neutralize), and the pH of the protonation states.
    ligandForcefield : str
        'gaff2' (GAFF2 + AM1-BCC from AmberTools) or 'openff-2.x.y' (needs openff-toolkit).
    nonbondedCutoff, constraints
        Of the System (PME); ``constraints`` is 'none', 'HBonds', 'AllBonds' or 'HAngles'.
    equilibrate_ : bool
        After minimizing, run :func:`~openmmhybrid.prepare.equilibrate.equilibrate`
        (``restrainedSteps`` with the solute's heavy atoms held, then ``releasedSteps`` at
        ``pressure``) so that the starting state has velocities at ``temperature``.
    platform, properties
        The OpenMM platform (by name or object) for minimization and equilibration.
    seed : int
        Seed of the equilibration's velocities, thermostat and barostat (0: a new one).  PDBFixer
        builds missing atoms from random starts and Modeller puts ions in place of random waters,
        so two preparations differ in detail; a reused folder does not.
    minimizeIterations : int
        Of the minimizer (0: to convergence).
    cache : bool
        Reuse cached AmberTools results for the same ligand.
    reuse : bool
        When ``output`` already holds a folder prepared from the same settings and input files
        (the same :func:`settingsKey`), return it as it is.
    overwrite : bool
        Replace a folder prepared from other settings (False: PrepareError saying what differs).
    checkOnly : bool
        Check the settings and return the folder if it can be reused; PrepareError if it would have
        to be prepared.
    log : callable
        Receives progress lines.

    Returns
    -------
    Prepared
    """
    log = _Log(log)
    ligands = list(ligands or [])
    if protein is None and not ligands:
        raise PrepareError("nothing to prepare: give a protein (--protein), ligands (--ligand), or both")
    smiles = list(smiles or [])
    if len(smiles) > len(ligands):
        raise PrepareError(f"{len(smiles)} SMILES for {len(ligands)} ligands: give one SMILES per ligand, in order "
                           "('' for a ligand read from an SDF/MOL2)")
    smiles += [None] * (len(ligands) - len(smiles))
    try:
        ffFiles, waterModel = waterFiles(forcefield, water)
    except ValueError as error:
        raise PrepareError(str(error)) from None
    ff = proteinForceField(forcefield)
    if boxShape not in ("cube", "dodecahedron", "octahedron"):
        raise PrepareError(f"unknown box shape {boxShape!r}; the shapes are cube, dodecahedron, octahedron")
    if constraints not in _CONSTRAINTS:
        raise PrepareError(f"unknown constraints {constraints!r}; use none, HBonds, AllBonds or HAngles")
    gaff = str(ligandForcefield).strip().lower() == "gaff2"
    if ligands and not gaff and not str(ligandForcefield).lower().startswith("openff"):
        raise PrepareError(f"unknown ligand force field {ligandForcefield!r}: use 'gaff2' (GAFF2 + AM1-BCC, AmberTools) "
                           "or a SMIRNOFF name such as 'openff-2.2.1' (needs openff-toolkit)")
    if ligands and ff.scale14 != (0.8333333333333334, 0.5):
        raise PrepareError(f"{ff.name} scales 1-4 interactions differently from GAFF2 and SMIRNOFF ligands, and one "
                           "OpenMM ForceField cannot hold both; use forcefield = 'amber14' or 'amber19' with a ligand "
                           f"({ff.name} works for a protein alone)")
    tools = amberTools() if ligands and gaff else None
    if ligands and not gaff and not openffAvailable():
        raise PrepareError(OPENFF_MISSING.format(name=ligandForcefield))
    inputFiles = ([protein] if protein else []) + [spec.rpartition(":")[0] if not os.path.exists(spec) and ":" in
                                                     os.path.basename(spec) else spec for spec in ligands]
    settings = dict(protein=os.path.basename(protein) if protein else None, ligands=[os.path.basename(s) for s in ligands],
                    smiles=smiles, forcefield=ff.name, water=waterModel, padding_nm=_nm(padding), box_shape=boxShape,
                    ionic_strength_molar=float(ionicStrength.value_in_unit(unit.molar)) if unit.is_quantity(ionicStrength)
                    else float(ionicStrength), ph=float(pH), ligand_forcefield=str(ligandForcefield),
                    nonbonded_cutoff_nm=_nm(nonbondedCutoff), constraints=constraints, equilibrate=bool(equilibrate_),
                    restrained_steps=int(restrainedSteps), released_steps=int(releasedSteps),
                    temperature_K=float(temperature.value_in_unit(unit.kelvin)),
                    pressure_bar=None if pressure is None else float(pressure.value_in_unit(unit.bar)), seed=int(seed),
                    minimize_iterations=int(minimizeIterations))
    for path in inputFiles:
        if not os.path.isfile(path):
            raise PrepareError(f"the {'protein' if path == protein else 'ligand'} file '{path}' does not exist")
    key = settingsKey(settings, inputFiles)
    manifestPath = os.path.join(output, PREPARED_FILES["manifest"])
    if os.path.isfile(manifestPath):
        try:
            existing = Prepared.load(output)
        except PrepareError:
            existing = None
        if existing is not None and existing.manifest.get("key") == key and reuse:
            log(f"openmm-hybrid prepare: {output} was prepared from these settings and files; reusing it")
            return existing
        if not overwrite:
            old = existing.manifest.get("settings", {}) if existing is not None else {}
            changed = [k for k in settings if old.get(k) != settings[k]] or ["the contents of an input file"]
            raise PrepareError(f"'{output}' was prepared from other settings or inputs (changed: {', '.join(changed)}); "
                               "delete it, give another folder, or overwrite it (--overwrite)")
    elif os.path.isdir(output) and os.listdir(output) and not overwrite:
        raise PrepareError(f"'{output}' exists and is not a prepared folder; give a new or empty folder")
    if checkOnly:
        raise PrepareError(f"'{output}' is not prepared yet: run `openmm-hybrid prepare` with these settings first")

    log(f"openmm-hybrid prepare: {ff.name} with {waterModel} water ({', '.join(ffFiles)})")
    # 1. the ligands: read (quick), checked before anything slow
    residueNames = ligandResidueNames(len(ligands))
    ligandInputs = []
    for spec, smi in zip(ligands, smiles):
        ligand = readLigand(spec, smi or None)
        ligandInputs.append(ligand)
        log(f"ligand {ligand.source}: {ligand.mol.GetNumAtoms()} atoms "
            f"({' '.join(sorted({a.GetSymbol() for a in ligand.mol.GetAtoms()}))}), net charge {ligand.netCharge:+d}")
        for line in ligand.notes:
            log(f"  {line}")
    # 2. the protein: PDBFixer (seconds)
    forcefieldObject = app.ForceField(*ffFiles)
    proteinTopology = proteinPositions = None
    proteinChanges = []
    if protein is not None:
        log(f"protein {os.path.basename(protein)}: PDBFixer")
        proteinTopology, proteinPositions, proteinChanges = fixProtein(protein, forcefieldObject, pH, log)
        if not proteinChanges:
            log("  protein: nothing to change")
        log(f"  protein: {proteinTopology.getNumResidues()} residues, {proteinTopology.getNumAtoms()} atoms")
    # 3. overlaps, with the ligands' input coordinates (heavy atoms do not move in parametrization)
    provisional = []
    for ligand, name in zip(ligandInputs, residueNames):
        topology, positions = _ligandTopology(ligand.mol, name, [f"{a.GetSymbol()}{a.GetIdx() + 1}"
                                                                 for a in ligand.mol.GetAtoms()])
        provisional.append((topology, positions, ligand.source))
    _checkOverlaps(proteinTopology, proteinPositions, provisional, log)
    # 4. ligand parameters (AM1-BCC: seconds to minutes each; cached)
    os.makedirs(output, exist_ok=True)
    ligandFolder = os.path.join(output, PREPARED_FILES["ligands"])
    parameters = []
    for ligand, name in zip(ligandInputs, residueNames):
        parameters.append(parametrizeLigand(ligand, name, ligandFolder, forcefield=ligandForcefield, cache=cache,
                                            log=log))
        for line in parameters[-1].notes[len(ligand.notes):]:
            log(f"  {name}: {line}")
    # 5. assemble and solvate
    if proteinTopology is not None:
        modeller = app.Modeller(proteinTopology, proteinPositions)
    else:
        modeller = app.Modeller(parameters[0].topology, parameters[0].positions)
    for p in parameters[0 if proteinTopology is not None else 1:]:
        modeller.add(p.topology, p.positions)
    for p in parameters:
        if p.ffxml is not None:
            forcefieldObject.loadFile(p.ffxml)
        if p.generator is not None:
            forcefieldObject.registerTemplateGenerator(p.generator)
    start = time.perf_counter()
    log(f"solvating: {waterModel}, {_nm(padding):g} nm padding, {boxShape} box, neutralized, "
        f"{settings['ionic_strength_molar']:g} M NaCl")
    try:
        modeller.addSolvent(forcefieldObject, model=modellerWaterModel(waterModel), padding=padding, boxShape=boxShape,
                            ionicStrength=settings["ionic_strength_molar"] * unit.molar, neutralize=True)
    except Exception as error:
        raise PrepareError(f"Modeller cannot solvate the system: {' '.join(str(error).split())[:200]}") from None
    counts = {}
    for residue in modeller.topology.residues():
        counts[residue.name] = counts.get(residue.name, 0) + 1
    waters = sum(v for k, v in counts.items() if k in ("HOH", "WAT"))
    ions = {k: v for k, v in counts.items() if k in ("NA", "CL", "Na+", "Cl-")}
    log(f"  {waters} waters, ions {', '.join(f'{v} {k}' for k, v in ions.items()) or 'none'}; "
        f"{modeller.topology.getNumAtoms()} atoms ({time.perf_counter() - start:.0f} s)")
    # 6. the System
    try:
        system = forcefieldObject.createSystem(modeller.topology, nonbondedMethod=app.PME,
                                               nonbondedCutoff=nonbondedCutoff, constraints=_CONSTRAINTS[constraints],
                                               rigidWater=True)
    except Exception as error:
        raise PrepareError(f"the force field cannot build the System: {' '.join(str(error).split())[:200]}") from None
    charge = sum(f.getParticleParameters(i)[0].value_in_unit(unit.elementary_charge)
                 for f in system.getForces() if isinstance(f, openmm.NonbondedForce)
                 for i in range(f.getNumParticles()))
    log(f"System: {system.getNumParticles()} particles, {system.getNumConstraints()} constraints, PME with a "
        f"{_nm(nonbondedCutoff):g} nm cutoff, total charge {charge:+.4f} e")
    # 7. minimize, equilibrate
    if isinstance(platform, str):
        platform = openmm.Platform.getPlatformByName(platform)
    box = modeller.topology.getPeriodicBoxVectors()
    integrator = openmm.VerletIntegrator(0.001)
    context = openmm.Context(system, integrator, *([platform] + ([properties] if properties else [])
                                                   if platform is not None else []))
    context.setPeriodicBoxVectors(*box)
    context.setPositions(modeller.positions)
    initial = context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    if not math.isfinite(initial):
        raise PrepareError(f"the energy of the assembled system is {initial}: atoms overlap; check the ligand's pose")
    log(f"energy {initial:,.0f} kJ/mol; minimizing")
    start = time.perf_counter()
    progress = _MinimizationProgress(log, minimizeIterations)
    openmm.LocalEnergyMinimizer.minimize(context, MINIMIZE_TOLERANCE, minimizeIterations, progress)
    state = context.getState(getEnergy=True, getPositions=True)
    minimized = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    converged = progress.converged()
    log(f"  minimized: {minimized:,.0f} kJ/mol after {progress.total} iterations: "
        + ("converged (RMS force below 10 kJ/mol/nm)" if converged else
           f"stopped at the limit of {minimizeIterations} iterations (prepare_minimize_iterations)")
        + f" ({time.perf_counter() - start:.0f} s)")
    positions = state.getPositions()
    del context, integrator
    rows = []
    if equilibrate_ and (restrainedSteps or releasedSteps):
        log(f"equilibrating (MM, {temperature}): {restrainedSteps} steps with the solute's heavy atoms restrained, "
            f"then {releasedSteps} free{f' at {pressure}' if pressure is not None else ''}")
        final, rows = equilibrate(system, modeller.topology, positions, box, temperature=temperature, pressure=pressure,
                                  restrainedSteps=restrainedSteps, releasedSteps=releasedSteps, minimize=False,
                                  platform=platform, properties=properties, seed=seed, log=log)
    else:
        final = state
    # 8. write the folder
    with open(os.path.join(output, PREPARED_FILES["system"]), "w") as f:
        f.write(openmm.XmlSerializer.serialize(system))
    with open(os.path.join(output, PREPARED_FILES["state"]), "w") as f:
        f.write(openmm.XmlSerializer.serialize(final))
    topology = modeller.topology
    topology.setPeriodicBoxVectors(final.getPeriodicBoxVectors())
    with open(os.path.join(output, PREPARED_FILES["topology"]), "w") as f:
        app.PDBFile.writeFile(topology, final.getPositions(), f, keepIds=False)
    from .. import __version__
    manifest = {
        "format": 1,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "versions": {"openmm-hybrid": __version__, "openmm": openmm.__version__,
                     "ambertools": tools["version"] if tools else None, "python": _platform_module.python_version()},
        "settings": settings,
        "key": key,
        "forcefield_files": ffFiles + [os.path.relpath(p.ffxml, output) for p in parameters if p.ffxml],
        "ligands": [dict(residue=p.residueName, source=l.source, atoms=l.mol.GetNumAtoms(), net_charge=p.netCharge,
                         charge_sum=round(sum(p.charges), 6) if p.charges else None, forcefield=p.forcefield,
                         charges=p.chargeMethod, added_hydrogens=l.addedHydrogens, cache_key=p.key,
                         cache_hit=p.cacheHit, files={k: os.path.relpath(v, output) for k, v in p.files.items()})
                    for p, l in zip(parameters, ligandInputs)],
        "protein_changes": proteinChanges,
        "counts": {"atoms": topology.getNumAtoms(), "waters": waters, "ions": ions},
        "system": {"particles": system.getNumParticles(), "constraints": system.getNumConstraints(),
                   "total_charge": round(charge, 6)},
        "energies_kj_mol": {"assembled": initial, "minimized": minimized, "minimize_iterations": progress.total, "minimize_converged": converged},
        "equilibration": rows,
    }
    with open(os.path.join(output, PREPARED_FILES["manifest"]), "w") as f:
        json.dump(manifest, f, indent=1)
    log(f"wrote {output}: {', '.join(v for k, v in PREPARED_FILES.items() if k != 'log')}, prepare.log")
    with open(os.path.join(output, PREPARED_FILES["log"]), "w") as f:
        f.write("\n".join(log.lines) + "\n")
    return Prepared.load(output)
