"""Print where the installed OpenMM and torch live, for CMakeLists.txt (KEY=VALUE lines).

The plugin is ABI-bound to the exact OpenMM and torch it is compiled against, so it must be built
against the ones installed in the environment it will run in.  Under pip's build isolation those
packages are hidden from the build; this script then asks the same interpreter again without the
isolation's PYTHONPATH, which sees the target environment's site-packages.
"""
import os
import subprocess
import sys


def describe():
    import openmm
    import openmm.version
    import torch

    openmm_dir = os.path.dirname(openmm.version.openmm_library_path)
    if not os.path.isfile(os.path.join(openmm_dir, "include", "openmm", "Force.h")):
        raise RuntimeError(f"OpenMM headers not found under {openmm_dir}/include; install the openmm wheel from PyPI (8.6.x).")
    return {
        "OPENMM_DIR": openmm_dir,
        "OPENMM_VERSION": openmm.version.short_version,
        "TORCH_DIR": os.path.dirname(torch.__file__),
        "TORCH_VERSION": torch.__version__,
        "TORCH_CXX11_ABI": str(int(torch._C._GLIBCXX_USE_CXX11_ABI)),
        "PYTHON_SCRIPTS_DIR": os.path.dirname(sys.executable),
    }


def main():
    try:
        info = describe()
    except ImportError as error:
        if os.environ.get("OPENMMHYBRID_FIND_RETRY") or "PYTHONPATH" not in os.environ:
            sys.exit(f"openmm-hybrid needs openmm and torch installed before it is built ({error}). "
                     "Run: pip install 'openmm==8.6.*' 'torch==2.13.0' and then pip install --no-build-isolation .")
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONNOUSERSITE")}
        env["OPENMMHYBRID_FIND_RETRY"] = "1"
        sys.exit(subprocess.call([sys.executable, __file__], env=env))
    for key, value in info.items():
        print(f"{key}={value}")


if __name__ == "__main__":
    main()
