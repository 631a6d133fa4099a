# Beem Africa USSD Hub (Tanzania).
# Source: https://docs.beem.africa/ussd/ (the callback: command initiate|continue|terminate,
# msisdn, session_id, operator, payload.request_id, payload.response; the answer: msisdn,
# operator, session_id, command continue|terminate, payload.request_id, payload.request), as
# read by Beem integrations (e.g. the gowelle/laravel-beem-africa package's UssdCallback).
# Request 1's values are an initiate callback quoted from such an integration.

REQUESTS = [
    (
        {
            "command": "initiate",
            "msisdn": "255692189307",
            "session_id": "689970",
            "operator": "tigotz",
            "payload": {"request_id": 1, "response": 0},
        },
        {"kind": "begin", "session": "689970", "text": "0", "caller": "255692189307"},
    ),
    (
        {
            "command": "continue",
            "msisdn": "255692189307",
            "session_id": "689970",
            "operator": "tigotz",
            "payload": {"request_id": 2, "response": "1"},
        },
        {"kind": "input", "session": "689970", "text": "1", "caller": "255692189307"},
    ),
    (
        {
            "command": "terminate",
            "msisdn": "255692189307",
            "session_id": "689970",
            "operator": "tigotz",
            "payload": {"request_id": 3, "response": ""},
        },
        {"kind": "end", "session": "689970", "text": "", "caller": "255692189307"},
    ),
]

COUNTRY = "TZ"

ANSWER = {"msisdn": str, "operator": str, "session_id": str, "command": str, "payload": dict}
CONTINUES = ("command", "continue")
ENDS = ("command", "terminate")
