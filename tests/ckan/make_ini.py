"""Write a CKAN 2.12 ini for a test database and create CKAN's tables in it.

Run with the venv's python (scripts/ckan-venv.sh):

    <venv>/bin/python tests/ckan/make_ini.py --database-url URL --dir DIR [--no-init]

URL must point at an existing, EMPTY database. DIR receives `ckan.ini`,
`storage/` and `make_ini.log` (output of the ckan commands). On success one JSON
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
import subprocess
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


def run(cmd, log):
    log.write("$ %s\n" % " ".join(cmd))
    log.flush()
    t0 = time.time()
    proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        log.flush()
        with open(log.name) as f:
            tail = f.read()[-4000:]
        sys.stderr.write(tail)
        raise SystemExit("make_ini.py: %s failed (exit %d)" % (" ".join(cmd[1:4]), proc.returncode))
    return round(time.time() - t0, 2)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--database-url", required=True)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--no-init", action="store_true", help="only write the ini")
    args = ap.parse_args()

    ckan = os.path.join(os.path.dirname(sys.executable), "ckan")
    if not os.path.exists(ckan):
        raise SystemExit("make_ini.py: no `ckan` next to %s: run scripts/ckan-venv.sh" % sys.executable)
    out = os.path.abspath(args.dir)
    os.makedirs(os.path.join(out, "storage"), exist_ok=True)
    ini = os.path.join(out, "ckan.ini")
    secret = "string:" + secrets.token_urlsafe(32)
    seconds = {}

    with open(os.path.join(out, "make_ini.log"), "a") as log:
        t0 = time.time()
        # The generated file carries CKAN's defaults, logging sections and fresh
        # session secrets; config-tool then sets what the tests depend on.
        run([ckan, "generate", "config", ini], log)
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
        run([ckan, "config-tool", ini] + options, log)
        seconds["config"] = round(time.time() - t0, 2)
        if not args.no_init:
            seconds["db_init"] = run([ckan, "-c", ini, "db", "init"], log)
            seconds["migrations"] = run(
                [ckan, "-c", ini, "db", "pending-migrations", "--apply"], log
            )

    print(json.dumps({"ini": ini, "token_secret": secret, "site_url": SITE_URL,
                      "seconds": seconds}))


if __name__ == "__main__":
    main()
