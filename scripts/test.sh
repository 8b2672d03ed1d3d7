#!/usr/bin/env bash
# The whole test suite: set up, lint, type-check, build and run the image, then every test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
.venv/bin/ruff check agent webhook tests bench lab
.venv/bin/ruff format --check agent webhook tests bench lab
.venv/bin/mypy
# The container image builds and runs (about 75 s on a fresh machine, seconds after).
scripts/container-check.sh
# pytest exits 5 when it collected nothing: that is a failure here, as any non-zero is.
exec .venv/bin/pytest "$@"
