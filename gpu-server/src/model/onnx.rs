//! Just enough of the ONNX protobuf schema to read a model's weights and conv attributes.
//!
//! Field numbers follow `onnx/onnx.proto` (IR version 6 and later); unknown fields are skipped
//! by the decoder, so newer files still parse.

use std::collections::HashMap;

use prost::Message;

#[derive(Clone, PartialEq, Message)]
pub struct ModelProto {
    #[prost(int64, tag = "1")]
    pub ir_version: i64,
    #[prost(string, tag = "2")]
    pub producer_name: String,
    #[prost(message, optional, tag = "7")]
    pub graph: Option<GraphProto>,
}

#[derive(Clone, PartialEq, Message)]
pub struct GraphProto {
    #[prost(message, repeated, tag = "1")]
    pub node: Vec<NodeProto>,
    #[prost(message, repeated, tag = "5")]
    pub initializer: Vec<TensorProto>,
}

#[derive(Clone, PartialEq, Message)]
pub struct NodeProto {
    #[prost(string, repeated, tag = "1")]
    pub input: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    pub output: Vec<String>,
    #[prost(string, tag = "3")]
    pub name: String,
    #[prost(string, tag = "4")]
    pub op_type: String,
    #[prost(message, repeated, tag = "5")]
    pub attribute: Vec<AttributeProto>,
}

#[derive(Clone, PartialEq, Message)]
pub struct AttributeProto {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(int64, tag = "3")]
    pub i: i64,
    #[prost(int64, repeated, tag = "8")]
    pub ints: Vec<i64>,
}

#[derive(Clone, PartialEq, Message)]
pub struct TensorProto {
    #[prost(int64, repeated, tag = "1")]
    pub dims: Vec<i64>,
    #[prost(int32, tag = "2")]
    pub data_type: i32,
    #[prost(float, repeated, tag = "4")]
    pub float_data: Vec<f32>,
    #[prost(string, tag = "8")]
    pub name: String,
    #[prost(bytes = "vec", tag = "9")]
    pub raw_data: Vec<u8>,
}

/// ONNX `TensorProto.DataType.FLOAT`.
const FLOAT: i32 = 1;

/// A float tensor read from an initializer.
#[derive(Debug, Clone)]
pub struct Weight {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// A convolution node with its weights resolved.
#[derive(Debug, Clone)]
pub struct ConvNode {
    pub name: String,
    pub weight: Weight,
    pub bias: Option<Weight>,
    pub dilations: Vec<i64>,
    pub pads: Vec<i64>,
    pub strides: Vec<i64>,
    pub group: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    #[error("not an ONNX model: {0}")]
    Decode(#[from] prost::DecodeError),
    #[error("the ONNX model has no graph")]
    NoGraph,
    #[error("initializer {name:?} has data type {data_type}; only float32 is supported")]
    DataType { name: String, data_type: i32 },
    #[error("initializer {name:?} holds {got} values but its shape {shape:?} needs {want}")]
    Size {
        name: String,
        shape: Vec<usize>,
        got: usize,
        want: usize,
    },
    #[error("node {node:?} uses {input:?}, which is not an initializer")]
    MissingInitializer { node: String, input: String },
}

fn weight(t: &TensorProto) -> Result<Weight, OnnxError> {
    if t.data_type != FLOAT {
        return Err(OnnxError::DataType {
            name: t.name.clone(),
            data_type: t.data_type,
        });
    }
    let shape: Vec<usize> = t.dims.iter().map(|&d| d.max(0) as usize).collect();
    let want: usize = shape.iter().product();
    let data: Vec<f32> = if t.raw_data.is_empty() {
        t.float_data.clone()
    } else {
        t.raw_data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    };
    if data.len() != want {
        return Err(OnnxError::Size {
            name: t.name.clone(),
            shape,
            got: data.len(),
            want,
        });
    }
    Ok(Weight { shape, data })
}

/// Every `Conv` node of the graph, in graph (= execution) order, with weights attached.
pub fn conv_nodes(bytes: &[u8]) -> Result<Vec<ConvNode>, OnnxError> {
    let model = ModelProto::decode(bytes)?;
    let graph = model.graph.ok_or(OnnxError::NoGraph)?;
    let inits: HashMap<&str, &TensorProto> = graph
        .initializer
        .iter()
        .map(|t| (t.name.as_str(), t))
        .collect();
    let lookup = |node: &NodeProto, input: &str| -> Result<Weight, OnnxError> {
        let t = inits
            .get(input)
            .ok_or_else(|| OnnxError::MissingInitializer {
                node: node.name.clone(),
                input: input.to_string(),
            })?;
        weight(t)
    };
    graph
        .node
        .iter()
        .filter(|n| n.op_type == "Conv")
        .map(|n| {
            let ints = |name: &str| {
                n.attribute
                    .iter()
                    .find(|a| a.name == name)
                    .map(|a| a.ints.clone())
                    .unwrap_or_default()
            };
            let group = n
                .attribute
                .iter()
                .find(|a| a.name == "group")
                .map_or(1, |a| a.i);
            Ok(ConvNode {
                name: n.name.clone(),
                weight: lookup(n, &n.input[1])?,
                bias: n.input.get(2).map(|b| lookup(n, b)).transpose()?,
                dilations: ints("dilations"),
                pads: ints("pads"),
                strides: ints("strides"),
                group,
            })
        })
        .collect()
}
