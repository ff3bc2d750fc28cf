//! Receiver addresses built to slip past the private-target check or to confuse URL
//! parsers: other spellings of loopback and private IPv4 addresses, IPv6 forms that
//! embed them, names with a trailing dot, credentials, odd ports and other schemes.
//! With `allow_private_targets` off, none of them may become a webhook.

use super::expect_invalid;
use crate::support::api::ApiServer;
use crate::support::ckan_users;
use crate::support::db::TestDb;
use serde_json::json;

/// Spellings of loopback, private and unspecified addresses that resolvers or browsers
/// read as IP addresses.
const PRIVATE_FORMS: &[&str] = &[
    "http://127.0.0.1/",
    "http://2130706433/",
    "http://0x7f000001/",
    "http://0x7f.1/",
    "http://0X7F.0.0.1/",
    "http://0177.0.0.1/",
    "http://017700000001/",
    "http://127.1/",
    "http://127.0.0.1./",
    "http://0/",
    "http://0.0.0.0/",
    "http://10.0.0.1/",
    "http://012.0.0.1/",
    "http://167772161/",
    "http://169.254.169.254/latest/meta-data/",
    "http://0xa9fea9fe/",
    "http://localhost/",
    "http://localhost./",
    "http://LOCALHOST../",
    "http://hooks.localhost./",
    "http://[::1]/",
    "http://[::]/",
    "http://[0:0:0:0:0:0:0:1]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:7f00:1]/",
    "http://[::127.0.0.1]/",
    "http://[::a00:1]/",
    "http://[2002:7f00:1::]/",
    "http://[2002:c0a8:101::1]/",
    "http://[fe80::1%25eth0]/",
    "http://[fd00:ec2::254]/",
    "HTTP://127.0.0.1/",
    "https://127.0.0.1:443/",
    "http://hooks.example.org@127.0.0.1/",
    "http://user:pass@10.0.0.1/",
];

/// Addresses that are not usable http(s) URLs, whatever the host.
const MALFORMED: &[&str] = &[
    "file:///etc/passwd",
    "javascript:alert(1)",
    "gopher://hooks.example.org/",
    "ftp://hooks.example.org/",
    "http:/hooks.example.org/",
    "http:hooks.example.org",
    "//hooks.example.org/",
    "http:///in",
    "http://:80/",
    "http://hooks.example.org:0/",
    "http://hooks.example.org:65536/",
    "http://hooks.example.org:99999999999/",
    "http://hooks.example.org:+80/",
    "http://hooks.example.org:/",
    "http://user:pass@hooks.example.org/",
    "http://@hooks.example.org/",
    "http://hooks.example.123/",
    "http://1572395042/",
    "http://hooks.example.org\u{0}/",
    "http://hooks.example.org/\n",
    "http://ехаmple.org/",
    " http://hooks.example.org/",
];

#[tokio::test]
async fn private_spellings_are_refused() {
    let db = TestDb::installed().await;
    let client = db.client().await;
    let alice = ckan_users::user(&client, "alice", false).await;
    let api = ApiServer::start(&db).await;

    for address in PRIVATE_FORMS.iter().chain(MALFORMED) {
        let body = json!({"topic": "*", "address": address});
        let error = expect_invalid(&api, &alice.token, body, &["address"]).await;
        assert_eq!(error["address"].as_array().unwrap().len(), 1, "{address}");
    }

    // Nothing was stored on the way.
    let row = client
        .query_one("SELECT count(*) FROM ckan_webhooks.subscription", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 0);
    api.stop().await;
}

#[tokio::test]
async fn public_addresses_in_every_form_are_accepted() {
    let db = TestDb::installed().await;
    let client = db.client().await;
    let alice = ckan_users::user(&client, "alice", false).await;
    let api = ApiServer::start(&db).await;

    for address in [
        "https://hooks.example.org/in",
        "HTTPS://Hooks.Example.org/in",
        "https://hooks.example.org./in",
        "http://hooks.example.org:8080/in?a=1&b=%20",
        "http://93.184.216.34/in",
        "http://[2606:4700::1111]:8443/in",
        "https://xn--e1awd7f.example/in",
        "https://hooks.example.org:65535/",
    ] {
        let (status, body) = api
            .call(
                "webhook_create",
                Some(&alice.token),
                json!({"topic": "*", "address": address}),
            )
            .await;
        assert_eq!(status, 200, "{address}: {body}");
    }
    api.stop().await;
}
