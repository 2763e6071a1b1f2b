//! OpenQASM 2.0 parser and exporter.
#![allow(clippy::unwrap_used)]

use atom_quantum::{Circuit, Complex64, Error, GateKind, Operation, SimOptions, simulate};
use proptest::prelude::*;

fn sv(c: &Circuit) -> Vec<Complex64> {
    simulate(
        c,
        &SimOptions {
            seed: Some(1),
            ..SimOptions::default()
        },
    )
    .unwrap()
    .into_statevector()
    .into_f64()
}

fn err_pos(src: &str) -> (usize, usize, String) {
    match Circuit::from_qasm(src) {
        Err(Error::Parse {
            line,
            column,
            message,
        }) => (line, column, message),
        other => panic!("expected a parse error, got {other:?}"),
    }
}

#[test]
fn broadcast_expressions_and_custom_gates() {
    let src = r#"
OPENQASM 2.0;
include "qelib1.inc";
// a nested definition with parameters
gate rot(a, b) x { rz(a) x; ry(-b/2 + 2*b/4 + sqrt(4)^2 - 4) x; }
gate pair(t) x, y { rot(t, pi) x; cx x, y; rot(-t, 0) y; barrier x, y; }
qreg q[3];
qreg r[3];
creg c[3];
h q;
cx q, r;
pair(sin(pi/2) * ln(exp(1.5)) - cos(0) + tan(0)) q[0], r[2];
measure r -> c;
"#;
    let c = Circuit::from_qasm(src).unwrap();
    assert_eq!(c.num_qubits(), 6);
    let names: Vec<&str> = c
        .instructions()
        .iter()
        .filter_map(|i| match &i.op {
            Operation::Gate { kind, .. } => Some(kind.name()),
            _ => None,
        })
        .collect();
    assert_eq!(&names[..6], &["h", "h", "h", "cx", "cx", "cx"]);
    // cx q, r zips the registers: cx q[i], r[i].
    assert_eq!(c.instructions()[4].qubits, vec![1, 4]);
    // rz parameter: sin(pi/2)*ln(exp(1.5)) - 1 = 0.5.
    let rz = c
        .instructions()
        .iter()
        .find(|i| {
            matches!(
                i.op,
                Operation::Gate {
                    kind: GateKind::RZ,
                    ..
                }
            )
        })
        .unwrap();
    if let Operation::Gate { params, .. } = &rz.op {
        assert!((params[0].as_f64().unwrap() - 0.5).abs() < 1e-15);
    }
    assert_eq!(
        c.instructions()
            .iter()
            .filter(|i| i.op == Operation::Measure)
            .count(),
        3
    );
}

#[test]
fn user_definition_overrides_library_gate() {
    // The file's own `cu` (here: just an x on the target) replaces the library's cu.
    let src = r#"OPENQASM 2.0; include "qelib1.inc";
        gate cu(a,b,c,d) p, t { x t; }
        qreg q[2]; cu(1,2,3,4) q[0], q[1];"#;
    let s = sv(&Circuit::from_qasm(src).unwrap());
    assert!((s[2].re - 1.0).abs() < 1e-15, "{s:?}");
}

#[test]
fn opaque_gates_fail_clearly_when_used() {
    let ok = r#"OPENQASM 2.0; include "qelib1.inc"; opaque magic(a) x, y; qreg q[2]; h q[0];"#;
    assert!(Circuit::from_qasm(ok).is_ok());
    let bad = "OPENQASM 2.0;\ninclude \"qelib1.inc\";\nopaque magic x;\nqreg q[1];\nmagic q[0];\n";
    let (l, c, m) = err_pos(bad);
    assert_eq!((l, c), (5, 1));
    assert!(m.contains("opaque"), "{m}");
}

#[test]
fn errors_carry_position_and_expectation() {
    let (l, c, m) = err_pos("OPENQASM 2.0;\nqreg q[2]\nh q;");
    assert_eq!((l, c), (3, 1));
    assert!(m.contains("expected `;`"), "{m}");
    let (l, c, m) = err_pos("OPENQASM 2.0;\ninclude \"qelib1.inc\";\nqreg q[2];\nrx(0.1 q[0];");
    assert_eq!((l, c), (4, 8));
    assert!(m.contains("expected `)`"), "{m}");
    let (l, _, m) = err_pos("OPENQASM 2.0;\ninclude \"qelib1.inc\";\nqreg q[2];\ncx q[0], q[5];");
    assert_eq!(l, 4);
    assert!(m.contains("out of range"), "{m}");
    let (_, _, m) = err_pos("OPENQASM 2.0;\nqreg q[2];\nh q[0];");
    assert!(m.contains("qelib1.inc"), "{m}");
    let (_, _, m) = err_pos("OPENQASM 3.0;");
    assert!(m.contains("2.0"), "{m}");
    let (_, _, m) = err_pos("OPENQASM 2.0; include \"qelib1.inc\"; qreg a[2]; qreg b[3]; cx a, b;");
    assert!(m.contains("different sizes"), "{m}");
    let (_, _, m) = err_pos("OPENQASM 2.0; include \"qelib1.inc\"; qreg a[2]; rx(theta) a[0];");
    assert!(m.contains("unknown identifier"), "{m}");
    let (_, _, m) = err_pos("OPENQASM 2.0; include \"other.inc\";");
    assert!(m.contains("other.inc"), "{m}");
}

#[test]
fn conditions_and_reset_parse() {
    let src = r#"OPENQASM 2.0; include "qelib1.inc"; qreg q[2]; creg c[2];
        measure q -> c; if (c == 3) x q; reset q[1]; barrier q;"#;
    let c = Circuit::from_qasm(src).unwrap();
    let conds: Vec<_> = c
        .instructions()
        .iter()
        .filter_map(|i| i.condition)
        .collect();
    assert_eq!(conds.len(), 2);
    assert_eq!(conds[0].value, 3);
    let back = Circuit::from_qasm(&c.to_qasm().unwrap()).unwrap();
    assert_eq!(back, c);
}

#[test]
fn export_round_trips_every_gate() {
    let params = [0.3, -1.2, 2.5, 0.9];
    let mut c = Circuit::new(7, 2);
    c.add_creg("d", 1);
    for &g in GateKind::ALL
        .iter()
        .chain(&[GateKind::Mcx(5), GateKind::Mcx(6)])
    {
        let qs: Vec<usize> = (0..g.num_qubits()).map(|i| (i * 3 + 1) % 7).collect();
        let ps: Vec<atom_quantum::Param> = params[..g.num_params()]
            .iter()
            .map(|v| (*v).into())
            .collect();
        c.gate(g, &ps, &qs);
        c.h((qs[0] + 2) % 7);
    }
    let text = c.to_qasm().unwrap();
    let back = Circuit::from_qasm(&text).unwrap();
    let (a, b) = (sv(&c), sv(&back));
    // Exported definitions are exact, global phase included.
    for (x, y) in a.iter().zip(&b) {
        assert!((x - y).norm() < 1e-10, "{x} vs {y}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]
    #[test]
    fn parser_never_panics_on_arbitrary_text(s in "\\PC{0,200}") {
        let _ = Circuit::from_qasm(&s);
    }

    #[test]
    fn parser_never_panics_on_mutated_programs(cut in 0usize..400, del in 0usize..8, ins in "[ -~\\n]{0,6}") {
        let base = "OPENQASM 2.0;\ninclude \"qelib1.inc\";\ngate g(a,b) x,y { rx(a*pi/2) x; cu(a,b,-a,sqrt(b^2)) x,y; }\nqreg q[3];\ncreg c[3];\nh q;\ng(0.1,2e-3) q[0],q[2];\nmeasure q -> c;\nif (c==2) x q[1];\nreset q[0];\nbarrier q;\n";
        let chars: Vec<char> = base.chars().collect();
        let at = cut.min(chars.len());
        let end = (at + del).min(chars.len());
        let mutated: String = chars[..at].iter().chain(ins.chars().collect::<Vec<_>>().iter()).chain(chars[end..].iter()).collect();
        if let Ok(c) = Circuit::from_qasm(&mutated) {
            // Whatever parses must also export and simulate without panicking.
            let _ = c.to_qasm();
            let _ = simulate(&c, &SimOptions { shots: 3, seed: Some(0), ..SimOptions::default() });
        }
    }

    #[test]
    fn token_soup_never_panics(toks in prop::collection::vec(prop::sample::select(vec![
        "OPENQASM", "2.0", ";", "include", "\"qelib1.inc\"", "qreg", "creg", "q", "c", "[", "]", "1", "2",
        "gate", "opaque", "{", "}", "(", ")", ",", "->", "==", "measure", "reset", "barrier", "if", "h", "cx",
        "u", "mcx", "pi", "-", "+", "*", "/", "^", "sin", "x", "y", "0", "1e400", "99999999999999999999",
    ]), 0..60)) {
        let _ = Circuit::from_qasm(&toks.join(" "));
    }
}
