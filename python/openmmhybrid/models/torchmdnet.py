"""TorchMD-Net TensorNet models (the user's checkpoint and the AceFF weight sets) as static-shape
PyTorch modules, read from torchmd-net's Lightning checkpoints.

:func:`create` reads a ``.ckpt`` file that torchmd-net 3.1.0 trained (``torchmd-train``; the
format ``torchmdnet.models.model.load_model`` reads) and returns a :class:`TensorNetModule`: the
checkpoint's TensorNet, its scalar output network, its standardization (``std``, ``mean``) and
its ``Atomref`` prior, evaluated on a fixed region with all its ordered atom pairs (self pairs
included, as TensorNet's ``loop=True`` neighbour list has them) held as dense ``[n, n]``
tensors.  Pairs beyond the cutoff stay in the tensors: TensorNet multiplies every pair's
contribution by its cosine cutoff, which is exactly 0 at and beyond ``cutoff_upper`` (and, with
a lower cutoff, below ``cutoff_lower``), with a zero derivative, so the energy and forces are
those of torchmd-net's own neighbour list evaluation to rounding.  There is no neighbour search,
no ``nonzero``, no boolean indexing and no host read in the forward pass: the shapes are fixed,
the module is scriptable with ``torch.jit.script`` and a CUDA graph can capture it.  The cost
and memory grow as ``n^2 F`` (``F`` the embedding dimension: 128 for AceFF), meant for regions
of tens to a few hundred atoms (300 atoms, ``F = 128``: about 90 MB per ``[n, n, F]`` float64
tensor).  For speed on the CPU the sums over neighbours are broadcast products summed over ``j``
(or matmuls batched over ``i``), never matmuls batched over channels; A and S travel through the
channel mixings and the messages as their 3 and 6 independent components; the pair embedding of
the elements is computed once, at construction.

torchmd-net's own TensorNet cannot be scripted into an :class:`~openmmhybrid.MLForce` on this
CPU: with warp-lang installed (a torchmd-net 3.1.0 dependency) its neighbour list and its
message passing are warp kernels (``torch.ops.torchmdnet.warp_*``, Python custom operators that a
C++ force cannot run), and its pure-PyTorch fallback is chosen once at import.  So
:class:`TensorNetModule` computes the pairs itself and evaluates TensorNet's equations (the
pure-PyTorch path of ``torchmdnet/models/tensornet.py``) with the checkpoint's own layers:
torchmd-net builds the model from the checkpoint (``load_model``, with its compatibility
remapping of older files) and this module takes its parameters.

Served: ``model: tensornet`` with the ``Scalar`` output model and no prior other than
``Atomref``.  Other architectures (equivariant transformer, graph network, TensorNet2, which
AceFF-2.0 uses) and other priors (ZBL, D2, Coulomb) are refused with a ValueError saying so.

Units: TorchMD-Net works in Angstrom (all its datasets); the energy unit is that of the training
data, which the checkpoint does not record.  The default is eV (the ACE and SPICE data sets of
torchmd-net, AceFF, and openmm-ml's default); ``energyUnit=`` says otherwise.

Total charge: TensorNet's interaction layers take the total charge ``q`` of the molecule; a
checkpoint trained with ``charge: true`` in its hyperparameters learned it, one trained without
saw only ``q = 0``.  :func:`create` passes the region's charge to the first kind and warns (and
passes 0) for the second.

Loading: ``torch.load(path, weights_only=True)`` reads the checkpoints that Lightning 2.x writes
(``Trainer.save_checkpoint``, which ``torchmd-train`` uses): their hyperparameters are stored as
a plain dict, their optimizer and loop states as tensors and plain containers.  A checkpoint
whose pickle holds other objects (older Lightning versions, custom callbacks) is refused with the
name of the object, unless ``trustFile=True`` is passed; then it is loaded with
``weights_only=False``, and loading runs code from the file: load only files you trust.

torchmd-net (``pip install torchmd-net``) is needed only to build the module: the built module
calls none of it, and a scripted copy (``torch.jit.save``) loads without it.
"""
import copy
import os
import tempfile
import warnings
from typing import Optional

import torch
from torch import Tensor

from . import EV_TO_KJ_PER_MOL, KCAL_TO_KJ, modelFile, requireElements

__all__ = ["NAMES", "create", "TensorNetModule", "ENERGY_UNITS", "coveredElements"]

_ACEFF_CHARGE = "total charge input (TensorNet's q)"
_ACEFF_SOURCE = "the AceFF checkpoint from Acellera's Hugging Face page (download it yourself; nothing is downloaded)"
_ACEFF_LICENCE = "that of the AceFF model card at the URL (not verified here)"

#: The model names this module serves.
NAMES = {
    "torchmdnet": dict(elements=None, charge="total charge input when the checkpoint was trained with charge; "
                                             "else neutral only",
                       source="your .ckpt file (torchmd-net 3.1.0 Lightning checkpoint, TensorNet)",
                       licence="that of the file you give", file=None, url=None),
    "aceff-1.0": dict(elements=None, charge=_ACEFF_CHARGE, source=_ACEFF_SOURCE, licence=_ACEFF_LICENCE,
                      file="aceff_v1.0.ckpt", url="https://huggingface.co/Acellera/AceFF-1.0"),
    "aceff-1.1": dict(elements=None, charge=_ACEFF_CHARGE, source=_ACEFF_SOURCE, licence=_ACEFF_LICENCE,
                      file="aceff_v1.1.ckpt", url="https://huggingface.co/Acellera/AceFF-1.1"),
}

#: The energy units ``energyUnit=`` accepts, in kJ/mol.  Hartree: CODATA 2018, 4.3597447222071e-18 J
#: times N_A = 6.02214076e23 / mol.
ENERGY_UNITS = {"ev": EV_TO_KJ_PER_MOL, "kcal/mol": KCAL_TO_KJ, "kj/mol": 1.0,
                "hartree": 4.3597447222071e-18 * 6.02214076e23 / 1000.0}

#: nm -> Angstrom.
_NM_TO_ANGSTROM = 10.0

_DTYPES = {"single": torch.float32, "double": torch.float64}


def _importTorchmdnet():
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # warp prints its set-up; torchmd-net warns about optional extras
            from torchmdnet.models import model as tmdModel
    except ImportError as error:
        raise ImportError("Reading a TorchMD-Net checkpoint needs torchmd-net: pip install torchmd-net==3.1.0") \
            from error
    return tmdModel


def _readCheckpoint(path, trustFile):
    """The checkpoint as a dict, read with weights_only=True unless trustFile."""
    if trustFile:
        return torch.load(path, map_location="cpu", weights_only=False)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # UnpicklingError, or the error of a non-tensor global
        raise ValueError(f"'{path}' holds pickled objects beyond tensors and plain containers, which "
                         f"torch.load(weights_only=True) refuses ({str(error).splitlines()[0]}). If you trust the "
                         "file, pass trustFile=True (modelArgs={'trustFile': True}): loading runs code from the "
                         "file: load only files you trust.") from None


def _libraryModel(checkpoint):
    """torchmd-net's TorchMD_Net built by load_model from the checkpoint's hyperparameters and state.

    load_model reads its argument with torch.load(weights_only=False); it is given a copy holding
    only the hyperparameters and the state dict (already read), so nothing else of the file runs."""
    tmdModel = _importTorchmdnet()
    if not isinstance(checkpoint, dict) or "hyper_parameters" not in checkpoint or "state_dict" not in checkpoint:
        raise ValueError("not a torchmd-net checkpoint: it has no 'hyper_parameters' and 'state_dict'")
    hparams = dict(checkpoint["hyper_parameters"])
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model.ckpt")
        torch.save({"hyper_parameters": hparams, "state_dict": checkpoint["state_dict"]}, path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = tmdModel.load_model(path, derivative=False, static_shapes=True)
    return model.eval(), hparams


def _check(model, hparams, label):
    from torchmdnet import priors
    from torchmdnet.models import output_modules
    if hparams.get("model") != "tensornet":
        raise ValueError(f"{label}: the checkpoint's model is {hparams.get('model')!r}; this adapter serves TensorNet "
                         "checkpoints (model: tensornet) only.")
    if hparams.get("atom_filter", -1) > -1:
        raise ValueError(f"{label}: the checkpoint uses atom_filter={hparams['atom_filter']}; not supported here.")
    if type(model.output_model) is not output_modules.Scalar:
        raise ValueError(f"{label}: the checkpoint's output model is {type(model.output_model).__name__}; only Scalar "
                         "(an energy) is supported.")
    if model.output_model.reduce_op not in ("add", "sum", "mean"):
        raise ValueError(f"{label}: reduce_op {model.output_model.reduce_op!r} is not supported.")
    for prior in (model.prior_model or []):
        if type(prior) not in (priors.Atomref, priors.atomref.LearnableAtomref):
            raise ValueError(f"{label}: the checkpoint has a {type(prior).__name__} prior; only Atomref is supported.")
    if getattr(model.representation_model, "extra_energy", None) is not None:
        raise ValueError(f"{label}: the representation adds extra energy terms; not supported.")


def coveredElements(model):
    """The atomic numbers a torchmd-net TensorNet model covers.

    Those below the embedding's ``max_z``; if the model has an Atomref prior with any nonzero
    entry (the per-element reference energies of its training data), only the elements whose
    entry is nonzero: an element the data set did not hold has none.

    Parameters
    ----------
    model : torchmdnet.models.model.TorchMD_Net

    Returns
    -------
    list of int
    """
    maxZ = model.representation_model.tensor_embedding.emb.num_embeddings
    covered = set(range(1, maxZ))
    for prior in (model.prior_model or []):
        table = prior.atomref.weight.detach().reshape(-1)
        if bool((table != 0).any()):
            covered &= {z for z in range(len(table)) if float(table[z]) != 0.0}
    return sorted(covered)


def create(topology, atoms, name="torchmdnet", modelPath=None, charge=0, precision=None, **options):
    """A TorchMD-Net TensorNet model (nm in, kJ/mol out) for the region ``atoms`` of ``topology``.

    The checkpoint is read with ``torch.load(weights_only=True)``; one that holds other pickled
    objects is refused unless ``trustFile=True``, with which loading runs code from the file:
    load only files you trust.

    Parameters
    ----------
    topology : openmm.app.Topology
        The System's topology; the region's elements are read from it.
    atoms : sequence of int
        The ML region, in the order the model sees the atoms.
    name : str
        ``'torchmdnet'`` (your checkpoint, ``modelPath``), ``'aceff-1.0'`` or ``'aceff-1.1'``
        (their ``.ckpt`` under the weights root, or ``modelPath``).  openmm-ml's ``'aceff-2.0'`` is
        a TensorNet2 checkpoint, which this adapter does not serve (not a name here; its file is
        refused).
    modelPath : str or os.PathLike, optional
        The ``.ckpt`` file (a torchmd-net 3.1.0 Lightning checkpoint).
    charge : int
        The region's total charge in e.  Passed to the model when its checkpoint was trained with a
        total charge (``charge: true``); otherwise a nonzero charge is warned about and the region is
        treated as neutral.
    precision : {None, 'single', 'double'}
        The dtype the model runs in; None: that of the checkpoint (``precision: 32`` or ``64``;
        16 runs in float32).
    **options
        ``energyUnit`` (``'eV'`` by default; ``'kcal/mol'``, ``'kJ/mol'``, ``'Hartree'``): the
        unit of the training energies, which the checkpoint does not record.  ``trustFile``
        (False): load a checkpoint that ``weights_only=True`` refuses.

    Returns
    -------
    TensorNetModule

    Raises
    ------
    FileNotFoundError
        No file given, or it does not exist (the message says where to get it).
    ValueError
        A region atom's element is not covered, the checkpoint is not a TensorNet one, or an
        option is wrong.
    ImportError
        torchmd-net is not installed.
    """
    key = name.lower()
    if key not in NAMES:
        raise ValueError(f"torchmdnet.create: unknown name {name!r}; this module serves {', '.join(NAMES)}.")
    unknown = set(options) - {"energyUnit", "trustFile"}
    if unknown:
        raise TypeError(f"torchmdnet.create: unknown options {', '.join(sorted(unknown))}; it takes energyUnit and "
                        "trustFile.")
    if precision is not None and precision not in _DTYPES:
        raise ValueError(f"torchmdnet.create: precision must be None, 'single' or 'double', not {precision!r}.")
    unit = str(options.get("energyUnit", "eV")).lower()
    if unit not in ENERGY_UNITS:
        raise ValueError(f"torchmdnet.create: energyUnit must be one of eV, kcal/mol, kJ/mol, Hartree; not "
                         f"{options['energyUnit']!r}.")
    if int(charge) != charge:
        raise ValueError(f"torchmdnet.create: charge must be a whole number of e, not {charge!r}.")
    path = modelFile(key, modelPath, NAMES[key]["file"], NAMES[key]["url"])
    _importTorchmdnet()  # before reading the file: the ImportError says what to install
    checkpoint = _readCheckpoint(path, bool(options.get("trustFile", False)))
    label = f"the TorchMD-Net model in '{path}'"
    hparams = checkpoint.get("hyper_parameters", {}) if isinstance(checkpoint, dict) else {}
    if isinstance(hparams, dict) and hparams.get("model") in ("tensornet2", "tensornetv2_alt", "tensornet-nqe"):
        raise ValueError(f"{label} is a TensorNet2 model; this adapter serves TensorNet (model: tensornet) only.")
    library, hparams = _libraryModel(checkpoint)
    _check(library, hparams, label)
    numbers = requireElements(topology, atoms, coveredElements(library), label)
    takesCharge = bool(hparams.get("charge", False))
    if not takesCharge and charge != 0:
        warnings.warn(f"{label} was trained without a total charge input, so it treats the region (charge "
                      f"{int(charge)}) as neutral.")
    if precision is None:
        dtype = torch.float64 if int(hparams.get("precision", 32)) == 64 else torch.float32
    else:
        dtype = _DTYPES[precision]
    return TensorNetModule(library, numbers, float(charge) if takesCharge else 0.0, dtype, ENERGY_UNITS[unit])


# ---------------------------------------------------------------------------------------------
# TensorNet's tensor algebra on [n, 3, 3, F] tensors (channels last), as torchmd-net's pure-PyTorch path.

def _eyeTensor(I: Tensor) -> Tensor:
    return I[:, None, None, :] * torch.eye(3, 3, device=I.device, dtype=I.dtype)[None, :, :, None]


def _decompose(X: Tensor):
    A = 0.5 * (X - X.transpose(1, 2))
    I = X.diagonal(dim1=1, dim2=2).mean(-1)
    S = X - A - _eyeTensor(I)
    return I, A, S


def _compose(I: Tensor, A: Tensor, S: Tensor) -> Tensor:
    return _eyeTensor(I) + A + S


def _norm(X: Tensor) -> Tensor:
    return (X ** 2).sum((1, 2))


def _skew(v: Tensor) -> Tensor:
    """[n, 3, F] -> the skew tensor [n, 3, 3, F]."""
    zero = torch.zeros_like(v[:, 0, :])
    return torch.stack((zero, -v[:, 2, :], v[:, 1, :], v[:, 2, :], zero, -v[:, 0, :], -v[:, 1, :], v[:, 0, :], zero),
                       dim=1).view(v.shape[0], 3, 3, v.shape[2])


def _unskew(A: Tensor) -> Tensor:
    a = A.flatten(1, 2)
    return 0.5 * torch.stack((a[:, 7, :] - a[:, 5, :], a[:, 2, :] - a[:, 6, :], a[:, 3, :] - a[:, 1, :]), dim=1)


def _symmetricTraceless(X: Tensor) -> Tensor:
    S = 0.5 * (X + X.transpose(1, 2))
    return S - _eyeTensor(X.diagonal(dim1=1, dim2=2).mean(-1))


def _matmul(X: Tensor, Y: Tensor) -> Tensor:
    """The 3x3 product per atom and channel: sum_k X[:, a, k] Y[:, k, b], as broadcast products (a
    batched matmul of n F 3x3 matrices is far slower on the CPU)."""
    return (X.unsqueeze(3) * Y.unsqueeze(1)).sum(2)


class _Interaction(torch.nn.Module):
    """One TensorNet interaction layer on dense pairs, with the library layer's parameters."""

    def __init__(self, layer, sameCutoff: bool):
        super().__init__()
        self.cutoff = layer.cutoff
        self.linearsScalar = torch.nn.ModuleList(list(layer.linears_scalar))
        self.linearsTensor = torch.nn.ModuleList(list(layer.linears_tensor))
        self.act = layer.act
        self.hidden = int(layer.hidden_channels)
        self.o3 = layer.equivariance_invariance_group == "O(3)"
        self.sameCutoff = sameCutoff
        # xx, yy, zz, xy, xz, yz of a flattened 3x3, and the 9 entries from those 6.
        self.register_buffer("sym6", torch.tensor([0, 4, 8, 1, 2, 5], dtype=torch.long))
        self.register_buffer("sym9", torch.tensor([0, 3, 4, 3, 1, 5, 4, 5, 2], dtype=torch.long))

    def forward(self, X: Tensor, r: Tensor, rbf: Tensor, cut: Tensor, q: Tensor) -> Tensor:
        n = X.shape[0]
        factor = rbf
        for linear in self.linearsScalar:
            factor = self.act(linear(factor))
        if self.sameCutoff:
            envelope = cut
        else:
            envelope = self.cutoff(r)
        factor = (factor * envelope.unsqueeze(-1)).reshape(n, n, 3, self.hidden)
        X = X / (_norm(X) + 1)[:, None, None, :]
        I, A, S = _decompose(X)
        # The channel mixings (linear, no bias) on the independent components only: A's 3 (its
        # vector) and S's 6 (it is symmetric), the full tensors rebuilt from them.
        I = self.linearsTensor[0](I)
        a = self.linearsTensor[1](_unskew(A))
        s6 = self.linearsTensor[2](S.flatten(1, 2).index_select(1, self.sym6))
        Y = _compose(I, _skew(a), s6.index_select(1, self.sym9).view(n, 3, 3, self.hidden))
        # Messages from every j to i, weighted by the pair factors (0 beyond the cutoff): products
        # broadcast over the pairs and summed over j (an einsum here is a batched matmul of F small
        # matrices, which the CPU runs one by one, with a copy each).
        factors = factor.unbind(2)  # (its backward is a stack, not zero-filled slices)
        Im = (factors[0] * I[None, :, :]).sum(1)
        # A and S carry their messages as their 3 and 6 independent components (less data, which
        # keeps the [n, n, 6, F] product in cache).
        Am = _skew((factors[1].unsqueeze(2) * a[None, :, :, :]).sum(1))
        Sm = (factors[2].unsqueeze(2) * s6[None, :, :, :]).sum(1).index_select(1, self.sym9).view(n, 3, 3, self.hidden)
        msg = _compose(Im, Am, Sm)
        scale = (1 + 0.1 * q)[:, None, None, None]
        if self.o3:
            C = scale * (_matmul(msg, Y) + _matmul(Y, msg))
        else:
            C = 2 * _matmul(Y, msg)
        I, A, S = _decompose(C)
        normp1 = _norm(C) + 1
        I = self.linearsTensor[3](I / normp1)
        a = self.linearsTensor[4](_unskew(A) / normp1[:, None, :])
        s6 = self.linearsTensor[5](S.flatten(1, 2).index_select(1, self.sym6) / normp1[:, None, :])
        dX = _compose(I, _skew(a), s6.index_select(1, self.sym9).view(n, 3, 3, self.hidden))
        return X + dX + scale * _matmul(dX, dX)


class TensorNetModule(torch.nn.Module):
    """A TorchMD-Net TensorNet checkpoint on a fixed region, with static shapes (nm in, kJ/mol out).

    Built by :func:`create`; see the module docstring for what it computes and why it does not
    call torchmd-net's own forward.

    Parameters
    ----------
    library : torchmdnet.models.model.TorchMD_Net
        The model torchmd-net built from the checkpoint (TensorNet, Scalar output, Atomref priors
        only); its layers are copied, converted to ``dtype``.
    atomicNumbers : sequence of int
        The region's elements, in order.
    charge : float
        The total charge passed to TensorNet's ``q`` (0 for a model trained without one).
    dtype : torch.dtype
        float32 or float64: the dtype the network runs in.
    energyScale : float
        The training energy unit in kJ/mol.
    """

    def __init__(self, library, atomicNumbers, charge: float, dtype, energyScale: float):
        super().__init__()
        library = copy.deepcopy(library).to(dtype)
        for parameter in library.parameters():
            parameter.requires_grad_(False)
        rep = library.representation_model
        emb = rep.tensor_embedding
        n = len(atomicNumbers)
        self.dtype = dtype
        self.register_buffer("z", torch.tensor(list(atomicNumbers), dtype=torch.long))
        self.register_buffer("q", torch.full((n,), float(charge), dtype=dtype))
        self.register_buffer("eye", torch.eye(n, dtype=dtype))
        self.rbf = rep.distance_expansion
        self.cutoff = emb.cutoff
        # The pair embedding emb2(emb(z_i), emb(z_j)) depends on the elements only: computed once.
        with torch.no_grad():
            Z = emb.emb(self.z)
            pairs = torch.cat((Z[:, None, :].expand(n, n, Z.shape[1]), Z[None, :, :].expand(n, n, Z.shape[1])), -1)
            self.register_buffer("Zij", emb.emb2(pairs).detach().clone())
        # The three radial projections as one linear layer (their weights stacked).
        projections = [emb.distance_proj1, emb.distance_proj2, emb.distance_proj3]
        self.projection = torch.nn.Linear(projections[0].in_features, 3 * projections[0].out_features, dtype=dtype)
        with torch.no_grad():
            self.projection.weight.copy_(torch.cat([p.weight for p in projections], 0))
            self.projection.bias.copy_(torch.cat([p.bias for p in projections], 0))
        self.projection.requires_grad_(False)
        self.initNorm = emb.init_norm
        self.embeddingScalar = torch.nn.ModuleList(list(emb.linears_scalar))
        self.embeddingTensor = torch.nn.ModuleList(list(emb.linears_tensor))
        self.embeddingAct = emb.act
        same = [(layer.cutoff.cutoff_lower, layer.cutoff.cutoff_upper) == (emb.cutoff.cutoff_lower,
                                                                          emb.cutoff.cutoff_upper)
                for layer in rep.layers]
        self.layers = torch.nn.ModuleList([_Interaction(layer, s) for layer, s in zip(rep.layers, same)])
        self.linear = rep.linear
        self.outNorm = rep.out_norm
        self.act = rep.act
        self.hidden = int(rep.hidden_channels)
        self.outputNetwork = library.output_model.output_network
        self.meanReduce = library.output_model.reduce_op == "mean"
        self.register_buffer("std", library.std.detach().clone().reshape(()))
        self.register_buffer("shift", library.mean.detach().clone().reshape(()))
        refs = [p.atomref.weight.detach()[self.z, 0] for p in (library.prior_model or []) if p.enable]
        reference = torch.stack(refs).sum(0) if refs else torch.zeros(n, dtype=dtype)
        self.register_buffer("reference", reference.to(dtype))
        self.energyScale = float(energyScale)
        self.lengthScale = _NM_TO_ANGSTROM

    def _embed(self, unit: Tensor, rbf: Tensor, cut: Tensor) -> Tensor:
        n = unit.shape[0]
        CZ = cut.unsqueeze(-1) * self.Zij
        projected = self.projection(rbf).reshape(n, n, 3, self.hidden).unbind(2)
        factors = [CZ * p for p in projected]
        I = factors[0].sum(1)
        # Sums over j as matmuls batched over i: [n, 3, n] @ [n, n, F], [n, 9, n] @ [n, n, F].
        A = _skew(torch.matmul(unit.transpose(1, 2), factors[1]))
        outer = (unit[:, :, :, None] * unit[:, :, None, :]).reshape(n, n, 9)
        S = _symmetricTraceless(torch.matmul(outer.transpose(1, 2), factors[2]).view(n, 3, 3, self.hidden))
        X = _compose(I, A, S)
        norm = self.initNorm(_norm(X))
        for linear in self.embeddingScalar:
            norm = self.embeddingAct(linear(norm))
        norm = norm.reshape(n, 3, self.hidden)
        I = self.embeddingTensor[0](I) * norm[:, 0, :]
        A = self.embeddingTensor[1](A) * norm[:, 1, None, None, :]
        S = self.embeddingTensor[2](S) * norm[:, 2, None, None, :]
        return _compose(I, A, S)

    def atomicEnergies(self, positions: Tensor) -> Tensor:
        """The atoms' energies in the training unit, ``[n]``, in the model's dtype (positions in Angstrom)."""
        d = positions[:, None, :] - positions[None, :, :]  # pair (i, j): x_i - x_j, as torchmd-net's
        # |d| with an exact 0 and a zero gradient on the diagonal (the self pairs TensorNet includes).
        r = torch.sqrt((d * d).sum(-1) + self.eye) - self.eye
        unit = d / (r + self.eye).unsqueeze(-1)
        rbf = self.rbf(r)
        cut = self.cutoff(r)
        X = self._embed(unit, rbf, cut)
        for layer in self.layers:
            X = layer(X, r, rbf, cut, self.q)
        I, A, S = _decompose(X)
        x = torch.cat((3 * I ** 2, _norm(A), _norm(S)), dim=-1)
        x = self.act(self.linear(self.outNorm(x)))
        return self.outputNetwork(x).squeeze(-1) * self.std + self.reference

    def forward(self, positions: Tensor, box: Optional[Tensor] = None) -> Tensor:
        """The model's energy of the region.

        Parameters
        ----------
        positions : torch.Tensor
            ``[n, 3]`` in nm, float32 or float64 (converted to the model's dtype).  The region must
            be whole.
        box : torch.Tensor, optional
            Ignored (the region is not periodic); accepted so that the model can be used with a
            periodic :class:`~openmmhybrid.MLForce`, which makes the region whole first.

        Returns
        -------
        torch.Tensor
            The energy in kJ/mol, a float64 scalar (0-dim).
        """
        energies = self.atomicEnergies(positions.to(self.dtype) * self.lengthScale)
        energy = energies.mean() if self.meanReduce else energies.sum()
        return (energy + self.shift).to(torch.float64) * self.energyScale
