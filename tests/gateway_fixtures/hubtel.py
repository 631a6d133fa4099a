# Hubtel Programmable Services API (USSD channel).
# Source: https://developers.hubtel.com/docs/api-reference-prog-services ("API Reference - Prog
# Services", the push request: Type initiation|response|release, Message (on a USSD initiation
# the string dialled), ServiceCode, Operator, ClientState, Mobile, SessionId) and the sample at
# https://hubtel.readme.io/reference/sample-general-services-interaction (request 1, verbatim,
# with Sequence). The answer's fields (SessionId, Type, Message, Label, ClientState, DataType,
# FieldType) as Hubtel's SDKs write them (hubtel/programmable-services-sdk-dotnet, hubtel-ps).
# Requests 2-4 are ours in the same fields; the capitalised Type ("Initiation", "Timeout") is
# the older Hubtel USSD API's spelling, read the same.
REQUESTS = [
    (
        {
            "Sequence": "1",
            "Type": "initiation",
            "Message": "",
            "ServiceCode": "b230733cd56b4a0fad820e39f66bc27c",
            "Operator": "Hubtel-Android",
            "ClientState": "",
            "Mobile": "233246912184",
            "SessionId": "8d440a43a98b4614b9df22b79c8190b8",
        },
        {
            "kind": "begin",
            "session": "8d440a43a98b4614b9df22b79c8190b8",
            "text": "",
            "caller": "233246912184",
        },
    ),
    (
        {
            "Mobile": "233246912184",
            "SessionId": "3c5dec67c9b24a8a8a3c8a4a1f9cd1b2",
            "ServiceCode": "713",
            "Type": "Initiation",
            "Message": "*713*7#",
            "Operator": "mtn",
            "Sequence": 1,
            "ClientState": "",
        },
        {
            "kind": "begin",
            "session": "3c5dec67c9b24a8a8a3c8a4a1f9cd1b2",
            "text": "*713*7#",
            "caller": "233246912184",
        },
    ),
    (
        {
            "Mobile": "233246912184",
            "SessionId": "3c5dec67c9b24a8a8a3c8a4a1f9cd1b2",
            "ServiceCode": "713",
            "Type": "Response",
            "Message": "1",
            "Operator": "mtn",
            "Sequence": 2,
            "ClientState": "",
        },
        {
            "kind": "input",
            "session": "3c5dec67c9b24a8a8a3c8a4a1f9cd1b2",
            "text": "1",
            "caller": "233246912184",
        },
    ),
    (
        {
            "Mobile": "233246912184",
            "SessionId": "3c5dec67c9b24a8a8a3c8a4a1f9cd1b2",
            "ServiceCode": "713",
            "Type": "Timeout",
            "Message": "",
            "Operator": "mtn",
            "Sequence": 3,
            "ClientState": "",
        },
        {"kind": "end", "session": "3c5dec67c9b24a8a8a3c8a4a1f9cd1b2", "text": "", "caller": "233246912184"},
    ),
]

COUNTRY = "GH"  # the documented numbers are Ghanaian

ANSWER = {
    "SessionId": str,
    "Type": str,  # Response (wait for input) | Release (end)
    "Message": str,
    "Label": str,
    "ClientState": str,
    "DataType": str,  # input | display
    "FieldType": str,
}
CONTINUES = ("Type", "Response")
ENDS = ("Type", "Release")
