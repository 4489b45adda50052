//! A graph's head trained on the device, as a dense model's last layer is
//! ([`Model::features_u8`](crate::deploy::Model::features_u8),
//! [`write_with_last_layer`](crate::deploy::write_with_last_layer)): the
//! frozen nodes' features, the head's parameters as real numbers, and the
//! file written again with a new head. The head is the last node, a dense
//! layer (a CNN's classifier after its flatten or global pooling); every
//! other node stays as it is, in flash.

use super::file::{offset_field, QUANT};
use super::quant::quantize_channels;
use super::{GraphModel, NodeHeader, NodeOp, NODE_RECORD};
use crate::deploy::format::{padded, rd_u32, FIXED};
use crate::deploy::quant::dequantize_bias;
use crate::deploy::{crc32, FormatError, InferError, LayerWeights, QuantParams};

impl GraphModel<'_> {
    /// The last node, if it is a dense layer.
    fn head(&self) -> Result<NodeHeader, InferError> {
        let h = self.node_header(self.node_count() - 1);
        if h.op == NodeOp::Dense {
            Ok(h)
        } else {
            Err(InferError::NoDenseHead)
        }
    }

    /// The head's `(input, output)` features, if the last node is a dense
    /// layer.
    pub fn head_shape(&self) -> Result<(usize, usize), InferError> {
        self.head().map(|h| (h.in_len(), h.out_len()))
    }

    /// The quantization of the head's input (the node before it) in an
    /// int8 graph: what makes [`head_features_q8`](Self::head_features_q8)
    /// real, `scale · (q − zero)`.
    pub fn head_input_quantization(&self) -> Result<QuantParams, InferError> {
        self.head()?;
        let h = self.node_header(self.node_count() - 2);
        Ok(QuantParams {
            scale: h.out_scale,
            zero: h.out_zero,
        })
    }

    /// Runs every node but the head (the last node, a dense layer) of an
    /// int8 graph on quantized input, as [`infer_q8`](Self::infer_q8) runs
    /// them all: the frozen part of a model whose head is trained on the
    /// device. Returns the head's input (a slice of `scratch`, which holds
    /// [`scratch_len`](Self::scratch_len) bytes).
    pub fn head_features_q8<'s>(
        &self,
        input: &[i8],
        scratch: &'s mut [i8],
    ) -> Result<&'s [i8], InferError> {
        self.head()?;
        // Every node but the output is read by a later one, so the node
        // before the head is what the head reads.
        self.infer_q8_first(input, scratch, self.node_count() - 1, &mut |_, _, _| {})
    }

    /// Runs every node but the head of an f32 graph, as
    /// [`head_features_q8`](Self::head_features_q8) does in int8.
    pub fn head_features_f32<'s>(
        &self,
        input: &[f32],
        scratch: &'s mut [f32],
    ) -> Result<&'s [f32], InferError> {
        self.head()?;
        self.infer_f32_observed(
            input,
            scratch,
            self.node_count() - 1,
            &mut |_, _, _| {},
            &mut |_, _, _| {},
        )
    }

    /// The head's parameters as real numbers: the weight `[out, in]`
    /// row-major into `weight`, the bias into `bias`. In an int8 graph
    /// `w = q · s_w` per output channel and `b` the bias in accumulator
    /// units times `s_in · s_w`, so that a head trained on the device
    /// starts from the deployed one.
    pub fn dequantize_head(&self, weight: &mut [f32], bias: &mut [f32]) -> Result<(), InferError> {
        let h = self.head()?;
        let (n, rows) = (h.in_len(), h.out_len());
        if weight.len() != rows * n || bias.len() != rows {
            return Err(InferError::OutputLength { expected: rows * n });
        }
        let bad = InferError::LayerCount {
            layers: self.node_count(),
        };
        let (_, w) = self.node(self.node_count() - 1).ok_or(bad)?;
        match w {
            LayerWeights::F32 {
                weight: wf,
                bias: bf,
            } => {
                weight.copy_from_slice(wf);
                bias.copy_from_slice(bf);
            }
            LayerWeights::Int8 {
                weight: wq,
                bias: bq,
                scales,
                ..
            } => {
                let s_in = self.head_input_quantization()?.scale;
                for (o, ((row, b), q)) in weight
                    .chunks_exact_mut(n)
                    .zip(bias.iter_mut())
                    .zip(wq.chunks_exact(n))
                    .enumerate()
                {
                    let ws = scales[o];
                    for (v, &q) in row.iter_mut().zip(q) {
                        *v = f32::from(q) * ws;
                    }
                    *b = dequantize_bias(i64::from(bq[o]), s_in, ws);
                }
            }
        }
        Ok(())
    }
}

/// Bytes of the int8 data of a graph's dense head of `inputs` × `outputs`
/// (weight, bias, weight scales, pairs, each 16-byte aligned): the scratch
/// [`write_graph_with_head`] needs.
pub const fn graph_head_len(inputs: usize, outputs: usize) -> usize {
    padded(inputs * outputs) + 2 * padded(4 * outputs) + padded(8 * outputs)
}

/// Writes `model`, an int8 graph read from a file, with its head (the last
/// node, a dense layer) replaced by the f32 `weight` (`[out, in]`) and
/// `bias`, trained on the device: quantized per output channel for the
/// input quantization the file gives the head and the output quantization
/// `qout` (from the range of the new head's outputs,
/// [`QuantParams::from_range`]). The file goes to `emit` in pieces as it is
/// made, its CRC last, so no copy of the model is needed: the other nodes'
/// bytes are passed on from where the model lies (flash). `scratch` holds
/// the head's new data ([`graph_head_len`] bytes). Returns the file's
/// length.
///
/// A head with an activation table keeps it, with the quantizations it was
/// made for: the new weights are requantized to its pre-activation, and
/// `qout`, still checked, is not used.
pub fn write_graph_with_head(
    model: &GraphModel<'_>,
    weight: &[f32],
    bias: &[f32],
    qout: QuantParams,
    scratch: &mut [u8],
    emit: &mut dyn FnMut(&[u8]) -> Result<(), FormatError>,
) -> Result<usize, FormatError> {
    let last = model.node_count() - 1;
    let shape = FormatError::BadShape { layer: last };
    let h = model.head().map_err(|_| shape)?;
    if !model.is_int8() {
        return Err(FormatError::Unsupported);
    }
    let (n, rows) = (h.in_len(), h.out_len());
    let len = graph_head_len(n, rows);
    if weight.len() != n * rows || bias.len() != rows {
        return Err(shape);
    }
    if scratch.len() < len {
        return Err(FormatError::BufferTooSmall { needed: len });
    }
    if !(qout.scale.is_finite() && qout.scale > 0.0 && (-128..=127).contains(&qout.zero)) {
        return Err(FormatError::BadQuantization { layer: last });
    }
    let Some((_, LayerWeights::Int8 { table, .. })) = model.node(last) else {
        return Err(shape);
    };
    let qout = match table {
        Some(_) => QuantParams {
            scale: h.out_scale,
            zero: h.out_zero,
        },
        None => qout,
    };
    let to = table.map_or(qout.scale, |t| t.pre_scale);
    let s_in = model.head_input_quantization().map_err(|_| shape)?.scale;
    let scratch = &mut scratch[..len];
    scratch.fill(0);
    let (w, rest) = scratch.split_at_mut(padded(n * rows));
    let (b, rest) = rest.split_at_mut(padded(4 * rows));
    let (s, r) = rest.split_at_mut(padded(4 * rows));
    quantize_channels(weight, bias, s_in, to, [w, b, s, r]);
    // The head's data: its four parts, then its table (if any), ending the
    // file's data (the format is canonical).
    let (header, data) = model.file_parts();
    let record = FIXED + NODE_RECORD * last;
    let start = rd_u32(header, record + offset_field(0)) as usize;
    let table_len = table.map_or(0, |_| crate::deploy::ActivationTable::FILE_LEN);
    if start + len + table_len != data.len() {
        return Err(FormatError::BadOffset { layer: last });
    }
    let mut crc = 0;
    let mut total = 0;
    let mut put = |bytes: &[u8]| -> Result<(), FormatError> {
        crc = crc32(crc, bytes);
        total += bytes.len();
        emit(bytes)
    };
    // The header, with the head's output quantization replaced.
    put(&header[..record + QUANT])?;
    put(&qout.scale.to_le_bytes())?;
    put(&qout.zero.to_le_bytes())?;
    put(&header[record + QUANT + 8..])?;
    put(&data[..start])?;
    put(scratch)?;
    put(&data[start + len..])?;
    let crc = crc.to_le_bytes();
    emit(&crc)?;
    Ok(total + crc.len())
}
