#!/usr/bin/env bash
# The main job on the embedded default: set up, deploy repo-template for a
# primary and a secondary into ./demo, show what is live, then (on a terminal)
# run both agents on 127.0.0.1:8647 and :8648 until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
serve=()
[ -t 0 ] && serve=(--serve)
exec .venv/bin/dhcp-gitops demo "${serve[@]}" "$@"
