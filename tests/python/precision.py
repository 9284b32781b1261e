"""Tolerances for comparing two computations, derived from the floating-point arithmetic involved.

Which comparison is which:

- **The same code on the same inputs** (a serialization round trip, checkpoint and resume on the
  Reference platform, two calls in one Context): the results are bitwise equal, and the test
  compares with ``==``.
- **Two code paths that compute the same function** (eager PyTorch and TorchScript, a model called
  from Python and from the C++ kernel, a compiled package and TorchScript, the CPU and Reference
  platforms, one thread count and another): each rounds differently, and which rounding happens
  depends on the processor (PyTorch picks AVX-512, AVX2 or scalar kernels by CPU,
  ``torch.backends.cpu.get_cpu_capability()``), on TorchScript's fusion and on the order of
  parallel reductions.  Those tests use :func:`bound`, whose size follows from the precision.

The model of rounding (Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed., 2002,
section 4.2; Higham and Mary, SIAM J. Sci. Comput. 41, A2815, 2019): a sum of ``n`` terms whose
magnitudes add up to ``S`` is computed with an error of at most ``n * eps * S``, and in practice
(random rounding errors) about ``sqrt(n) * eps * S``.  Two evaluations that each carry such an
error differ by at most twice that.  :func:`bound` takes ``sqrt(n) * eps * S`` times a safety
factor of 8 (two evaluations, four standard deviations), so a bound that holds on one CPU's
kernels holds on every CPU's, and is still orders of magnitude below the size of a real bug
(a wrong sign, a missing term, a self energy added in float32).

``n`` is the number of rounding steps that reach the result: for a network, the number of
products summed into one output times the number of layers; for a sum over atoms or pairs, that
count.  Each test says what it takes for ``n`` and ``S``.
"""
import math

import numpy as np
import openmm
import openmm.unit as unit
import torch

#: Unit roundoff of float32 and float64 (the spacing of floating-point numbers just above 1).
EPS32 = float(np.finfo(np.float32).eps)  # 1.19e-7
EPS64 = float(np.finfo(np.float64).eps)  # 2.22e-16

#: Two evaluations, four standard deviations of a random-walk rounding error each.
SAFETY = 8.0


def eps(dtype):
    """The unit roundoff of a numpy or torch floating-point dtype (or 'float32' / 'float64')."""
    if dtype in (torch.float32, np.float32, "float32", "single"):
        return EPS32
    if dtype in (torch.float64, np.float64, "float64", "double", float):
        return EPS64
    raise ValueError(f"precision.eps: not a float32 or float64 dtype: {dtype!r}")


def bound(scale, dtype, terms=1):
    """The largest difference expected between two code paths computing the same quantity.

    Parameters
    ----------
    scale : float
        The sum of the magnitudes of what is added up (an energy, a force component's largest
        magnitude, ...), in the units of the compared quantity.
    dtype
        The precision of the arithmetic (float32 or float64).
    terms : int
        The number of rounding steps that reach the result (see the module docstring).

    Returns
    -------
    float
        ``SAFETY * sqrt(terms) * eps(dtype) * scale``.
    """
    return SAFETY * math.sqrt(max(int(terms), 1)) * eps(dtype) * float(abs(scale))


def networkTerms(inputs, layers, outputs=1):
    """Rounding steps of a feed-forward network summed over ``outputs`` atoms or pairs: each of
    ``layers`` layers is a dot product over at most ``inputs`` terms."""
    return int(inputs) * int(layers) * int(outputs)


def nonbondedBounds(system, box, energyScale, forceScale, platform):
    """(energy bound, force bound) for two evaluations of a periodic System's NonbondedForce that
    round differently (another Context, other charges or exclusions).

    Reference computes in float64: the energy is a sum over the pairs within the cutoff, a force a
    sum over one atom's neighbours and its 5^3 PME grid points.  The CPU platform computes the pair
    terms and forces in float32 and sums them in neighbour-list blocks that change from one Context
    to another: float32 rounding of the energy (of its block sums, which it adds in float64) and of
    each atom's force over the same neighbours.  Scales: |E| and the largest force component."""
    nb = next(f for f in system.getForces() if isinstance(f, openmm.NonbondedForce))
    cutoff = nb.getCutoffDistance().value_in_unit(unit.nanometer)
    neighbours = int(system.getNumParticles() / abs(np.linalg.det(box)) * 4 / 3 * math.pi * cutoff**3)
    if platform.getName() == "CPU":
        return bound(energyScale, np.float32), bound(forceScale, np.float32, neighbours + 5**3)
    return (bound(energyScale, np.float64, system.getNumParticles() * neighbours // 2),
            bound(forceScale, np.float64, neighbours + 5**3))


def centralDifference(energyAt, h, rounding):
    """(-dE/dx by central differences of energyAt(dx), the bound on its error).

    Truncation: h^2 E'''/6, which is (D(2h) - D(h))/3 (Richardson); taken three times over, as
    |D(2h) - D(h)|.  Rounding: ``rounding`` bounds the difference of two energies, so D(h) is within
    rounding/(2h) and D(2h) within rounding/(4h); rounding/h covers both and the analytic force's
    own float64 rounding."""
    d1 = -(energyAt(h) - energyAt(-h)) / (2 * h)
    d2 = -(energyAt(2 * h) - energyAt(-2 * h)) / (4 * h)
    return d1, abs(d2 - d1) + rounding / h


# ---------------------------------------------------------------------------------------------


def boxMatrix(inpcrd):
    """The periodic box of an AmberInpcrdFile (or anything with ``boxVectors``) as a [3, 3] array in nm."""
    return np.array([v.value_in_unit(unit.nanometer) for v in inpcrd.boxVectors])
