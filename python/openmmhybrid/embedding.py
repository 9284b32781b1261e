"""Electrostatic embedding: energies between the ML region and the MM point charges around it.

With :meth:`MLForce.setEmbedding <openmmhybrid.MLForce.setEmbedding>` every evaluation hands the
model the MM environment: each charged particle within the cutoff of any ML atom, imaged next to
the region: ``forward(positions[, box], mm_positions, mm_charges, mm_mask) -> energy``, as section
4 of ``docs/user_guide.md`` states in full.

This module ships embedding *terms*, TorchScript-compatible modules with the signature
``forward(positions, mm_positions, mm_charges, mm_mask) -> energy``, and :class:`EmbeddedModel`,
which adds them to any ML model::

    E = E_ML(region) + sum of E_term(region, MM charges)

- :class:`FixedChargeCoupling`: Coulomb between fixed charges on the ML atoms (their MM charges,
  or charges a model predicts) and the MM charges, switched smoothly to zero at the cutoff.  With
  the MM charges this is nothing but a truncated Coulomb sum: it reproduces what mechanical
  embedding already had (up to the truncation), and adds no new physics.
- :class:`TholePolarization`: induced dipoles on the ML atoms in the field of the MM charges,
  with Thole-damped dipole-dipole coupling inside the region (van Duijnen and Swart, J. Phys. Chem.
  A 102, 2399 (1998), exponential model).  This is the new physics: the region is polarized by its
  environment and the environment feels the induced dipoles.

Comparing energies with mechanical embedding demonstrates the terms; it does not validate them.
"""
import math

import openmm
import openmm.unit as unit
import torch

from .adapters import DropBox
from .utils import ONE_4PI_EPS0, mdValue

__all__ = ["FixedChargeCoupling", "TholePolarization", "CoulombAndPolarization", "EmbeddedModel", "systemCharges", "VDS98_POLARIZABILITIES",
           "VDS98_DAMPING", "COULOMB_CONSTANT"]

#: Deprecated alias of :data:`openmmhybrid.utils.ONE_4PI_EPS0` (OpenMM's Coulomb constant); will be
#: removed in the next release.
COULOMB_CONSTANT = ONE_4PI_EPS0

_BOHR_NM = 0.0529177210903

#: Atomic polarizabilities of the exponential Thole model of P. Th. van Duijnen and M. Swart,
#: "Molecular and Atomic Polarizabilities: Thole's Model Revisited", J. Phys. Chem. A 102, 2399-2407
#: (1998), doi:10.1021/jp980221f, Table 7, in atomic units (bohr^3), by atomic number.
VDS98_POLARIZABILITIES = {1: 2.7927, 6: 8.6959, 7: 6.5565, 8: 5.7494, 9: 2.6175, 16: 16.6984, 17: 16.1979,
                          35: 23.5714, 53: 36.9880}

#: The screening factor a of the same exponential model.
VDS98_DAMPING = 2.1304

_SYMBOLS = {1: "H", 6: "C", 7: "N", 8: "O", 9: "F", 16: "S", 17: "Cl", 35: "Br", 53: "I"}


def _switch_distance(cutoff, switchDistance):
    if switchDistance is None:
        return None
    if isinstance(switchDistance, str):
        if switchDistance != "default":
            raise ValueError(f"switchDistance must be a distance, None or 'default', not {switchDistance!r}")
        return max(0.0, cutoff - 0.2)
    value = mdValue(switchDistance)
    if not 0 <= value < cutoff:
        raise ValueError(f"the switching distance ({value} nm) must be at least 0 and smaller than the cutoff ({cutoff} nm)")
    return value


def _check_cutoff(cutoff, who):
    value = mdValue(cutoff)
    if not value > 0 or not math.isfinite(value):
        raise ValueError(f"{who}: the cutoff must be a positive distance, not {cutoff}")
    return value


def systemCharges(system):
    """The charge (e) of every particle from the System's NonbondedForce.

    Raises
    ------
    ValueError
        If the System has no NonbondedForce (there are no point charges to embed in), or more than one.
    """
    forces = [f for f in system.getForces() if isinstance(f, openmm.NonbondedForce)]
    if not forces:
        raise ValueError("electrostatic embedding needs the MM charges, but the System has no NonbondedForce. Build the "
                         "System with a force field that has charges, or use mechanical embedding.")
    if len(forces) > 1:
        raise ValueError("electrostatic embedding: the System has more than one NonbondedForce; which charges to embed in "
                         "is ambiguous.")
    force = forces[0]
    return [force.getParticleParameters(i)[0].value_in_unit(unit.elementary_charge) for i in range(system.getNumParticles())]


class _ConstantCharges(torch.nn.Module):
    def __init__(self, charges):
        super().__init__()
        self.register_buffer("charges", torch.tensor([float(q) for q in charges], dtype=torch.float64))

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        return self.charges


#: The smoothing length (nm) of the soft minimum that measures an MM atom's distance to the region.
SOFTMIN_LENGTH = 0.02


def _region_switch(r: torch.Tensor, cutoff: float, switchDistance: float, useSwitch: bool,
                   softmin: float) -> torch.Tensor:
    """One weight per MM atom from its distance to the region, for r [n, m] (ML x MM).

    With the switch: S(R) with R = -softmin * log(sum_i exp(-r_i / softmin)), a smooth lower bound
    of the distance to the nearest ML atom (R >= min r - softmin log n), and S going from 1 at
    switchDistance to 0 at cutoff - softmin log n, so the weight is exactly 0 before the atom can
    leave the environment (min r = cutoff).  Without: 1 for every MM atom in the environment
    (within the cutoff of any ML atom)."""
    return _region_switch_and_slope(r, cutoff, switchDistance, useSwitch, softmin, False)[0]


def _region_switch_and_slope(r: torch.Tensor, cutoff: float, switchDistance: float, useSwitch: bool,
                             softmin: float, slopes: bool = True):
    """(S(R) [m], dS/dR [m], dR/dr [n, m]) of :func:`_region_switch`, for a gradient written out
    by hand: dR_j/dr_ij are the soft minimum's weights, exp(-(r_ij - R_j) / softmin).  Without
    the switch S is a step and both slopes are zero.  ``slopes=False`` leaves the weights empty."""
    if not useSwitch:
        S = (r.min(0).values < cutoff).to(r.dtype)
        return S, torch.zeros_like(S), torch.zeros_like(r) if slopes else r.new_zeros(0)
    n = r.shape[0]
    end = cutoff - softmin * math.log(float(n))
    R = -softmin * torch.logsumexp(-r / softmin, dim=0)
    width = end - switchDistance
    x = ((R - switchDistance) / width).clamp(0.0, 1.0)
    inside = (R < end).to(r.dtype)
    S = (1.0 - x * x * x * (10.0 - 15.0 * x + 6.0 * x * x)) * inside
    dS = -30.0 * x * x * (1.0 - x) * (1.0 - x) / width * inside
    w = torch.exp(-(r - R.unsqueeze(0)) / softmin) if slopes else r.new_zeros(0)
    return S, dS, w


def _check_switch_end(switchDistance, cutoff, n, who):
    if switchDistance is None:
        return
    end = cutoff - SOFTMIN_LENGTH * math.log(n)
    if not switchDistance < end:
        raise ValueError(f"{who}: the switch must start below cutoff - {SOFTMIN_LENGTH} nm * ln(number of ML atoms) = "
                         f"{end:.3f} nm, not at {switchDistance} nm. Use a smaller switchDistance.")


class FixedChargeCoupling(torch.nn.Module):
    """Coulomb energy between charges on the ML atoms and the MM charges, switched off at the cutoff.

    ``E = k_e sum_j Q_j S(R_j) sum_i q_i / r_ij`` over environment atoms j and ML atoms i.  Each MM
    charge is weighted once, by its distance ``R_j`` to the region as a whole (a soft minimum over
    the ML atoms, smoothing length 0.02 nm), not pair by pair: the region then keeps its net charge
    and multipoles against every MM charge, and a water molecule cut by the cutoff interacts with
    a nearly neutral ligand only through its small multipole field.  (A pairwise switch would let
    one ML atom see a charge its neighbour does not: a spurious monopole that orders the water in
    the switching shell.)  ``S`` is 1 below ``switchDistance`` and the quintic
    ``1 - 10x^3 + 15x^4 - 6x^5`` up to ``cutoff - 0.02 nm * ln n`` (continuous energy, forces and
    their derivatives).  Without a switch (``switchDistance=None``) it is the plain Coulomb
    interaction of the region's charges with every MM charge in the environment.

    Parameters
    ----------
    charges : sequence of float, or torch.nn.Module
        The ML atoms' charges (e), e.g. their MM charges; or a module ``forward(positions) -> [n]``
        that predicts them from the region's positions (then the charges respond to the geometry).
    cutoff : float or Quantity
        The cutoff (nm); use the MLForce's embedding cutoff.
    switchDistance : float, Quantity, None or 'default'
        Where the switch starts (nm); ``'default'`` is ``cutoff - 0.2 nm``; None: no switch.
    """

    def __init__(self, charges, cutoff, switchDistance="default"):
        super().__init__()
        self.cutoff = _check_cutoff(cutoff, "FixedChargeCoupling")
        switch = _switch_distance(self.cutoff, switchDistance)
        self.useSwitch = switch is not None
        self.switchDistance = switch if switch is not None else self.cutoff
        self.coulombConstant = ONE_4PI_EPS0
        self.softmin = SOFTMIN_LENGTH
        self.chargeModel = charges if isinstance(charges, torch.nn.Module) else _ConstantCharges(charges)
        if not isinstance(charges, torch.nn.Module):
            _check_switch_end(switch, self.cutoff, max(1, len(charges)), "FixedChargeCoupling")

    def forward(self, positions: torch.Tensor, mm_positions: torch.Tensor, mm_charges: torch.Tensor,
                mm_mask: torch.Tensor) -> torch.Tensor:
        _, r, Qs = _environment(positions, mm_positions, mm_charges, mm_mask, torch.float64, self.cutoff,
                                self.switchDistance, self.useSwitch, self.softmin)
        return self.energyFrom(positions, r, Qs).to(positions.dtype)

    def energyFrom(self, positions: torch.Tensor, r: torch.Tensor, Qs: torch.Tensor) -> torch.Tensor:
        """The energy (float64) from the ML-MM distances ``r`` [n, m] and the switched MM charges
        ``Qs`` [m], both in the dtype the pair sum runs in."""
        q = self.chargeModel(positions).to(r.dtype)
        return (self.coulombConstant * ((q.unsqueeze(1) / r).sum(0) * Qs).sum()).to(torch.float64)


class TholePolarization(torch.nn.Module):
    """Induced dipoles on the ML atoms in the field of the MM charges, Thole-damped inside the region.

    Each ML atom i carries a point polarizability ``alpha_i``.  The induced dipoles solve, in
    closed form (one linear solve of size 3n, exact and differentiable)::

        mu_i = alpha_i (F_i + sum_{j != i} T_ij mu_j)      E_pol = -1/2 k_e sum_i mu_i . F_i

    where ``T_ij`` is the dipole field tensor with van Duijnen and Swart's exponential damping,
    ``v = a r / (alpha_i alpha_j)^(1/6)``, ``lambda3 = 1 - (1 + v + v^2/2) exp(-v)``,
    ``lambda5 = lambda3 - v^3/6 exp(-v)``, ``T = 3 lambda5 r r^T / r^5 - lambda3 I / r^3``, and
    ``F_i = sum_j Q_j lambda3(v_ij) S(R_j) r_ij / r_ij^3`` is the field of the MM charges,
    damped the same way with ``v_ij = a r_ij / alpha_i^(1/3)`` (the MM site has no polarizability
    of its own, so it takes the ML atom's: our choice, which keeps the field finite when a bare
    MM hydrogen comes close) and weighted by the same per-MM-atom switch ``S(R_j)`` as
    :class:`FixedChargeCoupling`.  The switch multiplies the field, not the potential: the
    gradient of a switched potential would add a spurious ``Q S'(r)/r`` from every charge in the
    switching shell.  ``E_pol`` is the induction energy
    (the field energy minus the cost of polarizing); MM atoms feel the induced dipoles through
    its gradient.

    Parameters
    ----------
    atomicNumbers : sequence of int
        The ML atoms' atomic numbers.
    cutoff, switchDistance :
        As for :class:`FixedChargeCoupling`.
    polarizabilities : dict, optional
        Atomic number -> polarizability in nm^3, overriding the published values.
    damping : float
        The screening factor a (default 2.1304, the value fitted with the published set).

    Parameters default to P. Th. van Duijnen and M. Swart, J. Phys. Chem. A 102, 2399 (1998)
    (H, C, N, O, F, S, Cl, Br, I).  An element outside that set raises ``ValueError``.
    """

    def __init__(self, atomicNumbers, cutoff, switchDistance="default", polarizabilities=None, damping=VDS98_DAMPING):
        super().__init__()
        self.cutoff = _check_cutoff(cutoff, "TholePolarization")
        switch = _switch_distance(self.cutoff, switchDistance)
        self.useSwitch = switch is not None
        self.switchDistance = switch if switch is not None else self.cutoff
        table = {z: a * _BOHR_NM**3 for z, a in VDS98_POLARIZABILITIES.items()}
        table.update({int(z): float(a) for z, a in (polarizabilities or {}).items()})
        alphas = []
        for i, z in enumerate(atomicNumbers):
            z = int(z)
            if z not in table:
                covered = ", ".join(_SYMBOLS.get(k, str(k)) for k in sorted(table))
                raise ValueError(f"TholePolarization: ML atom {i} has atomic number {z}, which has no polarizability in "
                                 f"the van Duijnen-Swart set (it covers {covered}). Pass polarizabilities={{{z}: alpha_nm3}}.")
            if not table[z] > 0:
                raise ValueError(f"TholePolarization: the polarizability of atomic number {z} must be positive")
            alphas.append(table[z])
        if not alphas:
            raise ValueError("TholePolarization: the region has no atoms")
        self.register_buffer("alpha", torch.tensor(alphas, dtype=torch.float64))
        self.damping = float(damping)
        self.coulombConstant = ONE_4PI_EPS0
        self.softmin = SOFTMIN_LENGTH
        _check_switch_end(switch, self.cutoff, len(alphas), "TholePolarization")

    def forward(self, positions: torch.Tensor, mm_positions: torch.Tensor, mm_charges: torch.Tensor,
                mm_mask: torch.Tensor) -> torch.Tensor:
        d, r, Qs = _environment(positions, mm_positions, mm_charges, mm_mask, torch.float64, self.cutoff,
                                self.switchDistance, self.useSwitch, self.softmin)
        return self.induction(positions, self.fieldFrom(d, r, Qs)).to(positions.dtype)

    def fieldFrom(self, d: torch.Tensor, r: torch.Tensor, Qs: torch.Tensor) -> torch.Tensor:
        """The MM field at each ML atom, ``[n, 3]`` float64, from the ML-MM vectors ``d`` [n, m, 3],
        distances ``r`` [n, m] and switched MM charges ``Qs`` [m] (in the dtype the sum runs in).

        Coulomb fields Q d / r^3, each damped at short range with the same exponential Thole factor
        (the MM site taking the ML atom's polarizability, so v = a r / alpha_i^(1/3)) and
        multiplied by the MM atom's switch S(R_j).  Switching the field rather than the potential
        keeps it bounded by the Coulomb field: the gradient of a switched potential adds
        Q S'(r)/r, a spurious field of several e/nm^2 from every charge in the switching shell
        that does not cancel within a water molecule cut by the cutoff."""
        g, _ = self.fieldFactor(r, False)
        radial = Qs.unsqueeze(0) * g                             # [n, m]
        return (radial.unsqueeze(2) * d).sum(1).to(torch.float64)  # [n, 3]

    def fieldFactor(self, r: torch.Tensor, slope: bool = False):
        """(g [n, m], dg/dr [n, m]): the damped field of a unit charge at distance ``r`` from ML
        atom i is ``g d``, ``g = lambda3(v) / r^3`` with ``v = a r / alpha_i^(1/3)``.  ``slope=False``
        leaves dg/dr empty."""
        scale = self.damping / self.alpha.to(r.dtype).unsqueeze(1) ** (1.0 / 3.0)  # [n, 1]
        v = scale * r
        ev = torch.exp(-v)
        inv3 = 1.0 / (r * r * r)
        g = (1.0 - (1.0 + v + 0.5 * v * v) * ev) * inv3
        dg = 0.5 * v * v * ev * scale * inv3 - 3.0 * g / r if slope else r.new_zeros(0)
        return g, dg

    def induction(self, positions: torch.Tensor, field: torch.Tensor) -> torch.Tensor:
        """The induction energy (float64) of the region's dipoles in ``field`` [n, 3] (float64),
        with the damped dipole-dipole coupling inside the region, in float64."""
        return self.inductionAndDipoles(positions, field)[0]

    def inductionAndDipoles(self, positions: torch.Tensor, field: torch.Tensor):
        """(the induction energy, the induced dipoles mu [n, 3]) for ``field`` [n, 3], float64."""
        n = positions.shape[0]
        mu = torch.linalg.solve(self.couplingMatrix(positions), field.reshape(3 * n, 1)).reshape(n, 3)
        return -0.5 * self.coulombConstant * (mu * field).sum(), mu

    def couplingMatrix(self, positions: torch.Tensor) -> torch.Tensor:
        """``A = alpha^-1 - T`` [3n, 3n] (float64): the induced dipoles solve ``A mu = F``."""
        x = positions.to(torch.float64)
        n = x.shape[0]
        eye = torch.eye(3, dtype=torch.float64, device=x.device)
        dij = x.unsqueeze(1) - x.unsqueeze(0)                     # [n, n, 3]
        offDiagonal = ~torch.eye(n, dtype=torch.bool, device=x.device)
        rij = torch.linalg.norm(dij + torch.eye(n, dtype=torch.float64, device=x.device).unsqueeze(2), dim=2)
        v = self.damping * rij / (self.alpha.unsqueeze(1) * self.alpha.unsqueeze(0)) ** (1.0 / 6.0)
        ev = torch.exp(-v)
        l3 = 1.0 - (1.0 + v + 0.5 * v * v) * ev
        l5 = l3 - v * v * v / 6.0 * ev
        r3 = rij ** 3
        T = (3.0 * (l5 / (r3 * rij * rij)).unsqueeze(2).unsqueeze(3) * dij.unsqueeze(3) * dij.unsqueeze(2)
             - (l3 / r3).unsqueeze(2).unsqueeze(3) * eye)        # [n, n, 3, 3]
        T = T * offDiagonal.to(T.dtype).unsqueeze(2).unsqueeze(3)
        return torch.diag_embed((1.0 / self.alpha).repeat_interleave(3)) - T.permute(0, 2, 1, 3).reshape(3 * n, 3 * n)


class CoulombAndPolarization(torch.nn.Module):
    """:class:`FixedChargeCoupling` plus :class:`TholePolarization` in one pass over the environment.

    The default embedding terms of :func:`~openmmhybrid.createMixedSystem`.  The energy is the sum
    of the two terms; the ML-MM vectors, distances and the per-MM-atom switch, which each term
    would compute on its own, are computed once, and the sums over the ``n x m`` ML-MM pairs run
    in ``precision``.  The region's own part (the ``3n x 3n`` Thole solve) and every final sum
    stay in float64.

    Parameters
    ----------
    coupling : FixedChargeCoupling
    polarization : TholePolarization
        With the same cutoff and switch as ``coupling``.
    precision : 'single' or 'double'
        The dtype of the pair sums over the environment.  ``'single'`` (the default) is about
        twice as fast on the CPU; its difference from ``'double'`` is bounded by
        ``8 sqrt(n m) eps32 S`` (S the sum of the pair terms' magnitudes; ``tests/python/
        test_embedding.py`` checks it) and is about 1e-5 kJ/mol in the energy for a ligand in
        water (1e-6 of the embedding energy).
    """

    def __init__(self, coupling, polarization, precision="single"):
        super().__init__()
        if precision not in ("single", "double"):
            raise ValueError(f"CoulombAndPolarization: precision must be 'single' or 'double', not {precision!r}")
        if (coupling.cutoff, coupling.switchDistance, coupling.useSwitch) != \
                (polarization.cutoff, polarization.switchDistance, polarization.useSwitch):
            raise ValueError("CoulombAndPolarization: the two terms must have the same cutoff and switch")
        self.coupling = coupling
        self.polarization = polarization
        self.dtype = torch.float32 if precision == "single" else torch.float64
        self.cutoff, self.switchDistance, self.useSwitch = coupling.cutoff, coupling.switchDistance, coupling.useSwitch
        self.softmin = coupling.softmin

    def forward(self, positions: torch.Tensor, mm_positions: torch.Tensor, mm_charges: torch.Tensor,
                mm_mask: torch.Tensor) -> torch.Tensor:
        """The energy, whose gradient with respect to the environment is written out by hand.

        Autograd through the ``n x m`` pair arrays would take some 60 elementwise passes; here the
        gradient's pair terms are computed in the forward pass (below) and enter the energy as
        ``g . p - stop(g . p)``: zero in value, exactly ``g`` as gradient.  Autograd then runs only
        over the region's own ``3n x 3n`` polarization and a charge model's prediction, if any."""
        k = self.coupling.coulombConstant
        dtype = self.dtype
        xg, yg = positions.to(dtype), mm_positions.to(dtype)   # carry the gradient, into `linear` only
        x, y = xg.detach(), yg.detach()
        Q = torch.where(mm_mask, mm_charges.to(dtype), torch.zeros_like(mm_charges, dtype=dtype))
        d = x.unsqueeze(1) - y.unsqueeze(0)                      # [n, m, 3]
        r = torch.linalg.norm(d, dim=2)                          # [n, m]
        S, dS, w = _region_switch_and_slope(r, self.cutoff, self.switchDistance, self.useSwitch, self.softmin, True)
        Qs = Q * S
        inv = 1.0 / r
        # Coulomb: E_c = k sum_i q_i U_i, U_i = sum_j Qs_j / r_ij.  The charges may depend on the
        # positions (a charge model), so their gradient is left to autograd: q U.detach().
        q = self.coupling.chargeModel(positions)
        qd = q.detach().to(dtype)
        U = (inv * Qs.unsqueeze(0)).sum(1)                        # [n]
        P = (qd.unsqueeze(1) * inv).sum(0)                        # [m]
        # The damped field F_i = sum_j Qs_j g_ij d_ij.
        g, dg = self.polarization.fieldFactor(r, True)
        field = ((Qs.unsqueeze(0) * g).unsqueeze(2) * d).sum(1).to(torch.float64)  # [n, 3]
        # The induction energy -k/2 mu . F, mu = A^-1 F, with the field held fixed: autograd covers
        # the region's own coupling matrix A.  Its gradient with respect to F is G = -k mu (A is
        # symmetric).
        induction, mu = self.polarization.inductionAndDipoles(positions, field)
        G = (-k * mu.detach()).to(dtype)                          # [n, 3]
        Gd = (G.unsqueeze(1) * d).sum(2)                          # [n, m]: G_i . d_ij
        H = (g * Gd).sum(0)                                       # [m]
        # dE/dr_ij along d_ij / r_ij, and the part along G_i.
        C = Q * dS * (k * P + H)                                  # [m]
        a = -k * qd.unsqueeze(1) * Qs.unsqueeze(0) * inv * inv + C.unsqueeze(0) * w + Qs.unsqueeze(0) * dg * Gd
        gd = (a * inv).unsqueeze(2) * d + (Qs.unsqueeze(0) * g).unsqueeze(2) * G.unsqueeze(1)  # dE/dd_ij [n, m, 3]
        gx = gd.sum(1)                                            # dE/dx_i
        gy = -gd.sum(0)                                           # dE/dy_j
        linear = ((gx * xg).sum() + (gy * yg).sum()).to(torch.float64)
        energy = k * (q.to(torch.float64) * U.to(torch.float64)).sum() + induction + linear - linear.detach()
        return energy.to(positions.dtype)


def _environment(positions: torch.Tensor, mm_positions: torch.Tensor, mm_charges: torch.Tensor, mm_mask: torch.Tensor,
                 dtype: torch.dtype, cutoff: float, switchDistance: float, useSwitch: bool, softmin: float):
    """(d [n, m, 3], r [n, m], Q S(R) [m]) in ``dtype``: the ML-MM vectors and distances and the
    switched MM charges (0 for padding entries), which every embedding term starts from."""
    x = positions.to(dtype)
    y = mm_positions.to(dtype)
    Q = torch.where(mm_mask, mm_charges.to(dtype), torch.zeros_like(mm_charges, dtype=dtype))
    d = x.unsqueeze(1) - y.unsqueeze(0)                      # [n, m, 3]
    r = torch.linalg.norm(d, dim=2)                          # [n, m]
    s = _region_switch(r, cutoff, switchDistance, useSwitch, softmin)
    return d, r, Q * s


class EmbeddedModel(torch.nn.Module):
    """An ML model plus embedding terms, following the embedding contract (periodic form).

    ``forward(positions, box, mm_positions, mm_charges, mm_mask) = model(positions[, box]) +
    sum(term(positions, mm_positions, mm_charges, mm_mask))``.

    Parameters
    ----------
    model : torch.nn.Module
        The ML model of the region in vacuum: ``forward(positions)`` or ``forward(positions, box)``
        (``modelTakesBox`` says which).
    terms : sequence of torch.nn.Module
        Embedding terms such as :class:`FixedChargeCoupling` and :class:`TholePolarization`.
    """

    def __init__(self, model, terms, modelTakesBox=False):
        super().__init__()
        self.model = model if modelTakesBox else DropBox(model)
        self.terms = torch.nn.ModuleList(list(terms))

    def forward(self, positions: torch.Tensor, box: torch.Tensor, mm_positions: torch.Tensor, mm_charges: torch.Tensor,
                mm_mask: torch.Tensor) -> torch.Tensor:
        energy = self.model(positions, box)
        for term in self.terms:
            energy = energy + term(positions, mm_positions, mm_charges, mm_mask).to(energy.dtype)
        return energy

