//! Writes the seed corpora under `fuzz/corpus/<target>/`: tiny valid files
//! made by the project's own writers (and a few hand-made variants), each a
//! few hundred bytes to a few KB. `scripts/fuzz.sh corpus` runs it; the
//! output is committed, so it only needs running again when a format changes.

use ember_nn_core::deploy::{self, Activation, Calibration, Model};
use ember_nn_core::nn::{
    AvgPool2d, Build, Conv2d, Flatten, Forward, Linear, MaxPool2d, Mlp, Module, ReLU, Sigmoid, Tanh,
};
use ember_nn_core::{Const, Cpu, Memory, Rng, Shape, Tensor};
use ember_nn_std::checkpoint::{Checkpoint, Meta};
use ember_nn_std::config::ActivationKind;
use ember_nn_std::data::idx;
use ember_nn_std::image::{write_pgm, Grey};
use ember_nn_std::state_dict::{self, NamedTensor};
use ember_nn_std::train::EpochMetrics;
use std::fs;
use std::path::{Path, PathBuf};

type Small = (Linear<4, 8>, ReLU, Linear<8, 3>);
type Deep = (Linear<5, 6>, Tanh, Linear<6, 6>, ReLU, Linear<6, 2>);

fn main() {
    let root = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "fuzz/corpus".into()),
    );
    emb(&root.join("emb"));
    safetensors(&root.join("safetensors"));
    checkpoint(&root.join("checkpoint"));
    idx_files(&root.join("idx"), &root.join("idx_gz"));
    csv(&root.join("csv"));
    csv_table(&root.join("csv_table"));
    npy(&root.join("npy"));
    image(&root.join("image"));
}

fn put(dir: &Path, name: &str, bytes: &[u8]) {
    fs::create_dir_all(dir).expect("creating the corpus directory");
    fs::write(dir.join(name), bytes).expect("writing a seed");
    println!("{:>6} bytes  {}", bytes.len(), dir.join(name).display());
}

/// An f32 export of `M` and its int8 quantization (calibrated on a few inputs).
/// The f32 file, its int8 quantization, and the int8 one with an input step.
fn export<M, const IN: usize, const OUT: usize>(seed: u64) -> (Vec<u8>, Vec<u8>, Vec<u8>)
where
    M: Build
        + ember_nn_core::nn::Module
        + for<'t> Forward<Tensor<'t, (usize, Const<IN>)>, Output = Tensor<'t, (usize, Const<OUT>)>>,
{
    let mut buf = vec![0.0f32; 8192];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let net = M::build(&mut mem, &mut Rng::new(seed)).expect("building the model");
    let len = deploy::plan(&net, &mut mem, |p| {
        net.forward(p.input((p.rows(), Const::<IN>)))
    })
    .expect("tracing the model")
    .file_len();
    let mut words = vec![0u32; len.div_ceil(4)];
    let mut fscratch = vec![0.0f32; 4096];
    let n = deploy::export_f32(
        &net,
        &mut mem,
        |p| net.forward(p.input((p.rows(), Const::<IN>))),
        ember_fuzz::bytes_mut(&mut words),
        &mut fscratch,
    )
    .expect("export");
    let f32_file = ember_fuzz::bytes(&words)[..n].to_vec();
    let model = Model::parse(&ember_fuzz::bytes(&words)[..n]).expect("parsing the export");
    let mut calib = Calibration::new();
    let mut scratch = vec![0.0f32; model.scratch_len()];
    for s in 0..4 {
        let x: Vec<f32> = (0..model.input_features())
            .map(|i| ((i * 7 + s * 3) % 11) as f32 / 5.0 - 1.0)
            .collect();
        calib
            .observe(&model, &x, &mut scratch)
            .expect("calibration");
    }
    let qlen = deploy::quantized_len(&model);
    let mut qwords = vec![0u32; qlen.div_ceil(4)];
    let qn =
        deploy::quantize(&model, &calib, ember_fuzz::bytes_mut(&mut qwords)).expect("quantize");
    let int8_file = ember_fuzz::bytes(&qwords)[..qn].to_vec();
    let features = model.input_features();
    let offset: Vec<f32> = (0..features).map(|i| i as f32 * 0.25 - 1.0).collect();
    let scale: Vec<f32> = (0..features).map(|i| 1.0 + i as f32 * 0.5).collect();
    let step = deploy::InputStep {
        offset: &offset,
        scale: &scale,
    };
    let slen = qlen + deploy::InputStep::file_len(features);
    let mut swords = vec![0u32; slen.div_ceil(4)];
    let sn = deploy::quantize_with_input_step(
        &model,
        &calib,
        step,
        ember_fuzz::bytes_mut(&mut swords),
    )
    .expect("quantize with an input step");
    let step_file = ember_fuzz::bytes(&swords)[..sn].to_vec();
    (f32_file, int8_file, step_file)
}

fn emb(dir: &Path) {
    let (f, q, s) = export::<Small, _, _>(1);
    put(dir, "small-f32.emb", &f);
    put(dir, "small-int8.emb", &q);
    put(dir, "small-int8-step.emb", &s);
    // Tanh: the int8 files have an activation table (flag bit 1).
    let (f, q, s) = export::<Deep, _, _>(2);
    put(dir, "deep-f32.emb", &f);
    put(dir, "deep-int8.emb", &q);
    put(dir, "deep-int8-step.emb", &s);
    put(dir, "cnn-f32.emb", &graph_file());
    put(dir, "cnn-tanh-int8.emb", &tanh_graph_int8());
}

/// An int8 graph file with activation tables: a convolution's tanh and a
/// pooling's sigmoid.
fn tanh_graph_int8() -> Vec<u8> {
    type Cnn = (
        Conv2d<1, 2, 3, 1, 1>,
        Tanh,
        MaxPool2d<2>,
        Sigmoid,
        Flatten<8>,
        Linear<8, 2>,
    );
    let mut buf = vec![0.0f32; 1 << 16];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let net = Cnn::build(&mut mem, &mut Rng::new(4)).expect("building the CNN");
    let shape = |n: usize| (n, Const::<1>, Const::<4>, Const::<4>);
    let (words, n) = graph_words(&net, &mut mem, |p| net.forward(p.input(shape(p.rows()))));
    let graph = deploy::GraphModel::parse(&ember_fuzz::bytes(&words)[..n]).expect("a graph");
    let mut calib = deploy::GraphCalibration::new();
    let mut arena = vec![0.0f32; graph.scratch_len()];
    for i in 0..8 {
        let x: Vec<f32> = (0..16).map(|j| ((i * 5 + j) % 9) as f32 / 4.0 - 1.0).collect();
        calib.observe(&graph, &x, &mut arena).expect("calibrating");
    }
    let mut q = vec![0u32; deploy::graph_quantized_len(&graph).div_ceil(4)];
    let qn = deploy::quantize_graph(&graph, &calib, ember_fuzz::bytes_mut(&mut q))
        .expect("quantizing the CNN");
    ember_fuzz::bytes(&q)[..qn].to_vec()
}

/// A small CNN's graph file (version 3): convolutions with padding and
/// stride, a max and an average pooling, a dense head.
fn graph_file() -> Vec<u8> {
    type Cnn = (
        Conv2d<1, 2, 3, 1, 1>,
        ReLU,
        MaxPool2d<2>,
        Conv2d<2, 3, 3, 2, 1>,
        AvgPool2d<2>,
        Flatten<3>,
        Linear<3, 2>,
    );
    let mut buf = vec![0.0f32; 1 << 16];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let net = Cnn::build(&mut mem, &mut Rng::new(3)).expect("building the CNN");
    let shape = |n: usize| (n, Const::<1>, Const::<8>, Const::<8>);
    let (words, n) = graph_words(&net, &mut mem, |p| net.forward(p.input(shape(p.rows()))));
    ember_fuzz::bytes(&words)[..n].to_vec()
}

/// A CNN's f32 graph file, exported through `forward`: its 4-byte-aligned
/// words and its length in bytes.
fn graph_words<M: Module, S: Shape>(
    net: &M,
    mem: &mut Memory<'_, Cpu>,
    forward: impl for<'t> Fn(&deploy::Probe<'t, Cpu>) -> Tensor<'t, S, Cpu>,
) -> (Vec<u32>, usize) {
    let plan = deploy::plan(net, mem, &forward).expect("tracing the CNN");
    let mut words = vec![0u32; plan.file_len().div_ceil(4)];
    let mut scratch = vec![0.0f32; plan.scratch_len()];
    let n = deploy::export_f32(net, mem, forward, ember_fuzz::bytes_mut(&mut words), &mut scratch)
        .expect("exporting the CNN");
    (words, n)
}

fn mlp_tensors(widths: &[usize], seed: u64) -> Vec<NamedTensor> {
    let mut buf = vec![0.0f32; 1024];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let mlp = Mlp::new(&mut mem, &mut Rng::new(seed), widths, Activation::Relu).expect("an MLP");
    state_dict::named_tensors(&mlp, &mem).expect("reading the parameters")
}

/// The fuzz target's first byte: architecture index (low bits), prefix `model.` (0x80).
fn safetensors(dir: &Path) {
    for (sel, widths) in [(0u8, &[4usize, 6, 3][..]), (1, &[2, 3]), (2, &[3, 5, 4, 2])] {
        let tensors = mlp_tensors(widths, u64::from(sel) + 1);
        let plain = state_dict::to_bytes(&tensors, None).expect("safetensors bytes");
        put(
            dir,
            &format!("mlp{sel}.bin"),
            &[&[sel][..], &plain].concat(),
        );
        if sel == 0 {
            let prefixed: Vec<NamedTensor> = tensors
                .iter()
                .map(|t| NamedTensor {
                    name: format!("model.{}", t.name),
                    ..t.clone()
                })
                .collect();
            let b = state_dict::to_bytes(&prefixed, None).expect("safetensors bytes");
            put(dir, "mlp0-prefixed.bin", &[&[0x80u8][..], &b].concat());
        }
    }
}

fn checkpoint(dir: &Path) {
    let metrics = EpochMetrics {
        epoch: 1,
        train_loss: 0.9,
        train_acc: Some(0.6),
        val_loss: Some(1.0),
        val_acc: None,
        lr: 0.01,
        samples_per_sec: 1000.0,
        seconds: 0.5,
    };
    let params = mlp_tensors(&[4, 6, 3], 7);
    let c = Checkpoint {
        meta: Meta {
            widths: vec![4, 6, 3],
            activation: Some(ActivationKind::Relu),
            epoch: 1,
            optimizer_steps: 3,
            lrs: vec![0.01],
            scheduler: serde_json::json!({"kind": "step", "gamma": 0.5}),
            loader_rng: [1, 2, 3, 4],
            loader_epoch: 1,
            best_val_loss: Some(1.0),
            bad_epochs: 0,
            history: vec![metrics],
            config: serde_json::json!({"batch": 8}),
            settings: serde_json::Value::Null,
            model: serde_json::Value::Null,
        },
        // The best epoch's parameters, as a run with early stopping stores them.
        best_params: Some(params.clone()),
        params,
        optimizer: vec![0.0, 0.5, -0.25, 1.0],
    };
    let tmp = std::env::temp_dir().join(format!("ember-fuzz-seed-{}.ckpt", std::process::id()));
    c.save(&tmp).expect("saving the checkpoint");
    let bytes = fs::read(&tmp).expect("reading it back");
    let _ = fs::remove_file(&tmp);
    Checkpoint::from_bytes(&tmp, &bytes).expect("the seed loads");
    put(dir, "mlp-4-6-3.ckpt", &bytes);
}

fn idx_files(raw: &Path, gz: &Path) {
    let images = idx::encode_idx(&[2, 3, 3], &(0..18).map(|i| i * 13).collect::<Vec<u8>>())
        .expect("encoding");
    let labels = idx::encode_idx(&[5], &[0, 1, 2, 9, 3]).expect("encoding");
    let rank2 = idx::encode_idx(&[2, 2], &[1, 2, 3, 4]).expect("encoding");
    let empty = idx::encode_idx(&[0, 28, 28], &[]).expect("encoding");
    put(raw, "images-2x3x3", &images);
    put(raw, "labels-5", &labels);
    put(raw, "rank2", &rank2);
    put(raw, "images-empty", &empty);
    // idx_gz: mode byte 1 (compressed by the target), 3 (two members),
    // 0 (the bytes of a .gz file as written by write_idx).
    put(
        gz,
        "images-compressed-here",
        &[&[1u8][..], &images].concat(),
    );
    put(gz, "labels-two-members", &[&[3u8][..], &labels].concat());
    let tmp = std::env::temp_dir().join(format!("ember-fuzz-seed-{}.gz", std::process::id()));
    idx::write_idx(&tmp, &[5], &[0, 1, 2, 9, 3]).expect("writing gzip");
    let file = fs::read(&tmp).expect("reading it back");
    let _ = fs::remove_file(&tmp);
    put(gz, "labels-gz-file", &[&[0u8][..], &file].concat());
}

/// The fuzz target's first two bytes are options (see fuzz_targets/csv.rs):
/// 0, 0: header, commas, integer labels in the last column.
fn csv(dir: &Path) {
    put(
        dir,
        "iris-like",
        b"\x00\x00a,b,label\n1.5,2,0\n3,4.25,1\n\n-1,0,2\n",
    );
    // 0x10: class names; ';' (delimiter index 1 << 1 = 0x02).
    put(
        dir,
        "names-semicolon",
        b"\x12\x00x;species\n1;virginica\n2;setosa\n3;\"vir;ginica\"\n",
    );
    // No header (bit 0), label at index 0 (b = 1 | 0 << 2), tabs (2 << 1).
    put(dir, "no-header-tabs", b"\x05\x01 1\t0.5\t7\n0\t1e3\t-2\n");
    // Label by name, features by index, 4 classes.
    put(dir, "named-label", b"\x60\x42a,label,b\n1,3,2\n\"4\",0,5\n");
}

/// The fuzz target's first byte is options (see fuzz_targets/csv_table.rs):
/// 0: header decided from the data, commas, the last column the target.
fn csv_table(dir: &Path) {
    put(
        dir,
        "iris-like",
        b"\x00sepal,petal,species\r\n5.1,1.4,setosa\r\n7.0,4.7,versicolor\r\n6.3,6.0,virginica\r\n4.9,1.5,setosa\r\n",
    );
    // A BOM, a quoted field across lines, a blank line; header yes (1).
    put(
        dir,
        "quoted-bom",
        b"\x01\xef\xbb\xbfx,\"la,bel\"\n1,\"two\nlines\"\n\n2,\"b\"\"c\"\n3,two\nlines\n",
    );
    // No header (2), ';' (1 << 2), integer labels, target index 0 (1 << 4).
    put(
        dir,
        "integers-semicolon",
        b"\x16 3;0.5;7\n1;1e3;-2\n3;2;2\n1;4;4\n",
    );
    // Features by index and name (0x40), target named `label` (2 << 4).
    put(dir, "named", b"\x60x,label,y\n1,0,2\n4,1,5\n4,1,nan\n");
}

/// A NumPy `.npy` file (version 1.0) of `descr` values in `data`.
fn npy_file(descr: &str, fortran: bool, shape: &[usize], data: &[u8]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut header = format!(
        "{{'descr': '{descr}', 'fortran_order': {}, 'shape': {shape}, }}",
        if fortran { "True" } else { "False" }
    );
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

/// The fuzz target's first byte picks the reader (see fuzz_targets/npy.rs):
/// 0 a `.npy`, 1 features and labels (the second byte times 4 is where the
/// labels start), 2 an `.npz`.
fn npy(dir: &Path) {
    let f32s: Vec<u8> = [1.0f32, 2.0, 0.0, 3.0, 4.0, 1.0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let x = npy_file("<f4", false, &[3, 2], &f32s);
    put(dir, "f32", &[&[0u8][..], &x].concat());
    let f64s: Vec<u8> = [1.0f64, 2.0, 3.0, 4.0]
        .iter()
        .flat_map(|v| v.to_be_bytes())
        .collect();
    put(
        dir,
        "f64-big-endian-fortran",
        &[&[0u8][..], &npy_file(">f8", true, &[2, 2], &f64s)].concat(),
    );
    put(
        dir,
        "bool",
        &[&[0u8][..], &npy_file("|b1", false, &[4], &[0, 1, 1, 0])].concat(),
    );
    let y: Vec<u8> = [0i64, 1, 0].iter().flat_map(|v| v.to_le_bytes()).collect();
    let y = npy_file("<i8", false, &[3], &y);
    // The features' file is padded to a multiple of 4 bytes (it is: 128 + 24).
    let split = u8::try_from(x.len() / 4).expect("a small file");
    put(
        dir,
        "features-labels",
        &[&[1u8, split][..], &x, &y].concat(),
    );
    let mut zipped = Vec::new();
    {
        let mut z = zip::ZipWriter::new(std::io::Cursor::new(&mut zipped));
        let stored = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        let deflated = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        z.start_file("x.npy", stored).expect("zip");
        std::io::Write::write_all(&mut z, &x).expect("zip");
        z.start_file("y.npy", deflated).expect("zip");
        std::io::Write::write_all(&mut z, &y).expect("zip");
        z.finish().expect("zip");
    }
    put(dir, "npz", &[&[2u8][..], &zipped].concat());
    put(
        dir,
        "unicode-dtype",
        &[&[0u8][..], &npy_file("<U1", false, &[1], b"a\0\0\0")].concat(),
    );
}

fn image(dir: &Path) {
    let g = Grey {
        width: 3,
        height: 2,
        pixels: vec![0.0, 0.5, 1.0, 1.0, 0.25, 0.0],
    };
    put(dir, "grey.pgm", &write_pgm(&g));
    put(dir, "text.pgm", b"P2\n# comment\n3 2\n10\n0 10 5\n1 2 3\n");
    put(dir, "sixteen-bit.pgm", b"P5 2 1 1000\n\x00\x10\x03\xe8");
    let png = |color: png::ColorType, depth: png::BitDepth, data: &[u8]| {
        let mut out = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut out, 3, 2);
            enc.set_color(color);
            enc.set_depth(depth);
            if color == png::ColorType::Indexed {
                enc.set_palette(vec![0, 0, 0, 255, 255, 255, 10, 200, 30]);
            }
            let mut w = enc.write_header().expect("png header");
            w.write_image_data(data).expect("png data");
        }
        out
    };
    use png::{BitDepth as D, ColorType as C};
    put(
        dir,
        "grey.png",
        &png(C::Grayscale, D::Eight, &[0, 50, 100, 150, 200, 255]),
    );
    put(dir, "rgb.png", &png(C::Rgb, D::Eight, &[9; 18]));
    put(dir, "rgba.png", &png(C::Rgba, D::Eight, &[200; 24]));
    put(
        dir,
        "grey-alpha-16.png",
        &png(C::GrayscaleAlpha, D::Sixteen, &[7; 24]),
    );
    put(
        dir,
        "indexed-2bit.png",
        &png(C::Indexed, D::Two, &[0b0001_1000, 0b1001_0000]),
    );
    // Adam7 interlacing (the encoder writes none): the IHDR flag set, the
    // chunk CRC repaired; the pixel data stays a single pass, so the decoder
    // meets an interlaced image whose passes are short.
    let mut interlaced = png(C::Grayscale, D::Eight, &[0, 50, 100, 150, 200, 255]);
    interlaced[8 + 8 + 12] = 1;
    let crc = deploy::crc32(0, &interlaced[12..12 + 4 + 13]);
    interlaced[29..33].copy_from_slice(&crc.to_be_bytes());
    put(dir, "grey-interlaced.png", &interlaced);
}
