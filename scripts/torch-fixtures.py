#!/usr/bin/env python3
"""Writes the test fixtures that only PyTorch can make (needs torch,
safetensors, numpy):

- std-backend/tests/data/torch_mlp_class.{safetensors,json}: the tutorials'
  `class MLP(nn.Module)` with `hidden` and `out`, its state_dict saved with
  `safetensors.torch.save_file`, an input and PyTorch's logits for it;
- std-backend/tests/data/torch_conventions.json: gradients at kinks and ties and a
  long float32 mean, as PyTorch computes them;
- std-backend/tests/data/torch_batchnorm.{safetensors,json}: `nn.BatchNorm1d(3)` through two
  training steps and an evaluation (outputs, running statistics, gradients),
  the numbers pinned in tests/tests/reference.rs;
- tests/tests/data/torch_batchnorm2d.json: `nn.BatchNorm2d(3)` on `[2, 3, 2, 3]` batches
  through two training steps (outputs, the second's gradients, the running statistics),
  then an evaluation step, the inputs given by formulas of their flat index (multiples of
  1/4 or 1/8, exact in float32) that tests/tests/reference.rs writes the same way; it
  reads the outputs from this file;
- std-backend/tests/data/torch_conv.json: convolutions (strides, dilations,
  groups, depthwise, TFLite's SAME at stride 2) and pooling (max-pool ties at
  the borders, average pooling counting the padding), forward outputs and
  the gradients of a weighted sum, read by tests/tests/reference_conv.rs;
- std-backend/tests/data/torch_zoo_{kws,resnet8}.{safetensors,json}: MLPerf Tiny's
  keyword-spotting DS-CNN and ResNet-8 as the PyTorch classes `KwsDsCnn` and
  `ResNet8` below (the names of `ember_nn_core::nn::zoo`), seeded, with their
  batch norms' parameters and running statistics randomised; the state_dict,
  and PyTorch's logits in evaluation and training mode for a batch of two
  inputs given by a formula (`sin(0.01 · k)` of the flat index k, float64 then
  float32), read by tests/tests/zoo.rs;
- tests/tests/data/torch_losses.json: the regression losses (`HuberLoss` at
  several deltas, `L1Loss`, `MSELoss`, means and sums) with their gradients,
  on differences that sit exactly at Huber's delta and at 0, read by
  tests/tests/reference.rs.

    python3 scripts/torch-fixtures.py
"""
import json
import pathlib

import torch
from safetensors.torch import save_file

ROOT = pathlib.Path(__file__).resolve().parent.parent


class MLP(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.hidden = torch.nn.Linear(10, 5)
        self.out = torch.nn.Linear(5, 2)

    def forward(self, x):
        return self.out(torch.nn.functional.relu(self.hidden(x)))


def mlp_class():
    torch.manual_seed(0)
    net = MLP()
    x = torch.rand(3, 10)
    with torch.no_grad():
        y = net(x)
    data = ROOT / "std-backend" / "tests" / "data"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()},
              str(data / "torch_mlp_class.safetensors"))
    (data / "torch_mlp_class.json").write_text(json.dumps({
        "made_by": f"PyTorch {torch.__version__}: scripts/torch-fixtures.py "
                   "(class MLP: hidden = Linear(10, 5), out = Linear(5, 2); torch.manual_seed(0))",
        "input": x.tolist(),
        "logits": y.tolist(),
    }, indent=1) + "\n")


def grad(f, x):
    x = torch.tensor(x, requires_grad=True)
    f(x).backward()
    return x.grad.tolist()


def conventions():
    n = 55_643
    vals = torch.tensor([0.1 + (i % 7) * 1e-3 for i in range(n)], dtype=torch.float32)
    exact = sum(float(v) for v in vals.tolist()) / n
    out = {
        "made_by": f"PyTorch {torch.__version__}: scripts/torch-fixtures.py",
        "clamp_0_1_grad": {"x": [-1.0, 0.0, 0.5, 1.0, 2.0],
                           "grad": grad(lambda x: x.clamp(0.0, 1.0).sum(), [-1.0, 0.0, 0.5, 1.0, 2.0])},
        "max_grad": {"x": [1.0, 3.0, 3.0, -2.0, 3.0],
                     "grad": grad(lambda x: x.max() * 6.0, [1.0, 3.0, 3.0, -2.0, 3.0])},
        "amax_dim1_grad": {"x": [[1.0, 1.0], [0.0, 2.0]],
                           "grad": grad(lambda x: torch.amax(x, dim=1).sum(), [[1.0, 1.0], [0.0, 2.0]])},
        "amax_dim0_grad": {"x": [[1.0, 4.0], [3.0, 4.0]],
                           "grad": grad(lambda x: torch.amax(x, dim=0).sum(), [[1.0, 4.0], [3.0, 4.0]])},
        "relu_grad": {"x": [-1.0, 0.0, 1.0],
                      "grad": grad(lambda x: torch.relu(x).sum(), [-1.0, 0.0, 1.0])},
        "abs_grad": {"x": [-1.0, 0.0, 1.0],
                     "grad": grad(lambda x: x.abs().sum(), [-1.0, 0.0, 1.0])},
        "leaky_relu_0_1_grad": {"x": [-1.0, 0.0, 1.0],
                                "grad": grad(lambda x: torch.nn.functional.leaky_relu(x, 0.1).sum(),
                                             [-1.0, 0.0, 1.0])},
        "elu_1_grad": {"x": [-1.0, 0.0, 1.0],
                       "grad": grad(lambda x: torch.nn.functional.elu(x, 1.0).sum(), [-1.0, 0.0, 1.0])},
        "long_mean": {"n": n, "value": "0.1 + (i % 7) * 1e-3",
                      "torch_mean": float(vals.mean()), "exact": exact,
                      "torch_rel_err": abs(float(vals.mean()) - exact) / exact},
    }
    path = ROOT / "std-backend" / "tests" / "data"
    (path / "torch_conventions.json").write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out, indent=1))


def batchnorm():
    bn = torch.nn.BatchNorm1d(3)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.5, -0.5, 2.0]))
        bn.bias.copy_(torch.tensor([0.1, 0.2, -0.3]))
    x1 = [[0.5, -1.0, 2.0], [1.5, 0.0, -1.0], [-0.5, 2.0, 0.5], [2.5, 1.0, 0.0]]
    x2 = [[1.0, 3.0, -2.0], [0.0, -1.0, 1.0], [2.0, 0.5, 0.0], [-1.0, 1.5, 3.0]]
    w = [[0.3, -0.7, 1.1], [0.9, 0.2, -0.4], [-0.6, 0.8, 0.5], [0.1, -0.3, 0.7]]
    bn.train()
    y1 = bn(torch.tensor(x1))
    x2t = torch.tensor(x2, requires_grad=True)
    y2 = bn(x2t)
    (y2 * torch.tensor(w)).sum().backward()
    train = {"y1": y1.tolist(), "y2": y2.tolist(), "x2_grad": x2t.grad.tolist(),
             "weight_grad": bn.weight.grad.tolist(), "bias_grad": bn.bias.grad.tolist(),
             "running_mean": bn.running_mean.tolist(), "running_var": bn.running_var.tolist(),
             "num_batches_tracked": int(bn.num_batches_tracked)}
    bn.zero_grad()
    bn.eval()
    x3 = [[0.2, -0.4, 1.0], [1.8, 2.2, -0.6]]
    x3t = torch.tensor(x3, requires_grad=True)
    y3 = bn(x3t)
    (y3 * torch.tensor(w[:2])).sum().backward()
    ev = {"y": y3.tolist(), "x_grad": x3t.grad.tolist(), "weight_grad": bn.weight.grad.tolist(),
          "bias_grad": bn.bias.grad.tolist()}
    out = {"made_by": f"PyTorch {torch.__version__}: scripts/torch-fixtures.py",
           "weight": [1.5, -0.5, 2.0], "bias": [0.1, 0.2, -0.3], "x1": x1, "x2": x2, "w": w,
           "x3": x3, "train": train, "eval": ev,
           "state_dict": list(bn.state_dict().keys())}
    path = ROOT / "std-backend" / "tests" / "data"
    # After the two training steps: num_batches_tracked is an int64.
    save_file({k: v.contiguous() for k, v in bn.state_dict().items()},
              str(path / "torch_batchnorm.safetensors"))
    (path / "torch_batchnorm.json").write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out))


def batchnorm2d():
    torch.manual_seed(0)
    bn = torch.nn.BatchNorm2d(3)
    weight, bias = [1.5, -0.5, 2.0], [0.1, 0.2, -0.3]
    with torch.no_grad():
        bn.weight.copy_(torch.tensor(weight))
        bn.bias.copy_(torch.tensor(bias))
    shape = (2, 3, 2, 3)

    # The same formulas as in tests/tests/reference.rs.
    def make(n, f):
        return torch.tensor([f(i) for i in range(n)], dtype=torch.float32)

    x1 = make(36, lambda i: ((i * 37) % 19 - 9) * 0.25).reshape(shape)
    x2 = make(36, lambda i: ((i * 23 + 5) % 17 - 8) * 0.25).reshape(shape)
    w = make(36, lambda i: ((i * 13 + 3) % 11 - 5) * 0.125).reshape(shape)
    x3 = make(18, lambda i: ((i * 29 + 7) % 13 - 6) * 0.25).reshape(1, 3, 2, 3)
    bn.train()
    y1 = bn(x1)
    x2t = x2.clone().requires_grad_()
    y2 = bn(x2t)
    (y2 * w).sum().backward()
    flat = lambda t: t.detach().reshape(-1).tolist()
    out = {"made_by": f"PyTorch {torch.__version__}: scripts/torch-fixtures.py "
                      "(nn.BatchNorm2d(3), weight and bias set, inputs by formula)",
           "shape": list(shape), "weight": weight, "bias": bias,
           "x1": flat(x1), "x2": flat(x2), "w": flat(w), "x3": flat(x3),
           "train_y1": flat(y1), "train_y2": flat(y2), "train_x2_grad": flat(x2t.grad),
           "train_weight_grad": flat(bn.weight.grad), "train_bias_grad": flat(bn.bias.grad),
           "running_mean": flat(bn.running_mean), "running_var": flat(bn.running_var),
           "num_batches_tracked": int(bn.num_batches_tracked)}
    bn.zero_grad()
    bn.eval()
    x3t = x3.clone().requires_grad_()
    y3 = bn(x3t)
    (y3 * w[:1]).sum().backward()
    out.update({"eval_y": flat(y3), "eval_x_grad": flat(x3t.grad),
                "eval_weight_grad": flat(bn.weight.grad), "eval_bias_grad": flat(bn.bias.grad),
                "state_dict": list(bn.state_dict().keys())})
    path = ROOT / "tests" / "tests" / "data"
    path.mkdir(exist_ok=True)
    (path / "torch_batchnorm2d.json").write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out))


def conv_cases():
    F = torch.nn.functional
    g = torch.Generator().manual_seed(7)

    def rand(*shape):
        return (torch.rand(*shape, generator=g) * 2 - 1)

    def run(name, op, x, f, params, weight=None, bias=None, **meta):
        x = x.clone().requires_grad_(True)
        args = [t.clone().requires_grad_(True) for t in (weight, bias) if t is not None]
        y = f(x, *args)
        gy = rand(*y.shape)
        (y * gy).sum().backward()
        case = {"name": name, "op": op, "x_shape": list(x.shape), "x": x.flatten().tolist(),
                "y_shape": list(y.shape), "y": y.flatten().tolist(), "gy": gy.flatten().tolist(),
                "x_grad": x.grad.flatten().tolist(), **params, **meta}
        if weight is not None:
            case.update(w_shape=list(weight.shape), w=weight.flatten().tolist(),
                        w_grad=args[0].grad.flatten().tolist())
        if bias is not None:
            case.update(b=bias.tolist(), b_grad=args[1].grad.tolist())
        return case

    def conv2d(name, n, c, o, hw, k, stride, pad, dilation, groups, bias=True, same=False):
        # pad = [top, bottom, left, right], applied with F.pad as ZeroPad2d.
        x, w = rand(n, c, *hw), rand(o, c // groups, *k)
        b = rand(o) if bias else None
        f = lambda x, w, b=None: F.conv2d(F.pad(x, (pad[2], pad[3], pad[0], pad[1])), w, b,
                                          stride, 0, dilation, groups)
        return run(name, "conv2d", x, f, {"stride": stride, "pad": pad, "dilation": dilation,
                                          "groups": groups, "same": same}, w, b)

    cases = [
        conv2d("conv2d stride (2,1) dilation (1,2) padding 1x0", 2, 3, 4, (7, 6), (3, 2),
               [2, 1], [1, 1, 0, 0], [1, 2], 1),
        conv2d("conv2d groups 2 same dilation 2", 1, 4, 6, (5, 5), (3, 3), [1, 1],
               [2, 2, 2, 2], [2, 2], 2, bias=False, same=True),
        conv2d("depthwise 3x3 stride 2 padding 1", 2, 3, 3, (6, 5), (3, 3), [2, 2],
               [1, 1, 1, 1], [1, 1], 3),
        conv2d("DS-CNN stem: 10x4 stride 2, TFLite SAME (4 above, 5 below)", 1, 1, 4, (49, 10),
               (10, 4), [2, 2], [4, 5, 1, 1], [1, 1], 1, same=True),
    ]
    x, w, b = rand(2, 2, 9), rand(3, 2, 3), rand(3)
    cases.append(run("conv1d stride 2 padding 2", "conv1d", x,
                     lambda x, w, b: F.conv1d(x, w, b, 2, 2), {"stride": [1, 2],
                     "pad": [0, 0, 2, 2], "dilation": [1, 1], "groups": 1, "same": False}, w, b))
    # Integers: ties inside windows and across the border of the padding.
    ties = torch.randint(-2, 3, (2, 2, 7, 6), generator=g).float()
    cases.append(run("max_pool2d 3x3 stride 2 padding 1, ties", "max_pool2d", ties,
                     lambda x: F.max_pool2d(x, 3, 2, 1),
                     {"kernel": [3, 3], "stride": [2, 2], "pad": [1, 1, 1, 1], "dilation": [1, 1]}))
    cases.append(run("max_pool2d 2x2 stride 1 dilation 2", "max_pool2d", rand(1, 3, 6, 7),
                     lambda x: F.max_pool2d(x, 2, 1, 0, 2),
                     {"kernel": [2, 2], "stride": [1, 1], "pad": [0, 0, 0, 0], "dilation": [2, 2]}))
    cases.append(run("avg_pool2d 3x2 stride (2,1) padding (1,1), zeros counted", "avg_pool2d",
                     rand(2, 2, 7, 5), lambda x: F.avg_pool2d(x, (3, 2), (2, 1), 1),
                     {"kernel": [3, 2], "stride": [2, 1], "pad": [1, 1, 1, 1], "dilation": [1, 1]}))
    cases.append(run("max_pool1d 3 stride 2 padding 1, ties", "max_pool1d",
                     torch.randint(-1, 2, (2, 3, 8), generator=g).float(),
                     lambda x: F.max_pool1d(x, 3, 2, 1),
                     {"kernel": [1, 3], "stride": [1, 2], "pad": [0, 0, 1, 1], "dilation": [1, 1]}))
    cases.append(run("avg_pool1d 2", "avg_pool1d", rand(2, 2, 7), lambda x: F.avg_pool1d(x, 2),
                     {"kernel": [1, 2], "stride": [1, 2], "pad": [0, 0, 0, 0], "dilation": [1, 1]}))
    cases.append(run("adaptive_avg_pool2d 1", "global_avg_pool2d", rand(2, 3, 4, 5),
                     lambda x: F.adaptive_avg_pool2d(x, 1).flatten(1), {}))
    out = {"made_by": f"PyTorch {torch.__version__}: scripts/torch-fixtures.py", "cases": cases}
    path = ROOT / "std-backend" / "tests" / "data"
    (path / "torch_conv.json").write_text(json.dumps(out) + "\n")
    print(f"{len(cases)} convolution and pooling cases")


def tf_same(x, kernel, stride):
    """Zero-pads `x` as TFLite's SAME does: the padding the kernel needs
    for `ceil(in / stride)` outputs, the odd one below and to the right."""
    import math
    pads = []
    for size, k, s in zip(x.shape[-2:], kernel, stride):
        total = max((math.ceil(size / s) - 1) * s + k - size, 0)
        pads.append((total // 2, total - total // 2))
    (top, bottom), (left, right) = pads
    return torch.nn.functional.pad(x, (left, right, top, bottom))


class SameConv2d(torch.nn.Conv2d):
    """`nn.Conv2d` with TFLite's SAME padding at any stride."""

    def forward(self, x):
        return super().forward(tf_same(x, self.kernel_size, self.stride))


class DsBlock(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        self.depthwise = SameConv2d(c, c, 3, groups=c)
        self.bn1 = torch.nn.BatchNorm2d(c)
        self.pointwise = torch.nn.Conv2d(c, c, 1)
        self.bn2 = torch.nn.BatchNorm2d(c)

    def forward(self, x):
        x = torch.relu(self.bn1(self.depthwise(x)))
        return torch.relu(self.bn2(self.pointwise(x)))


class KwsDsCnn(torch.nn.Module):
    """MLPerf Tiny's keyword-spotting DS-CNN on [N, 1, 49, 10]."""

    def __init__(self):
        super().__init__()
        self.stem = SameConv2d(1, 64, (10, 4), stride=2)
        self.bn = torch.nn.BatchNorm2d(64)
        self.blocks = torch.nn.ModuleList([DsBlock(64) for _ in range(4)])
        self.fc = torch.nn.Linear(64, 12)

    def forward(self, x):
        x = torch.relu(self.bn(self.stem(x)))
        for b in self.blocks:
            x = b(x)
        return self.fc(x.mean((2, 3)))


class ResidualBlock(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(c, c, 3, padding=1)
        self.bn1 = torch.nn.BatchNorm2d(c)
        self.conv2 = torch.nn.Conv2d(c, c, 3, padding=1)
        self.bn2 = torch.nn.BatchNorm2d(c)

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + x)


class DownsampleBlock(torch.nn.Module):
    def __init__(self, i, o):
        super().__init__()
        self.conv1 = SameConv2d(i, o, 3, stride=2)
        self.bn1 = torch.nn.BatchNorm2d(o)
        self.conv2 = torch.nn.Conv2d(o, o, 3, padding=1)
        self.bn2 = torch.nn.BatchNorm2d(o)
        self.shortcut = torch.nn.Conv2d(i, o, 1, stride=2)

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


class ResNet8(torch.nn.Module):
    """MLPerf Tiny's image-classification ResNet-8 (16 filters) on [N, 3, 32, 32]."""

    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Conv2d(3, 16, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(16)
        self.stack1 = ResidualBlock(16)
        self.stack2 = DownsampleBlock(16, 32)
        self.stack3 = DownsampleBlock(32, 64)
        self.fc = torch.nn.Linear(64, 10)

    def forward(self, x):
        x = torch.relu(self.bn(self.stem(x)))
        x = self.stack3(self.stack2(self.stack1(x)))
        return self.fc(x.mean((2, 3)))


def zoo():
    import numpy as np
    data = ROOT / "std-backend" / "tests" / "data"
    for name, cls, shape in (("kws", KwsDsCnn, (2, 1, 49, 10)),
                             ("resnet8", ResNet8, (2, 3, 32, 32))):
        torch.manual_seed(0)
        net = cls()
        with torch.no_grad():
            for m in net.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.uniform_(-0.2, 0.2)
                    m.running_mean.normal_(0.0, 0.1)
                    m.running_var.uniform_(0.5, 1.5)
                    m.num_batches_tracked.fill_(3)
        save_file({k: v.contiguous() for k, v in net.state_dict().items()},
                  str(data / f"torch_zoo_{name}.safetensors"))
        k = np.arange(int(np.prod(shape)), dtype=np.float64)
        x = torch.from_numpy(np.sin(0.01 * k).astype(np.float32).reshape(shape))
        with torch.no_grad():
            net.eval()
            y_eval = net(x)
            net.train()
            y_train = net(x)
        (data / f"torch_zoo_{name}.json").write_text(json.dumps({
            "made_by": f"PyTorch {torch.__version__}: scripts/torch-fixtures.py zoo "
                       f"(class {cls.__name__}; torch.manual_seed(0))",
            "input_shape": list(shape),
            "eval": y_eval.tolist(),
            "train": y_train.tolist(),
        }, indent=1) + "\n")
        print(f"{cls.__name__}: {sum(p.numel() for p in net.parameters())} parameters")


def losses():
    pred = [0.5, -1.0, 1.5, 2.0, -3.0, 0.25, 0.75, 4.0]
    target = [1.0, 0.0, 1.0, 2.75, 0.0, 0.0, 0.75, 0.5]
    cases = []
    for name, make in [("huber", lambda d: torch.nn.HuberLoss(reduction=r, delta=d)),
                       ("l1", lambda d: torch.nn.L1Loss(reduction=r)),
                       ("mse", lambda d: torch.nn.MSELoss(reduction=r))]:
        for delta in ([1.0, 0.75, 0.3] if name == "huber" else [None]):
            for r in ("mean", "sum"):
                p = torch.tensor(pred, requires_grad=True)
                loss = make(delta)(p, torch.tensor(target))
                loss.backward()
                cases.append({"loss": name, "delta": delta, "reduction": r,
                              "value": float(loss.detach()), "grad": p.grad.tolist()})
    out = {
        "made_by": f"PyTorch {torch.__version__}: scripts/torch-fixtures.py losses",
        "pred": pred, "target": target, "cases": cases,
    }
    (ROOT / "tests" / "tests" / "data" / "torch_losses.json").write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out))


if __name__ == "__main__":
    import sys
    # `python3 scripts/torch-fixtures.py batchnorm2d` writes that fixture alone.
    only = sys.argv[1:]
    for f in (mlp_class, conventions, batchnorm, batchnorm2d, conv_cases, zoo, losses):
        if not only or f.__name__ in only:
            f()
