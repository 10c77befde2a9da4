#!/usr/bin/env python3
"""The SimCLR step that `parallax bench step` times, in PyTorch (CPU), for side-by-side figures.

Same models as DESIGN.md ("Reference models"): conv4 or resnet18 (CIFAR stem) encoder,
projection head Linear(d,d)-BN1d-ReLU-Linear(d,128), both views as one batch of 2B, NT-Xent
with temperature 0.2 over the 2B rows, SGD with momentum. Inputs are random 1x28x28 (data
loading is not timed here; Parallax reports its data time separately).

    python3 bench/pytorch_step.py --model conv4 --batch 256 --threads 1 [--precision bf16]

With --precision bf16 the forward pass and the loss run under
torch.autocast("cpu", dtype=torch.bfloat16) (oneDNN's bf16 convolutions and matmuls; weights,
optimizer and gradients stay fp32), as a PyTorch user would turn mixed precision on.
"""
import contextlib
import argparse
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def conv4(width=64, in_ch=1):
    layers = []
    for i in range(4):
        layers += [nn.Conv2d(in_ch if i == 0 else width, width, 3, padding=1, bias=True),
                   nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2)]
    layers.append(nn.Flatten())
    return nn.Sequential(*layers), width  # 28 -> 14 -> 7 -> 3 -> 1


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                            nn.BatchNorm2d(cout))

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h))
        s = x if self.downsample is None else self.downsample(x)
        return F.relu(h + s)


class ResNet18(nn.Module):
    def __init__(self, in_ch=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        blocks, c = [], 64
        for width, stride in [(64, 1), (128, 2), (256, 2), (512, 2)]:
            blocks += [BasicBlock(c, width, stride), BasicBlock(width, width, 1)]
            c = width
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        h = self.blocks(h)
        return torch.flatten(F.adaptive_avg_pool2d(h, 1), 1)


def nt_xent(z, temperature):
    """Mean over the 2B anchors of -log softmax_{k != a}(u_a.u_k / t)[positive]."""
    u = F.normalize(z, dim=1)
    rows = u.shape[0]
    b = rows // 2
    s = u @ u.t() / temperature
    s = s.masked_fill(torch.eye(rows, dtype=torch.bool), float("-inf"))
    target = torch.cat([torch.arange(b, rows), torch.arange(0, b)])
    return F.cross_entropy(s, target)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="conv4", choices=["conv4", "resnet18"])
    p.add_argument("--batch", type=int, default=256, help="samples; each passes as two views")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--temperature", type=float, default=0.2)
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    a = p.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    if a.model == "conv4":
        encoder, d = conv4()
    else:
        encoder, d = ResNet18(), 512
    head = nn.Sequential(nn.Linear(d, d), nn.BatchNorm1d(d), nn.ReLU(), nn.Linear(d, 128))
    model = nn.Sequential(encoder, head).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.3, momentum=0.9, weight_decay=1e-6)
    x = torch.randn(2 * a.batch, 1, 28, 28)

    times = []
    for i in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=False)
        cast = (torch.autocast("cpu", dtype=torch.bfloat16) if a.precision == "bf16"
                else contextlib.nullcontext())
        with cast:
            loss = nt_xent(model(x), a.temperature)
        loss.backward()
        opt.step()
        if i >= a.warmup:
            times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    print(f"pytorch step {a.model} batch {a.batch} {a.precision} · {torch.get_num_threads()} thread(s) "
          f"(torch {torch.__version__}): median {med * 1000:.1f} ms/step "
          f"(min {min(times) * 1000:.1f}, max {max(times) * 1000:.1f}), "
          f"{a.batch / med:.1f} samples/s, loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
