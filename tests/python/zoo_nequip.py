"""NequIP and Allegro models with random weights, built by nequip's own model builders and written
in the format users have: the TorchScript ``.nequip.pth`` of ``nequip-compile --mode torchscript``.

``nequip-compile`` itself (nequip 0.19.1) refuses ``--mode torchscript`` under PyTorch >= 2.10
(installed here: 2.13), and it needs a training checkpoint.  So these builders do what it does
after loading one: build the model with the ``@model_builder`` API (seeded), merge
``model.metadata`` with nequip's global metadata state (bools as ``"0"``/``"1"``), and call
``nequip.model.inference_models.torchscript.save_torchscript_model`` -- the function
``nequip-compile --mode torchscript`` calls -- which scripts the model with e3nn's ``script`` and
saves the metadata as the archive's extra files.  The one difference: under PyTorch >= 2.10 nequip
switches e3nn and its own modules to eager mode, so the build runs with e3nn's ``jit_mode`` set
back to ``"script"`` and nequip's ``conditional_torchscript_mode(True)``, what nequip does on
PyTorch < 2.10.

Sizes: ``"tiny"`` (a few thousand parameters, for tests) and ``"realistic"`` (NequIP: 3 layers,
l_max 2, 32 features, r_max 5 Angstrom, the nequip tutorial's size; Allegro: 2 layers, l_max 2,
64 scalar and 32 tensor features, r_max 5 Angstrom).  Units: eV and Angstrom, nequip's usual ones.

:func:`nequipPeerFile` writes the same model (same builder, arguments and seed: bitwise the same
weights) as a ``.nequip.zip`` package, the format of ``nequip-package build``, which nequip's
``load_saved_model`` (and so openmm-ml's ``MLPotential("nequip")``) reads; it cannot read the
TorchScript ``.nequip.pth``.
"""
import contextlib
import os
import sys

import numpy as np
import torch

#: The elements the builders cover by default: H, C, N, O and S (so Cl, F, P... are uncovered).
DEFAULT_ELEMENTS = ("H", "C", "N", "O", "S")

SIZES = ("tiny", "realistic")


@contextlib.contextmanager
def _processStateKept():
    """Put back e3nn's optimization defaults, which building a nequip model changes for the whole
    process (it leaves ``jit_mode='script'``, after which mace-torch's models hold ScriptFunctions
    that cannot be pickled).  nequip also sets torch's default dtype to float64, which its own
    calculator (the tests' reference) relies on; conftest puts that back after each module."""
    import e3nn

    defaults = dict(e3nn.get_optimization_defaults())
    try:
        yield
    finally:
        e3nn.set_optimization_defaults(**defaults)


@contextlib.contextmanager
def _torchscriptBuild():
    """nequip's global state, with e3nn and nequip building TorchScript-compatible modules."""
    import e3nn
    from nequip.utils.compile import conditional_torchscript_mode
    from nequip.utils.global_state import set_global_state

    set_global_state(allow_tf32=False)
    previous = e3nn.get_optimization_defaults()["jit_mode"]
    e3nn.set_optimization_defaults(jit_mode="script")
    # torch_geometric (torchmd-net's dependency) replaces torch.index_select with a Python function
    # at import, which TorchScript cannot compile; the original is put back while scripting.
    hashTensor = sys.modules.get("torch_geometric.hash_tensor")
    indexSelect = torch.index_select
    if hashTensor is not None:
        torch.index_select = hashTensor._old_index_select
    try:
        with conditional_torchscript_mode(True):
            yield
    finally:
        torch.index_select = indexSelect
        e3nn.set_optimization_defaults(jit_mode=previous)


def _energyParameters(elements, seed):
    """Per-type energy shifts (eV, like isolated-atom energies) and scales, seeded."""
    rng = np.random.default_rng(seed)
    shifts = {e: float(v) for e, v in zip(elements, rng.uniform(-5.0, -1.0, size=len(elements)))}
    scales = {e: float(v) for e, v in zip(elements, rng.uniform(0.5, 1.5, size=len(elements)))}
    return shifts, scales


def _save(model, path):
    """Write ``model`` as nequip-compile --mode torchscript does (its metadata as extra files)."""
    import warnings

    from nequip.model.inference_models.torchscript import save_torchscript_model
    from nequip.utils.global_state import get_latest_global_state

    metadata = model.metadata.copy()
    metadata.update(get_latest_global_state(only_metadata_related=True))
    metadata = {k: str(int(v)) if isinstance(v, bool) else v for k, v in metadata.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated in PyTorch 2.10+
        save_torchscript_model(model, metadata, os.fspath(path), "cpu")
    return os.fspath(path)


def _nequipArguments(size, elements, dtype, seed):
    """The arguments of nequip's ``NequIPGNNModel`` builder, with its ``_target_`` (a config's model block)."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}")
    shifts, scales = _energyParameters(elements, seed)
    if size == "tiny":
        architecture = dict(r_max=4.0, num_layers=2, l_max=1, num_features=8, radial_mlp_depth=1,
                            radial_mlp_width=16, num_bessels=4)
    else:
        architecture = dict(r_max=5.0, num_layers=3, l_max=2, num_features=32, radial_mlp_depth=2,
                            radial_mlp_width=64, num_bessels=8)
    return dict(_target_="nequip.model.NequIPGNNModel", seed=seed, model_dtype=dtype, type_names=list(elements),
                avg_num_neighbors=8.0, per_type_energy_shifts=shifts, per_type_energy_scales=scales, **architecture)


def _allegroArguments(size, elements, dtype, seed):
    """The arguments of nequip-allegro's ``AllegroModel`` builder, with its ``_target_``."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}")
    shifts, scales = _energyParameters(elements, seed)
    if size == "tiny":
        architecture = dict(r_max=4.0, l_max=1, num_layers=1, num_scalar_features=8, num_tensor_features=4,
                            radial_chemical_embed_dim=8, scalar_embed_mlp_hidden_layers_width=16,
                            allegro_mlp_hidden_layers_width=16, readout_mlp_hidden_layers_width=8, num_bessels=4)
    else:
        architecture = dict(r_max=5.0, l_max=2, num_layers=2, num_scalar_features=64, num_tensor_features=32,
                            radial_chemical_embed_dim=64, scalar_embed_mlp_hidden_layers_width=64,
                            allegro_mlp_hidden_layers_width=64, readout_mlp_hidden_layers_width=32, num_bessels=8)
    numBessels = architecture.pop("num_bessels")
    embed = {"_target_": "allegro.nn.TwoBodyBesselScalarEmbed", "num_bessels": numBessels}
    return dict(_target_="allegro.model.AllegroModel", seed=seed, model_dtype=dtype, type_names=list(elements),
                avg_num_neighbors=8.0, radial_chemical_embed=embed, per_type_energy_shifts=shifts,
                per_type_energy_scales=scales, **architecture)


ARGUMENTS = {"nequip": _nequipArguments, "allegro": _allegroArguments}


def _build(arguments):
    """The model of a config's model block, built in the current e3nn/nequip mode (as nequip's
    training does, through hydra's ``instantiate``: the builder's seed fixes the weights)."""
    import importlib
    import warnings

    arguments = dict(arguments)
    module, name = arguments.pop("_target_").rsplit(".", 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return getattr(importlib.import_module(module), name)(**arguments)


@_processStateKept()
def nequipModel(path, size="tiny", elements=DEFAULT_ELEMENTS, dtype="float64", seed=0):
    """Write a NequIP model with random weights to ``path`` (``*.nequip.pth``) and return ``path``.

    Parameters
    ----------
    path : str or os.PathLike
        Where to write it; must end in ``.nequip.pth``.
    size : {"tiny", "realistic"}
        ``"tiny"``: 2 layers, l_max 1, 8 features, r_max 4 Angstrom;
        ``"realistic"``: 3 layers, l_max 2, 32 features, r_max 5 Angstrom.
    elements : sequence of str
        The element symbols (the model's type names).
    dtype : {"float64", "float32"}
        nequip's ``model_dtype``.
    seed : int
        nequip's model seed (and of the per-type energy shifts and scales).
    """
    arguments = _nequipArguments(size, elements, dtype, seed)
    with _torchscriptBuild():
        return _save(_build(arguments), path)


@_processStateKept()
def allegroModel(path, size="tiny", elements=DEFAULT_ELEMENTS, dtype="float64", seed=0):
    """Write an Allegro model with random weights to ``path`` (``*.nequip.pth``) and return ``path``.

    Parameters
    ----------
    path : str or os.PathLike
        Where to write it; must end in ``.nequip.pth``.
    size : {"tiny", "realistic"}
        ``"tiny"``: 1 layer, l_max 1, 8 scalar and 4 tensor features, r_max 4 Angstrom;
        ``"realistic"``: 2 layers, l_max 2, 64 scalar and 32 tensor features, r_max 5 Angstrom.
    elements, dtype, seed
        As :func:`nequipModel`.
    """
    arguments = _allegroArguments(size, elements, dtype, seed)
    with _torchscriptBuild():
        return _save(_build(arguments), path)


def _exampleData(model, seed):
    """A small molecule of the model's types, with its cutoff edges (what a package stores as
    ``example_data.pkl``, for ``nequip-compile`` to trace with)."""
    from nequip.data import AtomicDataDict, compute_neighborlist_, from_dict

    rng = np.random.default_rng(seed)
    count = max(4, len(model.type_names))
    data = {AtomicDataDict.POSITIONS_KEY: torch.tensor(rng.uniform(0.0, 3.0, size=(count, 3))),
            AtomicDataDict.ATOM_TYPE_KEY: torch.arange(count) % len(model.type_names),
            AtomicDataDict.CELL_KEY: 20.0 * torch.eye(3, dtype=torch.float64).unsqueeze(0),
            AtomicDataDict.PBC_KEY: torch.zeros((1, 3), dtype=torch.bool)}
    data = compute_neighborlist_(from_dict(data), float(model.metadata["r_max"]))
    return data


@_processStateKept()
def nequipPeerFile(path, size="tiny", elements=DEFAULT_ELEMENTS, dtype="float64", seed=0, family="nequip"):
    """Write the model of :func:`nequipModel` (``family="nequip"``) or :func:`allegroModel`
    (``"allegro"``) with the same arguments -- same builder, arguments and seed, so bitwise the
    same weights -- as a nequip package file (``*.nequip.zip``) and return ``path``.

    This is the format ``nequip-package build`` writes and nequip's ``load_saved_model`` reads
    (so openmm-ml's ``MLPotential("nequip", modelPath=...)``, which calls it, and which cannot read
    the TorchScript ``.nequip.pth``).  ``nequip-package build`` starts from a training
    checkpoint; this does what it does after loading one: the eager model (under PyTorch >= 2.10
    nequip builds e3nn and its modules in eager mode, as here) in a ``ModuleDict`` under
    ``"sole_model"``, saved with ``torch.package`` with nequip's intern (e3nn, nequip, its
    extensions), extern and mock module lists, beside ``example_data.pkl``, ``config.yaml`` (the
    model block) and ``package_metadata.txt`` (package version 2, only the ``eager`` model: the
    ``compile`` one is only for ``nequip-compile --mode aotinductor``).
    """
    import yaml

    from nequip.model.saved_models.package import _suppress_package_importer_exporter_warnings
    from nequip.model.utils import _EAGER_MODEL_KEY
    from nequip.scripts._package_utils import _EXTERNAL_MODULES, _INTERNAL_MODULES, _MOCK_MODULES
    from nequip.scripts.package import _CURRENT_NEQUIP_PACKAGE_VERSION
    from nequip.train.lightning import _SOLE_MODEL_KEY
    from nequip.utils.asserts import assert_package_extension
    from nequip.utils.global_state import set_global_state
    from nequip.utils.versions import get_current_code_versions
    from nequip.utils.versions.version_utils import get_version_safe

    if family not in ARGUMENTS:
        raise ValueError(f"family must be one of {tuple(ARGUMENTS)}")
    path = os.fspath(path)
    assert_package_extension(path, "output package path")
    arguments = ARGUMENTS[family](size, elements, dtype, seed)
    set_global_state(allow_tf32=False)
    model = _build(arguments)
    metadata = {
        "versions": get_current_code_versions(verbose=False),
        "external_modules": {k: get_version_safe(k) for k in _EXTERNAL_MODULES},
        "package_version_id": _CURRENT_NEQUIP_PACKAGE_VERSION,
        "available_models": [_EAGER_MODEL_KEY],
        "atom_types": dict(enumerate(model.type_names)),
    }
    with _suppress_package_importer_exporter_warnings(), \
            torch.package.PackageExporter(path, importer=(torch.package.importer.sys_importer,)) as exporter:
        exporter.mock([f"{name}.**" for name in _MOCK_MODULES])
        exporter.extern([f"{name}.**" for name in _EXTERNAL_MODULES])
        exporter.intern([f"{name}.**" for name in _INTERNAL_MODULES])
        exporter.save_pickle("model", "example_data.pkl", _exampleData(model, seed), dependencies=True)
        exporter.save_text("model", "config.yaml", yaml.safe_dump({"model": arguments}, sort_keys=False))
        exporter.save_text("model", "package_metadata.txt", yaml.dump(metadata, default_flow_style=False))
        exporter.save_pickle("model", f"{_EAGER_MODEL_KEY}_model.pkl",
                             torch.nn.ModuleDict({_SOLE_MODEL_KEY: model}), dependencies=True)
    return path


BUILDERS = {"nequip": nequipModel, "allegro": allegroModel}
