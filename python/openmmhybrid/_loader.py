"""Finding and loading the compiled parts of openmm-hybrid."""
import json
import os

import openmm

_here = os.path.dirname(os.path.abspath(__file__))
_loaded = []
#: Plugin libraries that could not be loaded ("name: reason"), e.g. the CUDA plugin next to a torch
#: without CUDA.
load_failures = []


def plugin_directory():
    """The folder holding openmm-hybrid's OpenMM plugin libraries (for C++ programs:
    ``OpenMM::Platform::loadPluginsFromDirectory(...)``)."""
    return os.path.join(_here, "lib", "plugins")


def _read_build_info():
    path = os.path.join(_here, "build_info.json")
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)


#: The OpenMM and torch versions this build was compiled against.  The plugin is ABI-bound to them.
build_info = _read_build_info()


def _check_versions():
    import torch

    built = build_info
    if not built:
        return
    running = {"openmm": openmm.version.short_version, "torch": torch.__version__}
    for name in ("openmm", "torch"):
        b, r = built.get(name), running[name]
        # The ABI changes between minor versions: compare major.minor.
        if b and b.split(".")[:2] != r.split(".")[:2]:
            raise ImportError(
                f"openmm-hybrid was built against {name} {b} but {name} {r} is installed; the plugin is "
                f"ABI-bound to the version it was built with. Rebuild it: pip install --no-build-isolation --force-reinstall .")


def load_plugins():
    """Load openmm-hybrid's platform plugins into OpenMM.  Called on import; safe to call again."""
    if _loaded:
        return
    _check_versions()
    from . import _openmmhybrid  # noqa: F401  (registers the serialization proxies)

    directory = plugin_directory()
    if not os.path.isdir(directory):
        raise ImportError(f"openmm-hybrid's plugin folder {directory} is missing; reinstall the package.")
    for name in sorted(os.listdir(directory)):
        if not name.endswith(".so"):
            continue
        if "CUDA" in name:
            if "CUDA" not in _platform_names():
                continue  # the CUDA plugin needs OpenMM's CUDA platform (OpenMM-CUDA-13)
            try:
                openmm.Platform.loadPluginLibrary(os.path.join(directory, name))
            except Exception as error:  # noqa: BLE001 - the CPU-side platforms stay usable
                reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
                load_failures.append(f"{name}: {reason}")
                import warnings
                warnings.warn(f"openmm-hybrid: the CUDA plugin could not be loaded ({reason}); MLForce works on the Reference "
                              "and CPU platforms only. The plugin must be built against the installed torch with CUDA "
                              "(pip install --no-build-isolation --force-reinstall .).", RuntimeWarning, stacklevel=2)
                continue
        else:
            openmm.Platform.loadPluginLibrary(os.path.join(directory, name))
        _loaded.append(name)


def _platform_names():
    return [openmm.Platform.getPlatform(i).getName() for i in range(openmm.Platform.getNumPlatforms())]
