//! The model store connector against a real HTTPS server on loopback (axum + rustls with a
//! self-signed certificate, X25519MLKEM768 only) and against a file store: every failure mode has
//! its exact error.
#![allow(clippy::unwrap_used)]

use atom_fabric::model_store::{ModelStore, ModelStoreConfig, ModelStoreError};
use atom_policy::config::{Mode, PqcMode};
use atom_policy::keyring::KeyRing;
use atom_policy::keys::{Algorithm, KeySpec, SigningKey};
use atom_policy::manifest::{HashOptions, ModelManifest, SignedBundle};
use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::Response;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

struct Fixture {
    store: tempfile::TempDir,
    key: SigningKey,
}

fn weights(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// A store with model `m` versions v1 and v2, signed.
fn fixture() -> Fixture {
    let store = tempfile::tempdir().unwrap();
    let key = SigningKey::generate(KeySpec::Hybrid(Algorithm::MlDsa65));
    for (v, seed) in [("v1", 1u8), ("v2", 2)] {
        let dir = store.path().join("m").join(v);
        std::fs::create_dir_all(dir.join("sub dir")).unwrap();
        std::fs::write(dir.join("weights.bin"), weights(seed, 300_000)).unwrap();
        std::fs::write(dir.join("sub dir/config.json"), format!("{{\"v\":{seed}}}")).unwrap();
        sign(&dir, &key);
    }
    Fixture { store, key }
}

fn sign(dir: &Path, key: &SigningKey) {
    let opts = HashOptions {
        ignore_paths: vec!["model.sig".into()],
        progress: None,
    };
    let m = ModelManifest::hash_dir(dir, &opts).unwrap();
    let b = SignedBundle::sign(&m, key, Mode::default()).unwrap();
    std::fs::write(dir.join("model.sig"), b.to_json()).unwrap();
}

fn ring(f: &Fixture) -> KeyRing {
    KeyRing::trusting(f.key.verifying_key())
}

fn file_store(f: &Fixture, cache: &Path) -> ModelStore {
    let cfg = ModelStoreConfig::new(&format!("file://{}", f.store.path().display()), cache);
    ModelStore::open(cfg, ring(f)).unwrap()
}

/// (path, Range header) of every request the test server saw.
type RequestLog = Arc<Mutex<Vec<(String, Option<String>)>>>;

struct Server {
    url: String,
    ca_pem: Vec<u8>,
    requests: RequestLog,
    _rt: tokio::runtime::Runtime,
}

/// Serves `root` over HTTPS with Range support; the first GET of any path in `flaky` sends its
/// full Content-Length but only half the bytes, then drops the connection.
fn https_server(root: PathBuf, flaky: &[&str]) -> Server {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert_pem, key_pem) = (ck.cert.pem(), ck.signing_key.serialize_pem());
    let tls = atom_policy::handshake::tls_server_config(
        cert_pem.as_bytes(),
        key_pem.as_bytes(),
        Mode::new(PqcMode::Hybrid, false),
    )
    .unwrap();
    let flaky: Arc<Mutex<HashSet<String>>> =
        Arc::new(Mutex::new(flaky.iter().map(|s| s.to_string()).collect()));
    let requests = Arc::new(Mutex::new(Vec::new()));
    let log = requests.clone();
    let handler = move |uri: Uri, headers: HeaderMap| {
        let root = root.clone();
        let flaky = flaky.clone();
        let log = log.clone();
        async move {
            let path = percent_decode(uri.path().trim_start_matches('/'));
            let range = headers
                .get(header::RANGE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            log.lock().unwrap().push((path.clone(), range.clone()));
            let Ok(bytes) = std::fs::read(root.join(&path)) else {
                return Response::builder()
                    .status(StatusCode::NOT_FOUND)
                    .body(Body::empty())
                    .unwrap();
            };
            if flaky.lock().unwrap().remove(&path) {
                let half = bytes[..bytes.len() / 2].to_vec();
                // Send half, let it reach the client, then fail the body: hyper drops the connection.
                let stream = futures_util::stream::unfold(0u8, move |step| {
                    let half = half.clone();
                    async move {
                        match step {
                            0 => Some((Ok::<_, std::io::Error>(half), 1)),
                            1 => {
                                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                                Some((
                                    Err(std::io::Error::other(
                                        "connection dropped by the test server",
                                    )),
                                    2,
                                ))
                            }
                            _ => None,
                        }
                    }
                });
                return Response::builder()
                    .header(header::CONTENT_LENGTH, bytes.len())
                    .body(Body::from_stream(stream))
                    .unwrap();
            }
            match range.and_then(|r| {
                r.strip_prefix("bytes=")
                    .and_then(|r| r.strip_suffix('-'))
                    .and_then(|n| n.parse::<usize>().ok())
            }) {
                Some(start) if start < bytes.len() => Response::builder()
                    .status(StatusCode::PARTIAL_CONTENT)
                    .header(
                        header::CONTENT_RANGE,
                        format!("bytes {start}-{}/{}", bytes.len() - 1, bytes.len()),
                    )
                    .body(Body::from(bytes[start..].to_vec()))
                    .unwrap(),
                _ => Response::builder().body(Body::from(bytes)).unwrap(),
            }
        }
    };
    let app = axum::Router::new().fallback(handler);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let config = axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(tls));
    rt.spawn(async move {
        axum_server::from_tcp_rustls(listener, config)
            .unwrap()
            .serve(app.into_make_service())
            .await
            .unwrap();
    });
    Server {
        url: format!("https://localhost:{port}"),
        ca_pem: cert_pem.into_bytes(),
        requests,
        _rt: rt,
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

fn https_store(f: &Fixture, server: &Server, cache: &Path, mode: Mode) -> ModelStore {
    let mut cfg = ModelStoreConfig::new(&server.url, cache);
    cfg.ca_pem = Some(server.ca_pem.clone());
    cfg.mode = mode;
    ModelStore::open(cfg, ring(f)).unwrap()
}

#[test]
fn https_pull_over_x25519mlkem768_then_cache_hit() {
    let f = fixture();
    let server = https_server(f.store.path().to_path_buf(), &[]);
    let cache = tempfile::tempdir().unwrap();
    let mut s = https_store(&f, &server, cache.path(), Mode::default());
    let p = s.pull("m", "v1", 0).unwrap();
    assert_eq!(p.transport, Some("X25519MLKEM768"));
    assert_eq!(
        std::fs::read(p.dir.join("weights.bin")).unwrap(),
        weights(1, 300_000)
    );
    assert_eq!(
        std::fs::read_to_string(p.dir.join("sub dir/config.json")).unwrap(),
        "{\"v\":1}"
    );
    assert_eq!(p.bytes_downloaded, 300_000 + 7);
    assert_eq!(p.key_ids.len(), 2);
    let again = s.pull("m", "v1", 0).unwrap();
    assert_eq!((again.bytes_downloaded, again.cache_hits), (0, 2));
    // Content-addressed: the blob's name is its SHA-256.
    let digest = p
        .files
        .iter()
        .find(|x| x.name == "weights.bin")
        .unwrap()
        .digest
        .clone();
    assert!(cache.path().join("sha256").join(&digest).exists());
}

#[test]
fn truncated_download_is_reported_then_resumed_with_range() {
    let f = fixture();
    let server = https_server(f.store.path().to_path_buf(), &["m/v1/weights.bin"]);
    let cache = tempfile::tempdir().unwrap();
    let mut s = https_store(&f, &server, cache.path(), Mode::default());
    match s.pull("m", "v1", 0) {
        Err(ModelStoreError::Truncated {
            file,
            received,
            expected,
        }) => {
            assert_eq!(file, "weights.bin");
            assert_eq!(expected, 300_000);
            assert!(received <= 150_000, "{received}");
        }
        other => panic!("{other:?}"),
    }
    let p = s.pull("m", "v1", 0).unwrap();
    assert_eq!(
        std::fs::read(p.dir.join("weights.bin")).unwrap(),
        weights(1, 300_000)
    );
    let reqs = server.requests.lock().unwrap();
    let resumed = reqs
        .iter()
        .filter(|(p, _)| p == "m/v1/weights.bin")
        .nth(1)
        .unwrap();
    assert!(
        resumed
            .1
            .as_deref()
            .is_some_and(|r| r.starts_with("bytes=") && r != "bytes=0-"),
        "{reqs:?}"
    );
}

#[test]
fn tampered_file_names_the_file() {
    let f = fixture();
    std::fs::write(f.store.path().join("m/v1/weights.bin"), weights(9, 300_000)).unwrap();
    let cache = tempfile::tempdir().unwrap();
    match file_store(&f, cache.path()).pull("m", "v1", 0) {
        Err(ModelStoreError::DigestMismatch { file, .. }) => assert_eq!(file, "weights.bin"),
        other => panic!("{other:?}"),
    }
    // Nothing half-verified is left looking whole.
    assert_eq!(
        std::fs::read_dir(cache.path().join("sha256"))
            .unwrap()
            .count(),
        1
    );
}

#[test]
fn tampered_manifest_and_wrong_key_are_refused() {
    let f = fixture();
    let sig = f.store.path().join("m/v1/model.sig");
    let text = std::fs::read_to_string(&sig).unwrap();
    let mut bundle: serde_json::Value = serde_json::from_str(&text).unwrap();
    bundle["dsseEnvelope"]["payload"] = serde_json::Value::String({
        use base64::Engine;
        let e = base64::engine::general_purpose::STANDARD;
        let mut p = e
            .decode(bundle["dsseEnvelope"]["payload"].as_str().unwrap())
            .unwrap();
        let n = p.len();
        p[n / 2] ^= 1;
        e.encode(p)
    });
    std::fs::write(&sig, bundle.to_string()).unwrap();
    let cache = tempfile::tempdir().unwrap();
    match file_store(&f, cache.path()).pull("m", "v1", 0) {
        Err(ModelStoreError::Manifest { source, .. })
            if matches!(
                *source,
                atom_policy::Error::Verify(
                    atom_policy::signature::VerifyError::BadSignature { .. }
                )
            ) => {}
        other => panic!("{other:?}"),
    }
    let other = SigningKey::generate(KeySpec::Hybrid(Algorithm::MlDsa65));
    let cfg = ModelStoreConfig::new(
        &format!("file://{}", f.store.path().display()),
        cache.path(),
    );
    let mut s = ModelStore::open(cfg, KeyRing::trusting(other.verifying_key())).unwrap();
    match s.pull("m", "v2", 0) {
        Err(ModelStoreError::Manifest { source, .. })
            if matches!(
                *source,
                atom_policy::Error::Verify(atom_policy::signature::VerifyError::UnknownKey { .. })
            ) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn cache_full_and_lru_eviction_spare_pinned_versions() {
    let f = fixture();
    let cache = tempfile::tempdir().unwrap();
    let mut cfg = ModelStoreConfig::new(
        &format!("file://{}", f.store.path().display()),
        cache.path(),
    );
    cfg.cache_limit_bytes = 100_000;
    let mut s = ModelStore::open(cfg.clone(), ring(&f)).unwrap();
    match s.pull("m", "v1", 0) {
        Err(ModelStoreError::CacheFull { needed, limit, .. }) => {
            assert_eq!((needed, limit), (300_000, 100_000))
        }
        other => panic!("{other:?}"),
    }
    // Room for two versions: pulling a third model evicts nothing pinned and fails cleanly.
    cfg.cache_limit_bytes = 650_000;
    let mut s = ModelStore::open(cfg, ring(&f)).unwrap();
    s.pull("m", "v1", 0).unwrap();
    s.pull("m", "v2", 0).unwrap();
    let dir = f.store.path().join("other/v1");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("w"), weights(3, 100_000)).unwrap();
    sign(&dir, &f.key);
    assert!(matches!(
        s.pull("other", "v1", 0),
        Err(ModelStoreError::CacheFull { .. })
    ));
    assert!(s.cache().used_bytes().unwrap() <= 650_000);
}

#[test]
fn rollback_reverifies_and_detects_a_changed_snapshot() {
    let f = fixture();
    let cache = tempfile::tempdir().unwrap();
    let mut s = file_store(&f, cache.path());
    s.pull("m", "v1", 0).unwrap();
    assert!(matches!(
        s.rollback("m", 0),
        Err(ModelStoreError::NoPreviousVersion { .. })
    ));
    s.pull("m", "v2", 0).unwrap();
    assert_eq!(s.current("m").unwrap().as_deref(), Some("v2"));
    let back = s.rollback("m", 0).unwrap();
    assert_eq!(back.version, "v1");
    assert_eq!(s.current("m").unwrap().as_deref(), Some("v1"));
    // Corrupt the pinned v2 snapshot on disk: the next rollback refuses it, naming the file.
    let v2 = s.rollback("m", 0).unwrap().dir;
    s.rollback("m", 0).unwrap();
    let w = v2.join("weights.bin");
    let mut bytes = std::fs::read(&w).unwrap();
    bytes[5] ^= 0xff;
    std::fs::write(&w, bytes).unwrap();
    match s.rollback("m", 0) {
        Err(ModelStoreError::DigestMismatch { file, .. }) => assert_eq!(file, "weights.bin"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn untrusted_certificate_missing_version_and_bad_names_are_refused() {
    let f = fixture();
    let server = https_server(f.store.path().to_path_buf(), &[]);
    let cache = tempfile::tempdir().unwrap();
    // Without the test CA the client trusts only the Web PKI roots: the self-signed server is refused.
    let cfg = ModelStoreConfig::new(&server.url, cache.path());
    let mut s = ModelStore::open(cfg, ring(&f)).unwrap();
    assert!(matches!(
        s.pull("m", "v1", 0),
        Err(ModelStoreError::Transport { .. })
    ));
    let mut s = https_store(&f, &server, cache.path(), Mode::default());
    assert!(matches!(
        s.pull("m", "v9", 0),
        Err(ModelStoreError::NotFound { .. })
    ));
    assert!(matches!(
        s.pull("../etc", "v1", 0),
        Err(ModelStoreError::InvalidName { .. })
    ));
    let bad = ModelStoreConfig::new("http://localhost/x", cache.path());
    assert!(matches!(
        ModelStore::open(bad, ring(&f)),
        Err(ModelStoreError::InvalidName { .. })
    ));
}
