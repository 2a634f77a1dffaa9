"""Loads the compiled op library once, with errors that say what to do."""
import json
import os
from pathlib import Path

import tensorflow as tf

_PACKAGE_DIR = Path(__file__).resolve().parent
_LIBRARY = _PACKAGE_DIR / "_tsne_ops.so"
_BUILD_INFO = _PACKAGE_DIR / "_build_info.json"
_REBUILD = (
    "Build it from the repository root with "
    "`pip install --no-build-isolation -e .` (or `bash scripts/setup.sh`); see README.md."
)


def built_for_tensorflow():
    """The TensorFlow version the op library was compiled against, or None."""
    try:
        return json.loads(_BUILD_INFO.read_text())["tensorflow_version"]
    except (OSError, ValueError, KeyError):
        return None


def load_op_library():
    """Loads ``_tsne_ops.so`` next to this package and returns its op module."""
    if not _LIBRARY.exists():
        raise ImportError(f"tsne_ops: the compiled op library {_LIBRARY} is missing. {_REBUILD}")
    built = built_for_tensorflow()
    if built is not None and built != tf.__version__ and not os.environ.get("TSNE_OPS_SKIP_VERSION_CHECK"):
        raise ImportError(
            f"tsne_ops: the op library {_LIBRARY} was built against TensorFlow {built}, "
            f"but TensorFlow {tf.__version__} is installed. Reinstall tensorflow=={built} "
            f"or rebuild the library against this TensorFlow. {_REBUILD}"
        )
    try:
        return tf.load_op_library(str(_LIBRARY))
    except (tf.errors.NotFoundError, OSError) as err:
        raise ImportError(
            f"tsne_ops: could not load the op library {_LIBRARY} into TensorFlow "
            f"{tf.__version__} (built against {built or 'an unknown version'}): {err}. {_REBUILD}"
        ) from err
