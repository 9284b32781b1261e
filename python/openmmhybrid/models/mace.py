"""MACE models (mace-torch ``.model`` files: MACE-OFF23/24 and user-trained ``MACE`` and
``ScaleShiftMACE``) as static-shape modules for :class:`openmmhybrid.MLForce`.

:func:`create` loads a mace-torch ``.model`` file, compiles the MACE model to TorchScript with
e3nn's ``e3nn.util.jit.compile`` (what mace-torch itself uses; plain ``torch.jit.script`` of a
MACE model fails on e3nn's ``Activation``), and wraps it in :class:`MACEModel`, which builds
MACE's input (``positions``, the one-hot ``node_attrs``, ``edge_index``, ``shifts``, ``batch``,
``ptr``, ``cell`` and ``head``) from buffers fixed at set-up.  It takes positions in nm and returns kJ/mol, the
contract of :class:`openmmhybrid.MLForce`.

Neighbours: the graph's edges are the ordered pairs of distinct region atoms within the model's
cutoff ``r_max`` plus a skin (:data:`SKIN`), packed into a buffer of fixed capacity with a prefix
sum and a scatter (no ``nonzero()``, no boolean-mask indexing), in a fixed order (that of the
pairs).  The free slots hold padding edges: atom 0 to itself with the edge shift ``(2 r_max, 0,
0)``, so an edge vector of exactly that length, beyond the cutoff, whatever the positions.  An
edge at or beyond ``r_max`` adds exactly zero, with zero gradient, because MACE multiplies every
edge's contribution by its polynomial cutoff envelope, which is ``envelope(r) * (r < r_max)`` (with
the default ``apply_cutoff=True`` it multiplies the radial features, which every supported
interaction block passes through a bias-free MLP with ``silu(0) = 0``; with
``apply_cutoff=False`` it multiplies each block's weights); so the padding and the pairs of the
skin change nothing, and the skin keeps a pair that this module's distance and MACE's round to
opposite sides of ``r_max`` in the graph.  :func:`create` checks that the file's interaction
blocks are ones for which this holds and refuses others.

The capacity is set on the first evaluation (the number of pairs within the cutoff, plus 25%
headroom on a GPU, 12.5% on the CPU) and, on the CPU, checked and grown at every evaluation, so no
pair is ever dropped; on a GPU it is checked on the first evaluation only (no host synchronization
afterwards, so a CUDA graph can capture the evaluation), and an evaluation with more pairs than the
capacity returns NaN, which MLForce reports as an error: :meth:`MACEModel.setCapacity` makes room
beforehand for a region that may become denser.  Cost: the edges within the cutoff, plus
``n (n - 1)`` distances to choose them from.

Energy: the model's total energy, the interaction energy plus the atomic reference energies
(E0s), which is the ``energy`` that MACE's ASE calculator reports, in eV, converted to kJ/mol.
The interaction energy is computed in the model's dtype; the E0s are summed in float64 from the
file's values at set-up and added in float64, so that a float32 model does not lose the total
energy's last digits to the large E0s (the forces are the same either way).

File formats and safety: a mace-torch ``.model`` file is ``torch.save`` of the whole
``torch.nn.Module`` (a pickle), which ``torch.load(..., weights_only=True)`` cannot read; it is
loaded with ``weights_only=False``, and **loading runs code from the file: load only files you
trust**.  No MACE format holds the weights alone with the architecture (a training checkpoint
``.pt`` holds a state dict without the hyper-parameters needed to rebuild the model), so no
format here loads with ``weights_only=True``.

mace-torch (``pip install mace-torch``; tested with 0.3.16 and e3nn 0.6.0) is needed to build the
module; it is imported only by :func:`create`.  The scripted module that MLForce stores in the
System runs without Python, and ``torch.jit.load`` of it needs neither mace nor e3nn.
"""
import math
import os
import warnings
from typing import Dict, List, Optional

import torch
from torch import Tensor

from . import EV_TO_KJ_PER_MOL, modelFile, packedIndices, requireElements

__all__ = ["NAMES", "create", "MACEModel", "loadMACE"]

#: Angstrom per nm (MACE's length unit is the Angstrom).
ANGSTROM_PER_NM = 10.0

#: Angstrom added to the cutoff ``r_max`` when the edges are chosen (see the module docstring).
SKIN = 0.05

_ASL = "Academic Software License (ASL, github.com/gabor1/ASL): no commercial use"
_MACE_OFF_ELEMENTS = ["H", "C", "N", "O", "F", "P", "S", "Cl", "Br", "I"]
_MACE_OFF_SOURCE = "MACE-OFF (github.com/ACEsuit/mace-off), a mace-torch .model file you download"
_MACE_OFF23 = "https://raw.githubusercontent.com/ACEsuit/mace-off/main/mace_off23/"

#: The names this module serves.  The MACE-OFF elements are those the MACE-OFF papers give; the
#: file's ``atomic_numbers`` are what :func:`create` checks.
NAMES = {
    "mace": dict(elements=None, charge="neutral only (no charge input)",
                 source="your .model file (mace-torch)", licence="that of the file you give", file=None, url=None),
    "mace-off23-small": dict(elements=_MACE_OFF_ELEMENTS, charge="neutral only (no charge input)",
                             source=_MACE_OFF_SOURCE, licence=_ASL, file="MACE-OFF23_small.model",
                             url=_MACE_OFF23 + "MACE-OFF23_small.model"),
    "mace-off23-medium": dict(elements=_MACE_OFF_ELEMENTS, charge="neutral only (no charge input)",
                              source=_MACE_OFF_SOURCE, licence=_ASL, file="MACE-OFF23_medium.model",
                              url=_MACE_OFF23 + "MACE-OFF23_medium.model"),
    "mace-off23-large": dict(elements=_MACE_OFF_ELEMENTS, charge="neutral only (no charge input)",
                             source=_MACE_OFF_SOURCE, licence=_ASL, file="MACE-OFF23_large.model",
                             url=_MACE_OFF23 + "MACE-OFF23_large.model"),
    "mace-off24-medium": dict(elements=_MACE_OFF_ELEMENTS, charge="neutral only (no charge input)",
                              source=_MACE_OFF_SOURCE, licence=_ASL, file="MACE-OFF24_medium.model",
                              url="https://github.com/ACEsuit/mace-off/blob/main/mace_off24/MACE-OFF24_medium.model"
                                  "?raw=true"),
}

# Interaction blocks whose edge terms all pass through the radial features or the cutoff (so
# that an edge beyond r_max adds exactly zero) when the radial features carry the cutoff
# (apply_cutoff=True): their weight and density MLPs take only the radial features, have no
# biases, and silu(0) = tanh(0) = 0.  The others (the attention and non-linear blocks) also feed
# node features into those MLPs and are exact only with apply_cutoff=False, where every block
# multiplies its weights by the cutoff.
_RADIAL_ONLY_BLOCKS = ("RealAgnosticInteractionBlock", "RealAgnosticResidualInteractionBlock",
                       "RealAgnosticDensityInteractionBlock", "RealAgnosticDensityResidualInteractionBlock")
_ALL_BLOCKS = _RADIAL_ONLY_BLOCKS + ("RealAgnosticAttResidualInteractionBlock",
                                     "RealAgnosticResidualNonLinearInteractionBlock")
_SUPPORTED_MODELS = ("MACE", "ScaleShiftMACE")

# How forward gets the energy without the E0s from MACE's output.
_INTERACTION_ENERGY, _CONTRIBUTIONS = 0, 1


def _importMACE():
    """Import mace-torch, undoing what its import does to the process: ``mace/__init__.py`` sets
    ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``, which makes every later ``torch.load`` that does not
    pass ``weights_only`` unpickle arbitrary code.  The variable is put back as it was."""
    before = os.environ.get(_NO_WEIGHTS_ONLY)
    try:
        import mace.modules  # noqa: F401
        from e3nn.util import jit  # noqa: F401
    except ImportError as error:
        raise ImportError(f"The MACE models need mace-torch: pip install mace-torch (import failed: {error}).") from None
    finally:
        if before is None:
            os.environ.pop(_NO_WEIGHTS_ONLY, None)
        else:
            os.environ[_NO_WEIGHTS_ONLY] = before


_NO_WEIGHTS_ONLY = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"


def loadMACE(path):
    """Load a mace-torch ``.model`` file (``torch.save`` of the whole model) on the CPU.

    **Loading runs code from the file** (``torch.load(..., weights_only=False)``: the format is a
    pickle of the module, which ``weights_only=True`` cannot read): load only files you trust.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    mace.modules.MACE
        The model, in evaluation mode, in the dtype it was saved in.

    Raises
    ------
    ImportError
        mace-torch is not installed.
    ValueError
        The file is not a mace-torch model file.
    """
    _importMACE()
    try:
        model = torch.load(os.fspath(path), map_location="cpu", weights_only=False)
    except Exception as error:
        raise ValueError(f"'{path}' is not a mace-torch .model file torch.load can read: "
                         f"{str(error).splitlines()[0] if str(error) else type(error).__name__}") from None
    if not isinstance(model, torch.nn.Module) or not hasattr(model, "atomic_numbers"):
        raise ValueError(f"'{path}' holds a {type(model).__name__}, not a mace-torch model (torch.save of the model, "
                         "as mace-torch's training writes to <name>.model)")
    return model.eval()


def create(topology, atoms, name="mace", modelPath=None, charge=0, precision=None, head=None, **options):
    """A :class:`MACEModel` for the region ``atoms`` of ``topology`` from a mace-torch ``.model`` file.

    **Loading runs code from the file** (a ``.model`` file is a pickle of the whole module, read
    with ``torch.load(..., weights_only=False)``): load only files you trust.

    Parameters
    ----------
    topology : openmm.app.Topology
        The System's topology; the region's elements are read from it.
    atoms : sequence of int
        The ML region, in the order the model sees the atoms.
    name : str
        ``"mace"`` (the file is ``modelPath``) or a MACE-OFF name of :data:`NAMES`
        (``"mace-off23-small"``, ...: ``modelPath``, or the canonical file under the weights root).
    modelPath : str or os.PathLike, optional
        The mace-torch ``.model`` file (required for ``"mace"``).
    charge : int
        The region's total charge in e.  No supported MACE model takes one (MACE-OFF has no
        charge input; models with mace-torch's charge and spin embedding cannot be compiled to
        TorchScript and are refused), so a non-zero charge warns that the region is treated as
        neutral.
    precision : {None, "single", "double"}
        The dtype the model runs in: None (default) the dtype of the file's parameters (MACE-OFF
        ships float64), or float32 / float64.  Positions are cast to it; the energy is float64.
    head : str, optional
        The readout head of a multi-head model; by default the only head, or the one named
        ``default`` (as MACE's calculator chooses).
    **options
        None are accepted (a TypeError names any given).

    Returns
    -------
    MACEModel

    Raises
    ------
    FileNotFoundError
        No file given for ``"mace"``, a file that does not exist, or a MACE-OFF file not installed.
    ValueError
        An element of the region the model does not cover (naming the atom), a model class,
        interaction block or extra input (charge and spin embeddings) this module does not
        support, or an unknown head or precision.
    ImportError
        mace-torch is not installed.
    """
    if options:
        raise TypeError(f"mace.create: unexpected option(s) {', '.join(sorted(options))}; it takes modelPath, charge, "
                        "precision and head")
    key = name.lower()
    if key not in NAMES:
        raise ValueError(f"mace.create: unknown model name {name!r}; this module serves {', '.join(NAMES)}")
    if precision not in (None, "single", "double"):
        raise ValueError(f"mace.create: precision must be None, 'single' or 'double', not {precision!r}")
    path = modelFile(key, modelPath, NAMES[key]["file"], NAMES[key]["url"])
    model = loadMACE(path)
    label = f"the MACE model in '{path}'"
    if type(model).__name__ not in _SUPPORTED_MODELS:
        raise ValueError(f"{label} is a {type(model).__name__}; only energy models (MACE, ScaleShiftMACE) are supported")
    covered = [int(z) for z in model.atomic_numbers]
    numbers = requireElements(topology, atoms, covered, label)
    species = [covered.index(z) for z in numbers]
    _checkCutoffIsExact(model, covered, label)

    heads = list(getattr(model, "heads", None) or ["Default"])
    if head is None:
        defaults = [h for h in heads if h.lower() == "default"]
        if len(heads) > 1 and not defaults:
            raise ValueError(f"{label} has the heads {', '.join(heads)} and none is 'default'; choose one: "
                             "modelArgs={'head': ...}")
        headIndex = 0 if len(heads) == 1 else heads.index(defaults[0])
    elif head in heads:
        headIndex = heads.index(head)
    else:
        raise ValueError(f"{label} has no head {head!r}; it has {', '.join(heads)}")

    # The E0s in float64, from the file's values, before any cast to float32.
    e0 = torch.atleast_2d(model.atomic_energies_fn.atomic_energies.detach().to(torch.float64))
    referenceEnergy = math.fsum(float(e0[headIndex if e0.shape[0] > 1 else 0, s]) for s in species)

    _checkCharge(model, charge, label)
    dtype = {None: next(model.parameters()).dtype, "single": torch.float32, "double": torch.float64}[precision]
    model = model.to(dtype)
    mode = _INTERACTION_ENERGY if type(model).__name__ == "ScaleShiftMACE" else _CONTRIBUTIONS
    compiled = _compile(model, dtype)
    return MACEModel(compiled, species, len(covered), dtype, headIndex, referenceEnergy, mode, float(model.r_max))


def _checkCutoffIsExact(model, covered, label):
    """Raise ValueError unless every edge beyond r_max adds exactly zero (see the module docstring)."""
    applyCutoff = getattr(model.radial_embedding, "apply_cutoff", True)
    allowed = _RADIAL_ONLY_BLOCKS if applyCutoff else _ALL_BLOCKS
    for block in model.interactions:
        kind = type(block).__name__
        if kind not in allowed:
            raise ValueError(f"{label} uses the interaction block {kind}"
                             + (" with apply_cutoff=True" if kind in _ALL_BLOCKS else "")
                             + "; this module pads its fixed-capacity edge list with edges beyond the cutoff and "
                               "supports only blocks whose edges beyond the cutoff add exactly zero "
                               f"({', '.join(allowed)})")
    if hasattr(model, "pair_repulsion"):
        radii = model.pair_repulsion_fn.covalent_radii
        reach = 2 * max(float(radii[z]) for z in covered)
        if reach > float(model.r_max):
            raise ValueError(f"{label}: its ZBL repulsion reaches {reach:.2f} Angstrom, beyond its cutoff "
                             f"{float(model.r_max):.2f} Angstrom, which MACE's neighbour list would cut; not supported")


def _checkCharge(model, charge, label):
    """Refuse a model with extra graph inputs (mace-torch cannot compile them); warn about a charge
    the model cannot take."""
    if getattr(model, "embedding_specs", None):
        raise ValueError(f"{label} takes the inputs {', '.join(model.embedding_specs)} through mace-torch's "
                         "GenericJointEmbedding, which mace-torch 0.3.16 cannot compile to TorchScript (its specs are a "
                         "dict of mixed types); MLForce runs models only as TorchScript, so it is not supported")
    if charge != 0:
        warnings.warn(f"{label} has no total-charge input and treats the ML region (charge {charge}) as neutral.",
                      stacklevel=3)


def _compile(model, dtype):
    """MACE's TorchScript compilation (e3nn's jit.compile, which traces the blocks it marks for
    tracing with inputs of the default dtype: the model's)."""
    from e3nn.util import jit
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with warnings.catch_warnings():
            # torch 2.10+ deprecates torch.jit.script, which e3nn calls: not the user's concern.
            warnings.filterwarnings("ignore", message=".*torch.jit.*", category=DeprecationWarning)
            return jit.compile(model)
    finally:
        torch.set_default_dtype(previous)


def _tracing() -> bool:
    """Whether the module is being traced for export (compileModel): then the graph takes every
    pair, since a capacity read from the example positions would not hold for others."""
    from torch.fx.experimental.proxy_tensor import get_proxy_mode
    return bool(torch.compiler.is_compiling() or get_proxy_mode() is not None)


class MACEModel(torch.nn.Module):
    """A compiled MACE model on a fixed list of atoms, static shapes (nm in, kJ/mol out).

    Built by :func:`create`; see the module docstring for the neighbours (a fixed-capacity list of
    the pairs within the cutoff), the energy and the precision.

    Parameters
    ----------
    model : torch.jit.ScriptModule
        The MACE model compiled by ``e3nn.util.jit.compile``, in ``dtype``.
    species : list of int
        The index of each region atom's element in the model's ``atomic_numbers``.
    numElements : int
        The number of elements the model covers (the width of ``node_attrs``).
    dtype : torch.dtype
        The dtype the model runs in.
    headIndex : int
        The readout head.
    referenceEnergy : float
        The sum of the region's atomic reference energies (E0s) in eV.
    mode : int
        Where the interaction energy is in MACE's output: 0, ``interaction_energy``
        (``ScaleShiftMACE``); 1, the ``contributions`` after the E0s (``MACE``).
    rMax : float
        The model's cutoff in Angstrom.
    """

    atomicNumbers: List[int]
    cutoff: float
    numPairs: int
    capacity: int
    sized: bool

    def __init__(self, model, species: List[int], numElements: int, dtype: torch.dtype, headIndex: int,
                 referenceEnergy: float, mode: int, rMax: float):
        super().__init__()
        n = len(species)
        self.model = model
        self.dtype = dtype
        self.mode = mode
        self.referenceEnergy = referenceEnergy
        self.evToKJPerMol = EV_TO_KJ_PER_MOL
        self.lengthScale = ANGSTROM_PER_NM
        self.cutoff = float(rMax) + SKIN
        self.numPairs = n * (n - 1)
        self.capacity = 0
        self.sized = False
        self.atomicNumbers = [int(z) for z in model.atomic_numbers[torch.tensor(species, dtype=torch.long)]] \
            if n else []
        self.register_buffer("nodeAttrs", torch.nn.functional.one_hot(torch.tensor(species, dtype=torch.long),
                                                                      numElements).to(dtype))
        index = torch.arange(n)
        sender, receiver = index.repeat_interleave(n), index.repeat(n)
        distinct = sender != receiver
        # Every ordered pair (sender, receiver), the candidates the edges are chosen from.
        self.register_buffer("pairs", torch.stack([sender[distinct], receiver[distinct]]))
        # The shift of a padding edge (atom 0 to itself): its vector, of length 2 r_max.
        self.register_buffer("paddingShift", torch.tensor([2.0 * float(rMax), 0.0, 0.0], dtype=dtype))
        self.register_buffer("batch", torch.zeros(n, dtype=torch.long))
        self.register_buffer("ptr", torch.tensor([0, n], dtype=torch.long))
        self.register_buffer("cell", torch.zeros(3, 3, dtype=dtype))
        self.register_buffer("head", torch.tensor([headIndex], dtype=torch.long))

    @torch.jit.export
    def setCapacity(self, edges: int):
        """Fix the capacity of the edge list (and mark it sized): the most ordered pairs within the
        cutoff (plus skin) an evaluation may have; for a GPU run whose region may become denser
        than at the first evaluation (on the CPU the capacity also grows by itself)."""
        self.capacity = max(0, min(self.numPairs, edges))
        self.sized = True

    def _capacity(self, count: Tensor) -> int:
        """The capacity, after checking (and growing) it against this evaluation's pair count."""
        full = False
        if not torch.jit.is_scripting():
            full = _tracing()
        if full:
            return self.numPairs
        if not count.is_cuda or not self.sized:
            counts: List[int] = count.view(1).tolist()
            if not self.sized or counts[0] > self.capacity:
                # Headroom: 25% on a GPU, where the capacity is fixed from now on; 12.5% on the CPU,
                # where it grows whenever needed (each edge costs the whole model's per-edge work).
                headroom = counts[0] // 4 if count.is_cuda else counts[0] // 8
                self.capacity = min(self.numPairs, max(self.capacity, counts[0] + headroom + 16))
                self.sized = True
        return self.capacity

    def forward(self, positions: Tensor, box: Optional[Tensor] = None) -> Tensor:
        """The model's total energy of the region.

        Parameters
        ----------
        positions : torch.Tensor
            ``[n, 3]`` in nm, any floating dtype (cast to the model's).  The region must be whole.
        box : torch.Tensor, optional
            Ignored (the region is not periodic); accepted so that the model can be used with a
            periodic :class:`~openmmhybrid.MLForce`, which makes the region whole first.

        Returns
        -------
        torch.Tensor
            The energy in kJ/mol, a float64 scalar (0-dim): MACE's interaction energy (in the
            model's dtype) plus the float64 sum of the atomic reference energies; NaN on a GPU
            when the region has more pairs within the cutoff than the capacity (see
            :meth:`setCapacity`).
        """
        x = positions.to(self.dtype) * self.lengthScale
        device = x.device
        # Which pairs are within the cutoff (no gradient: integer bookkeeping).
        with torch.no_grad():
            c = x.detach()
            vectors = c.index_select(0, self.pairs[1]) - c.index_select(0, self.pairs[0])
            inside = (vectors * vectors).sum(-1) < self.cutoff * self.cutoff
            count = inside.sum()
        capacity = self._capacity(count)
        with torch.no_grad():
            # The pairs within the cutoff packed into the first slots, in the pairs' order (a prefix
            # sum and a scatter: no data-dependent shape); the others go to a dropped extra slot.
            slots = packedIndices(inside, capacity, 0)
            used = torch.arange(capacity, device=device) < count
            # The free slots: atom 0 to itself, shifted by paddingShift (beyond r_max).
            edgeIndex = torch.where(used.unsqueeze(0), self.pairs.index_select(1, slots),
                                    torch.zeros((2, capacity), dtype=torch.long, device=device))
            shifts = torch.where(used.unsqueeze(1), torch.zeros((capacity, 3), dtype=x.dtype, device=device),
                                 self.paddingShift.unsqueeze(0))
        data: Dict[str, Tensor] = {
            "positions": x,
            "node_attrs": self.nodeAttrs,
            "edge_index": edgeIndex,
            "shifts": shifts,
            "batch": self.batch,
            "ptr": self.ptr,
            "cell": self.cell,
            "head": self.head,
        }
        out = self.model(data, training=False, compute_force=False)
        if self.mode == 0:  # ScaleShiftMACE
            interaction = out["interaction_energy"]
            assert interaction is not None
            interaction = interaction[0]
        else:  # MACE: its contributions are the E0s, then the pair repulsion and each readout
            contributions = out["contributions"]
            assert contributions is not None
            interaction = contributions[0, 1:].sum()
        energy = (interaction.to(torch.float64) + self.referenceEnergy) * self.evToKJPerMol
        return torch.where(count > capacity, torch.full_like(energy, float("nan")), energy)
