//! ML-DSA-44/65/87, ECDSA P-256 and Ed25519 sign and verify, and hybrid (ECDSA + ML-DSA-65)
//! DSSE signing and verification, through atom-policy's public API.

use atom_policy::config::{Mode, PqcMode};
use atom_policy::dsse::{Envelope, JOB_PAYLOAD_TYPE};
use atom_policy::keyring::KeyRing;
use atom_policy::keys::{Algorithm, KeySpec, SecretComponent, SigningKey};
use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;

fn single(c: &mut Criterion) {
    let msg = vec![0x5au8; 256];
    for alg in Algorithm::ALL {
        let key = SecretComponent::generate(alg);
        let sig = key.sign(&msg).expect("sign");
        c.bench_function(&format!("{alg}/sign"), |b| {
            b.iter(|| key.sign(black_box(&msg)))
        });
        c.bench_function(&format!("{alg}/verify"), |b| {
            b.iter(|| assert!(key.public().verify(black_box(&msg), black_box(&sig))))
        });
    }
    c.bench_function("ml-dsa-65/keygen", |b| {
        b.iter(|| SecretComponent::generate(Algorithm::MlDsa65))
    });
}

fn hybrid(c: &mut Criterion) {
    let key = SigningKey::generate(KeySpec::Hybrid(Algorithm::MlDsa65));
    let ring = KeyRing::trusting(key.verifying_key());
    let mode = Mode::new(PqcMode::Hybrid, false);
    let payload = vec![b'x'; 1024];
    let env = Envelope::sign(JOB_PAYLOAD_TYPE, &payload, &key, mode).expect("sign");
    c.bench_function("hybrid-ecdsa-p256+ml-dsa-65/dsse-sign", |b| {
        b.iter(|| Envelope::sign(JOB_PAYLOAD_TYPE, black_box(&payload), &key, mode))
    });
    c.bench_function("hybrid-ecdsa-p256+ml-dsa-65/dsse-verify", |b| {
        b.iter(|| {
            env.verify(&ring, mode, 0, JOB_PAYLOAD_TYPE)
                .expect("verify")
        })
    });
}

criterion_group!(benches, single, hybrid);
criterion_main!(benches);
