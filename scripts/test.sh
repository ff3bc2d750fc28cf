#!/usr/bin/env bash
# Runs every test: prepares one Python venv per CKAN version the real-CKAN tests run
# on (reused when present), then the whole Rust suite.
#
# CKAN versions: CKAN_WEBHOOKS_CKAN_VERSIONS (space-separated), default "2.12.0 2.9.11":
# each gets target/ckan-venv-<version> from scripts/ckan-venv.sh, and its tests must
# pass. The tests of any other version skip, saying so, unless its venv exists. Every
# version: CKAN_WEBHOOKS_CKAN_VERSIONS="2.8.12 2.9.11 2.10.11 2.11.6 2.12.0".
# CKAN 2.12.0 is always built: most real-CKAN tests and the ckanapi client test use it.
#
# PostgreSQL: 127.0.0.1:5432 (trust, user postgres) when it runs, else each test
# process starts a throwaway cluster with initdb/pg_ctl. Override the server with
# CKAN_WEBHOOKS_TEST_DATABASE_URL. CKAN_WEBHOOKS_SKIP_REAL_CKAN=1 skips the venvs and
# the tests that need them.
set -euo pipefail
cd "$(dirname "$0")/.."

versions=${CKAN_WEBHOOKS_CKAN_VERSIONS:-"2.12.0 2.9.11"}
case " $versions " in *" 2.12.0 "*) ;; *) versions="2.12.0 $versions" ;; esac
export CKAN_WEBHOOKS_CKAN_VERSIONS="$versions"

if [ "${CKAN_WEBHOOKS_SKIP_REAL_CKAN:-}" = 1 ]; then
    echo "test.sh: CKAN_WEBHOOKS_SKIP_REAL_CKAN=1: the real-CKAN and ckanapi tests will skip" >&2
else
    for version in $versions; do
        t0=$(date +%s)
        bash scripts/ckan-venv.sh "$version" >/dev/null
        echo "test.sh: CKAN $version venv ready ($(( $(date +%s) - t0 ))s)" >&2
    done
fi
if [ -d target/ckan-venv ]; then
    echo "test.sh: target/ckan-venv is no longer used (now target/ckan-venv-2.12.0): remove it" >&2
fi
if [ ! -f ../shared/ckan/trace.md ]; then
    echo "test.sh: ../shared/ckan is absent: the tests on the five real CKAN schemas" \
         "(install cycles, 2.11 shapes) pass without checking anything" >&2
fi
cargo nextest run --workspace --no-fail-fast
