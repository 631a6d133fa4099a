# Arkesel USSD (Ghana).
# Source: the field names and types of Arkesel's callback (sessionID, userID, newSession,
# msisdn, userData, network) and answer (sessionID, userID, msisdn, message, continueSession)
# as typed by the provider adapters of ussd-menu-builder,
# https://github.com/habbes/ussd-menu-builder/blob/master/index.d.ts (ArkeselArgs,
# ArkeselResponse), after Arkesel's USSD documentation (https://developers.arkesel.com/), whose
# page could not be read from here: check these against it before going live. Values are ours.

REQUESTS = [
    (
        {
            "sessionID": "16917583845433",
            "userID": "TUMA",
            "newSession": True,
            "msisdn": "233246912184",
            "userData": "*920*77#",
            "network": "MTN",
        },
        {"kind": "begin", "session": "16917583845433", "text": "*920*77#", "caller": "233246912184"},
    ),
    (
        {
            "sessionID": "16917583845433",
            "userID": "TUMA",
            "newSession": False,
            "msisdn": "233246912184",
            "userData": "1",
            "network": "MTN",
        },
        {"kind": "input", "session": "16917583845433", "text": "1", "caller": "233246912184"},
    ),
]

COUNTRY = "GH"

ANSWER = {"sessionID": str, "userID": str, "msisdn": str, "message": str, "continueSession": bool}
CONTINUES = ("continueSession", True)
ENDS = ("continueSession", False)
