"""Small PyTorch models for the tests, each with a plain-PyTorch reference evaluation."""
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
