"""Build script: everything declarative lives in pyproject.toml; this file only adds the C++ extension."""
from glob import glob

from pybind11.setup_helpers import Pybind11Extension, build_ext
from setuptools import setup

sources = sorted(glob("csrc/*.cpp"))
ext_modules = [
    Pybind11Extension(
        "fastbert._C",
        sources,
        include_dirs=["csrc"],
        cxx_std=17,
        extra_compile_args=["-O3"],
    )
] if sources else []

setup(ext_modules=ext_modules, cmdclass={"build_ext": build_ext})
