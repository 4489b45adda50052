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

/// Lays the nodes' outputs in an arena and returns the arena's length: the
/// shorter of two plans (the first when they tie).
///
/// 1. First fit, in the order the nodes run: a node's output goes at the
///    lowest offset clear of every buffer still to be read when it runs.
/// 2. Within the least arena any plan can have (the most bytes live at once,
///    rounded up to a word), each node's output goes, among the offsets
///    clear of the live buffers, where it leaves the widest free run once
///    the buffers it was the last to read are freed (the lowest such
///    offset). A chain of layers then alternates between the arena's two
///    ends, and its arena is its largest input and output side by side,
///    where first fit can stack three buffers (MobileNet's first pointwise
///    layer: 73,728 bytes first fit, 55,296 so).
///
/// `nodes` must be at most [`MAX_NODES`] in the order they run, each
/// reading only nodes before it (as the writers build them).
pub(crate) fn plan_arena(nodes: &mut [NodeHeader]) -> usize {
    let n = nodes.len().min(MAX_NODES);
    let nodes = &mut nodes[..n];
    let mut last_read = [0usize; MAX_NODES];
    for (i, h) in nodes.iter().enumerate() {
        for &src in &h.inputs[..reads(h.op)] {
            if let Some(r) = last_read.get_mut(src) {
                *r = i;
            }
        }
    }
    if n > 0 {
        last_read[n - 1] = usize::MAX;
    }
    let size = |i: usize| nodes[i].out_len();
    let live = |j: usize, i: usize| j >= 1 && j < i && last_read[j] >= i;
    // The least arena: the most bytes live while a node runs.
    let floor = (1..n)
        .map(|i| {
            (1..i)
                .filter(|&j| live(j, i))
                .fold(size(i), |s, j| s.saturating_add(size(j)))
        })
        .max()
        .unwrap_or(0);
    let mut first = [0usize; MAX_NODES];
    // (First fit always places a node: the end of the live buffer that
    // ends last is clear.)
    let first_len = place(&mut first, n, &size, &live, None, &last_read).unwrap_or(0);
    let floor = floor.next_multiple_of(4);
    let mut tight = [0usize; MAX_NODES];
    let tight_len = if floor < first_len {
        place(&mut tight, n, &size, &live, Some(floor), &last_read)
    } else {
        None
    };
    let (at, len) = match tight_len {
        Some(t) if t < first_len => (&tight, t),
        _ => (&first, first_len),
    };
    for (h, &a) in nodes.iter_mut().zip(at.iter()) {
        h.arena = a;
    }
    len
}

/// One plan of [`plan_arena`] into `at`: first fit (`limit` `None`), or
/// the widest-free-run plan within `limit` bytes; the arena's length, or
/// `None` if a node finds no room within the limit.
fn place(
    at: &mut [usize; MAX_NODES],
    n: usize,
    size: &dyn Fn(usize) -> usize,
    live: &dyn Fn(usize, usize) -> bool,
    limit: Option<usize>,
    last_read: &[usize; MAX_NODES],
) -> Option<usize> {
    let mut arena = 0;
    for i in 1..n {
        let s = size(i);
        let clear = |c: usize, at: &[usize; MAX_NODES]| {
            limit.is_none_or(|l| c.checked_add(s).is_some_and(|e| e <= l))
                && (1..i)
                    .filter(|&j| live(j, i))
                    .all(|j| c.saturating_add(s) <= at[j] || at[j].saturating_add(size(j)) <= c)
        };
        // Candidates: 0 and the end of every live buffer; within a limit,
        // also the last word-aligned offset of the arena and of the room
        // before every live buffer.
        let candidates = (0..=2 * i).filter_map(|k| {
            let j = k / 2;
            match (k, limit) {
                (0, _) => Some(0),
                (1, Some(l)) => l.checked_sub(s).map(|c| c / 4 * 4),
                (1, None) => None,
                _ if !live(j, i) => None,
                (_, _) if k % 2 == 0 => Some(at[j].saturating_add(size(j))),
                (_, Some(_)) => at[j].checked_sub(s).map(|c| c / 4 * 4),
                (_, None) => None,
            }
        });
        let best = match limit {
            None => candidates.filter(|&c| clear(c, at)).min(),
            Some(l) => candidates
                .filter(|&c| clear(c, at))
                .map(|c| (widest_free(at, i, c, s, l, size, last_read), c))
                .max_by(|x, y| x.0.cmp(&y.0).then(y.1.cmp(&x.1)))
                .map(|(_, c)| c),
        };
        let c = best?;
        at[i] = c;
        arena = arena.max(c.saturating_add(s));
    }
    Some(arena)
}

/// The widest free run of `[0, limit)` once node `i` has written `s` bytes
/// at `c` and the buffers it was the last to read are freed.
fn widest_free(
    at: &[usize; MAX_NODES],
    i: usize,
    c: usize,
    s: usize,
    limit: usize,
    size: &dyn Fn(usize) -> usize,
    last_read: &[usize; MAX_NODES],
) -> usize {
    // Node i's buffer and every earlier one still to be read after it.
    let buffer = |j: usize| {
        if j == i {
            Some((c, c.saturating_add(s)))
        } else if j >= 1 && last_read[j] > i {
            Some((at[j], at[j].saturating_add(size(j))))
        } else {
            None
        }
    };
    // A free run starts at 0 or at a buffer's end, and runs to the nearest
    // start at or after it (or the limit).
    let starts = core::iter::once(0).chain((1..=i).filter_map(|j| buffer(j).map(|b| b.1)));
    starts
        .filter(|&p| (1..=i).filter_map(buffer).all(|(b0, b1)| p < b0 || b1 <= p))
        .map(|p| {
            let end = (1..=i)
                .filter_map(buffer)
                .map(|b| b.0)
                .filter(|&b0| b0 >= p)
                .fold(limit, usize::min);
            end.saturating_sub(p)
        })
        .max()
        .unwrap_or(0)
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

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::deploy::Activation;
    use std::vec::Vec;

    /// A node of `out` elements (as `[out, 1, 1]`) reading `inputs`.
    fn node(op: NodeOp, inputs: [usize; 2], out: usize) -> NodeHeader {
        NodeHeader {
            op,
            inputs,
            in_shape: [1, 1, 1],
            out_shape: [out, 1, 1],
            geometry: Geometry::default(),
            activation: Activation::Identity,
            arena: 0,
            out_scale: 0.0,
            out_zero: 0,
        }
    }

    /// No node's output overlaps a buffer still to be read when it runs,
    /// and every output lies in `arena` elements.
    fn sound(nodes: &[NodeHeader], arena: usize) -> bool {
        let n = nodes.len();
        let mut last = [0usize; MAX_NODES];
        for (i, h) in nodes.iter().enumerate() {
            for &s in &h.inputs[..reads(h.op)] {
                last[s] = i;
            }
        }
        last[n - 1] = usize::MAX;
        (1..n).all(|i| {
            let (a, e) = (nodes[i].arena, nodes[i].arena + nodes[i].out_len());
            e <= arena
                && (1..i).all(|j| {
                    let (b, f) = (nodes[j].arena, nodes[j].arena + nodes[j].out_len());
                    last[j] < i || e <= b || f <= a
                })
        })
    }

    /// MobileNet's first blocks: first fit stacks the depthwise output
    /// between the first conv's and the pointwise's (73,728 elements); the
    /// plan alternates ends and needs the largest pair, 55,296.
    #[test]
    fn a_chain_needs_its_largest_pair() {
        let sizes = [27_648, 18_432, 18_432, 36_864, 9_216, 18_432, 18_432];
        let mut nodes: Vec<NodeHeader> = sizes
            .iter()
            .enumerate()
            .map(|(i, &s)| {
                let op = if i == 0 { NodeOp::Input } else { NodeOp::Conv };
                node(op, [i.saturating_sub(1), 0], s)
            })
            .collect();
        let arena = plan_arena(&mut nodes);
        assert_eq!(arena, 18_432 + 36_864);
        assert!(sound(&nodes, arena));
    }

    /// A residual block: never more than first fit, always sound; a plan
    /// that first fit already makes tight is kept as it is.
    #[test]
    fn residual_plans_are_sound_and_no_longer_than_first_fit() {
        // input, conv a, conv b (reads a), conv c (reads b), add (a + c),
        // conv d (reads the add).
        let shapes = [
            (NodeOp::Input, [0, 0], 100),
            (NodeOp::Conv, [0, 0], 64),
            (NodeOp::Conv, [1, 0], 64),
            (NodeOp::Conv, [2, 0], 64),
            (NodeOp::Add, [1, 3], 64),
            (NodeOp::Conv, [4, 0], 32),
        ];
        let mut nodes: Vec<NodeHeader> = shapes
            .iter()
            .map(|&(op, inputs, s)| node(op, inputs, s))
            .collect();
        let arena = plan_arena(&mut nodes);
        assert!(sound(&nodes, arena));
        // Three 64-element buffers are live at the add (a, c and its own).
        assert_eq!(arena, 3 * 64);
    }
}
