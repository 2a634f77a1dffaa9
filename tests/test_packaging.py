"""Packaging facts that have one home each: the version, the pins."""
import re
import sys
from pathlib import Path

import tsne_ops

ROOT = Path(__file__).resolve().parent.parent


def _setup_keywords():
    """The keywords setup.py passes to setuptools.setup, without building."""
    import runpy

    import setuptools

    captured = {}
    real, setuptools.setup = setuptools.setup, lambda **kw: captured.update(kw)
    argv, sys.argv = sys.argv, ["setup.py", "--version"]
    try:
        runpy.run_path(str(ROOT / "setup.py"))
    finally:
        setuptools.setup, sys.argv = real, argv
    return captured


def test_version_has_one_home():
    kw = _setup_keywords()
    assert kw["version"] == tsne_ops.__version__
    assert re.fullmatch(r"\d+\.\d+\.\d+", tsne_ops.__version__)


def test_install_requires_is_the_runtime_section_of_requirements_txt():
    kw = _setup_keywords()
    requires = kw["install_requires"]
    assert any(r.startswith("tensorflow==") for r in requires)  # pinned
    assert any(r.startswith("scikit-learn>=") and "<" in r for r in requires)
    # Build and test tools are not runtime dependencies.
    assert not any(r.startswith(("pytest", "cmake", "pybind11", "ninja")) for r in requires)


def test_build_system_pins_the_same_tensorflow():
    # pyproject.toml cannot read requirements.txt, so its pin is a copy.
    pin = next(r for r in _setup_keywords()["install_requires"] if r.startswith("tensorflow"))
    build = (ROOT / "pyproject.toml").read_text()
    assert f'"{pin}"' in build


def test_python_requires_matches_the_tensorflow_wheels():
    from packaging.specifiers import SpecifierSet

    allowed = SpecifierSet(_setup_keywords()["python_requires"])
    # TensorFlow 2.21.0 ships wheels for CPython 3.10-3.13 and no other.
    assert [v for v in ("3.9", "3.10", "3.11", "3.12", "3.13", "3.14") if v in allowed] == \
        ["3.10", "3.11", "3.12", "3.13"]
