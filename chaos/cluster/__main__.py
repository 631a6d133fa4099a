"""``python -m chaos.cluster [--seed N] [--keep]``: the cluster test (chaos/cluster/run.py).
``python -m chaos.cluster down`` removes what a crashed or ``--keep`` run left."""

import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from chaos.cluster import net  # noqa: E402
from chaos.cluster.run import main as run  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos.cluster", description=__doc__.splitlines()[0])
    parser.add_argument("command", nargs="?", default="run", choices=("run", "down"))
    parser.add_argument("--seed", type=int, default=None, help="default: CLUSTER_SEED, or a random one")
    parser.add_argument("--keep", action="store_true", help="leave the hosts running afterwards")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        parser.exit(2, "the cluster test makes network namespaces: run it as root\n")
    if args.command == "down":
        from chaos.cluster.hosts import remove_state

        net.down()
        remove_state()
        return 0
    return run(args.seed, keep=args.keep)


if __name__ == "__main__":
    sys.exit(main())
