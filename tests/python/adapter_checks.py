"""Helpers shared by the model adapters' tests (test_model_aimnet2.py, test_model_mace.py,
test_model_nequip.py): the p-xylene region they evaluate, a one-residue Topology, the module's own
energy and gradient, an MLForce in a padded System, an XML round trip, a seeded rigid motion, a
short run of dynamics and a zero model.

A plain module of functions; the tests themselves, and the bounds they compare with, stay in the
test files.
"""
import contextlib
import os
from typing import Optional

import numpy as np
import openmm
import openmm.app as app
import openmm.unit as unit
import torch

import openmmhybrid  # noqa: F401  (loads the plugins)
from openmmhybrid import MLForce

from conftest import DATA

KJ = unit.kilojoule_per_mole
NM = unit.nanometer


def pxyleneFiles():
    """The Amber input of p-xylene in water, examples/data/pxylene-water.

    Returns
    -------
    prmtop : openmm.app.AmberPrmtopFile
    inpcrd : openmm.app.AmberInpcrdFile
    """
    folder = os.path.join(DATA, "pxylene-water")
    return (app.AmberPrmtopFile(os.path.join(folder, "pxylene_water.prmtop")),
            app.AmberInpcrdFile(os.path.join(folder, "pxylene_water.inpcrd")))


def pxyleneRegion():
    """The p-xylene molecule (residue TMP, 18 atoms, H and C) of examples/data/pxylene-water.

    Returns
    -------
    topology : openmm.app.Topology
        The whole solvated system's topology.
    atoms : list of int
        The indices of the TMP atoms in ``topology``, in increasing order.
    positions : numpy.ndarray
        Their positions, shape (18, 3), float64, in nm.
    """
    prmtop, inpcrd = pxyleneFiles()
    atoms = [a.index for a in prmtop.topology.atoms() if a.residue.name == "TMP"]
    positions = np.asarray(inpcrd.getPositions(asNumpy=True).value_in_unit(NM), dtype=np.float64)[atoms]
    return prmtop.topology, atoms, positions


def oneResidueTopology(elements, residueName="MOL", numbered=False):
    """A Topology of one chain holding one residue of the given atoms.

    Parameters
    ----------
    elements : sequence of str or int
        Element symbols ("C", "Cl") or atomic numbers, one per atom.
    residueName : str
        The residue's name.
    numbered : bool
        If True, each atom is named by its symbol followed by its index ("Cl2"); if False by its
        symbol alone ("Cl").

    Returns
    -------
    openmm.app.Topology
    """
    topology = app.Topology()
    residue = topology.addResidue(residueName, topology.addChain())
    for i, e in enumerate(elements):
        element = app.Element.getByAtomicNumber(e) if isinstance(e, (int, np.integer)) else app.element.get_by_symbol(e)
        topology.addAtom(f"{element.symbol}{i}" if numbered else element.symbol, element, residue)
    return topology


def energyAndGradient(model, positions, dtype=torch.float64):
    """The module called directly, with autograd for the gradient.

    Parameters
    ----------
    model : torch.nn.Module or torch.jit.ScriptModule
        Takes positions in nm, returns the energy in kJ/mol.
    positions : array_like
        Shape (n, 3), nm.
    dtype : torch.dtype
        The dtype of the positions handed to the model.

    Returns
    -------
    energy : torch.Tensor
        The returned energy, detached (its dtype and shape as the model gives them).
    gradient : numpy.ndarray
        dE/dx, shape (n, 3), float64, kJ/mol/nm.
    """
    x = torch.tensor(np.asarray(positions), dtype=dtype, requires_grad=True)
    energy = model(x)
    (gradient,) = torch.autograd.grad(energy, x)
    return energy.detach(), gradient.to(torch.float64).numpy()


def displacedEnergy(model, positions, atom, axis, noGrad=True):
    """The energy as a function of one coordinate's displacement, for finite differences.

    Parameters
    ----------
    model : torch.nn.Module
        Takes positions in nm, returns the energy in kJ/mol.
    positions : numpy.ndarray
        Shape (n, 3), float64, nm; not modified.
    atom, axis : int
        The coordinate displaced.
    noGrad : bool
        Evaluate under ``torch.no_grad()``; False for a model that takes its own forces with
        autograd inside its forward (nequip's compiled models), which fails without autograd.

    Returns
    -------
    callable
        ``energyAt(dx)``: the model's energy (float) at ``positions`` with ``positions[atom, axis]``
        moved by ``dx`` nm.
    """
    def energyAt(dx):
        moved = positions.copy()
        moved[atom, axis] += dx
        with torch.no_grad() if noGrad else contextlib.nullcontext():
            return model(torch.tensor(moved)).item()
    return energyAt


def mlforceState(model, positions, platform, double, extra=3, seed=3):
    """Energy and forces of an MLForce on a region placed, in a shuffled order, in a larger System.

    The System has ``n + extra`` particles of mass 12; the region's atoms are the first n of a
    seeded permutation of them, and the other particles sit at (5, 5, 5) nm.

    Parameters
    ----------
    model : torch.nn.Module
        The region's model.
    positions : array_like
        The region's positions, shape (n, 3), nm.
    platform : openmm.Platform
    double : bool
        The MLForce's usesDoublePrecision.
    extra : int
        How many particles the System has beyond the region.
    seed : int
        The seed of the permutation.

    Returns
    -------
    energy : float
        kJ/mol.
    forces : numpy.ndarray
        The forces on the region's atoms, in the order of ``positions``, shape (n, 3), kJ/mol/nm.
    """
    n = len(positions)
    total = n + extra
    order = np.random.default_rng(seed).permutation(total)[:n]
    system = openmm.System()
    for _ in range(total):
        system.addParticle(12.0)
    system.addForce(MLForce(model, [int(i) for i in order], usesDoublePrecision=double))
    everything = np.full((total, 3), 5.0)
    everything[order] = positions
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), platform)
    context.setPositions(everything)
    state = context.getState(getEnergy=True, getForces=True)
    return state.getPotentialEnergy().value_in_unit(KJ), state.getForces(asNumpy=True).value_in_unit(KJ / NM)[order]


def xmlRoundTripStates(model, positions, platform):
    """A System of the region alone (mass 12 each) with a float64 MLForce, and its copy through
    XmlSerializer, each evaluated in its own Context.

    Parameters
    ----------
    model : torch.nn.Module
    positions : array_like
        Shape (n, 3), nm.
    platform : openmm.Platform

    Returns
    -------
    tuple of openmm.State
        The original System's State and the copy's, both with energy and forces.
    """
    n = len(positions)
    system = openmm.System()
    for _ in range(n):
        system.addParticle(12.0)
    system.addForce(MLForce(model, list(range(n)), usesDoublePrecision=True))
    copy = openmm.XmlSerializer.deserialize(openmm.XmlSerializer.serialize(system))
    states = []
    for s in (system, copy):
        context = openmm.Context(s, openmm.VerletIntegrator(0.001), platform)
        context.setPositions(positions)
        states.append(context.getState(getEnergy=True, getForces=True))
    return tuple(states)


def randomRotation(seed=7):
    """A seeded random proper rotation matrix.

    Parameters
    ----------
    seed : int
        The seed of numpy's default generator.

    Returns
    -------
    numpy.ndarray
        Shape (3, 3), orthogonal with determinant +1 (the Q of a QR decomposition of a normal
        random matrix, its signs fixed by R's diagonal).
    """
    rng = np.random.default_rng(seed)
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    rotation = q * np.sign(np.diag(r))
    if np.linalg.det(rotation) < 0:
        rotation[:, 0] *= -1
    return rotation


def rigidlyMoved(positions, translation, seed=7):
    """Positions rotated by :func:`randomRotation` and then translated.

    Parameters
    ----------
    positions : numpy.ndarray
        Shape (n, 3).
    translation : sequence of float
        Added after the rotation, in the units of ``positions``.
    seed : int
        The rotation's seed.

    Returns
    -------
    rotation : numpy.ndarray
        Shape (3, 3).
    moved : numpy.ndarray
        ``positions @ rotation.T + translation``.
    """
    rotation = randomRotation(seed)
    return rotation, positions @ rotation.T + np.array(translation)


def shortDynamics(model, masses, positions, platform, seed, steps=20):
    """A few steps of LangevinMiddleIntegrator (300 K, 1/ps, 0.5 fs) of the region alone under an
    MLForce of default precision.

    Parameters
    ----------
    model : torch.nn.Module
    masses : sequence
        The atoms' masses (Quantity or Daltons), one per atom.
    positions : array_like
        Shape (n, 3), nm.
    platform : openmm.Platform
    seed : int
        The integrator's random number seed.
    steps : int

    Returns
    -------
    startEnergy : float
        The potential energy before the steps, kJ/mol.
    startPositions : numpy.ndarray
        The positions the Context holds before the steps (as the platform stored them), nm.
    energy : float
        The potential energy after them, kJ/mol.
    endPositions : numpy.ndarray
        The positions after them, nm.
    """
    system = openmm.System()
    for mass in masses:
        system.addParticle(mass)
    system.addForce(MLForce(model, list(range(len(masses)))))
    integrator = openmm.LangevinMiddleIntegrator(300 * unit.kelvin, 1 / unit.picosecond, 0.0005 * unit.picosecond)
    integrator.setRandomNumberSeed(seed)
    context = openmm.Context(system, integrator, platform)
    context.setPositions(positions)
    start = context.getState(getEnergy=True, getPositions=True)
    integrator.step(steps)
    state = context.getState(getEnergy=True, getPositions=True)
    return (start.getPotentialEnergy().value_in_unit(KJ), start.getPositions(asNumpy=True).value_in_unit(NM),
            state.getPotentialEnergy().value_in_unit(KJ), state.getPositions(asNumpy=True).value_in_unit(NM))


class ZeroModel(torch.nn.Module):
    """A model whose energy is exactly zero (float64), for isolating the ML term of a mixed
    System: the same mixed System with it has the region's MM energy cancelled and nothing added."""

    def forward(self, positions: torch.Tensor, box: Optional[torch.Tensor] = None) -> torch.Tensor:
        return (positions * 0.0).sum().to(torch.float64)
