"""Protection of the webhooks (Africa's Talking does not sign its callbacks)."""


def init_app(app) -> None:
    pass
