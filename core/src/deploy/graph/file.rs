//! Reading (zero-copy, validated) and writing graph files.

use super::{Geometry, NodeHeader, NodeOp};
use crate::deploy::format::requant_ok;
use crate::deploy::format::{
    envelope, padded, rd_f32, rd_u32, view, zero, Envelope, ALIGN, DTYPE_F32, DTYPE_I8, FIXED,
    MAGIC,
};
use crate::deploy::LayerWeights;
use crate::deploy::{Activation, ActivationTable, FormatError};

/// The format version of graph files.
pub const GRAPH_VERSION: u16 = 3;
/// Most nodes a graph file holds, its input included.
pub const MAX_NODES: usize = 64;
/// Bytes of a node record.
pub const NODE_RECORD: usize = 96;
/// The arena length's place in the fixed header.
const ARENA: usize = 28;

fn rd_u16(b: &[u8], at: usize) -> usize {
    match b.get(at..at + 2) {
        Some(&[x, y]) => u16::from_le_bytes([x, y]) as usize,
        _ => 0,
    }
}

/// A parsed, validated graph file whose weights point into its bytes.
#[derive(Clone, Copy, Debug)]
pub struct GraphModel<'a> {
    header: &'a [u8],
    data: &'a [u8],
    count: usize,
    arena: usize,
    pub(super) int8: bool,
}

/// Elements of `[c, h, w]`, if it does not overflow.
fn numel(s: [usize; 3]) -> Option<usize> {
    s[0].checked_mul(s[1])?.checked_mul(s[2])
}

/// Data parts a node may have.
pub(crate) const PARTS: usize = 5;

/// The bytes of a node's data parts, in order: weight, bias, and for int8
/// the per-channel weight scales and `(multiplier, shift)` pairs (an int8
/// addition has only the pairs, one per input; an int8 global average one
/// pair), then an int8 node's activation table
/// ([`ActivationTable`], for an activation other than ReLU and the
/// identity). 0 for a part it lacks.
pub(crate) fn part_bytes(h: &NodeHeader, int8: bool) -> Option<[usize; PARTS]> {
    let o = h.out_shape[0];
    let table = if int8 && h.op != NodeOp::Input && ActivationTable::needed(h.activation) {
        ActivationTable::FILE_LEN
    } else {
        0
    };
    let weights = match h.op {
        NodeOp::Dense => h.in_len().checked_mul(h.out_len())?,
        NodeOp::Conv => (h.in_shape[0] / h.geometry.groups.max(1))
            .checked_mul(h.geometry.kernel[0])?
            .checked_mul(h.geometry.kernel[1])?
            .checked_mul(o)?,
        NodeOp::Add if int8 => return Some([0, 0, 0, 16, table]),
        NodeOp::GlobalAvgPool if int8 => return Some([0, 0, 0, 8, table]),
        _ => return Some([0, 0, 0, 0, table]),
    };
    Some(if int8 {
        [weights, 4 * o, 4 * o, 8 * o, table]
    } else {
        [weights.checked_mul(4)?, 4 * o, 0, 0, 0]
    })
}

/// Decodes node `i`'s record (no validation).
fn decode(header: &[u8], i: usize) -> Option<NodeHeader> {
    let r = FIXED + NODE_RECORD * i;
    let rec = header.get(r..r + NODE_RECORD)?;
    let u32s = |at: usize| [0, 1, 2].map(|k| rd_u32(rec, at + 4 * k) as usize);
    let g = |k: usize| rd_u16(rec, 36 + 2 * k);
    Some(NodeHeader {
        op: NodeOp::from_code(rec[0])?,
        inputs: [rd_u16(rec, 8), rd_u16(rec, 10)],
        in_shape: u32s(12),
        out_shape: u32s(24),
        geometry: Geometry {
            kernel: [g(0), g(1)],
            stride: [g(2), g(3)],
            dilation: [g(4), g(5)],
            pad: [g(6), g(7), g(8), g(9)],
            groups: g(10),
        },
        activation: Activation::decode(rec[1], rd_f32(rec, 4))?,
        arena: rd_u32(rec, 60) as usize,
        out_scale: rd_f32(rec, QUANT),
        out_zero: rd_u32(rec, QUANT + 4) as i32,
    })
}

/// Where data part `k`'s offset is in a record: weight, bias, scales and
/// requant at 64, the activation table at 88.
pub(super) const fn offset_field(k: usize) -> usize {
    if k < 4 {
        64 + 4 * k
    } else {
        TABLE
    }
}
/// Where an int8 node's output quantization is in a record: scale, zero.
pub(super) const QUANT: usize = 80;
/// Where an int8 node's activation table's offset is in a record.
const TABLE: usize = 88;

/// Whether `h`'s shapes and window are what its op computes.
fn shapes_ok(h: &NodeHeader) -> bool {
    let [c, ih, iw] = h.in_shape;
    let [o, oh, ow] = h.out_shape;
    let g = h.geometry;
    let no_window = g == Geometry::default();
    let windowed = || g.output([ih, iw]) == Some([oh, ow]);
    match h.op {
        NodeOp::Input => no_window && h.in_shape == h.out_shape,
        NodeOp::Dense => no_window && ih == 1 && iw == 1 && oh == 1 && ow == 1,
        NodeOp::Conv => {
            g.groups != 0 && c.is_multiple_of(g.groups) && o.is_multiple_of(g.groups) && windowed()
        }
        NodeOp::MaxPool | NodeOp::AvgPool => {
            // PyTorch pads a pooling by at most half the dilated window, so
            // that every window holds a real element.
            let half = |a: usize| ((g.kernel[a].max(1) - 1) * g.dilation[a]).div_ceil(2);
            g.groups == 1
                && o == c
                && (h.op == NodeOp::MaxPool || g.dilation == [1, 1])
                && g.pad[0].max(g.pad[2]) <= half(0)
                && g.pad[1].max(g.pad[3]) <= half(1)
                && windowed()
        }
        NodeOp::GlobalAvgPool => no_window && o == c && oh == 1 && ow == 1,
        NodeOp::Add => no_window && h.in_shape == h.out_shape,
    }
}

impl<'a> GraphModel<'a> {
    /// Validates `bytes` completely and returns a view of the graph in
    /// them; never panics, whatever `bytes` holds. Only the canonical
    /// layout is accepted, the one the writers produce: data parts in node
    /// order, 16-byte aligned, zero-padded; reserved bytes zero; every
    /// node's shapes what its op computes from its input; for int8, valid
    /// quantization with poolings keeping their input's; and an arena plan
    /// under which no node overwrites a buffer still to be read.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, FormatError> {
        let Envelope {
            header,
            data,
            int8,
            count: n,
        } = envelope(bytes, NODE_RECORD, 2..=MAX_NODES, |version, _| {
            if version == GRAPH_VERSION {
                Ok(())
            } else {
                Err(FormatError::UnsupportedVersion(version))
            }
        })?;
        let data_len = data.len();
        if !zero(&header[24..ARENA]) || !zero(&header[FIXED + NODE_RECORD * n..]) {
            return Err(FormatError::Reserved { layer: None });
        }
        let model = GraphModel {
            header,
            data,
            count: n,
            arena: rd_u32(header, ARENA) as usize,
            int8,
        };
        model.validate(data_len)?;
        Ok(model)
    }

    fn validate(&self, data_len: usize) -> Result<(), FormatError> {
        let n = self.count;
        let mut at = 0;
        // Per node: its output's length, and the last node that reads it.
        let mut len = [0usize; MAX_NODES];
        let mut last_read = [0usize; MAX_NODES];
        let mut arena_end = 0;
        for i in 0..n {
            let layer = i;
            let r = FIXED + NODE_RECORD * i;
            let rec = &self.header[r..r + NODE_RECORD];
            let h = decode(self.header, i).ok_or(if NodeOp::from_code(rec[0]).is_none() {
                FormatError::BadGraph { layer }
            } else {
                FormatError::BadActivation { layer }
            })?;
            let (_, param) = h.activation.encode();
            if !zero(&rec[2..4])
                || rd_f32(rec, 4).to_bits() != param.to_bits()
                || !zero(&rec[58..60])
                || !zero(&rec[TABLE + 4..NODE_RECORD])
                || (!self.int8 && !zero(&rec[QUANT..QUANT + 8]))
            {
                return Err(FormatError::Reserved { layer: Some(i) });
            }
            // What it reads: earlier nodes, two for an addition.
            let reads = reads(h.op);
            let input_ok = (i == 0) == (h.op == NodeOp::Input)
                && (0..2).all(|k| {
                    if k < reads {
                        h.inputs[k] < i
                    } else {
                        h.inputs[k] == 0
                    }
                });
            if !input_ok {
                return Err(FormatError::BadGraph { layer });
            }
            let out_len = numel(h.out_shape).ok_or(FormatError::BadShape { layer })?;
            let in_len = numel(h.in_shape).ok_or(FormatError::BadShape { layer })?;
            if out_len == 0 || in_len == 0 || out_len > u32::MAX as usize {
                return Err(FormatError::BadShape { layer });
            }
            for &src in &h.inputs[..reads] {
                if len[src] != in_len {
                    return Err(FormatError::BadShape { layer });
                }
                last_read[src] = i;
            }
            if !shapes_ok(&h) {
                return Err(if h.op.has_window() || h.geometry != Geometry::default() {
                    FormatError::BadGeometry { layer }
                } else {
                    FormatError::BadShape { layer }
                });
            }
            if h.op == NodeOp::Input && h.activation != Activation::Identity {
                return Err(FormatError::BadActivation { layer });
            }
            len[i] = out_len;
            // The data parts, each where the writer puts it.
            let sizes = part_bytes(&h, self.int8).ok_or(FormatError::BadShape { layer })?;
            for (k, size) in sizes.into_iter().enumerate() {
                let offset = rd_u32(rec, offset_field(k)) as usize;
                if size == 0 {
                    if offset != 0 {
                        return Err(FormatError::BadOffset { layer });
                    }
                    continue;
                }
                if offset != at {
                    return Err(FormatError::BadOffset { layer });
                }
                let end = size
                    .checked_next_multiple_of(ALIGN)
                    .and_then(|s| at.checked_add(s))
                    .filter(|&e| e <= data_len)
                    .ok_or(FormatError::BadOffset { layer })?;
                if !zero(&self.data[at + size..end]) {
                    return Err(FormatError::Reserved { layer: Some(i) });
                }
                at = end;
            }
            if self.int8 {
                self.validate_int8(i, &h)?;
            }
            // The arena: the input is read in place.
            if i == 0 {
                if h.arena != 0 {
                    return Err(FormatError::BadArena { layer });
                }
                continue;
            }
            let end = h
                .arena
                .checked_add(out_len)
                .filter(|&e| e <= self.arena)
                .ok_or(FormatError::BadArena { layer })?;
            arena_end = arena_end.max(end);
        }
        if at != data_len {
            return Err(FormatError::BadOffset { layer: n - 1 });
        }
        // Every node but the output is read; the output is read to the end.
        if let Some(i) = (0..n - 1).find(|&i| last_read[i] == 0) {
            return Err(FormatError::BadGraph { layer: i });
        }
        last_read[n - 1] = usize::MAX;
        // No node writes over a buffer that is read at or after it runs.
        for i in 1..n {
            let hi = self.node_header(i);
            for j in 1..i {
                let hj = self.node_header(j);
                let overlap = hi.arena < hj.arena + len[j] && hj.arena < hi.arena + len[i];
                if overlap && last_read[j] >= i {
                    return Err(FormatError::BadArena { layer: i });
                }
            }
        }
        if arena_end != self.arena {
            return Err(FormatError::BadArena { layer: n - 1 });
        }
        let last = self.node_header(n - 1);
        if rd_u32(self.header, 16) as usize != len[0]
            || rd_u32(self.header, 20) as usize != last.out_len()
        {
            return Err(FormatError::BadShape { layer: n - 1 });
        }
        Ok(())
    }

    /// An int8 node's quantization: a finite positive output scale and a
    /// zero point in range; poolings compute in their input's (their
    /// output's, or their table's pre-activation); valid requantization
    /// pairs, weight scales and activation tables.
    fn validate_int8(&self, i: usize, h: &NodeHeader) -> Result<(), FormatError> {
        let layer = i;
        let bad = FormatError::BadQuantization { layer };
        let scale_ok = h.out_scale.is_finite() && h.out_scale > 0.0;
        if !scale_ok || !(-128..=127).contains(&h.out_zero) {
            return Err(bad);
        }
        let Some((
            _,
            LayerWeights::Int8 {
                scales,
                requant,
                table,
                ..
            },
        )) = self.node(i)
        else {
            return Err(bad);
        };
        if let Some(t) = table {
            if !t.valid() || !t.reserved_zero() {
                return Err(bad);
            }
        }
        if matches!(h.op, NodeOp::MaxPool | NodeOp::AvgPool) {
            let src = self.node_header(h.inputs[0]);
            let computed = table.map_or((h.out_scale, h.out_zero), |t| (t.pre_scale, t.pre_zero));
            if (src.out_scale.to_bits(), src.out_zero) != (computed.0.to_bits(), computed.1) {
                return Err(FormatError::QuantizationChain { layer });
            }
        }
        if !scales.iter().all(|&s| s.is_finite() && s >= 0.0) || !requant_ok(requant) {
            return Err(bad);
        }
        Ok(())
    }

    /// The header (fixed part and records) and the data, as in the file.
    pub(super) fn file_parts(&self) -> (&'a [u8], &'a [u8]) {
        (self.header, self.data)
    }

    /// Node `i`'s record, which [`parse`](Self::parse) validated.
    pub(super) fn node_header(&self, i: usize) -> NodeHeader {
        decode(self.header, i).unwrap_or(NodeHeader {
            op: NodeOp::Input,
            inputs: [0; 2],
            in_shape: [0; 3],
            out_shape: [0; 3],
            geometry: Geometry::default(),
            activation: Activation::Identity,
            arena: 0,
            out_scale: 0.0,
            out_zero: 0,
        })
    }

    /// Node `i` and its data (empty slices for what it has none of), if
    /// there is one.
    pub fn node(&self, i: usize) -> Option<(NodeHeader, LayerWeights<'a>)> {
        if i >= self.count {
            return None;
        }
        let h = decode(self.header, i)?;
        let r = FIXED + NODE_RECORD * i;
        let sizes = part_bytes(&h, self.int8)?;
        let off = |k: usize| rd_u32(self.header, r + offset_field(k)) as usize;
        Some((
            h,
            if self.int8 {
                LayerWeights::Int8 {
                    weight: view(self.data, off(0), sizes[0], i).ok()?,
                    bias: view(self.data, off(1), sizes[1] / 4, i).ok()?,
                    scales: view(self.data, off(2), sizes[2] / 4, i).ok()?,
                    requant: view(self.data, off(3), sizes[3] / 4, i).ok()?,
                    table: if sizes[4] == 0 {
                        None
                    } else {
                        Some(&view::<ActivationTable>(self.data, off(4), 1, i).ok()?[0])
                    },
                }
            } else {
                LayerWeights::F32 {
                    weight: view(self.data, off(0), sizes[0] / 4, i).ok()?,
                    bias: view(self.data, off(1), sizes[1] / 4, i).ok()?,
                }
            },
        ))
    }

    /// Nodes, the input included.
    pub fn node_count(&self) -> usize {
        self.count
    }

    /// The nodes in the order they run, the input first.
    pub fn nodes(&self) -> impl Iterator<Item = (NodeHeader, LayerWeights<'a>)> + '_ {
        (0..self.count).filter_map(|i| self.node(i))
    }

    /// Whether the weights and activations are int8.
    pub fn is_int8(&self) -> bool {
        self.int8
    }

    /// The input's `[C, H, W]`.
    pub fn input_shape(&self) -> [usize; 3] {
        self.node_header(0).out_shape
    }

    /// Input features (`C·H·W`).
    pub fn input_features(&self) -> usize {
        rd_u32(self.header, 16) as usize
    }

    /// Output features.
    pub fn output_features(&self) -> usize {
        rd_u32(self.header, 20) as usize
    }

    /// Elements of scratch (`f32` or `i8`) inference needs: the arena the
    /// file's plan lays every activation buffer in (the input is read in
    /// place).
    pub fn scratch_len(&self) -> usize {
        self.arena
    }

    /// Bytes of parameters (weights, biases, quantization tables).
    pub fn parameter_bytes(&self) -> usize {
        (0..self.count)
            .filter_map(|i| part_bytes(&self.node_header(i), self.int8))
            .map(|p| p.iter().sum::<usize>())
            .sum()
    }
}

/// How many nodes an op reads.
pub(crate) fn reads(op: NodeOp) -> usize {
    match op {
        NodeOp::Input => 0,
        NodeOp::Add => 2,
        _ => 1,
    }
}

/// Bytes of the graph file of `nodes` (`None` if a size overflows).
pub(crate) fn graph_file_len(nodes: &[NodeHeader], int8: bool) -> Option<usize> {
    let mut data = 0usize;
    for h in nodes {
        for p in part_bytes(h, int8)? {
            data = data.checked_add(p.checked_next_multiple_of(ALIGN)?)?;
        }
    }
    padded(FIXED + NODE_RECORD * nodes.len())
        .checked_add(data)?
        .checked_add(4)
}

/// Lays the nodes' outputs in an arena (first fit, in the order they run:
/// a node's output goes at the lowest offset clear of every buffer still
/// to be read when it runs) and returns the arena's length.
pub(crate) fn plan_arena(nodes: &mut [NodeHeader]) -> usize {
    let n = nodes.len();
    let mut last_read = [0usize; MAX_NODES];
    for (i, h) in nodes.iter().enumerate() {
        for &src in &h.inputs[..reads(h.op)] {
            last_read[src] = i;
        }
    }
    if n > 0 {
        last_read[n - 1] = usize::MAX;
    }
    let mut arena = 0;
    for i in 1..n {
        let size = nodes[i].out_len();
        let live = |j: usize| j >= 1 && j < i && last_read[j] >= i;
        let clear = |at: usize, nodes: &[NodeHeader]| {
            (1..i)
                .filter(|&j| live(j))
                .all(|j| at + size <= nodes[j].arena || nodes[j].arena + nodes[j].out_len() <= at)
        };
        // Candidates: 0 and the end of every live buffer.
        let ends = (1..i)
            .filter(|&j| live(j))
            .map(|j| nodes[j].arena + nodes[j].out_len());
        let at = core::iter::once(0)
            .chain(ends)
            .filter(|&c| clear(c, nodes))
            .min()
            .unwrap_or(0);
        nodes[i].arena = at;
        arena = arena.max(at + size);
    }
    arena
}

/// Writes the fixed header and the node records of `nodes` (whose arena
/// offsets [`plan_arena`] set) with their data offsets; returns the header
/// length. `out` holds [`graph_file_len`] bytes.
pub(crate) fn write_graph_header(
    out: &mut [u8],
    nodes: &[NodeHeader],
    int8: bool,
    arena: usize,
    data_len: usize,
) -> Result<usize, FormatError> {
    let header_len = padded(FIXED + NODE_RECORD * nodes.len());
    if nodes.len() < 2 || nodes.len() > MAX_NODES {
        return Err(FormatError::BadLayerCount(nodes.len().min(255) as u8));
    }
    out[..header_len].fill(0);
    out[0..4].copy_from_slice(&MAGIC);
    out[4..6].copy_from_slice(&GRAPH_VERSION.to_le_bytes());
    out[6] = if int8 { DTYPE_I8 } else { DTYPE_F32 };
    out[7] = nodes.len() as u8;
    let put = |out: &mut [u8], at: usize, v: usize| {
        out[at..at + 4].copy_from_slice(&(v as u32).to_le_bytes());
    };
    put(out, 8, header_len);
    put(out, 12, data_len);
    put(out, 16, nodes[0].out_len());
    put(out, 20, nodes[nodes.len() - 1].out_len());
    put(out, ARENA, arena);
    let mut at = 0;
    for (i, h) in nodes.iter().enumerate() {
        let r = FIXED + NODE_RECORD * i;
        out[r] = h.op.code();
        let (code, param) = h.activation.encode();
        out[r + 1] = code;
        out[r + 4..r + 8].copy_from_slice(&param.to_le_bytes());
        for (k, &src) in h.inputs.iter().enumerate() {
            out[r + 8 + 2 * k..r + 10 + 2 * k].copy_from_slice(&(src as u16).to_le_bytes());
        }
        for k in 0..3 {
            put(out, r + 12 + 4 * k, h.in_shape[k]);
            put(out, r + 24 + 4 * k, h.out_shape[k]);
        }
        let g = h.geometry;
        let fields = [
            g.kernel[0],
            g.kernel[1],
            g.stride[0],
            g.stride[1],
            g.dilation[0],
            g.dilation[1],
            g.pad[0],
            g.pad[1],
            g.pad[2],
            g.pad[3],
            g.groups,
        ];
        for (k, v) in fields.into_iter().enumerate() {
            let v = u16::try_from(v).map_err(|_| FormatError::BadGeometry { layer: i })?;
            out[r + 36 + 2 * k..r + 38 + 2 * k].copy_from_slice(&v.to_le_bytes());
        }
        put(out, r + 60, h.arena);
        let sizes = part_bytes(h, int8).ok_or(FormatError::BadShape { layer: i })?;
        for (k, size) in sizes.into_iter().enumerate() {
            if size > 0 {
                put(out, r + offset_field(k), at);
                at += padded(size);
            }
        }
        if int8 {
            out[r + QUANT..r + QUANT + 4].copy_from_slice(&h.out_scale.to_le_bytes());
            out[r + QUANT + 4..r + QUANT + 8].copy_from_slice(&h.out_zero.to_le_bytes());
        }
    }
    Ok(header_len)
}

/// Where node `i`'s data parts go, `(offset, bytes)` each, relative to the
/// data's start (see [`part_bytes`]).
pub(crate) fn data_parts(
    nodes: &[NodeHeader],
    i: usize,
    int8: bool,
) -> Option<[(usize, usize); PARTS]> {
    let mut at = 0;
    for h in &nodes[..i] {
        for p in part_bytes(h, int8)? {
            at += padded(p);
        }
    }
    let mut parts = [(0, 0); PARTS];
    for (k, p) in part_bytes(nodes.get(i)?, int8)?.into_iter().enumerate() {
        parts[k] = (at, p);
        at += padded(p);
    }
    Some(parts)
}
