//! The redis backend against a real redis server (Debian `redis-server`): hashes, separators,
//! notifications and outages. The `Database` contract (path-aware reads, settings errors, watch
//! rules) is checked by the SDK's conformance suite in conformance.rs.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use confd_builtin_redis::Redis;
use confd_sdk::{Database, ErrorKind};
use confd_test_support::{RedisOptions, RedisSentinels, RedisServer};

fn keys(list: &[&str]) -> Vec<String> {
    list.iter().map(|k| k.to_string()).collect()
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

async fn backend(server: &RedisServer, extra: &[(&str, &str)]) -> Redis {
    let mut config: HashMap<String, String> = extra
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    config
        .entry("nodes".to_string())
        .or_insert_with(|| server.address());
    let redis = Redis::new();
    redis.configure(config).await.expect("valid settings");
    redis
}

/// A plain client for the test's own writes.
async fn client(server: &RedisServer, password: Option<&str>) -> redis::aio::MultiplexedConnection {
    let url = match password {
        Some(p) => format!("redis://:{p}@{}/", server.address()),
        None => format!("redis://{}/", server.address()),
    };
    redis::Client::open(url)
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("test client connects")
}

async fn run(conn: &mut redis::aio::MultiplexedConnection, args: &[&str]) {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    let _: redis::Value = cmd.query_async(conn).await.expect("command");
}

/// [`run`] with arguments that need not be UTF-8.
async fn run_bytes(conn: &mut redis::aio::MultiplexedConnection, args: &[&[u8]]) {
    let mut cmd = redis::cmd(std::str::from_utf8(args[0]).expect("command names are text"));
    for a in &args[1..] {
        cmd.arg(*a);
    }
    let _: redis::Value = cmd.query_async(conn).await.expect("command");
}

#[tokio::test]
async fn reads_strings_hashes_prefixes_path_aware() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let mut c = client(&server, None).await;
    run(&mut c, &["SET", "/app/name", "shop"]).await;
    run(&mut c, &["SET", "/app/db/port", "5432"]).await;
    run(
        &mut c,
        &["HSET", "/app/db/conn", "host", "10.0.0.1", "user", "u"],
    )
    .await;
    run(&mut c, &["SET", "/application/name", "other"]).await;
    run(&mut c, &["RPUSH", "/app/list", "not-config"]).await;
    let redis = backend(&server, &[]).await;

    let single = redis.get_values(&keys(&["/app/name"])).await.expect("read");
    assert_eq!(single, map(&[("/app/name", "shop")]));

    let hash = redis
        .get_values(&keys(&["/app/db/conn"]))
        .await
        .expect("read");
    assert_eq!(
        hash,
        map(&[
            ("/app/db/conn/host", "10.0.0.1"),
            ("/app/db/conn/user", "u")
        ])
    );

    let prefix = redis.get_values(&keys(&["/app"])).await.expect("read");
    assert_eq!(
        prefix,
        map(&[
            ("/app/db/conn/host", "10.0.0.1"),
            ("/app/db/conn/user", "u"),
            ("/app/db/port", "5432"),
            ("/app/name", "shop"),
        ]),
        "/app must not return /application; lists are skipped"
    );

    let glob = redis
        .get_values(&keys(&["/app/db/*", "/nothing"]))
        .await
        .expect("read");
    assert_eq!(
        glob,
        map(&[
            ("/app/db/conn/host", "10.0.0.1"),
            ("/app/db/conn/user", "u"),
            ("/app/db/port", "5432"),
        ])
    );
}

#[tokio::test]
async fn custom_separator_maps_paths_to_keys() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let mut c = client(&server, None).await;
    run(&mut c, &["SET", "app:db:host", "10.0.0.2"]).await;
    run(&mut c, &["HSET", "app:web", "port", "80"]).await;
    run(&mut c, &["SET", "application:x", "no"]).await;
    let redis = backend(&server, &[("separator", ":")]).await;
    let values = redis.get_values(&keys(&["/app"])).await.expect("read");
    assert_eq!(
        values,
        map(&[("/app/db/host", "10.0.0.2"), ("/app/web/port", "80")])
    );
    let single = redis
        .get_values(&keys(&["/app/db/host"]))
        .await
        .expect("read");
    assert_eq!(single, map(&[("/app/db/host", "10.0.0.2")]));
}

#[tokio::test]
async fn watch_enables_notifications_and_wakes_only_for_its_keys() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let mut c = client(&server, None).await;
    run(&mut c, &["SET", "/w/app/a", "1"]).await;
    let redis = backend(&server, &[]).await;
    let watched = keys(&["/w/app"]);

    let started = Instant::now();
    let index = redis.watch_prefix("/w", &watched, 0).await.expect("index");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "wait_index 0 returns at once"
    );
    let flags: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("notify-keyspace-events")
        .query_async(&mut c)
        .await
        .expect("config get");
    assert!(
        flags[1].contains('K') && flags[1].contains('A'),
        "enabled: {flags:?}"
    );

    let pending = tokio::time::timeout(Duration::from_millis(700), async {
        run(&mut c, &["SET", "/w/other", "x"]).await;
        run(&mut c, &["SET", "/w/application", "y"]).await;
        redis.watch_prefix("/w", &watched, index).await
    })
    .await;
    assert!(pending.is_err(), "woke on an unrelated key: {pending:?}");

    // A change between the read and the next watch call is not missed.
    run(&mut c, &["SET", "/w/app/a", "2"]).await;
    let next = tokio::time::timeout(
        Duration::from_secs(5),
        redis.watch_prefix("/w", &watched, index),
    )
    .await
    .expect("woken")
    .expect("watch ok");
    assert!(next > index);

    // A hash field change wakes too.
    let waiter = redis.watch_prefix("/w", &watched, next);
    let mut c2 = client(&server, None).await;
    let (woke, ()) = tokio::join!(
        tokio::time::timeout(Duration::from_secs(5), waiter),
        async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            run(&mut c2, &["HSET", "/w/app/h", "f", "v"]).await;
        }
    );
    assert!(woke.expect("woken").expect("watch ok") > next);
}

#[tokio::test]
async fn falls_back_to_polling_when_config_is_refused() {
    let Some(server) = RedisServer::start_with(RedisOptions {
        deny_config: true,
        ..RedisOptions::default()
    }) else {
        return;
    };
    let mut c = client(&server, None).await;
    run(&mut c, &["SET", "/p/a", "1"]).await;
    let redis = backend(&server, &[]).await;
    let watched = keys(&["/p"]);
    let index = redis.watch_prefix("/p", &watched, 0).await.expect("index");
    let pending = tokio::time::timeout(
        Duration::from_millis(1500),
        redis.watch_prefix("/p", &watched, index),
    )
    .await;
    assert!(pending.is_err(), "nothing changed: {pending:?}");
    run(&mut c, &["SET", "/p/a", "2"]).await;
    let next = tokio::time::timeout(
        Duration::from_secs(4),
        redis.watch_prefix("/p", &watched, index),
    )
    .await
    .expect("polling notices within a few seconds")
    .expect("watch ok");
    assert!(next > index);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_store_is_unavailable_naming_the_node_then_recovers() {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    let mut c = client(&server, None).await;
    run(&mut c, &["SET", "/s/a", "1"]).await;
    let redis = backend(&server, &[("dialTimeout", "1s")]).await;
    let watched = keys(&["/s"]);
    let index = redis.watch_prefix("/s", &watched, 0).await.expect("index");

    let watch = redis.watch_prefix("/s", &watched, index);
    let (watch_result, ()) =
        tokio::join!(tokio::time::timeout(Duration::from_secs(5), watch), async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            tokio::task::block_in_place(|| server.stop());
        });
    let err = watch_result
        .expect("the broken watch returns promptly")
        .expect_err("the node died");
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.to_string().contains(&server.address()), "{err}");

    let started = Instant::now();
    let err = redis.get_values(&watched).await.expect_err("redis is down");
    let took = started.elapsed();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.to_string().contains(&server.address()), "{err}");
    assert!(
        took < Duration::from_millis(2500),
        "took {took:?} with a 1s dial timeout"
    );

    tokio::task::block_in_place(|| server.restart());
    let mut recovered = None;
    for _ in 0..20 {
        match redis.get_values(&watched).await {
            Ok(values) => {
                recovered = Some(values);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    assert_eq!(
        recovered,
        Some(map(&[("/s/a", "1")])),
        "works again after restart"
    );
    // The watch works again too, with notifications re-enabled.
    let index = redis
        .watch_prefix("/s", &watched, index)
        .await
        .expect("re-subscribes");
    let mut c = client(&server, None).await;
    let waiter = redis.watch_prefix("/s", &watched, index);
    let (woke, ()) = tokio::join!(
        tokio::time::timeout(Duration::from_secs(5), waiter),
        async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            run(&mut c, &["SET", "/s/b", "2"]).await;
        }
    );
    assert!(woke.expect("woken").expect("watch ok") > index);
}

#[tokio::test]
async fn password_is_used_and_a_wrong_one_is_denied() {
    let Some(server) = RedisServer::start_with(RedisOptions {
        password: Some("s3cret".to_string()),
        ..RedisOptions::default()
    }) else {
        return;
    };
    let mut c = client(&server, Some("s3cret")).await;
    run(&mut c, &["SET", "/pw/a", "1"]).await;
    let redis = backend(&server, &[("password", "s3cret")]).await;
    assert_eq!(
        redis.get_values(&keys(&["/pw"])).await.expect("read"),
        map(&[("/pw/a", "1")])
    );
    let wrong = backend(&server, &[("password", "nope")]).await;
    let err = wrong.get_values(&keys(&["/pw"])).await.expect_err("denied");
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    assert!(!err.to_string().contains("nope"), "{err}");
}

#[tokio::test]
async fn a_new_backend_does_not_wait_on_an_index_from_an_old_one() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let watched = keys(&["/n"]);
    let old = backend(&server, &[]).await;
    let old_index = old.watch_prefix("/n", &watched, 0).await.expect("index");
    drop(old);
    // A restarted plugin gets the host's last index: it must not block
    // until its own counter catches up, and must not miss anything.
    let new = backend(&server, &[]).await;
    let index = tokio::time::timeout(
        Duration::from_secs(2),
        new.watch_prefix("/n", &watched, old_index),
    )
    .await
    .expect("returns at once")
    .expect("watch ok");
    assert!(index > old_index);
}

/// The one rule for bytes that are not UTF-8: a string, a hash field or a key found under a
/// prefix fails the read naming the backend and the key (redis used to fail with a type error
/// naming nothing); keys without bad bytes still read.
#[tokio::test]
async fn bytes_that_are_not_utf8_fail_naming_the_key() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let mut c = client(&server, None).await;
    run_bytes(&mut c, &[b"SET", b"/app/name", b"shop"]).await;
    run_bytes(&mut c, &[b"SET", b"/app/blob", b"ab\xffcd"]).await;
    run_bytes(&mut c, &[b"HSET", b"/hash/conn", b"host", b"h\xfe"]).await;
    run_bytes(&mut c, &[b"SET", b"/keys/ok", b"1"]).await;
    run_bytes(&mut c, &[b"SET", b"/keys/k\xff", b"1"]).await;
    run(&mut c, &["SET", "/fine", "yes"]).await;
    let redis = backend(&server, &[]).await;

    let message = |keys_: &[&str]| {
        let redis = &redis;
        let keys_ = keys(keys_);
        async move {
            let err = redis
                .get_values(&keys_)
                .await
                .expect_err("bytes that are not UTF-8 fail the read");
            assert_eq!(err.kind(), ErrorKind::InvalidData, "{err}");
            err.message().to_string()
        }
    };
    let direct = "redis: the value of key \"/app/blob\" is not UTF-8 text (byte 0xff at offset 2)";
    assert_eq!(message(&["/app/blob"]).await, direct);
    assert_eq!(message(&["/app"]).await, direct);
    assert_eq!(
        message(&["/hash/conn"]).await,
        "redis: the value of key \"/hash/conn/host\" is not UTF-8 text (byte 0xfe at offset 1)"
    );
    assert_eq!(
        message(&["/keys"]).await,
        "redis: key \"/keys/k\\xff\" is not UTF-8 text (byte 0xff at offset 7)"
    );
    assert_eq!(
        redis
            .get_values(&keys(&["/fine", "/app/name"]))
            .await
            .expect("keys without bad bytes read"),
        map(&[("/fine", "yes"), ("/app/name", "shop")])
    );
}

/// `SET key value` on the server at `port`.
async fn set_on(port: u16, key: &str, value: &str) {
    let mut conn = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("test client connects");
    run(&mut conn, &["SET", key, value]).await;
}

/// With `sentinel://...` the backend reads from the primary the sentinels name and follows a
/// `SENTINEL FAILOVER`: a waiting watch wakes, and the change written on the new primary is read
/// and then watched there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_failover_is_followed() {
    let Some(group) = tokio::task::block_in_place(RedisSentinels::start) else {
        return;
    };
    let first = group.primary_port();
    set_on(first, "/s/a", "1").await;
    let redis = Redis::new();
    redis
        .configure(HashMap::from([("nodes".to_string(), group.node())]))
        .await
        .expect("valid settings");
    assert_eq!(
        redis.get_values(&keys(&["/s"])).await.expect("read"),
        map(&[("/s/a", "1")])
    );
    let watched = keys(&["/s"]);
    let index = redis.watch_prefix("/s", &watched, 0).await.expect("index");

    let waiting = redis.watch_prefix("/s", &watched, index);
    let (woke, second) = tokio::join!(
        tokio::time::timeout(Duration::from_secs(60), waiting),
        tokio::task::spawn_blocking(move || {
            let second = group.failover();
            (group, second)
        })
    );
    let (group, second) = second.expect("failover");
    assert_ne!(first, second);
    let index = woke
        .expect("the failover wakes the watch")
        .expect("watch ok");
    set_on(second, "/s/a", "2").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut index = index;
    loop {
        if redis.get_values(&watched).await.ok() == Some(map(&[("/s/a", "2")])) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never read the new primary's value"
        );
        index = tokio::time::timeout(
            Duration::from_secs(20),
            redis.watch_prefix("/s", &watched, index),
        )
        .await
        .expect("a change wakes the watch")
        .unwrap_or(index);
    }
    // Subscribed on the new primary now: its next change wakes the watch.
    let index = redis
        .watch_prefix("/s", &watched, 0)
        .await
        .expect("subscribed on the new primary");
    let waiting = redis.watch_prefix("/s", &watched, index);
    let (woke, ()) = tokio::join!(
        tokio::time::timeout(Duration::from_secs(20), waiting),
        async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            set_on(second, "/s/a", "3").await;
        }
    );
    woke.expect("the new primary's change wakes the watch")
        .expect("watch ok");
    assert_eq!(
        redis.get_values(&watched).await.expect("read"),
        map(&[("/s/a", "3")])
    );
    drop(group);
}
