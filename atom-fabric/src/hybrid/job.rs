//! Jobs: what a client submits, the pipeline of stages it names, the values passed between
//! stages, and the signed job manifest (P2).

use super::HybridError;
use atom_policy::dsse::{Envelope, JOB_PAYLOAD_TYPE};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// What kind of work a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobMode {
    /// Neural stages only.
    Neural,
    /// Quantum stages only.
    Quantum,
    /// Neural and quantum stages chained.
    Hybrid,
}

impl JobMode {
    /// The lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobMode::Neural => "neural",
            JobMode::Quantum => "quantum",
            JobMode::Hybrid => "hybrid",
        }
    }
}

/// A job as submitted: `{tenant, mode, payload, manifest}`.
///
/// `payload` is either an explicit pipeline (`{"stages": [...], "inputs": {...}}`), a registered
/// pipeline by name (`{"pipeline": "vqc-moons", "inputs": {...}}`), or any other object, whose
/// fields become the inputs of the mode's default pipeline.
///
/// ```
/// use atom_fabric::hybrid::{JobMode, JobSubmission};
/// let job: JobSubmission =
///     serde_json::from_str(r#"{"tenant":"demo","mode":"hybrid","payload":{"x":1}}"#).unwrap();
/// assert_eq!(job.mode, JobMode::Hybrid);
/// assert!(job.manifest.is_none());
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSubmission {
    /// Tenant that owns the job (must equal the JWT's tenant, P5).
    pub tenant: String,
    /// Kind of job.
    pub mode: JobMode,
    /// The work.
    pub payload: serde_json::Value,
    /// DSSE envelope over a [`JobStatement`] (required unless `SIMULATION_MODE=true`, P2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<Envelope>,
}

/// The signed statement inside a job manifest: binds tenant, mode and the payload digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobStatement {
    /// Statement type, [`JOB_STATEMENT_TYPE`].
    #[serde(rename = "_type")]
    pub statement_type: String,
    /// Tenant.
    pub tenant: String,
    /// Mode.
    pub mode: JobMode,
    /// [`payload_digest`] of the payload.
    pub payload_sha256: String,
}

/// The `_type` of a [`JobStatement`].
pub const JOB_STATEMENT_TYPE: &str = "https://atom-fabric.dev/job/v1";

impl JobStatement {
    /// The statement for a job.
    pub fn for_job(tenant: &str, mode: JobMode, payload: &serde_json::Value) -> Self {
        Self {
            statement_type: JOB_STATEMENT_TYPE.into(),
            tenant: tenant.into(),
            mode,
            payload_sha256: payload_digest(payload),
        }
    }

    /// Signs the statement into a DSSE envelope (payload type [`JOB_PAYLOAD_TYPE`]).
    pub fn sign(
        &self,
        key: &atom_policy::keys::SigningKey,
        mode: atom_policy::config::Mode,
    ) -> Result<Envelope, HybridError> {
        let body = serde_json::to_vec(self).map_err(|e| HybridError::Invalid {
            field: "manifest".into(),
            reason: e.to_string(),
        })?;
        Envelope::sign(JOB_PAYLOAD_TYPE, &body, key, mode).map_err(HybridError::Manifest)
    }
}

/// Canonical JSON of a value: object keys sorted, no whitespace. Python's
/// `json.dumps(v, sort_keys=True, separators=(",", ":"), ensure_ascii=False)` gives the same bytes
/// for strings, integers and floats with a shortest round-trip form.
pub fn canonical_json(value: &serde_json::Value) -> String {
    fn write(v: &serde_json::Value, out: &mut String) {
        match v {
            serde_json::Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                out.push('{');
                for (i, k) in keys.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&serde_json::Value::String(k.clone()).to_string());
                    out.push(':');
                    if let Some(x) = map.get(k) {
                        write(x, out);
                    }
                }
                out.push('}');
            }
            serde_json::Value::Array(items) => {
                out.push('[');
                for (i, x) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(x, out);
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut out = String::new();
    write(value, &mut out);
    out
}

/// Lower-case hex SHA-256 of the payload's [`canonical_json`].
pub fn payload_digest(payload: &serde_json::Value) -> String {
    hex::encode(Sha256::digest(canonical_json(payload).as_bytes()))
}

/// A value passed between stages.
///
/// JSON forms: a number, a list of numbers, `{"shape": [..], "data": [..]}`, or a map of
/// bitstring counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Value {
    /// A scalar.
    Number(f64),
    /// A vector.
    List(Vec<f64>),
    /// A dense tensor in row-major order.
    Tensor {
        /// Dimensions.
        shape: Vec<usize>,
        /// Values.
        data: Vec<f64>,
    },
    /// Measurement counts keyed by bitstring (clbit 0 rightmost).
    Counts(BTreeMap<String, u64>),
}

impl Value {
    /// The numbers of a numeric value (scalar, list or tensor), flattened.
    pub fn numbers(&self) -> Option<Vec<f64>> {
        match self {
            Value::Number(x) => Some(vec![*x]),
            Value::List(v) => Some(v.clone()),
            Value::Tensor { data, .. } => Some(data.clone()),
            Value::Counts(_) => None,
        }
    }

    /// The shape of a numeric value (`[]` for a scalar).
    pub fn shape(&self) -> Option<Vec<usize>> {
        match self {
            Value::Number(_) => Some(vec![]),
            Value::List(v) => Some(vec![v.len()]),
            Value::Tensor { shape, .. } => Some(shape.clone()),
            Value::Counts(_) => None,
        }
    }

    /// Digest of the value's JSON (what audit entries and telemetry carry, P1).
    pub fn digest(&self) -> String {
        let v = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        payload_digest(&v)
    }
}

/// One element or a whole named value: `"angles"` or `"angles[1]"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueRef {
    /// The value's name.
    pub name: String,
    /// An element index into the flattened numbers, if any.
    pub index: Option<usize>,
}

impl ValueRef {
    /// Parses `name` or `name[i]`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let ok_name = |n: &str| {
            !n.is_empty()
                && n.len() <= 64
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
        };
        if let Some(open) = s.find('[') {
            let (name, rest) = s.split_at(open);
            let inner = rest
                .strip_prefix('[')
                .and_then(|r| r.strip_suffix(']'))
                .ok_or_else(|| format!("{s:?}: expected name[index]"))?;
            let index: usize = inner
                .parse()
                .map_err(|_| format!("{s:?}: index {inner:?} is not a non-negative integer"))?;
            if !ok_name(name) {
                return Err(format!("{s:?}: bad value name"));
            }
            Ok(Self {
                name: name.into(),
                index: Some(index),
            })
        } else if ok_name(s) {
            Ok(Self {
                name: s.into(),
                index: None,
            })
        } else {
            Err(format!("{s:?}: bad value name"))
        }
    }
}

/// A classical post-processing operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ClassicalOp {
    /// Element-wise `x >= at ? above : below`.
    Threshold {
        /// Input value.
        input: String,
        /// Threshold (default 0).
        #[serde(default)]
        at: f64,
        /// Result at or above (default 1).
        #[serde(default = "one")]
        above: f64,
        /// Result below (default 0).
        #[serde(default)]
        below: f64,
    },
    /// Element-wise `scale * x + offset`.
    Affine {
        /// Input value.
        input: String,
        /// Factor.
        scale: f64,
        /// Offset (default 0).
        #[serde(default)]
        offset: f64,
    },
    /// Element-wise logistic function.
    Sigmoid {
        /// Input value.
        input: String,
    },
    /// Index of the largest element (first on ties).
    Argmax {
        /// Input value.
        input: String,
    },
    /// Probability that clbit `bit` reads 1, from counts.
    BitProbability {
        /// Input counts.
        input: String,
        /// Clbit index (0 = rightmost character).
        bit: usize,
    },
    /// `P(even parity) - P(odd parity)` of the measured bits, from counts (the ⟨Z…Z⟩ estimate).
    ParityExpectation {
        /// Input counts.
        input: String,
    },
}

fn one() -> f64 {
    1.0
}

impl ClassicalOp {
    /// The input value's name.
    pub fn input(&self) -> &str {
        match self {
            ClassicalOp::Threshold { input, .. }
            | ClassicalOp::Affine { input, .. }
            | ClassicalOp::Sigmoid { input }
            | ClassicalOp::Argmax { input }
            | ClassicalOp::BitProbability { input, .. }
            | ClassicalOp::ParityExpectation { input } => input,
        }
    }

    /// Applies the operation.
    pub fn apply(&self, v: &Value) -> Result<Value, String> {
        let numbers = || {
            v.numbers()
                .ok_or_else(|| format!("{}: expected numbers, got counts", self.input()))
        };
        let counts = || match v {
            Value::Counts(c) => {
                let total: u64 = c.values().sum();
                if total == 0 {
                    Err(format!("{}: counts are empty", self.input()))
                } else {
                    Ok((c, total as f64))
                }
            }
            _ => Err(format!("{}: expected counts", self.input())),
        };
        let map = |f: &dyn Fn(f64) -> f64| -> Result<Value, String> {
            let shape = v.shape().unwrap_or_default();
            let data: Vec<f64> = numbers()?.into_iter().map(f).collect();
            Ok(match v {
                Value::Number(_) => Value::Number(data.first().copied().unwrap_or(0.0)),
                Value::List(_) => Value::List(data),
                _ => Value::Tensor { shape, data },
            })
        };
        match self {
            ClassicalOp::Threshold {
                at, above, below, ..
            } => map(&|x| if x >= *at { *above } else { *below }),
            ClassicalOp::Affine { scale, offset, .. } => map(&|x| scale * x + offset),
            ClassicalOp::Sigmoid { .. } => map(&|x| 1.0 / (1.0 + (-x).exp())),
            ClassicalOp::Argmax { .. } => {
                let xs = numbers()?;
                let mut best: Option<(usize, f64)> = None;
                for (i, x) in xs.iter().copied().enumerate() {
                    if best.is_none_or(|(_, b)| x > b) {
                        best = Some((i, x));
                    }
                }
                best.map(|(i, _)| Value::Number(i as f64))
                    .ok_or_else(|| format!("{}: argmax of an empty value", self.input()))
            }
            ClassicalOp::BitProbability { bit, .. } => {
                let (c, total) = counts()?;
                let mut ones = 0u64;
                for (key, n) in c {
                    let bits: Vec<u8> = key.bytes().filter(|b| *b != b' ').rev().collect();
                    match bits.get(*bit) {
                        Some(b'1') => ones += n,
                        Some(b'0') => {}
                        Some(_) => return Err(format!("{}: bad bitstring {key:?}", self.input())),
                        None => {
                            return Err(format!(
                                "{}: bitstring {key:?} has no bit {bit}",
                                self.input()
                            ));
                        }
                    }
                }
                Ok(Value::Number(ones as f64 / total))
            }
            ClassicalOp::ParityExpectation { .. } => {
                let (c, total) = counts()?;
                let mut acc = 0i64;
                for (key, n) in c {
                    let ones = key.bytes().filter(|b| *b == b'1').count();
                    let n = i64::try_from(*n).unwrap_or(i64::MAX);
                    acc += if ones % 2 == 0 { n } else { -n };
                }
                Ok(Value::Number(acc as f64 / total))
            }
        }
    }
}

/// A Pauli observable: a label (`"ZI"`) or weighted terms (`[[0.5, "ZZ"], [1.0, "XI"]]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Observable {
    /// One Pauli string with weight 1.
    Label(String),
    /// A weighted sum.
    Terms(Vec<(f64, String)>),
}

impl Observable {
    /// As terms.
    pub fn terms(&self) -> Vec<(f64, String)> {
        match self {
            Observable::Label(l) => vec![(1.0, l.clone())],
            Observable::Terms(t) => t.clone(),
        }
    }
}

/// What a stage runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StageOp {
    /// A neural model from the coordinator's model catalog, through the runtime hooks.
    Neural {
        /// Catalog name of the model.
        model: String,
        /// Input value (`name`).
        input: String,
        /// Reshape the input before feeding it (e.g. `[1, 2]` for a batch of one).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        shape: Option<Vec<usize>>,
        /// Output value name (the model's first output).
        output: String,
    },
    /// A parameterised OpenQASM 2 circuit with its symbols bound from named values.
    Quantum {
        /// OpenQASM 2.0 source (free symbols allowed in gate arguments).
        qasm: String,
        /// Symbol → value reference (`"angles[0]"`).
        #[serde(default)]
        bind: BTreeMap<String, String>,
        /// Shots (0: no sampling).
        #[serde(default)]
        shots: u64,
        /// Observables whose expectation values form the output (in order).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        observables: Vec<Observable>,
        /// Sampling seed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seed: Option<u64>,
        /// A preferred provider (by registered name).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        provider: Option<String>,
        /// Output value name: the expectation values when observables are given, else the
        /// counts. With both, counts go to `<output>_counts`.
        output: String,
    },
    /// Classical post-processing.
    Classical {
        /// The operation.
        #[serde(flatten)]
        op: ClassicalOp,
        /// Output value name.
        output: String,
    },
}

/// What to do when every engine for a stage failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fallback {
    /// Use this value as the stage's output.
    Value(Value),
    /// Compute the output classically.
    Classical(ClassicalOp),
}

/// One stage of a pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stage {
    /// Stage name (unique in the pipeline).
    pub name: String,
    /// What it runs.
    #[serde(flatten)]
    pub op: StageOp,
    /// The declared fallback, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<Fallback>,
}

impl Stage {
    /// `neural`, `quantum` or `classical`.
    pub fn kind(&self) -> &'static str {
        match self.op {
            StageOp::Neural { .. } => "neural",
            StageOp::Quantum { .. } => "quantum",
            StageOp::Classical { .. } => "classical",
        }
    }

    /// The value the stage writes.
    pub fn output(&self) -> &str {
        match &self.op {
            StageOp::Neural { output, .. }
            | StageOp::Quantum { output, .. }
            | StageOp::Classical { output, .. } => output,
        }
    }
}

/// A pipeline: stages run in order, reading and writing named values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pipeline {
    /// The stages.
    pub stages: Vec<Stage>,
    /// Input values.
    #[serde(default)]
    pub inputs: BTreeMap<String, Value>,
}

/// Largest number of stages in one pipeline.
pub const MAX_STAGES: usize = 64;

impl Pipeline {
    /// Checks names and references statically (before anything runs): every stage reads values
    /// that exist by then, names are unique, circuits parse, and the mode allows the stage kinds.
    pub fn validate(&self, mode: JobMode) -> Result<(), HybridError> {
        let invalid = |field: String, reason: String| HybridError::Invalid { field, reason };
        if self.stages.is_empty() {
            return Err(invalid("payload.stages".into(), "no stages".into()));
        }
        if self.stages.len() > MAX_STAGES {
            return Err(invalid(
                "payload.stages".into(),
                format!("{} stages (at most {MAX_STAGES})", self.stages.len()),
            ));
        }
        let mut known: Vec<String> = self.inputs.keys().cloned().collect();
        for name in self.inputs.keys() {
            ValueRef::parse(name).map_err(|r| invalid(format!("payload.inputs.{name}"), r))?;
        }
        let mut names = std::collections::BTreeSet::new();
        let (mut neural, mut quantum) = (false, false);
        for (i, st) in self.stages.iter().enumerate() {
            let field = |f: &str| format!("payload.stages[{i}].{f}");
            if !names.insert(st.name.as_str()) {
                return Err(invalid(
                    field("name"),
                    format!("duplicate stage {:?}", st.name),
                ));
            }
            let need = |r: &str, f: &str, known: &[String]| -> Result<(), HybridError> {
                let vr = ValueRef::parse(r).map_err(|e| invalid(field(f), e))?;
                if !known.contains(&vr.name) {
                    return Err(invalid(
                        field(f),
                        format!("value {:?} is not produced before this stage", vr.name),
                    ));
                }
                Ok(())
            };
            match &st.op {
                StageOp::Neural { input, model, .. } => {
                    neural = true;
                    need(input, "input", &known)?;
                    if model.is_empty() {
                        return Err(invalid(field("model"), "empty model name".into()));
                    }
                }
                StageOp::Quantum {
                    qasm,
                    bind,
                    observables,
                    ..
                } => {
                    quantum = true;
                    let symbols: Vec<&str> = bind.keys().map(String::as_str).collect();
                    let circuit = atom_quantum::Circuit::from_qasm_with_parameters(qasm, &symbols)
                        .map_err(|e| invalid(field("qasm"), e.to_string()))?;
                    let params = circuit.parameters();
                    for p in &params {
                        if !bind.contains_key(p) {
                            return Err(invalid(
                                field("bind"),
                                format!("circuit parameter {p:?} is not bound"),
                            ));
                        }
                    }
                    for (sym, r) in bind {
                        if !params.contains(sym) {
                            return Err(invalid(
                                field("bind"),
                                format!("{sym:?} is not a parameter of the circuit"),
                            ));
                        }
                        need(r, "bind", &known)?;
                    }
                    for (j, o) in observables.iter().enumerate() {
                        for (_, label) in o.terms() {
                            let p = atom_quantum::PauliString::from_label(&label).map_err(|e| {
                                invalid(field(&format!("observables[{j}]")), e.to_string())
                            })?;
                            if p.num_qubits() != circuit.num_qubits() {
                                return Err(invalid(
                                    field(&format!("observables[{j}]")),
                                    format!(
                                        "{label:?} acts on {} qubits, the circuit has {}",
                                        p.num_qubits(),
                                        circuit.num_qubits()
                                    ),
                                ));
                            }
                        }
                    }
                }
                StageOp::Classical { op, .. } => need(op.input(), "input", &known)?,
            }
            if let Some(Fallback::Classical(op)) = &st.fallback {
                need(op.input(), "fallback.input", &known)?;
            }
            ValueRef::parse(st.output())
                .map_err(|e| invalid(field("output"), e))
                .and_then(|r| {
                    if r.index.is_some() {
                        Err(invalid(
                            field("output"),
                            "an output is a whole value".into(),
                        ))
                    } else {
                        Ok(())
                    }
                })?;
            known.push(st.output().to_owned());
            if let StageOp::Quantum {
                observables,
                shots,
                output,
                ..
            } = &st.op
                && !observables.is_empty()
                && *shots > 0
            {
                known.push(format!("{output}_counts"));
            }
        }
        let allowed = match mode {
            JobMode::Neural => !quantum,
            JobMode::Quantum => !neural,
            JobMode::Hybrid => true,
        };
        if !allowed {
            return Err(invalid(
                "mode".into(),
                format!(
                    "a {} job cannot have {} stages",
                    mode.as_str(),
                    if quantum { "quantum" } else { "neural" }
                ),
            ));
        }
        Ok(())
    }
}

/// Turns a payload into a pipeline: explicit stages, a registered pipeline by name, or the mode's
/// default pipeline with the payload's fields as inputs.
pub fn resolve_payload(
    payload: &serde_json::Value,
    mode: JobMode,
    registered: &BTreeMap<String, Pipeline>,
    defaults: &BTreeMap<JobMode, String>,
) -> Result<(Pipeline, Option<String>), HybridError> {
    let invalid = |field: &str, reason: String| HybridError::Invalid {
        field: field.into(),
        reason,
    };
    let obj = payload
        .as_object()
        .ok_or_else(|| invalid("payload", "expected a JSON object".into()))?;
    let inputs_of =
        |v: Option<&serde_json::Value>| -> Result<BTreeMap<String, Value>, HybridError> {
            match v {
                None => Ok(BTreeMap::new()),
                Some(v) => serde_json::from_value(v.clone())
                    .map_err(|e| invalid("payload.inputs", e.to_string())),
            }
        };
    if obj.contains_key("stages") {
        let p: Pipeline = serde_json::from_value(payload.clone())
            .map_err(|e| invalid("payload", e.to_string()))?;
        return Ok((p, None));
    }
    let (name, inputs) = if let Some(n) = obj.get("pipeline") {
        let n = n
            .as_str()
            .ok_or_else(|| invalid("payload.pipeline", "expected a string".into()))?;
        for k in obj.keys() {
            if k != "pipeline" && k != "inputs" {
                return Err(invalid(
                    &format!("payload.{k}"),
                    "unknown field (expected pipeline, inputs)".into(),
                ));
            }
        }
        (n.to_owned(), inputs_of(obj.get("inputs"))?)
    } else {
        let n = defaults.get(&mode).ok_or_else(|| {
            invalid(
                "payload",
                format!(
                    "no stages, no pipeline name, and no default {} pipeline is registered",
                    mode.as_str()
                ),
            )
        })?;
        let mut inputs = BTreeMap::new();
        for (k, v) in obj {
            let value: Value = serde_json::from_value(v.clone())
                .map_err(|e| invalid(&format!("payload.{k}"), e.to_string()))?;
            inputs.insert(k.clone(), value);
        }
        (n.clone(), inputs)
    };
    let base = registered
        .get(&name)
        .ok_or_else(|| invalid("payload.pipeline", format!("no pipeline named {name:?}")))?;
    let mut p = base.clone();
    for (k, v) in inputs {
        if !base.inputs.contains_key(&k) {
            return Err(invalid(
                &format!("payload.inputs.{k}"),
                format!(
                    "pipeline {name:?} has no input {k:?} (inputs: {})",
                    base.inputs.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
        let expected = base.inputs[&k].shape();
        if expected.is_some()
            && v.shape().map(|s| s.iter().product::<usize>())
                != expected.map(|s| s.iter().product::<usize>())
        {
            return Err(invalid(
                &format!("payload.inputs.{k}"),
                format!(
                    "expected {} numbers",
                    base.inputs[&k].numbers().map(|n| n.len()).unwrap_or(0)
                ),
            ));
        }
        p.inputs.insert(k, v);
    }
    Ok((p, Some(name)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_matches_python_sort_keys() {
        // json.dumps({"b":[1,2.5,{"z":null,"a":"é"}],"a":true}, sort_keys=True,
        //            separators=(",",":"), ensure_ascii=False)
        let v: serde_json::Value =
            serde_json::from_str(r#"{"b":[1,2.5,{"z":null,"a":"é"}],"a":true}"#).unwrap();
        assert_eq!(
            canonical_json(&v),
            r#"{"a":true,"b":[1,2.5,{"a":"é","z":null}]}"#
        );
    }

    #[test]
    fn value_refs() {
        assert_eq!(
            ValueRef::parse("angles[2]").unwrap(),
            ValueRef {
                name: "angles".into(),
                index: Some(2)
            }
        );
        assert!(ValueRef::parse("a[x]").is_err());
        assert!(ValueRef::parse("a b").is_err());
        assert!(ValueRef::parse("").is_err());
    }

    #[test]
    fn classical_ops_compute_known_results() {
        let counts = Value::Counts(BTreeMap::from([
            ("00".to_string(), 30),
            ("01".to_string(), 10),
            ("11".to_string(), 60),
        ]));
        let bp = ClassicalOp::BitProbability {
            input: "c".into(),
            bit: 0,
        };
        assert_eq!(bp.apply(&counts).unwrap(), Value::Number(0.7));
        let bp1 = ClassicalOp::BitProbability {
            input: "c".into(),
            bit: 1,
        };
        assert_eq!(bp1.apply(&counts).unwrap(), Value::Number(0.6));
        let par = ClassicalOp::ParityExpectation { input: "c".into() };
        assert_eq!(par.apply(&counts).unwrap(), Value::Number(0.8));
        let th = ClassicalOp::Threshold {
            input: "e".into(),
            at: 0.0,
            above: 1.0,
            below: -1.0,
        };
        assert_eq!(
            th.apply(&Value::List(vec![-0.2, 0.0, 3.0])).unwrap(),
            Value::List(vec![-1.0, 1.0, 1.0])
        );
        let am = ClassicalOp::Argmax { input: "e".into() };
        assert_eq!(
            am.apply(&Value::List(vec![0.1, 0.9, 0.9])).unwrap(),
            Value::Number(1.0)
        );
        assert!(am.apply(&counts).is_err());
    }

    #[test]
    fn validation_names_the_field() {
        let p: Pipeline = serde_json::from_value(serde_json::json!({
            "inputs": {"x": [0.1, 0.2]},
            "stages": [
                {"name": "q", "kind": "quantum", "qasm": "OPENQASM 2.0;\ninclude \"qelib1.inc\";\nqreg q[1];\nry(theta) q[0];\n",
                 "bind": {"theta": "y[0]"}, "observables": ["Z"], "output": "e"}
            ]
        }))
        .unwrap();
        match p.validate(JobMode::Quantum) {
            Err(HybridError::Invalid { field, reason }) => {
                assert_eq!(field, "payload.stages[0].bind");
                assert!(reason.contains("\"y\""), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        let mut ok = p.clone();
        if let StageOp::Quantum { bind, .. } = &mut ok.stages[0].op {
            bind.insert("theta".into(), "x[1]".into());
        }
        ok.validate(JobMode::Quantum).unwrap();
        assert!(matches!(
            ok.validate(JobMode::Neural),
            Err(HybridError::Invalid { field, .. }) if field == "mode"
        ));
    }
}
