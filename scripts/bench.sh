#!/usr/bin/env bash
# The benchmarks: push-to-live against the floor, ansible-pull and the rsync pipeline;
# scale; the failover pair; a webhook storm; idle cost. Writes docs/benchmarks.md,
# docs/benchmarks.json and docs/benchmarks.svg.
#   scripts/bench.sh            the full run (about 8 minutes here)
#   scripts/bench.sh --quick    fewer rounds, for a look (about 2.5 minutes)
# Root: every dhcpd that serves runs in a network namespace the run makes and removes.
# Other options go to `python -m bench` (--only push,scale,... --out DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --bench
exec .venv/bin/python -m bench "$@"
