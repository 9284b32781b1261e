"""Fetch OpenMM's CUDA platform library to link openmm-hybrid's CUDA plugin against.

Usage: python fetch_openmm_cuda.py DEST_DIR

The CUDA plugin links against libOpenMMCUDA.so, which ships in the separate `OpenMM-CUDA-13` wheel
(not in the base `openmm` wheel, whose headers already include the CUDA platform's).  A machine
without a GPU needs only that library to compile and link the plugin, so this downloads the wheel
matching the installed OpenMM with `pip download --no-deps` (about 2 MB, none of the CUDA runtime
packages) and extracts the library into DEST_DIR.  Prints the library's path; exits with status 1
and a message on stderr when it cannot.
"""
import glob
import os
import subprocess
import sys
import tempfile
import zipfile


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: fetch_openmm_cuda.py DEST_DIR")
    dest = os.path.abspath(sys.argv[1])
    target = os.path.join(dest, "libOpenMMCUDA.so")
    if os.path.exists(target):
        print(target)
        return
    import openmm

    version = openmm.version.short_version
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps",
                   "--only-binary=:all:", "-d", tmp, f"OpenMM-CUDA-13=={version}"]
        result = subprocess.run(command, capture_output=True, text=True)
        wheels = glob.glob(os.path.join(tmp, "*.whl"))
        if result.returncode != 0 or not wheels:
            sys.stderr.write(f"could not download OpenMM-CUDA-13=={version}: {result.stderr.strip()[-500:]}\n")
            sys.exit(1)
        os.makedirs(dest, exist_ok=True)
        with zipfile.ZipFile(wheels[0]) as wheel:
            member = next((n for n in wheel.namelist() if n.endswith("/plugins/libOpenMMCUDA.so")), None)
            if member is None:
                sys.stderr.write(f"{os.path.basename(wheels[0])} holds no libOpenMMCUDA.so\n")
                sys.exit(1)
            with wheel.open(member) as src, open(target + ".part", "wb") as out:
                out.write(src.read())
        os.replace(target + ".part", target)
    print(target)


if __name__ == "__main__":
    main()
