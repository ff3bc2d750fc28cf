"""Drives the webhook action API with the real ckanapi.RemoteCKAN client, as a CKAN
app developer would, and checks that ckanapi turns our errors into its exceptions.

Usage: client.py BASE_URL OWNER_TOKEN OTHER_TOKEN
Run by the Rust integration test `api::ckanapi_client`; prints "ok" on success.
"""

import re
import sys

try:
    import ckanapi
except ImportError:
    sys.stderr.write("ckanapi is not installed for %s: run scripts/ckan-venv.sh\n" % sys.executable)
    sys.exit(3)


def expect(exception, call, **params):
    """Calls `call(**params)` and returns the exception it must raise."""
    try:
        call(**params)
    except exception as err:
        return err
    raise AssertionError("%s(%r) did not raise %s" % (call, params, exception.__name__))


def main(base_url, owner_token, other_token):
    owner = ckanapi.RemoteCKAN(base_url, apikey=owner_token)
    other = ckanapi.RemoteCKAN(base_url, apikey=other_token)
    anonymous = ckanapi.RemoteCKAN(base_url)
    address = "https://hooks.example.org/ckanapi"

    # Create answers the bare id, as the old ckanext-webhooks plugin did.
    hook_id = owner.action.webhook_create(topic="dataset/create", address=address)
    assert re.fullmatch(r"[0-9a-f]{32}", hook_id), hook_id

    shown = owner.action.webhook_show(id=hook_id)
    assert shown["id"] == hook_id and shown["topic"] == "dataset/create", shown
    assert shown["address"] == address and shown["secret"].startswith("whsec_"), shown

    listed = owner.call_action("webhook_list")
    assert [hook["id"] for hook in listed] == [hook_id], listed

    # Errors come back as ckanapi's own exceptions.
    err = expect(ckanapi.ValidationError, owner.action.webhook_create, address=address)
    assert err.error_dict["topic"] == ["Missing value"], err.error_dict
    err = expect(ckanapi.ValidationError, owner.action.webhook_create,
                 topic="dataset/create", address="ftp://hooks.example.org/")
    assert "address" in err.error_dict, err.error_dict
    expect(ckanapi.NotFound, other.action.webhook_show, id=hook_id)
    expect(ckanapi.NotFound, other.action.webhook_delete, id=hook_id)
    expect(ckanapi.NotAuthorized, anonymous.action.webhook_list)
    bad = ckanapi.RemoteCKAN(base_url, apikey="not-a-token")
    expect(ckanapi.NotAuthorized, bad.action.webhook_create, topic="*", address=address)

    assert owner.action.webhook_delete(id=hook_id) is None
    expect(ckanapi.NotFound, owner.action.webhook_show, id=hook_id)
    assert owner.action.webhook_list() == []
    print("ok")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(*sys.argv[1:])
