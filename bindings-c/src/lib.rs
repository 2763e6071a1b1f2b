//! # atom-fabric-cxx
//!
//! The C++ API of atom-fabric, built with [cxx](https://cxx.rs). This crate is a static library
//! (`libatom_fabric_cxx.a`) plus the cxx bridge defined here; C++ programs include the stable
//! header `bindings-c/include/atom/atom.hpp`, which wraps the generated bridge in idiomatic
//! C++17 (RAII types, `std::string`, `std::vector`, exceptions derived from `atom::Error`).
//!
//! What is exposed:
//! - [`FabricCore`]: the embedded fabric (register nodes, schedule, status, release, quotas),
//!   guarded by a mutex so one instance may be used from many C++ threads.
//! - [`SigningKeyCore`], [`VerifyingKeyCore`], [`KeyRingCore`], [`sign_model`],
//!   [`verify_model`]: OpenSSF model-signing manifests verified against a key ring.
//! - [`NoteSignerCore`], [`AuditLogCore`], [`verify_inclusion`], [`verify_checkpoint`]: the
//!   tamper-evident audit log (append, checkpoint, prove, verify).
//! - [`CircuitCore`], [`simulate`], [`SimResultCore`]: OpenQASM 2 circuits and the statevector
//!   simulator (probabilities, counts, amplitudes, expectation values).
//!
//! Every fallible bridge function returns `Result`; cxx turns an `Err` into a C++
//! `rust::Error` whose message starts with a stable [`ErrorKind`] name, and the header rethrows
//! it as the matching `atom::Error` subclass. Panics are caught ([`error`]) and reported as
//! `internal` errors: nothing aborts the host.
//!
//! The same calls from Rust (the bridge types are ordinary Rust types):
//!
//! ```
//! use atom_fabric_cxx::{circuit_from_qasm, simulate, ffi::SimOptions};
//! let c = circuit_from_qasm("OPENQASM 2.0; include \"qelib1.inc\"; qreg q[2]; h q[0]; cx q[0],q[1];").unwrap();
//! let opts = SimOptions { shots: 0, seed: 0, has_seed: false, single_precision: false, memory_limit: 0 };
//! let p = simulate(&c, &opts).unwrap().probabilities();
//! assert!((p[0] - 0.5).abs() < 1e-12 && (p[3] - 0.5).abs() < 1e-12);
//! ```

pub mod audit;
pub mod error;
pub mod fabric;
pub mod quantum;
pub mod trust;

pub use audit::{
    AuditLogCore, NoteSignerCore, SignerSetCore, audit_log_create, audit_log_open, leaf_hash,
    note_signer_from_key, note_signer_generate, signer_set_new, verify_checkpoint,
    verify_inclusion,
};
pub use error::{BridgeResult, Error, ErrorKind, WireError};
pub use fabric::{FabricCore, fabric_open};
pub use quantum::{CircuitCore, SimResultCore, circuit_from_qasm, circuit_new, simulate};
pub use trust::{
    KeyRingCore, SigningKeyCore, VerifyingKeyCore, key_ring_from_json, key_ring_load, key_ring_new,
    sign_model, signing_key_from_text, signing_key_generate, signing_key_read, verify_model,
    verifying_key_from_text, verifying_key_read,
};

// The C++ header documents these types as shareable between threads; this fails to compile if
// a change to the core types (or the mutexes around them) breaks that.
const _: () = {
    const fn shared_between_threads<T: Send + Sync>() {}
    shared_between_threads::<FabricCore>();
    shared_between_threads::<AuditLogCore>();
    shared_between_threads::<SimResultCore>();
    shared_between_threads::<CircuitCore>();
    shared_between_threads::<KeyRingCore>();
    shared_between_threads::<SigningKeyCore>();
    shared_between_threads::<VerifyingKeyCore>();
    shared_between_threads::<NoteSignerCore>();
};

/// The cxx bridge: shared structs (plain data in both languages, C++ namespace `atom::ffi`) and
/// the Rust functions and opaque types C++ may call. C++ code should use the wrappers of
/// `atom/atom.hpp` rather than this raw layer.
// The bridge namespace is `atom`; the raw items live in `atom::ffi` so that the public C++ names
// (`atom::Fabric`, `atom::Circuit`, ...) belong to the header's wrappers.
#[allow(unsafe_code)]
// SAFETY: no hand-written unsafe here; cxx generates the FFI glue from
// these declarations and checks both sides' signatures at build time. Exercised by the C++
// tests (bindings-c/tests, run by `make test-cxx` under ASan/UBSan by `make test-sanitize`).
#[cxx::bridge(namespace = "atom")]
pub mod ffi {
    /// A GPU of a node.
    #[namespace = "atom::ffi"]
    #[derive(Debug, Clone)]
    struct GpuDevice {
        /// Model name, e.g. `A100`.
        model: String,
        /// Device memory in MiB.
        memory_mib: u64,
    }

    /// A key/value label.
    #[namespace = "atom::ffi"]
    #[derive(Debug, Clone)]
    struct Label {
        /// Key.
        key: String,
        /// Value.
        value: String,
    }

    /// What a node offers.
    #[namespace = "atom::ffi"]
    #[derive(Debug, Clone)]
    struct NodeSpec {
        /// Node id.
        id: String,
        /// CPU in millicores.
        cpu_milli: u64,
        /// Memory in MiB.
        memory_mib: u64,
        /// GPU devices.
        gpus: Vec<GpuDevice>,
        /// TPU devices.
        tpus: u32,
        /// Simulated quantum capacity (qubits).
        quantum_qubits: u32,
        /// Labels (`region`, `zone`, ...).
        labels: Vec<Label>,
        /// Models cached on the node.
        cached_models: Vec<String>,
    }

    /// Resources of one replica.
    #[namespace = "atom::ffi"]
    #[derive(Debug, Clone)]
    struct Resources {
        /// GPU devices.
        gpu: u32,
        /// Share of each device in milli-GPUs (0 = whole devices).
        gpu_milli: u32,
        /// CPU millicores.
        cpu: u64,
        /// Memory MiB.
        mem: u64,
        /// TPU devices.
        tpu: u32,
        /// Qubits needed.
        qubits: u32,
    }

    /// A request to place replicas of a model. Empty strings and zero numbers mean "not set".
    #[namespace = "atom::ffi"]
    #[derive(Debug, Clone)]
    struct ScheduleRequest {
        /// Tenant.
        tenant_id: String,
        /// Model.
        model_id: String,
        /// Model version.
        model_version: String,
        /// Resources of each replica.
        resources: Resources,
        /// Replicas (gang: all or none).
        replicas: u32,
        /// Priority (higher first).
        priority: i32,
        /// Idempotency key ("" = none).
        idempotency_key: String,
        /// The caller's region ("" = none).
        region: String,
        /// Latency budget in ms from `region` (0 = none).
        latency_ms: u32,
        /// GPU model alternatives `A100|H100` ("" = any).
        gpu_model: String,
        /// Required node labels.
        labels: Vec<Label>,
        /// Production deploy (policies P2 and P3 apply).
        production: bool,
        /// The signed manifest was verified (P2).
        manifest_verified: bool,
        /// Approver of a production deploy ("" = none).
        approved_by: String,
    }

    /// One replica's place.
    #[namespace = "atom::ffi"]
    #[derive(Debug, Clone)]
    struct Replica {
        /// Node id.
        node: String,
        /// Device indices on that node.
        devices: Vec<u32>,
        /// Total placement score (0 when not scored).
        score: f64,
    }

    /// The answer to a fabric command.
    #[namespace = "atom::ffi"]
    #[derive(Debug, Clone)]
    struct Outcome {
        /// `placed`, `queued`, `existing`, `phase`, `node`, `expired` or `quota_set`.
        kind: String,
        /// The request concerned (0 when none).
        request_id: u64,
        /// The request's phase (`placed`, `queued`, `completed`, ...) or a node's health.
        phase: String,
        /// Why a request waits (`quota`, `capacity`, `constraint`), or "".
        reason: String,
        /// Detail of a queueing decision.
        detail: String,
        /// Placement of a placed request.
        replicas: Vec<Replica>,
        /// The placement borrowed cohort quota.
        borrowed: bool,
        /// The whole outcome as JSON (the scheduler's serde format).
        json: String,
    }

    /// A request's status.
    #[namespace = "atom::ffi"]
    #[derive(Debug, Clone)]
    struct Status {
        /// Request id.
        id: u64,
        /// Tenant.
        tenant_id: String,
        /// Model.
        model_id: String,
        /// Model version.
        model_version: String,
        /// Phase.
        phase: String,
        /// Why it waits, or "".
        queue_reason: String,
        /// Where it runs (empty unless placed or running).
        replicas: Vec<Replica>,
        /// Priority.
        priority: i32,
        /// Submission time (ms since the epoch).
        submitted_ms: u64,
        /// Evictions so far.
        evictions: u32,
        /// The whole status as JSON.
        json: String,
    }

    /// Options of an embedded fabric. Zero means the default.
    #[namespace = "atom::ffi"]
    #[derive(Debug, Clone)]
    struct FabricOptions {
        /// Data directory ("" = in memory only).
        data_dir: String,
        /// Default GPU quota of tenants without one (0 = 2).
        max_tenant_gpus: u64,
        /// Node heartbeat timeout in ms (0 = 30 s).
        heartbeat_timeout_ms: u64,
        /// SIMULATION_MODE (P2/P3 refusals become allow-in-simulation).
        simulation_mode: bool,
    }

    /// Options of model signing and verification.
    #[namespace = "atom::ffi"]
    #[derive(Debug, Clone)]
    struct ManifestOptions {
        /// PQC_MODE: `hybrid`, `classical` or `off` ("" = hybrid).
        pqc_mode: String,
        /// SIMULATION_MODE.
        simulation: bool,
        /// Extra relative paths to ignore.
        ignore_paths: Vec<String>,
        /// Verification time in unix seconds (0 = now).
        now: u64,
    }

    /// A verified file.
    #[namespace = "atom::ffi"]
    #[derive(Debug, Clone)]
    struct FileDigest {
        /// Relative POSIX path.
        path: String,
        /// Hex SHA-256.
        sha256: String,
    }

    /// What a verified model manifest established.
    #[namespace = "atom::ffi"]
    #[derive(Debug, Clone)]
    struct VerifiedModel {
        /// Model name.
        model_name: String,
        /// Every verified file.
        files: Vec<FileDigest>,
        /// Key ids whose signatures verified.
        key_ids: Vec<String>,
    }

    /// An audit event; identifiers below tenant level are stored only as keyed hashes.
    #[namespace = "atom::ffi"]
    #[derive(Debug, Clone)]
    struct AuditEvent {
        /// Dotted action code (`inference.request`).
        action: String,
        /// Tenant (`[a-z0-9._-]{1,64}`).
        tenant: String,
        /// Raw principal id ("" = none); stored as HMAC-SHA256 under `id_key`.
        principal: String,
        /// Subject kind (`model`, `job`, ...).
        subject_kind: String,
        /// Raw subject id; stored as HMAC-SHA256 under `id_key`.
        subject_id: String,
        /// `allow`, `deny` or `allow_in_simulation`.
        outcome: String,
        /// Policy ids (`P2`, `P5`, ...), any order.
        policies: Vec<String>,
        /// Reason code ("" = none).
        reason: String,
        /// The payload the decision was about (hashed), if `has_payload`.
        payload: Vec<u8>,
        /// Whether `payload` is set.
        has_payload: bool,
        /// The tenant's identifier key for the keyed hashes.
        id_key: Vec<u8>,
        /// Time in ms since the epoch (0 = now).
        time_ms: u64,
    }

    /// An inclusion proof of one audit record.
    #[namespace = "atom::ffi"]
    #[derive(Debug, Clone)]
    struct InclusionProof {
        /// Record index.
        index: u64,
        /// Tree size the proof is for.
        size: u64,
        /// RFC 6962 leaf hash of the record (32 bytes).
        leaf_hash: Vec<u8>,
        /// Proof hashes, concatenated (32 bytes each).
        path: Vec<u8>,
        /// Root of the tree of `size` records (32 bytes).
        root: Vec<u8>,
    }

    /// Result of a full audit log verification.
    #[namespace = "atom::ffi"]
    #[derive(Debug, Clone)]
    struct VerifyReport {
        /// Complete records.
        records: u64,
        /// Root over all of them (32 bytes).
        root: Vec<u8>,
        /// Whether a signed checkpoint was verified.
        has_checkpoint: bool,
        /// Its size.
        checkpoint_size: u64,
    }

    /// A verified checkpoint.
    #[namespace = "atom::ffi"]
    #[derive(Debug, Clone)]
    struct CheckpointInfo {
        /// Log origin.
        origin: String,
        /// Tree size.
        size: u64,
        /// Root hash (32 bytes).
        root: Vec<u8>,
    }

    /// Simulation options.
    #[namespace = "atom::ffi"]
    #[derive(Debug, Clone)]
    struct SimOptions {
        /// Measurement samples (0 = no counts).
        shots: u64,
        /// Seed, if `has_seed`.
        seed: u64,
        /// Whether `seed` is set (else the clock seeds sampling).
        has_seed: bool,
        /// complex64 amplitudes instead of complex128.
        single_precision: bool,
        /// Most bytes the state may take (0 = available memory).
        memory_limit: u64,
    }

    /// One entry of the measurement counts.
    #[namespace = "atom::ffi"]
    #[derive(Debug, Clone)]
    struct Count {
        /// Classical bits, clbit 0 rightmost (Qiskit order).
        bits: String,
        /// Shots that gave them.
        count: u64,
    }

    #[namespace = "atom::ffi"]
    extern "Rust" {
        /// The embedded fabric (thread-safe).
        type FabricCore;
        /// Opens an embedded fabric.
        fn fabric_open(options: &FabricOptions) -> Result<Box<FabricCore>>;
        /// Registers or updates a node.
        fn register_node(self: &FabricCore, spec: &NodeSpec) -> Result<Outcome>;
        /// Places or queues a request.
        fn schedule(self: &FabricCore, request: &ScheduleRequest) -> Result<Outcome>;
        /// Status of a tenant's request.
        fn status(self: &FabricCore, tenant_id: &str, request_id: u64) -> Result<Status>;
        /// Every request of a tenant.
        fn requests(self: &FabricCore, tenant_id: &str) -> Result<Vec<Status>>;
        /// Releases a request.
        fn release(self: &FabricCore, tenant_id: &str, request_id: u64) -> Result<Outcome>;
        /// Sets a tenant's GPU quota.
        fn set_quota(
            self: &FabricCore,
            tenant_id: &str,
            gpus: u64,
            borrow_gpus: u64,
            cohort: &str,
        ) -> Result<Outcome>;
        /// Runs any scheduler command given as JSON; returns the outcome JSON.
        fn execute_json(self: &FabricCore, command_json: &str) -> Result<String>;
        /// Prometheus text of the fabric's metrics.
        fn metrics_text(self: &FabricCore) -> Result<String>;

        /// A signing key.
        type SigningKeyCore;
        /// Generates a key (`hybrid`, `ml-dsa-65`, `ecdsa-p256`, `ed25519`, ...).
        fn signing_key_generate(algorithm: &str) -> Result<Box<SigningKeyCore>>;
        /// Reads a secret key file.
        fn signing_key_read(path: &str) -> Result<Box<SigningKeyCore>>;
        /// Parses secret key text.
        fn signing_key_from_text(text: &str) -> Result<Box<SigningKeyCore>>;
        /// Writes the secret key to a new file (mode 0600).
        fn write(self: &SigningKeyCore, path: &str) -> Result<()>;
        /// Hex key id.
        fn key_id(self: &SigningKeyCore) -> String;
        /// Algorithm label.
        fn algorithm(self: &SigningKeyCore) -> String;
        /// The public key.
        fn verifying_key(self: &SigningKeyCore) -> Box<VerifyingKeyCore>;

        /// A public key.
        type VerifyingKeyCore;
        /// Parses public key text.
        fn verifying_key_from_text(text: &str) -> Result<Box<VerifyingKeyCore>>;
        /// Reads a public (or secret) key file.
        fn verifying_key_read(path: &str) -> Result<Box<VerifyingKeyCore>>;
        /// The key file text.
        fn to_text(self: &VerifyingKeyCore) -> String;
        /// Hex key id.
        fn key_id(self: &VerifyingKeyCore) -> String;
        /// Algorithm label.
        fn algorithm(self: &VerifyingKeyCore) -> String;
        /// A copy.
        fn duplicate(self: &VerifyingKeyCore) -> Box<VerifyingKeyCore>;

        /// Trusted keys.
        type KeyRingCore;
        /// An empty ring.
        fn key_ring_new() -> Box<KeyRingCore>;
        /// Loads a ring JSON file or a single public key file.
        fn key_ring_load(path: &str) -> Result<Box<KeyRingCore>>;
        /// Parses ring JSON.
        fn key_ring_from_json(text: &str) -> Result<Box<KeyRingCore>>;
        /// Trusts a key from `not_before` until `not_after` (0 = no expiry), unix seconds.
        fn add(self: &mut KeyRingCore, key: &VerifyingKeyCore, not_before: u64, not_after: u64);
        /// Number of keys.
        fn key_count(self: &KeyRingCore) -> usize;
        /// Key ids.
        fn key_ids(self: &KeyRingCore) -> Vec<String>;
        /// The ring as JSON.
        fn to_json(self: &KeyRingCore) -> String;
        /// A copy.
        fn duplicate(self: &KeyRingCore) -> Box<KeyRingCore>;

        /// Hashes a model directory and signs it; returns the bundle JSON.
        fn sign_model(
            model_dir: &str,
            key: &SigningKeyCore,
            options: &ManifestOptions,
        ) -> Result<String>;
        /// Verifies a bundle's signatures against `ring` and every file of `model_dir`.
        fn verify_model(
            model_dir: &str,
            bundle_json: &str,
            ring: &KeyRingCore,
            options: &ManifestOptions,
        ) -> Result<VerifiedModel>;

        /// A checkpoint signer.
        type NoteSignerCore;
        /// Generates a signer named `origin` (`ed25519` or `ml-dsa-44`).
        fn note_signer_generate(origin: &str, algorithm: &str) -> Result<Box<NoteSignerCore>>;
        /// Parses a signer key (`PRIVATE+KEY+...`).
        fn note_signer_from_key(text: &str) -> Result<Box<NoteSignerCore>>;
        /// The secret signer key string.
        fn signer_key(self: &NoteSignerCore) -> String;
        /// The verifier key string.
        fn vkey(self: &NoteSignerCore) -> String;
        /// The signer's name (the log origin).
        fn name(self: &NoteSignerCore) -> String;

        /// Signers of one checkpoint.
        type SignerSetCore;
        /// An empty set.
        fn signer_set_new() -> Box<SignerSetCore>;
        /// Adds a signer.
        fn push(self: &mut SignerSetCore, signer: &NoteSignerCore);

        /// The audit log (thread-safe).
        type AuditLogCore;
        /// Creates an empty log and opens it.
        fn audit_log_create(
            path: &str,
            origin: &str,
            vkeys: Vec<String>,
            mode: &str,
        ) -> Result<Box<AuditLogCore>>;
        /// Opens a log (recovering from a crash).
        fn audit_log_open(path: &str) -> Result<Box<AuditLogCore>>;
        /// Appends an entry in the audit entry JSON format; returns its index.
        fn append_json(self: &AuditLogCore, entry_json: &str) -> Result<u64>;
        /// Appends an event; returns its index.
        fn append_event(self: &AuditLogCore, event: &AuditEvent) -> Result<u64>;
        /// Number of records.
        fn size(self: &AuditLogCore) -> Result<u64>;
        /// Current root (32 bytes).
        fn root(self: &AuditLogCore) -> Result<Vec<u8>>;
        /// Signs and stores a checkpoint; returns the signed note.
        fn checkpoint(self: &AuditLogCore, signers: &SignerSetCore) -> Result<String>;
        /// Inclusion proof of record `index` in the tree of `size` records (0 = all).
        fn prove(self: &AuditLogCore, index: u64, size: u64) -> Result<InclusionProof>;
        /// Record `index` (canonical JSON).
        fn read(self: &AuditLogCore, index: u64) -> Result<String>;
        /// Re-verifies the whole log from disk.
        fn verify(self: &AuditLogCore) -> Result<VerifyReport>;
        /// Syncs and closes the log (later calls fail).
        fn close(self: &AuditLogCore) -> Result<()>;

        /// RFC 6962 leaf hash of `data`.
        fn leaf_hash(data: &[u8]) -> Vec<u8>;
        /// RFC 9162 inclusion verification (false for any proof that does not verify).
        fn verify_inclusion(
            leaf_hash: &[u8],
            index: u64,
            size: u64,
            path: &[u8],
            root: &[u8],
        ) -> bool;
        /// Verifies a signed checkpoint with verifier keys in `mode`.
        fn verify_checkpoint(text: &str, vkeys: Vec<String>, mode: &str) -> Result<CheckpointInfo>;

        /// A quantum circuit.
        type CircuitCore;
        /// An empty circuit (registers `q` and `c`).
        fn circuit_new(num_qubits: usize, num_clbits: usize) -> Result<Box<CircuitCore>>;
        /// Parses OpenQASM 2.0.
        fn circuit_from_qasm(text: &str) -> Result<Box<CircuitCore>>;
        /// OpenQASM 2.0 text.
        fn to_qasm(self: &CircuitCore) -> Result<String>;
        /// Qubits.
        fn num_qubits(self: &CircuitCore) -> usize;
        /// Classical bits.
        fn num_clbits(self: &CircuitCore) -> usize;
        /// Depth.
        fn depth(self: &CircuitCore) -> usize;
        /// Instruction count.
        fn size(self: &CircuitCore) -> usize;
        /// A copy.
        fn duplicate(self: &CircuitCore) -> Box<CircuitCore>;
        /// Appends gate `name` (`h`, `rx`, `cx`, `ccx`, ... as in OpenQASM) with `params` on `qubits`.
        fn gate(self: &mut CircuitCore, name: &str, params: &[f64], qubits: &[usize])
        -> Result<()>;
        /// Measures qubit `q` into clbit `c`.
        fn measure(self: &mut CircuitCore, q: usize, c: usize) -> Result<()>;
        /// Measures every qubit into a new register `meas`.
        fn measure_all(self: &mut CircuitCore);

        /// A simulation result.
        type SimResultCore;
        /// Simulates a circuit.
        fn simulate(circuit: &CircuitCore, options: &SimOptions) -> Result<Box<SimResultCore>>;
        /// Basis state probabilities (qubit 0 = least significant bit).
        fn probabilities(self: &SimResultCore) -> Vec<f64>;
        /// Amplitudes as interleaved (re, im) pairs.
        fn amplitudes(self: &SimResultCore) -> Vec<f64>;
        /// Measurement counts.
        fn counts(self: &SimResultCore) -> Vec<Count>;
        /// Shots sampled.
        fn shots(self: &SimResultCore) -> u64;
        /// Simulation time (s).
        fn seconds(self: &SimResultCore) -> f64;
        /// Expectation of `sum coeffs[i] * labels[i]` (Qiskit Pauli labels).
        fn expectation(self: &SimResultCore, coeffs: &[f64], labels: Vec<String>) -> Result<f64>;
    }
}
