"""The baseline: the same gunicorn setup serving a bare Flask route with a fixed CON screen."""

from flask import Flask, Response

app = Flask(__name__)


@app.post("/ussd")
def ussd():
    return Response("CON Tuma\n1. Send money\n2. My account\n3. My approvals", mimetype="text/plain")
