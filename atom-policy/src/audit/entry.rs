//! Audit entries: what one record of the log says, as canonical JSON.
//!
//! Canonical form: UTF-8 JSON, object keys sorted by byte order, no whitespace, optional
//! fields omitted when absent, strings with the minimal escaping of RFC 8259 (serde_json),
//! integers in decimal. The struct fields below are declared in sorted order so serde emits
//! the keys sorted; [`AuditEntry::from_json`] accepts any spacing and key order but the log
//! only ever stores [`AuditEntry::to_canonical_json`].
//!
//! Privacy (P1): the actor is the tenant; every identifier below tenant level (user, service
//! account, job, node ...) is carried only as a keyed hash `hmac-sha256:<64 hex>` made with
//! the tenant's identifier key ([`KeyedId::derive`]); payloads only as their SHA-256. Free
//! text is not accepted: `action`, `kind` and `reason` are short machine codes.

use crate::policy::PolicyId;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::AuditError;

/// Format version written in every entry (`"v": 1`).
pub const ENTRY_VERSION: u32 = 1;

/// An identifier below tenant level, as `hmac-sha256:<64 lowercase hex>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct KeyedId(String);

impl KeyedId {
    /// HMAC-SHA256 of `identifier` under the tenant's identifier key.
    pub fn derive(key: &[u8], identifier: &str) -> Self {
        #[allow(clippy::expect_used)]
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC accepts keys of any length");
        mac.update(identifier.as_bytes());
        Self(format!(
            "hmac-sha256:{}",
            hex::encode(mac.finalize().into_bytes())
        ))
    }

    /// The string form.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for KeyedId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let ok = s.strip_prefix("hmac-sha256:").is_some_and(|h| {
            h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        });
        if ok {
            Ok(Self(s))
        } else {
            Err(format!("{s:?} is not hmac-sha256:<64 lowercase hex>"))
        }
    }
}

impl From<KeyedId> for String {
    fn from(k: KeyedId) -> String {
        k.0
    }
}

/// Who acted: the tenant, and optionally the principal within it (keyed hash only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Actor {
    /// Keyed hash of the user or service within the tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<KeyedId>,
    /// Tenant id (`[a-z0-9._-]{1,64}`).
    pub tenant: String,
}

/// What the action was applied to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subject {
    /// Keyed hash of the object's identifier.
    pub id: KeyedId,
    /// Object kind, e.g. `job`, `model`, `key`, `node` (`[a-z0-9._-]{1,64}`).
    pub kind: String,
}

/// Outcome of the policy checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Allowed.
    Allow,
    /// Denied.
    Deny,
    /// Allowed only because `SIMULATION_MODE=true`.
    AllowInSimulation,
}

/// The decision recorded: outcome, the policies that decided it, an optional reason code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    /// Outcome.
    pub outcome: Outcome,
    /// Policy ids (`"P1"`..`"P7"`), sorted and without duplicates.
    pub policies: Vec<PolicyId>,
    /// Machine reason code (`[a-z0-9._-]{1,64}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One audit entry. Fields are declared in sorted key order (canonical JSON).
///
/// ```
/// use atom_policy::audit::{AuditEntry, Actor, Subject, Decision, Outcome, KeyedId};
/// use atom_policy::policy::PolicyId;
/// let e = AuditEntry {
///     action: "job.dispatch".into(),
///     actor: Actor { principal: Some(KeyedId::derive(b"tenant-key", "alice")), tenant: "acme".into() },
///     decision: Decision { outcome: Outcome::Allow, policies: vec![PolicyId::P2, PolicyId::P5], reason: None },
///     payload_sha256: None,
///     subject: Subject { id: KeyedId::derive(b"tenant-key", "job-17"), kind: "job".into() },
///     time: 1_700_000_000_000,
///     v: 1,
/// };
/// let json = e.to_canonical_json().unwrap();
/// assert!(json.starts_with("{\"action\":\"job.dispatch\",\"actor\":{\"principal\":\"hmac-sha256:"));
/// assert_eq!(AuditEntry::from_json(&json).unwrap(), e);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditEntry {
    /// Dotted action code, e.g. `deploy.promote`, `key.rotate`, `job.dispatch`.
    pub action: String,
    /// Who acted.
    pub actor: Actor,
    /// Decision and policies.
    pub decision: Decision,
    /// Lowercase hex SHA-256 of the payload the decision was about, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_sha256: Option<String>,
    /// What it was applied to.
    pub subject: Subject,
    /// Milliseconds since the Unix epoch (UTC), from the injected clock.
    pub time: u64,
    /// Format version, [`ENTRY_VERSION`].
    pub v: u32,
}

fn code_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-'))
}

impl AuditEntry {
    /// Check the field rules (codes, hex digests, sorted policies, version).
    pub fn validate(&self) -> Result<(), AuditError> {
        let bad = |field: &'static str, reason: &'static str| {
            Err(AuditError::InvalidEntry { field, reason })
        };
        if self.v != ENTRY_VERSION {
            return bad("v", "unsupported entry version (expected 1)");
        }
        if !code_ok(&self.action) {
            return bad("action", "must match [a-z0-9._-]{1,64}");
        }
        if !code_ok(&self.actor.tenant) {
            return bad("actor.tenant", "must match [a-z0-9._-]{1,64}");
        }
        if !code_ok(&self.subject.kind) {
            return bad("subject.kind", "must match [a-z0-9._-]{1,64}");
        }
        if let Some(r) = &self.decision.reason
            && !code_ok(r)
        {
            return bad("decision.reason", "must match [a-z0-9._-]{1,64}");
        }
        if self.decision.policies.windows(2).any(|w| w[0] >= w[1]) {
            return bad("decision.policies", "must be sorted without duplicates");
        }
        if let Some(p) = &self.payload_sha256
            && !(p.len() == 64 && p.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        {
            return bad("payload_sha256", "must be 64 lowercase hex digits");
        }
        Ok(())
    }

    /// Parse and validate an entry from JSON (any key order and spacing).
    pub fn from_json(s: &str) -> Result<Self, AuditError> {
        let e: Self = serde_json::from_str(s).map_err(|e| AuditError::EntryJson(e.to_string()))?;
        e.validate()?;
        Ok(e)
    }

    /// The canonical JSON (sorted keys, no whitespace) stored in the log.
    pub fn to_canonical_json(&self) -> Result<String, AuditError> {
        self.validate()?;
        serde_json::to_string(self).map_err(|e| AuditError::EntryJson(e.to_string()))
    }
}

/// `sha256:`-less lowercase hex SHA-256 of a payload, for [`AuditEntry::payload_sha256`].
pub fn payload_digest(payload: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(Sha256::digest(payload))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn keyed_id_is_rfc4231_hmac() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let k = KeyedId::derive(b"Jefe", "what do ya want for nothing?");
        assert_eq!(
            k.as_str(),
            "hmac-sha256:5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn canonical_json_has_sorted_keys_and_no_whitespace() {
        let j = r#"{ "v":1, "time": 5, "subject": {"kind":"job","id":"hmac-sha256:5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"},
            "decision": {"reason":"quota_ok","policies":["P2","P5"],"outcome":"allow_in_simulation"},
            "actor": {"tenant":"acme"}, "action":"job.dispatch",
            "payload_sha256":"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"}"#;
        let e = AuditEntry::from_json(j).unwrap();
        let c = e.to_canonical_json().unwrap();
        assert_eq!(
            c,
            concat!(
                r#"{"action":"job.dispatch","actor":{"tenant":"acme"},"#,
                r#""decision":{"outcome":"allow_in_simulation","policies":["P2","P5"],"reason":"quota_ok"},"#,
                r#""payload_sha256":"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","#,
                r#""subject":{"id":"hmac-sha256:5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843","kind":"job"},"#,
                r#""time":5,"v":1}"#
            )
        );
        assert_eq!(payload_digest(b""), e.payload_sha256.clone().unwrap());
    }

    #[test]
    fn raw_identifiers_and_free_text_are_rejected() {
        let base = r#"{"action":"job.dispatch","actor":{"tenant":"acme","principal":"alice@example.com"},"decision":{"outcome":"allow","policies":["P1"]},"subject":{"kind":"job","id":"hmac-sha256:5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"},"time":1,"v":1}"#;
        assert!(matches!(
            AuditEntry::from_json(base),
            Err(AuditError::EntryJson(_))
        ));
        let extra = base.replace(r#""time":1"#, r#""time":1,"input":"raw""#);
        assert!(matches!(
            AuditEntry::from_json(&extra),
            Err(AuditError::EntryJson(_))
        ));
        let ok = base.replace(r#","principal":"alice@example.com""#, "");
        AuditEntry::from_json(&ok).unwrap();
        let text = ok.replace(
            r#""outcome":"allow""#,
            r#""outcome":"allow","reason":"Because Bob said so""#,
        );
        assert!(matches!(
            AuditEntry::from_json(&text),
            Err(AuditError::InvalidEntry {
                field: "decision.reason",
                ..
            })
        ));
        let unsorted = ok.replace(r#"["P1"]"#, r#"["P5","P2"]"#);
        assert!(matches!(
            AuditEntry::from_json(&unsorted),
            Err(AuditError::InvalidEntry {
                field: "decision.policies",
                ..
            })
        ));
    }
}
