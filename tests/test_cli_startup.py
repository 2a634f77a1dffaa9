"""Starting the command line: `tsne-ops --help` answers without TensorFlow,
while `import tsne_ops` anywhere else still loads the ops at once."""
import subprocess
import sys


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


def test_import_elsewhere_loads_the_ops_at_once():
    proc = _python("-c", "import sys, tsne_ops; assert 'tensorflow' in sys.modules; "
                         "assert 'TSNE' in vars(tsne_ops) and 'tsne_loss' in vars(tsne_ops)")
    assert proc.returncode == 0, proc.stderr[-2000:]
