# %% [markdown]
# # atom-fabric from Python: a guided tour
#
# This file is a notebook in the "percent" format (`# %%` starts a cell): open it in Jupyter or
# VS Code as a notebook, or run it as a script (`python docs/tutorial.py`). It is also a test:
# `make test` runs it (bindings-python/tests/test_tutorial.py), and every cell asserts what it
# shows, so the tour cannot drift from the library.
#
# You will:
# 1. place model replicas on a small fleet, hit a tenant quota, raise it, release capacity and
#    watch the queues drain;
# 2. record decisions in an append-only Merkle audit log and prove one of them;
# 3. simulate an OpenQASM 2 circuit and compare with the answer worked out by hand;
# 4. sign a model directory with a post-quantum (hybrid ML-DSA) key and catch a tampered file;
# 5. run a hybrid quantum + classical job through the coordinator, unsigned in simulation and
#    signed outside it.
#
# Everything runs in-process and in a temporary directory: no server, no network.

# %%
import hashlib
import json
import math
import tempfile
from pathlib import Path

import numpy as np

from atom_fabric import errors
from atom_fabric.fabric import Fabric
from atom_fabric.hybrid import Coordinator
from atom_fabric.policy import AuditLog, NoteSignerKey, SigningKey, merkle, sign_model, verify_model
from atom_fabric.quantum import Circuit, simulate

scratch = tempfile.TemporaryDirectory(prefix="atom-tutorial-")  # removed in the last cell
work = Path(scratch.name)
print("working in", work)

# %% [markdown]
# ## 1. Placing work on a fleet
#
# A `Fabric` is the scheduler with its state store. With `data_dir` its state is kept on disk
# (snapshot + journal) and survives a restart; without it, it lives in memory. Nodes declare
# their capacity: CPU in millicores, memory in MiB, GPUs as devices.

# %%
fabric = Fabric(data_dir=work / "fabric")
fabric.register_node({"id": "gpu-a", "cpu_milli": 32000, "memory_mib": 131072,
                      "gpus": [{"model": "A100", "memory_mib": 40960}] * 2})
fabric.register_node({"id": "gpu-b", "cpu_milli": 32000, "memory_mib": 131072,
                      "gpus": [{"model": "A100", "memory_mib": 40960}] * 2})


def request(tenant, model, gpu=1):
    return {"tenant_id": tenant, "model_id": model, "model_version": "v1",
            "resources": {"gpu": gpu, "cpu": 2000, "mem": 8192}}


first = fabric.schedule(request("acme", "llama"))
second = fabric.schedule(request("acme", "mistral"))
print(first["result"], second["result"])
assert first["result"] == second["result"] == "placed"

# Where did it go, and why there? Each placed replica carries the node, its device indices and
# the score breakdown of the chosen node (each scorer's 0-100 score and its weight).
chosen = first["placement"]["replicas"][0]
print("llama on", chosen["node"], "devices", chosen["devices"], "among", chosen["score"]["candidates"], "candidates")
for part in chosen["score"]["parts"]:
    print(f"  {part['scorer']:>13}: {part['score']:6.1f} x weight {part['weight']}")
assert chosen["node"] in ("gpu-a", "gpu-b") and chosen["score"]["candidates"] == 2

# %% [markdown]
# A tenant without an explicit quota may use 2 GPUs (the scheduler's default; the HTTP host reads
# it from `MAX_TENANT_GPUs`). A third GPU for `acme` waits in acme's own queue with the reason;
# another tenant is not affected (P5: tenants are isolated).

# %%
third = fabric.schedule(request("acme", "phi"))
other = fabric.schedule(request("globex", "bert"))
print("acme's third:", third["result"], "because of", third["reason"])
assert (third["result"], third["reason"]) == ("queued", "quota")
assert other["result"] == "placed"

# A tenant cannot see another tenant's requests.
try:
    fabric.status("globex", third["request_id"])
    raise AssertionError("globex must not see acme's request")
except errors.FabricError as e:
    print("globex asking for acme's request:", type(e).__name__)

# %% [markdown]
# Quotas are set per tenant. A quota has a `nominal` amount of each resource (GPUs in
# milli-GPUs, CPU in millicores, memory in MiB, TPUs) and optionally a `borrow_limit` and a
# `cohort` whose idle quota it may borrow (Kueue semantics). All four resources must be given;
# 2**64 - 1 means unlimited. Raising acme's quota to 3 GPUs places the queued request at once:
# a quota change, like a release or a new node, makes the scheduler retry its queues in the
# same call (event driven, no polling).

# %%
UNLIMITED = 2**64 - 1
out = fabric.set_quota("acme", {"nominal": {"gpu_milli": 3000, "cpu": UNLIMITED, "mem": UNLIMITED, "tpu": 0}})
assert out["result"] == "quota_set"
status = fabric.status("acme", third["request_id"])
replica = status["placement"]["replicas"][0]
print("phi is now", status["phase"], "on", replica["node"], "devices", replica["devices"])
assert status["phase"] == "placed"


# %% [markdown]
# The fleet has 4 GPUs and all of them are in use now, so globex's second request is within its
# quota but waits for capacity. Releasing one of acme's requests frees its device, and globex's
# request is placed in the same call.

# %%
waiting = fabric.schedule(request("globex", "t5"))
print("globex's second:", waiting["result"], "because of", waiting["reason"])
assert (waiting["result"], waiting["reason"]) == ("queued", "capacity")

fabric.release("acme", first["request_id"])
assert fabric.status("acme", first["request_id"])["phase"] == "completed"  # released = finished
assert fabric.status("globex", waiting["request_id"])["phase"] == "placed"
print("after the release:", [(r["model_id"], r["phase"]) for r in fabric.requests("globex")])

# No device is handed out twice: the live placements use distinct (node, device) pairs.
live = [r for t in ("acme", "globex") for r in fabric.requests(t) if r["phase"] == "placed"]
pairs = [(rep["node"], d) for r in live for rep in r["placement"]["replicas"] for d in rep["devices"]]
assert len(pairs) == len(set(pairs)) == 4

# %% [markdown]
# The fabric exports Prometheus metrics (counters of this process, labelled by tenant). Its
# state, unlike the counters, is durable: every command is journaled before it is applied, so a
# second `Fabric` on the same directory (a restarted process) sees exactly the same requests.

# %%
counters = [line for line in fabric.metrics_text().splitlines() if line.startswith("nf_sched_requests_total")]
print("\n".join(counters))
assert 'nf_sched_requests_total{phase="placed",tenant="globex"} 2' in counters

before = {t: fabric.requests(t) for t in ("acme", "globex")}
del fabric
fabric = Fabric(data_dir=work / "fabric")
assert {t: fabric.requests(t) for t in ("acme", "globex")} == before
print("after a restart:", [(r["model_id"], r["phase"]) for r in fabric.requests("acme")])

# %% [markdown]
# ## 2. An audit log you can prove things with
#
# Every decision can be appended to a transparency log: an RFC 6962 Merkle tree whose root is
# published in a signed checkpoint (a C2SP signed note, signed with Ed25519 and cosigned with
# ML-DSA-44).
# Anyone holding the checkpoint can check that an entry is in the log with a short proof,
# without trusting us or reading the whole log.

# %%
ORIGIN = "example.org/atom-tutorial"
signers = NoteSignerKey.generate(ORIGIN)
log = AuditLog.create(work / "audit", ORIGIN, [s.vkey for s in signers])


def decision(i):
    # Identifiers below tenant level go in as keyed hashes only (P1).
    return {"v": 1, "time": 1_700_000_000_000 + i, "actor": {"tenant": "acme"},
            "action": "schedule.request",
            "subject": {"kind": "request", "id": "hmac-sha256:" + hashlib.sha256(str(i).encode()).hexdigest()},
            "decision": {"outcome": "allow", "policies": ["P5", "P6"]}}


for i in range(10):
    log.append(decision(i))

# An entry with a raw identifier (here an e-mail address) is refused before it is written (P1).
leaky = dict(decision(10), subject={"kind": "request", "id": "alice@example.com"})
try:
    log.append(leaky)
    raise AssertionError("a raw identifier must not enter the log")
except errors.AuditError as e:
    print("refused:", e)
assert log.size == 10
note = log.checkpoint(signers)
body, signatures = note.split("\n\n", 1)
body = body.splitlines()
print("\n".join(body))
print(f"... and {len(signatures.splitlines())} signature lines (Ed25519 and ML-DSA-44)")
assert body[0] == ORIGIN and body[1] == "10"

# %% [markdown]
# Prove entry 7 against the signed root. The check below uses `merkle.verify_inclusion`, the
# RFC 6962 algorithm on plain bytes, with the leaf hash recomputed from the entry's canonical
# JSON: nothing from the log itself is trusted.

# %%
import base64

root = base64.b64decode(body[2])
proof = log.prove(7)
leaf = merkle.leaf_hash(json.dumps(decision(7), sort_keys=True, separators=(",", ":")).encode())
assert proof["leaf_hash"] == leaf
assert merkle.verify_inclusion(leaf, 7, 10, proof["proof"], root)
print(f"entry 7 is in the log: {len(proof['proof'])} hashes prove it")

# A proof for a different entry, or a flipped bit, does not verify.
forged = bytearray(leaf)
forged[0] ^= 1
assert not merkle.verify_inclusion(bytes(forged), 7, 10, proof["proof"], root)
assert not merkle.verify_inclusion(leaf, 6, 10, proof["proof"], root)
# A tampered proof (one bit of one sibling hash flipped) does not verify either.
tampered = [bytes(h) for h in proof["proof"]]
tampered[1] = bytes([tampered[1][0] ^ 1]) + tampered[1][1:]
assert not merkle.verify_inclusion(leaf, 7, 10, tampered, root)
print("a flipped leaf, a wrong index and a tampered proof are all rejected")

# The log's owner can also re-check everything on disk: every record re-hashed, the tree rebuilt.
check = log.verify()
assert check["records"] == 10 and check["root"] == root
log.close()

# %% [markdown]
# ## 3. Quantum circuits
#
# Circuits come from the builder or from OpenQASM 2 (what `qiskit.qasm2.dumps` writes). Qubit
# order is Qiskit's: qubit 0 is the least significant bit of a basis-state index and the
# rightmost character of a bitstring.
#
# A Bell pair: by hand, |Φ+⟩ = (|00⟩ + |11⟩)/√2, so P(00) = P(11) = 1/2 and ⟨ZZ⟩ = 1, ⟨ZI⟩ = 0.

# %%
bell = Circuit.from_qasm("""OPENQASM 2.0;
include "qelib1.inc";
qreg q[2];
creg c[2];
h q[0];
cx q[0],q[1];
measure q -> c;
""")
exact = simulate(Circuit(2).h(0).cx(0, 1))
probs = exact.probabilities()
print("probabilities:", probs)
np.testing.assert_allclose(probs, [0.5, 0.0, 0.0, 0.5], atol=1e-12)
assert abs(exact.expectation({"ZZ": 1.0}) - 1.0) < 1e-12
assert abs(exact.expectation({"ZI": 1.0})) < 1e-12

sampled = simulate(bell, shots=4000, seed=7)
print("counts:", sampled.counts)
assert set(sampled.counts) == {"00", "11"}
assert abs(sampled.counts["00"] / 4000 - 0.5) < 0.05

# %% [markdown]
# A rotation has a closed form too: RY(θ)|0⟩ gives ⟨Z⟩ = cos θ. The statevector comes back as a
# read-only numpy view of the simulator's buffer (no copy).

# %%
for theta in (0.0, 0.4, math.pi / 3, 2.5):
    r = simulate(Circuit(1).ry(theta, 0))
    assert abs(r.expectation({"Z": 1.0}) - math.cos(theta)) < 1e-12
sv = simulate(Circuit(3).h(0).h(1).h(2)).statevector
print("dtype", sv.dtype, "writeable", sv.flags.writeable)
np.testing.assert_allclose(np.abs(sv) ** 2, np.full(8, 1 / 8), atol=1e-12)

# %% [markdown]
# ## 4. Signing a model with a post-quantum key
#
# A model is a directory. `sign_model` hashes every file (SHA-256) into a manifest and signs it;
# a `hybrid` key signs with ECDSA P-256 *and* ML-DSA-65, and verification needs both (P2).
# Changing one byte of one file is caught and named.

# %%
model = work / "models" / "sentiment"
(model / "weights").mkdir(parents=True)
(model / "weights" / "layer0.bin").write_bytes(bytes(range(256)) * 64)
(model / "config.json").write_text('{"labels": ["neg", "pos"]}')
key = SigningKey.generate("hybrid")
bundle = sign_model(model, key)
checked = verify_model(model, bundle, [key.verifying_key()])
print("verified", checked["model_name"], "with", len(checked["files"]), "files")
assert checked["files"]["config.json"] == hashlib.sha256(b'{"labels": ["neg", "pos"]}').hexdigest()

data = bytearray((model / "weights" / "layer0.bin").read_bytes())
data[100] ^= 0xFF
(model / "weights" / "layer0.bin").write_bytes(bytes(data))
try:
    verify_model(model, bundle, [key.verifying_key()])
    raise AssertionError("a tampered file must not verify")
except errors.ManifestError as e:
    print("tampered:", e)
    assert "weights/layer0.bin" in str(e)

# A key we do not trust does not verify either, even for the untouched model.
(model / "weights" / "layer0.bin").write_bytes(bytes(range(256)) * 64)
try:
    verify_model(model, bundle, [SigningKey.generate("hybrid").verifying_key()])
    raise AssertionError("an untrusted key must not verify")
except errors.VerificationError as e:
    print("untrusted key:", type(e).__name__)

# %% [markdown]
# ## 5. A hybrid job
#
# The coordinator runs pipelines of stages that pass named values: neural (an ONNX model through
# the runtime hooks), quantum (OpenQASM 2 with free parameters, shots or observables) and
# classical post-processing. Here: a parameterised circuit whose angle comes from the job's
# input, sampled with shots, then a classical stage that turns the counts into the ⟨Z⟩ estimate
# P(even) − P(odd). By hand, RY(θ)|0⟩ has ⟨Z⟩ = cos θ.
#
# Outside simulation the job must carry a signed manifest (`hybrid.sign_job`); in simulation an
# unsigned job is accepted and recorded as `allow_in_simulation`.

# %%
theta = 1.1
job = {
    "tenant": "acme",
    "mode": "quantum",
    "payload": {"inputs": {"theta": theta}, "stages": [
        {"name": "rotate", "kind": "quantum",
         "qasm": 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[1];\ncreg c[1];\nry(t) q[0];\nmeasure q -> c;\n',
         "bind": {"t": "theta"}, "shots": 20000, "seed": 5, "output": "counts"},
        {"name": "z", "kind": "classical", "op": "parity_expectation", "input": "counts", "output": "z"},
    ]},
}
coordinator = Coordinator(simulation=True)
job_id_sim = coordinator.submit(job)
coordinator.run_all()
result = coordinator.status(job_id_sim, tenant="acme")
z = result["outputs"]["z"]
z = z[0] if isinstance(z, list) else z
print(f"state {result['state']}: <Z> estimated {z:.4f}, exact cos(theta) = {math.cos(theta):.4f}")
assert result["state"] == "completed"
# 20,000 shots: the standard error of the estimate is below 0.007.
assert abs(z - math.cos(theta)) < 0.03
print("stages:", [(st["name"], st["target"]) for st in result["stages"]])

# %% [markdown]
# Outside simulation (`simulation=False`) the coordinator trusts only the keys it is given. An
# unsigned job is refused; `hybrid.sign_job` wraps the payload's canonical JSON in a DSSE
# envelope signed with the hybrid key from section 4; changing the payload after signing breaks
# the signature; a job may only be submitted as the tenant it names (P5).

# %%
from atom_fabric import hybrid

production = Coordinator(simulation=False, trusted_keys=[key.verifying_key()])
try:
    production.submit(job, tenant="acme")
    raise AssertionError("an unsigned job must be refused outside simulation")
except errors.VerificationError as e:
    print("unsigned:", e)

signed = hybrid.sign_job(job, key)
altered = dict(signed, payload=dict(job["payload"], inputs={"theta": 0.0}))
try:
    production.submit(altered, tenant="acme")
    raise AssertionError("a payload changed after signing must be refused")
except errors.VerificationError as e:
    print("altered after signing:", type(e).__name__)
try:
    production.submit(signed, tenant="globex")
    raise AssertionError("another tenant must not submit acme's job")
except errors.HybridError as e:
    print("wrong tenant:", type(e).__name__)

job_id = production.submit(signed, tenant="acme")
production.run_all()
result = production.status(job_id, tenant="acme")
print("signed job:", result["state"], "manifest verified:", result["manifest"]["verified"])
assert result["state"] == "completed" and result["manifest"]["verified"] is True
# Same circuit, same seed, same shots: the same estimate as in simulation mode.
assert result["outputs"]["z"] == coordinator.status(job_id_sim, tenant="acme")["outputs"]["z"]

# %% [markdown]
# Clean up: close the fabric's files and remove the temporary directory.

# %%
del fabric
scratch.cleanup()
assert not work.exists()

# %% [markdown]
# That is the tour. Next: `docs/architecture.md` for how the pieces fit, `docs/hybrid.md` for the
# worked variational classifier, `docs/policies/POLICIES.md` for P1–P7, and `README.md` for the
# HTTP hosts (`atom serve`) and the C++ API.
