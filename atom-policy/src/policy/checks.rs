//! The seven checks.

use super::{Decision, PolicyId};
use crate::config::Mode;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Kinds of work P6 budgets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    /// A neural inference.
    Neural,
    /// A simulated quantum circuit.
    Quantum,
}

/// Latency and memory budgets (P6). Defaults: neural 1 s, quantum 2 s, 16 GiB of statevector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budgets {
    /// Neural job latency budget in milliseconds.
    pub neural_ms: u64,
    /// Simulated quantum job latency budget in milliseconds.
    pub quantum_ms: u64,
    /// Memory a single job may use, in bytes.
    pub memory_bytes: u64,
}

impl Default for Budgets {
    fn default() -> Self {
        Self {
            neural_ms: 1_000,
            quantum_ms: 2_000,
            memory_bytes: 16 << 30,
        }
    }
}

/// What a job is expected to need, for P6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceEstimate {
    /// Neural or quantum.
    pub kind: JobKind,
    /// Estimated latency in milliseconds.
    pub latency_ms: u64,
    /// Estimated memory in bytes (for quantum work use [`statevector_bytes`]).
    pub memory_bytes: u64,
}

/// Bytes of a statevector of `qubits` qubits with `bytes_per_amplitude` (16 for complex f64,
/// 8 for complex f32); `None` when it does not fit in a `u64`.
pub fn statevector_bytes(qubits: u32, bytes_per_amplitude: u64) -> Option<u64> {
    1u64.checked_shl(qubits)?.checked_mul(bytes_per_amplitude)
}

/// Actions P3 treats as risky.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RiskyAction {
    /// Promotion of a model version to production.
    ProductionPromotion,
    /// Activation of a new signing key.
    KeyRotation,
    /// Applying an autoscaling decision.
    Autoscale,
    /// Promoting a standby / failing over.
    Failover,
}

impl RiskyAction {
    fn name(self) -> &'static str {
        match self {
            RiskyAction::ProductionPromotion => "production promotion",
            RiskyAction::KeyRotation => "key rotation",
            RiskyAction::Autoscale => "autoscaling",
            RiskyAction::Failover => "failover",
        }
    }
}

/// Evaluates P1–P7 for one deployment's mode and budgets.
///
/// ```
/// use atom_policy::config::{Mode, PqcMode};
/// use atom_policy::policy::{PolicyEngine, Budgets, ResourceEstimate, JobKind, statevector_bytes};
/// let engine = PolicyEngine::new(Mode::new(PqcMode::Hybrid, false), Budgets::default(), [7; 32]);
/// // P6: 31 qubits in double precision need 32 GiB: refused up front.
/// let est = ResourceEstimate { kind: JobKind::Quantum, latency_ms: 100, memory_bytes: statevector_bytes(31, 16).unwrap() };
/// assert!(!engine.p6_budget(&est, None).is_allowed());
/// // P1: identifiers below tenant level are keyed hashes, stable per tenant.
/// assert_eq!(engine.p1_hash_identifier("t1", "user-42"), engine.p1_hash_identifier("t1", "user-42"));
/// assert_ne!(engine.p1_hash_identifier("t1", "user-42"), engine.p1_hash_identifier("t2", "user-42"));
/// ```
#[derive(Clone)]
pub struct PolicyEngine {
    mode: Mode,
    budgets: Budgets,
    p1_key: [u8; 32],
}

impl std::fmt::Debug for PolicyEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyEngine")
            .field("mode", &self.mode)
            .field("budgets", &self.budgets)
            .field("p1_key", &"<REDACTED>")
            .finish()
    }
}

fn allow(policy: PolicyId) -> Decision {
    Decision::Allow { policy }
}

fn deny(policy: PolicyId, reason: impl Into<String>) -> Decision {
    Decision::Deny {
        policy,
        reason: reason.into(),
    }
}

impl PolicyEngine {
    /// An engine for `mode` with `budgets`; `p1_key` keys the identifier hash (keep it secret).
    pub fn new(mode: Mode, budgets: Budgets, p1_key: [u8; 32]) -> Self {
        Self {
            mode,
            budgets,
            p1_key,
        }
    }

    /// The mode in force.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The budgets in force.
    pub fn budgets(&self) -> Budgets {
        self.budgets
    }

    /// In simulation a refusal becomes allow-in-simulation; otherwise it stands.
    fn relax(&self, policy: PolicyId, reason: String) -> Decision {
        if self.mode.simulation {
            Decision::AllowInSimulation { policy, reason }
        } else {
            deny(policy, reason)
        }
    }

    /// P1: the keyed hash (HMAC-SHA256, truncated to 128 bits, hex) of an identifier below tenant
    /// level. The tenant is part of the input, so the same user in two tenants is unlinkable.
    pub fn p1_hash_identifier(&self, tenant: &str, identifier: &str) -> String {
        // HMAC accepts keys of any length, so this cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.p1_key)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        mac.update(tenant.as_bytes());
        mac.update(&[0]);
        mac.update(identifier.as_bytes());
        let out = mac.finalize().into_bytes();
        format!("h:{}", hex::encode(&out[..16]))
    }

    /// P1: telemetry labels and log fields must carry no PII and no raw inputs. Refuses fields
    /// named for raw inputs and values that look like e-mail addresses, IP addresses, phone or
    /// card numbers.
    pub fn p1_telemetry(&self, fields: &[(&str, &str)]) -> Decision {
        const RAW: [&str; 8] = [
            "input", "inputs", "prompt", "payload", "text", "raw", "email", "body",
        ];
        for (name, value) in fields {
            let lname = name.to_ascii_lowercase();
            if RAW.contains(&lname.as_str()) {
                return deny(
                    PolicyId::P1,
                    format!("field `{name}` would carry raw input"),
                );
            }
            if let Some(kind) = pii_kind(value) {
                return deny(PolicyId::P1, format!("field `{name}` looks like {kind}"));
            }
        }
        allow(PolicyId::P1)
    }

    /// P1: raw PII enters a model cache only with the tenant's verified signed consent.
    pub fn p1_cache_admission(&self, contains_pii: bool, consent_verified: bool) -> Decision {
        if !contains_pii || consent_verified {
            allow(PolicyId::P1)
        } else {
            deny(PolicyId::P1, "raw PII without the tenant's signed consent")
        }
    }

    /// P2: a deploy, upgrade or dispatch needs a verified signed manifest. `verification` is the
    /// outcome of verifying it (`Err(reason)` when it failed or was absent).
    pub fn p2_signed(&self, verification: Result<(), String>) -> Decision {
        match verification {
            Ok(()) => allow(PolicyId::P2),
            Err(reason) => self.relax(PolicyId::P2, reason),
        }
    }

    /// P3: production promotion and key rotation need `approved_by` unless in simulation;
    /// autoscaling and failover run for real only when explicitly not dry-run and approved.
    pub fn p3_execution(
        &self,
        action: RiskyAction,
        approved_by: Option<&str>,
        dry_run: bool,
    ) -> Decision {
        let approved = approved_by.is_some_and(|a| !a.trim().is_empty());
        match action {
            RiskyAction::ProductionPromotion | RiskyAction::KeyRotation => {
                if approved {
                    allow(PolicyId::P3)
                } else {
                    self.relax(
                        PolicyId::P3,
                        format!("{} without approved_by", action.name()),
                    )
                }
            }
            RiskyAction::Autoscale | RiskyAction::Failover => {
                if dry_run || approved || self.mode.simulation {
                    allow(PolicyId::P3)
                } else {
                    deny(
                        PolicyId::P3,
                        format!(
                            "{} applied for real needs approved_by (default is dry-run)",
                            action.name()
                        ),
                    )
                }
            }
        }
    }

    /// P4: a host must expose `/health` and `/metrics`.
    pub fn p4_observability(&self, endpoints: &[&str]) -> Decision {
        for required in ["/health", "/metrics"] {
            if !endpoints.contains(&required) {
                return deny(PolicyId::P4, format!("host does not expose {required}"));
            }
        }
        allow(PolicyId::P4)
    }

    /// P5: the request's tenant must be the validated token's tenant. `token_tenant` is `None`
    /// when no valid token was presented (tolerated only in simulation).
    pub fn p5_tenant(&self, token_tenant: Option<&str>, request_tenant: &str) -> Decision {
        match token_tenant {
            Some(t) if t == request_tenant => allow(PolicyId::P5),
            Some(t) => deny(
                PolicyId::P5,
                format!("token tenant {t:?} differs from request tenant {request_tenant:?}"),
            ),
            None => self.relax(PolicyId::P5, "no validated tenant token".into()),
        }
    }

    /// P6: the job must fit its latency budget (the model's own when given, else the default for
    /// its kind) and the memory budget. Never relaxed: what cannot fit cannot run.
    pub fn p6_budget(&self, est: &ResourceEstimate, model_budget_ms: Option<u64>) -> Decision {
        let budget = model_budget_ms.unwrap_or(match est.kind {
            JobKind::Neural => self.budgets.neural_ms,
            JobKind::Quantum => self.budgets.quantum_ms,
        });
        if est.memory_bytes > self.budgets.memory_bytes {
            return deny(
                PolicyId::P6,
                format!(
                    "needs {} bytes of memory, budget is {} bytes",
                    est.memory_bytes, self.budgets.memory_bytes
                ),
            );
        }
        if est.latency_ms > budget {
            return deny(
                PolicyId::P6,
                format!(
                    "estimated {} ms exceeds the {budget} ms budget",
                    est.latency_ms
                ),
            );
        }
        allow(PolicyId::P6)
    }

    /// P7: a snapshot's SHA-256 must match before deploy or rollback.
    pub fn p7_snapshot(&self, expected_sha256: &str, actual_sha256: &str) -> Decision {
        if expected_sha256.eq_ignore_ascii_case(actual_sha256) {
            allow(PolicyId::P7)
        } else {
            deny(
                PolicyId::P7,
                format!(
                    "snapshot digest {actual_sha256} does not match recorded {expected_sha256}"
                ),
            )
        }
    }
}

/// A coarse PII detector for telemetry values: e-mail, IPv4, phone and card numbers.
fn pii_kind(value: &str) -> Option<&'static str> {
    let v = value.trim();
    if let Some((local, domain)) = v.split_once('@')
        && !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
    {
        return Some("an e-mail address");
    }
    let parts: Vec<&str> = v.split('.').collect();
    if parts.len() == 4
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 3 && p.parse::<u8>().is_ok())
    {
        return Some("an IP address");
    }
    let digits = v.chars().filter(char::is_ascii_digit).count();
    let only_phone_chars = v
        .chars()
        .all(|c| c.is_ascii_digit() || " +-().".contains(c));
    if only_phone_chars && (13..=19).contains(&digits) && luhn(v) {
        return Some("a card number");
    }
    if only_phone_chars
        && (9..=15).contains(&digits)
        && (v.starts_with('+') || v.contains(' ') || v.contains('-'))
    {
        return Some("a phone number");
    }
    None
}

fn luhn(s: &str) -> bool {
    let mut sum = 0;
    for (i, d) in s.chars().rev().filter_map(|c| c.to_digit(10)).enumerate() {
        let d = if i % 2 == 1 {
            if d * 2 > 9 { d * 2 - 9 } else { d * 2 }
        } else {
            d
        };
        sum += d;
    }
    sum % 10 == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PqcMode;

    fn engine(sim: bool) -> PolicyEngine {
        PolicyEngine::new(Mode::new(PqcMode::Hybrid, sim), Budgets::default(), [1; 32])
    }

    #[test]
    fn p1_detects_pii_and_raw_fields() {
        let e = engine(false);
        assert!(
            e.p1_telemetry(&[
                ("tenant", "t1"),
                ("model", "resnet50"),
                ("latency_ms", "12")
            ])
            .is_allowed()
        );
        for (k, v) in [
            ("user", "alice@example.com"),
            ("client", "192.168.1.20"),
            ("card", "4111 1111 1111 1111"),
            ("phone", "+44 20 7946 0958"),
            ("prompt", "hello"),
        ] {
            assert!(!e.p1_telemetry(&[(k, v)]).is_allowed(), "{k}={v}");
        }
        // A version string is not an IP; a 12-digit id without separators is not a phone.
        assert!(
            e.p1_telemetry(&[("v", "1.2.3"), ("id", "123456789012")])
                .is_allowed()
        );
        let h = e.p1_hash_identifier("t1", "alice@example.com");
        assert!(h.starts_with("h:") && h.len() == 34 && !h.contains("alice"));
        assert!(e.p1_telemetry(&[("user", &h)]).is_allowed());
        assert!(!e.p1_cache_admission(true, false).is_allowed());
        assert!(e.p1_cache_admission(true, true).is_allowed());
    }

    #[test]
    fn p1_hash_is_hmac_sha256() {
        // RFC 4231 test case 2: HMAC-SHA256(key="Jefe", "what do ya want for nothing?").
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(b"Jefe").unwrap_or_else(|_| unreachable!());
        mac.update(b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(b"Jefe");
        let e = PolicyEngine::new(Mode::default(), Budgets::default(), key);
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&key).unwrap_or_else(|_| unreachable!());
        mac.update(b"t\0u");
        let full = hex::encode(mac.finalize().into_bytes());
        assert_eq!(e.p1_hash_identifier("t", "u"), format!("h:{}", &full[..32]));
    }

    #[test]
    fn simulation_relaxes_only_what_it_may() {
        let prod = engine(false);
        let sim = engine(true);
        assert!(matches!(
            prod.p2_signed(Err("unsigned".into())),
            Decision::Deny { .. }
        ));
        assert!(matches!(
            sim.p2_signed(Err("unsigned".into())),
            Decision::AllowInSimulation { .. }
        ));
        assert!(matches!(
            prod.p3_execution(RiskyAction::ProductionPromotion, None, false),
            Decision::Deny { .. }
        ));
        assert!(matches!(
            prod.p3_execution(RiskyAction::ProductionPromotion, Some("bob"), false),
            Decision::Allow { .. }
        ));
        assert!(
            prod.p3_execution(RiskyAction::Autoscale, None, true)
                .is_allowed()
        );
        assert!(
            !prod
                .p3_execution(RiskyAction::Failover, None, false)
                .is_allowed()
        );
        assert!(!prod.p5_tenant(None, "t1").is_allowed());
        assert!(sim.p5_tenant(None, "t1").is_allowed());
        assert!(!sim.p5_tenant(Some("t2"), "t1").is_allowed());
        // P6 and P7 are never relaxed.
        let big = ResourceEstimate {
            kind: JobKind::Quantum,
            latency_ms: 1,
            memory_bytes: statevector_bytes(31, 16).unwrap_or(u64::MAX),
        };
        assert!(!sim.p6_budget(&big, None).is_allowed());
        assert!(!sim.p7_snapshot("aa", "bb").is_allowed());
        assert!(sim.p7_snapshot("AA", "aa").is_allowed());
        assert!(!prod.p4_observability(&["/health"]).is_allowed());
        assert!(prod.p4_observability(&["/metrics", "/health"]).is_allowed());
    }

    #[test]
    fn p6_statevector_rule() {
        assert_eq!(statevector_bytes(30, 16), Some(16 << 30));
        assert_eq!(statevector_bytes(64, 16), None);
        let e = engine(false);
        let fits = ResourceEstimate {
            kind: JobKind::Quantum,
            latency_ms: 1_999,
            memory_bytes: statevector_bytes(30, 16).unwrap_or(0),
        };
        assert!(e.p6_budget(&fits, None).is_allowed());
        let slow = ResourceEstimate {
            kind: JobKind::Neural,
            latency_ms: 1_001,
            memory_bytes: 1,
        };
        assert!(!e.p6_budget(&slow, None).is_allowed());
        assert!(e.p6_budget(&slow, Some(5_000)).is_allowed());
    }
}
