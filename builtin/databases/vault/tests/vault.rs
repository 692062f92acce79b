//! The vault backend against the Vault emulator: the original confd's data layouts for KV v1 and
//! v2, each auth method, token renewal and a new login after expiry or revocation, refused
//! logins and paths, TLS with a self-signed CA and the cert login, and watch refused.

use std::collections::BTreeMap;
use std::time::Duration;

use confd_builtin_vault::Vault;
use confd_sdk::{Config, Database, ErrorKind};
use confd_test_support::{EmulatorTls, TestCertificates, VaultEmulator, VaultLogin};
use serde_json::json;

fn config(pairs: &[(&str, &str)]) -> Config {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

async fn configured(pairs: &[(&str, &str)]) -> Vault {
    let vault = Vault::new();
    vault.configure(config(pairs)).await.expect("configure");
    vault
}

async fn read(vault: &Vault, keys: &[&str]) -> BTreeMap<String, String> {
    let keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    vault.get_values(&keys).await.expect("read")
}

/// The original confd's vault integration data: one mount per top-level key, KV v1, secrets
/// with a lone `value` field, and `upstream` with two fields.
fn original_layout(emulator: &VaultEmulator) {
    for mount in ["key", "database", "upstream", "nested"] {
        emulator.mount_kv(mount, 1);
    }
    emulator.put("key", "", json!({"value": "foobar"}));
    emulator.put("database", "host", json!({"value": "127.0.0.1"}));
    emulator.put("database", "port", json!({"value": "3306"}));
    emulator.put("database", "username", json!({"value": "confd"}));
    emulator.put("database", "password", json!({"value": "p@sSw0rd"}));
    emulator.put(
        "upstream",
        "",
        json!({"app1": "10.0.1.10:8080", "app2": "10.0.1.11:8080"}),
    );
    emulator.put("nested", "east/app1", json!({"value": "10.0.1.10:8080"}));
    emulator.put("nested", "west/app2", json!({"value": "10.0.1.11:8080"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_original_kv_v1_layout_reads_as_the_original_did() {
    let emulator = VaultEmulator::start();
    original_layout(&emulator);
    let vault = configured(&[
        ("nodes", &emulator.address()),
        ("authType", "token"),
        ("token", &emulator.root_token()),
    ])
    .await;
    let values = read(&vault, &["/key", "/database", "/upstream", "/nested"]).await;
    let expected: BTreeMap<String, String> = [
        ("/key", "foobar"),
        ("/database/host", "127.0.0.1"),
        ("/database/password", "p@sSw0rd"),
        ("/database/port", "3306"),
        ("/database/username", "confd"),
        (
            "/upstream",
            r#"{"app1":"10.0.1.10:8080","app2":"10.0.1.11:8080"}"#,
        ),
        ("/upstream/app1", "10.0.1.10:8080"),
        ("/upstream/app2", "10.0.1.11:8080"),
        ("/nested/east/app1", "10.0.1.10:8080"),
        ("/nested/west/app2", "10.0.1.11:8080"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(values, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_v2_is_detected_and_its_data_segment_is_optional() {
    let emulator = VaultEmulator::start();
    emulator.mount_kv("kv-v2", 2);
    emulator.put(
        "kv-v2",
        "database",
        json!({"host": "127.0.0.1", "port": 3306, "username": "confd", "password": "p@sSw0rd"}),
    );
    emulator.put(
        "kv-v2",
        "nested/production",
        json!({"app1": "10.0.1.10:8080"}),
    );
    emulator.put("kv-v2", "gone", json!({"value": "x"}));
    emulator.delete("kv-v2", "gone");
    let vault = configured(&[
        ("nodes", &emulator.address()),
        ("authType", "token"),
        ("token", &emulator.root_token()),
    ])
    .await;
    let values = read(&vault, &["/kv-v2"]).await;
    assert_eq!(values["/kv-v2/database/port"], "3306");
    assert_eq!(values["/kv-v2/database/host"], "127.0.0.1");
    assert_eq!(values["/kv-v2/nested/production/app1"], "10.0.1.10:8080");
    assert!(
        !values.keys().any(|k| k.contains("gone")),
        "a deleted latest version reads as absent: {values:?}"
    );
    // The fork's spelling with the API's data/ segment reads the same secrets, keyed as asked.
    let values = read(&vault, &["/kv-v2/data/database"]).await;
    assert_eq!(values["/kv-v2/data/database/username"], "confd");
    assert_eq!(
        emulator.count("sys/internal/ui/mounts/kv-v2"),
        1,
        "the mount is looked up once: {:?}",
        emulator.requests()
    );
    // A fixed version needs no mount lookup.
    let fixed = configured(&[
        ("nodes", &emulator.address()),
        ("authType", "token"),
        ("token", &emulator.root_token()),
        ("kvVersion", "2"),
    ])
    .await;
    assert_eq!(
        read(&fixed, &["/kv-v2/database/host"]).await["/kv-v2/database/host"],
        "127.0.0.1"
    );
    assert_eq!(emulator.count("sys/internal/ui/mounts"), 1);
}

/// Settings as written in a test.
type Pairs<'a> = Vec<(&'a str, &'a str)>;

/// Logs in with `pairs` and reads `secret/app`.
async fn login_reads(emulator: &VaultEmulator, pairs: &[(&str, &str)]) -> Result<String, String> {
    let mut all = vec![("nodes", emulator.address())];
    all.extend(pairs.iter().map(|(k, v)| (*k, v.to_string())));
    let all: Vec<(&str, &str)> = all.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let vault = Vault::new();
    vault
        .configure(config(&all))
        .await
        .map_err(|e| e.to_string())?;
    let values = vault
        .get_values(&["/secret/app".to_string()])
        .await
        .map_err(|e| {
            assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
            e.to_string()
        })?;
    Ok(values.get("/secret/app").cloned().unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_login_method_gets_a_token_and_wrong_credentials_name_the_method() {
    let emulator = VaultEmulator::start();
    emulator.mount_kv("secret", 1);
    emulator.put("secret", "app", json!({"value": "s3cret"}));
    let jwt = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(jwt.path(), "eyJ.jwt.sig\n").expect("write jwt");
    let jwt_path = jwt.path().display().to_string();
    emulator.enable_login(
        "app-id",
        VaultLogin::AppId {
            app_id: "app".into(),
            user_id: "user".into(),
        },
    );
    emulator.enable_login(
        "approle",
        VaultLogin::AppRole {
            role_id: "role".into(),
            secret_id: "sid".into(),
        },
    );
    emulator.enable_login(
        "test",
        VaultLogin::AppRole {
            role_id: "role2".into(),
            secret_id: "sid2".into(),
        },
    );
    emulator.enable_login(
        "userpass",
        VaultLogin::UserPass {
            username: "ann".into(),
            password: "pw".into(),
        },
    );
    emulator.enable_login(
        "github",
        VaultLogin::Github {
            token: "ghp".into(),
        },
    );
    emulator.enable_login(
        "kubernetes",
        VaultLogin::Kubernetes {
            role: "web".into(),
            jwt: "eyJ.jwt.sig".into(),
        },
    );

    let root = emulator.root_token();
    let cases: Vec<(Pairs, Pairs, &str)> = vec![
        (
            vec![("authType", "token"), ("token", &root)],
            vec![("token", "nope")],
            "token",
        ),
        (
            vec![("authType", "app-id"), ("appId", "app"), ("userId", "user")],
            vec![("userId", "other")],
            "app-id",
        ),
        (
            vec![
                ("authType", "app-role"),
                ("roleId", "role"),
                ("secretId", "sid"),
            ],
            vec![("secretId", "bad")],
            "app-role",
        ),
        (
            vec![
                ("authType", "approle"),
                ("roleId", "role2"),
                ("secretId", "sid2"),
                ("path", "test"),
            ],
            vec![("roleId", "bad")],
            "auth/test/login",
        ),
        (
            vec![
                ("authType", "userpass"),
                ("username", "ann"),
                ("password", "pw"),
            ],
            vec![("password", "wrong")],
            "userpass",
        ),
        (
            vec![("authType", "github"), ("token", "ghp")],
            vec![("token", "bad")],
            "github",
        ),
        (
            vec![
                ("authType", "kubernetes"),
                ("roleId", "web"),
                ("jwtFile", &jwt_path),
            ],
            vec![("roleId", "db")],
            "kubernetes",
        ),
    ];
    for (good, wrong, named) in cases {
        assert_eq!(
            login_reads(&emulator, &good).await.as_deref(),
            Ok("s3cret"),
            "{good:?}"
        );
        let mut bad: BTreeMap<&str, &str> = good.iter().copied().collect();
        bad.extend(wrong.iter().copied());
        let bad: Vec<(&str, &str)> = bad.into_iter().collect();
        let err = login_reads(&emulator, &bad).await.expect_err("refused");
        assert!(err.contains(named), "{bad:?}: {err}");
    }
    for method in [
        "app-id",
        "approle",
        "test",
        "userpass",
        "github",
        "kubernetes",
    ] {
        assert!(
            emulator.count(&format!("auth/{method}/login")) >= 2,
            "{method}: {:?}",
            emulator.requests()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_path_is_an_error_naming_it_and_the_method() {
    let emulator = VaultEmulator::start();
    emulator.mount_kv("secret", 2);
    emulator.put("secret", "open", json!({"value": "1"}));
    emulator.put("secret", "private/db", json!({"value": "2"}));
    emulator.deny("secret/data/private");
    emulator.enable_login(
        "approle",
        VaultLogin::AppRole {
            role_id: "r".into(),
            secret_id: "s".into(),
        },
    );
    let vault = configured(&[
        ("nodes", &emulator.address()),
        ("authType", "app-role"),
        ("roleId", "r"),
        ("secretId", "s"),
    ])
    .await;
    assert_eq!(read(&vault, &["/secret/open"]).await["/secret/open"], "1");
    let err = vault
        .get_values(&["/secret/private".to_string()])
        .await
        .expect_err("denied");
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    let text = err.to_string();
    assert!(text.contains("secret/data/private/db"), "{text}");
    assert!(text.contains("app-role"), "{text}");
    // A policy refusal is not a dead token: no new login for it.
    assert_eq!(
        emulator.count("auth/approle/login"),
        1,
        "{:?}",
        emulator.requests()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_is_replaced_by_a_new_login_and_a_given_one_is_reported() {
    let emulator = VaultEmulator::start();
    emulator.mount_kv("secret", 1);
    emulator.put("secret", "app", json!({"value": "v"}));
    emulator.enable_login(
        "userpass",
        VaultLogin::UserPass {
            username: "ann".into(),
            password: "pw".into(),
        },
    );
    let vault = configured(&[
        ("nodes", &emulator.address()),
        ("authType", "userpass"),
        ("username", "ann"),
        ("password", "pw"),
    ])
    .await;
    assert_eq!(read(&vault, &["/secret/app"]).await["/secret/app"], "v");
    emulator.revoke_tokens();
    assert_eq!(read(&vault, &["/secret/app"]).await["/secret/app"], "v");
    assert_eq!(emulator.count("auth/userpass/login/ann"), 2);

    let given = emulator.create_token(Duration::from_secs(3600), true);
    let vault = configured(&[
        ("nodes", &emulator.address()),
        ("authType", "token"),
        ("token", &given),
    ])
    .await;
    assert_eq!(read(&vault, &["/secret/app"]).await["/secret/app"], "v");
    emulator.revoke_tokens();
    let err = vault
        .get_values(&["/secret/app".to_string()])
        .await
        .expect_err("revoked");
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    assert!(err.to_string().contains("auth method token"), "{err}");
}

/// Leases are seconds long here because Vault counts them in whole seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_renewed_before_they_expire_and_replaced_at_their_max_ttl() {
    let emulator = VaultEmulator::start();
    emulator.mount_kv("secret", 1);
    emulator.put("secret", "app", json!({"value": "v"}));
    emulator.enable_login(
        "approle",
        VaultLogin::AppRole {
            role_id: "r".into(),
            secret_id: "s".into(),
        },
    );
    emulator.set_login_lease(Duration::from_secs(3), true);
    let vault = configured(&[
        ("nodes", &emulator.address()),
        ("authType", "approle"),
        ("roleId", "r"),
        ("secretId", "s"),
    ])
    .await;
    assert_eq!(read(&vault, &["/secret/app"]).await["/secret/app"], "v");
    // Past the first lease: only a renewal (at two thirds of it) keeps the token alive.
    tokio::time::sleep(Duration::from_millis(4500)).await;
    assert!(
        emulator.count("auth/token/renew-self") >= 1,
        "{:?}",
        emulator.requests()
    );
    assert_eq!(read(&vault, &["/secret/app"]).await["/secret/app"], "v");
    assert_eq!(
        emulator.count("auth/approle/login"),
        1,
        "{:?}",
        emulator.requests()
    );

    // Not renewable: a new login before the old token runs out.
    emulator.set_login_lease(Duration::from_secs(3), false);
    let vault = configured(&[
        ("nodes", &emulator.address()),
        ("authType", "approle"),
        ("roleId", "r"),
        ("secretId", "s"),
    ])
    .await;
    read(&vault, &["/secret/app"]).await;
    let logins = emulator.count("auth/approle/login");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        emulator.count("auth/approle/login") > logins,
        "{:?}",
        emulator.requests()
    );
    assert_eq!(read(&vault, &["/secret/app"]).await["/secret/app"], "v");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_is_refused_with_a_message_pointing_at_interval_mode() {
    let emulator = VaultEmulator::start();
    let vault = configured(&[
        ("nodes", &emulator.address()),
        ("token", &emulator.root_token()),
    ])
    .await;
    let err = vault
        .watch_prefix("/secret", &["/secret".to_string()], 0)
        .await
        .expect_err("no watch");
    assert_eq!(err.kind(), ErrorKind::Unimplemented);
    assert!(err.to_string().contains("--interval"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_private_ca_and_the_cert_login() {
    let Some(certs) = TestCertificates::generate() else {
        return;
    };
    let emulator = VaultEmulator::start_tls(EmulatorTls {
        cert: certs.server_cert(),
        key: certs.server_key(),
        client_ca: certs.ca(),
    });
    emulator.mount_kv("secret", 1);
    emulator.put("secret", "app", json!({"value": "tls"}));
    emulator.enable_login("cert", VaultLogin::Cert);
    let ca = certs.ca().display().to_string();
    let cert = certs.client_cert().display().to_string();
    let key = certs.client_key().display().to_string();
    // The CA is not trusted: the TLS error is named.
    let vault = configured(&[
        ("nodes", &emulator.address()),
        ("token", &emulator.root_token()),
    ])
    .await;
    let err = vault
        .get_values(&["/secret/app".to_string()])
        .await
        .expect_err("untrusted");
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );
    // Trusted through caCert, or not verified with insecure.
    for pairs in [vec![("caCert", ca.as_str())], vec![("insecure", "true")]] {
        let mut all = vec![
            ("nodes", emulator.address()),
            ("token", emulator.root_token()),
        ];
        all.extend(pairs.iter().map(|(k, v)| (*k, v.to_string())));
        let all: Vec<(&str, &str)> = all.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let vault = configured(&all).await;
        assert_eq!(
            read(&vault, &["/secret/app"]).await["/secret/app"],
            "tls",
            "{pairs:?}"
        );
    }
    let vault = configured(&[
        ("nodes", &emulator.address()),
        ("authType", "cert"),
        ("caCert", &ca),
        ("cert", &cert),
        ("key", &key),
    ])
    .await;
    assert_eq!(read(&vault, &["/secret/app"]).await["/secret/app"], "tls");
    assert_eq!(emulator.count("auth/cert/login"), 1);
}
