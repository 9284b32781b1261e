"""The test models, in one place: small PyTorch models for the Python tests, each with a
plain-PyTorch reference evaluation, and the TorchScript models of the C++ tests, which
``python tests/python/models.py OUTPUT_DIR`` writes (ctest runs it before the C++ tests)."""
import os
import sys

import torch


class PairMLP(torch.nn.Module):
    """An ANI-like toy: Gaussian features of every pair distance through a small MLP, summed.

    Invariant under rotation and translation; smooth; float64 or float32 by ``dtype``.
    """

    def __init__(self, dtype=torch.float64, seed=0, features=8, hidden=16):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        # Drawn in float64 and cast, so both dtypes hold the same weights.
        def draw(*shape):
            return torch.randn(*shape, generator=generator, dtype=torch.float64).to(dtype)
        self.register_buffer("centers", torch.linspace(0.05, 0.6, features, dtype=torch.float64).to(dtype))
        self.w1 = torch.nn.Parameter(draw(features, hidden) * 0.5)
        self.b1 = torch.nn.Parameter(draw(hidden) * 0.1)
        self.w2 = torch.nn.Parameter(draw(hidden, 1) * 0.5)

    def forward(self, positions):
        return self.pair_energy(positions)

    def pair_energy(self, positions):
        return self.pair_terms(positions).sum() * 10.0

    def pair_terms(self, positions):
        n = positions.shape[0]
        ij = torch.triu_indices(n, n, 1, device=positions.device)
        r = torch.linalg.norm(positions[ij[0]] - positions[ij[1]], dim=1)
        features = torch.exp(-((r.unsqueeze(1) - self.centers) ** 2) / 0.01)
        return torch.tanh(features @ self.w1 + self.b1) @ self.w2

    def magnitude(self, positions):
        """The sum of the magnitudes of the pair terms (kJ/mol, float64): the scale of the rounding
        error of pair_energy (tests/python/precision.py)."""
        with torch.no_grad():
            x = torch.as_tensor(positions, dtype=torch.float64).to(self.w1.dtype)
            return float(self.pair_terms(x).abs().sum()) * 10.0

    @staticmethod
    def rounding_terms(n):
        """Rounding steps of pair_energy on n atoms: the 2 layers' dot products (up to 16 terms)
        for each of the n(n-1)/2 pairs."""
        return 16 * 2 * n * (n - 1) // 2


class PeriodicPairMLP(PairMLP):
    """PairMLP with the box as second input, plus 5 * trace(box) to check the box arrives."""

    def forward(self, positions, box):
        return self.pair_energy(positions) + 5.0 * torch.trace(box)


class ScaledPairMLP(PairMLP):
    """PairMLP times a global parameter ``scale`` plus ``shift``: dE/dscale = E_pair, dE/dshift = 1."""

    def forward(self, positions, scale, shift):
        return scale * self.pair_energy(positions) + shift


class ReturnsForces(torch.nn.Module):
    """Returns (energy, forces) where forces are deliberately not the gradient (forces[i] = i * (1, -1, 2))."""

    def forward(self, positions):
        n = positions.shape[0]
        idx = torch.arange(n, dtype=positions.dtype, device=positions.device).unsqueeze(1)
        return (positions ** 2).sum(), idx * torch.tensor([1.0, -1.0, 2.0], dtype=positions.dtype, device=positions.device)


class Constant(torch.nn.Module):
    """A trivial model: E = sum of coordinates times zero plus a constant."""

    def forward(self, positions):
        return positions.sum() * 0.0 + 1.0


class BadOutput(torch.nn.Module):
    """Returns something of the wrong shape or dtype, chosen by ``kind``."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def forward(self, positions):
        if self.kind == "per_atom":
            return (positions ** 2).sum(dim=1)
        if self.kind == "integer":
            return torch.tensor(3, dtype=torch.int64)
        if self.kind == "nan":
            return positions.sum() * float("nan")
        if self.kind == "inf":
            return positions.sum() + float("inf")
        return positions.sum()


class BadForces(torch.nn.Module):
    """Returns (energy, forces) with forces of the wrong shape."""

    def forward(self, positions):
        return positions.sum(), positions[:, :2]


class TwoInputs(torch.nn.Module):
    def forward(self, positions, other):
        return positions.sum() + other


class Float64Linear(torch.nn.Module):
    """Has float64 weights, so float32 inputs make it fail inside forward()."""

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(3, 1).double()

    def forward(self, positions):
        return self.linear(positions).sum()


class FirstDistance(torch.nn.Module):
    """E = |r_0 - r_1| written with sqrt: finite energy but a NaN gradient when the atoms coincide."""

    def forward(self, positions):
        return torch.sqrt(((positions[0] - positions[1]) ** 2).sum())


# --- The models of the C++ tests (tests/cpp), each with a closed form the C++ tests recompute ------
# E = K * sum_{i<j} (r_ij - R0)^2, K = 100 kJ/mol/nm^2, R0 = 0.15 nm.


def pair_distances(positions):
    n = positions.shape[0]
    ij = torch.triu_indices(n, n, 1)
    return torch.linalg.norm(positions[ij[0]] - positions[ij[1]], dim=1)


def pair_energy(positions, k: float = 100.0, r0: float = 0.15):
    return k * ((pair_distances(positions) - r0) ** 2).sum()


class Pairs(torch.nn.Module):
    def forward(self, positions):
        return pair_energy(positions)


class PairsPeriodic(torch.nn.Module):
    """Pair energy of the (whole) region plus 10 * trace(box), which checks the box is passed."""
    def forward(self, positions, box):
        return pair_energy(positions) + 10.0 * torch.trace(box)


class PairsWithParameters(torch.nn.Module):
    """E = k * sum (r_ij - r0)^2 with k and r0 global parameters."""
    def forward(self, positions, k, r0):
        return k * ((pair_distances(positions) - r0) ** 2).sum()


class ConstantForces(torch.nn.Module):
    """Returns (pair energy, forces[i] = (i, 2i, 3i)): the forces are not the gradient, so a test
    sees whether they were used as given."""
    def forward(self, positions):
        n = positions.shape[0]
        idx = torch.arange(n, dtype=positions.dtype).unsqueeze(1)
        forces = idx * torch.tensor([1.0, 2.0, 3.0], dtype=positions.dtype)
        return pair_energy(positions), forces


class NaNEnergy(torch.nn.Module):
    def forward(self, positions):
        return pair_energy(positions) * float("nan")


class PerAtomEnergy(torch.nn.Module):
    """Wrong output shape: one energy per atom."""
    def forward(self, positions):
        return (positions ** 2).sum(dim=1)


class IntegerEnergy(torch.nn.Module):
    def forward(self, positions):
        return torch.tensor(1, dtype=torch.int64)


class ThreeInputs(torch.nn.Module):
    def forward(self, positions, a, b):
        return pair_energy(positions) + a + b


def writeCppModels(out):
    """Write the TorchScript models of the C++ tests (tests/cpp/TestMLForce.h) into the folder out."""
    os.makedirs(out, exist_ok=True)
    models = {"pairs": Pairs(), "pairs_periodic": PairsPeriodic(), "pairs_parameters": PairsWithParameters(),
              "constant_forces": ConstantForces(), "nan_energy": NaNEnergy(), "per_atom_energy": PerAtomEnergy(),
              "integer_energy": IntegerEnergy(), "three_inputs": ThreeInputs()}
    for name, model in models.items():
        torch.jit.save(torch.jit.script(model), os.path.join(out, name + ".pt"))
    with open(os.path.join(out, "corrupt.pt"), "wb") as f:
        f.write(b"this is not a TorchScript archive" * 10)


if __name__ == "__main__":
    # ctest runs this before the C++ tests: python tests/python/models.py OUTPUT_DIR
    writeCppModels(sys.argv[1])
