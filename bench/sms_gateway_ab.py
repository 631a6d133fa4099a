"""Receipts to one number handed over per second by the working tree's sender, against two
local gateways side by side (each a process of its own, rounds alternating): ``--a`` and
``--b`` are the directories whose ``devtools.gateway`` runs (e.g. a checkout whose gateway
closes every connection, and this one, which keeps them alive).

    .venv/bin/python bench/sms_gateway_ab.py --a /path/to/other/checkout --b . --database-url ...

Each round, per gateway: bare SDK calls one after another on one connection, then ``--rows``
receipts to one number through ``send_due`` in jobs of ``--job-limit`` rows; the gateway's
received log is checked after each run (each once, in the order written).
"""

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.sms_sender_bench import GatewayProcess, received_log, spread  # noqa: E402


class Gateway(GatewayProcess):
    def __init__(self, directory: str):
        import requests

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "devtools.gateway", "--port", str(port)],
            cwd=directory,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(f"{self.url}/messages", timeout=1)
                break
            except requests.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--a", required=True)
    parser.add_argument("--b", required=True)
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--bare", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--job-limit", type=int, default=100)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/11"))
    args = parser.parse_args(argv)

    import flask_migrate
    from sqlalchemy import delete, select

    from ussd_app import create_app
    from ussd_app.africas_talking import client_for
    from ussd_app.config import database_url
    from ussd_app.extensions import db
    from ussd_app.sms import sender
    from ussd_app.sms.outbox import OutboxMessage, add_sms

    gateways = {"A": Gateway(os.path.abspath(args.a)), "B": Gateway(os.path.abspath(args.b))}
    app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": database_url(args.database_url),
            "REDIS_URL": args.redis_url,
            "SECRET_KEY": "bench",
            "PIN_PEPPER": "bench",
            "AT_API_URL": gateways["A"].url,
            "AT_API_KEY": "bench-key",
            "AT_SENDER_ID": "TUMA",
        }
    )
    rates: dict = {}
    try:
        with app.app_context():
            flask_migrate.upgrade(directory=os.path.join(ROOT, "migrations"))
            db.session.execute(delete(OutboxMessage))
            db.session.commit()
            for round_ in range(args.rounds):
                order = ("A", "B") if round_ % 2 == 0 else ("B", "A")
                for side in order:
                    gateway = gateways[side]
                    app.config["AT_API_URL"] = gateway.url
                    client = client_for(app.config)
                    started = time.perf_counter()
                    with client.kept_alive():
                        for i in range(args.bare):
                            client.send("+254711000002", f"bare {i}")
                    rates.setdefault((side, "bare"), []).append(args.bare / (time.perf_counter() - started))
                    for i in range(args.rows):
                        add_sms(db.session, phone="+254711000001", body=f"Receipt {i} {side} {round_}")
                    db.session.commit()
                    written = [
                        (p, b)
                        for p, b in db.session.execute(
                            select(OutboxMessage.phone, OutboxMessage.body).order_by(OutboxMessage.id)
                        )
                    ]
                    seen = len(received_log(gateway))
                    started = time.perf_counter()
                    sent = 0
                    while sent < args.rows:
                        got = sender.send_due(db.session, client, args.job_limit)
                        if not got["sent"]:
                            break
                        sent += got["sent"]
                    elapsed = time.perf_counter() - started
                    received = [r for r in received_log(gateway)[seen:] if r[0] == "+254711000001"]
                    assert sent == args.rows and received == written, "lost, doubled or out of order"
                    rates.setdefault((side, "lanes"), []).append(args.rows / elapsed)
                    db.session.execute(delete(OutboxMessage))
                    db.session.commit()
                    print(
                        f"round {round_ + 1} {side}: bare {rates[(side, 'bare')][-1]:.0f}/s, "
                        f"lanes {rates[(side, 'lanes')][-1]:.0f}/s",
                        flush=True,
                    )
    finally:
        for gateway in gateways.values():
            gateway.stop()
    print(f"receipts/s to one number, median (min–max) of {args.rounds}, A = {args.a}, B = {args.b}:")
    for what in ("bare", "lanes"):
        a, b = rates[("A", what)], rates[("B", what)]
        print(
            f"  {what:6} A {spread(a):>20}  B {spread(b):>20}  B ÷ A {statistics.median(b) / statistics.median(a):.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
