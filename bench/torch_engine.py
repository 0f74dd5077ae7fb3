"""PyTorch peer for `plsc bench engine`: the same four measurements, one per request.

Run by bench/engine.ts (bench/peer-session.ts) with the same thread count plsc uses (argv[1]) and the
op-overhead call count (argv[2]). Prints a hello line, then answers each JSON request line on stdin,
{"measure": "op_overhead" | "op_overhead_cpu" | "matmul" | "conv" | "step" | "step_channels_last",
"repeats": n}, with one JSON line, until
stdin ends; ours and these samples alternate, so both sides see the same machine load.
"""
import json
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

threads = int(sys.argv[1])
op_overhead_calls = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
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


def op_overhead_us(repeats):
    return median_ms(tiny_ops, 1, repeats) * 1000.0 / op_overhead_calls


def op_overhead_cpu_us(repeats):
    samples = []
    for run in range(repeats + 1):
        start = time.process_time()
        tiny_ops()
        if run > 0:
            samples.append((time.process_time() - start) * 1e6 / op_overhead_calls)
    return statistics.median(samples)


mm_a = torch.randn(256, 512)
mm_b = torch.randn(512, 100000)


def matmul_gflops(repeats):
    ms = median_ms(lambda: torch.mm(mm_a, mm_b), 1, repeats)
    return 2 * 256 * 512 * 100000 / (ms / 1000.0) / 1e9


conv_x = torch.randn(32, 64, 56, 56, requires_grad=True)
conv_w = torch.randn(64, 64, 3, 3, requires_grad=True)


def conv_step():
    y = F.conv2d(conv_x, conv_w, None, 1, 1)
    y.sum().backward()
    conv_x.grad = None
    conv_w.grad = None


def conv_ms(repeats):
    return median_ms(conv_step, 1, repeats)


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


images = torch.randn(32, 3, 32, 32)
labels = torch.randint(0, 10, (32,))


def train_step_of(model):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)

    def train_step():
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(images), labels)
        loss.backward()
        optimizer.step()

    return lambda repeats: median_ms(train_step, 1, repeats)


MEASURES = {"op_overhead": op_overhead_us, "op_overhead_cpu": op_overhead_cpu_us, "matmul": matmul_gflops, "conv": conv_ms,
            # As written (NCHW, PyTorch's default), and with the weights channels-last as plsc's are.
            "step": train_step_of(SmallCnn()),
            "step_channels_last": train_step_of(SmallCnn().to(memory_format=torch.channels_last))}

print(json.dumps({"threads": torch.get_num_threads(), "version": torch.__version__}), flush=True)
for line in sys.stdin:
    if not line.strip():
        continue
    try:
        request = json.loads(line)
        measure = MEASURES[request["measure"]]
        answer = {"value": measure(int(request["repeats"]))}
    except Exception as err:  # answered, so the caller fails with the reason instead of waiting
        answer = {"error": f"{type(err).__name__}: {err}"}
    print(json.dumps(answer), flush=True)
