"""AIMNet2 (aimnet 0.2.5) as a static-shape TorchScript module for MLForce: nm in, kJ/mol out.

:func:`create` reads an AIMNet2 model file with aimnet and copies its weights into
:class:`AIMNet2`, the project's own implementation of the AIMNet2 energy for one fixed region
(its atoms, their elements and the total charge fixed at set-up).  aimnet's own forward is not
scriptable (aimnet 0.2.5's ``AIMNet2.forward`` imports modules and uses try/finally) and its
calculator builds neighbour lists with warp / nvalchemi-toolkit-ops, which TorchScript cannot
run; :class:`AIMNet2` instead takes every ordered pair i != j of the region (static shapes, no
``nonzero`` or ``.item()``), which a CUDA graph can capture.

Which terms the energy holds (the same as ``aimnet.calculators.AIMNet2Calculator`` gives for a
molecule without a cell, the calculator's defaults):

- the network: embedding, AEV with its cosine cutoff envelope (rc_s = 5 Angstrom in the
  published models), the message passes with the charge equilibration (NSE) to the total
  charge, the atomic energies and their float64 atomic shifts (self energies), summed in float64;
- ``SRCoulomb`` where the file has it (the short-range Coulomb the network learned, subtracted);
- the full Coulomb energy of the predicted charges over all pairs (the calculator's "simple"
  method; its "dsf", "ewald" and "pme" methods are for periodic cells and are not used), where
  the file's metadata says ``needs_coulomb``;
- DFT-D3(BJ) dispersion without the three-body term, with the file's ``d3_params`` and the
  calculator's default 15 Angstrom cutoff smoothed from 12 Angstrom (a pair beyond it adds
  nothing, neither to the coordination numbers nor to the energy), where the metadata says
  ``needs_dispersion`` (and the post-hoc D3 of the rxn family).

All pairs is exact: the AEV's cosine envelope and SRCoulomb's envelope are exactly zero beyond
their cutoffs, the calculator's "simple" Coulomb itself takes all pairs (no long-range cutoff),
and D3 pairs beyond 15 Angstrom are masked as the calculator's neighbour list drops them.  The
cost is O(n^2) in time and memory (an [n, n, shifts, 4] AEV tensor): meant for a region of tens
to a few hundred atoms.

File formats:

- v2 ``.pt`` (the format of every model in aimnet's registry, and of ``aimnet export`` and
  ``aimnet convert``): read with aimnet's ``load_model``, which calls
  ``torch.load(weights_only=True)`` and builds the network from the file's YAML under aimnet's
  import allow-list.  No code from the file runs.
- legacy TorchScript ``.jpt``: refused.  Loading one (``torch.jit.load``) runs code from the file,
  and its embedded long-range modules predate the ones reproduced here.  Convert it with aimnet's
  own converter (``aimnet convert model.jpt config.yaml model.pt``: that loads it, so do it only
  for a file you trust) and give the ``.pt``.

Units: aimnet works in Angstrom and eV; positions are multiplied by 10 (nm -> Angstrom) and the
energy by :data:`~openmmhybrid.models.EV_TO_KJ_PER_MOL`.  aimnet is needed only in
:func:`create` (``pip install aimnet``); the module it returns runs without it.
"""
import math
import os
import warnings
from typing import List, Optional

import torch
from torch import Tensor

from . import EV_TO_KJ_PER_MOL, modelFile, requireElements

__all__ = ["NAMES", "create", "AIMNet2", "ANGSTROM_PER_NM"]

#: Angstrom per nm (exact, by definition of the units).
ANGSTROM_PER_NM = 10.0

_REGISTRY = "https://storage.googleapis.com/aimnetcentral/aimnet2v2"
_AIMNET2_ELEMENTS = ["H", "B", "C", "N", "O", "F", "Si", "P", "S", "Cl", "As", "Se", "Br", "I"]
_LICENCE = "MIT (aimnet / isayevlab aimnetcentral, which publishes the weights)"

#: The names this module serves: ensemble member 0 of each family of aimnet 0.2.5's registry
#: (calculators/model_registry.yaml), the families openmm-ml's aimnet2potential.py names.
NAMES = {
    "aimnet2": dict(elements=_AIMNET2_ELEMENTS, charge="total charge input",
                    source="your .pt file (aimnet v2 format; registry model aimnet2-wb97m-d3_0)",
                    licence=_LICENCE, file="aimnet2_wb97m_d3_0.pt",
                    url=f"{_REGISTRY}/AIMNet2/aimnet2_wb97m_d3_0.pt"),
    "aimnet2-2025": dict(elements=None, charge="total charge input",
                         source="your .pt file (aimnet v2 format; registry model aimnet2-b973c-2025-d3_0)",
                         licence=_LICENCE, file="aimnet2_2025_b973c_d3_0.pt",
                         url=f"{_REGISTRY}/AIMNet2/aimnet2_2025_b973c_d3_0.pt"),
    "aimnet2-nse": dict(elements=None, charge="total charge and spin multiplicity inputs",
                        source="your .pt file (aimnet v2 format; registry model aimnet2-nse_0)",
                        licence=_LICENCE, file="aimnet2nse_wb97m_0.pt",
                        url=f"{_REGISTRY}/AIMNet2NSE/aimnet2nse_wb97m_0.pt"),
    "aimnet2-pd": dict(elements=None, charge="total charge input",
                       source="your .pt file (aimnet v2 format; registry model aimnet2-pd_0)",
                       licence=_LICENCE, file="aimnet2-pd_0.pt",
                       url=f"{_REGISTRY}/AIMNet2Pd/aimnet2-pd_0.pt"),
    "aimnet2-rxn": dict(elements=["H", "C", "N", "O"],
                        charge="neutral only (a charge input, but trained on neutral systems; charge != 0 refused)",
                        source="your .pt file (aimnet v2 format; registry model aimnet2-rxn_0)",
                        licence=_LICENCE, file="aimnet2_rxn_0.pt",
                        url=f"{_REGISTRY}/AIMNet2rxn/aimnet2_rxn_0.pt"),
}

# The D3 cutoff and smoothing of aimnet's calculator (AIMNet2Calculator._default_dftd3_cutoff and
# _default_dftd3_smoothing), in Angstrom.
_D3_CUTOFF = 15.0
_D3_SMOOTHING_FRACTION = 0.2


def _importAimnet():
    try:
        import aimnet.models  # noqa: F401
        from aimnet.models import load_model
    except ImportError as error:
        raise ImportError(f"AIMNet2 models are read with aimnet: install it (pip install aimnet==0.2.5) ({error})") \
            from None
    return load_model


def _className(module):
    return getattr(module, "original_name", None) or type(module).__name__


def _sequential(module, dtype, label):
    """A copy of an aimnet MLP (nn.Sequential of Linear and GELU) in ``dtype``."""
    layers = []
    for layer in module:
        if isinstance(layer, torch.nn.Linear):
            copy = torch.nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None)
            with torch.no_grad():
                copy.weight.copy_(layer.weight)
                if layer.bias is not None:
                    copy.bias.copy_(layer.bias)
            layers.append(copy)
        elif isinstance(layer, torch.nn.GELU):
            layers.append(torch.nn.GELU(approximate=layer.approximate))
        else:
            raise ValueError(f"{label}: an MLP layer of type {_className(layer)} is not supported here")
    sequential = torch.nn.Sequential(*layers).to(dtype)
    for p in sequential.parameters():
        p.requires_grad_(False)
    return sequential


class AIMNet2(torch.nn.Module):
    """The energy of an AIMNet2 model on a fixed region, all pairs, static shapes (nm in, kJ/mol out).

    Built by :func:`create` from a model aimnet has loaded; the terms it computes, and why all
    pairs is exact, are in this module's docstring.  Everything that depends only on the
    region (the atoms' embeddings, atomic shifts, D3 reference tables of its elements, the
    pair masks) is computed once here.

    Parameters
    ----------
    model : torch.nn.Module
        An ``aimnet.models.AIMNet2`` with its weights (from ``aimnet.models.load_model``).
    metadata : dict
        The file's metadata (``needs_coulomb``, ``coulomb_mode``, ``coulomb_sr_rc``,
        ``coulomb_sr_envelope``, ``needs_dispersion``, ``d3_params``).
    numbers : sequence of int
        The region's atomic numbers, in order.
    charge : int
        The region's total charge (e).
    multiplicity : int
        The spin multiplicity; used by models with two charge channels (NSE), else ignored.
    dtype : torch.dtype
        float32 or float64: the arithmetic of the network and of the pair terms.

    Raises
    ------
    ValueError
        The model holds a module this implementation does not reproduce (a D3TS dispersion,
        a dual AEV basis, an output other than the energy, dipole and quadrupole heads).
    """

    __constants__ = ["d2features", "nfeature", "nshifts", "channels", "hasSRCoulomb", "srExp", "hasCoulomb",
                     "coulombSubtractSR", "coulombExp", "hasD3", "natoms"]

    def __init__(self, model, metadata, numbers, charge=0, multiplicity=1, dtype=torch.float32):
        super().__init__()
        from aimnet import constants
        label = "AIMNet2"
        numbers = [int(z) for z in numbers]
        n = len(numbers)
        if n < 2:
            raise ValueError("AIMNet2: the ML region needs at least two atoms")
        self.natoms = n
        index = torch.tensor(numbers, dtype=torch.long)
        aev = model.aev
        if getattr(aev, "_dual_basis", False):
            raise ValueError(f"{label}: a model with separate scalar and vector AEV bases (rc_v) is not supported")
        self.channels = int(model.num_charge_channels)
        self.d2features = bool(model.d2features)
        self.nfeature = int(model.nfeature)
        self.nshifts = int(model.nshifts_s)
        with torch.no_grad():
            self.register_buffer("a0", model.afv.weight[index].detach().to(dtype).clone())
            self.register_buffer("rc", aev.rc_s.detach().to(dtype).clone())
            self.register_buffer("eta", aev.eta_s.detach().to(dtype).clone())
            self.register_buffer("shifts", aev.shifts_s.detach().to(dtype).clone())
            self.register_buffer("aghA", model.conv_a.agh.detach().to(dtype).clone())
            self.register_buffer("aghQ", model.conv_q.agh.detach().to(dtype).clone())
        self.mlps = torch.nn.ModuleList([_sequential(m, dtype, label) for m in model.mlps])
        if self.channels == 2:
            spin = 0.5 * (float(multiplicity) - 1.0)
            total = [0.5 * charge + spin, 0.5 * charge - spin]
        else:
            total = [float(charge)]
        self.register_buffer("totalCharge", torch.tensor(total, dtype=dtype))
        eye = torch.eye(n, dtype=torch.bool)
        self.register_buffer("diagonal", eye)
        self.register_buffer("offDiagonal", ~eye)
        self.factor = constants.half_Hartree * constants.Bohr  # e^2/Angstrom -> eV, ordered pairs
        self.halfHartree = constants.half_Hartree
        self.bohrInv = constants.Bohr_inv
        self.eVToKJPerMol = EV_TO_KJ_PER_MOL
        self.angstromPerNm = ANGSTROM_PER_NM

        # Outputs, in the file's order: energy head, atomic shift, atomic sum, SRCoulomb.
        seen = []
        self.hasSRCoulomb, self.srExp = False, True
        self.register_buffer("srRc", torch.zeros((), dtype=dtype))
        energyHead = None
        atomicShift = torch.zeros(n, dtype=torch.float64)
        for name, module in model.outputs.named_children():
            kind = _className(module)
            if kind == "Output" and module.key_in == "aim" and module.key_out == "energy":
                energyHead = _sequential(module.mlp, dtype, label)
            elif kind == "AtomicShift" and module.key_in == "energy" and module.key_out == "energy" \
                    and not module.reduce_sum:
                atomicShift = module.shifts.weight.detach()[index, 0].to(torch.float64).clone()
            elif kind == "AtomicSum" and module.key_in == "energy" and module.key_out == "energy":
                pass
            elif kind == "SRCoulomb" and module.key_in == "charges" and module.key_out == "energy":
                self.hasSRCoulomb, self.srExp = True, module.envelope == "exp"
                self.srRc = module.rc.detach().to(dtype).clone()
            elif kind in ("Dipole", "Quadrupole"):
                continue  # not part of the energy
            else:
                raise ValueError(f"{label}: the model's output '{name}' ({kind}) is not supported here; this "
                                 "implementation reproduces the energy head, atomic shifts and sum, SRCoulomb, "
                                 "and the calculator's external Coulomb and DFT-D3.")
            seen.append(kind)
        if seen[:3] != ["Output", "AtomicShift", "AtomicSum"]:
            raise ValueError(f"{label}: expected the outputs energy head, atomic shift and atomic sum first, found "
                             f"{seen}")
        self.energyHead = energyHead
        self.register_buffer("atomicShift", atomicShift)

        # The calculator's external Coulomb (method "simple": all pairs).
        self.hasCoulomb = bool(metadata.get("needs_coulomb", False))
        srEmbedded = metadata.get("coulomb_mode") == "sr_embedded"
        self.coulombSubtractSR = self.hasCoulomb and not srEmbedded
        rc = metadata.get("coulomb_sr_rc")
        self.register_buffer("coulombRc", torch.tensor(4.6 if rc is None else float(rc), dtype=dtype))
        self.coulombExp = (metadata.get("coulomb_sr_envelope") or "exp") == "exp"

        # The calculator's external DFT-D3(BJ), tables restricted to the region's elements.
        self.hasD3 = bool(metadata.get("needs_dispersion", False))
        d3 = metadata.get("d3_params") or {}
        self.s6 = float(d3.get("s6", 1.0))
        self.s8 = float(d3.get("s8", 0.0))
        self.a1 = float(d3.get("a1", 0.0))
        self.a2 = float(d3.get("a2", 0.0))
        self.d3On = _D3_CUTOFF * (1.0 - _D3_SMOOTHING_FRACTION) * self.bohrInv
        self.d3Off = _D3_CUTOFF * self.bohrInv
        self.d3CutoffAngstrom = _D3_CUTOFF
        elements = sorted(set(numbers))
        species = torch.tensor([elements.index(z) for z in numbers], dtype=torch.long)
        self.register_buffer("speciesI", species.unsqueeze(1).expand(n, n).clone())
        self.register_buffer("speciesJ", species.unsqueeze(0).expand(n, n).clone())
        if self.hasD3:
            from aimnet.modules import DFTD3
            tables = DFTD3(s8=self.s8, a1=self.a1, a2=self.a2, s6=self.s6)
            z = torch.tensor(elements, dtype=torch.long)
            rcov, r4r2 = tables.rcov[index].to(dtype), tables.r4r2[index].to(dtype)
            c6 = tables.c6ab[z][:, z].to(dtype)                   # [K, K, 5, 5]
            cnref = tables.cn_ref[z][:, z].to(dtype)              # [K, K, 5, 5]: the reference CN of the first
        else:
            rcov = r4r2 = torch.zeros(n, dtype=dtype)
            c6 = cnref = torch.zeros(1, 1, 5, 5, dtype=dtype)
        self.register_buffer("rcovSum", rcov.unsqueeze(1) + rcov.unsqueeze(0))
        self.register_buffer("r4r2ij", 3.0 * r4r2.unsqueeze(1) * r4r2.unsqueeze(0))
        self.register_buffer("c6ab", c6.contiguous())
        self.register_buffer("cnRefI", cnref.contiguous())
        self.register_buffer("cnRefJ", cnref.transpose(0, 1).transpose(-1, -2).contiguous())

    def _conv(self, features: Tensor, g: Tensor, agh: Tensor, d2: bool) -> Tensor:
        # aimnet's ConvSV: sum over neighbours j of the features times the basis, then the
        # vector part contracted with agh and squared.
        if d2:
            avf = torch.einsum("jag,ijgd->iagd", features, g)
        else:
            avf = torch.einsum("ja,ijgd->iagd", features, g)
        avfS, avfV = avf.split([1, 3], dim=-1)
        avfV = torch.einsum("agh,iagd->iahd", agh, avfV).pow(2).sum(-1)
        return torch.cat([avfS.squeeze(-1).flatten(-2, -1), avfV.flatten(-2, -1)], dim=-1)

    def _envelope(self, d: Tensor, rc: Tensor, exp: bool) -> Tensor:
        if exp:  # aimnet.ops.exp_cutoff
            x = (d / rc).clamp(0.0, 1.0 - 1e-6)
            return torch.exp(-1.0 / (1.0 - x.pow(2))) / 0.36787944117144233
        return 0.5 * (torch.cos(torch.minimum(d.clamp_min(1e-6), rc) * (math.pi / rc)) + 1.0)

    def _pairCoulomb(self, q: Tensor, d: Tensor, envelope: Optional[Tensor]) -> Tensor:
        e = q.unsqueeze(1) * q.unsqueeze(0) / d
        if envelope is not None:
            e = e * envelope
        e = torch.where(self.offDiagonal, e, torch.zeros_like(e))
        return self.factor * e.sum(-1, dtype=torch.float64).sum()

    def _dispersion(self, d: Tensor) -> Tensor:
        dB = d * self.bohrInv
        pair = self.offDiagonal & (dB < self.d3Off)
        zero = torch.zeros_like(dB)
        cnij = torch.sigmoid(16.0 * (self.rcovSum / dB - 1.0))
        cn = torch.where(pair, cnij, zero).sum(-1)
        c6ref = self.c6ab[self.speciesI, self.speciesJ]            # [n, n, 5, 5]
        refI = self.cnRefI[self.speciesI, self.speciesJ]
        refJ = self.cnRefJ[self.speciesI, self.speciesJ]
        valid = c6ref != 0
        arg = -4.0 * ((cn.view(-1, 1, 1, 1) - refI).pow(2) + (cn.view(1, -1, 1, 1) - refJ).pow(2))
        peak = arg.masked_fill(~valid, -math.inf).amax(dim=(-1, -2), keepdim=True)
        finite = torch.isfinite(peak)
        shifted = torch.where(finite, arg - peak, torch.zeros_like(arg))
        weights = torch.where(valid & finite & (shifted >= -12.0), shifted.exp(), torch.zeros_like(shifted))
        weightSum = weights.sum(dim=(-1, -2))
        c6 = torch.where(weightSum > 1e-12, (c6ref * weights).sum(dim=(-1, -2)) / weightSum.clamp_min(1e-12),
                         torch.zeros_like(weightSum))
        r0 = self.a1 * self.r4r2ij.sqrt() + self.a2
        d2 = dB * dB
        d6 = d2 * d2 * d2
        r02 = r0 * r0
        r06 = r02 * r02 * r02
        damping = self.s6 / (d6 + r06) + self.s8 * self.r4r2ij / (d6 * d2 + r06 * r02)
        t = ((dB - self.d3On) / (self.d3Off - self.d3On)).clamp(0.0, 1.0)
        switch = 1.0 - t * t * t * (10.0 - 15.0 * t + 6.0 * t * t)
        switch = torch.where(dB <= self.d3On, torch.ones_like(switch), switch)
        e = torch.where(pair, -c6 * damping * switch, zero)
        return self.halfHartree * e.sum(-1, dtype=torch.float64).sum()

    def energyEV(self, positions: Tensor) -> Tensor:
        """The energy in eV (float64, 0-dim) of positions ``[n, 3]`` in Angstrom, in the model's dtype."""
        x = positions.to(self.a0.dtype)
        r = x.unsqueeze(0) - x.unsqueeze(1)                             # r_ij = x_j - x_i
        r = torch.where(self.diagonal.unsqueeze(-1), torch.ones_like(r), r)
        d = torch.linalg.vector_norm(r, ord=2, dim=-1)
        fc = self._envelope(d, self.rc, False)  # aimnet.ops.cosine_cutoff
        fc = torch.where(self.offDiagonal, fc, torch.zeros_like(fc))
        gs = torch.exp(-self.eta * (d.unsqueeze(-1) - self.shifts) ** 2) * fc.unsqueeze(-1)
        u = r / d.unsqueeze(-1)
        g = torch.cat([gs.unsqueeze(-1), gs.unsqueeze(-1) * u.unsqueeze(-2)], dim=-1)   # [n, n, shifts, 4]

        n = self.natoms
        if self.d2features:
            a = self.a0.view(n, self.nfeature, self.nshifts)
        else:
            a = self.a0
        charges = torch.zeros(n, self.channels, dtype=x.dtype, device=x.device)
        aim = torch.zeros(n, 1, dtype=x.dtype, device=x.device)
        last = len(self.mlps) - 1
        for ipass, mlp in enumerate(self.mlps):
            inputs = torch.cat([a.flatten(1), self._conv(a, g, self.aghA, self.d2features)], dim=-1)
            if ipass > 0:
                inputs = torch.cat([inputs, charges, self._conv(charges, g, self.aghQ, False)], dim=-1)
            out = mlp(inputs)
            if ipass == last:
                aim = out
            else:
                dq, f, da = out.split([self.channels, self.channels, out.shape[-1] - 2 * self.channels], dim=-1)
                q = charges + dq if ipass > 0 else dq
                f = f.pow(2)
                fTotal = f.sum(0) + 1.0e-6
                q = q + f / fTotal * (self.totalCharge - q.sum(0))          # aimnet.ops.nse
                charges = q
                a = a + da.view_as(a)
        q = charges.sum(-1)
        energy = (self.energyHead(aim).squeeze(-1).to(torch.float64) + self.atomicShift).sum()
        if self.hasSRCoulomb:
            energy = energy - self._pairCoulomb(q, d, self._envelope(d, self.srRc, self.srExp))
        if self.hasCoulomb:
            energy = energy + self._pairCoulomb(q, d, None)
            if self.coulombSubtractSR:
                energy = energy - self._pairCoulomb(q, d, self._envelope(d, self.coulombRc, self.coulombExp))
        if self.hasD3:
            energy = energy + self._dispersion(d)
        return energy

    def forward(self, positions: Tensor, box: Optional[Tensor] = None) -> Tensor:
        """The model's energy of the region.

        Parameters
        ----------
        positions : torch.Tensor
            ``[n, 3]`` in nm, float32 or float64, in the order of the region's atoms; converted
            to the model's dtype.  The region must be whole.
        box : torch.Tensor, optional
            Ignored (the region is not periodic); accepted so that the model can be used with a
            periodic :class:`~openmmhybrid.MLForce`, which makes the region whole first.

        Returns
        -------
        torch.Tensor
            The energy in kJ/mol, a float64 scalar (0-dim): the network's atomic energies
            (model dtype) plus the float64 atomic shifts, summed in float64, and the Coulomb
            and D3 pair terms (model dtype, summed in float64).
        """
        return self.energyEV(positions * self.angstromPerNm) * self.eVToKJPerMol


def create(topology, atoms, name="aimnet2", modelPath=None, charge=0, precision=None, multiplicity=1, **options):
    """An :class:`AIMNet2` for the region ``atoms`` of ``topology``, from an aimnet model file.

    Parameters
    ----------
    topology : openmm.app.Topology
        The System's topology; the region's elements are read from it.
    atoms : sequence of int
        The ML region, in the order the model sees the atoms.
    name : str
        One of :data:`NAMES` (``'aimnet2'``, ``'aimnet2-2025'``, ``'aimnet2-nse'``,
        ``'aimnet2-pd'``, ``'aimnet2-rxn'``): which file to look for under the weights root
        when ``modelPath`` is not given, and the charge rules.  Any v2 file works under
        ``'aimnet2'``.
    modelPath : str or os.PathLike, optional
        The model file: a v2 ``.pt`` (the format aimnet's registry publishes, read with
        ``torch.load(weights_only=True)``: no code from the file runs).  Legacy TorchScript
        ``.jpt`` files are refused (loading them runs code from the file: convert one you
        trust with ``aimnet convert``).  Nothing is downloaded.
    charge : int
        The region's total charge in e, passed to the network's charge equilibration.  The
        rxn family was trained on neutral systems only; a non-zero charge is refused there (as
        aimnet's calculator refuses it).
    precision : {None, 'single', 'double'}
        The arithmetic of the model: None for the dtype of the file's weights (float32 for the
        published files), or float32 / float64.
    multiplicity : int
        The spin multiplicity 2S+1, for models with two charge channels (aimnet2-nse); for the
        others a value other than 1 is warned about and ignored.
    **options
        None are accepted.

    Returns
    -------
    AIMNet2

    Raises
    ------
    FileNotFoundError
        No file given and none under the weights root, or the file does not exist.
    ValueError
        An unknown name or option, a ``.jpt`` file, an element the file does not cover (naming
        the atom), a non-zero charge for a neutral-only model, or a model with modules not
        reproduced here.
    ImportError
        aimnet is not installed.
    """
    key = name.lower()
    if key not in NAMES:
        raise ValueError(f"aimnet2: unknown model name {name!r}; this module serves {', '.join(NAMES)}")
    if options:
        raise ValueError(f"{key}: unknown option(s) {', '.join(sorted(options))}; accepted: modelPath, charge, "
                         "precision, multiplicity")
    if precision not in (None, "single", "double"):
        raise ValueError(f"{key}: precision must be None, 'single' or 'double', not {precision!r}")
    if int(charge) != charge:
        raise ValueError(f"{key}: charge must be an integer number of e, not {charge!r}")
    info = NAMES[key]
    path = modelFile(key, modelPath, info["file"], info["url"])
    if path.lower().endswith(".jpt"):
        raise ValueError(f"{key}: '{path}' is a legacy TorchScript .jpt file, which is not loaded here (loading it "
                         "runs code from the file). Convert a file you trust to aimnet's v2 .pt format with "
                         "`aimnet convert model.jpt config.yaml model.pt` and give the .pt.")
    loadModel = _importAimnet()
    model, metadata = loadModel(path, device="cpu")
    metadata = dict(metadata or {})
    covered = [int(z) for z in metadata.get("implemented_species") or []]
    if not covered:
        from aimnet.models import extract_species
        covered = extract_species(model)
    label = f"the AIMNet2 model in '{os.path.basename(path)}'"
    numbers = requireElements(topology, atoms, covered, label)
    family = metadata.get("family")
    supportsCharge = metadata.get("supports_charged_systems")
    if family is not None and supportsCharge is None:
        from aimnet.calculators.model_registry import get_family_policy
        supportsCharge = get_family_policy(family).supports_charged_systems
    if key == "aimnet2-rxn" and supportsCharge is None:
        supportsCharge = False
    if charge != 0 and supportsCharge is False:
        raise ValueError(f"{key}: {label} was trained on neutral systems only and takes no net charge (the region's "
                         f"charge is {charge}); aimnet's calculator refuses it too.")
    if not metadata.get("needs_dispersion") and family is not None:
        from aimnet.calculators.model_registry import get_family_policy
        posthoc = get_family_policy(family).posthoc_d3_params
        if posthoc is not None and not metadata.get("has_embedded_d3ts", False):
            metadata["needs_dispersion"], metadata["d3_params"] = True, dict(posthoc)
    if int(model.num_charge_channels) != 2 and multiplicity != 1:
        warnings.warn(f"{key}: {label} has no spin input (one charge channel); multiplicity={multiplicity} is ignored "
                      "and the region is treated as a closed shell.", stacklevel=2)
    if precision is None:
        dtype = model.afv.weight.dtype
        dtype = dtype if dtype in (torch.float32, torch.float64) else torch.float32
    else:
        dtype = torch.float32 if precision == "single" else torch.float64
    module = AIMNet2(model, metadata, numbers, charge=int(charge), multiplicity=multiplicity, dtype=dtype)
    module.eval()
    return module
