"""What every back-office page uses: the page size, money as the operator reads it, a form
field's clean text, and the audit row written with each change."""

from ...extensions import db
from ...messages import money
from .. import bp, current_operator
from ..models import record

PAGE = 100


def _text(raw: str | None, limit: int) -> str:
    """A form field's or search box's text, without control characters (PostgreSQL refuses
    NUL), trimmed to ``limit``."""
    return "".join(c for c in (raw or "") if c.isprintable()).strip()[:limit]


@bp.app_template_filter("money")
def _money_filter(minor):
    return money(minor)


def audit(action: str, target=None, **detail) -> None:
    record(db.session, current_operator().id, action, target, **detail)
