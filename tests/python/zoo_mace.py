"""MACE models with random weights, built by mace-torch itself and saved as the ``.model`` file that
mace-torch's training writes (``torch.save`` of the whole ``ScaleShiftMACE`` module), for the tests
of :mod:`openmmhybrid.models.mace` and for benchmarks.

Sizes:

``"tiny"``
    For the tests: 4x0e+4x1o hidden irreps, spherical harmonics to l = 1, 4 Bessel functions, a
    one-layer radial MLP of 8, 2 interactions, correlation 2; 932 parameters (a model evaluates
    in milliseconds and compiles in about a second).
``"realistic"``
    The architecture of MACE-OFF23 small (Kovacs et al., arXiv:2312.15211): 96x0e hidden irreps
    (max_L 0), spherical harmonics to l = 3, r_max 4.5 Angstrom, 8 Bessel functions, polynomial
    cutoff p = 5, a 64-64-64 radial MLP, 16x0e readout MLP, 2 residual interactions,
    correlation 3.

The weights are mace-torch's own random initialisation under ``torch.manual_seed(seed)``; the
atomic reference energies are ``-13.6 eV * Z**2.4`` (the size of an isolated atom's DFT energy,
so that the total energy is as large as a real model's and float32 rounding of it shows), the
scale and shift those of a trained model's order (0.5 eV and -0.1 eV per atom).
"""
import contextlib

import numpy as np
import torch

#: H, C, N, O and S: S lies outside the default set of most tests' molecules; Cl (17) is not
#: covered, for the uncovered-element tests.
DEFAULT_ELEMENTS = (1, 6, 7, 8, 16)

#: The embedding of total charge and spin of mace-torch's ``GenericJointEmbedding`` (the inputs
#: MACE-OMOL takes), for a model that takes a total charge: charges -5 ... 5, multiplicities 1 ... 5.
CHARGE_SPIN_EMBEDDING = {
    "total_charge": {"type": "categorical", "per": "graph", "emb_dim": 4, "num_classes": 11, "offset": 5},
    "total_spin": {"type": "categorical", "per": "graph", "emb_dim": 4, "num_classes": 6, "offset": 0},
}

SIZES = {
    "tiny": dict(r_max=4.0, num_bessel=4, num_polynomial_cutoff=5, max_ell=1, num_interactions=2,
                 hidden_irreps="4x0e+4x1o", MLP_irreps="4x0e", radial_MLP=[8], correlation=2,
                 avg_num_neighbors=6.0),
    "realistic": dict(r_max=4.5, num_bessel=8, num_polynomial_cutoff=5, max_ell=3, num_interactions=2,
                      hidden_irreps="96x0e", MLP_irreps="16x0e", radial_MLP=[64, 64, 64], correlation=3,
                      avg_num_neighbors=12.0),
}


@contextlib.contextmanager
def _defaultDtype(dtype):
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def buildMACE(size="tiny", elements=DEFAULT_ELEMENTS, seed=0, dtype=torch.float64, chargeEmbedding=False):
    """A ``mace.modules.ScaleShiftMACE`` with random weights.

    Parameters
    ----------
    size : str
        ``"tiny"`` or ``"realistic"`` (see the module docstring).
    elements : sequence of int
        The atomic numbers the model covers (its ``atomic_numbers``), sorted by mace-torch.
    seed : int
        The seed of the weights (the same seed gives the same model, bit for bit).
    dtype : torch.dtype
        The dtype of the parameters and buffers (mace-torch builds in the default dtype).
    chargeEmbedding : bool
        Give the model total charge and spin inputs (:data:`CHARGE_SPIN_EMBEDDING`).

    Returns
    -------
    mace.modules.ScaleShiftMACE
    """
    from e3nn import o3
    from mace import modules

    config = dict(SIZES[size])
    elements = sorted(int(z) for z in elements)
    with _defaultDtype(dtype), torch.random.fork_rng():
        torch.manual_seed(seed)
        model = modules.ScaleShiftMACE(
            r_max=config["r_max"], num_bessel=config["num_bessel"],
            num_polynomial_cutoff=config["num_polynomial_cutoff"], max_ell=config["max_ell"],
            interaction_cls=modules.interaction_classes["RealAgnosticResidualInteractionBlock"],
            interaction_cls_first=modules.interaction_classes["RealAgnosticResidualInteractionBlock"],
            num_interactions=config["num_interactions"], num_elements=len(elements),
            hidden_irreps=o3.Irreps(config["hidden_irreps"]), MLP_irreps=o3.Irreps(config["MLP_irreps"]),
            atomic_energies=np.array([-13.6 * z ** 2.4 for z in elements]),
            avg_num_neighbors=config["avg_num_neighbors"], atomic_numbers=elements,
            correlation=config["correlation"], gate=torch.nn.functional.silu, radial_MLP=config["radial_MLP"],
            atomic_inter_scale=0.5, atomic_inter_shift=-0.1,
            embedding_specs=CHARGE_SPIN_EMBEDDING if chargeEmbedding else None)
    return model.eval()


def saveMACE(path, size="tiny", elements=DEFAULT_ELEMENTS, seed=0, dtype=torch.float64, chargeEmbedding=False):
    """Build :func:`buildMACE` and save it at ``path`` as mace-torch does (``torch.save(model, path)``).

    Returns
    -------
    str
        ``path``.
    """
    torch.save(buildMACE(size, elements, seed, dtype, chargeEmbedding), str(path))
    return str(path)
