"""The GSM 7-bit length rule every screen is held to."""

from ussd_app.ussd import gsm7


def test_basic_characters_count_one_and_extension_characters_count_two():
    assert gsm7.length("Tuma pesa 100") == 13
    assert gsm7.length("é£$@") == 4
    assert gsm7.length("[KES]") == 7
    assert gsm7.length("€") == 2


def test_text_outside_the_alphabet_never_fits():
    assert gsm7.length("Zoë") is None  # ë is not in GSM 03.38: the screen would go UCS-2
    assert not gsm7.fits("Zoë")
    assert not gsm7.fits("😀")


def test_limit_is_160_septets():
    assert gsm7.fits("x" * 160)
    assert not gsm7.fits("x" * 161)
    assert not gsm7.fits("{" * 81)  # 162 septets


def test_shorten_and_clean_make_any_text_showable():
    assert gsm7.clean("Zoë Müller") == "Zo? Müller"
    assert gsm7.shorten("Wanjiru Kamau Njoroge", 10) == "Wanjiru.."
    assert gsm7.shorten("Juma", 10) == "Juma"
    assert gsm7.fits(gsm7.shorten("[" * 50, 20), 20)
