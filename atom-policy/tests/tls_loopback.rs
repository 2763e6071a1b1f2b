//! A rustls client and server on loopback, configured by atom-policy: under PQC_MODE=hybrid they
//! must negotiate X25519MLKEM768, and a client offering only a classical group must be refused.
#![allow(clippy::unwrap_used)]

use atom_policy::config::{Mode, PqcMode};
use atom_policy::handshake::{tls_client_config, tls_server_config};
use rustls::NamedGroup;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;

fn cert() -> (String, String) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    (ck.cert.pem(), ck.signing_key.serialize_pem())
}

/// Runs one TLS exchange; returns the group each side negotiated (or the client's error).
fn exchange(
    server: rustls::ServerConfig,
    client: rustls::ClientConfig,
) -> Result<(NamedGroup, NamedGroup), String> {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Arc::new(server);
    let handle = std::thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        let conn = rustls::ServerConnection::new(server).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        let mut buf = [0u8; 5];
        let r = tls.read_exact(&mut buf);
        r.map(|()| {
            tls.write_all(b"pong").unwrap();
            tls.flush().unwrap();
            tls.conn.negotiated_key_exchange_group().unwrap().name()
        })
        .map_err(|e| e.to_string())
    });
    let tcp = TcpStream::connect(addr).unwrap();
    let name = "localhost".try_into().unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(client), name).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let client_result = tls
        .write_all(b"ping!")
        .and_then(|()| {
            let mut buf = [0u8; 4];
            tls.read_exact(&mut buf).map(|()| buf)
        })
        .map_err(|e| e.to_string());
    let client_group = tls.conn.negotiated_key_exchange_group().map(|g| g.name());
    drop(tls);
    let server_group = handle.join().unwrap();
    let buf = client_result?;
    assert_eq!(&buf, b"pong");
    Ok((client_group.unwrap(), server_group?))
}

/// A plain rustls client (not configured by atom-policy) that offers only `group`.
fn client_offering(
    cert_pem: &str,
    group: &'static dyn rustls::crypto::SupportedKxGroup,
) -> rustls::ClientConfig {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider.kx_groups = vec![group];
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap())
        .unwrap();
    rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth()
}

#[test]
fn hybrid_mode_negotiates_x25519mlkem768() {
    let (cert_pem, key_pem) = cert();
    let mode = Mode::new(PqcMode::Hybrid, false);
    let server = tls_server_config(cert_pem.as_bytes(), key_pem.as_bytes(), mode).unwrap();
    let client = tls_client_config(cert_pem.as_bytes(), mode).unwrap();
    let (c, s) = exchange(server, client).unwrap();
    assert_eq!(c, NamedGroup::X25519MLKEM768);
    assert_eq!(s, NamedGroup::X25519MLKEM768);
}

#[test]
fn hybrid_server_refuses_a_classical_only_client() {
    let (cert_pem, key_pem) = cert();
    let server = tls_server_config(
        cert_pem.as_bytes(),
        key_pem.as_bytes(),
        Mode::new(PqcMode::Hybrid, false),
    )
    .unwrap();
    // A client that offers X25519 only.
    let client = client_offering(&cert_pem, rustls::crypto::aws_lc_rs::kx_group::X25519);
    let err = exchange(server, client).unwrap_err();
    assert!(
        err.to_lowercase().contains("handshake") || err.contains("alert"),
        "{err}"
    );
}

#[test]
fn classical_mode_offers_classical_groups_too() {
    let (cert_pem, key_pem) = cert();
    let mode = Mode::new(PqcMode::Classical, false);
    let server = tls_server_config(cert_pem.as_bytes(), key_pem.as_bytes(), mode).unwrap();
    let client = client_offering(&cert_pem, rustls::crypto::aws_lc_rs::kx_group::SECP256R1);
    let (c, _) = exchange(server, client).unwrap();
    assert_eq!(c, NamedGroup::secp256r1);
}
