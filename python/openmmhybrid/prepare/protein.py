"""The protein of ``openmm-hybrid prepare``: PDBFixer completes it, and every change is reported.

:func:`fixProtein` reads a PDB or PDBx/mmCIF file, removes its water, replaces the nonstandard
residues PDBFixer knows (e.g. MSE -> MET), adds missing heavy atoms and terminal atoms, and adds
hydrogens at the pH.  What it cannot do well it refuses, before any long work: missing residues
inside a chain (it would have to build a loop with no template structure), a chain break, and a
residue no force-field template covers.  It never downloads anything.
"""
import os
import re

import numpy as np
import openmm.app as app
import openmm.unit as unit

from .ligand import PrepareError

__all__ = ["fixProtein", "chainBreaks"]

_WATER = {"HOH", "WAT", "H2O", "DOD", "TIP3", "SOL"}
#: A peptide C-N distance beyond this (nm) is a break in the chain (a bond is 0.133 nm).
BREAK_DISTANCE = 0.2


def _describe(residue):
    chain = residue.chain.id.strip() or str(residue.chain.index + 1)
    return f"{residue.name} {residue.id} (chain {chain})"


def chainBreaks(topology, positions):
    """The consecutive amino-acid pairs of a chain whose C and N are more than
    :data:`BREAK_DISTANCE` apart: a list of (residue, next residue, distance in nm)."""
    xyz = np.asarray(positions.value_in_unit(unit.nanometer))
    breaks = []
    for chain in topology.chains():
        residues = list(chain.residues())
        for a, b in zip(residues, residues[1:]):
            c = [atom.index for atom in a.atoms() if atom.name == "C"]
            n = [atom.index for atom in b.atoms() if atom.name == "N"]
            if c and n:
                d = float(np.linalg.norm(xyz[c[0]] - xyz[n[0]]))
                if d > BREAK_DISTANCE:
                    breaks.append((a, b, d))
    return breaks


def _splitAtTermini(topology, positions):
    """A copy of ``topology`` with a new chain wherever a chain break is already capped as two
    termini (OXT on the residue before it, N-terminal H2/H3 on the one after: a missing TER
    record); and the (residue, next residue) pairs split."""
    splits = set()
    pairs = []
    for a, b, _ in chainBreaks(topology, positions):
        namesA = {atom.name for atom in a.atoms()}
        namesB = {atom.name for atom in b.atoms()}
        if "OXT" in namesA and ({"H2", "H3"} <= namesB or {"H1", "H2"} <= namesB):
            splits.add(b)
            pairs.append((a, b))
    if not splits:
        return topology, []
    new = app.Topology()
    new.setPeriodicBoxVectors(topology.getPeriodicBoxVectors())
    atoms = {}
    for chain in topology.chains():
        newChain = new.addChain(chain.id)
        for residue in chain.residues():
            if residue in splits:
                newChain = new.addChain(chain.id)
            newResidue = new.addResidue(residue.name, newChain, residue.id, residue.insertionCode)
            for atom in residue.atoms():
                atoms[atom] = new.addAtom(atom.name, atom.element, newResidue, atom.id)
    for bond in topology.bonds():
        if bond[0].residue in splits and bond[1].residue not in splits and bond[0].name == "N" or \
                bond[1].residue in splits and bond[0].residue not in splits and bond[1].name == "N":
            continue  # the peptide bond across the split
        new.addBond(atoms[bond[0]], atoms[bond[1]], bond.type, bond.order)
    return new, pairs


def fixProtein(path, forcefield, pH=7.0, log=print):
    """Read ``path`` and complete it with PDBFixer.

    Parameters
    ----------
    path : str
        A PDB or PDBx/mmCIF file of the protein (cofactors with a template in ``forcefield`` may stay).
    forcefield : openmm.app.ForceField
        The protein and water force field: every residue must match one of its templates.
    pH : float
        The pH for protonation states (PDBFixer's default pKas).
    log : callable
        Receives one line per change.

    Returns
    -------
    (Topology, positions, list of str)
        The completed protein and what was changed, one line each.
    """
    try:
        from pdbfixer import PDBFixer
    except ImportError:
        raise PrepareError("preparing a protein needs PDBFixer: pip install pdbfixer (the README's set-up installs it)") \
            from None
    if not os.path.isfile(path):
        raise PrepareError(f"the protein file '{path}' does not exist")
    base = os.path.basename(path)
    try:
        fixer = PDBFixer(filename=path)
    except Exception as error:
        raise PrepareError(f"PDBFixer cannot read '{base}': {' '.join(str(error).split())[:200]}") from None
    if fixer.topology.getNumAtoms() == 0:
        raise PrepareError(f"'{base}' has no atoms")
    # offline: PDBFixer would try to download the definitions of residues it does not know
    app.Modeller._loadStandardHydrogenDefinitions()
    for residue in fixer.topology.residues():
        if residue.name not in app.Modeller._residueHydrogens:
            fixer._ccdCache[residue.name.upper()] = None
    changes = []

    def note(line):
        changes.append(line)
        log(f"  protein: {line}")

    waters = [r for r in fixer.topology.residues() if r.name in _WATER]
    if waters:
        modeller = app.Modeller(fixer.topology, fixer.positions)
        modeller.delete(waters)
        fixer.topology, fixer.positions = modeller.topology, modeller.positions
        note(f"removed {len(waters)} water molecules of the file (the box is filled with new water)")
    fixer.findMissingResidues()
    chains = list(fixer.topology.chains())
    for (chainIndex, residueIndex), names in sorted(fixer.missingResidues.items()):
        chain = chains[chainIndex]
        count = len(list(chain.residues()))
        where = chain.id.strip() or str(chainIndex + 1)
        if residueIndex == 0 or residueIndex == count:
            end = "N" if residueIndex == 0 else "C"
            note(f"left out {len(names)} residues missing at the {end} terminus of chain {where} "
                 f"({' '.join(names[:6])}{' ...' if len(names) > 6 else ''}); the chain starts/ends where the file does")
            del fixer.missingResidues[(chainIndex, residueIndex)]
        else:
            before = list(chain.residues())[residueIndex - 1]
            raise PrepareError(f"chain {where} of '{base}' is missing {len(names)} residues after {_describe(before)} "
                               f"({' '.join(names[:6])}{' ...' if len(names) > 6 else ''}); PDBFixer would have to build "
                               "that loop with no template structure: model it first (e.g. MODELLER or AlphaFold), or "
                               "split the chain there and cap both ends (ACE/NME)")
    fixer.topology, split = _splitAtTermini(fixer.topology, fixer.positions)
    for a, b in split:
        note(f"split the chain between {_describe(a)} and {_describe(b)}: the file ends a chain there (OXT, then "
             "N-terminal hydrogens) without a TER record")
    breaks = chainBreaks(fixer.topology, fixer.positions)
    if breaks:
        a, b, d = breaks[0]
        raise PrepareError(f"'{base}' has a chain break between {_describe(a)} and {_describe(b)} (C-N {d:.2f} nm, a "
                           f"bond is 0.13 nm){f' and {len(breaks) - 1} more' if len(breaks) > 1 else ''}: residues are "
                           "missing there; model them, or give the two parts as separate chains (a TER record) with "
                           "capped ends")
    fixer.findNonstandardResidues()
    if fixer.nonstandardResidues:
        for residue, replacement in fixer.nonstandardResidues:
            note(f"replaced the nonstandard residue {_describe(residue)} by {replacement}")
        fixer.replaceNonstandardResidues()
    fixer.findMissingAtoms()
    for residue, atoms in fixer.missingAtoms.items():
        note(f"added missing heavy atoms {' '.join(a.name for a in atoms)} to {_describe(residue)}")
    for residue, atoms in fixer.missingTerminals.items():
        note(f"added terminal atoms {' '.join(atoms)} to {_describe(residue)}")
    try:
        fixer.addMissingAtoms()
    except Exception as error:
        raise PrepareError(f"PDBFixer cannot complete '{base}': {' '.join(str(error).split())[:200]}") from None
    hydrogens = sum(1 for a in fixer.topology.atoms() if a.element is not None and a.element.symbol == "H")
    fixer.addMissingHydrogens(pH)
    added = sum(1 for a in fixer.topology.atoms() if a.element is not None and a.element.symbol == "H") - hydrogens
    if added:
        note(f"added {added} hydrogens at pH {pH:g} (PDBFixer's default pKas; the file had {hydrogens})")
    # ForceField.getUnmatchedResidues misses templates that createSystem finds (amber19's termini),
    # so ask createSystem itself, on the protein alone
    try:
        forcefield.createSystem(fixer.topology, nonbondedMethod=app.NoCutoff, constraints=None, rigidWater=False)
    except ValueError as error:
        message = " ".join(str(error).split())
        match = re.search(r"residue (\d+) \(([^)]*)\)", message)
        residue = None
        if match:
            named = [r for r in fixer.topology.residues() if r.name == match.group(2)]
            number = int(match.group(1))
            residue = next((r for r in named if r.index + 1 == number), named[0] if named else None)
        where = _describe(residue) if residue is not None else message.split(".")[0]
        raise PrepareError(f"no template of the protein force field matches {where} of '{base}' "
                           f"({message.split('.')[0]}); a ligand or cofactor goes in --ligand (an SDF/MOL2 of it), and "
                           "anything else must be removed from the PDB or renamed to a standard residue") from None
    return fixer.topology, fixer.positions, changes
