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
    import warnings

    from nequip.model import NequIPGNNModel

    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}")
    shifts, scales = _energyParameters(elements, seed)
    if size == "tiny":
        architecture = dict(r_max=4.0, num_layers=2, l_max=1, num_features=8, radial_mlp_depth=1,
                            radial_mlp_width=16, num_bessels=4)
    else:
        architecture = dict(r_max=5.0, num_layers=3, l_max=2, num_features=32, radial_mlp_depth=2,
                            radial_mlp_width=64, num_bessels=8)
    with _torchscriptBuild(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = NequIPGNNModel(seed=seed, model_dtype=dtype, type_names=list(elements), avg_num_neighbors=8.0,
                               per_type_energy_shifts=shifts, per_type_energy_scales=scales, **architecture)
        return _save(model, path)


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
    import warnings

    from allegro.model import AllegroModel

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
    with _torchscriptBuild(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = AllegroModel(seed=seed, model_dtype=dtype, type_names=list(elements), avg_num_neighbors=8.0,
                             radial_chemical_embed=embed, per_type_energy_shifts=shifts,
                             per_type_energy_scales=scales, **architecture)
        return _save(model, path)


BUILDERS = {"nequip": nequipModel, "allegro": allegroModel}
