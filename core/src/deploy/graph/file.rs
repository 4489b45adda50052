//! Reading (zero-copy, validated) and writing graph files.

use super::{Geometry, NodeHeader, NodeOp, NodeWeights};
use crate::deploy::format::{
    padded, rd_f32, rd_u32, view, zero, ALIGN, DTYPE_F32, DTYPE_I8, FIXED, MAGIC,
};
use crate::deploy::{crc32, Activation, FormatError};

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
}

/// Elements of `[c, h, w]`, if it does not overflow.
fn numel(s: [usize; 3]) -> Option<usize> {
    s[0].checked_mul(s[1])?.checked_mul(s[2])
}

/// The bytes of a node's weight and bias (0 for nodes without).
fn param_bytes(h: &NodeHeader) -> Option<(usize, usize)> {
    match h.op {
        NodeOp::Dense => Some((4 * h.in_len().checked_mul(h.out_len())?, 4 * h.out_len())),
        NodeOp::Conv => {
            let [o, ..] = h.out_shape;
            let per = (h.in_shape[0] / h.geometry.groups.max(1))
                .checked_mul(h.geometry.kernel[0])?
                .checked_mul(h.geometry.kernel[1])?;
            Some((4 * o.checked_mul(per)?, 4 * o))
        }
        _ => Some((0, 0)),
    }
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
    })
}

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
    /// layout is accepted, the one the writer produces: data parts in node
    /// order, 16-byte aligned, zero-padded; reserved bytes zero; every
    /// node's shapes what its op computes from its input; and an arena
    /// plan under which no node overwrites a buffer still to be read.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, FormatError> {
        if cfg!(target_endian = "big") {
            return Err(FormatError::BigEndian);
        }
        if bytes.iter().zip(MAGIC).any(|(&a, b)| a != b) {
            return Err(FormatError::BadMagic);
        }
        if bytes.len() < FIXED + 4 {
            return Err(FormatError::TooShort);
        }
        let version = u16::from_le_bytes([bytes[4], bytes[5]]);
        if version != GRAPH_VERSION {
            return Err(FormatError::UnsupportedVersion(version));
        }
        match bytes[6] {
            DTYPE_F32 => {}
            // int8 graph files are not written yet.
            d @ DTYPE_I8 => return Err(FormatError::BadDtype(d)),
            d => return Err(FormatError::BadDtype(d)),
        }
        let n = bytes[7] as usize;
        if !(2..=MAX_NODES).contains(&n) {
            return Err(FormatError::BadLayerCount(bytes[7]));
        }
        let header_len = rd_u32(bytes, 8) as usize;
        if header_len != padded(FIXED + NODE_RECORD * n) {
            return Err(FormatError::BadHeaderLength);
        }
        let data_len = rd_u32(bytes, 12) as usize;
        let expected = header_len
            .checked_add(data_len)
            .and_then(|v| v.checked_add(4))
            .ok_or(FormatError::BadHeaderLength)?;
        if bytes.len() != expected {
            return Err(FormatError::LengthMismatch {
                expected,
                found: bytes.len(),
            });
        }
        let stored = rd_u32(bytes, header_len + data_len);
        let computed = crc32(0, &bytes[..header_len + data_len]);
        if stored != computed {
            return Err(FormatError::Crc { stored, computed });
        }
        if !(bytes.as_ptr() as usize).is_multiple_of(4) {
            return Err(FormatError::Misaligned);
        }
        let header = &bytes[..header_len];
        let data = &bytes[header_len..header_len + data_len];
        if !zero(&header[24..ARENA]) || !zero(&header[FIXED + NODE_RECORD * n..]) {
            return Err(FormatError::Reserved { layer: None });
        }
        let model = GraphModel {
            header,
            data,
            count: n,
            arena: rd_u32(header, ARENA) as usize,
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
                || !zero(&rec[72..NODE_RECORD])
            {
                return Err(FormatError::Reserved { layer: Some(i) });
            }
            // What it reads: earlier nodes, two for an addition.
            let reads = match h.op {
                NodeOp::Input => 0,
                NodeOp::Add => 2,
                _ => 1,
            };
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
            // The data: weight, then bias, each where the writer puts it.
            let (wb, bb) = param_bytes(&h).ok_or(FormatError::BadShape { layer })?;
            let offsets = [rd_u32(rec, 64) as usize, rd_u32(rec, 68) as usize];
            if h.op.has_parameters() {
                for (k, size) in [wb, bb].into_iter().enumerate() {
                    if offsets[k] != at {
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
            } else if offsets != [0, 0] {
                return Err(FormatError::BadOffset { layer });
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
        })
    }

    /// Node `i` and its parameters, if there is one.
    pub fn node(&self, i: usize) -> Option<(NodeHeader, NodeWeights<'a>)> {
        if i >= self.count {
            return None;
        }
        let h = decode(self.header, i)?;
        let r = FIXED + NODE_RECORD * i;
        let (wb, bb) = param_bytes(&h)?;
        let weight = view(self.data, rd_u32(self.header, r + 64) as usize, wb / 4, i).ok()?;
        let bias = view(self.data, rd_u32(self.header, r + 68) as usize, bb / 4, i).ok()?;
        Some((h, NodeWeights { weight, bias }))
    }

    /// Nodes, the input included.
    pub fn node_count(&self) -> usize {
        self.count
    }

    /// The nodes in the order they run, the input first.
    pub fn nodes(&self) -> impl Iterator<Item = (NodeHeader, NodeWeights<'a>)> + '_ {
        (0..self.count).filter_map(|i| self.node(i))
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

    /// Floats of scratch inference needs: the arena the file's plan lays
    /// every activation buffer in (the input is read in place).
    pub fn scratch_len(&self) -> usize {
        self.arena
    }

    /// Bytes of parameters (weights and biases).
    pub fn parameter_bytes(&self) -> usize {
        self.nodes()
            .map(|(_, w)| 4 * (w.weight.len() + w.bias.len()))
            .sum()
    }
}

/// Bytes of the graph file of `nodes` (`None` if a size overflows).
pub(crate) fn graph_file_len(nodes: &[NodeHeader]) -> Option<usize> {
    let mut data = 0usize;
    for h in nodes {
        let (w, b) = param_bytes(h)?;
        data = data.checked_add(padded(w))?.checked_add(padded(b))?;
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
        let reads = match h.op {
            NodeOp::Input => 0,
            NodeOp::Add => 2,
            _ => 1,
        };
        for &src in &h.inputs[..reads] {
            last_read[src] = i;
        }
    }
    if n > 0 {
        last_read[n - 1] = usize::MAX;
    }
    let mut arena = 0;
    for i in 1..n {
        let size = nodes[i].out_len();
        // Candidate offsets: 0 and the end of every live buffer.
        let live = |j: usize| j >= 1 && j < i && last_read[j] >= i;
        let clear = |at: usize, nodes: &[NodeHeader]| {
            (1..i)
                .filter(|&j| live(j))
                .all(|j| at + size <= nodes[j].arena || nodes[j].arena + nodes[j].out_len() <= at)
        };
        let mut best = None;
        for cand in core::iter::once(0).chain(
            (1..i)
                .filter(|&j| live(j))
                .map(|j| nodes[j].arena + nodes[j].out_len()),
        ) {
            if clear(cand, nodes) && best.is_none_or(|b| cand < b) {
                best = Some(cand);
            }
        }
        let at = best.unwrap_or(0);
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
    out[6] = DTYPE_F32;
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
        if h.op.has_parameters() {
            let (w, b) = param_bytes(h).ok_or(FormatError::BadShape { layer: i })?;
            put(out, r + 64, at);
            at += padded(w);
            put(out, r + 68, at);
            at += padded(b);
        }
    }
    Ok(header_len)
}

/// Where node `i`'s weight and bias go in the data, `(offset, bytes)` each,
/// relative to the data's start.
pub(crate) fn param_parts(nodes: &[NodeHeader], i: usize) -> Option<[(usize, usize); 2]> {
    let mut at = 0;
    for h in &nodes[..i] {
        let (w, b) = param_bytes(h)?;
        at += padded(w) + padded(b);
    }
    let (w, b) = param_bytes(nodes.get(i)?)?;
    Some([(at, w), (at + padded(w), b)])
}
