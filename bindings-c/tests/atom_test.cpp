// GoogleTest suite of the atom-fabric C++ API (bindings-c/include/atom/atom.hpp).
// Run by `make test-cxx`, and under AddressSanitizer + UBSan by `make test-sanitize`.

#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <thread>

#include "atom/atom.hpp"

namespace fs = std::filesystem;

namespace {

// A fresh directory under the system temp dir, removed at the end of the test.
class TempDir {
 public:
  TempDir() {
    std::random_device rd;
    path_ = fs::temp_directory_path() / ("atom-cxx-test-" + std::to_string(rd()) + "-" + std::to_string(rd()));
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }
  std::string str(const std::string& child = "") const { return child.empty() ? path_.string() : (path_ / child).string(); }

 private:
  fs::path path_;
};

void write_file(const fs::path& p, const std::string& content) {
  fs::create_directories(p.parent_path());
  std::ofstream f(p, std::ios::binary);
  f << content;
}

atom::NodeSpec gpu_node(const std::string& id, int gpus) {
  atom::NodeSpec n;
  n.id = id;
  n.cpu_milli = 64000;
  n.memory_mib = 512 * 1024;
  for (int i = 0; i < gpus; ++i) n.gpus.push_back({"A100", 40960});
  n.labels["region"] = "eu-west";
  return n;
}

atom::ScheduleRequest one_gpu(const std::string& tenant, const std::string& model = "llama") {
  atom::ScheduleRequest r;
  r.tenant_id = tenant;
  r.model_id = model;
  r.model_version = "v1";
  r.resources.gpu = 1;
  r.resources.cpu = 1000;
  r.resources.mem = 1024;
  return r;
}

}  // namespace

// ------------------------------------------------------------------------------- fabric

TEST(Fabric, RegisterScheduleStatusRelease) {
  atom::Fabric fabric;
  auto reg = fabric.register_node(gpu_node("n1", 4));
  EXPECT_EQ(reg.kind, "node");
  EXPECT_EQ(reg.detail, "n1");

  auto out = fabric.schedule(one_gpu("acme"));
  ASSERT_TRUE(out.placed()) << out.json;
  ASSERT_EQ(out.replicas.size(), 1u);
  EXPECT_EQ(out.replicas[0].node, "n1");
  ASSERT_EQ(out.replicas[0].devices.size(), 1u);
  EXPECT_LT(out.replicas[0].devices[0], 4u);
  EXPECT_NE(out.json.find("\"result\":\"placed\""), std::string::npos);

  auto st = fabric.status("acme", out.request_id);
  EXPECT_EQ(st.id, out.request_id);
  EXPECT_EQ(st.phase, "placed");
  EXPECT_EQ(st.model_id, "llama");
  ASSERT_EQ(st.replicas.size(), 1u);
  EXPECT_EQ(st.replicas[0].node, "n1");
  EXPECT_GT(st.submitted_ms, 1600000000000u);

  auto reqs = fabric.requests("acme");
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_EQ(reqs[0].id, out.request_id);

  auto rel = fabric.release("acme", out.request_id);
  EXPECT_EQ(rel.kind, "phase");
  EXPECT_EQ(rel.phase, "completed");
  EXPECT_EQ(fabric.status("acme", out.request_id).phase, "completed");

  // Another tenant cannot see the request.
  EXPECT_THROW(fabric.status("other", out.request_id), atom::NotFound);
  // Releasing a completed request is an invalid transition.
  EXPECT_THROW(fabric.release("acme", out.request_id), atom::FabricError);

  EXPECT_NE(fabric.metrics_text().find("# TYPE"), std::string::npos);
}

TEST(Fabric, QuotaQueueingAndDrainOnRelease) {
  atom::Fabric fabric;  // default tenant quota: 2 GPUs
  fabric.register_node(gpu_node("n1", 8));
  auto a = fabric.schedule(one_gpu("acme"));
  auto b = fabric.schedule(one_gpu("acme"));
  auto c = fabric.schedule(one_gpu("acme"));
  EXPECT_TRUE(a.placed());
  EXPECT_TRUE(b.placed());
  ASSERT_TRUE(c.queued()) << c.json;
  EXPECT_EQ(c.reason, "quota");
  EXPECT_EQ(fabric.status("acme", c.request_id).queue_reason, "quota");

  // Another tenant has its own quota.
  EXPECT_TRUE(fabric.schedule(one_gpu("globex")).placed());

  // Freeing quota lets the queued request in.
  fabric.release("acme", a.request_id);
  EXPECT_EQ(fabric.status("acme", c.request_id).phase, "placed");

  // A larger quota admits more at once.
  fabric.set_quota("acme", 6);
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(fabric.schedule(one_gpu("acme")).placed());
}

TEST(Fabric, CapacityQueueingAndIdempotency) {
  atom::Fabric fabric(atom::FabricOptions{"", 100, 0, false});
  fabric.register_node(gpu_node("n1", 2));
  auto big = one_gpu("acme");
  big.resources.gpu = 3;  // no node has 3 GPUs
  auto out = fabric.schedule(big);
  ASSERT_TRUE(out.queued());
  EXPECT_EQ(out.reason, "constraint");

  auto r = one_gpu("acme");
  r.idempotency_key = "req-abc";
  auto first = fabric.schedule(r);
  auto again = fabric.schedule(r);
  EXPECT_TRUE(first.placed());
  EXPECT_EQ(again.kind, "existing");
  EXPECT_EQ(again.request_id, first.request_id);
}

TEST(Fabric, ExecuteJsonRunsAnyCommand) {
  atom::Fabric fabric;
  fabric.register_node(gpu_node("n1", 1));
  auto out = fabric.schedule(one_gpu("acme"));
  ASSERT_TRUE(out.placed());
  std::string cmd = R"({"op":"mark_running","tenant_id":"acme","request":)" + std::to_string(out.request_id) + "}";
  auto res = fabric.execute_json(cmd);
  EXPECT_NE(res.find("\"running\""), std::string::npos) << res;
  EXPECT_EQ(fabric.status("acme", out.request_id).phase, "running");
}

TEST(Fabric, PersistsInDataDir) {
  TempDir dir;
  std::uint64_t id = 0;
  {
    atom::FabricOptions o;
    o.data_dir = dir.str("fabric");
    atom::Fabric fabric(o);
    fabric.register_node(gpu_node("n1", 2));
    id = fabric.schedule(one_gpu("acme")).request_id;
  }
  atom::FabricOptions o;
  o.data_dir = dir.str("fabric");
  atom::Fabric reopened(o);
  EXPECT_EQ(reopened.status("acme", id).phase, "placed");
}

TEST(Fabric, BadInputThrowsTypedErrors) {
  atom::Fabric fabric;
  fabric.register_node(gpu_node("n1", 2));

  auto r = one_gpu("acme");
  r.replicas = 0;
  try {
    fabric.schedule(r);
    FAIL() << "replicas = 0 was accepted";
  } catch (const atom::InvalidInput& e) {
    EXPECT_EQ(e.kind(), "invalid_input");
    EXPECT_NE(e.message().find("replicas"), std::string::npos) << e.what();
  }
  auto frac = one_gpu("acme");
  frac.resources.gpu_milli = 1500;
  EXPECT_THROW(fabric.schedule(frac), atom::InvalidInput);
  auto empty = one_gpu("");
  EXPECT_THROW(fabric.schedule(empty), atom::InvalidInput);

  EXPECT_THROW(fabric.execute_json("{not json"), atom::InvalidInput);
  EXPECT_THROW(fabric.execute_json(R"({"op":"drain_node","node":"nope"})"), atom::NotFound);
  EXPECT_THROW(fabric.status("acme", 424242), atom::NotFound);

  // Non-UTF-8 strings are refused before they reach Rust.
  std::string bad = "acme\xff\xfe";
  EXPECT_THROW(fabric.status(bad, 1), atom::InvalidInput);
  EXPECT_THROW(fabric.schedule(one_gpu(bad)), atom::InvalidInput);

  // Everything derives from atom::Error and std::exception.
  try {
    fabric.status("acme", 99);
  } catch (const atom::Error& e) {
    EXPECT_EQ(e.kind(), "not_found");
  }
  EXPECT_THROW(atom::Fabric(atom::FabricOptions{"/proc/definitely/not/writable", 0, 0, false}), atom::Error);
}

TEST(Fabric, ProductionDeployPolicyAndBorrowing) {
  atom::Fabric fabric;
  fabric.register_node(gpu_node("n1", 4));
  // P2: a production deploy needs a verified manifest; P3: an approver.
  auto prod = one_gpu("acme");
  prod.production = true;
  try {
    fabric.schedule(prod);
    FAIL() << "production deploy without a verified manifest was accepted";
  } catch (const atom::FabricError& e) {
    EXPECT_NE(e.message().find("P2"), std::string::npos) << e.what();
  }
  prod.manifest_verified = true;
  EXPECT_THROW(fabric.schedule(prod), atom::FabricError);
  prod.approved_by = "release-manager";
  EXPECT_TRUE(fabric.schedule(prod).placed());

  // Borrowing idle quota of the cohort.
  fabric.set_quota("lender", 2, 0, "research");
  fabric.set_quota("borrower", 1, 1, "research");
  auto a = fabric.schedule(one_gpu("borrower"));
  auto b = fabric.schedule(one_gpu("borrower"));
  EXPECT_TRUE(a.placed());
  ASSERT_TRUE(b.placed()) << b.json;
  EXPECT_TRUE(b.borrowed);
  auto c = fabric.schedule(one_gpu("borrower"));
  ASSERT_TRUE(c.queued());
  EXPECT_EQ(c.reason, "quota");
}

TEST(Fabric, NoOvercommitUnderConcurrentScheduling) {
  atom::Fabric fabric(atom::FabricOptions{"", 1000, 0, false});
  fabric.register_node(gpu_node("n1", 8));
  fabric.register_node(gpu_node("n2", 8));
  const std::size_t capacity = 16;
  const int threads = 8, per_thread = 12;

  std::vector<std::vector<atom::Outcome>> results(threads);
  std::atomic<int> errors{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      try {
        for (int i = 0; i < per_thread; ++i) {
          auto out = fabric.schedule(one_gpu("tenant-" + std::to_string(t % 3)));
          results[t].push_back(out);
          (void)fabric.status(out.kind == "placed" || out.kind == "queued" ? "tenant-" + std::to_string(t % 3) : "x",
                              out.request_id);
          (void)fabric.metrics_text();
        }
      } catch (...) {
        ++errors;
      }
    });
  }
  for (auto& th : pool) th.join();
  ASSERT_EQ(errors.load(), 0);

  std::set<std::pair<std::string, std::uint32_t>> devices;
  std::size_t placed = 0, queued = 0;
  std::set<std::uint64_t> ids;
  for (const auto& rs : results) {
    for (const auto& o : rs) {
      ids.insert(o.request_id);
      if (o.placed()) {
        ++placed;
        for (const auto& rep : o.replicas)
          for (auto d : rep.devices) EXPECT_TRUE(devices.insert({rep.node, d}).second) << "device given twice";
      } else {
        ASSERT_TRUE(o.queued());
        EXPECT_EQ(o.reason, "capacity");
        ++queued;
      }
    }
  }
  EXPECT_EQ(ids.size(), static_cast<std::size_t>(threads * per_thread)) << "request ids must be unique";
  EXPECT_LE(placed, capacity);
  EXPECT_EQ(placed, capacity) << "free capacity was left while requests queued";
  EXPECT_EQ(queued, threads * per_thread - capacity);

  // Concurrent releases: every placed request is released by some thread, and queued ones move
  // in; at no point are more than `capacity` requests placed.
  std::vector<std::pair<std::string, std::uint64_t>> placed_ids;
  for (int t = 0; t < threads; ++t)
    for (const auto& o : results[t])
      if (o.placed()) placed_ids.push_back({"tenant-" + std::to_string(t % 3), o.request_id});
  pool.clear();
  for (int t = 0; t < 4; ++t) {
    pool.emplace_back([&, t] {
      for (std::size_t i = t; i < placed_ids.size(); i += 4) fabric.release(placed_ids[i].first, placed_ids[i].second);
    });
  }
  for (auto& th : pool) th.join();
  std::size_t now_placed = 0;
  for (int t = 0; t < 3; ++t)
    for (const auto& s : fabric.requests("tenant-" + std::to_string(t)))
      if (s.phase == "placed" || s.phase == "running") ++now_placed;
  EXPECT_EQ(now_placed, capacity);
}

// -------------------------------------------------------------------------- manifests

class Manifest : public ::testing::Test {
 protected:
  void SetUp() override {
    model_ = dir_.path() / "resnet";
    write_file(model_ / "model.onnx", std::string("\x08\x07\x12\x04onnx-weights", 17) + std::string(4096, 'w'));
    write_file(model_ / "config.json", R"({"labels": 1000})");
    write_file(model_ / "tokenizer" / "vocab.txt", "a\nb\nc\n");
  }
  TempDir dir_;
  fs::path model_;
};

TEST_F(Manifest, SignVerifyAndTamperOneByte) {
  auto key = atom::SigningKey::generate("hybrid");
  EXPECT_EQ(key.algorithm(), "ecdsa-p256+ml-dsa-65");
  std::string bundle = atom::sign_model(model_.string(), key);
  EXPECT_NE(bundle.find("application/vnd.dev.sigstore.bundle"), std::string::npos);

  atom::KeyRing ring;
  ring.add(key.verifying_key());
  EXPECT_EQ(ring.size(), 1u);
  auto v = atom::verify_model(model_.string(), bundle, ring);
  EXPECT_EQ(v.model_name, "resnet");
  ASSERT_EQ(v.files.size(), 3u);
  std::set<std::string> paths;
  for (const auto& f : v.files) {
    paths.insert(f.path);
    EXPECT_EQ(f.sha256.size(), 64u);
  }
  EXPECT_EQ(paths, (std::set<std::string>{"config.json", "model.onnx", "tokenizer/vocab.txt"}));
  EXPECT_EQ(v.key_ids.size(), 2u) << "hybrid: both the ECDSA and the ML-DSA signature verified";

  // Flip one byte of the weights.
  {
    std::fstream f(model_ / "model.onnx", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(100);
    f.put('x');
  }
  try {
    atom::verify_model(model_.string(), bundle, ring);
    FAIL() << "a tampered model verified";
  } catch (const atom::ManifestError& e) {
    EXPECT_EQ(e.kind(), "manifest");
    EXPECT_NE(e.message().find("model.onnx"), std::string::npos) << e.what();
  }
  // ManifestError is a VerifyError.
  EXPECT_THROW(atom::verify_model(model_.string(), bundle, ring), atom::VerifyError);
}

TEST_F(Manifest, UntrustedKeyExtraFileAndBadBundle) {
  auto key = atom::SigningKey::generate("hybrid");
  auto other = atom::SigningKey::generate("hybrid");
  std::string bundle = atom::sign_model(model_.string(), key);

  atom::KeyRing wrong;
  wrong.add(other.verifying_key());
  try {
    atom::verify_model(model_.string(), bundle, wrong);
    FAIL() << "verified with an untrusted key";
  } catch (const atom::ManifestError&) {
    FAIL() << "an untrusted signature is a VerifyError, not a ManifestError";
  } catch (const atom::VerifyError& e) {
    EXPECT_EQ(e.kind(), "verify");
  }

  atom::KeyRing ring;
  ring.add(key.verifying_key());
  write_file(model_ / "backdoor.py", "import os");
  EXPECT_THROW(atom::verify_model(model_.string(), bundle, ring), atom::ManifestError);
  fs::remove(model_ / "backdoor.py");
  atom::verify_model(model_.string(), bundle, ring);

  // Bundle byte flipped inside the signed payload: signature check fails.
  std::string tampered = bundle;
  auto pos = tampered.find("\"payload\": \"");
  ASSERT_NE(pos, std::string::npos);
  pos += 20;
  tampered[pos] = tampered[pos] == 'A' ? 'B' : 'A';
  EXPECT_THROW(atom::verify_model(model_.string(), tampered, ring), atom::VerifyError);

  EXPECT_THROW(atom::verify_model(model_.string(), "{not json", ring), atom::InvalidInput);
  atom::ManifestOptions unknown_mode;
  unknown_mode.pqc_mode = "quantum-safe";
  EXPECT_THROW(atom::verify_model(model_.string(), bundle, ring, unknown_mode), atom::InvalidInput);
  EXPECT_THROW(atom::SigningKey::generate("rsa-1024"), atom::InvalidInput);
  EXPECT_THROW(atom::VerifyingKey::from_text("garbage"), atom::InvalidInput);
  EXPECT_THROW(atom::KeyRing::load(dir_.str("missing.json")), atom::IoError);
}

TEST_F(Manifest, KeyFilesRingJsonAndExpiry) {
  auto key = atom::SigningKey::generate("hybrid");
  std::string bundle = atom::sign_model(model_.string(), key);

  key.write(dir_.str("signer.key"));
  auto reread = atom::SigningKey::read(dir_.str("signer.key"));
  EXPECT_EQ(reread.key_id(), key.key_id());
  EXPECT_THROW(key.write(dir_.str("signer.key")), atom::IoError) << "never overwrites";

  auto pub = atom::VerifyingKey::from_text(key.verifying_key().to_text());
  EXPECT_EQ(pub.key_id(), key.key_id());
  atom::VerifyingKey copy = pub;
  EXPECT_EQ(copy.algorithm(), pub.algorithm());

  atom::KeyRing ring;
  ring.add(pub);
  auto again = atom::KeyRing::from_json(ring.to_json());
  EXPECT_EQ(again.key_ids(), ring.key_ids());
  atom::verify_model(model_.string(), bundle, again);

  // A key that expired before the verification time is refused.
  atom::KeyRing expired;
  expired.add(pub, 0, 1000);
  atom::ManifestOptions at;
  at.now = 2000;
  EXPECT_THROW(atom::verify_model(model_.string(), bundle, expired, at), atom::VerifyError);
  at.now = 500;
  atom::verify_model(model_.string(), bundle, expired, at);

  // Classical mode with an Ed25519 key.
  auto ed = atom::SigningKey::generate("ecdsa-p256");
  atom::ManifestOptions classical;
  classical.pqc_mode = "classical";
  auto b2 = atom::sign_model(model_.string(), ed, classical);
  atom::KeyRing r2;
  r2.add(ed.verifying_key());
  EXPECT_EQ(atom::verify_model(model_.string(), b2, r2, classical).key_ids.size(), 1u);
  // A classical-only bundle does not pass hybrid verification.
  EXPECT_THROW(atom::verify_model(model_.string(), b2, r2), atom::Error);
}

// ------------------------------------------------------------------------------ audit

namespace {
atom::AuditEvent request_event(const std::string& user, const std::string& prompt) {
  atom::AuditEvent e;
  e.action = "inference.request";
  e.tenant = "acme";
  e.principal = user;
  e.subject_kind = "model";
  e.subject_id = "llama-v1";
  e.policies = {"P5", "P2", "P1"};
  e.payload = prompt;
  e.id_key = {'k', 'e', 'y'};
  e.time_ms = 1700000000000;
  return e;
}
}  // namespace

TEST(Audit, AppendCheckpointProveVerify) {
  TempDir dir;
  const std::string origin = "atom.example/audit";
  auto ed = atom::NoteSigner::generate(origin, "ed25519");
  auto ml = atom::NoteSigner::generate(origin, "ml-dsa-44");
  auto log = atom::AuditLog::create(dir.str("log"), origin, {ed.vkey(), ml.vkey()}, "hybrid");

  const int n = 13;
  for (int i = 0; i < n; ++i) EXPECT_EQ(log.append(request_event("alice", "prompt " + std::to_string(i))), static_cast<std::uint64_t>(i));
  EXPECT_EQ(log.size(), static_cast<std::uint64_t>(n));

  // P1: the stored record has keyed hashes, not the raw user id or prompt.
  std::string rec = log.read(4);
  EXPECT_EQ(rec.find("alice"), std::string::npos) << rec;
  EXPECT_EQ(rec.find("prompt 4"), std::string::npos) << rec;
  EXPECT_NE(rec.find("hmac-sha256:"), std::string::npos) << rec;
  EXPECT_NE(rec.find(R"("policies":["P1","P2","P5"])"), std::string::npos) << rec;

  std::string note = log.checkpoint(ed, ml);
  auto cp = atom::verify_checkpoint(note, {ed.vkey(), ml.vkey()}, "hybrid");
  EXPECT_EQ(cp.origin, origin);
  EXPECT_EQ(cp.size, static_cast<std::uint64_t>(n));
  EXPECT_EQ(cp.root, log.root());

  for (std::uint64_t i = 0; i < static_cast<std::uint64_t>(n); ++i) {
    auto p = log.prove(i);
    EXPECT_EQ(p.size, static_cast<std::uint64_t>(n));
    EXPECT_EQ(p.root, cp.root);
    EXPECT_EQ(p.leaf_hash, atom::leaf_hash(log.read(i))) << "leaf hash is SHA-256(0x00 || record)";
    EXPECT_TRUE(atom::verify_inclusion(p));
    // A wrong leaf, index, size or root fails.
    auto other = atom::leaf_hash(log.read((i + 1) % n));
    EXPECT_FALSE(atom::verify_inclusion(other, p.index, p.size, p.path, p.root));
    EXPECT_FALSE(atom::verify_inclusion(p.leaf_hash, (i + 1) % n, p.size, p.path, p.root));
    auto bad_root = p.root;
    bad_root[0] ^= 1;
    EXPECT_FALSE(atom::verify_inclusion(p.leaf_hash, p.index, p.size, p.path, bad_root));
  }
  // A proof against an older tree size.
  auto old = log.prove(2, 5);
  EXPECT_EQ(old.size, 5u);
  EXPECT_TRUE(atom::verify_inclusion(old));
  EXPECT_NE(old.root, cp.root);

  auto report = log.verify();
  EXPECT_EQ(report.records, static_cast<std::uint64_t>(n));
  EXPECT_EQ(report.root, cp.root);
  ASSERT_TRUE(report.checkpoint_size.has_value());
  EXPECT_EQ(*report.checkpoint_size, static_cast<std::uint64_t>(n));

  // The checkpoint fails with a different key or a missing ML-DSA key in hybrid mode.
  auto stranger = atom::NoteSigner::generate(origin, "ed25519");
  EXPECT_THROW(atom::verify_checkpoint(note, {stranger.vkey(), ml.vkey()}, "hybrid"), atom::VerifyError);
  EXPECT_THROW(atom::verify_checkpoint(note, {ed.vkey()}, "hybrid"), atom::VerifyError);
  std::string forged = note;
  forged.replace(forged.find('\n') + 1, 2, "99");
  EXPECT_THROW(atom::verify_checkpoint(forged, {ed.vkey(), ml.vkey()}, "hybrid"), atom::VerifyError);

  // Reopen: size and root persist; signer keys round-trip.
  log.close();
  EXPECT_THROW(log.size(), atom::InvalidInput) << "closed";
  auto reopened = atom::AuditLog::open(dir.str("log"));
  EXPECT_EQ(reopened.size(), static_cast<std::uint64_t>(n));
  EXPECT_EQ(reopened.root(), cp.root);
  auto ed2 = atom::NoteSigner::from_key(ed.signer_key());
  EXPECT_EQ(ed2.vkey(), ed.vkey());
}

TEST(Audit, BadEntriesAndRanges) {
  TempDir dir;
  auto ed = atom::NoteSigner::generate("o.example/log", "ed25519");
  auto log = atom::AuditLog::create(dir.str("log"), "o.example/log", {ed.vkey()}, "classical");

  auto e = request_event("bob", "x");
  e.tenant = "ACME Corp";  // must be [a-z0-9._-]
  EXPECT_THROW(log.append(e), atom::InvalidInput);
  e = request_event("bob", "x");
  e.outcome = "maybe";
  EXPECT_THROW(log.append(e), atom::InvalidInput);
  e = request_event("bob", "x");
  e.policies = {"P9"};
  EXPECT_THROW(log.append(e), atom::InvalidInput);
  e = request_event("bob", "x");
  e.id_key.clear();
  EXPECT_THROW(log.append(e), atom::InvalidInput);
  EXPECT_THROW(log.append_json("{\"action\": 1}"), atom::InvalidInput);
  EXPECT_EQ(log.size(), 0u) << "refused entries are not stored";

  log.append(request_event("bob", "x"));
  EXPECT_THROW(log.prove(1), atom::NotFound);
  EXPECT_THROW(log.read(7), atom::Error);

  auto wrong_origin = atom::NoteSigner::generate("other.example/log", "ed25519");
  EXPECT_THROW(log.checkpoint(wrong_origin), atom::InvalidInput);
  EXPECT_THROW(atom::NoteSigner::generate("o", "rsa"), atom::InvalidInput);
  EXPECT_THROW(atom::AuditLog::create(dir.str("log"), "o.example/log", {ed.vkey()}, "classical"), atom::AuditError)
      << "already exists";
  EXPECT_THROW(atom::AuditLog::create(dir.str("log2"), "o.example/log", {"not-a-vkey"}, "classical"), atom::VerifyError);
  EXPECT_THROW(atom::AuditLog::open(dir.str("nope")), atom::Error);
}

TEST(Audit, TamperedRecordIsFound) {
  TempDir dir;
  auto ed = atom::NoteSigner::generate("o.example/log", "ed25519");
  {
    auto log = atom::AuditLog::create(dir.str("log"), "o.example/log", {ed.vkey()}, "classical");
    for (int i = 0; i < 5; ++i) log.append(request_event("carol", std::to_string(i)));
    log.checkpoint(ed);
    log.close();
  }
  // Flip one byte in the middle of the records file.
  fs::path entries = dir.path() / "log" / "entries.dat";
  ASSERT_TRUE(fs::exists(entries));
  auto size = fs::file_size(entries);
  {
    std::fstream f(entries, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(size / 2);
    char c = 0;
    f.get(c);
    f.seekp(size / 2);
    f.put(static_cast<char>(c ^ 0x20));
  }
  try {
    auto log = atom::AuditLog::open(dir.str("log"));
    log.verify();
    FAIL() << "a tampered log verified";
  } catch (const atom::AuditError& e) {
    EXPECT_NE(e.message().find("record"), std::string::npos) << e.what();
  }
}

TEST(Audit, ConcurrentAppends) {
  TempDir dir;
  auto ed = atom::NoteSigner::generate("o.example/log", "ed25519");
  auto log = atom::AuditLog::create(dir.str("log"), "o.example/log", {ed.vkey()}, "classical");
  std::vector<std::thread> pool;
  std::vector<std::vector<std::uint64_t>> idx(4);
  for (int t = 0; t < 4; ++t)
    pool.emplace_back([&, t] {
      for (int i = 0; i < 25; ++i) idx[t].push_back(log.append(request_event("u" + std::to_string(t), std::to_string(i))));
    });
  for (auto& th : pool) th.join();
  std::set<std::uint64_t> all;
  for (const auto& v : idx) all.insert(v.begin(), v.end());
  EXPECT_EQ(all.size(), 100u);
  EXPECT_EQ(*all.rbegin(), 99u);
  log.checkpoint(ed);
  EXPECT_EQ(log.verify().records, 100u);
}

// ---------------------------------------------------------------------------- quantum

TEST(Quantum, BellProbabilitiesAnalytic) {
  auto bell = atom::Circuit::from_qasm(R"(OPENQASM 2.0;
include "qelib1.inc";
qreg q[2];
creg c[2];
h q[0];
cx q[0],q[1];
)");
  EXPECT_EQ(bell.num_qubits(), 2u);
  EXPECT_EQ(bell.num_clbits(), 2u);
  EXPECT_EQ(bell.depth(), 2u);
  auto r = atom::simulate(bell);
  auto p = r.probabilities();
  ASSERT_EQ(p.size(), 4u);
  EXPECT_NEAR(p[0], 0.5, 1e-12);
  EXPECT_NEAR(p[1], 0.0, 1e-12);
  EXPECT_NEAR(p[2], 0.0, 1e-12);
  EXPECT_NEAR(p[3], 0.5, 1e-12);
  auto sv = r.statevector();
  ASSERT_EQ(sv.size(), 4u);
  EXPECT_NEAR(sv[0].real(), M_SQRT1_2, 1e-12);
  EXPECT_NEAR(sv[3].real(), M_SQRT1_2, 1e-12);
  EXPECT_NEAR(r.expectation({{1.0, "ZZ"}}), 1.0, 1e-12);
  EXPECT_NEAR(r.expectation({{1.0, "XX"}}), 1.0, 1e-12);
  EXPECT_NEAR(r.expectation({{1.0, "ZI"}, {2.0, "IZ"}}), 0.0, 1e-12);
  EXPECT_TRUE(r.counts().empty());
  EXPECT_THROW(r.expectation({{1.0, "ZZZ"}}), atom::QuantumError);
}

TEST(Quantum, RotationMatchesCosSquared) {
  for (double theta : {0.0, 0.3, M_PI / 3, 2.0, M_PI}) {
    atom::Circuit c(1);
    c.rx(theta, 0);
    auto p = atom::simulate(c).probabilities();
    EXPECT_NEAR(p[0], std::pow(std::cos(theta / 2), 2), 1e-12) << theta;
    EXPECT_NEAR(p[1], std::pow(std::sin(theta / 2), 2), 1e-12) << theta;
  }
}

TEST(Quantum, GhzCountsOnlyAllZerosAndAllOnes) {
  const std::size_t n = 6;
  atom::Circuit ghz(n, n);
  ghz.h(0);
  for (std::size_t q = 1; q < n; ++q) ghz.cx(q - 1, q);
  for (std::size_t q = 0; q < n; ++q) ghz.measure(q, q);
  atom::SimOptions opts;
  opts.shots = 4000;
  opts.seed = 7;
  auto r = atom::simulate(ghz, opts);
  auto counts = r.counts();
  EXPECT_EQ(r.shots(), 4000u);
  ASSERT_EQ(counts.size(), 2u);
  const std::string zeros(n, '0'), ones(n, '1');
  ASSERT_EQ(counts.count(zeros), 1u);
  ASSERT_EQ(counts.count(ones), 1u);
  EXPECT_EQ(counts[zeros] + counts[ones], 4000u);
  // Binomial(4000, 0.5): sd ~ 31.6; 6 sd bound.
  EXPECT_NEAR(static_cast<double>(counts[zeros]), 2000.0, 190.0);
  // Same seed, same counts; single precision agrees on the probabilities.
  EXPECT_EQ(atom::simulate(ghz, opts).counts(), counts);
  opts.single_precision = true;
  auto p = atom::simulate(ghz, opts).probabilities();
  EXPECT_NEAR(p[0], 0.5, 1e-6);
  EXPECT_NEAR(p[(1u << n) - 1], 0.5, 1e-6);
}

TEST(Quantum, QasmRoundTripAndCopies) {
  atom::Circuit c(3, 3);
  c.h(0).cx(0, 1).ccx(0, 1, 2).rz(0.25, 2).swap(0, 2).measure(2, 0);
  auto text = c.to_qasm();
  EXPECT_NE(text.find("OPENQASM 2.0;"), std::string::npos);
  auto again = atom::Circuit::from_qasm(text);
  EXPECT_EQ(again.size(), c.size());
  auto pa = atom::simulate(c).probabilities();
  auto pb = atom::simulate(again).probabilities();
  ASSERT_EQ(pa.size(), pb.size());
  for (std::size_t i = 0; i < pa.size(); ++i) EXPECT_NEAR(pa[i], pb[i], 1e-12);

  atom::Circuit copy = c;
  copy.x(1);
  EXPECT_EQ(copy.size(), c.size() + 1);
}

TEST(Quantum, BadInputThrowsTypedErrors) {
  try {
    atom::Circuit::from_qasm("OPENQASM 2.0;\nqreg q[2];\nfrobnicate q[0];\n");
    FAIL() << "bad QASM parsed";
  } catch (const atom::QasmError& e) {
    EXPECT_EQ(e.kind(), "qasm");
    EXPECT_EQ(e.message().rfind("3:", 0), 0u) << "message starts with line:column: " << e.what();
  }
  EXPECT_THROW(atom::Circuit::from_qasm("OPENQASM 2.0;\nqreg q[2];\nh q[5];\n"), atom::QuantumError);
  atom::Circuit c(2, 1);
  EXPECT_THROW(c.h(2), atom::QuantumError);
  EXPECT_THROW(c.cx(1, 1), atom::QuantumError);
  EXPECT_THROW(c.measure(0, 1), atom::QuantumError);
  EXPECT_THROW(c.gate("rx", {}, {0}), atom::QuantumError);
  EXPECT_THROW(c.gate("warp", {}, {0}), atom::QuantumError);
  EXPECT_THROW(c.rx(std::nan(""), 0), atom::QuantumError);
  EXPECT_EQ(c.size(), 0u) << "refused gates are not appended";
  EXPECT_THROW(atom::Circuit(1000), atom::InvalidInput);

  atom::Circuit big(30);
  big.h(0);
  atom::SimOptions tight;
  tight.memory_limit = 1 << 20;
  try {
    atom::simulate(big, tight);
    FAIL() << "a 30-qubit state fit in 1 MiB";
  } catch (const atom::MemoryLimitError& e) {
    EXPECT_EQ(e.kind(), "memory_limit");
  }
}

TEST(Quantum, SharedResultAcrossThreads) {
  atom::Circuit c(4);
  c.h(0).cx(0, 1).cx(1, 2).cx(2, 3);
  const auto r = atom::simulate(c);
  std::vector<std::thread> pool;
  std::atomic<int> ok{0};
  for (int t = 0; t < 4; ++t)
    pool.emplace_back([&] {
      for (int i = 0; i < 50; ++i) {
        auto p = r.probabilities();
        if (std::abs(p[0] - 0.5) < 1e-12 && std::abs(p[15] - 0.5) < 1e-12) ++ok;
        // Independent circuits simulated concurrently.
        atom::Circuit local(2);
        local.h(1);
        if (std::abs(atom::simulate(local).probabilities()[2] - 0.5) < 1e-12) ++ok;
      }
    });
  for (auto& th : pool) th.join();
  EXPECT_EQ(ok.load(), 400);
}
