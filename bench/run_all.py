"""``make bench``: every benchmark, one table, written with the machine's details to BENCHMARKS.md."""

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def machine() -> str:
    def first(cmd):
        try:
            return (
                subprocess.run(cmd, capture_output=True, text=True, check=False)
                .stdout.strip()
                .splitlines()[0]
            )
        except (OSError, IndexError):
            return "unknown"

    cpu = next(
        (line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
        "unknown",
    )
    mem_kb = next((int(line.split()[1]) for line in open("/proc/meminfo") if line.startswith("MemTotal")), 0)
    return (
        f"{os.cpu_count()} cores ({cpu}), {mem_kb / 1024 / 1024:.0f} GiB, {platform.system()} {platform.release()}; "
        f"Python {platform.python_version()}; {first(['psql', '--version'])}; {first(['redis-server', '--version'])}"
    )


def targets(ledger: dict, ussd: dict, sms: dict, minutes: float) -> str:
    """Each figure of this run beside the target it answers, and whether it meets it. A ledger
    ratio to pgbench is the median of the ratios of paired runs (``ledger_bench``'s docstring),
    shown with their min–max; whether it is met is decided on the median."""
    from bench.ledger_bench import vs_pgbench

    noop = ledger["rq_noop_jobs"]["median"]
    scenarios, scaling = ledger["scenarios"], {int(k): v for k, v in ledger["scaling"].items()}
    menu, bare, e2e = ussd["menu"], ussd["bare"], ussd["e2e"]

    def spread(name: str) -> str:
        paired = scenarios[name].get("vs_pgbench")
        if paired is None:
            return "{:.2f}×"
        return "{:.2f}×" + f" (pairs {paired['min']:.2f}–{paired['max']:.2f})"

    till = sms["figures"]["one number / lanes"]["median"]
    # The menu hops' ratios are the median of rounds run one after the other (ussd_bench).
    ratios = ussd.get("ratios") or {}
    hops = ratios.get("menu_bare") or dict(median=menu["median"] / bare["median"])
    floor = ratios.get("floor_bare") or dict(median=float("nan"))
    to_floor = ratios.get("menu_floor") or dict(median=float("nan"))

    def rounds(x: dict) -> str:
        return f" (rounds {x['min']:.2f}–{x['max']:.2f})" if "min" in x else ""

    hops_spread, floor_spread, to_floor_spread = rounds(hops), rounds(floor), rounds(to_floor)
    rows = [
        ("ledger, uniform: ≥ 1.5× pgbench TPC-B", vs_pgbench(ledger, "uniform"), 1.5, spread("uniform")),
        ("ledger, uniform: ≥ 10× the rq no-op job", scenarios["uniform"]["median"] / noop, 10, "{:.1f}×"),
        ("ledger, with a fee leg: ≥ 1.2× pgbench TPC-B", vs_pgbench(ledger, "fee"), 1.2, spread("fee")),
        (
            "ledger, workers: rising from 1 to 2",
            scaling[2]["median"] / scaling[1]["median"],
            1.0,
            "{:.2f}× (2 ÷ 1)",
        ),
        ("USSD menu hops: ≥ 0.35× the bare route", hops["median"], 0.35, "{:.2f}×" + hops_spread),
        # Not a target of the issue: where the floor of any hop with a locked session in
        # Redis stands on this machine (bench/floor_app.py), and the menu hops against it.
        (
            "(the floor, two Redis round trips: ÷ the bare route)",
            floor["median"],
            0.0,
            "{:.2f}×" + floor_spread,
        ),
        ("(USSD menu hops ÷ the floor)", to_floor["median"], 0.0, "{:.2f}×" + to_floor_spread),
        ("USSD menu hops: p99 < 20 ms at 80%", -menu["p99_ms"], -20, None),
        (
            "USSD PIN hop: argon2 + ≤ 3 ms (its CPU, in process)",
            -ussd["pin_hop"]["in_process"]["beyond_ms"],
            -3,
            "argon2 + {:.1f} ms",
        ),
        ("end to end at 80%: p99 < 1 s", -e2e["p99_ms"], -1000, None),
        ("end to end at 80%: p50 < 150 ms", -e2e["p50_ms"], -150, None),
        ("one merchant paid 5,000 times: ≥ 500 receipts/s", till, 500, "{:,.0f}/s"),
        ("the whole make bench (install aside): < 10 min", -minutes, -10, None),
    ]
    lines = ["| target | this run | met |", "| --- | ---: | :---: |"]
    for name, value, bound, fmt in rows:
        if fmt:
            shown = fmt.format(-value if bound < 0 else value)
        else:
            shown = f"{-value:.1f} min" if name.endswith("min") else f"{-value:,.1f} ms"
        met = value > bound if bound < 0 else value >= bound
        lines.append(f"| {name} | {shown} | {'' if name.startswith('(') else 'yes' if met else 'no'} |")
    checks = ledger["ledger_check"] and ussd["ledger_check"]
    lines.append(
        f"| ledger check and every transfer posted with its receipts, after every run | {'passed' if checks else 'FAILED'} | {'yes' if checks else 'no'} |"
    )
    return "\n".join(lines)


def main() -> int:
    from bench import allowance_bench, api_bench, ledger_bench, sms_sender_bench, ussd_bench, webhooks_bench
    from bench.common import Steps, minutes_line

    started = time.monotonic()
    out = tempfile.mkdtemp(prefix="tuma-bench-")
    py = sys.executable
    codes = []
    minutes: dict[str, float] = {}  # each part's wall time, to keep the whole run under ten minutes
    for name, script in (
        ("ledger", "ledger_bench.py"),
        ("ussd", "ussd_bench.py"),
        ("api", "api_bench.py"),
        ("webhooks", "webhooks_bench.py"),
        ("allowances", "allowance_bench.py"),
    ):
        part_started = time.monotonic()
        codes.append(
            subprocess.run(
                [py, os.path.join(ROOT, "bench", script), "--json", os.path.join(out, f"{name}.json")],
                cwd=ROOT,
                check=False,
                stdout=subprocess.DEVNULL,
            ).returncode
        )
        minutes[name] = (time.monotonic() - part_started) / 60
        print(f"{name}: {minutes[name]:.1f} min", file=sys.stderr, flush=True)
    # Receipts for one merchant paid 5,000 times (about a minute): the sender's code in jobs of
    # SMS_BATCH_SIZE rows against the local gateway, beside the sender before lanes.
    part_started = time.monotonic()
    sms_url = ledger_bench.fresh_database("tuma_bench_sms")
    codes.append(
        subprocess.run(
            [
                py,
                os.path.join(ROOT, "bench", "sms_sender_bench.py"),
                "--database-url",
                sms_url,
                "--workloads",
                "one number",
                "--rows",
                "5000",
                "--old-rows",
                "150",
                "--rounds",
                "3",
                "--job-limit",
                "100",
                "--json",
                os.path.join(out, "sms.json"),
            ],
            cwd=ROOT,
            check=False,
            stdout=subprocess.DEVNULL,
        ).returncode
    )
    ledger_bench.psql("DROP DATABASE IF EXISTS tuma_bench_sms WITH (FORCE)")
    minutes["busy till"] = (time.monotonic() - part_started) / 60
    ledger = json.load(open(os.path.join(out, "ledger.json")))
    sms = json.load(open(os.path.join(out, "sms.json")))
    ussd = json.load(open(os.path.join(out, "ussd.json")))
    api = json.load(open(os.path.join(out, "api.json")))
    webhooks = json.load(open(os.path.join(out, "webhooks.json")))
    allowances = json.load(open(os.path.join(out, "allowances.json")))
    # Where the parts' minutes went (bench/common.py's Steps): what no step of a part covers,
    # its interpreter's start and imports included, is "other".
    steps = dict.fromkeys(Steps.NAMES, 0.0)
    for name, part in (
        ("ledger", ledger),
        ("ussd", ussd),
        ("api", api),
        ("webhooks", webhooks),
        ("allowances", allowances),
        ("busy till", sms),
    ):
        counted = part.get("minutes_per_step", {})
        for step in Steps.NAMES[:-1]:
            steps[step] += counted.get(step, 0.0)
        steps["other"] += max(0.0, minutes[name] - sum(counted.get(step, 0.0) for step in Steps.NAMES[:-1]))

    class Args:  # the defaults the scripts ran with
        transfers, accounts, batch, workers, runs = 12_000, 100_000, 500, 2, 3
        users, seconds = 24_000, 8
        payouts = 10_000

    class AllowanceArgs:  # allowance_bench.py's defaults
        charges, hot, transfers, workers, runs = 30_000, 50, 5_000, 2, 3

    report = "\n".join(
        [
            "# Benchmarks",
            "",
            f"Run by `make bench` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC. Machine: {machine()}.",
            "Absolute figures drift on a shared machine: what counts is their ratios to baselines measured in the same run. "
            "The ledger's ratios to pgbench (uniform, fee) are the median of paired runs: each ledger run "
            "beside its own pgbench run, alternately before and after it (bench/ledger_bench.py says why). "
            f"The whole run took {(time.monotonic() - started) / 60:.1f} minutes.",
            "Minutes per part: " + ", ".join(f"{name} {m:.1f}" for name, m in minutes.items()) + ".",
            f"Minutes per step, all parts: {minutes_line(steps)} (bench/common.py's Steps says which is which).",
            "",
            "## Against the targets (issue 19)",
            "",
            targets(ledger, ussd, sms, (time.monotonic() - started) / 60),
            "",
            "## Ledger throughput",
            "",
            ledger_bench.table(
                {**ledger, "scaling": {int(k): v for k, v in ledger["scaling"].items()}}, Args
            ),
            "",
            "## USSD hops and end to end",
            "",
            ussd_bench.table(ussd, Args),
            "",
            "## Receipts for a busy till",
            "",
            sms_sender_bench.table(sms),
            "",
            "## Merchant API payouts",
            "",
            api_bench.table(api, Args),
            "",
            "## Webhook deliveries",
            "",
            "Events POSTed signed to the local receiver by the delivery job's code (SQLite, one process).",
            "",
            webhooks_bench.table(webhooks),
            "",
            "## Allowances: charges and settlements",
            "",
            allowance_bench.table(allowances, AllowanceArgs),
            "",
            # The profiles and what they mean are written by hand; the figures above are this run's.
            open(os.path.join(ROOT, "bench", "analysis.md")).read().rstrip(),
            "",
        ]
    )
    print(report)
    with open(os.path.join(ROOT, "BENCHMARKS.md"), "w") as fh:
        fh.write(report)
    return max(codes)


if __name__ == "__main__":
    sys.exit(main())
