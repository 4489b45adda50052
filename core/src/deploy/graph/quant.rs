//! Post-training quantization of graph files: the ranges of every node's
//! output on representative inputs ([`GraphCalibration`]), then int8 with
//! per-channel weight scales ([`quantize_graph`]).

use super::file::{data_parts, graph_file_len, write_graph_header, MAX_NODES};
use super::{GraphModel, NodeHeader, NodeOp};
use crate::deploy::format::finish;
use crate::deploy::quant::{bias_of, multiplier_of};
use crate::deploy::{FormatError, InferError, LayerWeights, QuantParams};

/// The range of a graph's input and of every node's output, observed on
/// sample inputs through the f32 file.
#[derive(Clone, Debug, PartialEq)]
pub struct GraphCalibration {
    /// `(min, max)` per node (node 0: the input).
    pub ranges: [(f32, f32); MAX_NODES],
    /// Samples observed.
    pub samples: usize,
}

impl Default for GraphCalibration {
    fn default() -> Self {
        GraphCalibration {
            ranges: [(f32::INFINITY, f32::NEG_INFINITY); MAX_NODES],
            samples: 0,
        }
    }
}

fn widen(r: &mut (f32, f32), values: &[f32]) {
    for &v in values {
        if v.is_finite() {
            r.0 = r.0.min(v);
            r.1 = r.1.max(v);
        }
    }
}

impl GraphCalibration {
    /// No samples yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs the f32 `model` on `input`, widening the ranges; `scratch`
    /// holds [`GraphModel::scratch_len`] floats.
    pub fn observe(
        &mut self,
        model: &GraphModel<'_>,
        input: &[f32],
        scratch: &mut [f32],
    ) -> Result<(), InferError> {
        let ranges = &mut self.ranges;
        model.infer_f32_observed(
            input,
            scratch,
            &mut |i, y| widen(&mut ranges[i], y),
            &mut |_, _, _| {},
        )?;
        widen(&mut self.ranges[0], input);
        self.samples += 1;
        Ok(())
    }
}

/// Bytes of the int8 file [`quantize_graph`] writes of `model`.
pub fn graph_quantized_len(model: &GraphModel<'_>) -> usize {
    let mut nodes: heapless::Vec<NodeHeader, MAX_NODES> = heapless::Vec::new();
    for (h, _) in model.nodes() {
        let _ = nodes.push(h);
    }
    graph_file_len(&nodes, true).unwrap_or(usize::MAX)
}

/// Quantizes the f32 graph `model` to int8 with the ranges of `calib`, into
/// `out` ([`graph_quantized_len`] bytes): each node's output quantized over
/// its observed range (a max or average pooling keeps its input's), weights
/// symmetric per
/// output channel, biases in accumulator units, Q31 requantization pairs
/// (an addition's: each input's scale over the output's, times 2^16; a
/// global average's: the input's over the plane's size and the output's), the
/// same arena plan. Returns the bytes written. Activations other than ReLU
/// and the identity are [`FormatError::Unsupported`] for now (no activation
/// tables in graph files yet).
pub fn quantize_graph(
    model: &GraphModel<'_>,
    calib: &GraphCalibration,
    out: &mut [u8],
) -> Result<usize, FormatError> {
    if model.is_int8() {
        return Err(FormatError::Unsupported);
    }
    let needed = graph_quantized_len(model);
    if out.len() < needed {
        return Err(FormatError::BufferTooSmall { needed });
    }
    let mut nodes: heapless::Vec<NodeHeader, MAX_NODES> = heapless::Vec::new();
    for (i, (mut h, _)) in model.nodes().enumerate() {
        let q = match h.op {
            NodeOp::MaxPool | NodeOp::AvgPool => {
                let src = nodes[h.inputs[0]];
                QuantParams {
                    scale: src.out_scale,
                    zero: src.out_zero,
                }
            }
            _ => {
                let (lo, hi) = calib.ranges[i];
                QuantParams::from_range(lo, hi)
            }
        };
        if !matches!(
            h.activation,
            crate::deploy::Activation::Identity | crate::deploy::Activation::Relu
        ) {
            return Err(FormatError::Unsupported);
        }
        h.out_scale = q.scale;
        h.out_zero = q.zero;
        nodes
            .push(h)
            .map_err(|_| FormatError::BadLayerCount(u8::MAX))?;
    }
    let header_len = write_graph_header(out, &nodes, true, model.scratch_len(), 0)?;
    let data_len = needed - 4 - header_len;
    out[12..16].copy_from_slice(&(data_len as u32).to_le_bytes());
    out[header_len..needed - 4].fill(0);
    for (i, h) in nodes.iter().enumerate() {
        let bad = FormatError::BadShape { layer: i };
        let parts = data_parts(&nodes, i, true).ok_or(bad)?;
        let [(w_at, _), (b_at, _), (s_at, _), (r_at, _)] =
            parts.map(|(at, len)| (header_len + at, len));
        let qin = nodes[h.inputs[0]];
        match (h.op, model.node(i)) {
            (NodeOp::Dense | NodeOp::Conv, Some((_, LayerWeights::F32 { weight, bias }))) => {
                let per = weight.len() / bias.len().max(1);
                for (o, (row, &b)) in weight.chunks_exact(per.max(1)).zip(bias).enumerate() {
                    let max = row.iter().fold(0.0f32, |m, &w| m.max(w.abs()));
                    let ws = if max > 0.0 && max.is_finite() {
                        max / 127.0
                    } else {
                        1.0
                    };
                    for (j, &w) in row.iter().enumerate() {
                        let q = (libm::roundf(w / ws) as i32).clamp(-127, 127);
                        out[w_at + o * per + j] = q as i8 as u8;
                    }
                    let put =
                        |out: &mut [u8], at: usize, v: [u8; 4]| out[at..at + 4].copy_from_slice(&v);
                    put(
                        out,
                        b_at + 4 * o,
                        bias_of(b, qin.out_scale, ws).to_le_bytes(),
                    );
                    put(out, s_at + 4 * o, ws.to_le_bytes());
                    let (m, s) = multiplier_of(qin.out_scale, ws, h.out_scale);
                    put(out, r_at + 8 * o, m.to_le_bytes());
                    put(out, r_at + 8 * o + 4, s.to_le_bytes());
                }
            }
            (NodeOp::Add, _) => {
                let qb = nodes[h.inputs[1]];
                for (k, src) in [qin, qb].iter().enumerate() {
                    // Each input in units of 2^-16 of the output's step.
                    let (m, s) = multiplier_of(src.out_scale, 65536.0, h.out_scale);
                    let at = r_at + 8 * k;
                    out[at..at + 4].copy_from_slice(&m.to_le_bytes());
                    out[at + 4..at + 8].copy_from_slice(&s.to_le_bytes());
                }
            }
            (NodeOp::GlobalAvgPool, _) => {
                // The sum of a plane, over its size, to the output's step.
                let plane = (h.in_shape[1] * h.in_shape[2]) as f32;
                let (m, s) = multiplier_of(qin.out_scale, 1.0 / plane, h.out_scale);
                out[r_at..r_at + 4].copy_from_slice(&m.to_le_bytes());
                out[r_at + 4..r_at + 8].copy_from_slice(&s.to_le_bytes());
            }
            _ => {}
        }
    }
    Ok(finish(out, needed - 4))
}
