"""The op library itself: what it registers, and how it fails to load."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tensorflow as tf
from tensorflow.python.framework import kernels

import tsne_ops

OPS = [
    "TSNE>SquaredDistance", "TSNE>CrossSquaredDistance", "TSNE>SquaredDistanceGrad",
    "TSNE>CrossSquaredDistanceGrad", "TSNE>PerplexityAffinities", "TSNE>JointProbabilities",
    "TSNE>TsneGradient", "TSNE>TsneLoss",
]
PACKAGE = Path(tsne_ops.__file__).parent


def _registered(op, device):
    found = set()
    for k in kernels.get_registered_kernels_for_op(op).kernel:
        if k.device_type != device:
            continue
        for c in k.constraint:
            if c.name == "T":
                found.update(tf.dtypes.as_dtype(t).name for t in c.allowed_values.list.type)
    return found


@pytest.mark.parametrize("op", OPS)
def test_cpu_kernel_for_every_op_and_dtype(op):
    assert _registered(op, "CPU") == {"float32", "float64"}


@pytest.mark.parametrize("op", OPS)
def test_gpu_kernel_for_every_op_and_dtype(op):
    if not tsne_ops.build_info()["cuda"]:
        pytest.skip("this op library was built without CUDA (no nvcc at build time)")
    assert _registered(op, "GPU") == {"float32", "float64"}


def test_build_info_names_this_tensorflow():
    assert tsne_ops.build_info()["tensorflow_version"] == tf.__version__


def _import_copy(tmp_path, keep_library, build_info=None, code="import tsne_ops.ops"):
    pkg = tmp_path / "tsne_ops"
    pkg.mkdir(parents=True)
    for f in PACKAGE.glob("*.py"):
        shutil.copy2(f, pkg / f.name)
    if keep_library:
        shutil.copy2(PACKAGE / "_tsne_ops.so", pkg / "_tsne_ops.so")
    if build_info is not None:
        (pkg / "_build_info.json").write_text(json.dumps(build_info))
    return subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
        env={"PYTHONPATH": str(tmp_path), "TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"},
    )


def test_missing_library_is_a_clear_import_error(tmp_path):
    # `import tsne_ops` is lazy (it loads no TensorFlow): the error comes with the ops.
    assert _import_copy(tmp_path / "lazy", keep_library=False, code="import tsne_ops").returncode == 0
    r = _import_copy(tmp_path, keep_library=False)
    assert r.returncode != 0
    assert "ImportError: tsne_ops: the compiled op library" in r.stderr
    assert "is missing" in r.stderr and "pip install --no-build-isolation -e ." in r.stderr


def test_other_tensorflow_version_is_a_clear_import_error(tmp_path):
    r = _import_copy(tmp_path, keep_library=True, build_info={"tensorflow_version": "2.0.0", "cuda": False})
    assert r.returncode != 0
    assert f"was built against TensorFlow 2.0.0, but TensorFlow {tf.__version__} is installed" in r.stderr
