"""Real CKAN 2.12, in-process, driven over stdin/stdout with JSON lines.

    <venv>/bin/python tests/ckan/driver.py --ini DIR/ckan.ini

Used by tests/it/support/ckan.rs. CKAN is loaded the way its CLI loads it
(ckan.cli.load_config + make_app), without Solr: the search layer is patched
in this process (see `disable_solr`). The ini comes from tests/ckan/make_ini.py.

Protocol: once CKAN is loaded, the driver writes one line

    {"ready": true, "ckan_version": "2.12.0", "python": "3.11.7"}

then reads one JSON request per line and answers each with exactly one line:

    {"ok": true, "result": ...}
    {"ok": false, "error": {"type": "ValidationError", "detail": {...}}}

Requests:

    {"action": NAME, "user": USER, "data": {...}, "context": {...}}
        Runs a CKAN action through ckanapi.LocalCKAN(username=USER). "user"
        null (or absent, or "") runs it as CKAN's site user. "context" is
        merged into LocalCKAN's context, e.g. {"allow_state_change": true} as
        the web UI's draft flow passes it.
    {"cmd": "setup"}
        Creates the standard fixtures (see SETUP below) and returns their ids:
        {"users": {name: id}, "orgs": {name: id}, "groups": {name: id}}.
    {"cmd": "token", "user": NAME}
        Returns a new CKAN API token (api_token_create) for NAME, as a string.
    {"cmd": "ping"}
        Returns "pong".
    {"cmd": "quit"}
        Answers null and exits. EOF on stdin also ends the driver.

Every request runs inside its own Flask test request context, and ends with
model.Session.remove() as CKAN does at the end of each web request: no
transaction stays open between two requests.

Error types are the CKAN exception class names (ValidationError,
NotAuthorized, NotFound, ...); "detail" is the error dict of a
ValidationError, else the message. Unexpected exceptions add "traceback".
Bad requests get type "BadRequest". Everything CKAN logs or prints goes to
stderr; stdout carries only the protocol.
"""
import argparse
import json
import os
import sys
import traceback

# The fixtures made by {"cmd": "setup"}. All users share PASSWORD and have the
# e-mail address <name>@example.invalid.
PASSWORD = "Lab-password-123!"
SETUP = {
    # name: (sysadmin?, full name)
    "users": {
        "lab_sysadmin": (True, "Lab Sysadmin"),
        "lab_admin": (False, "Lab Org Admin"),      # admin of lab-org
        "lab_editor": (False, "Lab Editor"),        # editor of lab-org and lab-org-2
        "lab_member": (False, "Lab Member"),        # member (read-only) of lab-org
        "lab_outsider": (False, "Lab Outsider"),    # no membership anywhere
    },
    # org name: {user: capacity}
    "orgs": {
        "lab-org": {"lab_admin": "admin", "lab_editor": "editor", "lab_member": "member"},
        "lab-org-2": {"lab_editor": "editor"},
    },
    # group name: {user: capacity}
    "groups": {
        "lab-group": {"lab_editor": "member"},
    },
}


def protocol_stdout():
    """A private copy of stdout for the protocol; fd 1 and sys.stdout are sent to
    stderr so that nothing CKAN or a library prints can corrupt the stream."""
    fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(fd, "w", buffering=1, encoding="utf-8")


def disable_solr():
    """Make ckan.lib.search work without a Solr server.

    In 2.12 package_create/update/delete index the dataset *before* the DB
    commit, and a failing index call rolls the write back. Indexing only reads
    the DB and talks HTTP, so turning it into a no-op changes none of the SQL
    CKAN issues. Searches answer "0 hits" (organization_show counts datasets
    with one), and package_show's read-through of the index fails with
    SearchError so it always reads the DB. Must run before make_app, which
    also asks Solr for its schema version.
    """
    import ckan.lib.search as search
    from ckan.lib.search import index, query

    def nothing(self, *args, **kwargs):
        return None

    # Every write path of the package index, including the ones that
    # bulk_update_* and `search-index` reach through index_for().
    for method in ("index_package", "update_dict", "insert_dict",
                   "delete_package", "remove_dict", "commit", "clear"):
        setattr(index.PackageSearchIndex, method, nothing)

    def no_hits(self, *args, **kwargs):
        self.count = 0
        self.results = []
        self.facets = {}
        return {"results": [], "count": 0, "facets": {}}

    def not_indexed(self, reference):
        raise search.SearchError("ckan-webhooks test driver: no Solr")

    query.PackageSearchQuery.run = no_hits
    query.PackageSearchQuery.get_index = not_indexed
    query.PackageSearchQuery.get_all_entity_ids = lambda self, *a, **k: []
    search.check_solr_schema_version = lambda *a, **k: False


def load_ckan(ini):
    from ckan.cli import load_config
    from ckan.config.middleware import make_app

    app = make_app(load_config(os.path.abspath(ini)))
    # make_app wraps the Flask app in CKAN's middleware; the Flask app is inside.
    return app._wsgi_app


class Driver:
    def __init__(self, flask_app):
        import ckan.model as model
        import ckanapi
        import ckan.logic as logic

        self.app = flask_app
        self.model = model
        self.ckanapi = ckanapi
        self.logic = logic

    def client(self, user):
        if user:
            return self.ckanapi.LocalCKAN(username=user)
        return self.ckanapi.LocalCKAN()  # the site user

    def action(self, name, user=None, data=None, context=None):
        ck = self.client(user)
        ctx = dict(ck.context)
        ctx.update(context or {})
        return ck.call_action(name, data or {}, context=ctx)

    def setup(self):
        ids = {"users": {}, "orgs": {}, "groups": {}}
        for name, (sysadmin, full) in SETUP["users"].items():
            data = {"name": name, "email": name + "@example.invalid",
                    "password": PASSWORD, "fullname": full}
            if sysadmin:
                data["sysadmin"] = True
            user = self.action("user_create", None, data)
            if sysadmin and not user.get("sysadmin"):
                raise RuntimeError("user_create did not make %s a sysadmin" % name)
            ids["users"][name] = user["id"]
            self.model.Session.remove()
        for kind, create, member_create in (
            ("orgs", "organization_create", "organization_member_create"),
            ("groups", "group_create", "group_member_create"),
        ):
            for name, members in SETUP[kind].items():
                title = name.replace("-", " ").title()
                obj = self.action(create, "lab_sysadmin", {"name": name, "title": title})
                ids[kind][name] = obj["id"]
                self.model.Session.remove()
                for user, role in members.items():
                    self.action(member_create, "lab_sysadmin",
                                {"id": name, "username": user, "role": role})
                    self.model.Session.remove()
        return ids

    def token(self, user):
        if not user:
            raise BadRequest("token needs a user")
        res = self.action("api_token_create", None,
                          {"user": user, "name": "ckan-webhooks-test"})
        token = res["token"]
        return token.decode("ascii") if isinstance(token, bytes) else token

    def handle(self, req):
        if not isinstance(req, dict):
            raise BadRequest("a request is a JSON object")
        cmd = req.get("cmd")
        if cmd == "setup":
            return self.setup()
        if cmd == "token":
            return self.token(req.get("user"))
        if cmd == "ping":
            return "pong"
        if cmd is not None:
            raise BadRequest("unknown cmd %r" % cmd)
        name = req.get("action")
        if not isinstance(name, str) or not name:
            raise BadRequest("need \"action\" or \"cmd\"")
        data = req.get("data") or {}
        context = req.get("context") or {}
        if not isinstance(data, dict) or not isinstance(context, dict):
            raise BadRequest("\"data\" and \"context\" must be objects")
        return self.action(name, req.get("user"), data, context)

    def error(self, exc):
        logic = self.logic
        if isinstance(exc, logic.ValidationError):
            detail = exc.error_dict
        else:
            # CKAN's NotFound often carries no message at all.
            detail = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        err = {"type": type(exc).__name__, "detail": detail}
        known = (logic.ValidationError, logic.NotAuthorized, logic.NotFound, BadRequest)
        if not isinstance(exc, known):
            err["traceback"] = traceback.format_exc()
        return err

    def serve(self, out):
        import ckan

        write(out, {"ready": True, "ckan_version": ckan.__version__,
                    "python": sys.version.split()[0]})
        for line in sys.stdin:
            line = line.strip()
            if not line:
                continue
            try:
                req = json.loads(line)
            except ValueError as exc:
                write(out, {"ok": False, "error": {"type": "BadRequest",
                                                   "detail": "not JSON: %s" % exc}})
                continue
            if isinstance(req, dict) and req.get("cmd") == "quit":
                write(out, {"ok": True, "result": None})
                return
            try:
                with self.app.test_request_context():
                    try:
                        resp = {"ok": True, "result": self.handle(req)}
                    finally:
                        # What CKAN does at the end of every request.
                        self.model.Session.remove()
            except Exception as exc:  # noqa: BLE001 - every failure is an answer
                resp = {"ok": False, "error": self.error(exc)}
                traceback.print_exc(file=sys.stderr)
                try:
                    self.model.Session.remove()
                except Exception:  # noqa: BLE001
                    pass
            write(out, resp)


class BadRequest(Exception):
    pass


def write(out, obj):
    out.write(json.dumps(obj, default=str) + "\n")
    out.flush()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ini", required=True)
    args = ap.parse_args()
    out = protocol_stdout()
    disable_solr()
    app = load_ckan(args.ini)
    Driver(app).serve(out)


if __name__ == "__main__":
    main()
