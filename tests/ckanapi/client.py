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

    # Update answers the hook as show does; a rotation shows the new secret and when
    # the old one stops signing, never the old one itself.
    updated = owner.action.webhook_update(id=hook_id, topic="dataset/*", rotate_secret=True,
                                          overlap_hours=2, rate_per_second=5)
    assert updated["topic"] == "dataset/*" and updated["rate_per_second"] == 5, updated
    assert updated["secret"].startswith("whsec_") and updated["secret"] != shown["secret"], updated
    assert updated["previous_secret_until"] and "previous_secret" not in updated, updated
    assert owner.action.webhook_show(id=hook_id) == updated
    err = expect(ckanapi.ValidationError, owner.action.webhook_update, id=hook_id, state="deleted")
    assert set(err.error_dict) == {"__type", "state"}, err.error_dict
    expect(ckanapi.NotFound, other.action.webhook_update, id=hook_id, rotate_secret=True)

    # No deliveries yet: an empty first and last page.
    page = owner.action.webhook_deliveries(id=hook_id, limit=10)
    assert page == {"results": [], "next_cursor": None}, page
    err = expect(ckanapi.ValidationError, owner.action.webhook_deliveries, id=hook_id, limit=501)
    assert "limit" in err.error_dict, err.error_dict
    expect(ckanapi.NotFound, other.action.webhook_deliveries, id=hook_id)
    expect(ckanapi.NotFound, other.action.webhook_redeliver, id=hook_id, dataset="any")
    assert owner.action.webhook_redeliver(id=hook_id, dataset="any") == 0

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
