//! RS256 tenant tokens with a real RSA key, and algorithm confusion against it.
#![allow(clippy::unwrap_used)]

use atom_policy::jwt::{JwtAlgorithm, JwtError, JwtValidator, TenantClaims, issue};
use jsonwebtoken::EncodingKey;

const PRIVATE: &[u8] = include_bytes!("data/jwt_rs256_test.key");
const PUBLIC: &[u8] = include_bytes!("data/jwt_rs256_test.pub");

fn claims() -> TenantClaims {
    TenantClaims {
        tenant_id: "acme".into(),
        sub: None,
        exp: Some(10_000),
        nbf: None,
        iat: Some(1),
        aud: Some("atom-fabric".into()),
        iss: None,
    }
}

#[test]
fn rs256_accepts_and_rejects_confusion() {
    let v = JwtValidator::rs256_pem(PUBLIC)
        .unwrap()
        .with_audience("atom-fabric")
        .with_leeway(0);
    let token = issue(
        &claims(),
        JwtAlgorithm::Rs256,
        &EncodingKey::from_rsa_pem(PRIVATE).unwrap(),
    )
    .unwrap();
    assert_eq!(
        v.validate(&token, Some("acme"), 5_000).unwrap().tenant_id,
        "acme"
    );
    assert_eq!(
        v.validate(&token, Some("acme"), 10_000),
        Err(JwtError::Expired {
            exp: 10_000,
            now: 10_000
        })
    );
    // The classic confusion attack: HS256 keyed with the RSA public key PEM.
    let forged = issue(
        &claims(),
        JwtAlgorithm::Hs256,
        &EncodingKey::from_secret(PUBLIC),
    )
    .unwrap();
    assert!(matches!(
        v.validate(&forged, Some("acme"), 5_000),
        Err(JwtError::AlgorithmNotAllowed { .. })
    ));
    // A changed signature.
    let sig_start = token.rfind('.').unwrap() + 1;
    let mut bytes = token.clone().into_bytes();
    let i = sig_start + 10;
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(bytes).unwrap();
    assert_eq!(
        v.validate(&tampered, Some("acme"), 5_000),
        Err(JwtError::BadSignature)
    );
}
