"""Real CKAN (2.8 to 2.12), in-process, driven over stdin/stdout with JSON lines.

    <venv>/bin/python tests/ckan/driver.py --ini DIR/ckan.ini

Used by tests/it/support/ckan.rs. This file is Python 2.7 and 3 at once, for
CKAN 2.8. CKAN is loaded the way its own command line loads it (2.9+:
ckan.cli.load_config + make_app; 2.8: the Pylons-era ckan.lib.cli.load_config),
without Solr: the search layer is patched in this process (see nosolr.py). The
ini comes from tests/ckan/make_ini.py.

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
        Returns a credential for NAME as a string: a new CKAN API token
        (api_token_create) on 2.9+, the user's legacy API key (user.apikey) on
        2.8, which has no API tokens.
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

import nosolr

try:
    STRING = basestring  # noqa: F821 - Python 2.7, for CKAN 2.8
except NameError:
    STRING = str

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
    return os.fdopen(fd, "wb", 0)


def version_tuple(text):
    return tuple(int(part) for part in text.split(".")[:2])


def load_ckan(ini):
    """Loads CKAN's config and app; returns the Flask app to make request contexts."""
    import ckan

    ini = os.path.abspath(ini)
    if version_tuple(ckan.__version__) < (2, 9):
        # 2.8: what `paster` commands do. It keeps a test request context of the
        # Flask app (for url_for) whose app is the one to use.
        from ckan.lib import cli

        cli.load_config(ini)
        return cli._cli_test_request_context.app
    from ckan.cli import load_config
    from ckan.config.middleware import make_app

    app = make_app(load_config(ini))
    if hasattr(app, "apps"):
        # 2.9: a dispatcher between the Pylons and the Flask app.
        return app.apps["flask_app"]._wsgi_app
    # 2.10+: CKAN's middleware wraps the Flask app.
    return app._wsgi_app


class Driver(object):
    def __init__(self, flask_app):
        import ckan
        import ckan.model as model
        import ckanapi
        import ckan.logic as logic

        self.app = flask_app
        self.version = version_tuple(ckan.__version__)
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
                # Before 2.11 user_create ignores "sysadmin": do what
                # `ckan sysadmin add` (2.8: `paster sysadmin add`) does.
                self.model.Session.remove()
                obj = self.model.User.get(user["id"])
                obj.sysadmin = True
                self.model.repo.commit()
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
        if self.version < (2, 9):
            # 2.8 has no API tokens: callers send the legacy API key.
            obj = self.model.User.get(user)
            if obj is None:
                raise self.logic.NotFound("no user %s" % user)
            return obj.apikey
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
        if not isinstance(name, STRING) or not name:
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
        # readline, not iteration: Python 2's file iterator reads ahead and would
        # wait for more requests before answering this one.
        for line in iter(sys.stdin.readline, ""):
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
                    if self.version < (2, 9):
                        # 2.8's authz reads c.userobj, which is flask.g here, and
                        # only copes with it being None, not with it missing.
                        import flask

                        flask.g.user = None
                        flask.g.userobj = None
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
    line = json.dumps(obj, default=str) + "\n"
    out.write(line.encode("utf-8"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ini", required=True)
    args = ap.parse_args()
    out = protocol_stdout()
    nosolr.disable_solr()
    app = load_ckan(args.ini)
    Driver(app).serve(out)


if __name__ == "__main__":
    main()
