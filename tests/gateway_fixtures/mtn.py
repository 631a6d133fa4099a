# MTN MADAPI "Messaging USSD API" 1.0.0 (api.mtn.com/v1), as published on MTN's developer portal
# (https://developers.mtn.com/) and mirrored at
# https://raw.githubusercontent.com/api-evangelist/mtn-group/main/openapi/mtn-group-ussd.yml:
# InboundRequest (sessionId, messageType 0-Begin|1-Continue|2-End|3-Notification|4-Cancel|
# 5-Timeout, msisdn, serviceCode, ussdString, cellId, language, imsi) and InboundResponse
# (statusCode, statusMessage, transactionId, data.inboundResponse, data.userInputRequired,
# data.messageType, data.serviceCode, data.msisdn, _link). Request 1 is the spec's example
# values; the others are the same fields for an input and a timeout.

REQUESTS = [
    (
        {
            "sessionId": "01235",
            "messageType": "0",
            "msisdn": "2252312345",
            "serviceCode": "321123",
            "ussdString": "Please vote for xxx.",
        },
        {"kind": "begin", "session": "01235", "text": "Please vote for xxx.", "caller": "2252312345"},
    ),
    (
        {
            "sessionId": "01235",
            "messageType": "1",
            "msisdn": "2252312345",
            "serviceCode": "321123",
            "ussdString": "1",
        },
        {"kind": "input", "session": "01235", "text": "1", "caller": "2252312345"},
    ),
    (
        {
            "sessionId": "01235",
            "messageType": "5",
            "msisdn": "2252312345",
            "serviceCode": "321123",
            "ussdString": "",
        },
        {"kind": "end", "session": "01235", "text": "", "caller": "2252312345"},
    ),
]

COUNTRY = "CI"  # the spec's example number (+225)

ANSWER = {"statusCode": str, "statusMessage": str, "transactionId": str, "data": dict, "_link": dict}
CONTINUES = ("data.userInputRequired", True)
ENDS = ("data.userInputRequired", False)
