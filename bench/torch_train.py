"""PyTorch peer for `plsc bench train`: the backbone-only training step (forward, a simple loss on
the embeddings, backward, SGD momentum 0.9 / weight decay 5e-4) of the same IR-ResNet or
MobileFaceNet that plsc builds (src/models/iresnet.ts, src/models/mobilefacenet.ts: same modules,
same order, same initialization), on random images. Prints one JSON object on the last line.

usage: torch_train.py MODEL BATCH IMAGE_SIZE THREADS WARMUP STEPS NPROC [MALLOC]

With NPROC > 1, NPROC processes (THREADS threads each) run the step at the same time, as plsc's
workers do under --nproc; each reports the median of its own step times.

MALLOC 'cached' (default) keeps freed memory in glibc's heap (no mmap, no trimming), the equivalent
of plsc's caching CPU allocator: PyTorch's default CPU allocator is plain malloc, whose large blocks
are mmap'ed and unmapped on every step, so each step pays page faults for all its activations and
gradients (2-4x the step time for IR-ResNet at 112x112 here). 'default' leaves malloc as it is.
"""
import json
import math
import multiprocessing as mp
import os
import statistics
import sys
import time

# torch.set_num_threads does not reach OpenBLAS's own pool (GEMMs on this build), which would keep
# one thread per core in every process; plsc sets both, so the peer does too, before torch loads it.
# The environment carries both settings into the processes spawned for NPROC > 1.
if __name__ == '__main__' and len(sys.argv) > 4:
    os.environ['OPENBLAS_NUM_THREADS'] = sys.argv[4]
    os.environ['OMP_NUM_THREADS'] = sys.argv[4]
    os.environ['PLSC_PEER_MALLOC'] = sys.argv[8] if len(sys.argv) > 8 else 'cached'
MALLOC_MODE = os.environ.get('PLSC_PEER_MALLOC', 'cached')
if MALLOC_MODE not in ('cached', 'default'):
    raise SystemExit(f'torch_train.py: MALLOC must be cached or default, got {MALLOC_MODE!r}')
if MALLOC_MODE == 'cached':
    import ctypes
    _libc = ctypes.CDLL(None)
    M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
    if _libc.mallopt(M_MMAP_MAX, 0) != 1 or _libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1) != 1:
        raise SystemExit('torch_train.py: mallopt failed (the cached malloc mode needs glibc; pass MALLOC default)')

import torch
import torch.nn as nn


def halve(n):
    return (n - 1) // 2 + 1


# ---- IR-ResNet (insightface arcface_torch layout) -------------------------------------------------

class IBasicBlock(nn.Module):
    def __init__(self, in_channels, out_channels, stride):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels, eps=1e-5)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels, eps=1e-5)
        self.prelu = nn.PReLU(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels, eps=1e-5)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels, eps=1e-5))

    def forward(self, x):
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        identity = x if self.downsample is None else self.downsample(x)
        return out + identity


class IResNet(nn.Module):
    def __init__(self, layers, embedding_size, image_size):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64, eps=1e-5)
        self.prelu = nn.PReLU(64)
        channels = 64
        stages = []
        for width, blocks in zip((64, 128, 256, 512), layers):
            stage = [IBasicBlock(channels, width, 2)] + [IBasicBlock(width, width, 1) for _ in range(blocks - 1)]
            stages.append(nn.Sequential(*stage))
            channels = width
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.bn2 = nn.BatchNorm2d(512, eps=1e-5)
        self.dropout = nn.Dropout(p=0.0)
        side = halve(halve(halve(halve(image_size))))
        self.fc = nn.Linear(512 * side * side, embedding_size)
        self.features = nn.BatchNorm1d(embedding_size, eps=1e-5)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, 0, 0.1)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.constant_(module.weight, 1)
                nn.init.constant_(module.bias, 0)
        nn.init.constant_(self.features.weight, 1.0)
        self.features.weight.requires_grad = False

    def forward(self, x):
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.dropout(torch.flatten(self.bn2(x), 1))
        return self.features(self.fc(x))


# ---- MobileFaceNet (insightface arcface_torch layout, blocks (1, 4, 6, 2), scale 2) --------------

class ConvBlock(nn.Module):
    def __init__(self, in_c, out_c, kernel=1, stride=1, padding=0, groups=1):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(in_c, out_c, kernel, stride=stride, padding=padding, groups=groups, bias=False),
            nn.BatchNorm2d(out_c), nn.PReLU(out_c))

    def forward(self, x):
        return self.layers(x)


class LinearBlock(nn.Module):
    def __init__(self, in_c, out_c, kernel=1, stride=1, padding=0, groups=1):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(in_c, out_c, kernel, stride=stride, padding=padding, groups=groups, bias=False),
            nn.BatchNorm2d(out_c))

    def forward(self, x):
        return self.layers(x)


class DepthWise(nn.Module):
    def __init__(self, in_c, out_c, residual=False, kernel=3, stride=2, padding=1, groups=1):
        super().__init__()
        self.residual = residual
        self.layers = nn.Sequential(
            ConvBlock(in_c, groups, 1, 1, 0),
            ConvBlock(groups, groups, kernel, stride, padding, groups=groups),
            LinearBlock(groups, out_c, 1, 1, 0))

    def forward(self, x):
        return x + self.layers(x) if self.residual else self.layers(x)


class Residual(nn.Module):
    def __init__(self, channels, num_blocks, groups):
        super().__init__()
        self.layers = nn.Sequential(*[DepthWise(channels, channels, True, 3, 1, 1, groups) for _ in range(num_blocks)])

    def forward(self, x):
        return self.layers(x)


class GDC(nn.Module):
    def __init__(self, embedding_size, kernel):
        super().__init__()
        self.layers = nn.Sequential(
            LinearBlock(512, 512, kernel, 1, 0, groups=512), nn.Flatten(1),
            nn.Linear(512, embedding_size, bias=False), nn.BatchNorm1d(embedding_size))

    def forward(self, x):
        return self.layers(x)


class MobileFaceNet(nn.Module):
    def __init__(self, embedding_size, image_size, blocks=(1, 4, 6, 2), scale=2, stem_stride=2):
        super().__init__()
        c64, c128 = 64 * scale, 128 * scale
        layers = [ConvBlock(3, c64, 3, stem_stride, 1)]
        layers.append(ConvBlock(c64, c64, 3, 1, 1, groups=64) if blocks[0] == 1 else Residual(c64, blocks[0], 128))
        layers += [DepthWise(c64, c64, False, 3, 2, 1, 128), Residual(c64, blocks[1], 128),
                   DepthWise(c64, c128, False, 3, 2, 1, 256), Residual(c128, blocks[2], 256),
                   DepthWise(c128, c128, False, 3, 2, 1, 512), Residual(c128, blocks[3], 256)]
        self.layers = nn.Sequential(*layers)
        self.conv_sep = ConvBlock(c128, 512, 1, 1, 0)
        side = halve(halve(halve(halve(image_size) if stem_stride == 2 else image_size)))
        self.features = GDC(embedding_size, (side, side))
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(module.weight, mode='fan_out', nonlinearity='relu')
                if module.bias is not None:
                    module.bias.data.zero_()

    def forward(self, x):
        return self.features(self.conv_sep(self.layers(x)))


IRESNET_LAYERS = {'iresnet18': (2, 2, 2, 2), 'iresnet34': (3, 4, 6, 3), 'iresnet50': (3, 4, 14, 3), 'iresnet100': (3, 13, 30, 3)}


def build(model, image_size):
    if model in IRESNET_LAYERS:
        return IResNet(IRESNET_LAYERS[model], 512, image_size)
    if model == 'mobilefacenet':
        return MobileFaceNet(512, image_size)
    if model == 'mobilefacenet-s1':
        return MobileFaceNet(512, image_size, stem_stride=1)
    raise SystemExit(f'torch_train.py: unknown model {model!r} (one of {", ".join(IRESNET_LAYERS)}, mobilefacenet, mobilefacenet-s1)')


def blas_threads():
    """OpenBLAS's thread count in this process, or None when torch does not use OpenBLAS."""
    try:
        import ctypes
        return ctypes.CDLL('libopenblas.so.0').openblas_get_num_threads()
    except (OSError, AttributeError):
        return None


def measure(model_name, batch, image_size, threads, warmup, steps, barrier=None):
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = build(model_name, image_size)
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    images = torch.randn(batch, 3, image_size, image_size)

    def step():
        embeddings = model(images)
        loss = (embeddings * embeddings).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(warmup):
        step()
    if barrier is not None:
        barrier.wait()
    samples = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        samples.append((time.perf_counter() - start) * 1000.0)
    return {'step_ms': statistics.median(samples), 'threads': torch.get_num_threads(), 'blas_threads': blas_threads()}


def worker(args, barrier, results):
    results.put(measure(*args, barrier=barrier))


def main():
    model_name = sys.argv[1]
    batch, image_size, threads, warmup, steps, nproc = (int(v) for v in sys.argv[2:8])
    args = (model_name, batch, image_size, threads, warmup, steps)
    if nproc == 1:
        per_process = [measure(*args)]
    else:
        ctx = mp.get_context('spawn')
        barrier = ctx.Barrier(nproc)
        results = ctx.Queue()
        processes = [ctx.Process(target=worker, args=(args, barrier, results)) for _ in range(nproc)]
        for p in processes:
            p.start()
        per_process = [results.get() for _ in range(nproc)]
        for p in processes:
            p.join()
            if p.exitcode != 0:
                raise SystemExit(f'torch_train.py: a worker exited with {p.exitcode}')
    step_ms = statistics.mean(r['step_ms'] for r in per_process)
    print(json.dumps({
        'version': torch.__version__,
        'threads': per_process[0]['threads'],
        'blas_threads': per_process[0]['blas_threads'],
        'malloc': MALLOC_MODE,
        'step_ms': step_ms,
        'per_process_step_ms': [r['step_ms'] for r in per_process],
        'img_per_s': nproc * batch * 1000.0 / step_ms if step_ms > 0 else math.inf,
    }))


if __name__ == '__main__':
    main()
