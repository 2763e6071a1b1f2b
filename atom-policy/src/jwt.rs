//! JWT tenant validation (P5): every request's tenant comes from a validated token.
//!
//! Exactly one algorithm is accepted per validator (HS256, RS256 or EdDSA, from configuration), so
//! `alg: none` and algorithm confusion (an HS256 token keyed with an RSA public key) are refused.
//! Expiry and not-before are checked against an injected clock with a small configurable leeway;
//! audience and issuer are required when configured; the tenant claim must equal the tenant the
//! request names.
//!
//! ```
//! use atom_policy::jwt::{JwtAlgorithm, JwtValidator};
//! let v = JwtValidator::hs256(b"a shared secret of at least 32 bytes!!").with_audience("atom-fabric");
//! let token = v.issue_hs256(b"a shared secret of at least 32 bytes!!", "tenant-a", 1_000, 2_000).unwrap();
//! let claims = v.validate(&token, Some("tenant-a"), 1_500).unwrap();
//! assert_eq!(claims.tenant_id, "tenant-a");
//! assert!(v.validate(&token, Some("tenant-b"), 1_500).is_err());
//! assert!(v.validate(&token, Some("tenant-a"), 2_500).is_err());
//! # let _ = JwtAlgorithm::Hs256;
//! ```

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// The algorithms a validator can be configured for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtAlgorithm {
    /// HMAC-SHA256 with a shared secret.
    Hs256,
    /// RSA PKCS#1 v1.5 with SHA-256.
    Rs256,
    /// Ed25519.
    EdDsa,
}

impl JwtAlgorithm {
    fn to_jwt(self) -> Algorithm {
        match self {
            JwtAlgorithm::Hs256 => Algorithm::HS256,
            JwtAlgorithm::Rs256 => Algorithm::RS256,
            JwtAlgorithm::EdDsa => Algorithm::EdDSA,
        }
    }

    /// The `alg` header value.
    pub fn name(self) -> &'static str {
        match self {
            JwtAlgorithm::Hs256 => "HS256",
            JwtAlgorithm::Rs256 => "RS256",
            JwtAlgorithm::EdDsa => "EdDSA",
        }
    }

    /// Parses `HS256`, `RS256` or `EdDSA`.
    pub fn parse(s: &str) -> Option<Self> {
        [
            JwtAlgorithm::Hs256,
            JwtAlgorithm::Rs256,
            JwtAlgorithm::EdDsa,
        ]
        .into_iter()
        .find(|a| a.name().eq_ignore_ascii_case(s))
    }
}

/// Exactly why a token was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwtError {
    /// Not three base64url parts with JSON header and claims.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// `alg: none` (unsigned tokens are never accepted).
    #[error("unsigned token (alg none) refused")]
    NoneAlgorithm,
    /// The token's algorithm is not the configured one.
    #[error("algorithm {found} not allowed (this validator accepts {expected} only)")]
    AlgorithmNotAllowed {
        /// The token's `alg`.
        found: String,
        /// The configured algorithm.
        expected: &'static str,
    },
    /// The signature does not verify.
    #[error("bad signature")]
    BadSignature,
    /// The key could not be used.
    #[error("key error: {0}")]
    Key(String),
    /// A required claim is absent.
    #[error("missing claim `{0}`")]
    MissingClaim(&'static str),
    /// The token has expired.
    #[error("expired at {exp} (now {now})")]
    Expired {
        /// The `exp` claim.
        exp: u64,
        /// The time of the check.
        now: u64,
    },
    /// The token is not valid yet.
    #[error("not valid before {nbf} (now {now})")]
    NotYetValid {
        /// The `nbf` claim.
        nbf: u64,
        /// The time of the check.
        now: u64,
    },
    /// The audience does not match.
    #[error("wrong audience (expected {0})")]
    WrongAudience(String),
    /// The issuer does not match.
    #[error("wrong issuer (expected {0})")]
    WrongIssuer(String),
    /// The token's tenant is not the request's.
    #[error("token is for tenant {token:?} but the request is for tenant {request:?}")]
    TenantMismatch {
        /// Tenant in the token.
        token: String,
        /// Tenant in the request.
        request: String,
    },
}

/// The claims we read from a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantClaims {
    /// The tenant (claim `tenant_id`).
    pub tenant_id: String,
    /// Subject, if present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// Expiry (unix seconds).
    #[serde(default)]
    pub exp: Option<u64>,
    /// Not before (unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// Issued at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// Audience.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    /// Issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
}

/// A validator for one algorithm and key.
#[derive(Clone)]
pub struct JwtValidator {
    algorithm: JwtAlgorithm,
    key: DecodingKey,
    audience: Option<String>,
    issuer: Option<String>,
    leeway_secs: u64,
}

impl std::fmt::Debug for JwtValidator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtValidator")
            .field("algorithm", &self.algorithm)
            .field("key", &"<REDACTED>")
            .field("audience", &self.audience)
            .field("issuer", &self.issuer)
            .field("leeway_secs", &self.leeway_secs)
            .finish()
    }
}

impl JwtValidator {
    fn new(algorithm: JwtAlgorithm, key: DecodingKey) -> Self {
        Self {
            algorithm,
            key,
            audience: None,
            issuer: None,
            leeway_secs: 5,
        }
    }

    /// HS256 with a shared secret.
    pub fn hs256(secret: &[u8]) -> Self {
        Self::new(JwtAlgorithm::Hs256, DecodingKey::from_secret(secret))
    }

    /// RS256 with an RSA public key in PEM.
    pub fn rs256_pem(public_pem: &[u8]) -> Result<Self, JwtError> {
        let key =
            DecodingKey::from_rsa_pem(public_pem).map_err(|e| JwtError::Key(e.to_string()))?;
        Ok(Self::new(JwtAlgorithm::Rs256, key))
    }

    /// EdDSA with an Ed25519 public key in PEM.
    pub fn eddsa_pem(public_pem: &[u8]) -> Result<Self, JwtError> {
        let key = DecodingKey::from_ed_pem(public_pem).map_err(|e| JwtError::Key(e.to_string()))?;
        Ok(Self::new(JwtAlgorithm::EdDsa, key))
    }

    /// Requires this audience.
    pub fn with_audience(mut self, aud: impl Into<String>) -> Self {
        self.audience = Some(aud.into());
        self
    }

    /// Requires this issuer.
    pub fn with_issuer(mut self, iss: impl Into<String>) -> Self {
        self.issuer = Some(iss.into());
        self
    }

    /// Clock-skew allowance for `exp` and `nbf` (default 5 s).
    pub fn with_leeway(mut self, secs: u64) -> Self {
        self.leeway_secs = secs;
        self
    }

    /// The configured algorithm.
    pub fn algorithm(&self) -> JwtAlgorithm {
        self.algorithm
    }

    /// Validates `token` at `now` (unix seconds); with `request_tenant`, the token's tenant must match.
    pub fn validate(
        &self,
        token: &str,
        request_tenant: Option<&str>,
        now: u64,
    ) -> Result<TenantClaims, JwtError> {
        // Read `alg` ourselves first, so `none` and foreign algorithms get a precise error.
        let header_b64 = token
            .split('.')
            .next()
            .ok_or_else(|| JwtError::Malformed("empty token".into()))?;
        if token.split('.').count() != 3 {
            return Err(JwtError::Malformed(
                "expected three dot-separated parts".into(),
            ));
        }
        let header: serde_json::Value = B64URL
            .decode(header_b64)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| JwtError::Malformed("header is not base64url JSON".into()))?;
        let alg = header
            .get("alg")
            .and_then(|a| a.as_str())
            .ok_or_else(|| JwtError::Malformed("header has no alg".into()))?;
        if alg.eq_ignore_ascii_case("none") {
            return Err(JwtError::NoneAlgorithm);
        }
        if alg != self.algorithm.name() {
            return Err(JwtError::AlgorithmNotAllowed {
                found: alg.to_owned(),
                expected: self.algorithm.name(),
            });
        }
        let mut validation = Validation::new(self.algorithm.to_jwt());
        // Time claims are checked below against the injected clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.required_spec_claims.clear();
        validation.validate_aud = false;
        let data = jsonwebtoken::decode::<TenantClaims>(token, &self.key, &validation).map_err(
            |e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature => JwtError::BadSignature,
                jsonwebtoken::errors::ErrorKind::Json(_) => JwtError::MissingClaim("tenant_id"),
                _ => JwtError::Malformed(e.to_string()),
            },
        )?;
        let claims = data.claims;
        let exp = claims.exp.ok_or(JwtError::MissingClaim("exp"))?;
        if now >= exp.saturating_add(self.leeway_secs) {
            return Err(JwtError::Expired { exp, now });
        }
        if let Some(nbf) = claims.nbf
            && now.saturating_add(self.leeway_secs) < nbf
        {
            return Err(JwtError::NotYetValid { nbf, now });
        }
        if let Some(aud) = &self.audience {
            match &claims.aud {
                None => return Err(JwtError::MissingClaim("aud")),
                Some(a) if a != aud => return Err(JwtError::WrongAudience(aud.clone())),
                _ => {}
            }
        }
        if let Some(iss) = &self.issuer {
            match &claims.iss {
                None => return Err(JwtError::MissingClaim("iss")),
                Some(i) if i != iss => return Err(JwtError::WrongIssuer(iss.clone())),
                _ => {}
            }
        }
        if claims.tenant_id.trim().is_empty() {
            return Err(JwtError::MissingClaim("tenant_id"));
        }
        if let Some(req) = request_tenant
            && req != claims.tenant_id
        {
            return Err(JwtError::TenantMismatch {
                token: claims.tenant_id,
                request: req.to_owned(),
            });
        }
        Ok(claims)
    }

    /// Issues an HS256 token for `tenant` (for tests, demos and development hosts).
    pub fn issue_hs256(
        &self,
        secret: &[u8],
        tenant: &str,
        iat: u64,
        exp: u64,
    ) -> Result<String, JwtError> {
        let claims = TenantClaims {
            tenant_id: tenant.to_owned(),
            sub: None,
            exp: Some(exp),
            nbf: None,
            iat: Some(iat),
            aud: self.audience.clone(),
            iss: self.issuer.clone(),
        };
        issue(
            &claims,
            JwtAlgorithm::Hs256,
            &EncodingKey::from_secret(secret),
        )
    }
}

/// Signs `claims` with `key` (any of the three algorithms).
pub fn issue(
    claims: &TenantClaims,
    alg: JwtAlgorithm,
    key: &EncodingKey,
) -> Result<String, JwtError> {
    jsonwebtoken::encode(&Header::new(alg.to_jwt()), claims, key)
        .map_err(|e| JwtError::Key(e.to_string()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn claims(tenant: &str) -> TenantClaims {
        TenantClaims {
            tenant_id: tenant.into(),
            sub: Some("user-1".into()),
            exp: Some(2_000),
            nbf: Some(1_000),
            iat: Some(1_000),
            aud: Some("atom-fabric".into()),
            iss: Some("https://issuer.example".into()),
        }
    }

    fn validator() -> JwtValidator {
        JwtValidator::hs256(SECRET)
            .with_audience("atom-fabric")
            .with_issuer("https://issuer.example")
            .with_leeway(0)
    }

    fn hs(c: &TenantClaims) -> String {
        issue(c, JwtAlgorithm::Hs256, &EncodingKey::from_secret(SECRET)).unwrap()
    }

    #[test]
    fn accepts_valid_and_names_each_rejection() {
        let v = validator();
        let t = hs(&claims("t1"));
        assert_eq!(v.validate(&t, Some("t1"), 1_500).unwrap().tenant_id, "t1");
        assert_eq!(
            v.validate(&t, Some("t1"), 2_000),
            Err(JwtError::Expired {
                exp: 2_000,
                now: 2_000
            })
        );
        assert_eq!(
            v.validate(&t, Some("t1"), 999),
            Err(JwtError::NotYetValid {
                nbf: 1_000,
                now: 999
            })
        );
        assert!(matches!(
            v.validate(&t, Some("t2"), 1_500),
            Err(JwtError::TenantMismatch { .. })
        ));
        let mut c = claims("t1");
        c.aud = Some("other".into());
        assert!(matches!(
            v.validate(&hs(&c), None, 1_500),
            Err(JwtError::WrongAudience(_))
        ));
        let mut c = claims("t1");
        c.iss = Some("https://evil.example".into());
        assert!(matches!(
            v.validate(&hs(&c), None, 1_500),
            Err(JwtError::WrongIssuer(_))
        ));
        let mut c = claims("t1");
        c.aud = None;
        assert_eq!(
            v.validate(&hs(&c), None, 1_500),
            Err(JwtError::MissingClaim("aud"))
        );
        let mut c = claims("t1");
        c.exp = None;
        assert_eq!(
            v.validate(&hs(&c), None, 1_500),
            Err(JwtError::MissingClaim("exp"))
        );
        let other = issue(
            &claims("t1"),
            JwtAlgorithm::Hs256,
            &EncodingKey::from_secret(b"another secret, also 32 bytes..."),
        )
        .unwrap();
        assert_eq!(v.validate(&other, None, 1_500), Err(JwtError::BadSignature));
    }

    #[test]
    fn alg_none_is_refused() {
        let header = B64URL.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let body = B64URL.encode(serde_json::to_vec(&claims("t1")).unwrap());
        let token = format!("{header}.{body}.");
        assert_eq!(
            validator().validate(&token, None, 1_500),
            Err(JwtError::NoneAlgorithm)
        );
        let header = B64URL.encode(br#"{"alg":"NONE"}"#);
        assert_eq!(
            validator().validate(&format!("{header}.{body}."), None, 1_500),
            Err(JwtError::NoneAlgorithm)
        );
        assert!(matches!(
            validator().validate("garbage", None, 1_500),
            Err(JwtError::Malformed(_))
        ));
    }

    #[test]
    fn eddsa_round_trip_and_confusion() {
        use ed25519_dalek::pkcs8::{EncodePrivateKey, EncodePublicKey};
        let sk = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
        let priv_pem = sk.to_pkcs8_pem(Default::default()).unwrap();
        let pub_pem = sk
            .verifying_key()
            .to_public_key_pem(Default::default())
            .unwrap();
        let v = JwtValidator::eddsa_pem(pub_pem.as_bytes())
            .unwrap()
            .with_leeway(0);
        let mut c = claims("t9");
        c.aud = None;
        c.iss = None;
        let token = issue(
            &c,
            JwtAlgorithm::EdDsa,
            &EncodingKey::from_ed_pem(priv_pem.as_bytes()).unwrap(),
        )
        .unwrap();
        assert_eq!(
            v.validate(&token, Some("t9"), 1_500)
                .unwrap()
                .sub
                .as_deref(),
            Some("user-1")
        );
        // Algorithm confusion: an HS256 token keyed with the public key's PEM text.
        let forged = issue(
            &c,
            JwtAlgorithm::Hs256,
            &EncodingKey::from_secret(pub_pem.as_bytes()),
        )
        .unwrap();
        assert_eq!(
            v.validate(&forged, Some("t9"), 1_500),
            Err(JwtError::AlgorithmNotAllowed {
                found: "HS256".into(),
                expected: "EdDSA"
            })
        );
    }
}
