"""TorchMD-Net checkpoints with random weights, written by torchmd-net and Lightning themselves.

:func:`tensornet` builds torchmd-net's own Lightning module (``torchmdnet.module.LNNP``, what
``torchmd-train`` trains) for a TensorNet with an ``Atomref`` prior, gives it seeded random
weights, and saves it with ``lightning.Trainer.save_checkpoint``: the ``.ckpt`` format users have,
which ``torchmdnet.models.model.load_model`` reads.  No training: the weights are the library's
random initialization (seeded), the standardization and the reference energies random numbers.
"""
import warnings

import numpy as np
import torch

#: Default elements: H, C, N, O and S (so that F and Cl are outside the set).
DEFAULT_ELEMENTS = ("H", "C", "N", "O", "S")

SIZES = {
    # A few thousand parameters: fast enough for tests.
    "tiny": dict(embedding_dimension=8, num_layers=1, num_rbf=8, cutoff_upper=5.0),
    # AceFF-1.0's architecture (TensorNet, 128 channels, 2 layers, 32 radial functions, 5 A).
    "realistic": dict(embedding_dimension=128, num_layers=2, num_rbf=32, cutoff_upper=5.0),
}


def hyperparameters(size="tiny", elements=DEFAULT_ELEMENTS, charge=True, precision=32, group="O(3)", **overrides):
    """The training hyperparameters (``torchmd-train``'s names) of a TensorNet checkpoint."""
    from openmm.app import element
    numbers = sorted(element.get_by_symbol(e).atomic_number for e in elements)
    maxZ = max(numbers) + 1
    hp = dict(model="tensornet", output_model="Scalar", output_mlp_num_layers=0, rbf_type="expnorm",
              trainable_rbf=False, activation="silu", cutoff_lower=0.0, max_z=maxZ, max_num_neighbors=64,
              equivariance_invariance_group=group, static_shapes=False, derivative=True, atom_filter=-1,
              prior_model="Atomref", prior_args={"max_z": maxZ, "trainable": False, "enable": True},
              reduce_op="add", precision=precision, load_model=None, remove_ref_energy=False, charge=charge,
              spin=False, lr=1e-4, weight_decay=0.0, lr_factor=0.8, lr_patience=10, lr_min=1e-6,
              train_loss="mse_loss", train_loss_arg={}, box_vecs=None, standardize=True, seed=1)
    hp.update(SIZES[size])
    hp.update(overrides)
    return hp, numbers


def tensornet(path, size="tiny", elements=DEFAULT_ELEMENTS, charge=True, precision=32, seed=0, group="O(3)",
              **overrides):
    """Write a TensorNet ``.ckpt`` with random weights to ``path``; return ``path``.

    Parameters
    ----------
    path : str or os.PathLike
    size : {'tiny', 'realistic'}
        ``'tiny'``: 8 channels, 1 layer (about 3,000 parameters); ``'realistic'``: AceFF-1.0's
        size (128 channels, 2 layers, 32 radial functions, 5 A cutoff).
    elements : sequence of str
        The elements the model covers: ``max_z`` is one above the largest, and the Atomref
        reference energies are nonzero for these only.
    charge : bool
        Whether the model was trained with a total charge (``charge: true``).
    precision : {32, 64}
        The checkpoint's dtype.
    seed : int
    group : {'O(3)', 'SO(3)'}
        TensorNet's ``equivariance_invariance_group``.
    **overrides
        Other hyperparameters.
    """
    import lightning
    from torchmdnet.module import LNNP

    hp, numbers = hyperparameters(size, elements, charge, precision, group, **overrides)
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    dtype = torch.float64 if precision == 64 else torch.float32
    mean = torch.tensor(rng.uniform(-1.0, 1.0), dtype=dtype)
    std = torch.tensor(rng.uniform(0.5, 2.0), dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = LNNP(hp, mean=mean, std=std)
        atomref = torch.zeros(hp["max_z"], 1, dtype=dtype)
        for z in numbers:
            atomref[z, 0] = -z * rng.uniform(0.5, 1.5)  # eV-sized reference energies, nonzero for covered elements
        prior = module.model.prior_model[0]
        prior.initial_atomref.copy_(atomref)
        prior.atomref.weight.data.copy_(atomref)
        trainer = lightning.Trainer(logger=False, enable_checkpointing=False, accelerator="cpu", max_epochs=0,
                                    enable_progress_bar=False, enable_model_summary=False)
        trainer.strategy.connect(module)
        trainer.save_checkpoint(str(path))
    return str(path)


def parameterCount(path):
    """The number of network parameters in a checkpoint written by :func:`tensornet`."""
    state = torch.load(str(path), map_location="cpu", weights_only=True)["state_dict"]
    return sum(v.numel() for k, v in state.items() if "atomref" not in k and v.dtype.is_floating_point
               and k not in ("model.mean", "model.std"))
