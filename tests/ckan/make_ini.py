"""Write a CKAN 2.12 ini for a test database and create CKAN's tables in it.

Run with the venv's python (scripts/ckan-venv.sh):

    <venv>/bin/python tests/ckan/make_ini.py --database-url URL --dir DIR [--no-init]

URL must point at an existing, EMPTY database. DIR receives `ckan.ini`,
`storage/` and `make_ini.log` (output of the ckan commands, which run in
this one process: each `ckan` process would pay CKAN's import time again). On success one JSON
line goes to stdout:

    {"ini": "DIR/ckan.ini", "token_secret": "string:...", "site_url": "...",
     "seconds": {"config": .., "db_init": .., "migrations": ..}}

`token_secret` is the exact value of `api_token.jwt.encode.secret` (and of
`.decode.secret`), so a test can verify CKAN's API tokens (HS256 JWTs) itself.

No Solr and no Redis: both URLs point at 127.0.0.1 port 1, where nothing
listens. tests/ckan/driver.py patches CKAN's search layer so dataset writes
work anyway; Redis is only needed for background jobs.
"""
import argparse
import json
import os
import secrets
import traceback
import sys
import time
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

SITE_URL = "http://127.0.0.1:5000"
# Port 1 on loopback: nothing listens there, so connections fail at once.
CLOSED = "127.0.0.1:1"


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


def ckan_cli(args):
    """One `ckan ARGS...` command, in this process. Loading CKAN costs seconds, so
    the four commands share one interpreter (make_app runs once per `-c` command)."""
    from ckan.cli.cli import ckan

    t0 = time.time()
    print("$ ckan %s" % " ".join(args), flush=True)
    # CKAN decides from sys.argv whether a command needs a loaded config
    # (`generate config` and `config-tool` do not).
    sys.argv = ["ckan"] + args
    try:
        ckan.main(args, prog_name="ckan", standalone_mode=False)
    except SystemExit as exc:  # click may still exit on errors
        if exc.code not in (None, 0):
            raise RuntimeError("ckan %s: exit %s" % (" ".join(args[:4]), exc.code))
    return round(time.time() - t0, 2)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--database-url", required=True)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--no-init", action="store_true", help="only write the ini")
    args = ap.parse_args()

    out = os.path.abspath(args.dir)
    os.makedirs(os.path.join(out, "storage"), exist_ok=True)
    ini = os.path.join(out, "ckan.ini")
    log_path = os.path.join(out, "make_ini.log")
    secret = "string:" + secrets.token_urlsafe(32)
    seconds = {}

    # Everything CKAN prints or logs goes to make_ini.log; the real stdout is kept
    # for the one result line and the real stderr for a failure's log tail.
    result = os.fdopen(os.dup(1), "w")
    errors = os.fdopen(os.dup(2), "w")
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    try:
        t0 = time.time()
        # The generated file carries CKAN's defaults, logging sections and fresh
        # session secrets; config-tool then sets what the tests depend on.
        ckan_cli(["generate", "config", ini])
        options = [
            "sqlalchemy.url = " + sqlalchemy_url(args.database_url),
            "ckan.site_url = " + SITE_URL,
            "ckan.site_id = ckan-webhooks-test",
            "solr_url = http://%s/solr/ckan" % CLOSED,
            "ckan.redis.url = redis://%s/0" % CLOSED,
            "ckan.storage_path = " + os.path.join(out, "storage"),
            # 2.10+: the activity stream is a plugin with its own migrations.
            "ckan.plugins = activity",
            "ckan.auth.allow_dataset_collaborators = true",
            "api_token.jwt.encode.secret = " + secret,
            "api_token.jwt.decode.secret = " + secret,
            "api_token.jwt.algorithm = HS256",
        ]
        ckan_cli(["config-tool", ini] + options)
        seconds["config"] = round(time.time() - t0, 2)
        if not args.no_init:
            # In 2.12 `db init` already runs the plugins' migrations; the second
            # command is what the CKAN docs prescribe and finds nothing left to do.
            seconds["db_init"] = ckan_cli(["-c", ini, "db", "init"])
            seconds["migrations"] = ckan_cli(
                ["-c", ini, "db", "pending-migrations", "--apply"]
            )
    except BaseException as exc:  # noqa: BLE001 - report, then fail
        traceback.print_exc()
        sys.stdout.flush()
        with open(log_path, errors="replace") as f:
            errors.write(f.read()[-4000:])
        errors.write("make_ini.py: %s\n" % (exc,))
        errors.flush()
        os._exit(1)

    result.write(json.dumps({"ini": ini, "token_secret": secret,
                             "site_url": SITE_URL, "seconds": seconds}) + "\n")
    result.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip interpreter teardown (CKAN's engine pool, atexit hooks): nothing to keep.
    os._exit(0)


if __name__ == "__main__":
    main()
