"""The SMS of agent-started withdrawals, reversals and airtime: each has its Kiswahili with
the same placeholders (the receipts' own test covers RECEIPTS; these live in their modules)."""

import re

from ussd_app.i18n import catalog
from ussd_app.messages import agent_withdrawals, reversals
from ussd_app.messages.receipts import RECEIPTS

MINE = [
    *agent_withdrawals.MESSAGES,
    *reversals.SMS_REPLIES.values(),
    *(
        t
        for kind in ("reversal", "reversal_post", "reversal_void", "airtime", "airtime_post", "airtime_void")
        for t in RECEIPTS[kind].values()
    ),
]


def test_every_message_has_its_kiswahili_with_the_same_placeholders():
    sw = catalog("sw", "sms")
    for english in MINE:
        assert english in sw, english
        assert set(re.findall(r"{\w+}", sw[english])) == set(re.findall(r"{\w+}", english)), english
