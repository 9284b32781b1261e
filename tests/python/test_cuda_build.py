"""The CUDA platform plugin is compiled and linked everywhere nvcc exists, GPU or not.

These tests run on CI machines without a GPU: they check that the plugin library was built, that
every symbol it needs is provided by the libraries it links against (or, with a CPU-only torch, is
one of torch's CUDA symbols that a CUDA build of torch provides), and that importing openmmhybrid
never tries to load it where OpenMM has no CUDA platform.  The tests that run the plugin on a GPU
are in test_cuda.py.
"""
import os
import re
import shutil
import subprocess

import openmm
import pytest

import openmmhybrid
from openmmhybrid import _loader

PLUGIN = os.path.join(_loader.plugin_directory(), "libOpenMMHybridCUDA.so")
CUDA_INFO = _loader.build_info.get("cuda", {})


def _needs_nm():
    if shutil.which("nm") is None:
        pytest.skip("binutils' nm is not installed, so the plugin's symbols cannot be listed")


def _symbols(path, defined):
    flag = "--defined-only" if defined else "--undefined-only"
    out = subprocess.run(["nm", "-D", flag, path], capture_output=True, text=True, check=True).stdout
    names = set()
    for line in out.splitlines():
        parts = line.split()
        if not parts:
            continue
        kind, name = (parts[-2], parts[-1]) if len(parts) >= 2 else ("U", parts[-1])
        if not defined and kind in ("w", "v"):
            continue  # weak references may stay unresolved
        names.add(name.split("@")[0])
    return names


def _demangle(names):
    if not names:
        return []
    out = subprocess.run(["c++filt"], input="\n".join(sorted(names)), capture_output=True, text=True, check=True).stdout
    return out.splitlines()


def test_cuda_plugin_was_built_where_nvcc_exists():
    if shutil.which("nvcc") is None and not os.path.exists("/usr/local/cuda/bin/nvcc"):
        pytest.skip("no CUDA compiler (nvcc) on this machine, so the CUDA plugin cannot be compiled here")
    assert CUDA_INFO.get("built"), f"the CUDA plugin was not built: {CUDA_INFO.get('reason', 'no record in build_info.json')}"
    assert os.path.isfile(PLUGIN), f"{PLUGIN} is missing although the build says it was built"


def test_cuda_plugin_symbols_are_all_provided():
    if not CUDA_INFO.get("built"):
        pytest.skip(f"the CUDA plugin was not built here ({CUDA_INFO.get('reason', 'no CUDA build')})")
    _needs_nm()
    import torch

    torch_lib = os.path.join(os.path.dirname(torch.__file__), "lib")
    openmm_lib = openmm.version.openmm_library_path  # OpenMM.libs/lib
    providers = [CUDA_INFO["openmm_cuda_library"], os.path.join(openmm_lib, "libOpenMM.so"),
                 os.path.join(_loader.plugin_directory(), "..", "libOpenMMHybrid.so")]
    providers += [os.path.join(torch_lib, name) for name in os.listdir(torch_lib) if name.endswith(".so")]
    system_libs = subprocess.run(["ldd", PLUGIN], capture_output=True, text=True).stdout
    for line in system_libs.splitlines():
        if "not found" in line:
            continue
        path = (line.split("=>")[1] if "=>" in line else line).split("(")[0].strip()
        if path:
            if os.path.basename(path).startswith(("libstdc++", "libc.", "libm.", "libgcc_s", "libdl", "librt", "libpthread", "ld-linux")):
                providers.append(path)
    defined = set()
    for path in providers:
        if os.path.isfile(path):
            defined |= _symbols(path, defined=True)
    missing = _symbols(PLUGIN, defined=False) - defined
    torch_has_cuda = os.path.exists(os.path.join(torch_lib, "libtorch_cuda.so"))
    readable = _demangle(missing)
    if torch_has_cuda:
        unexpected = [name for name in readable if not re.fullmatch(r"cu[A-Z]\w*", name)]
        assert not unexpected, f"symbols no linked library provides: {unexpected[:20]}"
    else:
        # A CPU torch lacks libtorch_cuda/libc10_cuda: only their symbols may stay unresolved, and
        # the CUDA driver's (cu*, from libcuda.so.1, which libOpenMMCUDA.so loads; no driver here).
        unexpected = [name for name in readable
                      if not name.startswith(("c10::cuda::", "at::cuda::")) and not re.fullmatch(r"cu[A-Z]\w*", name)]
        assert not unexpected, f"symbols neither a linked library nor torch's CUDA libraries provide: {unexpected[:20]}"
        assert any(name.startswith("at::cuda::CUDAGraph::") for name in readable), \
            "expected the CUDA-graph symbols to come from torch's CUDA library"


def test_import_skips_cuda_plugin_without_cuda_platform():
    names = [openmm.Platform.getPlatform(i).getName() for i in range(openmm.Platform.getNumPlatforms())]
    if "CUDA" in names:
        pytest.skip("OpenMM has a CUDA platform here; test_cuda.py covers loading the plugin")
    openmmhybrid._loader.load_plugins()
    assert not any("CUDA" in name for name in _loader._loaded), _loader._loaded
    assert not any("OpenMMHybridCUDA" in failure for failure in openmm.Platform.getPluginLoadFailures())


def test_cuda_plugin_that_cannot_load_only_warns(monkeypatch):
    """Where OpenMM has a CUDA platform but the plugin cannot load (built against another torch, or
    a torch without CUDA), importing openmmhybrid warns and the CPU-side platforms still work."""
    if not CUDA_INFO.get("built"):
        pytest.skip(f"the CUDA plugin was not built here ({CUDA_INFO.get('reason', 'no CUDA build')})")
    import torch
    if os.path.exists(os.path.join(os.path.dirname(torch.__file__), "lib", "libtorch_cuda.so")):
        pytest.skip("torch has CUDA here, so the plugin would load")
    monkeypatch.setattr(_loader, "_loaded", [])
    monkeypatch.setattr(_loader, "load_failures", [])
    monkeypatch.setattr(_loader, "_platform_names", lambda: ["Reference", "CPU", "CUDA"])
    with pytest.warns(RuntimeWarning, match="the CUDA plugin could not be loaded"):
        _loader.load_plugins()
    assert any("OpenMMHybridCUDA" in failure for failure in _loader.load_failures)
    assert "libOpenMMHybridReference.so" in _loader._loaded
