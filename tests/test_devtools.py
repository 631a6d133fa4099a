"""The development tools (``devtools/``: the dev server, the local gateway, the phone simulator,
the demo seed, the fault checkpoints) stay out of the service: the production app and the
worker never load them, and the development app adds exactly the simulator and the demo."""

import json
import subprocess
import sys

from tests.worker_helpers import ROOT

PRODUCTION_SIDE = """
import json, sys
from ussd_app import create_app
app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": "sqlite://"})
import wsgi, worker.__main__, worker.jobs  # noqa
print(json.dumps({
    "devtools": sorted(m for m in sys.modules if m == "devtools" or m.startswith("devtools.")),
    "blueprints": sorted(app.blueprints),
    "commands": sorted(app.cli.list_commands(None)),
    "operators": sorted(app.cli.commands["operators"].list_commands(None)),
    "routes": sorted(str(rule) for rule in app.url_map.iter_rules()),
}))
"""


def test_the_production_app_and_the_worker_never_load_the_development_tools(tmp_path):
    run = subprocess.run(
        [sys.executable, "-c", PRODUCTION_SIDE],
        cwd=ROOT,
        # A Redis URL nothing listens on: importing must not need Redis, and no embedded
        # redis-server is started that would outlive the child.
        env={
            "PATH": "/usr/bin:/bin",
            "TUMA_INSTANCE_PATH": str(tmp_path),
            "PYTHONPATH": ROOT,
            "REDIS_URL": "redis://127.0.0.1:1/0",
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    seen = json.loads(run.stdout.splitlines()[-1])
    assert seen["devtools"] == []
    assert "simulator" not in seen["blueprints"]
    assert not [r for r in seen["routes"] if r.startswith("/simulator")]
    assert "demo" not in seen["commands"] and "demo" not in seen["operators"]


def test_the_development_app_adds_the_simulator_and_the_demo(app, runner):
    assert "simulator" in app.blueprints
    listed = runner.invoke(args=["demo", "--help"])
    assert listed.exit_code == 0 and "seed" in listed.output and "operator" in listed.output
