// atom-fabric C++ API (C++17).
//
// A stable, idiomatic wrapper over the cxx bridge of the `atom-fabric-cxx` Rust crate:
// RAII handles, std::string / std::vector / std::map values, and exceptions derived from
// atom::Error. Link the static library `libatom_fabric_cxx.a` (see bindings-c/README.md).
//
//   atom::Fabric fabric;                          // embedded, in memory
//   fabric.register_node({"gpu-1", 16000, 65536, {{"A100", 40960}}});
//   atom::ScheduleRequest req{"acme", "llama", "v1"};
//   req.resources.gpu = 1;
//   atom::Outcome out = fabric.schedule(req);    // out.kind == "placed"
//
// Thread safety: atom::Fabric and atom::AuditLog may be shared by many threads (each call
// takes a mutex on the Rust side). atom::SimulationResult is immutable. Circuit, KeyRing,
// SigningKey, VerifyingKey and NoteSigner follow the standard library rule: concurrent const
// calls are safe, a mutation needs exclusive access. A moved-from object may only be destroyed
// or assigned to.
//
// Errors: every call that can fail throws a subclass of atom::Error (never aborts). Rust
// errors carry a stable kind (Error::kind()) that selects the class.
#pragma once

#include <array>
#include <complex>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "rust/cxx.h"
#include "atom-fabric-cxx/src/lib.rs.h"

namespace atom {

// ---------------------------------------------------------------------------------- errors

/// Base of every exception thrown by the atom API.
class Error : public std::runtime_error {
 public:
  /// `kind` is the stable error kind (`invalid_input`, `not_found`, `verify`, `manifest`,
  /// `fabric`, `audit`, `quantum`, `qasm`, `memory_limit`, `io`, `internal`).
  Error(std::string kind, const std::string& message)
      : std::runtime_error(kind + ": " + message), kind_(std::move(kind)), message_(message) {}
  /// The stable error kind.
  const std::string& kind() const noexcept { return kind_; }
  /// The message without the kind prefix.
  const std::string& message() const noexcept { return message_; }

 private:
  std::string kind_;
  std::string message_;
};

/// A malformed argument: bad JSON, bad key text, non-UTF-8 string, out-of-range value.
class InvalidInput : public Error { using Error::Error; };
/// No such request, node or record.
class NotFound : public Error { using Error::Error; };
/// A signature, proof or checkpoint did not verify.
class VerifyError : public Error { using Error::Error; };
/// A model manifest check failed (a file changed, is missing or is extra).
class ManifestError : public VerifyError { using VerifyError::VerifyError; };
/// The scheduler refused a command (invalid transition, policy, node spec conflict).
class FabricError : public Error { using Error::Error; };
/// The audit log refused an entry or found damage.
class AuditError : public Error { using Error::Error; };
/// A circuit could not be built or simulated.
class QuantumError : public Error { using Error::Error; };
/// OpenQASM 2 text did not parse; message() starts with `line:column`.
class QasmError : public QuantumError { using QuantumError::QuantumError; };
/// A statevector would not fit in the memory limit.
class MemoryLimitError : public QuantumError { using QuantumError::QuantumError; };
/// A file could not be read or written.
class IoError : public Error { using Error::Error; };

namespace detail {

/// Throws the atom::Error subclass for a bridge error text `"<kind>: <message>"`.
[[noreturn]] inline void rethrow(const std::string& what) {
  const auto pos = what.find(": ");
  const std::string kind = pos == std::string::npos ? "internal" : what.substr(0, pos);
  const std::string msg = pos == std::string::npos ? what : what.substr(pos + 2);
  if (kind == "invalid_input") throw InvalidInput(kind, msg);
  if (kind == "not_found") throw NotFound(kind, msg);
  if (kind == "verify") throw VerifyError(kind, msg);
  if (kind == "manifest") throw ManifestError(kind, msg);
  if (kind == "fabric") throw FabricError(kind, msg);
  if (kind == "audit") throw AuditError(kind, msg);
  if (kind == "quantum") throw QuantumError(kind, msg);
  if (kind == "qasm") throw QasmError(kind, msg);
  if (kind == "memory_limit") throw MemoryLimitError(kind, msg);
  if (kind == "io") throw IoError(kind, msg);
  throw Error(kind, msg);
}

/// Runs a bridge call, translating rust::Error and the UTF-8 checks of rust::Str/rust::String
/// (std::invalid_argument) into atom exceptions.
template <class F>
auto call(F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const rust::Error& e) {
    rethrow(e.what());
  } catch (const std::invalid_argument& e) {
    throw InvalidInput("invalid_input", std::string("string argument is not valid UTF-8 (") +
                                            e.what() + ")");
  }
}

inline rust::Str str(const std::string& s) { return rust::Str(s); }
inline rust::String rstring(const std::string& s) { return rust::String(s); }
inline std::string sstring(const rust::String& s) { return std::string(s); }

inline rust::Vec<rust::String> rstrings(const std::vector<std::string>& v) {
  rust::Vec<rust::String> out;
  out.reserve(v.size());
  for (const auto& s : v) out.push_back(rust::String(s));
  return out;
}

inline std::vector<std::string> sstrings(const rust::Vec<rust::String>& v) {
  std::vector<std::string> out;
  out.reserve(v.size());
  for (const auto& s : v) out.emplace_back(std::string(s));
  return out;
}

template <class T>
rust::Vec<T> rvec(const T* data, std::size_t n) {
  rust::Vec<T> out;
  out.reserve(n);
  for (std::size_t i = 0; i < n; ++i) out.push_back(data[i]);
  return out;
}

template <class T>
std::vector<T> svec(const rust::Vec<T>& v) {
  return std::vector<T>(v.begin(), v.end());
}

inline std::array<std::uint8_t, 32> hash32(const rust::Vec<std::uint8_t>& v) {
  if (v.size() != 32) throw Error("internal", "expected a 32-byte hash");
  std::array<std::uint8_t, 32> h{};
  for (std::size_t i = 0; i < 32; ++i) h[i] = v[i];
  return h;
}

inline rust::Vec<ffi::Label> labels(const std::map<std::string, std::string>& m) {
  rust::Vec<ffi::Label> out;
  for (const auto& [k, v] : m) out.push_back(ffi::Label{rust::String(k), rust::String(v)});
  return out;
}

}  // namespace detail

/// Raw bytes.
using Bytes = std::vector<std::uint8_t>;
/// A SHA-256 (Merkle tree) hash.
using Hash = std::array<std::uint8_t, 32>;

/// Lower-case hex of bytes.
template <class Container>
std::string to_hex(const Container& bytes) {
  static const char* digits = "0123456789abcdef";
  std::string s;
  s.reserve(bytes.size() * 2);
  for (std::uint8_t b : bytes) {
    s.push_back(digits[b >> 4]);
    s.push_back(digits[b & 15]);
  }
  return s;
}

// ---------------------------------------------------------------------------------- fabric

/// A GPU of a node.
struct Gpu {
  std::string model;            ///< e.g. "A100"
  std::uint64_t memory_mib = 0; ///< device memory
};

/// What a node offers.
struct NodeSpec {
  std::string id;                              ///< node id
  std::uint64_t cpu_milli = 0;                 ///< CPU millicores
  std::uint64_t memory_mib = 0;                ///< memory MiB
  std::vector<Gpu> gpus;                       ///< GPU devices
  std::uint32_t tpus = 0;                      ///< TPU devices
  std::uint32_t quantum_qubits = 0;            ///< simulated quantum capacity
  std::map<std::string, std::string> labels;   ///< `region`, `zone`, ...
  std::vector<std::string> cached_models;      ///< models cached on the node
};

/// Resources of one replica.
struct Resources {
  std::uint32_t gpu = 0;        ///< GPU devices
  std::uint32_t gpu_milli = 0;  ///< share of each device (0 = whole devices)
  std::uint64_t cpu = 0;        ///< CPU millicores
  std::uint64_t mem = 0;        ///< memory MiB
  std::uint32_t tpu = 0;        ///< TPU devices
  std::uint32_t qubits = 0;     ///< qubits needed
};

/// A request to place replicas of a model.
struct ScheduleRequest {
  std::string tenant_id;                          ///< tenant (validated upstream)
  std::string model_id;                           ///< model
  std::string model_version;                      ///< version
  Resources resources;                            ///< per replica
  std::uint32_t replicas = 1;                     ///< gang: all or none
  std::int32_t priority = 0;                      ///< higher first
  std::optional<std::string> idempotency_key;     ///< retries return the first request
  std::optional<std::string> region;              ///< the caller's region
  std::optional<std::uint32_t> latency_ms;        ///< round-trip budget from `region`
  std::optional<std::string> gpu_model;           ///< "A100|H100"
  std::map<std::string, std::string> labels;      ///< required node labels
  bool production = false;                        ///< production deploy (P2, P3)
  bool manifest_verified = false;                 ///< the signed manifest was verified (P2)
  std::optional<std::string> approved_by;         ///< approver of a production deploy (P3)
};

/// One replica's place.
struct Replica {
  std::string node;                    ///< node id
  std::vector<std::uint32_t> devices;  ///< device indices on the node
  double score = 0;                    ///< total placement score
};

/// The answer to a fabric command.
struct Outcome {
  std::string kind;            ///< placed, queued, existing, phase, node, expired, quota_set
  std::uint64_t request_id = 0;
  std::string phase;           ///< request phase (or node health)
  std::string reason;          ///< queue reason: quota, capacity, constraint
  std::string detail;          ///< queueing detail (or node / tenant id)
  std::vector<Replica> replicas;
  bool borrowed = false;       ///< placement borrowed cohort quota
  std::string json;            ///< the whole outcome (scheduler JSON)
  bool placed() const { return kind == "placed"; }
  bool queued() const { return kind == "queued"; }
};

/// A request's status.
struct RequestStatus {
  std::uint64_t id = 0;
  std::string tenant_id, model_id, model_version;
  std::string phase;         ///< queued, placed, running, completed, failed, evicted
  std::string queue_reason;  ///< "" unless queued
  std::vector<Replica> replicas;
  std::int32_t priority = 0;
  std::uint64_t submitted_ms = 0;
  std::uint32_t evictions = 0;
  std::string json;          ///< the whole status (scheduler JSON)
};

/// Options of an embedded fabric.
struct FabricOptions {
  std::string data_dir;                   ///< "" = in memory; else snapshot + journal here
  std::uint64_t max_tenant_gpus = 0;      ///< default tenant GPU quota (0 = 2)
  std::uint64_t heartbeat_timeout_ms = 0; ///< 0 = 30 s
  bool simulation_mode = false;           ///< SIMULATION_MODE
};

namespace detail {
inline std::vector<Replica> replicas(const rust::Vec<ffi::Replica>& v) {
  std::vector<Replica> out;
  for (const auto& r : v) out.push_back(Replica{std::string(r.node), svec(r.devices), r.score});
  return out;
}
inline Outcome outcome(const ffi::Outcome& o) {
  return Outcome{std::string(o.kind),   o.request_id,         std::string(o.phase),
                 std::string(o.reason), std::string(o.detail), replicas(o.replicas),
                 o.borrowed,            std::string(o.json)};
}
inline RequestStatus status(const ffi::Status& s) {
  return RequestStatus{s.id,
                       std::string(s.tenant_id),
                       std::string(s.model_id),
                       std::string(s.model_version),
                       std::string(s.phase),
                       std::string(s.queue_reason),
                       replicas(s.replicas),
                       s.priority,
                       s.submitted_ms,
                       s.evictions,
                       std::string(s.json)};
}
}  // namespace detail

/// The embedded fabric: scheduler and state, in memory or persistent in a data directory.
/// Thread-safe: one instance may be used from many threads.
class Fabric {
 public:
  /// Opens a fabric (in memory unless options.data_dir is set).
  explicit Fabric(const FabricOptions& options = {})
      : core_(detail::call([&] {
          ffi::FabricOptions o;
          o.data_dir = rust::String(options.data_dir);
          o.max_tenant_gpus = options.max_tenant_gpus;
          o.heartbeat_timeout_ms = options.heartbeat_timeout_ms;
          o.simulation_mode = options.simulation_mode;
          return ffi::fabric_open(o);
        })) {}

  /// Registers (or updates) a node.
  Outcome register_node(const NodeSpec& spec) const {
    return detail::call([&] {
      ffi::NodeSpec n;
      n.id = rust::String(spec.id);
      n.cpu_milli = spec.cpu_milli;
      n.memory_mib = spec.memory_mib;
      for (const auto& g : spec.gpus) n.gpus.push_back(ffi::GpuDevice{rust::String(g.model), g.memory_mib});
      n.tpus = spec.tpus;
      n.quantum_qubits = spec.quantum_qubits;
      n.labels = detail::labels(spec.labels);
      n.cached_models = detail::rstrings(spec.cached_models);
      return detail::outcome(core_->register_node(n));
    });
  }

  /// Places a request, or queues it (Outcome::reason says why).
  Outcome schedule(const ScheduleRequest& r) const {
    return detail::call([&] {
      ffi::ScheduleRequest q;
      q.tenant_id = rust::String(r.tenant_id);
      q.model_id = rust::String(r.model_id);
      q.model_version = rust::String(r.model_version);
      q.resources = ffi::Resources{r.resources.gpu, r.resources.gpu_milli, r.resources.cpu,
                                   r.resources.mem, r.resources.tpu,       r.resources.qubits};
      q.replicas = r.replicas;
      q.priority = r.priority;
      q.idempotency_key = rust::String(r.idempotency_key.value_or(""));
      q.region = rust::String(r.region.value_or(""));
      q.latency_ms = r.latency_ms.value_or(0);
      q.gpu_model = rust::String(r.gpu_model.value_or(""));
      q.labels = detail::labels(r.labels);
      q.production = r.production;
      q.manifest_verified = r.manifest_verified;
      q.approved_by = rust::String(r.approved_by.value_or(""));
      return detail::outcome(core_->schedule(q));
    });
  }

  /// Status of one of `tenant_id`'s requests; throws NotFound for unknown (or other tenants')
  /// ids.
  RequestStatus status(const std::string& tenant_id, std::uint64_t request_id) const {
    return detail::call(
        [&] { return detail::status(core_->status(detail::str(tenant_id), request_id)); });
  }

  /// Every request of a tenant, oldest first.
  std::vector<RequestStatus> requests(const std::string& tenant_id) const {
    return detail::call([&] {
      std::vector<RequestStatus> out;
      for (const auto& s : core_->requests(detail::str(tenant_id))) out.push_back(detail::status(s));
      return out;
    });
  }

  /// Releases a request (frees its capacity, or cancels it while queued).
  Outcome release(const std::string& tenant_id, std::uint64_t request_id) const {
    return detail::call(
        [&] { return detail::outcome(core_->release(detail::str(tenant_id), request_id)); });
  }

  /// Sets a tenant's quota: `gpus` whole GPUs guaranteed, up to `borrow_gpus` borrowed from
  /// idle quota of `cohort` ("" = "default").
  Outcome set_quota(const std::string& tenant_id, std::uint64_t gpus, std::uint64_t borrow_gpus = 0,
                    const std::string& cohort = "") const {
    return detail::call([&] {
      return detail::outcome(
          core_->set_quota(detail::str(tenant_id), gpus, borrow_gpus, detail::str(cohort)));
    });
  }

  /// Runs any scheduler command in JSON (`{"op":"complete","tenant_id":..,"request":7}`);
  /// returns the outcome JSON.
  std::string execute_json(const std::string& command) const {
    return detail::call([&] { return std::string(core_->execute_json(detail::str(command))); });
  }

  /// Prometheus text exposition of the fabric's metrics.
  std::string metrics_text() const {
    return detail::call([&] { return std::string(core_->metrics_text()); });
  }

 private:
  rust::Box<ffi::FabricCore> core_;
};

// ------------------------------------------------------------------------ keys and manifests

/// A public key.
class VerifyingKey {
 public:
  /// Parses the key file text format.
  static VerifyingKey from_text(const std::string& text) {
    return VerifyingKey(detail::call([&] { return ffi::verifying_key_from_text(detail::str(text)); }));
  }
  /// Reads a public (or secret) key file.
  static VerifyingKey read(const std::string& path) {
    return VerifyingKey(detail::call([&] { return ffi::verifying_key_read(detail::str(path)); }));
  }
  VerifyingKey(const VerifyingKey& o) : core_(o.core_->duplicate()) {}
  VerifyingKey& operator=(const VerifyingKey& o) {
    if (this != &o) core_ = o.core_->duplicate();
    return *this;
  }
  VerifyingKey(VerifyingKey&&) noexcept = default;
  VerifyingKey& operator=(VerifyingKey&&) noexcept = default;

  std::string to_text() const { return std::string(core_->to_text()); }      ///< key file text
  std::string key_id() const { return std::string(core_->key_id()); }        ///< hex key id
  std::string algorithm() const { return std::string(core_->algorithm()); }  ///< label

  /// The bridge object.
  const ffi::VerifyingKeyCore& core() const { return *core_; }

 private:
  friend class SigningKey;
  explicit VerifyingKey(rust::Box<ffi::VerifyingKeyCore> c) : core_(std::move(c)) {}
  rust::Box<ffi::VerifyingKeyCore> core_;
};

/// A signing key (the secret stays in Rust memory and is zeroized when dropped).
class SigningKey {
 public:
  /// Generates a key: "hybrid" (ECDSA P-256 + ML-DSA-65), "ml-dsa-44|65|87", "ecdsa-p256",
  /// "ed25519".
  static SigningKey generate(const std::string& algorithm = "hybrid") {
    return SigningKey(detail::call([&] { return ffi::signing_key_generate(detail::str(algorithm)); }));
  }
  /// Reads a secret key file.
  static SigningKey read(const std::string& path) {
    return SigningKey(detail::call([&] { return ffi::signing_key_read(detail::str(path)); }));
  }
  /// Parses secret key text.
  static SigningKey from_text(const std::string& text) {
    return SigningKey(detail::call([&] { return ffi::signing_key_from_text(detail::str(text)); }));
  }
  /// Writes the secret key to a new file (mode 0600; never overwrites).
  void write(const std::string& path) const {
    detail::call([&] { core_->write(detail::str(path)); });
  }
  std::string key_id() const { return std::string(core_->key_id()); }        ///< hex key id
  std::string algorithm() const { return std::string(core_->algorithm()); }  ///< label
  /// The public key.
  VerifyingKey verifying_key() const { return VerifyingKey(core_->verifying_key()); }
  /// The bridge object.
  const ffi::SigningKeyCore& core() const { return *core_; }

 private:
  explicit SigningKey(rust::Box<ffi::SigningKeyCore> c) : core_(std::move(c)) {}
  rust::Box<ffi::SigningKeyCore> core_;
};

/// Trusted keys with validity windows.
class KeyRing {
 public:
  /// An empty ring.
  KeyRing() : core_(ffi::key_ring_new()) {}
  /// Loads a ring JSON file, or a single public key file (trusted with no expiry).
  static KeyRing load(const std::string& path) {
    return KeyRing(detail::call([&] { return ffi::key_ring_load(detail::str(path)); }));
  }
  /// Parses ring JSON (see to_json()).
  static KeyRing from_json(const std::string& text) {
    return KeyRing(detail::call([&] { return ffi::key_ring_from_json(detail::str(text)); }));
  }
  KeyRing(const KeyRing& o) : core_(o.core_->duplicate()) {}
  KeyRing& operator=(const KeyRing& o) {
    if (this != &o) core_ = o.core_->duplicate();
    return *this;
  }
  KeyRing(KeyRing&&) noexcept = default;
  KeyRing& operator=(KeyRing&&) noexcept = default;

  /// Trusts `key` from `not_before` until `not_after` (0 = no expiry), unix seconds.
  KeyRing& add(const VerifyingKey& key, std::uint64_t not_before = 0, std::uint64_t not_after = 0) {
    core_->add(key.core(), not_before, not_after);
    return *this;
  }
  std::size_t size() const { return core_->key_count(); }                         ///< keys
  std::vector<std::string> key_ids() const { return detail::sstrings(core_->key_ids()); }  ///< ids
  std::string to_json() const { return std::string(core_->to_json()); }         ///< ring JSON
  /// The bridge object.
  const ffi::KeyRingCore& core() const { return *core_; }

 private:
  explicit KeyRing(rust::Box<ffi::KeyRingCore> c) : core_(std::move(c)) {}
  rust::Box<ffi::KeyRingCore> core_;
};

/// Options of model signing and verification.
struct ManifestOptions {
  std::string pqc_mode = "hybrid";       ///< PQC_MODE: hybrid, classical, off
  bool simulation = false;               ///< SIMULATION_MODE (needed for "off")
  std::vector<std::string> ignore_paths; ///< extra relative paths to ignore
  std::uint64_t now = 0;                 ///< verification time, unix seconds (0 = now)
};

/// A verified file.
struct FileDigest {
  std::string path;    ///< relative POSIX path
  std::string sha256;  ///< hex digest
};

/// What a verified model manifest established.
struct VerifiedModel {
  std::string model_name;
  std::vector<FileDigest> files;
  std::vector<std::string> key_ids;  ///< keys whose signatures verified
};

namespace detail {
inline ffi::ManifestOptions manifest_options(const ManifestOptions& o) {
  ffi::ManifestOptions m;
  m.pqc_mode = rust::String(o.pqc_mode);
  m.simulation = o.simulation;
  m.ignore_paths = rstrings(o.ignore_paths);
  m.now = o.now;
  return m;
}
}  // namespace detail

/// Hashes a model directory and signs its manifest; returns the OpenSSF model-signing
/// (Sigstore bundle v0.3) JSON. Hybrid mode needs a hybrid key.
inline std::string sign_model(const std::string& model_dir, const SigningKey& key,
                              const ManifestOptions& options = {}) {
  return detail::call([&] {
    return std::string(
        ffi::sign_model(detail::str(model_dir), key.core(), detail::manifest_options(options)));
  });
}

/// Verifies a bundle against `ring` and every file of `model_dir`. Throws ManifestError when a
/// file changed, is missing or is extra, VerifyError when a signature is bad or untrusted,
/// InvalidInput for a malformed bundle.
inline VerifiedModel verify_model(const std::string& model_dir, const std::string& bundle_json,
                                  const KeyRing& ring, const ManifestOptions& options = {}) {
  return detail::call([&] {
    auto v = ffi::verify_model(detail::str(model_dir), detail::str(bundle_json), ring.core(),
                               detail::manifest_options(options));
    VerifiedModel out;
    out.model_name = std::string(v.model_name);
    for (const auto& f : v.files) out.files.push_back({std::string(f.path), std::string(f.sha256)});
    out.key_ids = detail::sstrings(v.key_ids);
    return out;
  });
}

// ---------------------------------------------------------------------------------- audit

/// A checkpoint signer (Ed25519 or ML-DSA-44) named for a log's origin.
class NoteSigner {
 public:
  /// Generates a signer: "ed25519" or "ml-dsa-44".
  static NoteSigner generate(const std::string& origin, const std::string& algorithm = "ed25519") {
    return NoteSigner(detail::call(
        [&] { return ffi::note_signer_generate(detail::str(origin), detail::str(algorithm)); }));
  }
  /// Parses a signer key string (`PRIVATE+KEY+...`).
  static NoteSigner from_key(const std::string& signer_key) {
    return NoteSigner(detail::call([&] { return ffi::note_signer_from_key(detail::str(signer_key)); }));
  }
  std::string signer_key() const { return std::string(core_->signer_key()); }  ///< secret
  std::string vkey() const { return std::string(core_->vkey()); }              ///< verifier key
  std::string name() const { return std::string(core_->name()); }              ///< origin
  /// The bridge object.
  const ffi::NoteSignerCore& core() const { return *core_; }

 private:
  explicit NoteSigner(rust::Box<ffi::NoteSignerCore> c) : core_(std::move(c)) {}
  rust::Box<ffi::NoteSignerCore> core_;
};

/// An audit event. Identifiers below tenant level (principal, subject id) are stored only as
/// HMAC-SHA256 under `id_key`, the payload only as its SHA-256 (policy P1).
struct AuditEvent {
  std::string action;                 ///< dotted code, e.g. "inference.request"
  std::string tenant;                 ///< [a-z0-9._-]{1,64}
  std::string principal;              ///< raw principal id ("" = none)
  std::string subject_kind;           ///< "model", "job", ...
  std::string subject_id;             ///< raw subject id
  std::string outcome = "allow";      ///< allow, deny, allow_in_simulation
  std::vector<std::string> policies;  ///< "P2", "P5", ... (any order)
  std::string reason;                 ///< reason code ("" = none)
  std::optional<std::string> payload; ///< bytes the decision was about (hashed)
  Bytes id_key;                       ///< the tenant's identifier key
  std::uint64_t time_ms = 0;          ///< ms since the epoch (0 = now)
};

/// An inclusion proof of one audit record.
struct InclusionProof {
  std::uint64_t index = 0;  ///< record index
  std::uint64_t size = 0;   ///< tree size
  Hash leaf_hash{};         ///< RFC 6962 leaf hash of the record
  std::vector<Hash> path;   ///< audit path
  Hash root{};              ///< root of the tree of `size` records
};

/// Result of a full audit log verification.
struct AuditReport {
  std::uint64_t records = 0;                    ///< complete records
  Hash root{};                                  ///< root over all of them
  std::optional<std::uint64_t> checkpoint_size; ///< size of the verified signed checkpoint
};

/// A verified checkpoint.
struct CheckpointInfo {
  std::string origin;
  std::uint64_t size = 0;
  Hash root{};
};

namespace detail {
inline rust::Vec<std::uint8_t> rbytes(const std::string& s) {
  return rvec(reinterpret_cast<const std::uint8_t*>(s.data()), s.size());
}
inline rust::Slice<const std::uint8_t> slice(const Hash& h) { return {h.data(), h.size()}; }
}  // namespace detail

/// RFC 6962 leaf hash `SHA-256(0x00 || data)`.
inline Hash leaf_hash(const std::string& data) {
  return detail::hash32(ffi::leaf_hash(
      rust::Slice<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(data.data()), data.size())));
}

/// RFC 9162 inclusion verification: true iff `path` proves `leaf_hash` is record `index` of the
/// tree of `size` records with root `root`.
inline bool verify_inclusion(const Hash& leaf_hash, std::uint64_t index, std::uint64_t size,
                             const std::vector<Hash>& path, const Hash& root) {
  std::vector<std::uint8_t> flat;
  flat.reserve(path.size() * 32);
  for (const auto& h : path) flat.insert(flat.end(), h.begin(), h.end());
  return ffi::verify_inclusion(detail::slice(leaf_hash), index, size,
                               rust::Slice<const std::uint8_t>(flat.data(), flat.size()),
                               detail::slice(root));
}

/// Verifies a proof returned by AuditLog::prove().
inline bool verify_inclusion(const InclusionProof& p) {
  return verify_inclusion(p.leaf_hash, p.index, p.size, p.path, p.root);
}

/// Verifies a signed checkpoint with verifier keys in `mode` ("hybrid": Ed25519 and ML-DSA-44
/// signatures both required; "classical": Ed25519). Throws VerifyError.
inline CheckpointInfo verify_checkpoint(const std::string& text, const std::vector<std::string>& vkeys,
                                        const std::string& mode = "hybrid") {
  return detail::call([&] {
    auto c = ffi::verify_checkpoint(detail::str(text), detail::rstrings(vkeys), detail::str(mode));
    return CheckpointInfo{std::string(c.origin), c.size, detail::hash32(c.root)};
  });
}

/// An append-only, tamper-evident audit log in a directory. Appends are durable when they
/// return. Thread-safe.
class AuditLog {
 public:
  /// Creates an empty log whose checkpoints are verified by `vkeys` in `mode`, and opens it.
  static AuditLog create(const std::string& path, const std::string& origin,
                         const std::vector<std::string>& vkeys, const std::string& mode = "hybrid") {
    return AuditLog(detail::call([&] {
      return ffi::audit_log_create(detail::str(path), detail::str(origin), detail::rstrings(vkeys),
                                   detail::str(mode));
    }));
  }
  /// Opens a log (a torn tail is dropped; the tree is checked against the last checkpoint).
  static AuditLog open(const std::string& path) {
    return AuditLog(detail::call([&] { return ffi::audit_log_open(detail::str(path)); }));
  }

  /// Appends an event; returns its index.
  std::uint64_t append(const AuditEvent& e) const {
    return detail::call([&] {
      ffi::AuditEvent a;
      a.action = rust::String(e.action);
      a.tenant = rust::String(e.tenant);
      a.principal = rust::String(e.principal);
      a.subject_kind = rust::String(e.subject_kind);
      a.subject_id = rust::String(e.subject_id);
      a.outcome = rust::String(e.outcome);
      a.policies = detail::rstrings(e.policies);
      a.reason = rust::String(e.reason);
      a.has_payload = e.payload.has_value();
      if (e.payload) a.payload = detail::rbytes(*e.payload);
      a.id_key = detail::rvec(e.id_key.data(), e.id_key.size());
      a.time_ms = e.time_ms;
      return core_->append_event(a);
    });
  }
  /// Appends an entry given in the audit entry JSON format; returns its index.
  std::uint64_t append_json(const std::string& entry) const {
    return detail::call([&] { return core_->append_json(detail::str(entry)); });
  }
  /// Number of records.
  std::uint64_t size() const { return detail::call([&] { return core_->size(); }); }
  /// Current root hash.
  Hash root() const { return detail::call([&] { return detail::hash32(core_->root()); }); }

  /// Signs and stores a checkpoint (Ed25519 signer, plus an ML-DSA-44 one in hybrid mode);
  /// returns the signed note text.
  std::string checkpoint(const std::vector<const NoteSigner*>& signers) const {
    return detail::call([&] {
      auto set = ffi::signer_set_new();
      for (const auto* s : signers) {
        if (s == nullptr) throw InvalidInput("invalid_input", "null checkpoint signer");
        set->push(s->core());
      }
      return std::string(core_->checkpoint(*set));
    });
  }
  /// Signs a checkpoint with one signer (classical mode).
  std::string checkpoint(const NoteSigner& signer) const { return checkpoint({&signer}); }
  /// Signs a checkpoint with two signers (hybrid mode: Ed25519 and ML-DSA-44).
  std::string checkpoint(const NoteSigner& a, const NoteSigner& b) const { return checkpoint({&a, &b}); }

  /// Inclusion proof of record `index` in the tree of the first `size` records (0 = all).
  /// Throws NotFound when `index` is not in the tree.
  InclusionProof prove(std::uint64_t index, std::uint64_t size = 0) const {
    return detail::call([&] {
      auto p = core_->prove(index, size);
      InclusionProof out;
      out.index = p.index;
      out.size = p.size;
      out.leaf_hash = detail::hash32(p.leaf_hash);
      out.root = detail::hash32(p.root);
      for (std::size_t i = 0; i + 32 <= p.path.size(); i += 32) {
        Hash h{};
        for (std::size_t j = 0; j < 32; ++j) h[j] = p.path[i + j];
        out.path.push_back(h);
      }
      return out;
    });
  }
  /// Record `index` (canonical JSON).
  std::string read(std::uint64_t index) const {
    return detail::call([&] { return std::string(core_->read(index)); });
  }
  /// Re-verifies the whole log from disk; throws AuditError naming the first bad record.
  AuditReport verify() const {
    return detail::call([&] {
      auto r = core_->verify();
      AuditReport out;
      out.records = r.records;
      out.root = detail::hash32(r.root);
      if (r.has_checkpoint) out.checkpoint_size = r.checkpoint_size;
      return out;
    });
  }
  /// Syncs and closes the log (later calls throw InvalidInput). Appends are durable when
  /// append() returns, so destroying an open log loses nothing.
  void close() const {
    detail::call([&] { core_->close(); });
  }

 private:
  explicit AuditLog(rust::Box<ffi::AuditLogCore> c) : core_(std::move(c)) {}
  rust::Box<ffi::AuditLogCore> core_;
};

// -------------------------------------------------------------------------------- quantum

/// Simulation options.
struct SimOptions {
  std::uint64_t shots = 0;              ///< measurement samples (0 = no counts)
  std::optional<std::uint64_t> seed;    ///< sampling seed (none = from the clock)
  bool single_precision = false;        ///< complex64 amplitudes
  std::uint64_t memory_limit = 0;       ///< most bytes for the state (0 = available memory)
};

/// The result of a simulation (immutable; thread-safe).
class SimulationResult {
 public:
  /// Probabilities of every basis state (qubit 0 = least significant bit of the index).
  std::vector<double> probabilities() const { return detail::svec(core_->probabilities()); }
  /// The final statevector.
  std::vector<std::complex<double>> statevector() const {
    auto a = core_->amplitudes();
    std::vector<std::complex<double>> out;
    out.reserve(a.size() / 2);
    for (std::size_t i = 0; i + 1 < a.size(); i += 2) out.emplace_back(a[i], a[i + 1]);
    return out;
  }
  /// Counts keyed by classical bit strings (clbit 0 rightmost, as Qiskit).
  std::map<std::string, std::uint64_t> counts() const {
    std::map<std::string, std::uint64_t> out;
    for (const auto& c : core_->counts()) out.emplace(std::string(c.bits), c.count);
    return out;
  }
  std::uint64_t shots() const { return core_->shots(); }  ///< shots sampled
  double seconds() const { return core_->seconds(); }     ///< simulation time
  /// Expectation value of a Pauli sum, e.g. {{1.0, "ZZ"}, {0.5, "XI"}} (Qiskit labels: the
  /// rightmost letter acts on qubit 0).
  double expectation(const std::vector<std::pair<double, std::string>>& terms) const {
    return detail::call([&] {
      std::vector<double> coeffs;
      std::vector<std::string> labels;
      for (const auto& [c, l] : terms) {
        coeffs.push_back(c);
        labels.push_back(l);
      }
      return core_->expectation(rust::Slice<const double>(coeffs.data(), coeffs.size()),
                                detail::rstrings(labels));
    });
  }

 /// Wraps a bridge result (see atom::simulate).
  explicit SimulationResult(rust::Box<ffi::SimResultCore> c) : core_(std::move(c)) {}

 private:
  rust::Box<ffi::SimResultCore> core_;
};

/// A quantum circuit. Gate calls check their arguments at once and throw QuantumError.
class Circuit {
 public:
  /// An empty circuit with registers q[num_qubits] and c[num_clbits].
  explicit Circuit(std::size_t num_qubits, std::size_t num_clbits = 0)
      : core_(detail::call([&] { return ffi::circuit_new(num_qubits, num_clbits); })) {}
  /// Parses OpenQASM 2.0 (throws QasmError with line:column).
  static Circuit from_qasm(const std::string& text) {
    return Circuit(detail::call([&] { return ffi::circuit_from_qasm(detail::str(text)); }));
  }
  Circuit(const Circuit& o) : core_(o.core_->duplicate()) {}
  Circuit& operator=(const Circuit& o) {
    if (this != &o) core_ = o.core_->duplicate();
    return *this;
  }
  Circuit(Circuit&&) noexcept = default;
  Circuit& operator=(Circuit&&) noexcept = default;

  /// OpenQASM 2.0 text.
  std::string to_qasm() const { return detail::call([&] { return std::string(core_->to_qasm()); }); }
  std::size_t num_qubits() const { return core_->num_qubits(); }  ///< qubits
  std::size_t num_clbits() const { return core_->num_clbits(); }  ///< classical bits
  std::size_t depth() const { return core_->depth(); }            ///< depth
  std::size_t size() const { return core_->size(); }              ///< instructions

  /// Appends gate `name` (OpenQASM names) with `params` on `qubits`.
  Circuit& gate(const std::string& name, const std::vector<double>& params,
                const std::vector<std::size_t>& qubits) {
    detail::call([&] {
      core_->gate(detail::str(name), rust::Slice<const double>(params.data(), params.size()),
                  rust::Slice<const std::size_t>(qubits.data(), qubits.size()));
    });
    return *this;
  }
  Circuit& h(std::size_t q) { return gate("h", {}, {q}); }    ///< Hadamard
  Circuit& x(std::size_t q) { return gate("x", {}, {q}); }    ///< Pauli X
  Circuit& y(std::size_t q) { return gate("y", {}, {q}); }    ///< Pauli Y
  Circuit& z(std::size_t q) { return gate("z", {}, {q}); }    ///< Pauli Z
  Circuit& s(std::size_t q) { return gate("s", {}, {q}); }    ///< S
  Circuit& t(std::size_t q) { return gate("t", {}, {q}); }    ///< T
  Circuit& rx(double theta, std::size_t q) { return gate("rx", {theta}, {q}); }  ///< RX
  Circuit& ry(double theta, std::size_t q) { return gate("ry", {theta}, {q}); }  ///< RY
  Circuit& rz(double theta, std::size_t q) { return gate("rz", {theta}, {q}); }  ///< RZ
  Circuit& cx(std::size_t c, std::size_t t) { return gate("cx", {}, {c, t}); }   ///< CNOT
  Circuit& cz(std::size_t c, std::size_t t) { return gate("cz", {}, {c, t}); }   ///< CZ
  Circuit& swap(std::size_t a, std::size_t b) { return gate("swap", {}, {a, b}); }  ///< SWAP
  Circuit& ccx(std::size_t a, std::size_t b, std::size_t t) { return gate("ccx", {}, {a, b, t}); }  ///< Toffoli
  /// Measures qubit `q` into classical bit `c`.
  Circuit& measure(std::size_t q, std::size_t c) {
    detail::call([&] { core_->measure(q, c); });
    return *this;
  }
  /// Measures every qubit into a new classical register `meas`.
  Circuit& measure_all() {
    core_->measure_all();
    return *this;
  }
  /// The bridge object.
  const ffi::CircuitCore& core() const { return *core_; }

 private:
  explicit Circuit(rust::Box<ffi::CircuitCore> c) : core_(std::move(c)) {}
  rust::Box<ffi::CircuitCore> core_;
};

/// Simulates a circuit: statevector, probabilities, and counts when options.shots > 0.
/// Throws MemoryLimitError when the state would not fit, QuantumError for an invalid circuit.
inline SimulationResult simulate(const Circuit& circuit, const SimOptions& options = {}) {
  return SimulationResult(detail::call([&] {
    ffi::SimOptions o;
    o.shots = options.shots;
    o.has_seed = options.seed.has_value();
    o.seed = options.seed.value_or(0);
    o.single_precision = options.single_precision;
    o.memory_limit = options.memory_limit;
    return ffi::simulate(circuit.core(), o);
  }));
}

}  // namespace atom
