#!/usr/bin/env bash
# The SIGKILL campaign: the real agent killed at every fault point (agent/fault.py)
# TRIALS times each (default 20), restarted and checked (tests/crashlab.py), then a
# table. Root, as scripts/test.sh: the real dhcpd serves only in network namespaces.
#   scripts/crash-campaign.sh [TRIALS] [--points NAME...] [--seed N] [--keep]
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python -m tests.crashlab --trials "${1:-20}" "${@:2}"
