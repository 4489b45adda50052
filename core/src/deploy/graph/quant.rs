//! Post-training quantization of graph files: the ranges of every node's
//! output on representative inputs ([`GraphCalibration`]), then int8 with
//! per-channel weight scales ([`quantize_graph`]).

use super::file::{data_parts, graph_file_len, write_graph_header, MAX_NODES};
use super::{GraphModel, NodeHeader, NodeOp};
use crate::deploy::format::finish;
use crate::deploy::quant::{activation_table, bias_of, multiplier_of};
use crate::deploy::{ActivationTable, FormatError, InferError, LayerWeights, QuantParams};

/// The range of a graph's input and of every node's output, observed on
/// sample inputs through the f32 file.
#[derive(Clone, Debug, PartialEq)]
pub struct GraphCalibration {
    /// `(min, max)` per node (node 0: the input).
    pub ranges: [(f32, f32); MAX_NODES],
    /// `(min, max)` of each node's values before its activation: the
    /// quantization of an activation table's input ([`ActivationTable`]).
    pub pre_ranges: [(f32, f32); MAX_NODES],
    /// Samples observed.
    pub samples: usize,
}

impl Default for GraphCalibration {
    fn default() -> Self {
        GraphCalibration {
            ranges: [(f32::INFINITY, f32::NEG_INFINITY); MAX_NODES],
            pre_ranges: [(f32::INFINITY, f32::NEG_INFINITY); MAX_NODES],
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
        let (ranges, pre) = (&mut self.ranges, &mut self.pre_ranges);
        model.infer_f32_observed(
            input,
            scratch,
            model.node_count(),
            &mut |i, before, y| widen(if before { &mut pre[i] } else { &mut ranges[i] }, y),
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
/// same arena plan. A node whose activation is not ReLU or the identity
/// gets an activation table ([`ActivationTable`]): its pairs lead to its
/// pre-activation's quantization (its observed range before the
/// activation; a pooling's input's) and the table to its output's.
/// Returns the bytes written.
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
    // Per node, the quantization its pairs lead to: a table's input, or
    // its output's.
    let mut pre = [QuantParams {
        scale: 1.0,
        zero: 0,
    }; MAX_NODES];
    for (i, (mut h, _)) in model.nodes().enumerate() {
        let range = |(lo, hi): (f32, f32)| QuantParams::from_range(lo, hi);
        let pooled = matches!(h.op, NodeOp::MaxPool | NodeOp::AvgPool);
        let src = nodes.get(h.inputs[0]).map(|s| QuantParams {
            scale: s.out_scale,
            zero: s.out_zero,
        });
        let table = i > 0 && ActivationTable::needed(h.activation);
        let q = match (pooled, src) {
            (true, Some(s)) if !table => s,
            _ => range(calib.ranges[i]),
        };
        pre[i] = match (table, pooled, src) {
            (true, true, Some(s)) => s,
            (true, _, _) => range(calib.pre_ranges[i]),
            _ => q,
        };
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
        let [(w_at, _), (b_at, _), (s_at, _), (r_at, _), (t_at, t_len)] =
            parts.map(|(at, len)| (header_len + at, len));
        let qin = nodes[h.inputs[0]];
        let to = pre[i].scale;
        if t_len > 0 {
            let out_q = QuantParams {
                scale: h.out_scale,
                zero: h.out_zero,
            };
            let t = ActivationTable::new(pre[i], activation_table(h.activation, pre[i], out_q));
            out[t_at..t_at + 4].copy_from_slice(&t.pre_scale.to_le_bytes());
            out[t_at + 4..t_at + 8].copy_from_slice(&t.pre_zero.to_le_bytes());
            for (b, &v) in out[t_at + 16..t_at + 16 + 256].iter_mut().zip(&t.values) {
                *b = v as u8;
            }
        }
        match (h.op, model.node(i)) {
            (NodeOp::Dense | NodeOp::Conv, Some((_, LayerWeights::F32 { weight, bias }))) => {
                let (w, rest) = out[w_at..].split_at_mut(b_at - w_at);
                let (b, rest) = rest.split_at_mut(s_at - b_at);
                let (sc, r) = rest.split_at_mut(r_at - s_at);
                quantize_channels(weight, bias, qin.out_scale, to, [w, b, sc, r]);
            }
            (NodeOp::Add, _) => {
                let qb = nodes[h.inputs[1]];
                for (k, src) in [qin, qb].iter().enumerate() {
                    // Each input in units of 2^-16 of the output's step.
                    let (m, s) = multiplier_of(src.out_scale, 65536.0, to);
                    let at = r_at + 8 * k;
                    out[at..at + 4].copy_from_slice(&m.to_le_bytes());
                    out[at + 4..at + 8].copy_from_slice(&s.to_le_bytes());
                }
            }
            (NodeOp::GlobalAvgPool, _) => {
                // The sum of a plane, over its size, to the output's step.
                let plane = (h.in_shape[1] * h.in_shape[2]) as f32;
                let (m, s) = multiplier_of(qin.out_scale, 1.0 / plane, to);
                out[r_at..r_at + 4].copy_from_slice(&m.to_le_bytes());
                out[r_at + 4..r_at + 8].copy_from_slice(&s.to_le_bytes());
            }
            _ => {}
        }
    }
    Ok(finish(out, needed - 4))
}

/// Quantizes a dense or convolution node's f32 parameters (`weight`, one
/// row per output channel, and `bias`) for an input of scale `in_scale` and
/// pairs leading to the scale `to`, into its int8 parts `[weight, bias,
/// scales, pairs]` (each at least as long as the node's part): weights
/// symmetric per row, biases in accumulator units.
pub(super) fn quantize_channels(
    weight: &[f32],
    bias: &[f32],
    in_scale: f32,
    to: f32,
    [w_out, b_out, s_out, r_out]: [&mut [u8]; 4],
) {
    let per = (weight.len() / bias.len().max(1)).max(1);
    for (o, (row, &b)) in weight.chunks_exact(per).zip(bias).enumerate() {
        let max = row.iter().fold(0.0f32, |m, &w| m.max(w.abs()));
        let ws = if max > 0.0 && max.is_finite() {
            max / 127.0
        } else {
            1.0
        };
        for (q, &w) in w_out[o * per..(o + 1) * per].iter_mut().zip(row) {
            *q = (libm::roundf(w / ws) as i32).clamp(-127, 127) as i8 as u8;
        }
        let put = |out: &mut [u8], at: usize, v: [u8; 4]| out[at..at + 4].copy_from_slice(&v);
        put(b_out, 4 * o, bias_of(b, in_scale, ws).to_le_bytes());
        put(s_out, 4 * o, ws.to_le_bytes());
        let (m, s) = multiplier_of(in_scale, ws, to);
        put(r_out, 8 * o, m.to_le_bytes());
        put(r_out, 8 * o + 4, s.to_le_bytes());
    }
}
