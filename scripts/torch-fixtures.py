#!/usr/bin/env python3
"""Writes the test fixtures that only PyTorch can make (needs torch,
safetensors, numpy):

- std-backend/tests/data/torch_mlp_class.{safetensors,json}: the tutorials'
  `class MLP(nn.Module)` with `hidden` and `out`, its state_dict saved with
  `safetensors.torch.save_file`, an input and PyTorch's logits for it;
- std-backend/tests/data/torch_conventions.json: gradients at kinks and ties and a
  long float32 mean, as PyTorch computes them.

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


if __name__ == "__main__":
    mlp_class()
    conventions()
