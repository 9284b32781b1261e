"""The region's model: from a name, a file or a module to what MLForce runs.

:func:`resolveModel` turns what the user gave into a torch module; :func:`regionModel`,
:func:`embeddedModel` and :func:`compiledRegionModel` adapt it to the inputs an MLForce of a
mixed System passes (the box of a periodic System, the embedding environment, the
``lambda_interpolate`` scale), with the wrappers of :mod:`openmmhybrid.adapters`.
"""
import os
import tempfile

import openmm
import torch

from . import adapters, embedding, models
from .compiled import compileModel
from .utils import LAMBDA_PARAMETER, firstLine, mdValue

__all__ = ["isModelFile", "resolveModel", "withRegionCharge", "regionCharge", "compileUnavailable", "compiledRegionModel", "regionModel", "embeddingTerms",
           "embeddedModel"]


def isModelFile(model):
    """Whether ``model`` (a str or path) names a model file rather than a registered model name: it
    exists, or holds a path separator or an extension (``'ani1x'`` is a name, ``'model.pt'`` a file)."""
    name = os.fspath(model)
    return os.path.exists(name) or os.sep in name or os.path.splitext(name)[1] != ""


def resolveModel(model, topology, mlAtoms, modelArgs=None, links=None):
    """A torch module for the region from a registered name, a TorchScript file or a module.

    With ``links`` (a :class:`~openmmhybrid.linkatoms.LinkAtoms`) the model is for the atoms it
    then sees: the region, then one hydrogen cap per cut bond.  A named model is built for them;
    a module that says how many atoms it was built for (``atomicNumbers``) is checked.

    Raises
    ------
    FileNotFoundError
        A model file that does not exist.
    ValueError
        A file torch.jit.load cannot read, a name that is not registered, modelArgs without a name.
    TypeError
        ``model`` is none of the three.
    """
    if links is not None:
        return _cappedModel(model, topology, mlAtoms, modelArgs, links)
    if isinstance(model, (str, os.PathLike)):
        name = os.fspath(model)
        if not isModelFile(name):
            return models.createModel(name, topology, mlAtoms, **(modelArgs or {}))
        if not os.path.isfile(name):
            raise FileNotFoundError(f"createMixedSystem: the model file '{name}' does not exist. Pass a TorchScript file, "
                                    f"a torch.nn.Module, or a registered model name ({', '.join(models.availableModels())}).")
        try:
            return torch.jit.load(name, map_location="cpu")
        except Exception as error:
            raise ValueError(f"createMixedSystem: '{name}' is not a TorchScript file torch.jit.load can read: "
                             f"{firstLine(error)}") from None
    if modelArgs:
        raise ValueError("createMixedSystem: modelArgs is only used with a model given by name")
    if isinstance(model, torch.nn.Module):
        return model
    raise TypeError(f"createMixedSystem: model must be a registered name, a TorchScript file, or a torch.nn.Module, "
                    f"not {type(model).__name__}")


def _cappedModel(model, topology, mlAtoms, modelArgs, links):
    cappedTopology, modelAtoms = links.cappedTopology(topology)
    try:
        module = resolveModel(model, cappedTopology, modelAtoms, modelArgs)
    except ValueError as error:
        try:
            resolveModel(model, topology, mlAtoms, modelArgs)
        except ValueError:
            raise error from None
        raise ValueError(f"createMixedSystem: the model {model!r} does not cover hydrogen, the element of the "
                         f"{len(links.bonds)} link atom(s) that cap the bonds the region cuts ({firstLine(error)}). "
                         "Choose a model that covers hydrogen, or a region of whole molecules.") from None
    numbers = getattr(module, "atomicNumbers", None)
    if (isinstance(numbers, (list, tuple)) or torch.is_tensor(numbers)) and len(numbers) != len(modelAtoms):
        raise ValueError(f"createMixedSystem: the model was built for {len(numbers)} atoms, but with link atoms it "
                         f"sees {len(modelAtoms)}: the {len(mlAtoms)} region atoms, then a hydrogen cap for each of the "
                         f"{len(links.bonds)} cut bonds. Build it for LinkAtoms.cappedTopology(), pass the model by "
                         "name, or pass linkAtoms=False.")
    return module


def regionCharge(system, region):
    """The sum of the region's MM charges (NonbondedForce), or 0.0 if the System has none."""
    return sum(mdValue(force.getParticleParameters(i)[0]) for force in system.getForces()
               if isinstance(force, openmm.NonbondedForce) for i in region)


def withRegionCharge(model, modelArgs, system, region):
    """``modelArgs`` with ``charge``, the region's MM charge rounded, for a named model that takes a
    total charge (:func:`~openmmhybrid.models.takesCharge`) and was not given one.

    Raises
    ------
    ValueError
        The region's MM charges do not sum to an integer (within 0.01 e), so the charge must be given.
    """
    if not isinstance(model, (str, os.PathLike)) or isModelFile(model) or "charge" in (modelArgs or {}):
        return modelArgs
    if not models.takesCharge(os.fspath(model)):
        return modelArgs
    charge = regionCharge(system, region)
    if abs(charge - round(charge)) > 0.01:
        raise ValueError(f"createMixedSystem: the model {os.fspath(model)!r} takes the region's total charge, but the "
                         f"region's MM charges sum to {charge:.4f} e, not an integer (it cuts through a molecule or "
                         "residue). Give the charge of the region the model sees: modelArgs={'charge': N} (in a "
                         "config: [ml] charge = N).")
    return dict(modelArgs or {}, charge=int(round(charge)))


def compileUnavailable(model):
    """Why ``compile=True`` cannot be used with this model, or None if it can."""
    if isinstance(model, torch.jit.ScriptModule):
        return ("compile needs a torch.nn.Module or a registered model name; a TorchScript model cannot be compiled "
                "(it is not traceable Python)")
    return None


def compiledRegionModel(module, periodic, interpolate, numAtoms, usesDoublePrecision, embedded=False):
    """The bytes of an AOTInductor package of the region model (see :func:`~openmmhybrid.compileModel`).

    ``embedded``: ``module`` already follows the embedding contract for this force
    (:func:`embeddedModel` with ``script=False``), so it is compiled as it is, with the
    environment's inputs."""
    if embedded:
        wrapped = module
    elif not periodic:
        wrapped = adapters.Scaled(module) if interpolate else module
    elif interpolate:
        wrapped = adapters.ScaledWithBox(module) if adapters.takesBox(module) else adapters.ScaledDropBox(module)
    else:
        wrapped = module if adapters.takesBox(module) else adapters.DropBox(module)
    parameters = [(LAMBDA_PARAMETER, 1.0)] if interpolate else []
    with tempfile.TemporaryDirectory(prefix="openmmhybrid-") as folder:
        path = compileModel(wrapped, numAtoms, os.path.join(folder, "region.pt2"), periodic=periodic, parameters=parameters,
                            derivatives=[name for name, _ in parameters], usesDoublePrecision=usesDoublePrecision,
                            embedding=embedded)
        with open(path, "rb") as f:
            return f.read()


def regionModel(module, periodic, interpolate):
    """Adapt module to what MLForce passes: (positions[, box][, lambda_interpolate])."""
    scripted = adapters.scriptModule(module, "createMixedSystem")
    takesBox = adapters.takesBox(scripted)
    if not periodic:
        return adapters.Scaled(scripted) if interpolate else scripted
    if interpolate:
        return adapters.ScaledWithBox(scripted) if takesBox else adapters.ScaledDropBox(scripted)
    return scripted if takesBox else adapters.DropBox(scripted)


def embeddingTerms(terms, topology, mlAtoms, charges, cutoff, switchDistance, precision="single"):
    """The embedding term modules from names (``'coulomb'``, ``'polarization'``) or modules.

    The default (``terms=None``) is both named terms as one
    :class:`~openmmhybrid.embedding.CoulombAndPolarization`: one pass over the environment, its
    pair sums in ``precision`` (the MLForce's: ``'double'`` with ``usesDoublePrecision``).  Names
    given explicitly give the separate float64 terms."""
    if terms is None:
        coupling, polarization = embeddingTerms(["coulomb", "polarization"], topology, mlAtoms, charges, cutoff,
                                                switchDistance)
        return [embedding.CoulombAndPolarization(coupling, polarization, precision)]
    if isinstance(terms, (str, torch.nn.Module)):
        terms = [terms]
    atoms = list(topology.atoms())
    result = []
    for term in terms:
        if isinstance(term, torch.nn.Module):
            result.append(term)
        elif term == "coulomb":
            result.append(embedding.FixedChargeCoupling([charges[i] for i in mlAtoms], cutoff, switchDistance))
        elif term == "polarization":
            numbers = []
            for i in mlAtoms:
                element = atoms[i].element
                if element is None:
                    raise ValueError(f"createMixedSystem: ML atom {i} ({atoms[i].name}) has no element in the topology, "
                                     "which the polarization term needs.")
                numbers.append(element.atomic_number)
            result.append(embedding.TholePolarization(numbers, cutoff, switchDistance))
        else:
            raise ValueError(f"createMixedSystem: unknown embedding term {term!r}; use 'coulomb', 'polarization' or a "
                             "torch.nn.Module with forward(positions, mm_positions, mm_charges, mm_mask)")
    return result


def embeddedModel(module, periodic, interpolate, terms, links=None, charges=None, script=True):
    """Adapt a region model to what an embedding MLForce passes:
    (positions[, box], mm_positions, mm_charges, mm_mask[, lambda_interpolate]).

    With ``links`` (a :class:`~openmmhybrid.linkatoms.LinkAtoms`) the MLForce's positions are the
    region, the MM atoms of the cut bonds and their neighbours: the model and the terms see the
    region and its caps, and the environment with the redistributed ``charges`` appended.

    ``script=False`` keeps the Python modules (for :func:`compiledRegionModel`); by default the
    region model is scripted first."""
    scripted = adapters.scriptModule(module, "createMixedSystem") if script else module
    numArgs = len(adapters.argumentNames(scripted))
    if adapters.takesEnvironment(scripted):
        expected = 5 if periodic else 4
        if numArgs != expected:
            raise ValueError(f"createMixedSystem: the embedding model's forward() takes {numArgs} arguments, but a "
                             f"{'periodic' if periodic else 'non-periodic'} System passes {expected}: (positions, "
                             f"{'box, ' if periodic else ''}mm_positions, mm_charges, mm_mask).")
        model = scripted if links is None else links.wrapEmbedding(scripted, charges, periodicForm=periodic)
    else:
        model = embedding.EmbeddedModel(scripted, terms, modelTakesBox=adapters.takesBox(scripted))
        if links is not None:
            model = links.wrapEmbedding(model, charges, periodicForm=True)
        if not periodic:
            model = adapters.EmbeddedNoBox(model)
    if interpolate:
        model = adapters.EmbeddedScaled(model) if periodic else adapters.EmbeddedScaledNoBox(model)
    return model
