"""Fetch the ANI-1ccx weights (the 'ani1ccx' model) at set-up, so that nothing is downloaded at run time.

Usage: python fetch_ani_weights.py [WEIGHTS_DIR] [--cache DIR]

Run by `make build` (and so by `make test` and `make demo`) with the environment's own Python.
torchani 2.0's wheel is the only package on the package index that ships ANI-1ccx's weights
(`torchani/resources/ani-1ccx_8x/`, NeuroChem format, 337 files, MIT licence; torchani 2.1 and
later download them at run time instead).  This downloads that wheel with
`pip download --no-deps` (21.8 MB; none of its dependencies, nothing installed) into a cache
folder, checks its SHA-256, and extracts only `resources/ani-1ccx_8x/`, with the wheel's licence,
into WEIGHTS_DIR/ani-1ccx_8x, where `openmmhybrid.models.ani.ANI1ccx` looks for it.

WEIGHTS_DIR is, in this order: the argument; the environment variable OPENMMHYBRID_WEIGHTS; the
default `<sys.prefix>/share/openmmhybrid/weights` (inside the virtual environment).  openmmhybrid
looks in the same place at run time (`openmmhybrid.models.ani.weightsRoot()`), so run this script
with the Python of the environment openmm-hybrid is installed in, or set OPENMMHYBRID_WEIGHTS to
the same folder both times.

The cache (the downloaded wheel) is `--cache DIR`, else `$XDG_CACHE_HOME/openmmhybrid` (by default
`~/.cache/openmmhybrid`).  Nothing is done when the folder is already there.  Prints the folder's
path; exits with status 1 and a message on stderr when it cannot.  This script does not import
openmmhybrid and needs nothing but the Python standard library and pip.
"""
import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile

#: The wheel, and its SHA-256 (the file on PyPI, 2020-05).
REQUIREMENT = "torchani==2.0"
WHEEL = "torchani-2.0-py3-none-any.whl"
SHA256 = "87db70affc847c3aa26081607166580a6e6b01f33e09218e2c5b26f66b45ed89"
#: What is taken from it, and where it goes under WEIGHTS_DIR.
MEMBER_PREFIX = "torchani/resources/ani-1ccx_8x/"
LICENSE_MEMBER = "torchani-2.0.dist-info/LICENSE"
FOLDER = "ani-1ccx_8x"
#: Files of the folder that mark it as complete (the constants, the self energies, the last member).
REQUIRED = ("rHCNO-5.2R_16-3.5A_a4-8.params", "sae_linfit.dat", "train7/networks/ANN-O.nnf-l4.bparam")
ENVIRONMENT_VARIABLE = "OPENMMHYBRID_WEIGHTS"


def defaultWeightsRoot():
    """The folder openmmhybrid reads the weights from (as `openmmhybrid.models.ani.weightsRoot()`)."""
    value = os.environ.get(ENVIRONMENT_VARIABLE)
    if value:
        return os.path.abspath(os.path.expanduser(value))
    return os.path.join(sys.prefix, "share", "openmmhybrid", "weights")


def defaultCache():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "openmmhybrid")


def complete(folder):
    return all(os.path.isfile(os.path.join(folder, name)) and os.path.getsize(os.path.join(folder, name)) > 0
               for name in REQUIRED)


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fail(message):
    sys.stderr.write(f"fetch_ani_weights: {message}\n")
    sys.exit(1)


def wheel(cache):
    """The path of the checked wheel in the cache, downloaded with pip if it is not there."""
    path = os.path.join(cache, WHEEL)
    if os.path.isfile(path) and sha256(path) == SHA256:
        return path
    os.makedirs(cache, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps",
                   "--only-binary=:all:", "-d", tmp, REQUIREMENT]
        result = subprocess.run(command, capture_output=True, text=True)
        downloaded = os.path.join(tmp, WHEEL)
        if result.returncode != 0 or not os.path.isfile(downloaded):
            fail(f"could not download {REQUIREMENT} (for the ANI-1ccx weights) with `{' '.join(command[2:])}`: "
                 f"{result.stderr.strip()[-500:] or 'no wheel'}")
        digest = sha256(downloaded)
        if digest != SHA256:
            fail(f"{WHEEL} has SHA-256 {digest}, not {SHA256}: not the torchani 2.0 wheel of PyPI; nothing extracted")
        os.replace(downloaded, path)
    return path


def extract(wheelPath, target):
    """Extract the ani-1ccx_8x folder (and the licence) of the wheel into ``target``, atomically."""
    parent = os.path.dirname(target)
    os.makedirs(parent, exist_ok=True)
    part = tempfile.mkdtemp(prefix=f".{FOLDER}.", dir=parent)
    try:
        with zipfile.ZipFile(wheelPath) as archive:
            members = [m for m in archive.infolist() if m.filename.startswith(MEMBER_PREFIX) and not m.is_dir()]
            if not members:
                fail(f"{os.path.basename(wheelPath)} holds no {MEMBER_PREFIX}")
            for member in members:
                relative = os.path.normpath(member.filename[len(MEMBER_PREFIX):])
                if relative.startswith("..") or os.path.isabs(relative):
                    fail(f"{os.path.basename(wheelPath)}: refusing the member {member.filename!r}")
                destination = os.path.join(part, relative)
                os.makedirs(os.path.dirname(destination), exist_ok=True)
                with archive.open(member) as src, open(destination, "wb") as out:
                    shutil.copyfileobj(src, out)
            with archive.open(LICENSE_MEMBER) as src, open(os.path.join(part, "LICENSE"), "wb") as out:
                shutil.copyfileobj(src, out)
        with open(os.path.join(part, "SOURCE"), "w") as out:
            out.write(f"ANI-1ccx (Smith et al., Nat. Commun. 10, 2903 (2019)), NeuroChem format: {MEMBER_PREFIX} of "
                      f"{WHEEL} (sha256 {SHA256}), extracted by python/fetch_ani_weights.py. Licence: MIT (LICENSE, "
                      "torchani's).\n")
        if not complete(part):
            fail(f"{os.path.basename(wheelPath)}'s {MEMBER_PREFIX} is incomplete (expected {', '.join(REQUIRED)})")
        os.chmod(part, 0o755)
        if os.path.isdir(target):
            shutil.rmtree(target)  # an incomplete folder from an earlier attempt
        os.replace(part, target)
    finally:
        if os.path.isdir(part):
            shutil.rmtree(part)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Fetch the ANI-1ccx weights at set-up (see the module docstring).")
    parser.add_argument("weights", nargs="?", default=None, help="the weights folder (default: $OPENMMHYBRID_WEIGHTS, "
                        "else <sys.prefix>/share/openmmhybrid/weights)")
    parser.add_argument("--cache", default=None, help="where the downloaded wheel is kept (default: "
                        "$XDG_CACHE_HOME/openmmhybrid or ~/.cache/openmmhybrid)")
    args = parser.parse_args(argv)
    root = os.path.abspath(args.weights) if args.weights else defaultWeightsRoot()
    target = os.path.join(root, FOLDER)
    if not complete(target):
        extract(wheel(os.path.abspath(args.cache) if args.cache else defaultCache()), target)
    print(target)


if __name__ == "__main__":
    main()
