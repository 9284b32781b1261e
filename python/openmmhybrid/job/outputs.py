"""The files a run writes into its output folder and the columns of its ``energies.csv``.

The runner writes these files, the reporters fill them during the run, and ``report.md`` and the
``openmm-hybrid report`` command read them back; all of them take the names from here.
"""
import os

__all__ = ["FILES", "outputPaths", "CSV_COLUMNS", "STEP", "TIME", "POTENTIAL", "ML", "EMBEDDING", "MM", "KINETIC",
           "TOTAL", "TEMPERATURE", "RMSD", "VOLUME"]

#: The files of an output folder, by role.
FILES = {"trajectory": "trajectory.dcd", "energies": "energies.csv", "checkpoint": "checkpoint.chk",
         "structure": "start.pdb", "settings": "run.json", "final": "final_state.xml", "report": "report.md"}


def outputPaths(folder):
    """:data:`FILES` with each name joined to ``folder``."""
    return {role: os.path.join(folder, name) for role, name in FILES.items()}


# The columns of energies.csv, in the order of a row.
STEP = "step"
TIME = "time (ps)"
POTENTIAL = "potential (kJ/mol)"
ML = "ML (kJ/mol)"
EMBEDDING = "embedding (kJ/mol)"
MM = "MM (kJ/mol)"
KINETIC = "kinetic (kJ/mol)"
TOTAL = "total (kJ/mol)"
TEMPERATURE = "temperature (K)"
RMSD = "ligand RMSD (A)"
VOLUME = "volume (nm^3)"

#: The header of energies.csv.
CSV_COLUMNS = [STEP, TIME, POTENTIAL, ML, EMBEDDING, MM, KINETIC, TOTAL, TEMPERATURE, RMSD, VOLUME]
