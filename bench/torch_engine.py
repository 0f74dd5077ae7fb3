"""PyTorch peer for `plsc bench engine`: the same four measurements, printed as one JSON object.

Run by bench/engine.ts with the same thread count plsc uses (argv[1]).
"""
import json
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

threads = int(sys.argv[1])
repeats = int(sys.argv[2])
op_overhead_calls = int(sys.argv[3]) if len(sys.argv) > 3 else 2000
torch.set_num_threads(threads)
torch.manual_seed(0)


def median_ms(fn, warmup, repeats):
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(samples)


small_a = torch.randn(4)
small_b = torch.randn(4)


def tiny_ops():
    for _ in range(op_overhead_calls):
        torch.add(small_a, small_b)


op_overhead_us = median_ms(tiny_ops, 3, repeats * 4) * 1000.0 / op_overhead_calls

a = torch.randn(256, 512)
b = torch.randn(512, 100000)
matmul_ms = median_ms(lambda: torch.mm(a, b), 2, repeats)
matmul_gflops = 2 * 256 * 512 * 100000 / (matmul_ms / 1000.0) / 1e9
del a, b

x = torch.randn(32, 64, 56, 56, requires_grad=True)
w = torch.randn(64, 64, 3, 3, requires_grad=True)


def conv_step():
    y = F.conv2d(x, w, None, 1, 1)
    y.sum().backward()
    x.grad = None
    w.grad = None


conv_ms = median_ms(conv_step, 2, repeats)


class SmallCnn(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(64, 128, 3, padding=1, bias=False), nn.BatchNorm2d(128), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(128, 10)

    def forward(self, images):
        return self.fc(self.features(images))


model = SmallCnn()
optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
images = torch.randn(32, 3, 32, 32)
labels = torch.randint(0, 10, (32,))


def train_step():
    optimizer.zero_grad(set_to_none=True)
    loss = F.cross_entropy(model(images), labels)
    loss.backward()
    optimizer.step()


step_ms = median_ms(train_step, 3, repeats * 4)
print(json.dumps({"matmul_gflops": matmul_gflops, "conv_ms": conv_ms, "step_ms": step_ms,
                  "op_overhead_us": op_overhead_us,
                  "threads": torch.get_num_threads(), "version": torch.__version__}))
