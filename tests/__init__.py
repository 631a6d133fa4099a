# A package, so that pytest imports conftest.py as ``tests.conftest``, the module the tests import
# (``from tests.conftest import ...``): without it the tests ran a second copy of it, with its own
# temporary directory, apps and embedded redis-server, which nothing stopped.
