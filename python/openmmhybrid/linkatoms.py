"""Covalent ML/MM boundaries: hydrogen link atoms that cap the bonds a region cuts.

When the ML region cuts a covalent bond (a side chain cut at CA-CB, a residue cut at its peptide
bonds) the model would see a fragment with an open valence.  With link atoms each cut bond
Q1-M1 (Q1 in the region, M1 outside) gets a hydrogen cap H on the bond::

    H = Q1 + d (M1 - Q1) / |M1 - Q1|       placement 'distance' (the default; openmm-ml 1.8's)
    H = Q1 + g (M1 - Q1)                   placement 'ratio' (the g-factor scheme)

with ``d`` the sum of the covalent radii of Q1 and hydrogen (:data:`COVALENT_RADII`, the table
openmm-ml 1.8 uses, so that the two place caps identically) unless ``linkAtomDistances`` gives
it, and ``g = d / r0`` with ``r0`` the MM equilibrium length of the bond.  The model sees the
region's atoms, then one cap per cut bond, in the order of :func:`findLinkBonds`.

**The caps are computed inside the model module** (:class:`LinkAtomCaps`), not added to the
System as virtual sites as openmm-ml does.  The MLForce's particles are the region, then the MM
atom of each cut bond (then, with electrostatic embedding, that atom's other neighbours); autograd
through the cap formula puts each cap's force on both atoms of its bond exactly (the chain rule
with no approximation), the System keeps its particles (the user's positions, trajectories,
reordering, multiple-time-step groups and CUDA graphs are untouched), and a serialized System
carries the caps inside the model.

**Mechanical embedding** then replaces the MM terms that the model accounts for through the caps
(:class:`RegionTerms`, openmm-ml 1.8's selection): bonds with both atoms in the region; angles
whose centre is in the region and whose ends are in the region or bonded to it; proper torsions
whose central bond is in the region; impropers centred in the region; CMAP pairs whose two
central bonds are.  The bond Q1-M1 itself, angles centred on M1 and torsions about Q1-M1 stay MM.

**Electrostatic embedding** must not put M1's full point charge a tenth of a nanometre from a cap.
M1's charge is redistributed (Lin and Truhlar, J. Phys. Chem. A 109, 3991 (2005),
doi:10.1021/jp0446332) over the n bonds M1-M2 to M1's other neighbours M2, with q0 = q(M1)/n:

- ``'rcd'`` (redistributed charge and dipole, the default): 2 q0 at each M1-M2 midpoint and
  q(M2) - q0 on each M2: the total charge and the M1-M2 bond dipoles are kept;
- ``'rc'`` (redistributed charge): q0 at each midpoint, M2 unchanged: the total charge is kept.

The model sees these charges in place of M1's and M2's (they are appended to the environment
arrays, with positions computed from M1 and M2, so their forces are exact as well); MM-MM
electrostatics keep the force field's charges.
"""
import math
import warnings
from dataclasses import dataclass, field
from typing import List, Optional

import openmm
import openmm.app as app
import torch

from .utils import mdValue

__all__ = ["COVALENT_RADII", "LinkBond", "LinkAtoms", "RegionTerms", "findLinkBonds", "linkAtomSetup",
           "LinkAtomCaps", "CappedModel", "CappedModelWithBox", "RedistributedCharges", "CappedEmbedding",
           "CappedEmbeddingNoBox", "CHARGE_SCHEMES", "PLACEMENTS"]

#: Covalent radii in pm by atomic number (index 0 unused): P. Pyykkoe and M. Atsumi, Chem. Eur. J.
#: 15, 186-197 (2009), doi:10.1002/chem.200800987, with the radii of metals reduced by 10%: the set
#: of simple-dftd3 and MLIPOps, and the table openmm-ml 1.8 places its link atoms with (a test
#: checks the two agree where openmm-ml is installed).
COVALENT_RADII = [
    0, 32, 46, 120, 94, 77, 75, 71, 63, 64, 67, 140, 125, 112, 104, 110, 102,
    99, 96, 176, 154, 133, 122, 121, 110, 107, 104, 100, 99, 101, 109, 112, 109,
    114, 110, 113, 117, 189, 167, 147, 139, 132, 124, 114, 112, 112, 108, 114,
    123, 128, 126, 126, 123, 132, 131, 209, 176, 162, 147, 158, 157, 156, 155,
    151, 152, 151, 150, 149, 149, 148, 153, 146, 137, 131, 123, 118, 115, 111,
    112, 112, 132, 130, 130, 136, 131, 138, 142, 200, 181, 167, 158, 152, 153,
    154, 155, 149, 149, 151, 151, 148, 150, 156, 158, 145, 141, 134, 129, 127,
    121, 115, 114, 109, 122, 136, 143, 146, 158, 148, 157]

#: Where a cap sits on its bond.
PLACEMENTS = ("distance", "ratio")
#: How electrostatic embedding redistributes the charge of the MM atom of a cut bond.
CHARGE_SCHEMES = ("rcd", "rc")

_HYDROGEN = 1


@dataclass
class LinkBond:
    """One cut bond: ``mlAtom`` in the region, ``mmAtom`` outside, and where its cap sits."""
    mlAtom: int
    mmAtom: int
    #: Distance from the ML atom to the cap (nm).
    distance: float
    #: ``distance / r0`` with ``r0`` the MM equilibrium length of the bond ('ratio' placement only).
    ratio: Optional[float] = None
    #: The MM atom's other bonded neighbours (M2), for the charge redistribution.
    neighbours: List[int] = field(default_factory=list)


def _bondGraph(topology, system):
    """Neighbour sets from the Topology's bonds, the System's harmonic bonds and its constraints,
    and the pairs in the order they were found (the Topology's first)."""
    pairs = [(a.index, b.index) for a, b in topology.bonds()]
    if system is not None:
        for force in system.getForces():
            if isinstance(force, openmm.HarmonicBondForce):
                pairs += [tuple(force.getBondParameters(i)[:2]) for i in range(force.getNumBonds())]
        pairs += [tuple(system.getConstraintParameters(i)[:2]) for i in range(system.getNumConstraints())]
    neighbours = [set() for _ in range(topology.getNumAtoms())]
    ordered, seen = [], set()
    for a, b in pairs:
        if a == b:
            continue
        key = (min(a, b), max(a, b))
        if key not in seen:
            seen.add(key)
            ordered.append((a, b))
        neighbours[a].add(b)
        neighbours[b].add(a)
    return neighbours, ordered


def findLinkBonds(topology, mlAtoms, system=None):
    """The bonds that cross the boundary of the region, as ``(mlAtom, mmAtom)`` pairs.

    Bonds come from the Topology (in its order, as openmm-ml's ``findLinkBonds``), then from the
    System's harmonic bonds and constraints that the Topology lacks (a ligand read without
    CONECT records, for example).
    """
    return _cutBonds(_bondGraph(topology, system)[1], mlAtoms)


def _cutBonds(ordered, mlAtoms):
    mlSet = set(mlAtoms)
    result = []
    for a, b in ordered:
        if (a in mlSet) != (b in mlSet):
            result.append((a, b) if a in mlSet else (b, a))
    return result


def _describe(atoms, i):
    atom = atoms[i]
    return f"{i} ({atom.name} of {atom.residue.name} {atom.residue.id})"


def _inRing(neighbours, a, b):
    """Whether the bond a-b lies in a ring: b reachable from a without that bond."""
    stack, seen = [a], {a}
    while stack:
        x = stack.pop()
        for y in neighbours[x]:
            if x == a and y == b:
                continue
            if y == b:
                return True
            if y not in seen:
                seen.add(y)
                stack.append(y)
    return False


def _bondOrder(topology, a, b):
    for bond in topology.bonds():
        if {bond.atom1.index, bond.atom2.index} == {a, b}:
            if bond.order is not None and bond.order > 1:
                return bond.order
            if bond.type in (app.Double, app.Triple, app.Aromatic, app.Amide):
                return {app.Double: 2, app.Triple: 3, app.Aromatic: 1.5, app.Amide: 1.5}[bond.type]
    return None


def _equilibriumLength(system, a, b):
    for force in system.getForces():
        if isinstance(force, openmm.HarmonicBondForce):
            for i in range(force.getNumBonds()):
                p, q, r0, _ = force.getBondParameters(i)
                if {p, q} == {a, b}:
                    return mdValue(r0)
    for i in range(system.getNumConstraints()):
        p, q, r0 = system.getConstraintParameters(i)
        if {p, q} == {a, b}:
            return mdValue(r0)
    return None


@dataclass
class LinkAtoms:
    """The link-atom set-up of a region: what :func:`linkAtomSetup` found and decided."""
    mlAtoms: List[int]
    bonds: List[LinkBond]
    placement: str = "distance"
    #: None (mechanical embedding) or a name from :data:`CHARGE_SCHEMES`.
    chargeScheme: Optional[str] = None
    #: Every particle's bonded neighbours (the Topology's bonds, the System's bonds and constraints).
    neighbours: Optional[list] = field(default=None, repr=False)

    @property
    def mmAtoms(self):
        """The MM atom of each cut bond (M1), in cap order."""
        return [b.mmAtom for b in self.bonds]

    @property
    def secondNeighbours(self):
        """The distinct M2 atoms (electrostatic embedding), in the order the MLForce holds them."""
        result = []
        if self.chargeScheme is not None:
            for b in self.bonds:
                for j in b.neighbours:
                    if j not in result:
                        result.append(j)
        return result

    @property
    def forceAtoms(self):
        """The MLForce's particles: the region, M1 of each cut bond, then the M2 atoms."""
        return list(self.mlAtoms) + self.mmAtoms + self.secondNeighbours

    @property
    def numModelAtoms(self):
        """How many atoms the model sees: the region, then one cap per cut bond."""
        return len(self.mlAtoms) + len(self.bonds)

    def cappedTopology(self, topology):
        """A copy of ``topology`` with one hydrogen per cap appended (in a chain of its own, as
        openmm-ml does), and the indices of the atoms the model sees in it (the region, then the
        caps): what a named model is built from."""
        capped = app.Topology()
        capped.setPeriodicBoxVectors(topology.getPeriodicBoxVectors())
        mapping = {}
        for chain in topology.chains():
            newChain = capped.addChain(chain.id)
            for residue in chain.residues():
                newResidue = capped.addResidue(residue.name, newChain, residue.id, residue.insertionCode)
                for atom in residue.atoms():
                    mapping[atom] = capped.addAtom(atom.name, atom.element, newResidue, atom.id)
        for bond in topology.bonds():
            capped.addBond(mapping[bond.atom1], mapping[bond.atom2], bond.type, bond.order)
        chain = capped.addChain("LINK")
        caps = []
        for k, bond in enumerate(self.bonds):
            residue = capped.addResidue(f"LK{k}", chain)
            caps.append(capped.addAtom(f"HL{k}", app.element.hydrogen, residue).index)
        return capped, list(self.mlAtoms) + caps

    def capPositions(self, positions, box=None):
        """The caps' positions (nm, numpy [k, 3]) for positions of the whole System (nm or Quantity):
        what the model sees, e.g. to write out the capped region.  With ``box`` (three box vectors,
        nm or Quantity, OpenMM's reduced form) each MM atom is imaged next to its ML atom first, as
        MLForce does for a periodic System."""
        import numpy as np
        import openmm.unit as unit
        if unit.is_quantity(positions):
            positions = positions.value_in_unit(unit.nanometer)
        x = np.asarray(positions, dtype=np.float64)
        vectors = None
        if box is not None:
            vectors = np.array([[mdValue(c) for c in v] if not unit.is_quantity(v) else
                                list(v.value_in_unit(unit.nanometer)) for v in box], dtype=np.float64)
        rows = x[list(self.mlAtoms) + self.mmAtoms]  # the region, then the MM atom of each cut bond
        if vectors is not None:
            for k, b in enumerate(self.bonds):
                d = rows[len(self.mlAtoms) + k] - x[b.mlAtom]
                for axis in (2, 1, 0):  # triclinic in OpenMM's reduced form: c, then b, then a
                    d -= vectors[axis] * np.floor(d[axis] / vectors[axis][axis] + 0.5)
                rows[len(self.mlAtoms) + k] = x[b.mlAtom] + d
        with torch.no_grad():
            capped = self.capModule()(torch.tensor(rows, dtype=torch.float64))
        return capped[len(self.mlAtoms):].numpy().reshape(-1, 3)

    def capModule(self):
        """The :class:`LinkAtomCaps` module for these bonds (positions of :attr:`forceAtoms` in,
        the region and its caps out)."""
        n = len(self.mlAtoms)
        values = [b.ratio if self.placement == "ratio" else b.distance for b in self.bonds]
        return LinkAtomCaps(n, [self.mlAtoms.index(b.mlAtom) for b in self.bonds],
                            [n + k for k in range(len(self.bonds))], values, self.placement == "ratio")

    def chargeModule(self, charges):
        """The :class:`RedistributedCharges` module for ``charges`` (e, one per particle)."""
        n = len(self.mlAtoms)
        second = self.secondNeighbours
        rowOf = {j: n + len(self.bonds) + k for k, j in enumerate(second)}
        pairs, pairCharges = [], []
        siteCharges = {j: float(charges[j]) for j in second}
        for k, b in enumerate(self.bonds):
            q0 = float(charges[b.mmAtom]) / len(b.neighbours)
            for j in b.neighbours:
                pairs.append((n + k, rowOf[j]))
                if self.chargeScheme == "rcd":
                    pairCharges.append(2.0 * q0)
                    siteCharges[j] -= q0
                else:
                    pairCharges.append(q0)
        return RedistributedCharges([p for p, _ in pairs], [q for _, q in pairs], pairCharges,
                                    [rowOf[j] for j in second], [siteCharges[j] for j in second])

    def wrap(self, model, takesBox):
        """``model`` (built for :attr:`numModelAtoms` atoms) behind the caps: a module taking the
        positions of :attr:`forceAtoms` (and the box if ``takesBox``)."""
        return CappedModelWithBox(model, self.capModule()) if takesBox else CappedModel(model, self.capModule())

    def wrapEmbedding(self, model, charges, periodicForm):
        """An embedding-contract ``model`` behind the caps and the redistributed charges.
        ``periodicForm``: ``model`` takes (positions, box, mm_positions, mm_charges, mm_mask); else
        (positions, mm_positions, mm_charges, mm_mask)."""
        cls = CappedEmbedding if periodicForm else CappedEmbeddingNoBox
        return cls(model, self.capModule(), self.chargeModule(charges))

    def summary(self, topology):
        """One line per cut bond, for logs."""
        atoms = list(topology.atoms())
        where = ("at {:.4f} nm" if self.placement == "distance" else "at {:.4f} of the bond")
        return [f"link atom {k}: caps {_describe(atoms, b.mlAtom)} - {_describe(atoms, b.mmAtom)} "
                + where.format(b.distance if self.placement == "distance" else b.ratio)
                for k, b in enumerate(self.bonds)]


def linkAtomSetup(topology, system, mlAtoms, linkAtomDistances=None, placement="distance", chargeScheme=None,
                  who="createMixedSystem"):
    """Find and check the cut bonds of a region and decide where their caps sit.

    Parameters
    ----------
    topology : openmm.app.Topology
    system : openmm.System
    mlAtoms : sequence of int
    linkAtomDistances : sequence of (int, int, distance), optional
        Cap distances from the ML atom (nm or Quantity) for particular cut bonds, given by their
        two atoms in either order (openmm-ml's argument).
    placement : 'distance' or 'ratio'
    chargeScheme : None, 'rcd' or 'rc'
        The charge redistribution of electrostatic embedding (None: mechanical embedding).

    Returns
    -------
    LinkAtoms or None
        None when the region cuts no bond.

    Raises
    ------
    ValueError
        A cut bond to a hydrogen; two cut bonds on one MM atom; an override that names no cut
        bond or is not a positive distance; 'ratio' placement for a bond with no MM length; with
        electrostatic embedding, an MM atom with no other neighbour or bonded to the MM atom of
        another cut bond.
    """
    if placement not in PLACEMENTS:
        raise ValueError(f"{who}: linkAtomPlacement must be one of {', '.join(PLACEMENTS)}, not {placement!r}")
    if chargeScheme is not None and chargeScheme not in CHARGE_SCHEMES:
        raise ValueError(f"{who}: linkAtomCharges must be one of {', '.join(CHARGE_SCHEMES)}, not {chargeScheme!r}")
    mlAtoms = list(mlAtoms)
    neighbours, ordered = _bondGraph(topology, system)
    cut = _cutBonds(ordered, mlAtoms)
    overrides = {}
    for entry in linkAtomDistances or []:
        try:
            i, j, distance = entry
        except (TypeError, ValueError):
            raise ValueError(f"{who}: each entry of linkAtomDistances is (atom1, atom2, distance), not {entry!r}") from None
        value = mdValue(distance)
        if not value > 0 or not math.isfinite(value):
            raise ValueError(f"{who}: the link-atom distance for the bond {i}-{j} must be a positive distance, not {distance}")
        overrides[(min(int(i), int(j)), max(int(i), int(j)))] = value
    cutKeys = {(min(a, b), max(a, b)) for a, b in cut}
    for key in overrides:
        if key not in cutKeys:
            raise ValueError(f"{who}: linkAtomDistances names the atoms {key[0]} and {key[1]}, which are not a bond the "
                             f"ML region cuts. The cut bonds are: {', '.join(f'{a}-{b}' for a, b in cut) or 'none'}.")
    if not cut:
        return None
    atoms = list(topology.atoms())
    mlSet = set(mlAtoms)
    seenMM = {}
    bonds = []
    for q1, m1 in cut:
        for index in (q1, m1):
            element = atoms[index].element
            if element is not None and element.atomic_number == _HYDROGEN:
                raise ValueError(f"{who}: the ML region cuts the bond {_describe(atoms, q1)} - {_describe(atoms, m1)}, "
                                 "which ends on a hydrogen; a hydrogen cannot be capped by a link atom. Keep each "
                                 "hydrogen in the same region as the atom it is bonded to.")
        if m1 in seenMM:
            raise ValueError(f"{who}: MM atom {_describe(atoms, m1)} is bonded to two ML atoms ({seenMM[m1]} and {q1}); "
                             "two link atoms on one MM atom would sit on top of each other. Put that atom in the ML "
                             "region, or leave both of its ML neighbours out.")
        seenMM[m1] = q1
        order = _bondOrder(topology, q1, m1)
        if order is not None:
            warnings.warn(f"{who}: the cut bond {_describe(atoms, q1)} - {_describe(atoms, m1)} has bond order {order}; a "
                          "hydrogen link atom replaces a single bond. Cut a single bond instead.", stacklevel=3)
        if _inRing(neighbours, q1, m1):
            warnings.warn(f"{who}: the cut bond {_describe(atoms, q1)} - {_describe(atoms, m1)} lies in a ring; the ML "
                          "region cuts the ring open. Put the whole ring on one side.", stacklevel=3)
        element = atoms[q1].element
        if element is None:
            raise ValueError(f"{who}: ML atom {q1} has no element in the topology; a link atom's distance needs it")
        distance = overrides.get((min(q1, m1), max(q1, m1)),
                                 0.001 * (COVALENT_RADII[element.atomic_number] + COVALENT_RADII[_HYDROGEN]))
        ratio = None
        if placement == "ratio":
            r0 = _equilibriumLength(system, q1, m1)
            if r0 is None or not r0 > 0:
                raise ValueError(f"{who}: linkAtomPlacement='ratio' needs the MM equilibrium length of the cut bond "
                                 f"{q1}-{m1}, but the System has no harmonic bond or constraint for it. Use "
                                 "linkAtomPlacement='distance'.")
            ratio = distance / r0
        bonds.append(LinkBond(q1, m1, distance, ratio, sorted(j for j in neighbours[m1] if j != q1)))
    if chargeScheme is not None:
        m1Set = {b.mmAtom for b in bonds}
        for b in bonds:
            if not b.neighbours:
                raise ValueError(f"{who}: the MM atom {_describe(atoms, b.mmAtom)} of a cut bond has no other bonded "
                                 "neighbour to take its charge with electrostatic embedding. Move the boundary by one "
                                 "bond, or use mechanical embedding.")
            for j in b.neighbours:
                if j in mlSet or j in m1Set:
                    raise ValueError(f"{who}: the MM atoms {b.mmAtom} and {j} of two cut bonds are bonded to each other; "
                                     "their charges cannot both be redistributed with electrostatic embedding. Move the "
                                     "boundary so that cut bonds are at least two bonds apart on the MM side.")
    return LinkAtoms(mlAtoms, bonds, placement, chargeScheme, neighbours)


class RegionTerms:
    """Which bonded MM terms the model accounts for, and so are replaced.

    Without link atoms (``neighbours`` None): the terms whose particles are all in the region.
    With link atoms: openmm-ml 1.8's selection (see the module documentation), with ``expanded``
    the region plus every atom bonded to it.
    """

    def __init__(self, region, neighbours=None):
        self.region = set(region)
        self.neighbours = neighbours
        self.expanded = set(self.region)
        if neighbours is not None:
            for i in self.region:
                if i < len(neighbours):
                    self.expanded |= neighbours[i]

    def inside(self, particles):
        return all(p in self.region for p in particles)

    def bond(self, a, b):
        return a in self.region and b in self.region

    def angle(self, a, b, c):
        if self.neighbours is None:
            return self.inside((a, b, c))
        return b in self.region and a in self.expanded and c in self.expanded

    def _bonded(self, a, b):
        return a < len(self.neighbours) and b in self.neighbours[a]

    def torsion(self, a, b, c, d):
        if self.neighbours is None:
            return self.inside((a, b, c, d))
        if self._bonded(a, b) and self._bonded(b, c) and self._bonded(c, d):
            return b in self.region and c in self.region
        for centre, others in ((a, (b, c, d)), (b, (a, c, d)), (c, (a, b, d)), (d, (a, b, c))):
            if all(self._bonded(centre, o) for o in others):
                return centre in self.region
        return self.inside((a, b, c, d))

    def cmap(self, particles):
        if self.neighbours is None:
            return self.inside(particles)
        a1, a2, a3, a4, b1, b2, b3, b4 = particles
        return (a2 in self.region and a3 in self.region and a1 in self.expanded and a4 in self.expanded and
                b2 in self.region and b3 in self.region and b1 in self.expanded and b4 in self.expanded)


def regionTerms(topology, system, region, linkAtoms):
    """The :class:`RegionTerms` of a region: openmm-ml's selection when ``linkAtoms`` (a
    :class:`LinkAtoms` or None) caps cut bonds, the terms wholly inside otherwise."""
    if linkAtoms is None:
        return RegionTerms(region)
    neighbours = linkAtoms.neighbours if linkAtoms.neighbours is not None else _bondGraph(topology, system)[0]
    return RegionTerms(region, neighbours)


# -- the modules the MLForce runs ------------------------------------------------------------------


class LinkAtomCaps(torch.nn.Module):
    """The region's positions followed by its caps, from the positions of the MLForce's particles.

    ``forward(positions [N, 3]) -> [numRegion + k, 3]``: rows ``0..numRegion-1`` unchanged, then
    cap ``c = x[ml[c]] + value[c] * u`` with ``u`` the unit vector (placement by distance) or the
    vector (by ratio) from ``x[ml[c]]`` to ``x[mm[c]]``.  Static shapes and index buffers only.
    """

    def __init__(self, numRegion, mlRows, mmRows, values, byRatio):
        super().__init__()
        self.numRegion = int(numRegion)
        self.byRatio = bool(byRatio)
        self.register_buffer("ml", torch.tensor(list(mlRows), dtype=torch.long))
        self.register_buffer("mm", torch.tensor(list(mmRows), dtype=torch.long))
        self.register_buffer("value", torch.tensor([float(v) for v in values], dtype=torch.float64))

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        a = positions[self.ml]
        d = positions[self.mm] - a
        value = self.value.to(positions.dtype).unsqueeze(1)
        if self.byRatio:
            caps = a + value * d
        else:
            caps = a + value * d / torch.linalg.norm(d, dim=1, keepdim=True)
        return torch.cat([positions[:self.numRegion], caps], dim=0)


class CappedModel(torch.nn.Module):
    """A vacuum model ``forward(positions)`` of the region and its caps, fed from the MLForce's
    particles (region, then M1 atoms)."""

    def __init__(self, model, caps):
        super().__init__()
        self.model = model
        self.caps = caps

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        return self.model(self.caps(positions))


class CappedModelWithBox(torch.nn.Module):
    """As :class:`CappedModel` for a model ``forward(positions, box)``."""

    def __init__(self, model, caps):
        super().__init__()
        self.model = model
        self.caps = caps

    def forward(self, positions: torch.Tensor, box: torch.Tensor) -> torch.Tensor:
        return self.model(self.caps(positions), box)


class RedistributedCharges(torch.nn.Module):
    """The point charges that replace the MM atoms of cut bonds and their neighbours in the
    environment the model sees: ``forward(positions) -> (sites [P + S, 3], charges [P + S])``,
    one site at the midpoint of each M1-M2 bond (rows ``pairA``, ``pairB`` of the MLForce's
    positions) and one on each M2 atom (rows ``siteRows``)."""

    def __init__(self, pairA, pairB, pairCharges, siteRows, siteCharges):
        super().__init__()
        self.register_buffer("pairA", torch.tensor(list(pairA), dtype=torch.long))
        self.register_buffer("pairB", torch.tensor(list(pairB), dtype=torch.long))
        self.register_buffer("siteRows", torch.tensor(list(siteRows), dtype=torch.long))
        self.register_buffer("charges", torch.tensor([float(q) for q in list(pairCharges) + list(siteCharges)],
                                                     dtype=torch.float64))

    def forward(self, positions: torch.Tensor):
        midpoints = 0.5 * (positions[self.pairA] + positions[self.pairB])
        sites = torch.cat([midpoints, positions[self.siteRows]], dim=0)
        return sites, self.charges


def _extend(mm_positions: torch.Tensor, mm_charges: torch.Tensor, mm_mask: torch.Tensor, sites: torch.Tensor,
            charges: torch.Tensor):
    extra = torch.ones(sites.shape[0], dtype=mm_mask.dtype, device=mm_mask.device)
    return (torch.cat([mm_positions, sites.to(mm_positions.dtype)], dim=0),
            torch.cat([mm_charges, charges.to(mm_charges.dtype)], dim=0),
            torch.cat([mm_mask, extra], dim=0))


class CappedEmbedding(torch.nn.Module):
    """An embedding model ``forward(positions, box, mm_positions, mm_charges, mm_mask)`` of the
    region and its caps, with the redistributed charges appended to the environment."""

    def __init__(self, model, caps, charges):
        super().__init__()
        self.model = model
        self.caps = caps
        self.redistributed = charges

    def forward(self, positions: torch.Tensor, box: torch.Tensor, mm_positions: torch.Tensor, mm_charges: torch.Tensor,
                mm_mask: torch.Tensor) -> torch.Tensor:
        sites, charges = self.redistributed(positions)
        y, q, m = _extend(mm_positions, mm_charges, mm_mask, sites, charges)
        return self.model(self.caps(positions), box, y, q, m)


class CappedEmbeddingNoBox(torch.nn.Module):
    """As :class:`CappedEmbedding` for a model ``forward(positions, mm_positions, mm_charges, mm_mask)``."""

    def __init__(self, model, caps, charges):
        super().__init__()
        self.model = model
        self.caps = caps
        self.redistributed = charges

    def forward(self, positions: torch.Tensor, mm_positions: torch.Tensor, mm_charges: torch.Tensor,
                mm_mask: torch.Tensor) -> torch.Tensor:
        sites, charges = self.redistributed(positions)
        y, q, m = _extend(mm_positions, mm_charges, mm_mask, sites, charges)
        return self.model(self.caps(positions), y, q, m)
