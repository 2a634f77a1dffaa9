"""Build and install tsne_ops.

The compiled parts (the TensorFlow op library ``_tsne_ops.so`` and the pybind11
module ``_tsne_kernels``) are built by CMake into the package directory, so
the build needs TensorFlow importable: install with

    pip install --no-build-isolation -e .

(see README). ``TSNE_OPS_CMAKE_ARGS`` passes extra arguments to CMake, for
example ``-DTSNE_OPS_WITH_CUDA=OFF``.
"""
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent


def _version():
    # Read as text: importing tsne_ops would import TensorFlow and the op
    # library, which do not exist yet at build time.
    text = (ROOT / "tsne_ops" / "_version.py").read_text()
    return re.search(r'^__version__ = "([^"]+)"', text, re.M).group(1)


def _runtime_requirements():
    """The "# Runtime" section of requirements.txt: the pins have one home."""
    requirements, section = [], None
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.strip()
        if line.startswith("#"):
            words = line[1:].split()
            if words and words[0] in ("Runtime", "Build", "Tests"):
                section = words[0]
            continue
        if line and section == "Runtime":
            requirements.append(line)
    return requirements



class CMakeExtension(Extension):
    def __init__(self, name):
        super().__init__(name, sources=[])


class CMakeBuild(build_ext):
    """Runs CMake. The libraries are built into the source package directory
    (so an editable install and the tests use them in place) from a persistent
    build directory (so rebuilds are incremental), then copied to the wheel's
    build directory when that is elsewhere."""

    def get_ext_filename(self, ext_name):
        return ext_name.replace(".", os.sep) + ".so"

    def build_extension(self, ext):
        package_dir = ROOT / "tsne_ops"
        build_temp = ROOT / "build" / "cmake"
        build_temp.mkdir(parents=True, exist_ok=True)
        args = [
            f"-DTSNE_OPS_OUTPUT_DIR={package_dir}",
            f"-DPython_EXECUTABLE={sys.executable}",
            "-DCMAKE_BUILD_TYPE=Release",
        ]
        args += shlex.split(os.environ.get("TSNE_OPS_CMAKE_ARGS", ""))
        subprocess.run(["cmake", "-S", str(ROOT), "-B", str(build_temp), *args], check=True)
        jobs = os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL", str(os.cpu_count() or 2))
        subprocess.run(["cmake", "--build", str(build_temp), "-j", jobs], check=True)
        dest = Path(self.get_ext_fullpath(ext.name)).resolve().parent
        if dest != package_dir:
            dest.mkdir(parents=True, exist_ok=True)
            for built in [*package_dir.glob("_tsne_*.so"), package_dir / "_build_info.json"]:
                shutil.copy2(built, dest / built.name)


setup(
    name="tsne_ops",
    version=_version(),
    description="t-SNE as TensorFlow custom ops (C++ and CUDA): plain and parametric t-SNE",
    long_description=(ROOT / "README.md").read_text() if (ROOT / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    # TensorFlow 2.21.0 has wheels for CPython 3.10 to 3.13 only.
    python_requires=">=3.10,<3.14",
    packages=find_packages(include=["tsne_ops", "tsne_ops.*"]),
    ext_modules=[CMakeExtension("tsne_ops._tsne_ops")],
    cmdclass={"build_ext": CMakeBuild},
    install_requires=_runtime_requirements(),
    extras_require={
        "test": ["pytest"],
        "approx": ["faiss-cpu"],  # neighbors='approx' (tsne_ops.neighbors)
        "bench": ["openTSNE", "faiss-cpu"],
    },
    entry_points={"console_scripts": ["tsne-ops=tsne_ops.cli:main"]},
    zip_safe=False,
)
