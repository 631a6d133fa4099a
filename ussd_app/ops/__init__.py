"""Operations: health and metrics."""

from flask import Blueprint

bp = Blueprint("ops", __name__)


@bp.get("/healthz")
def healthz():
    return {"status": "ok"}


def init_app(app) -> None:
    app.register_blueprint(bp)
