#!/usr/bin/env bash
# Runs every test: prepares the Python venv with CKAN 2.12 and ckanapi (used by the
# real-CKAN and ckanapi tests; reused when present), then the whole Rust suite.
# PostgreSQL: 127.0.0.1:5432 (trust, user postgres) when it runs, else each test
# process starts a throwaway cluster with initdb/pg_ctl. Override the server with
# CKAN_WEBHOOKS_TEST_DATABASE_URL.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/ckan-venv.sh
cargo nextest run --workspace --no-fail-fast
