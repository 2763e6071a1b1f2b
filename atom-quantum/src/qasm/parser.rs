//! OpenQASM 2.0 parser: tokens to a flat [`Circuit`], custom gates expanded.

use super::lexer::{Tok, Token, lex};
use crate::circuit::{Circuit, Condition, Instruction, Operation};
use crate::error::{Error, Result};
use crate::expr::{BinOp, Func, Param};
use crate::gates::GateKind;
use std::collections::HashMap;
use std::rc::Rc;

/// Most bits (qubits + clbits) a program may declare; keeps broadcast expansion bounded.
const MAX_BITS: usize = 1 << 16;
/// Most instructions after expanding custom gates.
const MAX_INSTRUCTIONS: usize = 20_000_000;
/// Deepest expression nesting accepted.
const MAX_EXPR_DEPTH: usize = 256;

#[derive(Debug)]
enum BodyOp {
    Call {
        name: String,
        known: Known,
        line: usize,
        col: usize,
        params: Vec<Param>,
        args: Vec<usize>,
    },
    Barrier(Vec<usize>),
}

#[derive(Debug)]
struct GateDef {
    params: Vec<String>,
    nqubits: usize,
    body: Vec<BodyOp>,
}

#[derive(Debug, Clone)]
enum Known {
    Lib(GateKind),
    /// `mcx` called with any number of qubits (controls = arguments - 1).
    McxAny,
    Def(Rc<GateDef>),
    Opaque {
        nparams: usize,
        nqubits: usize,
    },
}

struct Parser {
    /// Free parameters allowed in top-level gate arguments.
    symbols: Vec<String>,
    toks: Vec<Token>,
    pos: usize,
    lib: bool,
    defs: HashMap<String, Known>,
    circuit: Circuit,
    qregs: HashMap<String, usize>,
    cregs: HashMap<String, usize>,
}

/// Parse OpenQASM 2.0 source into a circuit.
pub(crate) fn parse(src: &str) -> Result<Circuit> {
    parse_with(src, &[])
}

/// Parses with `symbols` allowed as free parameters in top-level gate arguments.
pub(crate) fn parse_with(src: &str, symbols: &[String]) -> Result<Circuit> {
    let toks = lex(src)?;
    let mut p = Parser {
        symbols: symbols.to_vec(),
        toks,
        pos: 0,
        lib: false,
        defs: HashMap::new(),
        circuit: Circuit::default(),
        qregs: HashMap::new(),
        cregs: HashMap::new(),
    };
    p.program()?;
    Ok(p.circuit)
}

enum Arg {
    One(usize),
    Reg(usize, usize), // start, size
}

impl Parser {
    fn peek(&self) -> &Token {
        let last = self.toks.len().saturating_sub(1);
        &self.toks[self.pos.min(last)]
    }

    fn next(&mut self) -> Token {
        let t = self.peek().clone();
        if self.pos < self.toks.len() {
            self.pos += 1;
        }
        t
    }

    fn err_at<T>(&self, t: &Token, msg: String) -> Result<T> {
        Err(Error::Parse {
            line: t.line,
            column: t.col,
            message: msg,
        })
    }

    fn expected<T>(&self, what: &str) -> Result<T> {
        let t = self.peek().clone();
        self.err_at(&t, format!("expected {what}, found {}", t.tok.describe()))
    }

    fn is_sym(&self, s: &str) -> bool {
        matches!(&self.peek().tok, Tok::Sym(x) if *x == s)
    }

    fn sym(&mut self, s: &str, ctx: &str) -> Result<Token> {
        if self.is_sym(s) {
            Ok(self.next())
        } else {
            self.expected(&format!("`{s}` {ctx}"))
        }
    }

    fn ident(&mut self, what: &str) -> Result<(String, Token)> {
        match &self.peek().tok {
            Tok::Ident(s) => {
                let s = s.clone();
                Ok((s, self.next()))
            }
            _ => self.expected(what),
        }
    }

    fn int(&mut self, what: &str) -> Result<(u64, Token)> {
        match self.peek().tok {
            Tok::Int(v) => Ok((v, self.next())),
            _ => self.expected(what),
        }
    }

    fn program(&mut self) -> Result<()> {
        if matches!(&self.peek().tok, Tok::Ident(s) if s == "OPENQASM") {
            self.next();
            let t = self.peek().clone();
            let ok = match t.tok {
                Tok::Real(v) => (2.0..3.0).contains(&v),
                Tok::Int(v) => v == 2,
                _ => return self.expected("a version number after `OPENQASM`"),
            };
            if !ok {
                return self.err_at(
                    &t,
                    format!("unsupported version {}: expected 2.0", t.tok.describe()),
                );
            }
            self.next();
            self.sym(";", "after the version")?;
        }
        while self.peek().tok != Tok::Eof {
            self.statement()?;
        }
        Ok(())
    }

    fn statement(&mut self) -> Result<()> {
        let t = self.peek().clone();
        let word = match &t.tok {
            Tok::Ident(s) => s.clone(),
            _ => {
                return self
                    .expected("a statement (`qreg`, `creg`, `gate`, a gate call, `measure`, ...)");
            }
        };
        match word.as_str() {
            "OPENQASM" => self.err_at(&t, "`OPENQASM` may only appear once, at the start".into()),
            "include" => {
                self.next();
                let f = self.peek().clone();
                let name = match &f.tok {
                    Tok::Str(s) => s.clone(),
                    _ => return self.expected("a file name in quotes after `include`"),
                };
                self.next();
                if name != "qelib1.inc" {
                    return self.err_at(
                        &f,
                        format!("cannot include \"{name}\": only \"qelib1.inc\" is available"),
                    );
                }
                self.lib = true;
                self.sym(";", "after the include")?;
                Ok(())
            }
            "qreg" | "creg" => {
                self.next();
                let (name, nt) = self.ident("a register name")?;
                self.sym("[", "after the register name")?;
                let (size, st) = self.int("the register size (an integer)")?;
                self.sym("]", "after the register size")?;
                self.sym(";", "after the register declaration")?;
                if self.qregs.contains_key(&name) || self.cregs.contains_key(&name) {
                    return self.err_at(&nt, format!("register `{name}` is already declared"));
                }
                let total = self.circuit.num_qubits() as u64 + self.circuit.num_clbits() as u64;
                if size == 0 || size.saturating_add(total) > MAX_BITS as u64 {
                    return self.err_at(
                        &st,
                        format!(
                            "register size {size} out of range: expected 1..={} bits in all",
                            MAX_BITS
                        ),
                    );
                }
                if word == "qreg" {
                    let i = self.circuit.add_qreg(&name, size as usize);
                    self.qregs.insert(name, i);
                } else {
                    let i = self.circuit.add_creg(&name, size as usize);
                    self.cregs.insert(name, i);
                }
                Ok(())
            }
            "gate" => self.gate_def(),
            "opaque" => {
                self.next();
                let (name, nt) = self.ident("a gate name after `opaque`")?;
                let params = if self.is_sym("(") {
                    self.id_list_paren()?
                } else {
                    vec![]
                };
                let qubits = self.id_list("qubit argument names")?;
                self.sym(";", "after the opaque declaration")?;
                self.check_new_name(&name, &nt)?;
                self.defs.insert(
                    name,
                    Known::Opaque {
                        nparams: params.len(),
                        nqubits: qubits.len(),
                    },
                );
                Ok(())
            }
            "if" => {
                self.next();
                self.sym("(", "after `if`")?;
                let (reg, rt) = self.ident("a classical register name")?;
                self.sym("==", "in the condition")?;
                let (value, _) = self.int("an integer to compare with")?;
                self.sym(")", "after the condition")?;
                let creg = match self.cregs.get(&reg) {
                    Some(i) => *i,
                    None => {
                        return self.err_at(&rt, format!("`{reg}` is not a classical register"));
                    }
                };
                let cond = Condition { creg, value };
                let q = self.peek().clone();
                match &q.tok {
                    Tok::Ident(w) if w == "if" => self.err_at(&q, "nested `if` is not allowed".into()),
                    Tok::Ident(w) if ["qreg", "creg", "gate", "opaque", "include", "barrier"].contains(&w.as_str()) => {
                        self.err_at(&q, format!("expected a gate call, `measure` or `reset` after `if (...)`, found `{w}`"))
                    }
                    _ => self.qop(Some(cond)),
                }
            }
            "barrier" => {
                self.next();
                let args = self.arg_list(true)?;
                self.sym(";", "after the barrier arguments")?;
                let mut qs = vec![];
                for a in args {
                    match a {
                        Arg::One(q) => qs.push(q),
                        Arg::Reg(s, n) => qs.extend(s..s + n),
                    }
                }
                self.circuit.barrier(&qs);
                Ok(())
            }
            _ => self.qop(None),
        }
    }

    fn check_new_name(&self, name: &str, t: &Token) -> Result<()> {
        if matches!(
            self.defs.get(name),
            Some(Known::Def(_)) | Some(Known::Opaque { .. })
        ) {
            return self.err_at(t, format!("gate `{name}` is already defined"));
        }
        if name == "U" || name == "CX" {
            return self.err_at(
                t,
                format!("`{name}` is a built-in gate and cannot be redefined"),
            );
        }
        Ok(())
    }

    fn id_list_paren(&mut self) -> Result<Vec<String>> {
        self.sym("(", "")?;
        let mut v = vec![];
        if !self.is_sym(")") {
            v = self.id_list("parameter names")?;
        }
        self.sym(")", "after the parameter names")?;
        Ok(v)
    }

    fn id_list(&mut self, what: &str) -> Result<Vec<String>> {
        let mut v = vec![];
        loop {
            let (s, t) = self.ident(what)?;
            if v.contains(&s) {
                return self.err_at(&t, format!("`{s}` is listed twice"));
            }
            v.push(s);
            if self.is_sym(",") {
                self.next();
            } else {
                return Ok(v);
            }
        }
    }

    fn gate_def(&mut self) -> Result<()> {
        self.next();
        let (name, nt) = self.ident("a gate name after `gate`")?;
        let params = if self.is_sym("(") {
            self.id_list_paren()?
        } else {
            vec![]
        };
        let qubits = self.id_list("qubit argument names")?;
        self.sym("{", "to open the gate body")?;
        let mut body = vec![];
        while !self.is_sym("}") {
            let t = self.peek().clone();
            let (w, _) = self.ident("a gate call or `}` in the gate body")?;
            if w == "barrier" {
                let mut qs = vec![];
                loop {
                    let (a, at) = self.ident("a qubit argument name")?;
                    match qubits.iter().position(|q| *q == a) {
                        Some(i) => qs.push(i),
                        None => {
                            return self
                                .err_at(&at, format!("`{a}` is not an argument of gate `{name}`"));
                        }
                    }
                    if self.is_sym(",") {
                        self.next();
                    } else {
                        break;
                    }
                }
                self.sym(";", "after the barrier")?;
                body.push(BodyOp::Barrier(qs));
                continue;
            }
            if ["measure", "reset", "if", "qreg", "creg", "gate", "opaque"].contains(&w.as_str()) {
                return self.err_at(
                    &t,
                    format!("`{w}` is not allowed inside a gate body: expected a gate call"),
                );
            }
            let known = match self.lookup(&w) {
                Some(k) => k,
                None => {
                    return self.err_at(
                        &t,
                        format!("unknown gate `{w}` (gates must be defined before use)"),
                    );
                }
            };
            let (np, nq) = match &known {
                Known::Lib(k) => (k.num_params(), Some(k.num_qubits())),
                Known::McxAny => (0, None),
                Known::Def(d) => (d.params.len(), Some(d.nqubits)),
                Known::Opaque { nparams, nqubits } => (*nparams, Some(*nqubits)),
            };
            let ps = if self.is_sym("(") {
                self.expr_list(&params)?
            } else {
                vec![]
            };
            if ps.len() != np {
                return self.err_at(
                    &t,
                    format!("gate `{w}` takes {np} parameters, got {}", ps.len()),
                );
            }
            let mut args = vec![];
            loop {
                let (a, at) = self.ident("a qubit argument name")?;
                match qubits.iter().position(|q| *q == a) {
                    Some(i) => {
                        if args.contains(&i) {
                            return self
                                .err_at(&at, format!("qubit `{a}` is used twice in one call"));
                        }
                        args.push(i)
                    }
                    None => {
                        return self
                            .err_at(&at, format!("`{a}` is not an argument of gate `{name}`"));
                    }
                }
                if self.is_sym(",") {
                    self.next();
                } else {
                    break;
                }
            }
            self.sym(";", "after the gate call")?;
            if let Some(n) = nq {
                if args.len() != n {
                    return self.err_at(
                        &t,
                        format!("gate `{w}` takes {n} qubits, got {}", args.len()),
                    );
                }
            } else if args.len() < 2 {
                return self.err_at(
                    &t,
                    format!("gate `{w}` takes at least 2 qubits, got {}", args.len()),
                );
            }
            body.push(BodyOp::Call {
                name: w,
                known,
                line: t.line,
                col: t.col,
                params: ps,
                args,
            });
        }
        self.next();
        self.check_new_name(&name, &nt)?;
        let nqubits = qubits.len();
        self.defs.insert(
            name,
            Known::Def(Rc::new(GateDef {
                params,
                nqubits,
                body,
            })),
        );
        Ok(())
    }

    fn lookup(&self, name: &str) -> Option<Known> {
        if let Some(k) = self.defs.get(name) {
            return Some(k.clone());
        }
        match name {
            "U" => return Some(Known::Lib(GateKind::U)),
            "CX" => return Some(Known::Lib(GateKind::CX)),
            _ => {}
        }
        if !self.lib {
            return None;
        }
        match name {
            "mcx" => Some(Known::McxAny),
            "rcccx" => Some(Known::Lib(GateKind::RC3X)),
            _ => GateKind::from_name(name).map(Known::Lib),
        }
    }

    fn arg(&mut self, quantum: bool) -> Result<Arg> {
        let (name, t) = self.ident(if quantum {
            "a qubit or quantum register"
        } else {
            "a clbit or classical register"
        })?;
        let reg = if quantum {
            self.qregs.get(&name).map(|i| &self.circuit.qregs()[*i])
        } else {
            self.cregs.get(&name).map(|i| &self.circuit.cregs()[*i])
        };
        let (start, size) = match reg {
            Some(r) => (r.start, r.size),
            None => {
                let kind = if quantum { "quantum" } else { "classical" };
                return self.err_at(&t, format!("`{name}` is not a {kind} register"));
            }
        };
        if self.is_sym("[") {
            self.next();
            let (i, it) = self.int("an index")?;
            self.sym("]", "after the index")?;
            if i >= size as u64 {
                return self.err_at(
                    &it,
                    format!("index {i} out of range for `{name}` of size {size}"),
                );
            }
            Ok(Arg::One(start + i as usize))
        } else {
            Ok(Arg::Reg(start, size))
        }
    }

    fn arg_list(&mut self, quantum: bool) -> Result<Vec<Arg>> {
        let mut v = vec![self.arg(quantum)?];
        while self.is_sym(",") {
            self.next();
            v.push(self.arg(quantum)?);
        }
        Ok(v)
    }

    /// Broadcast: registers of equal size are zipped, single bits repeated.
    fn broadcast(&self, t: &Token, args: &[Arg]) -> Result<Vec<Vec<usize>>> {
        let mut len = None;
        for a in args {
            if let Arg::Reg(_, n) = a {
                match len {
                    None => len = Some(*n),
                    Some(l) if l != *n => {
                        return self.err_at(
                            t,
                            format!("registers of different sizes ({l} and {n}) in one statement"),
                        );
                    }
                    _ => {}
                }
            }
        }
        let l = len.unwrap_or(1);
        let mut out = Vec::with_capacity(l);
        for i in 0..l {
            let row: Vec<usize> = args
                .iter()
                .map(|a| match a {
                    Arg::One(q) => *q,
                    Arg::Reg(s, _) => s + i,
                })
                .collect();
            let mut sorted = row.clone();
            sorted.sort_unstable();
            sorted.dedup();
            if sorted.len() != row.len() {
                return self.err_at(t, "the same bit is used twice in one operation".into());
            }
            out.push(row);
        }
        Ok(out)
    }

    fn qop(&mut self, cond: Option<Condition>) -> Result<()> {
        let t = self.peek().clone();
        let (w, _) = self.ident("a gate call, `measure` or `reset`")?;
        match w.as_str() {
            "measure" => {
                let q = self.arg(true)?;
                self.sym("->", "between the qubit and the clbit")?;
                let c = self.arg(false)?;
                self.sym(";", "after measure")?;
                let (qs, cs) = match (q, c) {
                    (Arg::One(q), Arg::One(c)) => (vec![q], vec![c]),
                    (Arg::Reg(qs, qn), Arg::Reg(cs, cn)) if qn == cn => {
                        ((qs..qs + qn).collect(), (cs..cs + cn).collect())
                    }
                    _ => {
                        return self.err_at(
                            &t,
                            "measure needs a qubit and a clbit, or two registers of the same size"
                                .into(),
                        );
                    }
                };
                for (q, c) in qs.into_iter().zip(cs) {
                    self.push(
                        Instruction {
                            op: Operation::Measure,
                            qubits: vec![q],
                            clbits: vec![c],
                            condition: cond,
                        },
                        &t,
                    )?;
                }
                Ok(())
            }
            "reset" => {
                let a = self.arg(true)?;
                self.sym(";", "after reset")?;
                let qs: Vec<usize> = match a {
                    Arg::One(q) => vec![q],
                    Arg::Reg(s, n) => (s..s + n).collect(),
                };
                for q in qs {
                    self.push(
                        Instruction {
                            op: Operation::Reset,
                            qubits: vec![q],
                            clbits: vec![],
                            condition: cond,
                        },
                        &t,
                    )?;
                }
                Ok(())
            }
            _ => {
                let known = match self.lookup(&w) {
                    Some(k) => k,
                    None => {
                        let hint = if !self.lib && GateKind::from_name(&w).is_some() {
                            " (missing `include \"qelib1.inc\";`?)"
                        } else {
                            ""
                        };
                        return self.err_at(&t, format!("unknown gate `{w}`{hint}"));
                    }
                };
                let ps = if self.is_sym("(") {
                    let free = self.symbols.clone();
                    self.expr_list(&free)?
                } else {
                    vec![]
                };
                let mut syms = vec![];
                for p in &ps {
                    p.symbols(&mut syms);
                }
                if !syms.is_empty() {
                    // Free parameters stay symbolic; only library gates take them (a custom
                    // gate's body would have to be expanded symbolically).
                    let Known::Lib(k) = known else {
                        return self.err_at(&t, format!("free parameter `{}` is only allowed in library gate arguments, not in `{w}`", syms[0]));
                    };
                    if ps.len() != k.num_params() {
                        return self.err_at(
                            &t,
                            format!(
                                "gate `{w}` takes {} parameters, got {}",
                                k.num_params(),
                                ps.len()
                            ),
                        );
                    }
                    let args = self.arg_list(true)?;
                    self.sym(";", "after the gate arguments")?;
                    for qs in self.broadcast(&t, &args)? {
                        if qs.len() != k.num_qubits() {
                            return self.err_at(
                                &t,
                                format!(
                                    "gate `{w}` takes {} qubits, got {}",
                                    k.num_qubits(),
                                    qs.len()
                                ),
                            );
                        }
                        let op = Operation::Gate {
                            kind: k,
                            params: ps.clone(),
                        };
                        self.push(
                            Instruction {
                                op,
                                qubits: qs,
                                clbits: vec![],
                                condition: cond,
                            },
                            &t,
                        )?;
                    }
                    return Ok(());
                }
                let mut values = Vec::with_capacity(ps.len());
                for p in &ps {
                    values.push(
                        p.eval(&|_| None)
                            .or_else(|e| self.err_at(&t, e.to_string()))?,
                    );
                }
                let args = self.arg_list(true)?;
                self.sym(";", "after the gate arguments")?;
                let calls = self.broadcast(&t, &args)?;
                for qs in calls {
                    self.call(&known, &w, &values, &qs, cond, &t)?;
                }
                Ok(())
            }
        }
    }

    fn push(&mut self, inst: Instruction, t: &Token) -> Result<()> {
        if self.circuit.instructions().len() >= MAX_INSTRUCTIONS {
            return self.err_at(
                t,
                format!("program expands to more than {MAX_INSTRUCTIONS} instructions"),
            );
        }
        self.circuit.push(inst);
        Ok(())
    }

    fn call(
        &mut self,
        known: &Known,
        name: &str,
        params: &[f64],
        qs: &[usize],
        cond: Option<Condition>,
        t: &Token,
    ) -> Result<()> {
        match known {
            Known::Lib(k) => {
                if params.len() != k.num_params() {
                    return self.err_at(t, format!("gate `{name}` takes {} parameters, got {}", k.num_params(), params.len()));
                }
                if qs.len() != k.num_qubits() {
                    return self.err_at(t, format!("gate `{name}` takes {} qubits, got {}", k.num_qubits(), qs.len()));
                }
                let op = Operation::Gate { kind: *k, params: params.iter().map(|v| Param::Num(*v)).collect() };
                self.push(Instruction { op, qubits: qs.to_vec(), clbits: vec![], condition: cond }, t)
            }
            Known::McxAny => {
                if !params.is_empty() {
                    return self.err_at(t, format!("gate `mcx` takes no parameters, got {}", params.len()));
                }
                let kind = match qs.len() {
                    0 | 1 => return self.err_at(t, "gate `mcx` takes at least 2 qubits".into()),
                    n if n > 200 => return self.err_at(t, "gate `mcx` takes at most 200 qubits".into()),
                    n => GateKind::Mcx((n - 1) as u8),
                };
                self.push(Instruction { op: Operation::Gate { kind, params: vec![] }, qubits: qs.to_vec(), clbits: vec![], condition: cond }, t)
            }
            Known::Opaque { .. } => self.err_at(
                t,
                format!("gate `{name}` is declared `opaque`: it has no definition, so it cannot be simulated"),
            ),
            Known::Def(def) => {
                if params.len() != def.params.len() {
                    return self.err_at(t, format!("gate `{name}` takes {} parameters, got {}", def.params.len(), params.len()));
                }
                if qs.len() != def.nqubits {
                    return self.err_at(t, format!("gate `{name}` takes {} qubits, got {}", def.nqubits, qs.len()));
                }
                let def = def.clone();
                for op in &def.body {
                    match op {
                        BodyOp::Barrier(a) => {
                            let mapped: Vec<usize> = a.iter().filter_map(|i| qs.get(*i).copied()).collect();
                            self.push(Instruction { op: Operation::Barrier, qubits: mapped, clbits: vec![], condition: cond }, t)?;
                        }
                        BodyOp::Call { name: inner, known: k, line, col, params: ps, args } => {
                            let lookup = |s: &str| def.params.iter().position(|p| p == s).and_then(|i| params.get(i).copied());
                            let mut vals = Vec::with_capacity(ps.len());
                            for p in ps {
                                match p.eval(&lookup) {
                                    Ok(v) => vals.push(v),
                                    Err(e) => return Err(Error::Parse { line: *line, column: *col, message: e.to_string() }),
                                }
                            }
                            let mapped: Vec<usize> = args.iter().filter_map(|i| qs.get(*i).copied()).collect();
                            let it = Token { tok: Tok::Ident(inner.clone()), line: *line, col: *col };
                            if let Known::Opaque { .. } = k {
                                return self.err_at(t, format!(
                                    "gate `{name}` uses `{inner}`, which is declared `opaque` and cannot be simulated"
                                ));
                            }
                            self.call(k, inner, &vals, &mapped, cond, &it)?;
                        }
                    }
                }
                Ok(())
            }
        }
    }

    fn expr_list(&mut self, formals: &[String]) -> Result<Vec<Param>> {
        self.sym("(", "")?;
        let mut v = vec![];
        if !self.is_sym(")") {
            loop {
                v.push(self.expr(formals, 0)?);
                if self.is_sym(",") {
                    self.next();
                } else {
                    break;
                }
            }
        }
        self.sym(")", "after the parameters")?;
        Ok(v)
    }

    fn depth_check(&self, depth: usize) -> Result<()> {
        if depth > MAX_EXPR_DEPTH {
            let t = self.peek().clone();
            return self.err_at(
                &t,
                format!("expression nested deeper than {MAX_EXPR_DEPTH} levels"),
            );
        }
        Ok(())
    }

    fn expr(&mut self, f: &[String], d: usize) -> Result<Param> {
        self.depth_check(d)?;
        let mut lhs = self.term(f, d + 1)?;
        loop {
            let op = if self.is_sym("+") {
                BinOp::Add
            } else if self.is_sym("-") {
                BinOp::Sub
            } else {
                return Ok(lhs);
            };
            self.next();
            let rhs = self.term(f, d + 1)?;
            lhs = Param::Bin(op, Box::new(lhs), Box::new(rhs));
        }
    }

    fn term(&mut self, f: &[String], d: usize) -> Result<Param> {
        self.depth_check(d)?;
        let mut lhs = self.unary(f, d + 1)?;
        loop {
            let op = if self.is_sym("*") {
                BinOp::Mul
            } else if self.is_sym("/") {
                BinOp::Div
            } else {
                return Ok(lhs);
            };
            self.next();
            let rhs = self.unary(f, d + 1)?;
            lhs = Param::Bin(op, Box::new(lhs), Box::new(rhs));
        }
    }

    fn unary(&mut self, f: &[String], d: usize) -> Result<Param> {
        self.depth_check(d)?;
        if self.is_sym("-") {
            self.next();
            return Ok(Param::Neg(Box::new(self.unary(f, d + 1)?)));
        }
        if self.is_sym("+") {
            self.next();
            return self.unary(f, d + 1);
        }
        let base = self.atom(f, d + 1)?;
        if self.is_sym("^") {
            self.next();
            let exp = self.unary(f, d + 1)?;
            return Ok(Param::Bin(BinOp::Pow, Box::new(base), Box::new(exp)));
        }
        Ok(base)
    }

    fn atom(&mut self, f: &[String], d: usize) -> Result<Param> {
        self.depth_check(d)?;
        let t = self.peek().clone();
        match &t.tok {
            Tok::Int(v) => {
                self.next();
                Ok(Param::Num(*v as f64))
            }
            Tok::Real(v) => {
                self.next();
                Ok(Param::Num(*v))
            }
            Tok::Sym("(") => {
                self.next();
                let e = self.expr(f, d + 1)?;
                self.sym(")", "to close the parenthesis")?;
                Ok(e)
            }
            Tok::Ident(s) => {
                let s = s.clone();
                self.next();
                if s == "pi" {
                    return Ok(Param::Pi);
                }
                if let Some(func) = Func::from_name(&s) {
                    self.sym("(", &format!("after `{s}`"))?;
                    let e = self.expr(f, d + 1)?;
                    self.sym(")", &format!("to close `{s}(`"))?;
                    return Ok(Param::Call(func, Box::new(e)));
                }
                if f.contains(&s) {
                    return Ok(Param::symbol(&s));
                }
                self.err_at(&t, format!("unknown identifier `{s}` in expression: expected a number, `pi`, a function or a gate parameter"))
            }
            _ => self.expected("an expression (number, `pi`, parameter, function or `(`)"),
        }
    }
}
