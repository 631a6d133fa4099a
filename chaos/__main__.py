"""``python -m chaos``: faults under load against real processes; see chaos/harness.py."""

import argparse
import os
import random
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from chaos.harness import Settings, chaos_database_url, print_report, run  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__)
    parser.add_argument("--seed", type=int, default=None, help="default: CHAOS_SEED, or a random one")
    parser.add_argument("--transfers", type=int, default=int(os.environ.get("CHAOS_TRANSFERS", 3000)))
    parser.add_argument("--faults", type=int, default=int(os.environ.get("CHAOS_FAULTS", 30)))
    parser.add_argument("--redis-port", type=int, default=int(os.environ.get("CHAOS_REDIS_PORT", 6390)))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--keep-database", action="store_true")
    args = parser.parse_args(argv)
    seed = args.seed
    if seed is None:
        seed = (
            int(os.environ["CHAOS_SEED"])
            if os.environ.get("CHAOS_SEED")
            else random.SystemRandom().randrange(10**9)
        )
    settings = Settings(
        seed=seed,
        transfers=args.transfers,
        faults=args.faults,
        database_url=os.environ.get("CHAOS_DATABASE_URL")
        or chaos_database_url(os.environ.get("DATABASE_URL")),
        redis_port=args.redis_port,
        workers=args.workers,
        keep_database=args.keep_database,
        log=lambda line: print(line, flush=True),
    )
    report = run(settings)
    print_report(report)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
