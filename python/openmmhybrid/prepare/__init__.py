"""Setting up a protein-ligand System for ML/MM from PyPI packages alone (``openmm-hybrid prepare``).

- :func:`prepareSystem`: protein PDB + ligand SDF/MOL2/PDB -> a prepared folder (System, topology,
  equilibrated state, the ligands' parameters, a log).  :class:`Prepared` reads one back.
- :mod:`.ligand`: RDKit reading, GAFF2/AM1-BCC with AmberTools (cached), ffxml with ParmEd.
- :mod:`.protein`: PDBFixer, with every change reported and what it cannot fix refused.
- :mod:`.forcefields`: the protein and water force fields (one table).
- :mod:`.equilibrate`: minimization and a restrained, then free, MM equilibration.
"""
from .build import PREPARED_FILES, Prepared, prepareSystem
from .equilibrate import equilibrate
from .forcefields import PROTEIN_FORCEFIELDS
from .ligand import PrepareError, parametrizeLigand, readLigand

__all__ = ["prepareSystem", "Prepared", "PREPARED_FILES", "PrepareError", "readLigand", "parametrizeLigand",
           "equilibrate", "PROTEIN_FORCEFIELDS"]
