# %% [markdown]
# # atom-fabric from Python: a guided tour
#
# This file is a notebook in the "percent" format (`# %%` starts a cell): open it in Jupyter or
# VS Code as a notebook, or run it as a script (`python docs/tutorial.py`). It is also a test:
# `make test` runs it (bindings-python/tests/test_tutorial.py), and every cell asserts what it
# shows, so the tour cannot drift from the library.
#
# You will:
# 1. place model replicas on a small fleet, hit a tenant quota, release and watch the queue drain;
# 2. record decisions in an append-only Merkle audit log and prove one of them;
# 3. simulate an OpenQASM 2 circuit and compare with the answer worked out by hand;
# 4. sign a model directory with a post-quantum (hybrid ML-DSA) key and catch a tampered file;
# 5. run a hybrid quantum + classical job through the coordinator.
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

work = Path(tempfile.mkdtemp(prefix="atom-tutorial-"))
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

# %% [markdown]
# Each tenant has a GPU quota (`MAX_TENANT_GPUs`, 2 by default). A third GPU for `acme` waits in
# acme's own queue with the reason; another tenant is not affected (P5: tenants are isolated).

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
# Releasing a request frees its devices, and the queued request is placed at once (event
# driven, no polling). Where did it go, and why there? The placement carries the node, the
# device indices and the score breakdown of the chosen node.

# %%
fabric.release("acme", first["request_id"])
status = fabric.status("acme", third["request_id"])
replica = status["placement"]["replicas"][0]
print("phi is now", status["phase"], "on", replica["node"], "devices", replica["devices"])
assert status["phase"] == "placed"
# No device is handed out twice: the live placements use distinct (node, device) pairs.
live = [fabric.status("acme", r["request_id"])["placement"]["replicas"][0] for r in (second, third)]
live.append(fabric.status("globex", other["request_id"])["placement"]["replicas"][0])
pairs = [(r["node"], d) for r in live for d in r["devices"]]
assert len(pairs) == len(set(pairs)) == 3

# The state survives a restart of the process (here: a second Fabric on the same directory).
del fabric
fabric = Fabric(data_dir=work / "fabric")
assert fabric.status("acme", third["request_id"])["phase"] == "placed"
print("\n".join(line for line in fabric.metrics_text().splitlines() if line.startswith("nf_sched_requests_total")))

# %% [markdown]
# ## 2. An audit log you can prove things with
#
# Every decision can be appended to a transparency log: an RFC 6962 Merkle tree whose root is
# published in a signed checkpoint (a C2SP signed note, here signed with Ed25519 and ML-DSA).
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
note = log.checkpoint(signers)
body, signatures = note.split("\n\n", 1)
body = body.splitlines()
print("\n".join(body))
print(f"... and {len(signatures.splitlines())} signature lines (Ed25519 and ML-DSA)")
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
job_id = coordinator.submit(job)
coordinator.run_all()
result = coordinator.status(job_id, tenant="acme")
z = result["outputs"]["z"]
z = z[0] if isinstance(z, list) else z
print(f"state {result['state']}: <Z> estimated {z:.4f}, exact cos(theta) = {math.cos(theta):.4f}")
assert result["state"] == "completed"
# 20,000 shots: the standard error of the estimate is below 0.007.
assert abs(z - math.cos(theta)) < 0.03

# %% [markdown]
# That is the tour. Next: `docs/architecture.md` for how the pieces fit, `docs/hybrid.md` for the
# worked variational classifier, `docs/policies/POLICIES.md` for P1–P7, and `README.md` for the
# HTTP hosts (`atom serve`) and the C++ API.
