# Nalo Solutions USSD API (Ghana).
# Source: Nalo's "USSD API DOCUMENTATION" (Postman documenter,
# https://documenter.getpostman.com/view/7705958/UyrEhaLQ: POST, JSON, a USER ID issued by
# Nalo); the fields, request USERID, MSISDN, USERDATA, MSGTYPE (true: first message of a
# session), NETWORK and answer USERID, MSISDN, MSG, MSGTYPE (true: continue, false: end), as
# typed by ussd-menu-builder (https://github.com/habbes/ussd-menu-builder/blob/master/index.d.ts,
# NaloArgs, NaloResponse). Values are ours.

REQUESTS = [
    (
        {
            "USERID": "NALOTest",
            "MSISDN": "233244000000",
            "USERDATA": "*920*1#",
            "MSGTYPE": True,
            "NETWORK": "MTN",
        },
        {"kind": "begin", "session": "", "text": "*920*1#", "caller": "233244000000"},
    ),
    (
        {"USERID": "NALOTest", "MSISDN": "233244000000", "USERDATA": "2", "MSGTYPE": False, "NETWORK": "MTN"},
        {"kind": "input", "session": "", "text": "2", "caller": "233244000000"},
    ),
]

COUNTRY = "GH"

ANSWER = {"USERID": str, "MSISDN": str, "MSG": str, "MSGTYPE": bool}
CONTINUES = ("MSGTYPE", True)
ENDS = ("MSGTYPE", False)
