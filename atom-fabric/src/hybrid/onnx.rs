//! Writes small ONNX models (a dense layer with tanh) so a trained feature encoder can be served
//! by any ONNX runtime: tract here, onnxruntime in the interop tests.

use prost::Message;
use tract_onnx::pb;

fn value_info(name: &str, dims: &[i64]) -> pb::ValueInfoProto {
    pb::ValueInfoProto {
        name: name.into(),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: pb::tensor_proto::DataType::Float as i32,
                shape: Some(pb::TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|d| pb::tensor_shape_proto::Dimension {
                            value: Some(pb::tensor_shape_proto::dimension::Value::DimValue(*d)),
                            ..Default::default()
                        })
                        .collect(),
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn tensor(name: &str, dims: &[i64], data: &[f32]) -> pb::TensorProto {
    pb::TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: pb::tensor_proto::DataType::Float as i32,
        float_data: data.to_vec(),
        ..Default::default()
    }
}

fn node(op: &str, inputs: &[&str], output: &str, attrs: Vec<pb::AttributeProto>) -> pb::NodeProto {
    pb::NodeProto {
        op_type: op.into(),
        input: inputs.iter().map(|s| (*s).to_owned()).collect(),
        output: vec![output.into()],
        name: format!("{op}_{output}"),
        attribute: attrs,
        ..Default::default()
    }
}

/// An ONNX model computing `y = scale · tanh(W x + b)` for a batch of one: input `x` of shape
/// `[1, inputs]`, output `y` of shape `[1, outputs]`; `w` is row-major `outputs × inputs`.
///
/// ```
/// use atom_fabric::hybrid::onnx::dense_tanh;
/// let bytes = dense_tanh(&[1.0, 0.0, 0.0, 1.0], &[0.0, 0.0], 2, 2, 3.0).unwrap();
/// assert!(bytes.len() > 50);
/// ```
pub fn dense_tanh(
    w: &[f32],
    b: &[f32],
    inputs: usize,
    outputs: usize,
    scale: f32,
) -> Result<Vec<u8>, String> {
    if w.len() != inputs * outputs || b.len() != outputs {
        return Err(format!(
            "weights {} (expected {}), bias {} (expected {outputs})",
            w.len(),
            inputs * outputs,
            b.len()
        ));
    }
    let (i, o) = (inputs as i64, outputs as i64);
    let trans_b = pb::AttributeProto {
        name: "transB".into(),
        r#type: pb::attribute_proto::AttributeType::Int as i32,
        i: 1,
        ..Default::default()
    };
    let graph = pb::GraphProto {
        name: "dense_tanh".into(),
        node: vec![
            node("Gemm", &["x", "W", "B"], "h", vec![trans_b]),
            node("Tanh", &["h"], "t", vec![]),
            node("Mul", &["t", "S"], "y", vec![]),
        ],
        initializer: vec![
            tensor("W", &[o, i], w),
            tensor("B", &[o], b),
            tensor("S", &[1], &[scale]),
        ],
        input: vec![value_info("x", &[1, i])],
        output: vec![value_info("y", &[1, o])],
        ..Default::default()
    };
    let model = pb::ModelProto {
        ir_version: 7,
        opset_import: vec![pb::OperatorSetIdProto {
            domain: String::new(),
            version: 13,
        }],
        producer_name: "atom-fabric".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        graph: Some(graph),
        ..Default::default()
    };
    Ok(model.encode_to_vec())
}
