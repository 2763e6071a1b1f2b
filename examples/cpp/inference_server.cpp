// A minimal inference-server loop on the atom-fabric C++ API.
//
// At start-up the server verifies the signed manifest of its model against a key ring, then
// for every incoming request it asks the fabric for a placement, records the request in the
// tamper-evident audit log (user id and prompt only as keyed hashes), "serves" it and releases
// the placement. At the end it signs a checkpoint and prints an inclusion proof of one request
// that anyone holding the log's verifier keys can check.
//
// Build and run: `make cxx-example` (g++) or `make test-cxx-cmake` (CMake); see
// bindings-c/README.md. Usage: inference_server [WORK_DIR]
//
// The publisher side (generating a key and signing the model) runs here too so that the
// example is self-contained; in production the server only has the public key ring.

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "atom/atom.hpp"

namespace fs = std::filesystem;

namespace {

struct Request {
  std::string tenant;
  std::string user;
  std::string prompt;
};

void write_file(const fs::path& p, const std::string& content) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << content;
}

// The model publisher: writes a model directory and signs its manifest with a hybrid
// (ECDSA P-256 + ML-DSA-65) key. Returns the public key file path.
std::string publish_model(const fs::path& work, const fs::path& model_dir) {
  write_file(model_dir / "model.onnx", std::string(2048, '\x42'));
  write_file(model_dir / "config.json", R"({"architecture": "demo-classifier", "labels": 10})");
  auto key = atom::SigningKey::generate("hybrid");
  write_file(work / "model.sig", atom::sign_model(model_dir.string(), key));
  const std::string pub = (work / "publisher.pub").string();
  write_file(pub, key.verifying_key().to_text());
  return pub;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const fs::path work = argc > 1 ? fs::path(argv[1]) : fs::temp_directory_path() / "atom-inference-server";
    fs::remove_all(work);
    fs::create_directories(work);
    const fs::path model_dir = work / "demo-classifier";
    const std::string pub = publish_model(work, model_dir);

    // 1. Verify the model manifest against the trusted key ring before serving anything.
    atom::KeyRing ring = atom::KeyRing::load(pub);
    std::ifstream sig(work / "model.sig");
    const std::string bundle((std::istreambuf_iterator<char>(sig)), std::istreambuf_iterator<char>());
    atom::VerifiedModel model = atom::verify_model(model_dir.string(), bundle, ring);
    std::cout << "model " << model.model_name << " verified (" << model.key_ids.size()
              << " signatures, " << model.files.size() << " files)\n";
    for (const auto& f : model.files) std::cout << "  " << f.sha256.substr(0, 16) << "  " << f.path << "\n";

    // 2. The fabric: two GPU nodes, a quota for the tenant.
    atom::Fabric fabric;
    for (const char* id : {"gpu-node-1", "gpu-node-2"}) {
      atom::NodeSpec node;
      node.id = id;
      node.cpu_milli = 32000;
      node.memory_mib = 131072;
      node.gpus = {{"A100", 40960}, {"A100", 40960}};
      node.labels["region"] = "eu-west";
      fabric.register_node(node);
    }
    fabric.set_quota("acme", 4);

    // 3. The audit log, with hybrid (Ed25519 + ML-DSA-44) signed checkpoints.
    const std::string origin = "inference.example/audit";
    auto ed = atom::NoteSigner::generate(origin, "ed25519");
    auto ml = atom::NoteSigner::generate(origin, "ml-dsa-44");
    auto log = atom::AuditLog::create((work / "audit").string(), origin, {ed.vkey(), ml.vkey()}, "hybrid");
    const atom::Bytes id_key = {'a', 'c', 'm', 'e', '-', 'i', 'd', '-', 'k', 'e', 'y'};

    // 4. The serving loop.
    const std::vector<Request> requests = {
        {"acme", "alice", "classify image 1"},
        {"acme", "bob", "classify image 2"},
        {"acme", "alice", "classify image 3"},
        {"acme", "carol", "classify image 4"},
    };
    std::vector<std::uint64_t> audit_index;
    std::vector<std::pair<std::string, std::uint64_t>> in_flight;  // at most 2 requests run at once
    for (const auto& req : requests) {
      atom::ScheduleRequest sr;
      sr.tenant_id = req.tenant;
      sr.model_id = model.model_name;
      sr.model_version = "v1";
      sr.resources.gpu = 1;
      sr.resources.gpu_milli = 500;  // half a GPU per request
      sr.resources.cpu = 2000;
      sr.resources.mem = 4096;
      sr.manifest_verified = true;
      const atom::Outcome placement = fabric.schedule(sr);

      atom::AuditEvent ev;
      ev.action = "inference.request";
      ev.tenant = req.tenant;
      ev.principal = req.user;
      ev.subject_kind = "model";
      ev.subject_id = model.model_name;
      ev.outcome = placement.placed() ? "allow" : "deny";
      ev.policies = {"P1", "P2", "P5"};
      if (!placement.placed()) ev.reason = "queued." + placement.reason;
      ev.payload = req.prompt;
      ev.id_key = id_key;
      const std::uint64_t idx = log.append(ev);
      audit_index.push_back(idx);

      if (placement.placed()) {
        const auto& r = placement.replicas.at(0);
        std::cout << "request " << placement.request_id << " (" << req.user << ") -> " << r.node << " gpu "
                  << r.devices.at(0) << ", audit record " << idx << "\n";
        // ... run the model on the placement here; the oldest request finishes ...
        in_flight.emplace_back(req.tenant, placement.request_id);
        if (in_flight.size() > 1) {
          fabric.release(in_flight.front().first, in_flight.front().second);
          in_flight.erase(in_flight.begin());
        }
      } else {
        std::cout << "request " << placement.request_id << " queued (" << placement.reason << "), audit record "
                  << idx << "\n";
      }
    }

    for (const auto& [tenant, id] : in_flight) fabric.release(tenant, id);

    // 5. Checkpoint and prove one request's record.
    const std::string note = log.checkpoint(ed, ml);
    const atom::CheckpointInfo cp = atom::verify_checkpoint(note, {ed.vkey(), ml.vkey()}, "hybrid");
    const atom::InclusionProof proof = log.prove(audit_index.at(1));
    const bool ok = atom::verify_inclusion(proof);
    std::cout << "checkpoint: " << cp.size << " records, root " << atom::to_hex(cp.root) << "\n";
    std::cout << "proof of record " << proof.index << " in tree of " << proof.size << ":\n";
    std::cout << "  leaf " << atom::to_hex(proof.leaf_hash) << "\n";
    for (const auto& h : proof.path) std::cout << "  path " << atom::to_hex(h) << "\n";
    std::cout << "  root " << atom::to_hex(proof.root) << "\n";
    std::cout << "  verifies: " << (ok ? "yes" : "NO") << "\n";
    std::cout << "signed checkpoint (signature lines shortened):\n";
    std::istringstream lines(note);
    for (std::string line; std::getline(lines, line);)
      std::cout << "  " << (line.size() > 72 ? line.substr(0, 72) + "..." : line) << "\n";
    const auto report = log.verify();
    std::cout << "audit log verified: " << report.records << " records\n";
    return ok && proof.root == cp.root && report.records == requests.size() ? 0 : 1;
  } catch (const atom::Error& e) {
    std::cerr << "error (" << e.kind() << "): " << e.message() << "\n";
    return 2;
  }
}
