"""``python -m devtools.news [--host H] [--port 8027] [--tuma-url URL] [--key KEY]``: the demo
news site in a process of its own (``make run`` starts it); refuses ``TUMA_ENV=production``."""

import argparse
import os

from werkzeug.serving import make_server

from . import Tuma, create_news


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.news",
        description="A demo news site: a shilling an article, charged to a Tuma allowance.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8027)
    parser.add_argument("--tuma-url", default=os.environ.get("TUMA_URL", "http://127.0.0.1:8000"))
    parser.add_argument("--key", default=os.environ.get("TUMA_NEWS_API_KEY"))
    args = parser.parse_args(argv)
    if os.environ.get("TUMA_ENV") == "production":
        parser.exit(2, "Refusing to start: TUMA_ENV=production. The demo news site is for development.\n")
    if not args.key:
        parser.exit(2, "No API key: pass --key (or TUMA_NEWS_API_KEY); `make run` passes the demo's.\n")
    server = make_server(args.host, args.port, create_news(Tuma(args.tuma_url, args.key)), threaded=True)
    print(f"Demo news site on http://{args.host}:{args.port} (Tuma at {args.tuma_url})", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
