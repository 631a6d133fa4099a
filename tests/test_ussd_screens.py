"""Every screen of every flow, in every language, fits 160 GSM-7 characters, and every message
the USSD service shows has a Kiswahili translation."""

import pytest
from babel.messages.extract import extract_from_dir

from ussd_app.i18n import LANGUAGES, catalog
from ussd_app.ussd import gsm7
from ussd_app.ussd.conversation import Conversation
from ussd_app.ussd.engine import RESUME, Context, Retry, Screen, Step
from ussd_app.ussd.flows import MODULES, engine

USSD_DIR = "ussd_app/ussd"


def worst_case_data() -> dict:
    data = {}
    for module in MODULES.values():
        data.update(module.SAMPLE)
    return data


def reasons_for(name: str, screen: Screen) -> list[str | None]:
    """Every reason this screen can be shown with: its own fallback, and each Retry to it."""
    found: list[str | None] = [None, screen.otherwise]
    for other_name, state in engine.states.items():
        if isinstance(state, Step):
            for exit_ in state.exits.values():
                if isinstance(exit_, Retry) and engine.resolve(other_name, exit_.to) == name:
                    found.append(exit_.reason)
    return found


SCREENS = [(name, s) for name, s in engine.states.items() if isinstance(s, Screen)]


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("name,screen", SCREENS, ids=[n for n, _ in SCREENS])
def test_every_screen_fits_160_gsm7_characters(app, lang, name, screen):
    for reason in reasons_for(name, screen):
        ctx = Context(phone="+254712345678", lang=lang, home="home.customer", data=worst_case_data())
        conv = Conversation(state=name, reason=reason)
        pages, page = [], 0
        while True:
            conv.page = page
            reply = engine.compose(conv, ctx)
            pages.append(reply.text)
            assert gsm7.fits(reply.text), (lang, name, reason, gsm7.length(reply.text), reply.text)
            assert reply.end == screen.end
            if "98" not in reply.text.splitlines()[-1] and "98" not in "".join(
                reply.text.splitlines()[-2:-1]
            ):
                break
            page += 1
            assert page < 10
        if screen.items:  # the sample list is long enough to page: every item shows somewhere
            shown = "\n".join(pages)
            for number in range(1, len(ctx.data[screen.items]) + 1):
                assert f"\n{number}. " in "\n" + shown, (name, number, pages)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_the_resume_offer_fits(app, lang):
    ctx = Context(phone="+254712345678", lang=lang, home="home.customer")
    for reason in (None, "Invalid choice."):
        reply = engine.compose(Conversation(state=RESUME, reason=reason), ctx)
        assert gsm7.fits(reply.text)


def _message_ids() -> list[str]:
    ids = []
    for _f, _l, message, _c, _x in extract_from_dir(
        USSD_DIR, method_map=[("**.py", "python")], keywords={"t": (2,), "N_": None}
    ):
        if message not in ids:
            ids.append(message)
    return ids


def test_every_message_has_a_kiswahili_translation_with_the_same_placeholders():
    sw = catalog("sw", "ussd")
    ids = _message_ids()
    assert len(ids) > 40
    missing = [m for m in ids if not sw.get(m)]
    assert not missing, missing
    import string

    fields = lambda s: {f for _, f, _, _ in string.Formatter().parse(s) if f}  # noqa: E731
    wrong = [m for m in ids if fields(m) != fields(sw[m])]
    assert not wrong, wrong


def test_every_state_is_reachable_and_every_target_exists():
    """A typo in a flow's wiring fails here, not on a customer's phone."""
    targets = set()
    for name, state in engine.states.items():
        if isinstance(state, Screen):
            targets |= {engine.resolve(name, o.to) for o in state.options}
            targets |= {engine.resolve(name, c.to) for c in state.choices}
            if state.pick:
                targets.add(engine.resolve(name, state.pick[0]))
        else:
            for exit_ in state.exits.values():
                targets.add(engine.resolve(name, exit_.to if isinstance(exit_, Retry) else exit_))
    homes = {"home.customer", "home.business", "registration.language", "common.locked"}
    assert set(engine.states) - targets - homes == set()


@pytest.fixture(params=["GH", "TZ"])
def abroad(request):
    """The service as Ghana or Tanzania runs it (``TUMA_COUNTRY``)."""
    from tests.test_country_profiles import _country_app

    yield from _country_app(request.param)


def test_every_screen_fits_in_every_country_and_each_of_its_languages(abroad):
    """Ghana's and Tanzania's screens, in each language the country offers, with its own numbers
    and the widest amount of any currency: the same 160 characters as Kenya's."""
    from ussd_app import country

    too_long = []
    for lang in country.languages():
        for name, screen in SCREENS:
            for reason in reasons_for(name, screen):
                ctx = Context(
                    phone=country.profile().numbered(12),
                    lang=lang,
                    home="home.customer",
                    data=worst_case_data(),
                )
                for page in range(10):
                    conv = Conversation(state=name, reason=reason, page=page)
                    text = engine.compose(conv, ctx).text
                    if not gsm7.fits(text):
                        too_long.append((country.profile().code, lang, name, gsm7.length(text), text))
                    if "98" not in "".join(text.splitlines()[-2:]):
                        break
    assert not too_long, too_long
