#!/usr/bin/env bash
# Create the Python venv for one CKAN version, as used by the real-CKAN integration
# tests (tests/it/support/ckan.rs drives CKAN through tests/ckan/driver.py).
#
#   bash scripts/ckan-venv.sh [VERSION]   # default 2.12.0; prints the venv path last
#
# VERSION is one of 2.8.12, 2.9.11, 2.10.11, 2.11.6, 2.12.0. Each gets its own venv,
# <repo>/target/ckan-venv-<VERSION>, built with the Python that version supports:
#
#   CKAN     Python  what is installed (PyPI only)
#   2.12.0   3.11    ckan[requirements] wheel, ckanapi
#   2.11.6   3.11    ckan[requirements] wheel, ckanapi
#   2.10.11  3.10    ckan[requirements] wheel, ckanapi
#   2.9.11   3.8     the sdist's requirements.txt (setuptools 44), the sdist, ckanapi<4.11
#   2.8.12   2.7     a virtualenv; the sdist's requirements.txt, the sdist, ckanapi 4.3,
#                    and one SQL line of SQLAlchemy 1.1 patched for PostgreSQL >= 12
#
# Environment:
#   CKAN_WEBHOOKS_CKAN_VENVS  the directory holding the venvs (default <repo>/target)
#   CKAN_WEBHOOKS_PYTHON      the interpreter to build from (default: pyenv's X.Y for the
#                             version, else pythonX.Y on PATH)
#
# Idempotent: a stamp file inside the venv records what was installed; when it
# matches, nothing is done. The pip cache is used as usual (PIP_CACHE_DIR).
#
# Needs on the machine: the right Python (with venv; 2.7 needs only pip), gcc and the
# PostgreSQL client headers (psycopg2 is built from source: `pg_config` on PATH,
# Debian package `libpq-dev`).
set -euo pipefail

version=${1:-2.12.0}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venvs=${CKAN_WEBHOOKS_CKAN_VENVS:-$repo/target}
venv=$venvs/ckan-venv-$version
stamp=$venv/.ckan-webhooks-stamp

die() { echo "ckan-venv.sh: $*" >&2; exit 1; }
say() { echo "ckan-venv.sh [$version]: $*" >&2; }

case $version in
    2.12.0 | 2.11.6) want=3.11 ;;
    2.10.11) want=3.10 ;;
    2.9.11) want=3.8 ;;
    2.8.12) want=2.7 ;;
    *) die "unknown CKAN version '$version' (2.8.12, 2.9.11, 2.10.11, 2.11.6 or 2.12.0)" ;;
esac
# Bump the trailing tag when the recipe below changes, so old venvs are rebuilt.
STAMP_VALUE="ckan==$version python$want v2"

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$STAMP_VALUE" ] && [ -x "$venv/bin/python" ] \
    && "$venv/bin/python" -c 'import ckan, ckanapi, psycopg2' 2>/dev/null; then
    say "up to date ($STAMP_VALUE)"
    echo "$venv"
    exit 0
fi

# The interpreter: the override, else pyenv's newest X.Y, else pythonX.Y on PATH.
find_python() {
    if [ -n "${CKAN_WEBHOOKS_PYTHON:-}" ]; then
        echo "$CKAN_WEBHOOKS_PYTHON"
        return
    fi
    local root candidate
    root=$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")
    candidate=$(ls -d "$root/versions/$want".* 2>/dev/null | sort -V | tail -n1 || true)
    if [ -n "$candidate" ] && [ -x "$candidate/bin/python" ]; then
        echo "$candidate/bin/python"
    else
        command -v "python$want" || true
    fi
}
py=$(find_python)
[ -n "$py" ] || die "no Python $want found (CKAN $version needs it): install it with pyenv or set CKAN_WEBHOOKS_PYTHON"
got=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])') || die "$py does not run"
[ "$got" = "$want" ] || die "$py is Python $got, CKAN $version needs $want (set CKAN_WEBHOOKS_PYTHON)"
command -v pg_config >/dev/null \
    || die "pg_config not found: install the PostgreSQL client headers (Debian: apt-get install libpq-dev) to build psycopg2"
command -v gcc >/dev/null || command -v cc >/dev/null || die "no C compiler found (gcc): needed to build psycopg2"

t0=$(date +%s)
rm -rf "$venv"
mkdir -p "$venvs"
say "creating $venv with $py"
pip_q() { "$venv/bin/pip" install -q --disable-pip-version-check "$@" >&2; }

# The 2.8 and 2.9 releases on PyPI are sdists that pin their dependencies in a
# requirements.txt inside the archive (their setup.py declares almost none).
unpack_sdist() {
    local dl=$venvs/ckan-sdist
    mkdir -p "$dl"
    if [ ! -f "$dl/ckan-$version.tar.gz" ]; then
        "$py" -m pip download -q --disable-pip-version-check --no-deps --no-binary :all: \
            -d "$dl" "ckan==$version" >&2
    fi
    rm -rf "$dl/ckan-$version"
    tar -C "$dl" -xzf "$dl/ckan-$version.tar.gz"
    sdist=$dl/ckan-$version.tar.gz
    requirements=$dl/ckan-$version/requirements.txt
}

case $version in
    2.8.*)
        # Python 2.7 has no venv module: a virtualenv old enough to still make 2.7
        # environments, installed beside the venvs rather than into pyenv's Python.
        tools=$venvs/py27-virtualenv
        if ! PYTHONPATH=$tools "$py" -m virtualenv --version >/dev/null 2>&1; then
            "$py" -m pip install -q --disable-pip-version-check --target "$tools" "virtualenv<20.22" >&2
        fi
        PYTHONPATH=$tools "$py" -m virtualenv -q -p "$py" "$venv" >&2
        unpack_sdist
        # CKAN 2.8's requirements need an old setuptools (and a pip that still runs on 2.7).
        pip_q "pip<21" "setuptools==36.1"
        pip_q -r "$requirements"
        pip_q --no-deps "$sdist"
        pip_q "ckanapi==4.3"
        # SQLAlchemy 1.1 (2.8's pin; vdm refuses anything newer) reflects CHECK
        # constraints through pg_constraint.consrc, which PostgreSQL 12 removed, so
        # `db init` fails on a current server. One SQL expression is replaced with its
        # pg_get_constraintdef() equivalent ("CHECK (" is 7 characters).
        base=$venv/lib/python2.7/site-packages/sqlalchemy/dialects/postgresql/base.py
        grep -q 'cons.consrc as src' "$base" || die "SQLAlchemy's consrc query not found in $base"
        sed -i 's|cons\.consrc as src|substring(pg_catalog.pg_get_constraintdef(cons.oid) from 7) as src|' "$base"
        rm -f "${base}c"
        ;;
    2.9.*)
        "$py" -m venv "$venv"
        unpack_sdist
        pip_q "pip<24" "setuptools==44.1.0" wheel
        pip_q -r "$requirements"
        pip_q --no-deps "$sdist"
        # An older ckanapi, of the same era as 2.9's pins.
        pip_q "ckanapi<4.11"
        ;;
    *)
        "$py" -m venv "$venv"
        # CKAN 2.10+ imports pkg_resources, which recent setuptools releases drop.
        pip_q --upgrade pip "setuptools<82" wheel
        # `pip install ckan` alone installs no dependencies: the 2.10+ wheels declare
        # their pins only under the `requirements` extra.
        pip_q "ckan[requirements]==$version" ckanapi
        ;;
esac

"$venv/bin/python" -c 'import ckan, ckanapi, psycopg2' \
    || die "the venv does not import ckan/ckanapi/psycopg2"
echo "$STAMP_VALUE" > "$stamp"
say "done in $(( $(date +%s) - t0 ))s"
echo "$venv"
