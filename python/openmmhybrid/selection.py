"""Choosing the ML region: :func:`selectAtoms`."""
from .utils import atomIndices

__all__ = ["selectAtoms"]


def selectAtoms(topology, selection=None, residueName=None, indices=None):
    """The particle indices of an ML region, chosen one of three ways.

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
    given = [x is not None for x in (selection, residueName, indices)]
    if sum(given) != 1:
        raise ValueError("selectAtoms: give exactly one of selection=, residueName= or indices=")
    numAtoms = topology.getNumAtoms()
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
