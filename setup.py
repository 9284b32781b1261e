"""Build and install openmm-hybrid: `pip install --no-build-isolation .`

The C++ plugin and the Python extension are built by CMake against the OpenMM and torch that are
installed in this Python environment (the plugin is ABI-bound to both).  Environment variables:

    OPENMMHYBRID_BUILD_DIR    reuse this CMake build folder (incremental builds; `make` uses build/)
    OPENMMHYBRID_BUILD_TESTS  ON to also build the C++ tests there (`make test` does)
    OPENMMHYBRID_JOBS         parallel compile jobs (default: number of CPUs, at most 4)
    OPENMMHYBRID_BUILD_CUDA   AUTO (default: when nvcc and libOpenMMCUDA.so are found), ON or OFF
    CMAKE_CUDA_ARCHITECTURES  GPU architectures to compile for (default 75-real;80-real;86-real;90)
"""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent
VERSION = re.search(r'__version__ = "([^"]+)"', (ROOT / "python" / "openmmhybrid" / "_version.py").read_text()).group(1)


class CMakeExtension(Extension):
    def __init__(self, name):
        super().__init__(name, sources=[])


class CMakeBuild(build_ext):
    def build_extension(self, ext):
        package_dir = Path(self.get_ext_fullpath(ext.name)).resolve().parent
        build_dir = Path(os.environ.get("OPENMMHYBRID_BUILD_DIR") or Path(self.build_temp) / "cmake").resolve()
        build_dir.mkdir(parents=True, exist_ok=True)
        tests = os.environ.get("OPENMMHYBRID_BUILD_TESTS", "OFF").upper()
        jobs = os.environ.get("OPENMMHYBRID_JOBS") or str(min(os.cpu_count() or 1, 4))
        configure = ["cmake", "-S", str(ROOT), "-B", str(build_dir), f"-DPython_EXECUTABLE={sys.executable}",
                     f"-DCMAKE_INSTALL_PREFIX={package_dir}", f"-DOPENMMHYBRID_BUILD_TESTS={tests}",
                     "-DCMAKE_BUILD_TYPE=Release"]
        if os.environ.get("OPENMMHYBRID_BUILD_CUDA"):
            configure.append(f"-DOPENMMHYBRID_BUILD_CUDA={os.environ['OPENMMHYBRID_BUILD_CUDA']}")
        if os.environ.get("CMAKE_CUDA_ARCHITECTURES"):
            configure.append(f"-DCMAKE_CUDA_ARCHITECTURES={os.environ['CMAKE_CUDA_ARCHITECTURES']}")
        if not (build_dir / "CMakeCache.txt").exists() and _have("ninja"):
            configure += ["-G", "Ninja"]
        subprocess.check_call(configure)
        subprocess.check_call(["cmake", "--build", str(build_dir), "--parallel", jobs])
        subprocess.check_call(["cmake", "--install", str(build_dir)])
        info = dict(line.split("=", 1) for line in subprocess.check_output(
            [sys.executable, str(ROOT / "python" / "find_dependencies.py")], text=True).splitlines())
        record = {"openmm": info["OPENMM_VERSION"], "torch": info["TORCH_VERSION"]}
        cuda_info = build_dir / "cuda_build_info.json"
        if cuda_info.exists():
            record["cuda"] = json.loads(cuda_info.read_text())
        with open(package_dir / "build_info.json", "w") as f:
            json.dump(record, f)


def _have(program):
    from shutil import which
    return which(program) is not None


setup(
    name="openmmhybrid",
    version=VERSION,
    description="OpenMM plugins for fast hybrid ML/MM molecular dynamics",
    packages=find_packages("python"),
    package_dir={"": "python"},
    ext_modules=[CMakeExtension("openmmhybrid._openmmhybrid")],
    cmdclass={"build_ext": CMakeBuild},
    python_requires=">=3.10",
    install_requires=["openmm>=8.6,<8.7", "torch", "numpy", "tomli; python_version<'3.11'"],
    entry_points={
        "console_scripts": ["openmm-hybrid = openmmhybrid.cli:main"],
        # openmm-ml finds these potentials by name: MLPotential("hybrid-ani1x") runs the model in an MLForce.
        # Every built-in name and every adapter's (openmmhybrid.models; test_model_registry.py keeps
        # this list equal to the registry).
        "openmmml.potentials": [f"hybrid-{name} = openmmhybrid.mlpotential:HybridPotentialImplFactory"
                                for name in ("ani1x", "ani1ccx", "ani2x",
                                             "mace", "mace-off23-small", "mace-off23-medium", "mace-off23-large",
                                             "mace-off24-medium",
                                             "aimnet2", "aimnet2-2025", "aimnet2-nse", "aimnet2-pd", "aimnet2-rxn",
                                             "torchmdnet", "aceff-1.0", "aceff-1.1",
                                             "nequip", "allegro")],
    },
    extras_require={
        "ani": ["torchani==2.2.4", "setuptools<81", "importlib_metadata", "lark"],
        "selection": ["mdtraj"],
        "freeenergy": ["pymbar>=4", "matplotlib"],
        # The adapters' libraries (mace-torch pins e3nn==0.4.4, which nequip excludes; the lock
        # installs it with e3nn 0.6.0: see requirements.in).
        "mace": ["mace-torch"],
        "aimnet2": ["aimnet"],
        "torchmdnet": ["torchmd-net"],
        "nequip": ["nequip", "nequip-allegro"],
        "cli": ["torchani==2.2.4", "setuptools<81", "importlib_metadata", "lark", "mdtraj", "matplotlib"],
    },
    zip_safe=False,
)
