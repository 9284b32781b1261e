"""Choosing the ML region: :func:`selectAtoms`."""
from .utils import atomIndices

__all__ = ["selectAtoms", "BACKBONE_NAMES"]


#: Backbone atom names of amino acids (Amber, CHARMM and PDB names): what a side chain excludes.
BACKBONE_NAMES = frozenset({"N", "H", "HN", "H1", "H2", "H3", "CA", "HA", "HA2", "HA3", "HA1", "C", "O", "OXT", "OT1",
                            "OT2", "HXT"})


def _residueSpec(spec, who):
    """(chain id or None, residue id) from ``42``, ``"42"`` or ``"A:42"``."""
    text = str(spec).strip()
    chain, _, residue = text.rpartition(":")
    if not residue:
        raise ValueError(f"{who}: {spec!r} is not a residue; write its number as in the input file, e.g. 42 or 'A:42'")
    return (chain or None), residue


def _findResidues(topology, spec, who):
    chain, number = _residueSpec(spec, who)
    found = [r for r in topology.residues() if r.id == number and (chain is None or r.chain.id == chain)]
    if not found:
        raise ValueError(f"{who}: no residue numbered {number}{f' in chain {chain}' if chain else ''} in the topology "
                         "(residue numbers are those of the input file)")
    return found


def _oneResidue(topology, spec, who):
    found = _findResidues(topology, spec, who)
    if len(found) > 1:
        chains = ", ".join(sorted({r.chain.id for r in found}))
        raise ValueError(f"{who}: residue {spec} exists in several chains ({chains}); name one, e.g. "
                         f"'{found[0].chain.id}:{found[0].id}'")
    return found[0]


def _sideChain(topology, spec):
    residue = _oneResidue(topology, spec, "selectAtoms(sideChain=...)")
    atoms = [a.index for a in residue.atoms() if a.name not in BACKBONE_NAMES]
    names = {a.name for a in residue.atoms()}
    if "CA" not in names or "CB" not in names or not atoms:
        raise ValueError(f"selectAtoms: residue {residue.name} {residue.id} has no side chain to cut at CA-CB "
                         f"(atoms: {', '.join(sorted(names))}); choose another residue or use indices=")
    return atoms


def _residueRange(topology, spec):
    who = "selectAtoms(residues=...)"
    if isinstance(spec, str):
        chain, sep, rest = spec.strip().rpartition(":")
        first, dash, last = rest.partition("-")
        if not dash:
            raise ValueError(f"{who}: write a range as 'N-M' or 'A:N-M', not {spec!r}")
        first, last = (f"{chain}:{first}" if sep else first), (f"{chain}:{last}" if sep else last)
    else:
        try:
            first, last = spec
        except (TypeError, ValueError):
            raise ValueError(f"{who}: give (first, last) or 'N-M', not {spec!r}") from None
    start, end = _oneResidue(topology, first, who), _oneResidue(topology, last, who)
    if start.chain is not end.chain or end.index < start.index:
        raise ValueError(f"{who}: residue {last} does not follow residue {first} in the same chain")
    return [a.index for r in start.chain.residues() if start.index <= r.index <= end.index for a in r.atoms()]


def selectAtoms(topology, selection=None, residueName=None, indices=None, sideChain=None, residues=None):
    """The particle indices of an ML region, chosen one of five ways.

    Parameters
    ----------
    topology : openmm.app.Topology
    selection : str, optional
        An mdtraj selection string, e.g. ``"resname TMP"`` or ``"resid 10 to 12 and not backbone"``
        (needs ``mdtraj``).
    residueName : str, optional
        Every atom of every residue with this name, e.g. ``"LIG"``.
    indices : sequence of int, optional
        Particle indices, checked against the topology.
    sideChain : int or str, optional
        The side chain of one residue, numbered as in the input file (``42`` or ``'A:42'``):
        every atom but the backbone (:data:`BACKBONE_NAMES`: N, H/HN/H1-H3, CA, HA/HA2/HA3, C,
        O, OXT/OT1/OT2/HXT), so the region is cut at CA-CB and
        :func:`createMixedSystem` caps that bond with a link atom.
    residues : str or (first, last), optional
        Residues ``first`` to ``last`` of one chain, inclusive (``'10-12'``, ``'A:10-12'`` or
        ``(10, 12)``): cut at the peptide bonds on either side.

    Returns
    -------
    list of int
        Particle indices: in topology order for a selection or residue name, as given for indices.

    Raises
    ------
    ValueError
        If not exactly one way is given, the selection is empty or matches nothing, or an index is
        out of range or repeated.
    """
    given = [x is not None for x in (selection, residueName, indices, sideChain, residues)]
    if sum(given) != 1:
        raise ValueError("selectAtoms: give exactly one of selection=, residueName=, indices=, sideChain= or residues=")
    numAtoms = topology.getNumAtoms()
    if sideChain is not None:
        return _sideChain(topology, sideChain)
    if residues is not None:
        return _residueRange(topology, residues)
    if indices is not None:
        return atomIndices(indices, "selectAtoms", numAtoms)
    if residueName is not None:
        atoms = [a.index for a in topology.atoms() if a.residue.name == residueName]
        if not atoms:
            names = sorted({r.name for r in topology.residues()})
            shown = ", ".join(names[:20]) + (", ..." if len(names) > 20 else "")
            raise ValueError(f"selectAtoms: no residue is named {residueName!r}. Residue names in the topology: {shown}")
        return atoms
    if not selection.strip():
        raise ValueError("selectAtoms: the selection string is empty")
    try:
        import mdtraj
    except ImportError:
        raise ImportError("selectAtoms(selection=...) needs mdtraj: pip install mdtraj. "
                          "Or use residueName= or indices=.") from None
    try:
        atoms = mdtraj.Topology.from_openmm(topology).select(selection)
    except Exception as error:
        raise ValueError(f"selectAtoms: mdtraj could not parse the selection {selection!r}: {error}") from None
    if len(atoms) == 0:
        raise ValueError(f"selectAtoms: the selection {selection!r} matches no atom")
    return [int(a) for a in atoms]
