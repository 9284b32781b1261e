"""Link atoms: hydrogen caps on the bonds an ML region cuts (openmmhybrid.linkatoms and
createMixedSystem(..., linkAtoms=True, linkAtomDistances, linkAtomPlacement, linkAtomCharges)).

Independent references: openmm-ml 1.8's link-atom mechanical embedding around the same ANI-1x
model (caps as virtual sites, its own term selection), the cap formula and the Lin-Truhlar charge
schemes written out in NumPy, a multipole bound on the far field of the redistributed charges,
finite differences of the energy, and ANI-1x evaluated eagerly on the region and its caps.

The cut bonds of the alanine dipeptide used throughout (findLinkBonds order, (ML atom, MM atom)):
the ALA residue cuts both peptide bonds, N(6)-C(4, ACE) and C(14)-N(16, NME); the ALA side chain
(CB, HB1-3) cuts CB(10)-CA(8).
"""
import collections
import warnings

import numpy as np
import openmm
import openmm.app as app
import openmm.unit as unit
import pytest
import torch

import openmmhybrid
from openmmhybrid.embedding import systemCharges
from openmmhybrid.linkatoms import COVALENT_RADII, findLinkBonds, linkAtomSetup, regionTerms
from openmmhybrid.utils import ONE_4PI_EPS0
from models import PairMLP
from conftest import openmm_ml_peer
from precision import EPS64, bound, boxMatrix, centralDifference, networkTerms, nonbondedBounds

LAMBDA = "lambda_interpolate"
KJ = unit.kilojoule_per_mole
ALA_CUTS = [(6, 4), (14, 16)]
SIDE_CHAIN = ("CB", "HB1", "HB2", "HB3")


def ANI_TERMS(n):
    """Rounding steps of ANI-1x on n atoms: 4 layers of at most 384 inputs, 8 ensemble members per atom."""
    return networkTerms(384, 4, 8 * n)


@pytest.fixture(scope="module")
def vacuum(dipeptide):
    """The alanine dipeptide alone (waters deleted), amber14 (ff14SB), no cutoff, HBonds:
    (topology, System, positions in nm)."""
    prm, crd, _ = dipeptide
    modeller = app.Modeller(prm.topology, crd.positions)
    modeller.deleteWater()
    modeller.topology.setPeriodicBoxVectors(None)
    system = app.ForceField("amber14-all.xml").createSystem(modeller.topology, nonbondedMethod=app.NoCutoff,
                                                            constraints=app.HBonds)
    return modeller.topology, system, np.array(modeller.positions.value_in_unit(unit.nanometer))


def residue(prm, name="ALA"):
    return [a.index for a in prm.topology.atoms() if a.residue.name == name]


def side_chain(topology):
    return [a.index for a in topology.atoms() if a.residue.name == "ALA" and a.name in SIDE_CHAIN]


def context(system, platform, positions, box=None, integrator=None):
    c = openmm.Context(system, integrator or openmm.VerletIntegrator(0.001), platform)
    if box is not None:
        c.setPeriodicBoxVectors(*box)
    c.setPositions(positions)
    return c


def energy(c, groups=-1):
    return c.getState(getEnergy=True, groups=groups).getPotentialEnergy().value_in_unit(KJ)


def energy_forces(c, groups=-1):
    state = c.getState(getEnergy=True, getForces=True, groups=groups)
    return (state.getPotentialEnergy().value_in_unit(KJ),
            state.getForces(asNumpy=True).value_in_unit(KJ / unit.nanometer))


def positions_nm(crd):
    return np.array(crd.positions.value_in_unit(unit.nanometer))


def ml_forces(system):
    """The MLForces of a System, also those inside a CustomCVForce (openmm-ml's interpolation)."""
    found = []
    for force in system.getForces():
        inner = ([force.getCollectiveVariable(i) for i in range(force.getNumCollectiveVariables())]
                 if isinstance(force, openmm.CustomCVForce) else [force])
        found += [openmmhybrid.MLForce.cast(f) for f in inner if openmmhybrid.MLForce.isinstance(f)]
    return found


def ml_force(system):
    found = [openmmhybrid.MLForce.cast(f) for f in system.getForces() if openmmhybrid.MLForce.isinstance(f)]
    assert len(found) == 1
    return found[0]


def one_thread(system):
    """Run every MLForce's model on one thread.  On Reference the default is torch's thread count,
    and on this 2-core machine two threads make a 12-atom ANI-1x call 12x slower (measured 0.39 s
    against 0.03 s); the numbers these tests compare do not depend on it."""
    for force in ml_forces(system):
        force.setProperty("modelThreads", 1)
    return system


_ANI = {}


def capped_ani(links, topology):
    """Eager float64 ANI-1x for the region and its caps (built once per list of elements)."""
    from openmmhybrid.models import atomicNumbers
    from openmmhybrid.models.ani import ANI1x
    numbers = tuple(atomicNumbers(*links.cappedTopology(topology)))
    if numbers not in _ANI:
        _ANI[numbers] = ANI1x(list(numbers))
    return _ANI[numbers]


def ani_energy(model, x):
    with torch.no_grad():
        return model(torch.tensor(x, dtype=torch.float64)).item()


def imaged(pos, atoms, box):
    """Positions of ``atoms`` imaged next to the first one in a rectangular box, as MLForce does."""
    x = pos[atoms].copy()
    lengths = np.diag(box)
    d = x - x[0]
    return x[0] + d - lengths * np.round(d / lengths)


# ---------------------------------------------------------------------------------------------
# 1. openmm-ml 1.8: the same caps, the same term selection, the same energies

def openmm_ml_ani_peer():
    """openmm-ml's MLPotential running our ANI-1x (float64) through an MLForce on whatever atoms
    openmm-ml gives it (the region, then its caps as virtual sites)."""
    pytest.importorskip("openmmml", reason="the peer implementation of link atoms to compare against")
    pytest.importorskip("torchani", reason="the 'ani1x' model reads its weights from torchani 2.2.4")
    from openmmhybrid.models import atomicNumbers
    from openmmhybrid.models.ani import ANI1x
    return openmm_ml_peer("openmmhybrid-test-ani-links", lambda topology, atoms: ANI1x(atomicNumbers(topology, atoms)))


def test_covalent_radii_match_openmm_ml():
    utilities = pytest.importorskip("openmmml.embeddings.utilities", reason="openmm-ml's table to compare against")
    theirs = [r.value_in_unit(unit.picometer) for r in utilities.COVALENT_RADII]
    assert COVALENT_RADII == theirs  # the same integers in pm, element by element (so caps sit at the same place)
    assert len(COVALENT_RADII) == 119 and (COVALENT_RADII[1], COVALENT_RADII[6], COVALENT_RADII[7]) == (32, 75, 71)


def terms_kept(force, keep):
    """Counter of the (particles, parameters) of the bonded terms of ``force`` for which keep(*particles)."""
    out = collections.Counter()
    if isinstance(force, openmm.HarmonicBondForce):
        items = (force.getBondParameters(i) for i in range(force.getNumBonds()))
        width = 2
    elif isinstance(force, openmm.HarmonicAngleForce):
        items = (force.getAngleParameters(i) for i in range(force.getNumAngles()))
        width = 3
    elif isinstance(force, openmm.PeriodicTorsionForce):
        items = (force.getTorsionParameters(i) for i in range(force.getNumTorsions()))
        width = 4
    else:
        return None
    for item in items:
        particles = tuple(item[:width])
        if keep(*particles):
            out[particles + tuple(getattr(v, "_value", v) for v in item[width:])] += 1
    return out


@pytest.mark.parametrize("case", ["residue", "side chain"])
def test_term_selection_matches_openmm_ml(case, dipeptide):
    """The bonded MM terms our RegionTerms replaces are the ones openmm-ml's removeBonds removes."""
    utilities = pytest.importorskip("openmmml.embeddings.utilities", reason="openmm-ml's selection to compare against")
    prm, _, system = dipeptide
    region = residue(prm) if case == "residue" else side_chain(prm.topology)
    links = linkAtomSetup(prm.topology, system, region)
    ours = regionTerms(prm.topology, system, set(region), links)
    theirs = utilities.removeBonds(system, prm.topology, region, True)
    removed = {}
    for k, force in enumerate(system.getForces()):
        predicate = {openmm.HarmonicBondForce: ours.bond, openmm.HarmonicAngleForce: ours.angle,
                     openmm.PeriodicTorsionForce: ours.torsion}.get(type(force))
        if predicate is None:
            continue
        kept = terms_kept(force, lambda *p: not predicate(*p))
        assert kept == terms_kept(theirs.getForce(k), lambda *p: True), type(force).__name__
        removed[type(force).__name__] = sum(terms_kept(force, predicate).values())
    # Counted from the dipeptide's bonds (HBonds: X-H bonds are constraints, with no bond term).
    # Residue: bonds N-CA, CA-CB, CA-C, C-O; angles 3 centred on N (one end C of ACE), 6 on CA, 6 on
    # CB, 3 on C (one end N of NME); torsions about N-CA (2 x 3 dihedrals), CA-CB (3 x 3) and CA-C
    # (3 x 2): 21 dihedrals in 26 Fourier terms, plus the impropers at N and C.  Side chain: the 6
    # angles centred on CB (3 of them ending on CA); no torsion has its central bond in CB-HBn.
    expected = ({"HarmonicBondForce": 4, "HarmonicAngleForce": 18, "PeriodicTorsionForce": 28} if case == "residue"
                else {"HarmonicBondForce": 0, "HarmonicAngleForce": 6, "PeriodicTorsionForce": 0})
    assert removed == expected


def region_pair_coulomb(system, region, pos):
    """(E, per-atom sum of |pair force|) of the plain Coulomb of every pair inside the region with the
    NonbondedForce's pair charge product (exception or q_i q_j), NumPy float64."""
    nb = next(f for f in system.getForces() if isinstance(f, openmm.NonbondedForce))
    products = {}
    for i in range(nb.getNumExceptions()):
        a, b, q, _, _ = nb.getExceptionParameters(i)
        products[(min(a, b), max(a, b))] = q.value_in_unit(unit.elementary_charge ** 2)
    charge = systemCharges(system)
    total, per_atom = 0.0, np.zeros(system.getNumParticles())
    atoms = sorted(region)
    for x, a in enumerate(atoms):
        for b in atoms[x + 1:]:
            q = products.get((a, b), charge[a] * charge[b])
            r = np.linalg.norm(pos[a] - pos[b])
            total += ONE_4PI_EPS0 * q / r
            per_atom[[a, b]] += abs(ONE_4PI_EPS0 * q / r ** 2)
    return total, per_atom.max()


@pytest.mark.parametrize("case", ["residue", "side chain"])
def test_agrees_with_openmm_ml(case, dipeptide):
    """Our caps (inside the model) against openmm-ml's (virtual sites), lambda 0 ... 1, the inpcrd and
    a perturbed configuration, Reference (float64: on CPU the float32 nonbonded rounding, 0.6 kJ/mol
    at this |E|, would hide what is compared).

    Two differences are the peer's MM side, and the test accounts for them exactly:

    - its System has one particle more per cap (charge 0, no Lennard-Jones), which changes the
      long-range dispersion correction (an average over all particles): ``disp``, 2.3e-5 kJ/mol per
      cap, at every lambda;
    - it adds the region's Coulomb pairs back at (1 - lambda) with 138.935456 instead of OpenMM's
      ONE_4PI_EPS0 = 138.93545764438198 (1.2e-8 relative less).

    Measured, after those: residuals below 1e-10 kJ/mol (bound 2e-8), forces at lambda 1 within
    4e-12 kJ/mol/nm; without them the energies differ by 4.8e-5 kJ/mol (two caps), below the
    issue's 1e-3 kJ/mol, which is asserted as well."""
    peer = openmm_ml_ani_peer()
    prm, crd, system = dipeptide
    region = residue(prm) if case == "residue" else side_chain(prm.topology)
    cuts = findLinkBonds(prm.topology, region, system)
    assert cuts == (ALA_CUTS if case == "residue" else [(10, 8)])
    theirs = one_thread(peer.createMixedSystem(prm.topology, system, region, interpolate=True, mlLongRange=False,
                                               removeConstraints=False))
    ours = one_thread(openmmhybrid.createMixedSystem(prm.topology, system, region, "ani1x", interpolate=True,
                                                     usesDoublePrecision=True))
    extra = theirs.getNumParticles() - ours.getNumParticles()
    assert extra == len(cuts) and ours.getNumParticles() == system.getNumParticles()
    links = linkAtomSetup(prm.topology, system, region)
    model = capped_ani(links, prm.topology)
    reference = openmm.Platform.getPlatformByName("Reference")
    box = crd.boxVectors
    # The peer's dispersion-correction change: the MM System with the same zero particles appended.
    padded = openmm.XmlSerializer.clone(system)
    nb = next(f for f in padded.getForces() if isinstance(f, openmm.NonbondedForce))
    for _ in range(extra):
        padded.addParticle(0.0)
        nb.addParticle(0.0, 1.0, 0.0)
    coulomb_ratio = 138.935456 / ONE_4PI_EPS0 - 1
    rng = np.random.default_rng(17)
    inpcrd = positions_nm(crd)
    for pos in (inpcrd, inpcrd + rng.uniform(-0.005, 0.005, inpcrd.shape)):
        far = pos[:extra] + 5.0  # anywhere: no charge and no Lennard-Jones, only their count matters
        e_mm = energy(context(system, reference, pos, box))
        disp = energy(context(padded, reference, np.vstack([pos, far]), box)) - e_mm
        e_coulomb, f_coulomb = region_pair_coulomb(system, region, pos)
        e_ani = ani_energy(model, np.vstack([pos[region], links.capPositions(pos)]))
        c_theirs = context(theirs, reference, np.vstack([pos, np.zeros((extra, 3))]), box)
        c_theirs.computeVirtualSites()
        c_ours = context(ours, reference, pos, box)
        for lam in (0.0, 0.25, 0.5, 0.75, 1.0):
            c_theirs.setParameter(LAMBDA, lam)
            c_ours.setParameter(LAMBDA, lam)
            e_theirs, f_theirs = energy_forces(c_theirs)
            e_ours, f_ours = energy_forces(c_ours)
            f_theirs = f_theirs[:len(pos)]
            # Rounding, float64: both sum the MM nonbonded pairs (nonbondedBounds at the scale |E_MM|)
            # and the network (scale its energy |E_ANI - self energies|) plus the float64 self
            # energies (two roundings at |E_ANI|); the caps (LocalCoordinatesSite against torch)
            # differ by a few eps |x|, which moves E by far less.
            e_bound, f_bound = nonbondedBounds(system, boxMatrix(crd), abs(e_mm), np.abs(f_ours).max(), reference)
            e_bound += (bound(e_ani, torch.float64, 2)
                        + bound(e_ani - model.selfEnergy, torch.float64, ANI_TERMS(len(region) + extra)))
            expected = -disp - (1 - lam) * coulomb_ratio * e_coulomb
            print(f"{case} lambda {lam}: ours - openmm-ml {e_ours - e_theirs:.3e} kJ/mol, expected {expected:.3e}, "
                  f"residual {e_ours - e_theirs - expected:.1e} (bound {e_bound:.1e}); forces "
                  f"{np.abs(f_ours - f_theirs).max():.1e} (bound {f_bound:.1e})")
            assert abs(e_ours - e_theirs) <= 1e-3  # the criterion
            assert abs(e_ours - e_theirs - expected) <= e_bound
            # Forces: the same rounding, plus (1 - lambda) times the constants' relative difference
            # times the largest per-atom sum of region Coulomb pair forces.
            assert np.abs(f_ours - f_theirs).max() <= f_bound + (1 - lam) * abs(coulomb_ratio) * f_coulomb


# ---------------------------------------------------------------------------------------------
# 2. Where the caps sit

def bond_r0(system, a, b):
    bonds = next(f for f in system.getForces() if isinstance(f, openmm.HarmonicBondForce))
    for i in range(bonds.getNumBonds()):
        p, q, r0, _ = bonds.getBondParameters(i)
        if {p, q} == {a, b}:
            return r0.value_in_unit(unit.nanometer)
    raise AssertionError(f"no bond term {a}-{b}")


def test_cap_placement(dipeptide):
    """H = Q1 + d (M1 - Q1)/|M1 - Q1|: d = 0.103 nm on N (71 + 32 pm), 0.107 nm on C (75 + 32 pm) by
    default, the override where linkAtomDistances gives one; H = Q1 + (d / r0)(M1 - Q1) with
    'ratio'.  The torch module the MLForce runs places them where capPositions says."""
    prm, crd, system = dipeptide
    region = residue(prm)
    pos = positions_nm(crd)
    lengths = {q1: np.linalg.norm(pos[m1] - pos[q1]) for q1, m1 in ALA_CUTS}

    def check(links, distances):
        assert [(b.mlAtom, b.mmAtom) for b in links.bonds] == ALA_CUTS
        caps = links.capPositions(crd.positions)  # a Quantity works as well as nm
        for cap, (q1, m1) in zip(caps, ALA_CUTS):
            u = (pos[m1] - pos[q1]) / lengths[q1]
            offset = cap - pos[q1]
            # float64, a few roundings of coordinates of size |x| < 4 nm each.
            tolerance = 16 * EPS64 * 4.0
            assert abs(np.linalg.norm(offset) - distances[q1]) <= tolerance
            assert np.linalg.norm(np.cross(offset, u)) <= tolerance and offset @ u > 0  # on the bond, towards M1
        # The module inside the model: positions of forceAtoms in, region then caps out (same float64
        # formula in torch, a few roundings apart).
        out = links.capModule()(torch.tensor(pos[links.forceAtoms])).numpy()
        assert np.array_equal(out[:len(region)], pos[region])
        assert np.abs(out[len(region):] - caps).max() <= tolerance
        return caps

    check(linkAtomSetup(prm.topology, system, region), {6: 0.103, 14: 0.107})
    # An override for one bond, named in either order and as a Quantity; the other keeps its default.
    check(linkAtomSetup(prm.topology, system, region, linkAtomDistances=[(4, 6, 0.095 * unit.nanometer)]),
          {6: 0.095, 14: 0.107})
    ratio = linkAtomSetup(prm.topology, system, region, placement="ratio")
    r0 = {q1: bond_r0(system, q1, m1) for q1, m1 in ALA_CUTS}
    assert [b.ratio for b in ratio.bonds] == pytest.approx([0.103 / r0[6], 0.107 / r0[14]], rel=4 * EPS64)
    check(ratio, {q1: {6: 0.103, 14: 0.107}[q1] / r0[q1] * lengths[q1] for q1, _ in ALA_CUTS})
    assert 0.7 < 0.103 / r0[6] < 0.8  # N-C r0 = 0.1335 nm: the cap at 0.77 of the bond, not at its end


# ---------------------------------------------------------------------------------------------
# 3. Forces on both atoms of every cut bond (and on M2 with electrostatic embedding)

@pytest.fixture(scope="module")
def fd_systems(dipeptide):
    """Mixed Systems of the ALA residue, by charge scheme (None: mechanical embedding), built once
    for both platforms; interpolate=False keeps the MM NonbondedForce (float32 on CPU) out of the
    correction group: with electrostatic embedding the region's charges are removed from it."""
    pytest.importorskip("torchani", reason="the 'ani1x' model reads its weights from torchani 2.2.4")
    prm, _, system = dipeptide
    built = {}

    def get(scheme):
        if scheme not in built:
            options = {} if scheme is None else dict(embedding="electrostatic", linkAtomCharges=scheme)
            mixed = openmmhybrid.createMixedSystem(prm.topology, system, residue(prm), "ani1x",
                                                   usesDoublePrecision=True, correctionGroup=5, **options)
            built[scheme] = one_thread(mixed)
        return built[scheme]
    return get


def embedding_coulomb_scale(pos, box, model_atoms, charges, exclude, cutoff):
    """Sum of |q_i q_j| / r (kJ/mol) over the ML atoms and the MM charges within the cutoff (minimum
    image), and the number of such pairs: the scale of the embedding terms' sums."""
    others = np.array([j for j in range(len(pos)) if j not in exclude and charges[j] != 0])
    d = pos[others][None, :, :] - pos[model_atoms][:, None, :]
    lengths = np.diag(box)
    r = np.linalg.norm(d - lengths * np.round(d / lengths), axis=2)
    q = np.abs(np.outer(np.asarray(charges)[model_atoms], np.asarray(charges)[others]))
    within = r < cutoff
    return ONE_4PI_EPS0 * float((q / r)[within].sum()), int(within.sum())


@pytest.mark.parametrize("scheme", [None, "rcd", "rc"], ids=["mechanical", "electrostatic-rcd", "electrostatic-rc"])
def test_cut_bond_forces_match_finite_differences(scheme, fd_systems, dipeptide, platform):
    """-dE/dx of the correction group (ANI-1x on region + caps, float64, minus the replaced MM terms;
    with electrostatic embedding plus the embedding terms with the redistributed charges) along a
    random direction for Q1 and M1 of both cut bonds, the M2 atoms (electrostatic) and two region
    atoms.  The correction group holds no NonbondedForce, so CPU evaluates it in float64 like
    Reference (measured: the same numbers to the last digit) and one bound serves both."""
    prm, crd, system = dipeptide
    mixed = fd_systems(scheme)
    region = residue(prm)
    links = linkAtomSetup(prm.topology, system, region, chargeScheme=scheme)
    assert links.forceAtoms == region + [4, 16] + ([1, 5, 17, 18] if scheme else [])
    pos, box = positions_nm(crd), boxMatrix(crd)
    c = context(mixed, platform, pos, crd.boxVectors)
    e0, f = energy_forces(c, {5})
    model = capped_ani(links, prm.topology)
    e_ani = ani_energy(model, np.vstack([pos[region], links.capPositions(pos)]))
    # Rounding of one float64 correction energy: the network (|E_ANI - self energies|), the self
    # energies added to it (two roundings at |E_ANI|), and the rest (|E - E_ANI|: replaced MM terms,
    # embedding terms) at the scale of the embedding's Coulomb sums over the environment.
    terms = ANI_TERMS(links.numModelAtoms)
    scale = abs(e0 - e_ani)
    if scheme is not None:
        charges = systemCharges(system)
        coulomb, pairs = embedding_coulomb_scale(pos, box, region, charges, set(links.forceAtoms), 1.0)
        scale += coulomb
        terms += pairs
    rounding = (bound(e_ani - model.selfEnergy, torch.float64, terms) + bound(e_ani, torch.float64, 2)
                + bound(scale, torch.float64, terms))
    h = 1e-5  # ANI-1x's third derivatives reach 2e8 kJ/mol/nm^3 (CA): at 1e-4 nm the truncation is 0.3 kJ/mol/nm
    rng = np.random.default_rng(4)
    atoms = [6, 4, 14, 16, 8, 7] + links.secondNeighbours
    if scheme is None:
        # Mechanical embedding: every replaced term lies within the region and M1 (exact zeros elsewhere).
        assert np.abs(np.delete(f, links.forceAtoms, axis=0)).max() == 0.0
    worst = 0.0
    for atom in atoms:
        u = rng.normal(size=3)
        u /= np.linalg.norm(u)

        def energyAt(dx):
            moved = pos.copy()
            moved[atom] += dx * u
            c.setPositions(moved)
            return energy(c, {5})
        numeric, tolerance = centralDifference(energyAt, h, rounding)
        analytic = f[atom] @ u
        worst = max(worst, abs(numeric - analytic) / tolerance)
        assert abs(numeric - analytic) <= tolerance, (atom, numeric, analytic, tolerance)
    print(f"{scheme}: worst |FD - F| / bound {worst:.2f}, rounding bound {rounding:.1e} kJ/mol")


# ---------------------------------------------------------------------------------------------
# 4. Through dynamics the MLForce sees exactly those caps

def torch_caps(x, bonds, rows):
    """Caps from positions x (torch, [n, 3]) by the formula, independent of LinkAtomCaps: rows maps an
    atom index to its row of x."""
    caps = []
    for b in bonds:
        q, m = x[rows[b.mlAtom]], x[rows[b.mmAtom]]
        caps.append(q + b.distance * (m - q) / torch.linalg.norm(m - q))
    return torch.stack(caps)


def test_caps_through_dynamics(dipeptide):
    """Minimize (20 iterations), then 1,000 steps (2 ps) of LangevinMiddleIntegrator at 2 fs with
    HBonds (the cut bonds are heavy-atom bonds, not constrained), ANI-1x in float64, CPU (about 10 ms
    a step on 2 cores).
    Afterwards the caps are on their bonds at 0.103 and 0.107 nm, and the MLForce's energy and
    forces are ANI-1x evaluated eagerly on the region and caps built here by the formula."""
    pytest.importorskip("torchani", reason="the 'ani1x' model reads its weights from torchani 2.2.4")
    prm, crd, system = dipeptide
    region = residue(prm)
    mixed = openmmhybrid.createMixedSystem(prm.topology, system, region, "ani1x", usesDoublePrecision=True)
    ml = ml_force(mixed)
    ml.setForceGroup(9)
    integrator = openmm.LangevinMiddleIntegrator(300 * unit.kelvin, 1 / unit.picosecond, 0.002 * unit.picoseconds)
    integrator.setRandomNumberSeed(7)
    c = context(mixed, openmm.Platform.getPlatformByName("CPU"), crd.positions, crd.boxVectors, integrator)
    openmm.LocalEnergyMinimizer.minimize(c, 10.0, 20)
    c.setVelocitiesToTemperature(300 * unit.kelvin, 3)
    integrator.step(1000)
    state = c.getState(getPositions=True, getEnergy=True, getForces=True, groups={9})
    pos = state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
    assert np.abs(pos - positions_nm(crd)).max() > 0.1  # it moved
    links = linkAtomSetup(prm.topology, system, region)
    atoms = links.forceAtoms
    x = imaged(pos, atoms, boxMatrix(crd))  # as MLForce images them, next to the first atom
    whole = pos.copy()
    whole[atoms] = x
    caps = links.capPositions(whole)
    for cap, b, d in zip(caps, links.bonds, (0.103, 0.107)):
        q, m = x[atoms.index(b.mlAtom)], x[atoms.index(b.mmAtom)]
        offset = cap - q
        # float64, a few roundings of coordinates below 5 nm.
        assert abs(np.linalg.norm(offset) - d) <= 16 * EPS64 * 5
        assert np.linalg.norm(np.cross(offset, m - q)) / np.linalg.norm(m - q) <= 16 * EPS64 * 5
    model = capped_ani(links, prm.topology)
    xt = torch.tensor(x, requires_grad=True)
    rows = {a: k for k, a in enumerate(atoms)}
    capped = torch.cat([xt[:len(region)], torch_caps(xt, links.bonds, rows)])
    e_eager = model(capped)
    gradient, = torch.autograd.grad(e_eager, xt)
    e_eager = e_eager.item()
    assert np.abs(capped[len(region):].detach().numpy() - caps).max() <= 16 * EPS64 * 5
    # float64, TorchScript kernel against eager: the network (|E_ANI - self energies|), the self
    # energies (two roundings at |E_ANI|); forces at the scale of the largest one.
    e_ml = state.getPotentialEnergy().value_in_unit(KJ)
    f_ml = state.getForces(asNumpy=True).value_in_unit(KJ / unit.nanometer)
    terms = ANI_TERMS(links.numModelAtoms)
    assert abs(e_ml - e_eager) <= (bound(e_eager - model.selfEnergy, torch.float64, terms)
                                   + bound(e_eager, torch.float64, 2))
    assert np.abs(f_ml[atoms] + gradient.numpy()).max() <= bound(np.abs(gradient.numpy()).max(), torch.float64, terms)
    assert np.abs(np.delete(f_ml, atoms, axis=0)).max() == 0.0  # the MLForce acts on its atoms only


def test_caps_across_the_periodic_boundary(fd_systems, dipeptide):
    """The region moved by a box vector, away from the MM atoms of its cut bonds: MLForce images its
    particles next to the first one, so the caps, the energy and the forces do not change."""
    prm, crd, _ = dipeptide
    mixed = openmm.XmlSerializer.clone(fd_systems(None))
    ml_force(mixed).setForceGroup(9)
    region = residue(prm)
    pos, box = positions_nm(crd), boxMatrix(crd)
    moved = pos.copy()
    moved[region] += box[0]
    c = context(mixed, openmm.Platform.getPlatformByName("CPU"), pos, crd.boxVectors)
    e0, f0 = energy_forces(c, {9})
    c.setPositions(moved)
    e1, f1 = energy_forces(c, {9})
    assert abs(e0) > 1e5  # evaluated (the self energies alone are -6.5e5 kJ/mol)
    links = linkAtomSetup(prm.topology, dipeptide[2], region)
    model = capped_ani(links, prm.topology)
    e_ani = ani_energy(model, np.vstack([pos[region], links.capPositions(pos)]))
    # float64: imaging moves each coordinate by a few roundings at |x| < 2 box lengths, which moves
    # E by sum |F| times that and a force by the stiffness (at most ~1e6 kJ/mol/nm^2 for ANI-1x's
    # bonds, generous) times it; plus the rounding of the network sums.
    shift = 4 * EPS64 * 2 * box.max()
    terms = ANI_TERMS(links.numModelAtoms)
    assert abs(e1 - e0) <= np.abs(f0).sum() * shift + bound(e_ani - model.selfEnergy, torch.float64, terms)
    assert np.abs(f1 - f0).max() <= 1e6 * shift + bound(np.abs(f0).max(), torch.float64, terms)
    # capPositions with the box images each MM atom next to its ML atom, as the MLForce does: the
    # caps of the moved region are the original ones moved by the same box vector.
    assert np.abs(links.capPositions(moved, crd.boxVectors) - (links.capPositions(pos) + box[0])).max() <= shift


# ---------------------------------------------------------------------------------------------
# 5. Energy conservation

def nve_fluctuation(topology, system, pos, region):
    """Standard deviation of the total energy over 200 Verlet steps of 0.5 fs (sampled every 5),
    after 30 minimizer iterations, from velocities at 300 K with a fixed seed; CPU."""
    mixed = system if region is None else openmmhybrid.createMixedSystem(topology, system, region, "ani1x",
                                                                         usesDoublePrecision=True)
    integrator = openmm.VerletIntegrator(0.0005)
    c = context(mixed, openmm.Platform.getPlatformByName("CPU"), pos, integrator=integrator)
    openmm.LocalEnergyMinimizer.minimize(c, 1.0, 30)
    c.setVelocitiesToTemperature(300 * unit.kelvin, 5)
    totals = []
    for _ in range(40):
        integrator.step(5)
        state = c.getState(getEnergy=True)
        totals.append((state.getPotentialEnergy() + state.getKineticEnergy()).value_in_unit(KJ))
    return float(np.std(totals))


def test_energy_is_conserved_with_caps(vacuum):
    """The dipeptide in vacuum (so the fluctuation is the solute's own, not the water's): with the ALA
    residue as region (two caps) the total energy fluctuates as much as with the whole dipeptide as
    region (no cut bond) and as pure MM: measured 0.018, 0.015 and 0.013 kJ/mol.  Bound: twice the
    no-cap value.  Verlet's fluctuation grows as dt^2 times the stiffest motion, which the caps do not
    change (they add no particle); a cap force that is not the gradient of the energy (a missing
    chain-rule term on M1 of a few hundred kJ/mol/nm) would make it kJ/mol."""
    pytest.importorskip("torchani", reason="the 'ani1x' model reads its weights from torchani 2.2.4")
    topology, system, pos = vacuum
    ala = [a.index for a in topology.atoms() if a.residue.name == "ALA"]
    assert findLinkBonds(topology, ala, system) == ALA_CUTS
    with_caps = nve_fluctuation(topology, system, pos, ala)
    without = nve_fluctuation(topology, system, pos, list(range(system.getNumParticles())))
    mm = nve_fluctuation(topology, system, pos, None)
    print(f"total energy std: caps {with_caps:.4f}, no cut bond {without:.4f}, MM {mm:.4f} kJ/mol")
    assert with_caps <= 2 * without
    assert without <= 2 * mm  # and the reference itself is MM-like


# ---------------------------------------------------------------------------------------------
# 6. Electrostatic embedding: what the model sees in place of M1 and M2

class EnvironmentCharge(torch.nn.Module):
    """Embedding-contract probe (non-periodic form): 'energy' = the total charge of the environment
    it is handed."""

    def forward(self, positions: torch.Tensor, mm_positions: torch.Tensor, mm_charges: torch.Tensor,
                mm_mask: torch.Tensor) -> torch.Tensor:
        return (mm_charges * mm_mask.to(mm_charges.dtype)).sum() + 0.0 * (positions.sum() + mm_positions.sum())


class EnvironmentCount(torch.nn.Module):
    """Probe: 'energy' = the number of environment entries."""

    def forward(self, positions: torch.Tensor, mm_positions: torch.Tensor, mm_charges: torch.Tensor,
                mm_mask: torch.Tensor) -> torch.Tensor:
        return mm_mask.to(positions.dtype).sum() + 0.0 * (positions.sum() + mm_positions.sum())


class EnvironmentPotential(torch.nn.Module):
    """Probe: 'energy' = sum q / |y - P| (e/nm) of the environment at a fixed point P."""

    def __init__(self, point):
        super().__init__()
        self.register_buffer("point", torch.tensor(point, dtype=torch.float64))

    def forward(self, positions: torch.Tensor, mm_positions: torch.Tensor, mm_charges: torch.Tensor,
                mm_mask: torch.Tensor) -> torch.Tensor:
        r = torch.linalg.norm(mm_positions - self.point.to(mm_positions.dtype), dim=1)
        q = torch.where(mm_mask, mm_charges, torch.zeros_like(mm_charges))
        return (q / r).sum() + 0.0 * positions.sum()


def probe_value(vacuum, region, probe, scheme):
    """The probe's 'energy' in an electrostatic-embedding mixed System of the vacuum dipeptide, every
    particle within the 10 nm cutoff, float64, Reference."""
    topology, system, pos = vacuum
    mixed = openmmhybrid.createMixedSystem(topology, system, region, probe, embedding="electrostatic",
                                           cutoff=10.0, linkAtomCharges=scheme, usesDoublePrecision=True)
    ml = ml_force(mixed)
    ml.setForceGroup(9)
    return energy(context(mixed, openmm.Platform.getPlatformByName("Reference"), pos), {9})


def redistribution(links, charges, pos, scheme):
    """The Lin-Truhlar change of the MM charges, written out here: (charges, positions) of the
    sites added minus those removed: -q1 at M1; with RCD 2 q0 at each M1-M2 midpoint and -q0 on each
    M2 (q0 = q1 / number of M2); with RC q0 at each midpoint."""
    q, r = [], []
    for b in links.bonds:
        q1 = charges[b.mmAtom]
        q0 = q1 / len(b.neighbours)
        q.append(-q1)
        r.append(pos[b.mmAtom])
        for j in b.neighbours:
            q.append(2 * q0 if scheme == "rcd" else q0)
            r.append(0.5 * (pos[b.mmAtom] + pos[j]))
            if scheme == "rcd":
                q.append(-q0)
                r.append(pos[j])
    return np.array(q), np.array(r)


@pytest.mark.parametrize("scheme", ["rcd", "rc"])
@pytest.mark.parametrize("case", ["residue", "side chain"])
def test_redistributed_charges_keep_the_total(case, scheme, vacuum):
    """The environment the model sees carries the System's charge minus the region's (M1's charge
    moved, not lost or doubled): ALA residue 0 e (region 0 e), side chain +0.0016 e (region
    -0.0016 e).  Its entries: the charged particles outside region, M1 and M2, plus one site per
    M1-M2 bond and one per M2: 6 + 4 + 4 = 14 (residue), 14 + 3 + 3 = 20 (side chain)."""
    topology, system, pos = vacuum
    ala = [a.index for a in topology.atoms() if a.residue.name == "ALA"]
    region = ala if case == "residue" else side_chain(topology)
    charges = systemCharges(system)
    links = linkAtomSetup(topology, system, region, chargeScheme=scheme)
    seen = probe_value(vacuum, region, EnvironmentCharge(), scheme)
    # float64 sums of 22 charges of at most 0.6 e, in two orders.
    tolerance = bound(np.abs(charges).sum(), torch.float64, len(charges))
    assert abs(seen + sum(charges[i] for i in region) - sum(charges)) <= tolerance
    assert abs(seen - (0.0 if case == "residue" else 0.0016)) <= 1e-4 + tolerance  # the force field's 4-digit charges
    charged = [i for i in range(len(charges)) if charges[i] != 0 and i not in links.forceAtoms]
    pairs = sum(len(b.neighbours) for b in links.bonds)
    count = probe_value(vacuum, region, EnvironmentCount(), scheme)
    assert count == len(charged) + pairs + len(links.secondNeighbours) == (14 if case == "residue" else 20)


@pytest.mark.parametrize("scheme", ["rcd", "rc"])
def test_redistributed_charges_far_field(scheme, vacuum):
    """The potential of the environment at a point P at R = 3 and 6 nm from CA (M1 of the side chain's
    cut), against the MM charges with the region's removed (NumPy):

    - it equals that plus the redistribution written out in NumPy (float64 sums);
    - with RCD (charge and dipole kept) the difference is within the second-order Taylor remainder
      sum |dq| |r - c|^2 / (R - a)^3 (a = the largest |r - c|): it falls as 1/R^3;
    - with RC (charge kept, dipole not) it is the dipole term dp . n / R^2 within that remainder.

    Measured: V(3 nm) / V(6 nm) of the difference is 7.4 with RCD and 4.0 with RC."""
    topology, system, pos = vacuum
    region = side_chain(topology)
    charges = np.asarray(systemCharges(system))
    links = linkAtomSetup(topology, system, region, chargeScheme=scheme)
    (bond,) = links.bonds
    assert (bond.mlAtom, bond.mmAtom, bond.neighbours) == (10, 8, [6, 9, 14])
    centre = pos[bond.mmAtom]
    dq, dr = redistribution(links, charges, pos, scheme)
    assert abs(dq.sum()) <= 8 * EPS64  # charge kept (both schemes)
    dp = (dq[:, None] * (dr - centre)).sum(0)
    direction = dp / np.linalg.norm(dp) if scheme == "rc" else np.array([1.0, 2.0, 2.0]) / 3.0
    outside = [i for i in range(len(pos)) if i not in region]
    a = np.linalg.norm(dr - centre, axis=1).max()

    def remainder(R):
        return float((np.abs(dq) * np.linalg.norm(dr - centre, axis=1) ** 2).sum() / (R - a) ** 3)
    differences = {}
    for R in (3.0, 6.0):
        point = centre + R * direction
        seen = probe_value(vacuum, region, EnvironmentPotential(point), scheme)
        mm = float((charges[outside] / np.linalg.norm(pos[outside] - point, axis=1)).sum())
        change = float((dq / np.linalg.norm(dr - point, axis=1)).sum())
        # float64 sums of about 30 terms q / r, scale sum |q| / r.
        tolerance = bound((np.abs(charges[outside]) / np.linalg.norm(pos[outside] - point, axis=1)).sum()
                          + (np.abs(dq) / np.linalg.norm(dr - point, axis=1)).sum(), torch.float64, 2 * len(pos))
        assert abs(seen - (mm + change)) <= tolerance
        differences[R] = seen - mm
        if scheme == "rcd":
            assert np.linalg.norm(dp) <= 16 * EPS64 * 5  # the dipole kept too
            assert abs(seen - mm) <= remainder(R) + tolerance
        else:
            assert abs(seen - mm - dp @ direction / R ** 2) <= remainder(R) + tolerance
            assert abs(dp @ direction / R ** 2) > 3 * remainder(R)  # the dipole term is what is seen
    print(f"{scheme}: V(3 nm) - V_MM {differences[3.0]:.2e}, V(6 nm) - V_MM {differences[6.0]:.2e} e/nm, "
          f"ratio {differences[3.0] / differences[6.0]:.2f}")


# ---------------------------------------------------------------------------------------------
# 7. The caps travel inside the model: serialization, and the compiled path

@pytest.mark.parametrize("embedding", ["mechanical", "electrostatic"])
def test_serialized_system_keeps_the_caps(embedding, fd_systems, dipeptide):
    """XmlSerializer round trip of a mixed System with caps (and with RCD charges): the same code on
    the same inputs on Reference, so the same energy and forces bit for bit."""
    prm, crd, _ = dipeptide
    mixed = fd_systems(None if embedding == "mechanical" else "rcd")
    copy = one_thread(openmm.XmlSerializer.deserialize(openmm.XmlSerializer.serialize(mixed)))
    assert ml_force(copy).getAtoms() == ml_force(mixed).getAtoms() == residue(prm) + [4, 16] + (
        [1, 5, 17, 18] if embedding == "electrostatic" else [])
    reference = openmm.Platform.getPlatformByName("Reference")
    pos = positions_nm(crd)
    e1, f1 = energy_forces(context(mixed, reference, pos, crd.boxVectors))
    e2, f2 = energy_forces(context(copy, reference, pos, crd.boxVectors))
    assert e1 == e2
    assert np.array_equal(f1, f2)


def test_compiled_model_with_caps(dipeptide):
    """compile=True (AOTInductor, the caps compiled with the model) against the TorchScript path, CPU,
    float64: energy and forces of the correction group.  Measured: equal energies, forces 5e-12
    kJ/mol/nm apart.  Compiling takes about 14 s here (twice that with interpolate=True, whose
    dE/dlambda output test_compiled.py covers)."""
    pytest.importorskip("torchani", reason="the 'ani1x' model reads its weights from torchani 2.2.4")
    prm, crd, system = dipeptide
    region = residue(prm)
    cpu = openmm.Platform.getPlatformByName("CPU")
    results = []
    for compile in (False, True):
        mixed = openmmhybrid.createMixedSystem(prm.topology, system, region, "ani1x", usesDoublePrecision=True,
                                               correctionGroup=5, compile=compile)
        assert ml_force(mixed).getAtoms() == region + [4, 16]
        results.append(energy_forces(context(mixed, cpu, crd.positions, crd.boxVectors), {5}))
    (e1, f1), (e2, f2) = results
    links = linkAtomSetup(prm.topology, system, region)
    model = capped_ani(links, prm.topology)
    pos = positions_nm(crd)
    e_ani = ani_energy(model, np.vstack([pos[region], links.capPositions(pos)]))
    # float64, two code paths for the network (|E_ANI - self energies|, its forces), the same self
    # energies (two roundings at |E_ANI|) and the same replaced MM terms (|E - E_ANI|).
    terms = ANI_TERMS(links.numModelAtoms)
    e_bound = (bound(e_ani - model.selfEnergy, torch.float64, terms) + bound(e_ani, torch.float64, 2)
               + bound(e1 - e_ani, torch.float64, terms))
    assert abs(e2 - e1) <= e_bound
    assert np.abs(f2 - f1).max() <= bound(np.abs(f1).max(), torch.float64, terms)


# ---------------------------------------------------------------------------------------------
# 8. linkAtoms=False, and regions of whole molecules

def test_link_atoms_false_keeps_open_valences(dipeptide):
    """linkAtoms=False: a warning names the cut bonds, the MLForce holds the region only and its
    model sees the region's positions as they are (PairMLP on the 10 atoms, float64)."""
    prm, crd, system = dipeptide
    region = residue(prm)
    with pytest.warns(UserWarning, match=r"cuts 2 covalent bond\(s\) \(6-4, 14-16\) and linkAtoms=False"):
        mixed = openmmhybrid.createMixedSystem(prm.topology, system, region, PairMLP(), linkAtoms=False,
                                               usesDoublePrecision=True)
    ml = ml_force(mixed)
    assert ml.getAtoms() == region
    ml.setForceGroup(9)
    pos = positions_nm(crd)
    e = energy(context(mixed, openmm.Platform.getPlatformByName("CPU"), pos, crd.boxVectors), {9})
    expected = PairMLP()(torch.tensor(imaged(pos, region, boxMatrix(crd)))).item()
    # float64, TorchScript kernel against eager, the toy's pair sums.
    assert abs(e - expected) <= bound(PairMLP().magnitude(pos[region]), torch.float64,
                                      PairMLP.rounding_terms(len(region)))


def test_whole_molecules_have_no_caps(pxylene):
    """p-xylene (TMP) cuts no bond: no warning, no cap, and the System is the one linkAtoms=False
    gives (the same energy bit for bit on Reference)."""
    prm, crd, system = pxylene
    region = residue(prm, "TMP")
    assert findLinkBonds(prm.topology, region, system) == []
    assert linkAtomSetup(prm.topology, system, region) is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        default = openmmhybrid.createMixedSystem(prm.topology, system, region, PairMLP(), usesDoublePrecision=True)
        without = openmmhybrid.createMixedSystem(prm.topology, system, region, PairMLP(), linkAtoms=False,
                                                 usesDoublePrecision=True)
    assert ml_force(default).getAtoms() == ml_force(without).getAtoms() == region
    assert [f.getName() for f in default.getForces()] == [f.getName() for f in without.getForces()]
    reference = openmm.Platform.getPlatformByName("Reference")
    e1, f1 = energy_forces(context(default, reference, crd.positions, crd.boxVectors))
    e2, f2 = energy_forces(context(without, reference, crd.positions, crd.boxVectors))
    assert e1 == e2 and np.array_equal(f1, f2)


# ---------------------------------------------------------------------------------------------
# 9. What cannot be capped, and bad settings

def test_link_atom_errors(dipeptide):
    prm, _, system = dipeptide
    ala = residue(prm)
    atoms = {a.name: a.index for a in prm.topology.atoms() if a.residue.name == "ALA"}

    def build(region, **options):
        return openmmhybrid.createMixedSystem(prm.topology, system, region, PairMLP(), **options)

    with pytest.raises(ValueError, match=r"cuts the bond 8 \(CA of ALA 2\) - 9 \(HA of ALA 2\), which ends on a "
                                         "hydrogen"):
        build([i for i in ala if i != atoms["HA"]])
    with pytest.raises(ValueError, match=r"MM atom 8 \(CA of ALA 2\) is bonded to two ML atoms"):
        build([i for i in ala if i not in (atoms["CA"], atoms["HA"])])
    # ACE's methyl group and ALA's CA, HA and side chain: cuts CH3-C(4), CA-N(6), CA-C(14); C(4) and
    # N(6) are bonded.  Mechanical embedding caps them; electrostatic embedding cannot redistribute both.
    crossed = [0, 1, 2, 3, 8, 9, 10, 11, 12, 13]
    assert [b.mmAtom for b in linkAtomSetup(prm.topology, system, crossed).bonds] == [4, 14, 6]
    build(crossed)
    with pytest.raises(ValueError, match="MM atoms 4 and 6 of two cut bonds are bonded to each other"):
        build(crossed, embedding="electrostatic")
    with pytest.raises(ValueError, match=r"names the atoms 6 and 8, which are not a bond the ML region cuts. "
                                         r"The cut bonds are: 6-4, 14-16"):
        build(ala, linkAtomDistances=[(8, 6, 0.1)])
    with pytest.raises(ValueError, match="must be a positive distance"):
        build(ala, linkAtomDistances=[(6, 4, 0.0)])
    with pytest.raises(ValueError, match="must be a positive distance"):
        build(ala, linkAtomDistances=[(4, 6, -0.1 * unit.nanometer)])
    with pytest.raises(ValueError, match=r"each entry of linkAtomDistances is \(atom1, atom2, distance\)"):
        build(ala, linkAtomDistances=[(6, 4)])
    with pytest.raises(ValueError, match="linkAtomPlacement must be one of distance, ratio, not 'bogus'"):
        build(ala, linkAtomPlacement="bogus")
    with pytest.raises(ValueError, match="linkAtomCharges must be one of rcd, rc, not 'bogus'"):
        build(ala, embedding="electrostatic", linkAtomCharges="bogus")
    # Checked whatever the embedding and whether or not link atoms are on: a typo is never ignored.
    with pytest.raises(ValueError, match="linkAtomCharges must be one of rcd, rc, not 'bogus'"):
        build(ala, linkAtomCharges="bogus")
    with pytest.raises(ValueError, match="linkAtomPlacement must be one of distance, ratio, not 'bogus'"):
        build(ala, linkAtoms=False, linkAtomPlacement="bogus")
    with pytest.raises(ValueError, match="linkAtomDistances needs linkAtoms=True"):
        build(ala, linkAtoms=False, linkAtomDistances=[(6, 4, 0.1)])


def test_model_must_see_the_caps(dipeptide):
    """A module built for the region alone is refused (it would see 12 atoms); a named model that
    does not cover hydrogen is refused with a message about the caps, when the region alone is fine."""
    prm, _, system = dipeptide
    ala = residue(prm)
    pytest.importorskip("torchani", reason="the 'ani1x' model reads its weights from torchani 2.2.4")
    from openmmhybrid.models import atomicNumbers
    from openmmhybrid.models.ani import ANI1x
    with pytest.raises(ValueError, match="the model was built for 10 atoms, but with link atoms it sees 12"):
        openmmhybrid.createMixedSystem(prm.topology, system, ala, ANI1x(atomicNumbers(prm.topology, ala)))

    def factory(topology, atoms):
        if 1 in atomicNumbers(topology, atoms):
            raise ValueError("this model has no parameters for hydrogen")
        return PairMLP()

    openmmhybrid.models.registerModel("nohydrogen-test", factory)
    carbonyl = [14, 15]  # ALA's C and O: no hydrogen in the region, two cut bonds (C-CA, C-N)
    with pytest.raises(ValueError, match=r"does not cover hydrogen, the element of the 2 link atom\(s\).*"
                                         r"\(this model has no parameters for hydrogen\)"):
        openmmhybrid.createMixedSystem(prm.topology, system, carbonyl, "nohydrogen-test")
    # A region that holds hydrogens itself: the factory's own message.
    with pytest.raises(ValueError, match="^this model has no parameters for hydrogen$"):
        openmmhybrid.createMixedSystem(prm.topology, system, ala, "nohydrogen-test")
    # linkAtoms=False: no cap, the same factory builds (warning of the open valences and of the
    # region's charge, 0.0294 e).
    with pytest.warns(UserWarning, match="linkAtoms=False"), pytest.warns(UserWarning, match="not an integer"):
        openmmhybrid.createMixedSystem(prm.topology, system, carbonyl, "nohydrogen-test", linkAtoms=False)


def test_ring_cut_warns(pxylene):
    """Half of p-xylene's ring (C1, C2, C5, their hydrogens and the C4 methyl group) cuts C1-C3 and
    C5-C7, both ring bonds: one warning for each; it still builds."""
    prm, _, system = pxylene
    names = {a.name: a.index for a in prm.topology.atoms() if a.residue.name == "TMP"}
    region = [names[n] for n in ("C1", "C2", "C5", "H1", "H6", "C4", "H3", "H4", "H5")]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mixed = openmmhybrid.createMixedSystem(prm.topology, system, region, PairMLP())
    rings = [str(w.message) for w in caught if "lies in a ring" in str(w.message)]
    assert len(rings) == 2 and "0 (C1 of TMP" in rings[0] and "6 (C7 of TMP" in rings[1], rings
    assert ml_force(mixed).getAtoms() == region + [names["C3"], names["C7"]]
    with pytest.warns(UserWarning, match="ring"):
        openmmhybrid.createMixedSystem(prm.topology, system, region, PairMLP())


# ---------------------------------------------------------------------------------------------
# Lambda and multiple time steps with caps

@pytest.mark.parametrize("embedding", ["mechanical", "electrostatic"])
def test_lambda_and_mts_with_caps(embedding, dipeptide):
    """The ALA residue with two caps, interpolate=True, Reference, float64 model: lambda = 0 is the
    MM System bit for bit; E is linear in lambda and dE/dlambda is its slope; everything the caps
    add sits in the correction group, so mtsGroups puts it on the outer step."""
    prm, crd, system = dipeptide
    region = residue(prm)
    mixed = openmmhybrid.createMixedSystem(prm.topology, system, region, "ani1x", interpolate=True,
                                           usesDoublePrecision=True, embedding=embedding, correctionGroup=5)
    reference = openmm.Platform.getPlatformByName("Reference")
    pos = positions_nm(crd)
    c = context(mixed, reference, pos, crd.boxVectors)
    ml_force(mixed)  # the MLForce exists
    assert {f.getForceGroup() for f in mixed.getForces()} - {0} == {5}
    assert sorted(openmmhybrid.mtsGroups(mixed, 5, 4)) == [(0, 4), (5, 1)]
    mm = context(system, reference, pos, crd.boxVectors)
    c.setParameter(LAMBDA, 0.0)
    e0, f0 = energy_forces(c)
    e_mm, f_mm = energy_forces(mm)
    # The same MM code on the same inputs, and every correction term times lambda = 0 adds an exact zero.
    assert e0 == e_mm
    assert np.array_equal(f0, f_mm)
    energies = {}
    for lam in (0.0, 0.25, 1.0):
        c.setParameter(LAMBDA, lam)
        energies[lam] = energy_forces(c)[0]
    c.setParameter(LAMBDA, 0.25)
    slope = c.getState(getParameterDerivatives=True).getEnergyParameterDerivatives()[LAMBDA]
    # float64: each energy rounds at eps64 x (|E_MM| + |E_ML| + |E_MM,region|), all below 1e6 kJ/mol.
    scale = abs(e_mm) + abs(energies[1.0]) + abs(slope)
    assert energies[1.0] - energies[0.0] == pytest.approx(slope, abs=bound(scale, torch.float64, 8))
    assert energies[0.25] == pytest.approx(energies[0.0] + 0.25 * slope, abs=bound(scale, torch.float64, 8))
    assert abs(slope) > 1e5  # the ANI-1x energy of the capped residue (self energies ~ -6.5e5 kJ/mol)


def test_cut_bond_of_higher_order_warns(dipeptide):
    """A cut bond whose Topology records order 2 (here ALA's CA-CB, marked so in a copy of the
    topology: an Amber prmtop records no orders) warns that a hydrogen cap replaces a single bond;
    order 1 does not."""
    prm, _, system = dipeptide
    region = side_chain(prm.topology)
    for order, expected in ((2, True), (1, False)):
        topology = app.Topology()
        topology.setPeriodicBoxVectors(prm.topology.getPeriodicBoxVectors())
        atoms = {}
        for chain in prm.topology.chains():
            c = topology.addChain(chain.id)
            for res in chain.residues():
                r = topology.addResidue(res.name, c, res.id)
                for atom in res.atoms():
                    atoms[atom.index] = topology.addAtom(atom.name, atom.element, r)
        for bond in prm.topology.bonds():
            pair = {bond.atom1.index, bond.atom2.index}
            topology.addBond(atoms[bond.atom1.index], atoms[bond.atom2.index],
                             order=order if pair == {8, 10} else None)  # CA (8) - CB (10)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            openmmhybrid.createMixedSystem(topology, system, region, PairMLP())
        orders = [str(w.message) for w in caught if "bond order" in str(w.message)]
        assert bool(orders) == expected, orders
        if expected:
            assert "10 (CB of ALA 2) - 8 (CA of ALA 2) has bond order 2" in orders[0]
