"""The [prepare] settings of a config, handed to :func:`openmmhybrid.prepare.prepareSystem`.

``openmm-hybrid prepare CONFIG`` calls :func:`prepareFromConfig`; ``openmm-hybrid run CONFIG``
with [prepare] settings calls it too, so one config prepares and runs (a folder prepared from the
same settings and input files is reused as it is).
"""
import openmm.unit as unit

from ..prepare import PrepareError, prepareSystem
from .config import ConfigError, preparesHere

__all__ = ["prepareFromConfig"]


def prepareFromConfig(config, log=print, checkOnly=False, overwrite=False):
    """Prepare (or reuse) ``config['prepared']`` from the config's [prepare] settings; nothing when
    the config has none.  Raises ConfigError (one line) for bad input."""
    if not preparesHere(config):
        return None
    # the run's platform, except Reference, which would take hours to equilibrate a solvated protein
    platform = config["platform"] if config["platform"] in ("CPU", "CUDA", "OpenCL") else None
    properties = {"Threads": str(config["threads"])} if platform == "CPU" and config["threads"] is not None else None
    try:
        return prepareSystem(
            config["prepared"], protein=config["protein"], ligands=config["ligand"] or [], smiles=config["smiles"],
            forcefield=config["protein_forcefield"], water=config["water_model"], padding=config["padding"],
            boxShape=config["box_shape"], ionicStrength=config["ionic_strength"], pH=config["ph"],
            ligandForcefield=config["ligand_forcefield"], nonbondedCutoff=config["nonbonded_cutoff"],
            constraints=config["constraints"], equilibrate_=config["prepare_equilibration"],
            restrainedSteps=config["restrained_steps"], releasedSteps=config["released_steps"],
            temperature=config["temperature"], pressure=config["pressure"] or 1.0 * unit.bar, platform=platform,
            properties=properties, seed=config["seed"], minimizeIterations=config["prepare_minimize_iterations"],
            overwrite=overwrite, checkOnly=checkOnly, log=log)
    except PrepareError as error:
        raise ConfigError(str(error)) from None
