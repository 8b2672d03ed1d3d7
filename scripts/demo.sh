#!/usr/bin/env bash
# The main job on the embedded default: set up, then deploy repo-template for a
# primary and a secondary into ./demo and show what is live.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/dhcp-gitops demo "$@"
