//! safetensors interchange with PyTorch: a model's `state_dict` with
//! PyTorch's names and layouts (`0.weight` as `[out, in]`, `0.bias`), written
//! and read strictly (every tensor present, shapes equal, nothing extra).

use crate::atomic::write_atomic;
use ember_nn_core::backend::Span;
use ember_nn_core::nn::Module;
use ember_nn_core::{Backend, Memory};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Why a state_dict could not be written or read. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum StateDictError {
    /// Reading or writing the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not valid safetensors.
    #[error("{path}: not a valid safetensors file: {msg}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        msg: String,
    },
    /// A parameter of the model has no tensor in the file.
    #[error("{path}: missing tensor `{name}` (the file is from a different architecture)")]
    Missing {
        /// The file.
        path: PathBuf,
        /// The parameter's name.
        name: String,
    },
    /// A tensor's shape differs from the parameter's.
    #[error("{path}: tensor `{name}` has shape {found:?}, the model expects {expected:?} (a different architecture)")]
    Shape {
        /// The file.
        path: PathBuf,
        /// The tensor's name.
        name: String,
        /// The model's shape.
        expected: Vec<usize>,
        /// The file's shape.
        found: Vec<usize>,
    },
    /// A tensor has a data type that cannot be converted to f32.
    #[error("{path}: tensor `{name}` has data type {dtype}, expected a float type")]
    Dtype {
        /// The file.
        path: PathBuf,
        /// The tensor's name.
        name: String,
        /// Its data type.
        dtype: String,
    },
    /// The file has a tensor the model does not.
    #[error("{path}: unexpected tensor `{name}` (the file is from a different architecture)")]
    Unexpected {
        /// The file.
        path: PathBuf,
        /// The tensor's name.
        name: String,
    },
    /// The file's layers are named otherwise than the model's, and do not
    /// fit it by position and shape either (or the names given for them do
    /// not name the file's layers).
    #[error("{path}: the file's layers are named {}, not {} as the model's, and they do not fit the model by position either: {why}", .file.join(", "), .model.join(", "))]
    Names {
        /// The file.
        path: PathBuf,
        /// The file's layer names (the prefixes of its tensors' names).
        file: Vec<String>,
        /// The model's layer names.
        model: Vec<String>,
        /// Why they do not fit.
        why: String,
    },
    /// A value is NaN or infinite.
    #[error("{path}: tensor `{name}` holds NaN or infinite values")]
    NonFinite {
        /// The file.
        path: PathBuf,
        /// The tensor's name.
        name: String,
    },
    /// Moving data to or from tensor memory failed.
    #[error("{path}: {source}")]
    Memory {
        /// The file.
        path: PathBuf,
        /// The core error.
        source: Box<ember_nn_core::Error>,
    },
}

/// A parameter's name, shape and values, read from memory.
#[derive(Clone, Debug, PartialEq)]
pub struct NamedTensor {
    /// PyTorch name.
    pub name: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// Values, row-major.
    pub data: Vec<f32>,
}

/// Reads every parameter of `model` out of `mem`, in visiting order.
pub fn named_tensors<M: Module, B: Backend>(
    model: &M,
    mem: &Memory<'_, B>,
) -> Result<Vec<NamedTensor>, ember_nn_core::Error> {
    let mut out = Vec::new();
    let mut err = Ok(());
    model.named_parameters(&mut |p| {
        let mut data = vec![0.0f32; p.param.value.len];
        if let Err(e) = mem.read(p.param.value, &mut data) {
            err = Err(e);
        }
        out.push(NamedTensor {
            name: p.name.to_string(),
            shape: p.dims.as_slice().to_vec(),
            data,
        });
    });
    err.map(|()| out)
}

/// Reads every buffer of `model` (a batch norm's running statistics:
/// [`Module::named_buffers`]) out of `mem`, in visiting order.
pub fn named_buffers<M: Module, B: Backend>(
    model: &M,
    mem: &Memory<'_, B>,
) -> Result<Vec<NamedTensor>, ember_nn_core::Error> {
    let mut out = Vec::new();
    let mut err = Ok(());
    model.named_buffers(&mut |b| {
        let mut data = vec![0.0f32; b.value.len];
        if let Err(e) = mem.read(b.value, &mut data) {
            err = Err(e);
        }
        out.push(NamedTensor {
            name: b.name.to_string(),
            shape: b.dims.as_slice().to_vec(),
            data,
        });
    });
    err.map(|()| out)
}

/// Where each tensor of `model`'s state lives: its parameters, then its
/// buffers (a batch norm's running statistics), each with its PyTorch name
/// and shape, in visiting order: what a state_dict holds, and what a
/// checkpoint must keep for a run to resume as it was.
pub fn state_spans<M: Module>(model: &M) -> Vec<(String, Vec<usize>, Span)> {
    let mut out = Vec::new();
    model.named_parameters(&mut |p| {
        out.push((
            p.name.to_string(),
            p.dims.as_slice().to_vec(),
            p.param.value,
        ))
    });
    model.named_buffers(&mut |b| {
        out.push((b.name.to_string(), b.dims.as_slice().to_vec(), b.value))
    });
    out
}

/// Reads `model`'s whole state (parameters, then buffers: [`state_spans`])
/// out of `mem`.
pub fn named_state<M: Module, B: Backend>(
    model: &M,
    mem: &Memory<'_, B>,
) -> Result<Vec<NamedTensor>, ember_nn_core::Error> {
    state_spans(model)
        .into_iter()
        .map(|(name, shape, span)| {
            let mut data = vec![0.0f32; span.len];
            mem.read(span, &mut data)?;
            Ok(NamedTensor { name, shape, data })
        })
        .collect()
}

/// Serializes tensors (and optional metadata) to safetensors bytes, f32 little-endian.
pub fn to_bytes(
    tensors: &[NamedTensor],
    metadata: Option<HashMap<String, String>>,
) -> Result<Vec<u8>, safetensors::SafeTensorError> {
    let raw: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|t| {
            (
                t.name.clone(),
                t.shape.clone(),
                t.data.iter().flat_map(|v| v.to_le_bytes()).collect(),
            )
        })
        .collect();
    let views = raw
        .iter()
        .map(|(n, s, b)| TensorView::new(Dtype::F32, s.clone(), b).map(|v| (n.clone(), v)))
        .collect::<Result<Vec<_>, _>>()?;
    safetensors::serialize(views, metadata)
}

/// Writes `model`'s state_dict as safetensors (atomically): its parameters,
/// then its buffers (a batch norm's running statistics), by name.
pub fn save<M: Module, B: Backend>(
    path: &Path,
    model: &M,
    mem: &Memory<'_, B>,
) -> Result<(), StateDictError> {
    let memory = |source| StateDictError::Memory {
        path: path.into(),
        source: Box::new(source),
    };
    // Parameters, then buffers (PyTorch's state_dict holds both).
    let tensors = named_state(model, mem).map_err(memory)?;
    let bytes = to_bytes(&tensors, None).map_err(|e| StateDictError::Parse {
        path: path.into(),
        msg: e.to_string(),
    })?;
    write_atomic(path, &bytes).map_err(|source| StateDictError::Io {
        path: path.into(),
        source,
    })
}

/// Converts a tensor's bytes to f32, whatever float type it holds.
pub fn to_f32(path: &Path, name: &str, view: &TensorView<'_>) -> Result<Vec<f32>, StateDictError> {
    let b = view.data();
    let v: Vec<f32> = match view.dtype() {
        Dtype::F32 => b
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Dtype::F64 => b
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32)
            .collect(),
        Dtype::BF16 => b
            .chunks_exact(2)
            .map(|c| f32::from_bits(u32::from(u16::from_le_bytes([c[0], c[1]])) << 16))
            .collect(),
        Dtype::F16 => b
            .chunks_exact(2)
            .map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]])))
            .collect(),
        // A counter buffer (PyTorch's `num_batches_tracked`).
        Dtype::I64 => b
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32)
            .collect(),
        other => {
            return Err(StateDictError::Dtype {
                path: path.into(),
                name: name.into(),
                dtype: format!("{other:?}"),
            })
        }
    };
    if v.iter().any(|x| !x.is_finite()) {
        return Err(StateDictError::NonFinite {
            path: path.into(),
            name: name.into(),
        });
    }
    Ok(v)
}

/// IEEE half to single precision.
fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h >> 15) << 31;
    let exp = u32::from((h >> 10) & 0x1F);
    let frac = u32::from(h & 0x3FF);
    let bits = match (exp, frac) {
        (0, 0) => sign,
        (0, _) => {
            // Subnormal: renormalise.
            let mut e = 127 - 15 + 1;
            let mut f = frac;
            while f & 0x400 == 0 {
                f <<= 1;
                e -= 1;
            }
            sign | (e << 23) | ((f & 0x3FF) << 13)
        }
        (0x1F, 0) => sign | 0x7F80_0000,
        (0x1F, _) => sign | 0x7FC0_0000,
        _ => sign | ((exp + 127 - 15) << 23) | (frac << 13),
    };
    f32::from_bits(bits)
}

/// Reads a state_dict from safetensors `bytes` into `model`'s parameters and
/// buffers ([`Module::named_buffers`]) in `mem`, strictly. Nothing is written unless every tensor checks out.
pub fn load_bytes<M: Module, B: Backend>(
    path: &Path,
    bytes: &[u8],
    model: &M,
    mem: &mut Memory<'_, B>,
    prefix: &str,
) -> Result<(), StateDictError> {
    let st = SafeTensors::deserialize(bytes).map_err(|e| StateDictError::Parse {
        path: path.into(),
        msg: e.to_string(),
    })?;
    let mut staged: Vec<(ember_nn_core::Span, Vec<f32>)> = Vec::new();
    let mut wanted = Vec::new();
    let mut first_err = None;
    // Parameters and buffers alike: a tensor of the file by name and shape.
    let mut stage = |name: &str, dims: &[usize], span: ember_nn_core::Span| {
        if first_err.is_some() {
            return;
        }
        let name = format!("{prefix}{name}");
        wanted.push(name.clone());
        let r = (|| {
            let view = st.tensor(&name).map_err(|_| StateDictError::Missing {
                path: path.into(),
                name: name.clone(),
            })?;
            let expected = dims.to_vec();
            if view.shape() != expected.as_slice() {
                return Err(StateDictError::Shape {
                    path: path.into(),
                    name: name.clone(),
                    expected,
                    found: view.shape().to_vec(),
                });
            }
            Ok((span, to_f32(path, &name, &view)?))
        })();
        match r {
            Ok(s) => staged.push(s),
            Err(e) => first_err = Some(e),
        }
    };
    model.named_parameters(&mut |p| stage(p.name, p.dims.as_slice(), p.param.value));
    model.named_buffers(&mut |b| stage(b.name, b.dims.as_slice(), b.value));
    if let Some(e) = first_err {
        return Err(e);
    }
    if let Some(extra) = st
        .names()
        .into_iter()
        .find(|n| n.starts_with(prefix) && !wanted.iter().any(|w| w == *n))
    {
        return Err(StateDictError::Unexpected {
            path: path.into(),
            name: extra.to_string(),
        });
    }
    for (span, data) in staged {
        mem.write(span, &data)
            .map_err(|source| StateDictError::Memory {
                path: path.into(),
                source: Box::new(source),
            })?;
    }
    Ok(())
}

/// How [`load_layers`] matched a file's layers to the model's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LayerMatch {
    /// By name: the file names every parameter as the model does.
    ByName,
    /// Under other names: each pair is (the file's layer, the model's
    /// layer), in the model's order.
    Mapped {
        /// The pairs.
        pairs: Vec<(String, String)>,
        /// Whether the caller gave the file's names (else they were
        /// matched by position and shape).
        given: bool,
    },
}

impl LayerMatch {
    /// What to tell the user when the file's names were not the model's
    /// (`None` when they were): `the file's layer names (fc1, fc2, head)
    /// are not the model's (0, 2, 4); mapped by position and shape: fc1 ->
    /// 0, fc2 -> 2, head -> 4`.
    pub fn note(&self) -> Option<String> {
        let LayerMatch::Mapped { pairs, given } = self else {
            return None;
        };
        if pairs.iter().all(|(f, m)| f == m) {
            return None;
        }
        let list = |side: fn(&(String, String)) -> &String| {
            pairs
                .iter()
                .map(side)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        };
        let how = if *given {
            "mapped as given"
        } else {
            "mapped by position and shape"
        };
        let map = pairs
            .iter()
            .map(|(f, m)| format!("{f} -> {m}"))
            .collect::<Vec<_>>()
            .join(", ");
        Some(format!(
            "the file's layer names ({}) are not the model's ({}); {how}: {map}",
            list(|p| &p.0),
            list(|p| &p.1)
        ))
    }
}

/// A dense layer as a state_dict holds it: `NAME.weight` `[out, in]` and
/// `NAME.bias` `[out]`.
#[derive(Clone, Debug)]
struct Dense {
    name: String,
    weight: Vec<usize>,
    bias: Vec<usize>,
}

/// A dense layer of the model and where its parameters live.
struct ModelLayer {
    dense: Dense,
    weight: ember_nn_core::Span,
    bias: ember_nn_core::Span,
}

/// Splits `layer.weight` into (`layer`, `weight`).
fn split_name(name: &str) -> Option<(&str, &str)> {
    name.rsplit_once('.')
}

/// The model's parameters as dense layers in visiting order, with where
/// each weight and bias lives; `None` unless every parameter is one of a
/// `NAME.weight` `[out, in]`, `NAME.bias` `[out]` pair.
fn model_layers<M: Module>(model: &M) -> Option<Vec<ModelLayer>> {
    let mut params = Vec::new();
    model.named_parameters(&mut |p| {
        params.push((
            p.name.to_string(),
            p.dims.as_slice().to_vec(),
            p.param.value,
        ))
    });
    let mut out = Vec::new();
    for pair in params.chunks(2) {
        let [(w, wd, ws), (b, bd, bs)] = pair else {
            return None;
        };
        let ((wl, "weight"), (bl, "bias")) = (split_name(w)?, split_name(b)?) else {
            return None;
        };
        if wl != bl || wd.len() != 2 || bd.len() != 1 || wd[0] != bd[0] {
            return None;
        }
        let dense = Dense {
            name: wl.to_string(),
            weight: wd.clone(),
            bias: bd.clone(),
        };
        out.push(ModelLayer {
            dense,
            weight: *ws,
            bias: *bs,
        });
    }
    Some(out)
}

/// Orders names as people number layers: digit runs compare as numbers
/// (`fc2` before `fc10`), the rest as text.
fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    fn chunks(s: &str) -> Vec<(bool, &str)> {
        let mut v = Vec::new();
        let mut start = 0;
        let bytes = s.as_bytes();
        for i in 1..=bytes.len() {
            if i == bytes.len() || bytes[i].is_ascii_digit() != bytes[start].is_ascii_digit() {
                v.push((bytes[start].is_ascii_digit(), &s[start..i]));
                start = i;
            }
        }
        v
    }
    let (ca, cb) = (chunks(a), chunks(b));
    for ((da, xa), (db, xb)) in ca.iter().zip(&cb) {
        let o = if *da && *db {
            let (ta, tb) = (xa.trim_start_matches('0'), xb.trim_start_matches('0'));
            ta.len().cmp(&tb.len()).then_with(|| ta.cmp(tb))
        } else {
            xa.cmp(xb)
        };
        if o.is_ne() {
            return o;
        }
    }
    ca.len().cmp(&cb.len()).then_with(|| a.cmp(b))
}

/// The file's tensors as dense layers, in natural order of their names;
/// `Err` says why they are not (a tensor that is no layer's weight or
/// bias, a layer without one of them, shapes that do not pair).
fn file_layers(st: &SafeTensors<'_>) -> Result<Vec<Dense>, String> {
    /// A layer's name, weight shape and bias shape, as found so far.
    type Found = (String, Option<Vec<usize>>, Option<Vec<usize>>);
    let mut layers: Vec<Found> = Vec::new();
    for name in st.names() {
        let shape = st.tensor(name).map_err(|e| e.to_string())?.shape().to_vec();
        let (layer, kind) = split_name(name)
            .filter(|(_, k)| *k == "weight" || *k == "bias")
            .ok_or_else(|| format!("tensor `{name}` is not a layer's weight or bias"))?;
        let i = match layers.iter().position(|l| l.0 == layer) {
            Some(i) => i,
            None => {
                layers.push((layer.to_string(), None, None));
                layers.len() - 1
            }
        };
        if kind == "weight" {
            layers[i].1 = Some(shape);
        } else {
            layers[i].2 = Some(shape);
        }
    }
    layers.sort_by(|a, b| natural_cmp(&a.0, &b.0));
    layers
        .into_iter()
        .map(|(name, w, b)| match (w, b) {
            (Some(w), Some(b)) if w.len() == 2 && b.len() == 1 && w[0] == b[0] => Ok(Dense {
                name,
                weight: w,
                bias: b,
            }),
            (Some(w), Some(b)) => Err(format!(
                "layer `{name}` has a weight {w:?} and a bias {b:?}, not [out, in] and [out]"
            )),
            (None, _) => Err(format!("layer `{name}` has no weight")),
            (_, None) => Err(format!("layer `{name}` has no bias")),
        })
        .collect()
}

/// Reads a state_dict from safetensors `bytes` into `model`'s parameters,
/// by name when the file names them as the model does, and otherwise by
/// position, layer by layer: for a model of dense layers (an
/// [`Mlp`](ember_nn_core::nn::Mlp), a derived struct of `Linear`s) and a file
/// of `NAME.weight` `[out, in]` and `NAME.bias` `[out]` pairs under other
/// names (a PyTorch class's `fc1`, `fc2`, `head`).
///
/// `names`, when given, are the file's layers in the model's order
/// (`["fc1", "fc2", "head"]`); each must be in the file with the shapes of
/// the model's layer at its position, and the file must hold nothing else.
///
/// Without `names`, each of the model's layers in order takes the first
/// of the file's remaining layers with its weight's and bias's shapes, the
/// file's layers taken in the natural order of their names (digit runs as
/// numbers: `fc2` before `fc10`). The file's own order cannot be used: a
/// safetensors file stores its tensors sorted by data type and name, not
/// in the state_dict's order (the `safetensors` crate's `serialize` sorts
/// them, and PyTorch's `save_file` calls it), so the order of the names is
/// all there is; shapes settle it but between layers of the same shape.
/// Layers whose names differ from the model's and that do not fit it this
/// way are a [`StateDictError::Names`] that lists the file's layer names;
/// a file that uses the model's names is read strictly, as [`load_bytes`]
/// reads it.
///
/// The result says how the layers were matched; [`LayerMatch::note`] is
/// the text to show the user when the names were not the model's.
pub fn load_layers<M: Module, B: Backend>(
    path: &Path,
    bytes: &[u8],
    model: &M,
    mem: &mut Memory<'_, B>,
    names: Option<&[String]>,
) -> Result<LayerMatch, StateDictError> {
    let st = SafeTensors::deserialize(bytes).map_err(|e| StateDictError::Parse {
        path: path.into(),
        msg: e.to_string(),
    })?;
    let mut wanted = Vec::new();
    model.named_parameters(&mut |p| wanted.push(p.name.to_string()));
    let by_name = wanted.iter().all(|n| st.tensor(n).is_ok());
    if names.is_none() && by_name {
        return load_bytes(path, bytes, model, mem, "").map(|()| LayerMatch::ByName);
    }
    // Without a dense layout on either side there is nothing to map: the
    // strict reader's error (the first missing tensor) says it best.
    macro_rules! strict {
        () => {
            load_bytes(path, bytes, model, mem, "").map(|()| LayerMatch::ByName)
        };
    }
    let Some(ours) = model_layers(model) else {
        return strict!();
    };
    let model_names: Vec<String> = ours.iter().map(|l| l.dense.name.clone()).collect();
    let names_error = |file: Vec<String>, why: String| StateDictError::Names {
        path: path.into(),
        file,
        model: model_names.clone(),
        why,
    };
    let pairs: Vec<(Dense, &ModelLayer)> = match names {
        Some(given) => {
            if given.len() != ours.len() {
                return Err(names_error(
                    given.to_vec(),
                    format!(
                        "{} names given for the model's {} layers",
                        given.len(),
                        ours.len()
                    ),
                ));
            }
            let mut pairs = Vec::new();
            for (g, o) in given.iter().zip(&ours) {
                let mut layer = Dense {
                    name: g.clone(),
                    weight: Vec::new(),
                    bias: Vec::new(),
                };
                for (kind, out, expected) in [
                    ("weight", &mut layer.weight, &o.dense.weight),
                    ("bias", &mut layer.bias, &o.dense.bias),
                ] {
                    let name = format!("{g}.{kind}");
                    let view = st.tensor(&name).map_err(|_| StateDictError::Missing {
                        path: path.into(),
                        name: name.clone(),
                    })?;
                    if view.shape() != expected.as_slice() {
                        return Err(StateDictError::Shape {
                            path: path.into(),
                            name,
                            expected: expected.clone(),
                            found: view.shape().to_vec(),
                        });
                    }
                    *out = view.shape().to_vec();
                }
                pairs.push((layer, o));
            }
            pairs
        }
        None => {
            let theirs = match file_layers(&st) {
                Ok(t) => t,
                // Tensors that are not dense layers: a naming difference
                // only when some are not the model's names.
                Err(why) => {
                    let file = file_layer_names(&st);
                    if file.iter().all(|f| model_names.contains(f)) {
                        return strict!();
                    }
                    return Err(names_error(file, why));
                }
            };
            let file: Vec<String> = theirs.iter().map(|l| l.name.clone()).collect();
            // The file's layers are the model's, some missing or extra: a
            // different architecture, which the strict reader names.
            if file.iter().all(|f| model_names.contains(f)) {
                return strict!();
            }
            if theirs.len() != ours.len() {
                return Err(names_error(
                    file,
                    format!(
                        "the file has {} layers, the model {}",
                        theirs.len(),
                        ours.len()
                    ),
                ));
            }
            let mut left: Vec<Option<Dense>> = theirs.into_iter().map(Some).collect();
            let mut pairs = Vec::new();
            for o in &ours {
                let found = left.iter_mut().find(|l| {
                    l.as_ref()
                        .is_some_and(|l| l.weight == o.dense.weight && l.bias == o.dense.bias)
                });
                match found.and_then(Option::take) {
                    Some(l) => pairs.push((l, o)),
                    None => {
                        return Err(names_error(
                            file,
                            format!(
                                "no layer of the file has the shapes of the model's `{}` (weight {:?}, bias {:?})",
                                o.dense.name, o.dense.weight, o.dense.bias
                            ),
                        ))
                    }
                }
            }
            pairs
        }
    };
    // Nothing else may be in the file.
    let taken: Vec<String> = pairs
        .iter()
        .flat_map(|(l, _)| [format!("{}.weight", l.name), format!("{}.bias", l.name)])
        .collect();
    let mut rest: Vec<&str> = st
        .names()
        .into_iter()
        .filter(|n| !taken.iter().any(|t| t == n))
        .collect();
    rest.sort_by(|a, b| natural_cmp(a, b));
    if let Some(extra) = rest.first() {
        return Err(StateDictError::Unexpected {
            path: path.into(),
            name: extra.to_string(),
        });
    }
    let mut staged = Vec::new();
    for (l, o) in &pairs {
        for (kind, span) in [("weight", o.weight), ("bias", o.bias)] {
            let name = format!("{}.{kind}", l.name);
            let view = st.tensor(&name).map_err(|_| StateDictError::Missing {
                path: path.into(),
                name: name.clone(),
            })?;
            staged.push((span, to_f32(path, &name, &view)?));
        }
    }
    for (span, data) in staged {
        mem.write(span, &data)
            .map_err(|source| StateDictError::Memory {
                path: path.into(),
                source: Box::new(source),
            })?;
    }
    Ok(LayerMatch::Mapped {
        pairs: pairs
            .into_iter()
            .map(|(l, o)| (l.name, o.dense.name.clone()))
            .collect(),
        given: names.is_some(),
    })
}

/// The file's layer names (each tensor's name up to its last dot, or the
/// whole name), once each, in natural order.
fn file_layer_names(st: &SafeTensors<'_>) -> Vec<String> {
    let mut v: Vec<String> = st
        .names()
        .into_iter()
        .map(|n| split_name(n).map_or(n, |(l, _)| l).to_string())
        .collect();
    v.sort_by(|a, b| natural_cmp(a, b));
    v.dedup();
    v
}

/// Reads a state_dict file into `model`'s parameters (PyTorch's
/// `load_state_dict(strict=True)`).
pub fn load<M: Module, B: Backend>(
    path: &Path,
    model: &M,
    mem: &mut Memory<'_, B>,
) -> Result<(), StateDictError> {
    let bytes = std::fs::read(path).map_err(|source| StateDictError::Io {
        path: path.into(),
        source,
    })?;
    load_bytes(path, &bytes, model, mem, "")
}

#[cfg(test)]
mod tests {
    use super::*;
    use ember_nn_core::deploy::Activation;
    use ember_nn_core::nn::Mlp;
    use ember_nn_core::{Cpu, Rng};

    #[test]
    fn round_trip_and_strictness() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        let mut buf = vec![0.0f32; 4096];
        let mut mem = Memory::new(&Cpu, &mut buf[..]);
        let a = Mlp::new(&mut mem, &mut Rng::new(1), &[4, 6, 3], Activation::Relu).unwrap();
        let b = Mlp::new(&mut mem, &mut Rng::new(2), &[4, 6, 3], Activation::Relu).unwrap();
        save(&path, &a, &mem).unwrap();
        load(&path, &b, &mut mem).unwrap();
        let (ta, tb) = (
            named_tensors(&a, &mem).unwrap(),
            named_tensors(&b, &mem).unwrap(),
        );
        for (x, y) in ta.iter().zip(&tb) {
            assert_eq!((&x.name, &x.shape, &x.data), (&y.name, &y.shape, &y.data));
        }
        assert_eq!(ta[0].name, "0.weight");
        assert_eq!(ta[0].shape, vec![6, 4]);
        assert_eq!(ta[2].name, "2.weight");

        // Different architectures are typed errors that name the file and tensor.
        let wider = Mlp::new(&mut mem, &mut Rng::new(3), &[4, 7, 3], Activation::Relu).unwrap();
        let e = load(&path, &wider, &mut mem).unwrap_err();
        assert!(matches!(e, StateDictError::Shape { .. }), "{e}");
        assert!(e.to_string().contains("m.safetensors") && e.to_string().contains("0.weight"));
        let deeper = Mlp::new(&mut mem, &mut Rng::new(3), &[4, 6, 6, 3], Activation::Relu).unwrap();
        assert!(matches!(
            load(&path, &deeper, &mut mem),
            Err(StateDictError::Shape { .. } | StateDictError::Missing { .. })
        ));
        let shallow = Mlp::new(&mut mem, &mut Rng::new(3), &[4, 6], Activation::Relu).unwrap();
        assert!(matches!(
            load(&path, &shallow, &mut mem),
            Err(StateDictError::Unexpected { .. })
        ));

        // Corrupt and truncated files.
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        assert!(matches!(
            load(&path, &b, &mut mem),
            Err(StateDictError::Parse { .. })
        ));
        std::fs::write(&path, b"not safetensors").unwrap();
        assert!(matches!(
            load(&path, &b, &mut mem),
            Err(StateDictError::Parse { .. })
        ));
        assert!(matches!(
            load(&dir.path().join("absent"), &b, &mut mem),
            Err(StateDictError::Io { .. })
        ));
    }

    /// A batch norm's buffers go with its parameters, by PyTorch's names;
    /// PyTorch's own file (an int64 `num_batches_tracked`) loads.
    #[test]
    fn batch_norm_buffers_round_trip_and_load_from_pytorch() {
        use ember_nn_core::nn::{BatchNorm1d, Build, Linear};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bn.safetensors");
        let mut buf = vec![0.0f32; 4096];
        let mut mem = Memory::new(&Cpu, &mut buf[..]);
        type Net = (Linear<2, 3>, BatchNorm1d<3>);
        let a = Net::build(&mut mem, &mut Rng::new(1)).unwrap();
        let b = Net::build(&mut mem, &mut Rng::new(2)).unwrap();
        mem.write(a.1.running_mean, &[0.5, -1.0, 2.0]).unwrap();
        mem.write(a.1.running_var, &[1.5, 0.25, 3.0]).unwrap();
        mem.write(a.1.num_batches_tracked, &[7.0]).unwrap();
        save(&path, &a, &mem).unwrap();
        let st_bytes = std::fs::read(&path).unwrap();
        let st = SafeTensors::deserialize(&st_bytes).unwrap();
        let mut names = st.names();
        names.sort();
        assert_eq!(
            names,
            [
                "0.bias",
                "0.weight",
                "1.bias",
                "1.num_batches_tracked",
                "1.running_mean",
                "1.running_var",
                "1.weight"
            ]
        );
        load(&path, &b, &mut mem).unwrap();
        assert_eq!(
            named_buffers(&b, &mem).unwrap(),
            named_buffers(&a, &mem).unwrap()
        );
        assert_eq!(
            named_tensors(&b, &mem).unwrap(),
            named_tensors(&a, &mem).unwrap()
        );

        // PyTorch's nn.BatchNorm1d(3) after two steps (scripts/torch-fixtures.py).
        let torch =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/torch_batchnorm.safetensors");
        let bn = BatchNorm1d::<3>::new(&mut mem).unwrap();
        load(&torch, &bn, &mut mem).unwrap();
        let (mut rv, mut nb) = ([0.0f32; 3], [0.0f32]);
        mem.read(bn.running_var, &mut rv).unwrap();
        mem.read(bn.num_batches_tracked, &mut nb).unwrap();
        assert_eq!(nb, [2.0]);
        assert!((rv[0] - 1.126_666_5).abs() < 1e-6, "{rv:?}");
        assert_eq!(mem.value(&bn.weight).unwrap(), [1.5, -0.5, 2.0]);
    }

    #[test]
    fn half_precision_conversion() {
        assert_eq!(f16_to_f32(0x3C00), 1.0);
        assert_eq!(f16_to_f32(0xC000), -2.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x7BFF), 65504.0);
        assert!(f16_to_f32(0x7C00).is_infinite());
    }
}
