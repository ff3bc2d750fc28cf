#!/usr/bin/env bash
# Runs every test: prepares the Python venv with CKAN 2.12 and ckanapi (used by the
# real-CKAN and ckanapi tests; reused when present), then the whole Rust suite.
# PostgreSQL: 127.0.0.1:5432 (trust, user postgres) when it runs, else each test
# process starts a throwaway cluster with initdb/pg_ctl. Override the server with
# CKAN_WEBHOOKS_TEST_DATABASE_URL. CKAN_WEBHOOKS_SKIP_REAL_CKAN=1 skips the venv and
# the tests that need it.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${CKAN_WEBHOOKS_SKIP_REAL_CKAN:-}" = 1 ]; then
    echo "test.sh: CKAN_WEBHOOKS_SKIP_REAL_CKAN=1: the real-CKAN and ckanapi tests will skip" >&2
else
    bash scripts/ckan-venv.sh
fi
if [ ! -f ../shared/ckan/trace.md ]; then
    echo "test.sh: ../shared/ckan is absent: the tests on the five real CKAN schemas" \
         "(install cycles, 2.11 shapes) pass without checking anything" >&2
fi
cargo nextest run --workspace --no-fail-fast
