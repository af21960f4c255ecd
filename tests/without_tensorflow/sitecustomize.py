"""Put this folder first on PYTHONPATH and `tensorflow`, `tensorflow_datasets` and `clu` are
absent in that process, as on a JAX-only host (a GPU or TPU image without TensorFlow) though
this machine has them: importing one raises ModuleNotFoundError and importlib.util.find_spec
returns None (libraries such as etils probe for TensorFlow that way). Python imports
`sitecustomize` at start-up, after the site-packages' .pth files."""

import sys

BLOCKED = ("tensorflow", "tensorflow_datasets", "clu")


class _Without:
    """Wraps a meta-path finder so that it finds none of the blocked packages."""

    def __init__(self, finder):
        self._finder = finder

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            return None
        return self._finder.find_spec(name, path, target)

    def __getattr__(self, name):  # invalidate_caches, find_distributions, ...
        return getattr(self._finder, name)


sys.meta_path[:] = [_Without(finder) for finder in sys.meta_path]
