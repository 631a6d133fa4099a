"""The WSGI entry point: ``gunicorn wsgi:app`` and ``flask --app wsgi ...``."""

import gc

from ussd_app import create_app

app = create_app()

# What start-up made (modules, the app, its catalogues and menus: ~150,000 objects) lives as
# long as the process. Left to the collector, every full collection walks all of it (0.3 s
# of a worker, measured on the shared 2-core bench machine), and the hops queued behind it
# wait: a p99 of its own. Frozen, a full collection walks only what requests made since.
# Each gunicorn worker imports this module (after its fork, or before it with --preload).
gc.collect()
gc.freeze()
