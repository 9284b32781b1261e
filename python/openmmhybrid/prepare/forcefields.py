"""The protein and water force fields ``openmm-hybrid prepare`` knows: one table, OpenMM's own files.

Each protein force field names the OpenMM XML file of its biopolymer terms, its water models
(name -> the OpenMM XML file holding the water and its ions) and the default water model.  Every
file ships with OpenMM (``openmm/app/data``).
"""
from dataclasses import dataclass

__all__ = ["ProteinForceField", "PROTEIN_FORCEFIELDS", "LIGAND_FORCEFIELDS", "proteinForceField", "waterFiles",
           "modellerWaterModel"]


@dataclass(frozen=True)
class ProteinForceField:
    """A protein force field: its file, its water models and their files, the default water."""

    name: str
    file: str
    waters: dict
    defaultWater: str
    #: The 1-4 scaling of its NonbondedForce (coulomb, Lennard-Jones); a GAFF2 or SMIRNOFF ligand
    #: (0.8333, 0.5) can share one ForceField only with the Amber ones.
    scale14: tuple = (0.8333333333333334, 0.5)


_AMBER_WATERS = ("tip3p", "tip3pfb", "opc", "opc3", "spce", "tip4pew", "tip4pfb")

PROTEIN_FORCEFIELDS = {
    "amber14": ProteinForceField("amber14", "amber14-all.xml", {w: f"amber14/{w}.xml" for w in _AMBER_WATERS}, "tip3p"),
    "amber19": ProteinForceField("amber19", "amber19-all.xml", {w: f"amber19/{w}.xml" for w in _AMBER_WATERS}, "opc"),
    "charmm36": ProteinForceField("charmm36", "charmm36.xml",
                                  {"tip3p": "charmm36/water.xml", "spce": "charmm36/spce.xml",
                                   "tip4pew": "charmm36/tip4pew.xml", "tip4p2005": "charmm36/tip4p2005.xml",
                                   "tip5p": "charmm36/tip5p.xml"}, "tip3p", scale14=(1.0, 1.0)),
}

#: Ligand force fields: 'gaff2' (GAFF2 types and AM1-BCC charges from AmberTools) is always there;
#: 'openff-2.x.y' (SMIRNOFF through openmmforcefields) needs openff-toolkit.
LIGAND_FORCEFIELDS = ("gaff2", "openff-2.x.y")

# Modeller.addSolvent places 3-, 4- and 5-site waters from these templates; 4-site models get
# their virtual site from the force field.
_MODELLER_MODEL = {"tip3p": "tip3p", "tip3pfb": "tip3p", "opc3": "tip3p", "spce": "spce", "opc": "tip4pew",
                   "tip4pew": "tip4pew", "tip4pfb": "tip4pew", "tip4p2005": "tip4pew", "tip5p": "tip5p"}


def proteinForceField(name):
    """The :class:`ProteinForceField` called ``name``; ValueError naming the choices otherwise."""
    key = str(name).strip().lower()
    if key not in PROTEIN_FORCEFIELDS:
        raise ValueError(f"unknown protein force field {name!r}; the choices are {', '.join(PROTEIN_FORCEFIELDS)}")
    return PROTEIN_FORCEFIELDS[key]


def waterFiles(forcefield, water=None):
    """The OpenMM XML files (protein force field, water model) for ``forcefield`` and ``water``
    (None: its default water); ValueError naming the choices for an unknown water."""
    ff = proteinForceField(forcefield)
    model = (water or ff.defaultWater).strip().lower()
    if model not in ff.waters:
        raise ValueError(f"{ff.name} has no water model {water!r}; its water models are {', '.join(ff.waters)}")
    return [ff.file, ff.waters[model]], model


def modellerWaterModel(water):
    """The name ``Modeller.addSolvent(model=...)`` takes for the water model ``water``."""
    return _MODELLER_MODEL[water]
