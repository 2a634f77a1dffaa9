"""``python -m tsne_ops``: the ``tsne-ops`` command line."""
import sys

from tsne_ops.cli import main

sys.exit(main())
