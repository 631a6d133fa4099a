"""``python -m devtools.receiver [--host H] [--port 8026] [--secret S]``: the local stand-in
for a merchant's system in a process of its own (``make run`` starts it); refuses
``TUMA_ENV=production``."""

import argparse
import os

from werkzeug.serving import make_server

from . import Receiver, create_receiver


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.receiver",
        description="A local merchant's system: receives Tuma's webhook events, answers validation.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8026)
    parser.add_argument("--secret", default=os.environ.get("TUMA_DEMO_WEBHOOK_SECRET"))
    args = parser.parse_args(argv)
    if os.environ.get("TUMA_ENV") == "production":
        parser.exit(2, "Refusing to start: TUMA_ENV=production. The local receiver is for development.\n")
    server = make_server(args.host, args.port, create_receiver(Receiver(secret=args.secret)), threaded=True)
    print(f"Local webhook receiver on http://{args.host}:{args.port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
