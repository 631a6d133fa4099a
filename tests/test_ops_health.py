"""/healthz: 200 when the database and Redis answer; 503 naming the one that does not."""

import pytest

from tests import conftest
from tests.ops_helpers import closed_port
from ussd_app import create_app
from ussd_app.extensions import db


@pytest.fixture
def app_with():
    made = []

    def make(**config):
        app = create_app(
            {
                "TESTING": True,
                "SECRET_KEY": "test",
                "REDIS_URL": conftest.test_redis_url(),
                "SQLALCHEMY_DATABASE_URI": conftest.default_db_url(),
            }
            | config
        )
        made.append(app)
        return app

    yield make
    for app in made:
        with app.app_context():
            db.engine.dispose()
        app.extensions["redis"].close()
        app.extensions["redis_scripts"].close()


def test_healthy(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json["status"] == "ok"
    assert response.json["checks"]["database"]["ok"] and response.json["checks"]["redis"]["ok"]


def test_redis_unreachable(app_with):
    app = app_with(REDIS_URL=f"redis://127.0.0.1:{closed_port()}/9")
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    body = response.json
    assert body["status"] == "fail"
    assert body["checks"]["redis"] == {"ok": False, "error": "ConnectionError"}
    assert body["checks"]["database"]["ok"] is True


def test_database_unreachable(app_with):
    url = f"postgresql+psycopg://tuma:secret-password@127.0.0.1:{closed_port()}/tuma"
    app = app_with(SQLALCHEMY_DATABASE_URI=url)
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    body = response.json
    assert body["checks"]["database"] == {"ok": False, "error": "OperationalError"}
    assert body["checks"]["redis"]["ok"] is True
    assert "secret-password" not in response.get_data(as_text=True)
