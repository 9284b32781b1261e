"""Write the TorchScript models the C++ tests use (run by ctest before the tests).

Each model has a closed form that the C++ tests recompute independently.
Usage: python make_models.py OUTPUT_DIR
"""
import os
import sys

import torch

# Closed form used throughout: E = K * sum_{i<j} (r_ij - R0)^2, K = 100 kJ/mol/nm^2, R0 = 0.15 nm.


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


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    models = {"pairs": Pairs(), "pairs_periodic": PairsPeriodic(), "pairs_parameters": PairsWithParameters(),
              "constant_forces": ConstantForces(), "nan_energy": NaNEnergy(), "per_atom_energy": PerAtomEnergy(),
              "integer_energy": IntegerEnergy(), "three_inputs": ThreeInputs()}
    for name, model in models.items():
        torch.jit.save(torch.jit.script(model), os.path.join(out, name + ".pt"))
    with open(os.path.join(out, "corrupt.pt"), "wb") as f:
        f.write(b"this is not a TorchScript archive" * 10)


if __name__ == "__main__":
    main()
