"""Generates the tiny ONNX models the runtime tests use, and onnxruntime's outputs for fixed
inputs (the independent reference the tract runtime is compared with).

Run from the repository root with the test venv:  .venv/bin/python atom-fabric/tests/data/onnx/make_models.py
Writes mlp.onnx, conv.onnx and expected.json beside this file. Deterministic (fixed seeds).
"""

from __future__ import annotations

import json
import pathlib

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

HERE = pathlib.Path(__file__).resolve().parent
OPSET = 13
# IR 8 is read by every onnxruntime and tract release in use.
IR_VERSION = 8


def mlp() -> onnx.ModelProto:
    rng = np.random.default_rng(7)
    w1 = rng.normal(size=(4, 8)).astype(np.float32)
    b1 = rng.normal(size=(8,)).astype(np.float32)
    w2 = rng.normal(size=(8, 3)).astype(np.float32)
    b2 = rng.normal(size=(3,)).astype(np.float32)
    nodes = [
        helper.make_node("Gemm", ["x", "w1", "b1"], ["h"]),
        helper.make_node("Relu", ["h"], ["hr"]),
        helper.make_node("Gemm", ["hr", "w2", "b2"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 3])],
        [numpy_helper.from_array(a, n) for a, n in [(w1, "w1"), (b1, "b1"), (w2, "w2"), (b2, "b2")]],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="atom-fabric tests", ir_version=IR_VERSION)


def conv() -> onnx.ModelProto:
    rng = np.random.default_rng(11)
    w = rng.normal(size=(2, 1, 3, 3)).astype(np.float32)
    b = rng.normal(size=(2,)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["img", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["g"]),
        helper.make_node("Flatten", ["g"], ["features"]),
    ]
    graph = helper.make_graph(
        nodes,
        "conv",
        [helper.make_tensor_value_info("img", TensorProto.FLOAT, [1, 1, 8, 8])],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, [1, 2])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="atom-fabric tests", ir_version=IR_VERSION)


def main() -> None:
    rng = np.random.default_rng(2024)
    expected = {}
    for name, model, shape in [("mlp", mlp(), (5, 4)), ("conv", conv(), (1, 1, 8, 8))]:
        onnx.checker.check_model(model)
        path = HERE / f"{name}.onnx"
        onnx.save(model, path)
        x = rng.normal(size=shape).astype(np.float32)
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        (y,) = sess.run(None, {sess.get_inputs()[0].name: x})
        expected[name] = {
            "input_shape": list(x.shape),
            "input": [float(v) for v in x.ravel()],
            "output_shape": list(y.shape),
            "output": [float(v) for v in y.ravel()],
            "onnxruntime": ort.__version__,
        }
    (HERE / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")


if __name__ == "__main__":
    main()
