//! Backend trait and provider registry.
#![allow(clippy::unwrap_used)]

use atom_quantum::{BackendResult, Circuit, Error, ProviderRegistry, QuantumBackend, RunOptions};
use std::collections::BTreeMap;
use std::sync::Arc;

struct AlwaysOnes;

impl QuantumBackend for AlwaysOnes {
    fn name(&self) -> &str {
        "ones"
    }
    fn run(&self, c: &Circuit, o: &RunOptions) -> atom_quantum::Result<BackendResult> {
        let key = "1".repeat(c.num_clbits());
        Ok(BackendResult {
            backend: "ones".into(),
            counts: BTreeMap::from([(key, o.shots)]),
            shots: o.shots,
            seconds: 0.0,
            metadata: BTreeMap::new(),
        })
    }
}

#[test]
fn builtin_providers_run_the_local_simulator() {
    let reg = ProviderRegistry::new();
    let mut bell = Circuit::new(2, 2);
    bell.h(0).cx(0, 1).measure(0, 0).measure(1, 1);
    for name in [None, Some(""), Some("mock"), Some("LOCAL")] {
        let b = reg.select(name).unwrap();
        let r = b
            .run(
                &bell,
                &RunOptions {
                    shots: 2000,
                    seed: Some(5),
                    ..RunOptions::default()
                },
            )
            .unwrap();
        assert_eq!(r.counts.values().sum::<u64>(), 2000);
        assert!(r.counts.keys().all(|k| k == "00" || k == "11"));
        // Balanced within 5 standard deviations (sd = sqrt(2000/4) ≈ 22).
        assert!((r.counts["00"] as i64 - 1000).abs() < 112, "{:?}", r.counts);
        assert_eq!(r.metadata["num_qubits"], 2);
        assert!(r.seconds >= 0.0);
    }
}

#[test]
fn user_providers_register_at_run_time() {
    let mut reg = ProviderRegistry::new();
    assert!(matches!(reg.select(Some("ones")), Err(Error::Backend(_))));
    reg.register(
        "ones",
        Arc::new(|| Ok(Box::new(AlwaysOnes) as Box<dyn QuantumBackend>)),
    );
    let mut c = Circuit::new(1, 3);
    c.measure(0, 0);
    let r = reg
        .select(Some("ones"))
        .unwrap()
        .run(
            &c,
            &RunOptions {
                shots: 7,
                ..RunOptions::default()
            },
        )
        .unwrap();
    assert_eq!(r.counts["111"], 7);
    ProviderRegistry::global().write().unwrap().register(
        "ones",
        Arc::new(|| Ok(Box::new(AlwaysOnes) as Box<dyn QuantumBackend>)),
    );
    assert!(
        ProviderRegistry::global()
            .read()
            .unwrap()
            .names()
            .contains(&"ones".to_string())
    );
}
