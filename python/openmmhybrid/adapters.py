"""What a region model takes, and the wrappers that adapt it to what MLForce passes.

The model contract (every input an MLForce can pass, in order) is stated in full in the user
guide, ``docs/user_guide.md#4-the-model-contract``.  This module answers the questions about a given
model that the rest of the package asks:

- :func:`scriptModule`: the model as TorchScript, the format the C++ kernels load;
- :func:`argumentNames`: the names of ``forward``'s arguments;
- :func:`takesBox`: does ``forward`` take the box vectors after the positions?
- :func:`takesEnvironment`: does it follow the embedding contract (``mm_positions``, ...)?

and holds the wrappers that add what a model lacks: a box argument it ignores, the
``lambda_interpolate`` scale, a zero box for a non-periodic embedding model.
"""
import inspect
import warnings

import torch

__all__ = ["scriptModule", "argumentNames", "takesBox", "takesEnvironment", "DropBox", "ScaledDropBox", "ScaledWithBox", "Scaled",
           "EmbeddedNoBox", "EmbeddedScaled", "EmbeddedScaledNoBox"]


def scriptModule(model, who="MLForce"):
    """A ScriptModule for a ScriptModule or an nn.Module (scripted here); errors name ``who``.

    Raises
    ------
    TypeError
        ``model`` is not a torch.nn.Module.
    ValueError
        ``torch.jit.script`` cannot convert it (the message gives its first line).
    """
    if isinstance(model, torch.jit.ScriptModule):
        return model
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"{who}: model must be a path to a TorchScript file, a torch.nn.Module or a "
                        f"torch.jit.ScriptModule, not {type(model).__name__}")
    # TorchScript is the format the C++ kernels load; torch marks its Python entry points as
    # deprecated, which says nothing about this use, so that warning is not passed on.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.jit.*", category=DeprecationWarning)
        try:
            return torch.jit.script(model)
        except Exception as error:
            reason = next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__).rstrip(".")
            raise ValueError(
                f"{who}: could not convert the {type(model).__name__} to TorchScript with torch.jit.script: "
                f"{reason}. Make the module scriptable (type annotations, no Python-only "
                "constructs) or pass a TorchScript file.") from error


def argumentNames(model):
    """The names of forward's arguments after self, for a ScriptModule or a Python module."""
    if isinstance(model, torch.jit.ScriptModule):
        return [a.name for a in model.forward.schema.arguments[1:]]
    return list(inspect.signature(model.forward).parameters)


def takesEnvironment(model):
    """Whether ``model.forward`` follows the embedding contract: ``(positions[, box], mm_positions,
    mm_charges, mm_mask)``."""
    names = argumentNames(model)
    return "mm_positions" in names or len(names) >= 4


def takesBox(model):
    """Whether ``model.forward`` takes the box vectors as its second argument: ``(positions, box)``
    for a vacuum model, ``(positions, box, mm_positions, mm_charges, mm_mask)`` for an embedding one."""
    names = argumentNames(model)
    if takesEnvironment(model):
        return len(names) >= 5
    return len(names) >= 2


class DropBox(torch.nn.Module):
    """Periodic force, model without a box argument."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, positions: torch.Tensor, box: torch.Tensor) -> torch.Tensor:
        return self.model(positions)


class ScaledDropBox(torch.nn.Module):
    """Periodic force, model without a box argument, energy times lambda."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, positions: torch.Tensor, box: torch.Tensor, lambda_interpolate: torch.Tensor) -> torch.Tensor:
        energy = self.model(positions)
        return lambda_interpolate.to(energy.dtype) * energy


class ScaledWithBox(torch.nn.Module):
    """Periodic force, model taking the box, energy times lambda."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, positions: torch.Tensor, box: torch.Tensor, lambda_interpolate: torch.Tensor) -> torch.Tensor:
        energy = self.model(positions, box)
        return lambda_interpolate.to(energy.dtype) * energy


class Scaled(torch.nn.Module):
    """Non-periodic force, energy times lambda."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, positions: torch.Tensor, lambda_interpolate: torch.Tensor) -> torch.Tensor:
        energy = self.model(positions)
        return lambda_interpolate.to(energy.dtype) * energy


class EmbeddedNoBox(torch.nn.Module):
    """Non-periodic force, embedding model written in the periodic form: a zero box is passed."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, positions: torch.Tensor, mm_positions: torch.Tensor, mm_charges: torch.Tensor,
                mm_mask: torch.Tensor) -> torch.Tensor:
        box = torch.zeros((3, 3), dtype=positions.dtype, device=positions.device)
        return self.model(positions, box, mm_positions, mm_charges, mm_mask)


class EmbeddedScaled(torch.nn.Module):
    """Periodic embedding model, energy times lambda."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, positions: torch.Tensor, box: torch.Tensor, mm_positions: torch.Tensor, mm_charges: torch.Tensor,
                mm_mask: torch.Tensor, lambda_interpolate: torch.Tensor) -> torch.Tensor:
        energy = self.model(positions, box, mm_positions, mm_charges, mm_mask)
        return lambda_interpolate.to(energy.dtype) * energy


class EmbeddedScaledNoBox(torch.nn.Module):
    """Non-periodic embedding model, energy times lambda."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, positions: torch.Tensor, mm_positions: torch.Tensor, mm_charges: torch.Tensor,
                mm_mask: torch.Tensor, lambda_interpolate: torch.Tensor) -> torch.Tensor:
        energy = self.model(positions, mm_positions, mm_charges, mm_mask)
        return lambda_interpolate.to(energy.dtype) * energy
