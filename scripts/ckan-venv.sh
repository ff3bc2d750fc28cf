#!/usr/bin/env bash
# Create the Python venv that the real-CKAN integration tests use
# (tests/it/real_ckan.rs through tests/ckan/driver.py).
#
#   bash scripts/ckan-venv.sh          # create or reuse; prints the venv path last
#
# Environment:
#   CKAN_WEBHOOKS_CKAN_VENV   where the venv goes (default: <repo>/target/ckan-venv)
#   CKAN_WEBHOOKS_PYTHON      the Python 3.11 to build it from (default: python3.11)
#
# Idempotent: a stamp file inside the venv records what was installed; when it
# matches, nothing is done. The pip cache is used as usual (PIP_CACHE_DIR), so a
# rebuild after `cargo clean` is mostly downloads-free.
#
# Needs on the machine: python3.11 with the venv module, gcc and the PostgreSQL
# client headers (psycopg2 is built from source: `pg_config` must be on PATH,
# Debian package `libpq-dev`).
set -euo pipefail

CKAN_VERSION=2.12.0
# Bump when the set of packages below changes, so old venvs are rebuilt.
STAMP_VALUE="ckan[requirements]==$CKAN_VERSION ckanapi setuptools<82 v1"

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${CKAN_WEBHOOKS_CKAN_VENV:-$repo/target/ckan-venv}
py=${CKAN_WEBHOOKS_PYTHON:-python3.11}
stamp=$venv/.ckan-webhooks-stamp

die() { echo "ckan-venv.sh: $*" >&2; exit 1; }

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$STAMP_VALUE" ] && [ -x "$venv/bin/python" ] \
   && "$venv/bin/python" -c 'import ckan, ckanapi' 2>/dev/null; then
  echo "ckan-venv.sh: up to date ($(cat "$stamp"))" >&2
  echo "$venv"
  exit 0
fi

command -v "$py" >/dev/null || die "$py not found (CKAN $CKAN_VERSION needs Python 3.11; set CKAN_WEBHOOKS_PYTHON)"
pyver=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
[ "$pyver" = "3.11" ] || die "$py is Python $pyver, want 3.11 (set CKAN_WEBHOOKS_PYTHON)"
# psycopg2 (pinned by ckan[requirements]) has no wheel here: it is built from
# source and needs pg_config (libpq-dev) and a C compiler.
command -v pg_config >/dev/null \
  || die "pg_config not found: install the PostgreSQL client headers (Debian: apt-get install libpq-dev) to build psycopg2"
command -v gcc >/dev/null || command -v cc >/dev/null \
  || die "no C compiler found (gcc): needed to build psycopg2"

t0=$(date +%s)
rm -rf "$venv"
mkdir -p "$(dirname "$venv")"
echo "ckan-venv.sh: creating $venv with $py" >&2
"$py" -m venv "$venv"
# Same pin as the lab setup (/work/shared/ckan/setup.sh): CKAN 2.12 imports
# pkg_resources, which recent setuptools releases are dropping.
"$venv/bin/pip" install -q --disable-pip-version-check --upgrade pip "setuptools<82" wheel >&2
# `pip install ckan` alone installs no dependencies: the 2.10+ wheels declare
# their pins only under the `requirements` extra.
"$venv/bin/pip" install -q --disable-pip-version-check "ckan[requirements]==$CKAN_VERSION" ckanapi >&2 \
  || die "pip install failed (see above; psycopg2 needs pg_config/libpq-dev and gcc)"
"$venv/bin/python" -c 'import ckan, ckanapi, psycopg2' \
  || die "the venv does not import ckan/ckanapi/psycopg2"
echo "$STAMP_VALUE" > "$stamp"
echo "ckan-venv.sh: done in $(( $(date +%s) - t0 ))s" >&2
echo "$venv"
