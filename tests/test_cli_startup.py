"""Starting up: `import tsne_ops` and `tsne-ops --help` do not import
TensorFlow, while the op library and the gradients are still registered
whenever TensorFlow is imported, before or after tsne_ops, so that SavedModels
using the ops load in a fresh process."""
import subprocess
import sys

import pytest


def _python(*args):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300)


def test_help_does_not_import_tensorflow():
    for argv in (["--help"], ["run", "--help"], ["compare", "--help"]):
        proc = _python("-X", "importtime", "-m", "tsne_ops", *argv)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "usage: tsne-ops" in proc.stdout
        imported = [line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()
                    if line.startswith("import time:")]
        assert "tsne_ops.cli" in imported
        assert not any(name.split(".")[0] in ("tensorflow", "keras", "sklearn", "matplotlib")
                       for name in imported)


def test_command_line_names_load_on_first_use():
    # The console script has sys.argv[0] ending in tsne-ops.
    code = ("import sys; sys.argv[0] = '/venv/bin/tsne-ops'\n"
            "import tsne_ops\n"
            "assert 'tensorflow' not in sys.modules\n"
            "assert tsne_ops.TSNE.__name__ == 'TSNE'\n"
            "assert callable(tsne_ops.pairwise_squared_distance)\n"
            "assert tsne_ops.metrics.__name__ == 'tsne_ops.metrics'\n"
            "assert 'tensorflow' in sys.modules\n"
            "try:\n"
            "    tsne_ops.no_such_name\n"
            "except AttributeError as e:\n"
            "    print('AttributeError', e)\n")
    proc = _python("-c", code)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "has no attribute 'no_such_name'" in proc.stdout


def test_import_does_not_import_tensorflow():
    proc = _python("-c", "import sys, tsne_ops, tsne_ops.tsne, tsne_ops.metrics, tsne_ops.datasets, "
                         "tsne_ops.affinities\n"
                         "assert 'tensorflow' not in sys.modules, sorted(sys.modules)\n"
                         "assert 'TSNE' in dir(tsne_ops) and 'TSNE' not in vars(tsne_ops)\n"
                         "assert tsne_ops.TSNE is tsne_ops.tsne.TSNE\n"
                         "assert 'tensorflow' not in sys.modules\n")
    assert proc.returncode == 0, proc.stderr[-2000:]


# A SavedModel whose function calls an op of the package: loading it needs the
# op library, and differentiating it the Python gradient registration; the
# Keras model class of ParametricTSNE must be registered too.
_LOAD = """
import sys, numpy as np
{first}
{second}
assert 'tsne_ops.ops' in sys.modules, 'the op library was not loaded'
assert keras.saving.get_registered_object('tsne_ops>TSNEModel') is not None
rng = np.random.default_rng(0)
p = rng.random((6, 6)); p = p + p.T; np.fill_diagonal(p, 0); p /= p.sum()
y = tf.Variable(rng.normal(size=(6, 2)))
loaded = tf.saved_model.load(sys.argv[1])
with tf.GradientTape() as tape:
    loss = loaded(tf.constant(p), y)
grad = tape.gradient(loss, y)
assert grad is not None and np.all(np.isfinite(grad.numpy())) and float(tf.norm(grad)) > 0
print(float(loss))
"""


@pytest.fixture(scope="module")
def saved_loss_model(tmp_path_factory):
    tf = pytest.importorskip("tensorflow")
    import tsne_ops

    class Loss(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float64),
                                      tf.TensorSpec([None, 2], tf.float64)])
        def __call__(self, p, y):
            return tsne_ops.tsne_loss(p, y)

    path = str(tmp_path_factory.mktemp("saved") / "loss_model")
    tf.saved_model.save(Loss(), path)
    return path


@pytest.mark.parametrize("first, second", [
    ("import tensorflow as tf, keras", "import tsne_ops"),   # registered at import tsne_ops
    ("import tsne_ops", "import tensorflow as tf, keras"),   # registered by the import hook
], ids=["tensorflow-first", "tsne_ops-first"])
def test_saved_model_loads_whichever_is_imported_first(saved_loss_model, first, second):
    proc = _python("-c", _LOAD.format(first=first, second=second), saved_loss_model)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert float(proc.stdout.split()[-1]) > 0


@pytest.mark.parametrize("module", ["tsne_ops.parametric_model", "tsne_ops.parametric",
                                    "tsne_ops.encoders"])
def test_keras_module_imported_first_registers_without_warning(module):
    # Keras imported by one of the package's own Keras modules: the import
    # hook must not import tsne_ops.parametric while that module is half made
    # (it used to warn "could not be registered", a circular import).
    pytest.importorskip("tensorflow")
    code = (f"import sys, tsne_ops, {module}, keras\n"
            "assert 'tsne_ops.ops' in sys.modules\n"
            f"if {module!r} != 'tsne_ops.encoders':\n"
            "    assert keras.saving.get_registered_object('tsne_ops>TSNEModel') is not None\n"
            "print('ok')\n")
    proc = _python("-W", "error::RuntimeWarning", "-c", code)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split()[-1] == "ok"
