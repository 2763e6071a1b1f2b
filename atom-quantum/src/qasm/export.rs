//! OpenQASM 2.0 writer that `qiskit.qasm2.loads` reads back.

use crate::circuit::{Circuit, Operation};
use crate::error::{Error, Result};
use crate::expr::Param;
use crate::gates::GateKind;
use std::fmt::Write;

fn valid_ident(s: &str) -> bool {
    let mut ch = s.chars();
    matches!(ch.next(), Some(c) if c.is_ascii_lowercase())
        && ch.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Library names for multi-controlled X with few controls.
fn mcx_name(n: usize) -> String {
    match n {
        1 => "cx".into(),
        2 => "ccx".into(),
        3 => "c3x".into(),
        4 => "c4x".into(),
        _ => format!("mcx_{n}"),
    }
}

fn args(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

/// Exact definitions (global phase included) of the gates outside Qiskit's `qelib1.inc`.
fn definition(kind: GateKind, defs: &mut Vec<String>, done: &mut Vec<String>) {
    let name = match kind {
        GateKind::Mcx(n) => mcx_name(n as usize),
        k => k.name().to_string(),
    };
    if kind.in_qelib1() || done.contains(&name) {
        return;
    }
    // Dependencies first.
    match kind {
        GateKind::ECR => definition(GateKind::RZX, defs, done),
        GateKind::XXPlusYY | GateKind::XXMinusYY => definition(GateKind::RYY, defs, done),
        _ => {}
    }
    let text = match kind {
        GateKind::R => "gate r(theta,phi) a { u3(theta,phi - pi/2,pi/2 - phi) a; }".to_string(),
        GateKind::CS => "gate cs a,b { cp(pi/2) a,b; }".to_string(),
        GateKind::CSdg => "gate csdg a,b { cp(-pi/2) a,b; }".to_string(),
        GateKind::RYY => "gate ryy(theta) a,b { rx(pi/2) a; rx(pi/2) b; cx a,b; rz(theta) b; cx a,b; rx(-pi/2) a; rx(-pi/2) b; }".to_string(),
        GateKind::RZX => "gate rzx(theta) a,b { h b; cx a,b; rz(theta) b; cx a,b; h b; }".to_string(),
        GateKind::ECR => "gate ecr a,b { rzx(pi/4) a,b; x a; rzx(-pi/4) a,b; }".to_string(),
        GateKind::ISwap => "gate iswap a,b { s a; s b; h a; cx a,b; cx b,a; h b; }".to_string(),
        GateKind::DCX => "gate dcx a,b { cx a,b; cx b,a; }".to_string(),
        GateKind::XXPlusYY => "gate xx_plus_yy(theta,beta) a,b { rz(beta) a; rxx(theta/2) a,b; ryy(theta/2) a,b; rz(-beta) a; }".to_string(),
        GateKind::XXMinusYY => "gate xx_minus_yy(theta,beta) a,b { rz(-beta) a; rxx(theta/2) a,b; ryy(-theta/2) a,b; rz(beta) a; }".to_string(),
        GateKind::CCZ => "gate ccz a,b,c { h c; ccx a,b,c; h c; }".to_string(),
        GateKind::Mcx(n) => {
            let n = n as usize;
            // mcx_n = H · (n-controlled phase π) · H; the phase recursion is exact:
            // mcphase_k(λ) = cp(λ/2) c_k,t; mcx_{k-1} → c_k; cp(-λ/2) c_k,t; mcx_{k-1} → c_k; mcphase_{k-1}(λ/2).
            for k in 1..=n {
                let ph = format!("mcphase_{k}");
                if done.contains(&ph) {
                    continue;
                }
                if k >= 5 {
                    definition(GateKind::Mcx((k - 1) as u8), defs, done);
                }
                let c = args("c", k);
                let all = format!("{},t", c.join(","));
                let body = if k == 1 {
                    "cp(lam) c0,t;".to_string()
                } else {
                    let last = &c[k - 1];
                    let rest = c[..k - 1].join(",");
                    format!(
                        "cp(lam/2) {last},t; {m} {rest},{last}; cp(-lam/2) {last},t; {m} {rest},{last}; mcphase_{p}(lam/2) {rest},t;",
                        m = mcx_name(k - 1),
                        p = k - 1
                    )
                };
                defs.push(format!("gate {ph}(lam) {all} {{ {body} }}"));
                done.push(ph);
            }
            let c = args("c", n);
            format!("gate {name} {},t {{ h t; mcphase_{n}(pi) {},t; h t; }}", c.join(","), c.join(","))
        }
        _ => return,
    };
    defs.push(text);
    done.push(name);
}

/// Write a circuit as OpenQASM 2.0.
pub(crate) fn export(c: &Circuit) -> Result<String> {
    c.validate()?;
    let mut names: Vec<String> = Vec::new();
    for r in c.qregs().iter().chain(c.cregs()) {
        if !valid_ident(&r.name) {
            return Err(Error::Circuit(format!(
                "register name `{}` is not an OpenQASM 2 identifier (lowercase letter, then letters, digits, `_`)",
                r.name
            )));
        }
        if names.contains(&r.name) {
            return Err(Error::Circuit(format!(
                "register name `{}` is used twice",
                r.name
            )));
        }
        names.push(r.name.clone());
    }
    let qname = |q: usize| -> String {
        for r in c.qregs() {
            if q >= r.start && q < r.start + r.size {
                return format!("{}[{}]", r.name, q - r.start);
            }
        }
        String::new()
    };
    let cname = |b: usize| -> String {
        for r in c.cregs() {
            if b >= r.start && b < r.start + r.size {
                return format!("{}[{}]", r.name, b - r.start);
            }
        }
        String::new()
    };
    let mut defs = vec![];
    let mut done = vec![];
    let mut body = String::new();
    for inst in c.instructions() {
        if let Some(cond) = inst.condition {
            let r = &c.cregs()[cond.creg];
            let _ = write!(body, "if({}=={}) ", r.name, cond.value);
        }
        let qs: Vec<String> = inst.qubits.iter().map(|&q| qname(q)).collect();
        match &inst.op {
            Operation::Gate { kind, params } => {
                definition(*kind, &mut defs, &mut done);
                let name = match kind {
                    GateKind::Mcx(n) => mcx_name(*n as usize),
                    k => k.name().to_string(),
                };
                body.push_str(&name);
                if !params.is_empty() {
                    let mut ps = vec![];
                    for p in params {
                        let mut syms = vec![];
                        p.symbols(&mut syms);
                        if let Some(s) = syms.first() {
                            return Err(Error::UnboundParameter(s.clone()));
                        }
                        ps.push(match p {
                            Param::Num(_) | Param::Pi => p.to_string(),
                            other => other.to_string(),
                        });
                    }
                    let _ = write!(body, "({})", ps.join(","));
                }
                let _ = writeln!(body, " {};", qs.join(","));
            }
            Operation::Measure => {
                let _ = writeln!(
                    body,
                    "measure {} -> {};",
                    qs.join(","),
                    cname(inst.clbits[0])
                );
            }
            Operation::Reset => {
                let _ = writeln!(body, "reset {};", qs.join(","));
            }
            Operation::Barrier => {
                if !qs.is_empty() {
                    let _ = writeln!(body, "barrier {};", qs.join(","));
                }
            }
        }
    }
    let mut out = String::from("OPENQASM 2.0;\ninclude \"qelib1.inc\";\n");
    for d in defs {
        out.push_str(&d);
        out.push('\n');
    }
    for r in c.qregs() {
        let _ = writeln!(out, "qreg {}[{}];", r.name, r.size);
    }
    for r in c.cregs() {
        let _ = writeln!(out, "creg {}[{}];", r.name, r.size);
    }
    out.push_str(&body);
    Ok(out)
}
