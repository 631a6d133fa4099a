"""``python -m devtools.gateway [--host H] [--port 8025]``: the local Africa's Talking gateway
in a process of its own (``make run`` starts it); refuses ``TUMA_ENV=production``."""

import argparse
import os

from . import create_gateway
from .server import make_gateway_server


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.gateway",
        description="A local stand-in for Africa's Talking's API, for development and tests.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8025)
    args = parser.parse_args(argv)
    if os.environ.get("TUMA_ENV") == "production":
        # It accepts any API key and records every message instead of sending it.
        parser.exit(
            2, "Refusing to start: TUMA_ENV=production. The local gateway is for development and tests.\n"
        )
    server = make_gateway_server(args.host, args.port, create_gateway())
    print(f"Local Africa's Talking gateway on http://{args.host}:{args.port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
