"""A phone talking to ``POST /ussd/<gateway>`` in that gateway's own protocol (the way Hubtel,
Arkesel, Nalo, Beem or MTN relays it), answering like ``ussd_helpers.Phone``: ``CON ...`` or
``END ...``, so the same walks and assertions serve every gateway."""

import itertools

GATEWAYS = ("hubtel", "arkesel", "nalo", "beem", "mtn")
# Gateways that number their messages, so a resend mid-session is recognised as one.
NUMBERED = ("hubtel", "beem")
# Gateways that tell us a session is over (timeout, release, cancel).
END_NOTICES = ("hubtel", "beem", "mtn")

_sessions = itertools.count(1)
DIALLED = "*384*7#"


def request(gateway: str, kind: str, value: str, *, number: str, session: str, sequence: int) -> dict:
    """The gateway's request: ``kind`` is begin (``value`` is what was dialled), input or end."""
    if gateway == "hubtel":
        kinds = {"begin": "Initiation", "input": "Response", "end": "Timeout"}
        return {
            "Mobile": number,
            "SessionId": session,
            "ServiceCode": "384",
            "Type": kinds[kind],
            "Message": value,
            "Operator": "safaricom",
            "Sequence": sequence,
            "ClientState": "",
        }
    if gateway == "arkesel":
        return {
            "sessionID": session,
            "userID": "TUMA",
            "newSession": kind == "begin",
            "msisdn": number,
            "userData": value,
            "network": "Safaricom",
        }
    if gateway == "nalo":
        return {
            "USERID": "TUMA",
            "MSISDN": number,
            "USERDATA": value,
            "MSGTYPE": kind == "begin",
            "NETWORK": "MTN",
        }
    if gateway == "beem":
        kinds = {"begin": "initiate", "input": "continue", "end": "terminate"}
        return {
            "command": kinds[kind],
            "msisdn": number,
            "session_id": session,
            "operator": "vodacom",
            "payload": {"request_id": sequence, "response": value},
        }
    if gateway == "mtn":
        kinds = {"begin": "0", "input": "1", "end": "5"}
        return {
            "sessionId": session,
            "messageType": kinds[kind],
            "msisdn": number,
            "serviceCode": "384",
            "ussdString": value,
        }
    raise ValueError(gateway)


def as_body(gateway: str, answer: dict) -> str:
    """The gateway's answer as ``CON <screen>`` or ``END <screen>``."""
    if gateway == "hubtel":
        more, screen = answer["Type"] == "Response", answer["Message"]
    elif gateway == "arkesel":
        more, screen = answer["continueSession"], answer["message"]
    elif gateway == "nalo":
        more, screen = answer["MSGTYPE"], answer["MSG"]
    elif gateway == "beem":
        more, screen = answer["command"] == "continue", answer["payload"]["request"]
    else:
        more, screen = answer["data"]["userInputRequired"], answer["data"]["inboundResponse"]
    return ("CON " if more else "END ") + screen


class GatewayPhone:
    """One USSD session from ``number`` through ``gateway``."""

    def __init__(self, client, gateway: str, number: str = "254712000111", *, query: str = ""):
        self.client, self.gateway, self.number, self.query = client, gateway, number, query
        self.session = f"{gateway}-test-{next(_sessions)}"
        self.sequence = 0  # Hubtel: the message's number; Beem: our last answer's request_id
        self.last: dict | None = None

    def post(self, doc: dict) -> str:
        self.last = doc
        response = self.client.post(f"/ussd/{self.gateway}{self.query}", json=doc)
        assert response.status_code == 200, (response.status_code, response.get_data(as_text=True))
        assert response.mimetype == "application/json"
        answer = response.get_json()
        if self.gateway == "beem":
            self.sequence = answer["payload"]["request_id"]
        return as_body(self.gateway, answer)

    def _request(self, kind: str, value: str) -> dict:
        if self.gateway == "hubtel":
            self.sequence += 1
        return request(
            self.gateway, kind, value, number=self.number, session=self.session, sequence=self.sequence
        )

    def dial(self, dialled: str = DIALLED) -> str:
        return self.post(self._request("begin", dialled))

    def send(self, value: str) -> str:
        return self.post(self._request("input", value))

    def repeat(self) -> str:
        """The gateway sends its last request again (a retry after a timeout)."""
        return self.post(self.last)

    def end(self) -> dict:
        """The gateway's notice that the session is over (it timed out)."""
        response = self.client.post(f"/ussd/{self.gateway}{self.query}", json=self._request("end", ""))
        assert response.status_code == 200
        return response.get_json()

    def walk(self, *values: str) -> str:
        body = self.dial()
        for value in values:
            body = self.send(value)
        return body
