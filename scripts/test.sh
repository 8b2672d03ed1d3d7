#!/usr/bin/env bash
# The whole test suite: set up, lint, type-check, then every test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
.venv/bin/ruff check agent webhook tests
.venv/bin/ruff format --check agent webhook tests
.venv/bin/mypy
# pytest exits 5 when it collected nothing: that is a failure here, as any non-zero is.
exec .venv/bin/pytest "$@"
