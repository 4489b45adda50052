//! safetensors interchange with PyTorch: a model's `state_dict` with
//! PyTorch's names and layouts (`0.weight` as `[out, in]`, `0.bias`), written
//! and read strictly (every tensor present, shapes equal, nothing extra).

use crate::atomic::write_atomic;
use ember_core::nn::Module;
use ember_core::{Backend, Memory};
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
        source: Box<ember_core::Error>,
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
) -> Result<Vec<NamedTensor>, ember_core::Error> {
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

/// Serializes tensors (and optional metadata) to safetensors bytes, f32 little-endian.
pub fn to_bytes(
    tensors: &[NamedTensor],
    metadata: Option<HashMap<String, String>>,
) -> Result<Vec<u8>, String> {
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
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    safetensors::serialize(views, metadata).map_err(|e| e.to_string())
}

/// Writes `model`'s state_dict as safetensors (atomically).
pub fn save<M: Module, B: Backend>(
    path: &Path,
    model: &M,
    mem: &Memory<'_, B>,
) -> Result<(), StateDictError> {
    let tensors = named_tensors(model, mem).map_err(|source| StateDictError::Memory {
        path: path.into(),
        source: Box::new(source),
    })?;
    let bytes = to_bytes(&tensors, None).map_err(|msg| StateDictError::Parse {
        path: path.into(),
        msg,
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

/// Reads a state_dict from safetensors `bytes` into `model`'s parameters in
/// `mem`, strictly. Nothing is written unless every tensor checks out.
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
    let mut staged: Vec<(ember_core::Span, Vec<f32>)> = Vec::new();
    let mut wanted = Vec::new();
    let mut first_err = None;
    model.named_parameters(&mut |p| {
        if first_err.is_some() {
            return;
        }
        let name = format!("{prefix}{}", p.name);
        wanted.push(name.clone());
        let r = (|| {
            let view = st.tensor(&name).map_err(|_| StateDictError::Missing {
                path: path.into(),
                name: name.clone(),
            })?;
            let expected = p.dims.as_slice().to_vec();
            if view.shape() != expected.as_slice() {
                return Err(StateDictError::Shape {
                    path: path.into(),
                    name: name.clone(),
                    expected,
                    found: view.shape().to_vec(),
                });
            }
            Ok((p.param.value, to_f32(path, &name, &view)?))
        })();
        match r {
            Ok(s) => staged.push(s),
            Err(e) => first_err = Some(e),
        }
    });
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
    use ember_core::deploy::Activation;
    use ember_core::nn::Mlp;
    use ember_core::{Cpu, Rng};

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

    #[test]
    fn half_precision_conversion() {
        assert_eq!(f16_to_f32(0x3C00), 1.0);
        assert_eq!(f16_to_f32(0xC000), -2.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x7BFF), 65504.0);
        assert!(f16_to_f32(0x7C00).is_infinite());
    }
}
