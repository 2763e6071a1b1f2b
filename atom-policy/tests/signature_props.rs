//! Property tests: any payload signed under any mode verifies, and any single-bit change of the
//! payload, the payload type or a signature is refused.
#![allow(clippy::unwrap_used)]

use atom_policy::config::{Mode, PqcMode};
use atom_policy::dsse::Envelope;
use atom_policy::keyring::KeyRing;
use atom_policy::keys::{Algorithm, KeySpec, SigningKey};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use proptest::prelude::*;
use std::sync::LazyLock;

static KEYS: LazyLock<Vec<SigningKey>> = LazyLock::new(|| {
    vec![
        SigningKey::generate(KeySpec::Hybrid(Algorithm::MlDsa44)),
        SigningKey::from_components(vec![
            atom_policy::keys::SecretComponent::generate(Algorithm::Ed25519),
            atom_policy::keys::SecretComponent::generate(Algorithm::MlDsa87),
        ])
        .unwrap(),
    ]
});

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_bit_flip_is_refused(
        payload in proptest::collection::vec(any::<u8>(), 0..512),
        key_index in 0usize..2,
        classical in any::<bool>(),
        flip_target in 0u8..3,
        flip_at in any::<prop::sample::Index>(),
        bit in 0u8..8,
    ) {
        let key = &KEYS[key_index];
        let ring = KeyRing::trusting(key.verifying_key());
        let mode = Mode::new(if classical { PqcMode::Classical } else { PqcMode::Hybrid }, false);
        let ty = "application/x-test";
        let env = Envelope::sign(ty, &payload, key, mode).unwrap();
        let (back, v) = env.verify(&ring, mode, 0, ty).unwrap();
        prop_assert_eq!(&back, &payload);
        prop_assert_eq!(v.post_quantum, !classical);

        let mut bad = env.clone();
        match flip_target {
            0 if !payload.is_empty() => {
                let mut p = payload.clone();
                let i = flip_at.index(p.len());
                p[i] ^= 1 << bit;
                bad.payload = B64.encode(&p);
            }
            1 => {
                let mut t = ty.as_bytes().to_vec();
                let i = flip_at.index(t.len());
                t[i] ^= 1 << (bit % 7);
                bad.payload_type = String::from_utf8_lossy(&t).into_owned();
            }
            _ => {
                let s = flip_at.index(bad.signatures.len());
                let mut sig = B64.decode(&bad.signatures[s].sig).unwrap();
                let i = flip_at.index(sig.len());
                sig[i] ^= 1 << bit;
                bad.signatures[s].sig = B64.encode(&sig);
            }
        }
        if bad != env {
            let expected = bad.payload_type.clone();
            prop_assert!(bad.verify(&ring, mode, 0, &expected).is_err());
        }
    }
}
