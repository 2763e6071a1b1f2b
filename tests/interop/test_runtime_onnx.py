"""The tract ONNX runtime (through `atom runtime run`) against onnxruntime on random inputs,
for models built here with the `onnx` package (the generator of atom-fabric's test models)."""

from __future__ import annotations

import importlib.util
import json
import pathlib

import numpy as np
import onnx
import onnxruntime as ort
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("make_models", ROOT / "atom-fabric/tests/data/onnx/make_models.py")
make_models = importlib.util.module_from_spec(spec)
spec.loader.exec_module(make_models)


@pytest.mark.parametrize("name,shape", [("mlp", (7, 4)), ("mlp", (1, 4)), ("conv", (1, 1, 8, 8))])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tract_matches_onnxruntime(tmp_path, run_atom, name, shape, seed):
    model = getattr(make_models, name)()
    path = tmp_path / f"{name}.onnx"
    onnx.save(model, path)
    x = np.random.default_rng(seed).normal(scale=3.0, size=shape).astype(np.float32)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (want,) = sess.run(None, {sess.get_inputs()[0].name: x})
    proc = run_atom("runtime", "run", "--framework", "onnx", path, "--input", json.dumps({"shape": list(shape), "data": x.ravel().tolist()}))
    assert proc.returncode == 0, proc.stderr.decode()
    out = json.loads(proc.stdout)
    assert out["framework"] == "onnx" and out["mock"] is False
    got = np.array(out["outputs"][0]["data"], dtype=np.float32).reshape(out["outputs"][0]["shape"])
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)


def test_bad_input_is_a_clear_error(tmp_path, run_atom):
    path = tmp_path / "mlp.onnx"
    onnx.save(make_models.mlp(), path)
    proc = run_atom("runtime", "run", path, "--input", '{"shape": [2], "data": [1]}')
    assert proc.returncode == 2 and "holds 2 values" in proc.stderr.decode()
    detect = json.loads(run_atom("runtime", "detect").stdout)
    assert {"onnx", "mock"} <= {f["name"] for f in detect}
