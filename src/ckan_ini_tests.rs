//! Sample inis shaped like the ones `ckan generate config` writes for 2.9, 2.10 and 2.12
//! (cut down to the settings read here), and the mistakes an operator can make.

use super::*;

/// 2.9's template: the session secret, and both token secrets written out literally. A
/// percent sign in the password is doubled, as configparser (and so CKAN) needs.
const CKAN_29: &str = "#\n# CKAN - Pylons configuration\n#\n[DEFAULT]\n\
debug = false\n\n[server:main]\nuse = egg:Paste#http\nhost = 0.0.0.0\nport = 5000\n\n\
[app:main]\nuse = egg:ckan\n\n## Session settings\ncache_dir = /tmp/%(ckan.site_id)s/\n\
beaker.session.key = ckan\n\n# This is the secret token that the beaker library uses\n\
beaker.session.secret = Zx9beakerSecret29\n\
app_instance_uuid = 6f8f0c4e-93b6-4a4c-9b7e-8d8a3f0f3a11\n\n\
sqlalchemy.url = postgresql://ckan_default:p%%40ss@127.0.0.1:54329/ckan29?application_name=ckan29\n\
ckan.site_url = http://127.0.0.1:5009\n\
api_token.jwt.encode.secret = string:Zx9beakerSecret29\n\
api_token.jwt.decode.secret = string:Zx9beakerSecret29\n\
ckan.auth.allow_dataset_collaborators = True\n\n\
[loggers]\nkeys = root, ckan, ckanext\n\n[formatter_generic]\n\
format = %(asctime)s %(levelname)-5.5s [%(name)s] %(message)s\n";

/// 2.10's generated file: the token secrets refer to the session secret.
const CKAN_210: &str = "[DEFAULT]\ndebug = false\n\n[app:main]\nuse = egg:ckan\n\
beaker.session.secret = Kp2sessionSecret210\n\
sqlalchemy.url = postgresql://ckan_default:pass@localhost/ckan_default\n\
ckan.site_url = http://localhost:5000\n\
ckan.auth.allow_dataset_collaborators = false\n\
api_token.jwt.encode.secret = string:%(beaker.session.secret)s\n\
api_token.jwt.decode.secret = string:%(beaker.session.secret)s\n\
api_token.jwt.algorithm = HS256\n";

/// 2.12's generated file: SECRET_KEY, and token secrets referring to it.
const CKAN_212: &str = "[DEFAULT]\n\n## Default settings\ndebug = false\n\n[app:main]\n\n\
## General settings\nuse = egg:ckan\nSECRET_KEY = UngoqdUIt6FrPjztIimmZw1xeTo\n\
ckan.legacy_route_mappings = {}\n\
sqlalchemy.url = postgresql://ckan_default:pass@localhost/ckan_default\n\
ckan.site_url = http://localhost:5000/\n\
ckan.auth.allow_dataset_collaborators = false\n\
WTF_CSRF_SECRET_KEY = string:%(SECRET_KEY)s\n\
api_token.jwt.encode.secret = string:%(SECRET_KEY)s\n\
api_token.jwt.decode.secret = string:%(SECRET_KEY)s\n\
api_token.jwt.algorithm = HS256\n\n[loggers]\nkeys = root, ckan, ckanext, werkzeug\n";

fn ini(text: &str) -> CkanIni {
    CkanIni::parse(Path::new("/etc/ckan/default/ckan.ini"), text).unwrap()
}

fn message(result: Result<impl std::fmt::Debug>) -> String {
    result.unwrap_err().to_string()
}

#[test]
fn reads_a_29_ini() {
    let ini = ini(CKAN_29);
    assert_eq!(
        ini.database_url().unwrap(),
        "postgresql://ckan_default:p%40ss@127.0.0.1:54329/ckan29?application_name=ckan29"
    );
    assert_eq!(ini.site_url().unwrap(), "http://127.0.0.1:5009");
    assert_eq!(ini.token_secret(Some("2.9")).unwrap(), b"Zx9beakerSecret29");
    ini.check_algorithm().unwrap();
    assert!(ini.allow_dataset_collaborators().unwrap());
}

#[test]
fn reads_a_210_ini_through_its_references() {
    let ini = ini(CKAN_210);
    assert_eq!(
        ini.token_secret(Some("2.10")).unwrap(),
        b"Kp2sessionSecret210"
    );
    assert!(!ini.allow_dataset_collaborators().unwrap());
    ini.check_algorithm().unwrap();
}

#[test]
fn reads_a_212_ini() {
    let ini = ini(CKAN_212);
    assert_eq!(
        ini.database_url().unwrap(),
        "postgresql://ckan_default:pass@localhost/ckan_default"
    );
    assert_eq!(ini.site_url().unwrap(), "http://localhost:5000");
    assert_eq!(
        ini.token_secret(Some("2.12")).unwrap(),
        b"UngoqdUIt6FrPjztIimmZw1xeTo"
    );
    assert_eq!(
        ini.token_secret(None).unwrap(),
        b"UngoqdUIt6FrPjztIimmZw1xeTo"
    );
}

#[test]
fn without_a_decode_secret_the_fallback_depends_on_the_release() {
    // Both session secrets present: up to 2.10 CKAN signs with beaker's, later with
    // SECRET_KEY. The encode secret is never a fallback for decoding.
    let text = "[app:main]\nSECRET_KEY = flask-key\nbeaker.session.secret = beaker-key\n\
                api_token.jwt.encode.secret = string:encode-only\n";
    let ini = ini(text);
    assert_eq!(ini.token_secret(Some("2.9")).unwrap(), b"beaker-key");
    assert_eq!(ini.token_secret(Some("2.10")).unwrap(), b"beaker-key");
    assert_eq!(ini.token_secret(Some("2.11")).unwrap(), b"flask-key");
    assert_eq!(ini.token_secret(Some("2.12")).unwrap(), b"flask-key");
    assert_eq!(ini.token_secret(None).unwrap(), b"flask-key");

    // 2.12 still takes beaker.session.secret as SECRET_KEY's old name.
    let legacy = self::ini("[app:main]\nbeaker.session.secret = old-name\n");
    assert_eq!(legacy.token_secret(Some("2.12")).unwrap(), b"old-name");

    // An empty decode secret counts as unset, as in CKAN.
    let empty = self::ini("[app:main]\napi_token.jwt.decode.secret =\nSECRET_KEY = k\n");
    assert_eq!(empty.token_secret(Some("2.12")).unwrap(), b"k");

    let none = self::ini("[app:main]\nSECRET_KEY = only-flask\n");
    let err = message(none.token_secret(Some("2.9")));
    assert_eq!(
        err,
        "/etc/ckan/default/ckan.ini: [app:main] api_token.jwt.decode.secret is not set, and \
         neither is beaker.session.secret, which CKAN falls back to"
    );
}

#[test]
fn secret_prefixes_follow_ckan() {
    let dir = std::env::temp_dir().join(format!("ckwh-ini-{:x}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("jwt.key");
    std::fs::write(&key, "from-a-file\n").unwrap();

    let text = format!(
        "[DEFAULT]\nkeys = {}\n[app:main]\napi_token.jwt.decode.secret = file:%(keys)s/jwt.key\n",
        dir.display()
    );
    assert_eq!(ini(&text).token_secret(None).unwrap(), b"from-a-file\n");

    // Any other prefix is taken as text, as CKAN does; no prefix at all is refused.
    let other = ini("[app:main]\napi_token.jwt.decode.secret = plain:abc\n");
    assert_eq!(other.token_secret(None).unwrap(), b"abc");
    let bare = ini("[app:main]\napi_token.jwt.decode.secret = bare-secret-value\n");
    let err = message(bare.token_secret(None));
    assert!(err.contains("api_token.jwt.decode.secret has no string: or file: prefix"));
    assert!(!err.contains("bare-secret-value"), "{err}");

    let missing = ini("[app:main]\napi_token.jwt.decode.secret = file:/nonexistent/jwt.key\n");
    assert!(message(missing.token_secret(None)).contains("/nonexistent/jwt.key"));
    let empty = ini("[app:main]\napi_token.jwt.decode.secret = string:\n");
    assert!(message(empty.token_secret(None)).contains("empty secret"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn database_urls_from_sqlalchemy() {
    for (given, expected) in [
        ("postgresql://u:pw@h/db", "postgresql://u:pw@h/db"),
        (
            "postgresql+psycopg2://u:pw@h:5433/db",
            "postgresql://u:pw@h:5433/db",
        ),
        (
            "postgres://u@h/db?sslmode=disable",
            "postgresql://u@h/db?sslmode=disable",
        ),
    ] {
        let ini = ini(&format!("[app:main]\nsqlalchemy.url = {given}\n"));
        assert_eq!(ini.database_url().unwrap(), expected);
    }
    for (given, words) in [
        ("mysql://u:hunter2@h/db", "uses \"mysql\""),
        ("sqlite:///ckan.db", "uses \"sqlite\""),
        ("not a url hunter2", "is not a URL"),
        (
            "postgresql://u:hunter2@h/db?bogus_option=1",
            "cannot be used",
        ),
    ] {
        let ini = ini(&format!("[app:main]\nsqlalchemy.url = {given}\n"));
        let err = message(ini.database_url());
        assert!(err.contains("[app:main] sqlalchemy.url"), "{err}");
        assert!(err.contains(words), "{err}");
        assert!(!err.contains("hunter2"), "the password leaked: {err}");
    }
    let err = message(ini("[app:main]\n").database_url());
    assert_eq!(
        err,
        "/etc/ckan/default/ckan.ini: [app:main] sqlalchemy.url is not set"
    );
}

#[test]
fn algorithm_site_url_and_booleans() {
    let rs = ini("[app:main]\napi_token.jwt.algorithm = RS256\n");
    assert_eq!(
        message(rs.check_algorithm()),
        "/etc/ckan/default/ckan.ini: [app:main] api_token.jwt.algorithm is \"RS256\": \
         ckan-webhooks verifies HS256 tokens only"
    );
    ini("[app:main]\n").check_algorithm().unwrap();

    assert!(
        message(ini("[app:main]\nckan.site_url = localhost\n").site_url())
            .contains("ckan.site_url is \"localhost\"")
    );
    assert!(message(ini("[app:main]\n").site_url()).contains("ckan.site_url is not set"));

    for (value, expected) in [("yes", true), (" ON ", true), ("t", true), ("1", true)] {
        assert_eq!(parse_ckan_bool(value), Some(expected));
    }
    for value in ["false", "No", "off", "n", "F", "0"] {
        assert_eq!(parse_ckan_bool(value), Some(false));
    }
    let maybe = ini("[app:main]\nckan.auth.allow_dataset_collaborators = maybe\n");
    assert!(message(maybe.allow_dataset_collaborators())
        .contains("ckan.auth.allow_dataset_collaborators is \"maybe\""));
}

#[test]
fn files_that_are_not_ckan_inis() {
    let err = message(CkanIni::parse(
        Path::new("/x/who.ini"),
        "[general]\na = 1\n",
    ));
    assert_eq!(
        err,
        "/x/who.ini: no [app:main] section: is this CKAN's ini?"
    );
    let err = message(CkanIni::load(Path::new("/nonexistent/ckan.ini")));
    assert!(err.contains("/nonexistent/ckan.ini"), "{err}");
}
