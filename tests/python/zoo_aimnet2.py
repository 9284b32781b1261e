"""AIMNet2 models with random weights, built by aimnet 0.2.5 itself and saved in its own file format.

The format is the one aimnet's calculator (``aimnet.calculators.AIMNet2Calculator``) and its
registry use for every published model: a v2 ``.pt`` file, a dict written by ``torch.save`` that
``aimnet.models.load_model`` reads with ``torch.load(weights_only=True)``: the core model's YAML
(``model_yaml``: the network, its atomic shifts and sum, and ``SRCoulomb`` where the training
YAML had ``LRCoulomb``), its ``state_dict`` (atomic shifts in float64, rows of elements the model
does not cover set to NaN), and the metadata (``cutoff``, ``needs_coulomb``,
``needs_dispersion``, ``coulomb_mode``, ``coulomb_sr_rc``, ``d3_params``,
``implemented_species``, ...).  :func:`saveAIMNet2` writes it the way ``aimnet export`` does
(:mod:`aimnet.train.export_model`), from a training YAML built with ``aimnet.config.build_module``.

The legacy TorchScript ``.jpt`` files cannot be made here: aimnet 0.2.5's ``AIMNet2`` does not
compile with ``torch.jit.script`` (its forward imports modules and uses try/finally).
"""
import copy
import os

import torch

#: The published wB97M-D3 training YAML shipped with aimnet (the architecture of aimnet2_wb97m_d3_*.pt).
TRAINING_YAML = "aimnet2_dftd3_wb97m.yaml"

#: Elements covered by default: H, C, N, O and S, Cl (so that F, Br, ... are uncovered).
DEFAULT_ELEMENTS = ("H", "C", "N", "O", "S", "Cl")


def _trainingConfig(size, dispersion, coulomb):
    import yaml
    import aimnet.models
    path = os.path.join(os.path.dirname(aimnet.models.__file__), TRAINING_YAML)
    with open(path) as f:
        config = yaml.safe_load(f)
    kwargs = config["kwargs"]
    if size == "tiny":
        # A few thousand parameters: 4 features x 4 shifts, one hidden layer of 16 per pass.
        kwargs.update(nfeature=4, ncomb_v=4, hidden=[[16], [16], [16]], aim_size=8)
        kwargs["aev"] = dict(rc_s=5.0, nshifts_s=4)
        energy = kwargs["outputs"]["energy_mlp"]["kwargs"]
        energy["n_in"] = 8
        energy["mlp"]["hidden"] = [8]
    elif size != "realistic":
        raise ValueError(f"size must be 'tiny' or 'realistic', not {size!r}")
    if not dispersion:
        kwargs["outputs"].pop("dftd3")
    if not coulomb:
        kwargs["outputs"].pop("lrcoulomb")
    return config


def buildAIMNet2(size="tiny", elements=DEFAULT_ELEMENTS, seed=0, dispersion=True, coulomb=True):
    """(model, artifact dict) of an AIMNet2 with random weights, as ``aimnet export`` makes it.

    Parameters
    ----------
    size : {'tiny', 'realistic'}
        'tiny': 4 features, 4 radial shifts, hidden layers of 16 (about 4,600 parameters);
        'realistic': the published wB97M-D3 architecture of aimnet's shipped YAML (16 features
        x 16 shifts, hidden layers [512, 380], [512, 380], [512, 380, 380], AIM size 256).
    elements : sequence of str
        The element symbols the model covers (the other rows of the embedding are NaN, as in
        the published files).
    seed : int
        Seeds torch's generator for the initial weights, which are then perturbed so that the
        biases and atomic shifts are non-zero.
    dispersion, coulomb : bool
        Keep the training YAML's DFTD3 (externalised: ``needs_dispersion``) and LRCoulomb (made
        ``SRCoulomb`` inside, full Coulomb outside: ``needs_coulomb``).
    """
    from openmm.app import element as elementTable
    from aimnet.config import build_module
    from aimnet.models.utils import strip_lr_modules_from_yaml
    import yaml

    config = _trainingConfig(size, dispersion, coulomb)
    core, coulombMode, needsDispersion, d3, srRc, srEnvelope, _ = strip_lr_modules_from_yaml(config, {})
    generator = torch.random.fork_rng()
    with generator:
        torch.manual_seed(seed)
        model = build_module(copy.deepcopy(core))
        numbers = sorted(elementTable.get_by_symbol(s).atomic_number for s in elements)
        with torch.no_grad():
            for name, parameter in model.named_parameters():
                if name.endswith("bias"):
                    parameter.normal_(0.0, 0.1)  # xavier init leaves biases zero
            model.outputs.atomic_shift.double()
            shifts = model.outputs.atomic_shift.shifts.weight
            shifts.zero_()
            for z in numbers:
                shifts[z] = -0.5 * z + 0.1 * torch.randn(1, dtype=torch.float64)  # eV, roughly an SAE's sign
            weight = model.afv.weight
            for z in range(1, weight.shape[0]):
                if z not in numbers:
                    weight[z] = float("nan")
    model.eval()
    artifact = {
        "format_version": 2,
        "model_yaml": yaml.dump(core, default_flow_style=False, sort_keys=False),
        "cutoff": float(model.aev.rc_s.item()),
        "needs_coulomb": coulombMode == "sr_embedded",
        "needs_dispersion": needsDispersion,
        "coulomb_mode": coulombMode,
        "coulomb_sr_rc": srRc if coulombMode == "sr_embedded" else None,
        "coulomb_sr_envelope": srEnvelope if coulombMode == "sr_embedded" else None,
        "d3_params": d3 if needsDispersion else None,
        "has_embedded_lr": coulombMode == "sr_embedded",
        "has_embedded_d3ts": False,
        "implemented_species": numbers,
        "state_dict": model.state_dict(),
    }
    return model, artifact


def saveAIMNet2(path, size="tiny", elements=DEFAULT_ELEMENTS, seed=0, dispersion=True, coulomb=True):
    """Write :func:`buildAIMNet2`'s model as a v2 ``.pt`` file at ``path`` (validated the way
    ``aimnet export`` validates it) and return ``path``."""
    from aimnet.models.artifact_validation import resolve_model_import_policy, validate_v2_artifact_with_policy

    _, artifact = buildAIMNet2(size, elements, seed, dispersion, coulomb)
    validate_v2_artifact_with_policy(artifact, resolve_model_import_policy(None, "extend"), validation="canonical")
    torch.save(artifact, os.fspath(path))
    return os.fspath(path)
