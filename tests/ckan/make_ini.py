"""Write a CKAN ini for a test database and create CKAN's tables in it.

Run with the venv's python (scripts/ckan-venv.sh VERSION), any CKAN from 2.8 to
2.12; this file is Python 2.7 and 3 at once, for CKAN 2.8:

    <venv>/bin/python tests/ckan/make_ini.py --database-url URL --dir DIR [--no-init]

URL must point at an existing, EMPTY database. DIR receives `ckan.ini`,
`storage/` and `make_ini.log` (output of the ckan commands, which run in
this one process: each `ckan` process would pay CKAN's import time again). On success one JSON
line goes to stdout:

    {"ini": "DIR/ckan.ini", "token_secret": "string:...", "site_url": "...",
     "ckan_version": "2.12.0", "seconds": {"config": .., "db_init": .., "migrations": ..}}

`token_secret` is the exact value of `api_token.jwt.encode.secret` (and of
`.decode.secret`), so a test can verify CKAN's API tokens (HS256 JWTs) itself.
CKAN 2.8 has no API tokens: the setting is written all the same and unused.

How each version is set up:
- 2.9+: `ckan generate config`, `ckan config-tool`, `ckan db init` (2.10+: also
  `ckan db pending-migrations --apply`, the activity plugin's tables).
- 2.8: CKAN's Paste template rendered here (what `paster make-config` does),
  then the Pylons-era loader ckan.lib.cli.load_config and model.repo.init_db()
  (what `paster db init` does).
- 2.8 and 2.9 read `who.ini` from the ini's directory: it is copied from CKAN.

No Solr and no Redis: both URLs point at 127.0.0.1 port 1, where nothing
listens. nosolr.py patches CKAN's search layer so dataset writes work anyway;
Redis is only needed for background jobs.
"""
from __future__ import print_function

import argparse
import binascii
import json
import os
import re
import shutil
import sys
import time
import traceback
import uuid

try:
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit
except ImportError:  # Python 2.7, for CKAN 2.8
    from urllib import urlencode
    from urlparse import parse_qsl, urlsplit, urlunsplit

SITE_URL = "http://127.0.0.1:5000"
# Port 1 on loopback: nothing listens there, so connections fail at once.
CLOSED = "127.0.0.1:1"


def version_tuple(text):
    return tuple(int(part) for part in re.findall(r"\d+", text)[:2])


def sqlalchemy_url(url):
    """postgres://... -> postgresql://... (SQLAlchemy 2 knows only the latter),
    tagged with application_name=ckan unless the URL already names one."""
    parts = urlsplit(url)
    scheme = parts.scheme
    if scheme in ("postgres", "postgresql"):
        scheme = "postgresql"
    else:
        raise SystemExit("make_ini.py: not a PostgreSQL URL: %r" % url)
    query = dict(parse_qsl(parts.query))
    query.setdefault("application_name", "ckan")
    return urlunsplit((scheme, parts.netloc, parts.path, urlencode(query), ""))


def log(text):
    print(text)
    sys.stdout.flush()


def ckan_cli(args):
    """One `ckan ARGS...` command (CKAN 2.9+), in this process. Loading CKAN costs
    seconds, so the commands share one interpreter (make_app runs once per `-c`
    command)."""
    from ckan.cli.cli import ckan

    t0 = time.time()
    log("$ ckan %s" % " ".join(args))
    # CKAN decides from sys.argv whether a command needs a loaded config
    # (`generate config` and `config-tool` do not).
    sys.argv = ["ckan"] + args
    try:
        ckan.main(args, prog_name="ckan", standalone_mode=False)
    except SystemExit as exc:  # click may still exit on errors
        if exc.code not in (None, 0):
            raise RuntimeError("ckan %s: exit %s" % (" ".join(args[:4]), exc.code))
    return round(time.time() - t0, 2)


def set_options(ini, options):
    """Sets `key = value` lines in [app:main] (replacing a line, commented out or
    not, that sets the key), as `ckan config-tool` does in 2.9+."""
    with open(ini) as f:
        lines = f.read().split("\n")
    start = lines.index("[app:main]") + 1
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("[")), len(lines))
    for option in options:
        key = option.split("=", 1)[0].strip()
        pattern = re.compile(r"^#?\s*%s\s*=" % re.escape(key))
        found = [i for i in range(start, end) if pattern.match(lines[i])]
        if found:
            lines[found[0]] = option
        else:
            lines.insert(end, option)
            end += 1
    with open(ini, "w") as f:
        f.write("\n".join(lines))


def copy_who_ini(out):
    import ckan

    source = os.path.join(os.path.dirname(ckan.__file__), "config", "who.ini")
    shutil.copy(source, os.path.join(out, "who.ini"))


def setup_28(ini, out, options, init, seconds):
    """CKAN 2.8: render the Paste template, set the options, `paster db init`."""
    import ckan

    t0 = time.time()
    template = os.path.join(os.path.dirname(ckan.__file__), "config", "deployment.ini_tmpl")
    with open(template) as f:
        text = f.read()
    text = text.replace("${app_instance_uuid}", str(uuid.uuid4()))
    text = text.replace("${app_instance_secret}", binascii.hexlify(os.urandom(24)).decode())
    with open(ini, "w") as f:
        f.write(text)
    set_options(ini, options + [
        # The template's cache_dir is shared by every CKAN on the machine.
        "cache_dir = " + os.path.join(out, "cache"),
        "ckan.plugins = ",
    ])
    copy_who_ini(out)
    seconds["config"] = round(time.time() - t0, 2)
    if not init:
        return

    t0 = time.time()
    import nosolr
    from ckan.lib import cli

    nosolr.disable_solr()
    log("$ paster db init (in process)")
    cli.load_config(ini, load_site_user=False)
    import ckan.model as model

    model.repo.init_db()
    model.Session.remove()
    seconds["db_init"] = round(time.time() - t0, 2)


def setup_29_and_later(ini, out, options, init, seconds, version):
    t0 = time.time()
    # The generated file carries CKAN's defaults, logging sections and fresh
    # session secrets; config-tool then sets what the tests depend on.
    ckan_cli(["generate", "config", ini])
    # 2.10+: the activity stream is a plugin with its own migrations.
    plugins = "activity" if version >= (2, 10) else ""
    ckan_cli(["config-tool", ini] + options + ["ckan.plugins = " + plugins])
    if version < (2, 10):
        copy_who_ini(out)
    seconds["config"] = round(time.time() - t0, 2)
    if not init:
        return

    import nosolr

    nosolr.disable_solr()
    seconds["db_init"] = ckan_cli(["-c", ini, "db", "init"])
    if version >= (2, 10):
        # In 2.12 `db init` already runs the plugins' migrations; the second
        # command is what the CKAN docs prescribe and finds nothing left to do.
        seconds["migrations"] = ckan_cli(["-c", ini, "db", "pending-migrations", "--apply"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--database-url", required=True)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--no-init", action="store_true", help="only write the ini")
    args = ap.parse_args()

    import ckan

    version = version_tuple(ckan.__version__)
    out = os.path.abspath(args.dir)
    if not os.path.isdir(os.path.join(out, "storage")):
        os.makedirs(os.path.join(out, "storage"))
    ini = os.path.join(out, "ckan.ini")
    log_path = os.path.join(out, "make_ini.log")
    secret = "string:" + binascii.hexlify(os.urandom(32)).decode()
    seconds = {}

    # Everything CKAN prints or logs goes to make_ini.log; the real stdout is kept
    # for the one result line and the real stderr for a failure's log tail.
    result = os.fdopen(os.dup(1), "w")
    errors = os.fdopen(os.dup(2), "w")
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    try:
        options = [
            "sqlalchemy.url = " + sqlalchemy_url(args.database_url),
            "ckan.site_url = " + SITE_URL,
            "ckan.site_id = ckan-webhooks-test",
            "solr_url = http://%s/solr/ckan" % CLOSED,
            "ckan.redis.url = redis://%s/0" % CLOSED,
            "ckan.storage_path = " + os.path.join(out, "storage"),
            "ckan.auth.allow_dataset_collaborators = true",
            "api_token.jwt.encode.secret = " + secret,
            "api_token.jwt.decode.secret = " + secret,
            "api_token.jwt.algorithm = HS256",
        ]
        if version < (2, 9):
            setup_28(ini, out, options, not args.no_init, seconds)
        else:
            setup_29_and_later(ini, out, options, not args.no_init, seconds, version)
    except BaseException as exc:  # noqa: BLE001 - report, then fail
        traceback.print_exc()
        sys.stdout.flush()
        with open(log_path) as f:
            errors.write(f.read()[-4000:])
        errors.write("make_ini.py: %s\n" % (exc,))
        errors.flush()
        os._exit(1)

    result.write(json.dumps({"ini": ini, "token_secret": secret, "site_url": SITE_URL,
                             "ckan_version": ckan.__version__, "seconds": seconds}) + "\n")
    result.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip interpreter teardown (CKAN's engine pool, atexit hooks): nothing to keep.
    os._exit(0)


if __name__ == "__main__":
    main()
