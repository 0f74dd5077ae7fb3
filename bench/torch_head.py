"""PyTorch peer for `plsc bench head`: insightface arcface_torch-style Partial FC on one process.

normalize(embeddings) . normalize(weight)^T, ArcFace margin on the target logit, cross entropy,
backward, SGD (momentum 0.9, weight decay 5e-4) on the sampled rows of the weight.
argv: classes emb batch sample_rate threads warmup repeats
"""
import json
import math
import resource
import statistics
import sys
import time

import torch
import torch.nn.functional as F

classes, emb, batch = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
sample_rate = float(sys.argv[4])
torch.set_num_threads(int(sys.argv[5]))
warmup, repeats = int(sys.argv[6]), int(sys.argv[7])
torch.manual_seed(0)

s, m = 64.0, 0.5
weight = torch.nn.Parameter(torch.normal(0, 0.01, (classes, emb)))
optimizer = torch.optim.SGD([weight], lr=0.1, momentum=0.9, weight_decay=5e-4)
embeddings = torch.randn(batch, emb, requires_grad=True)
labels = torch.randint(0, classes, (batch,))
num_sample = int(math.ceil(sample_rate * classes))


def step():
    optimizer.zero_grad(set_to_none=True)
    if sample_rate < 1:
        positive = torch.unique(labels, sorted=True)
        perm = torch.rand(classes)
        perm[positive] = 2.0
        index = torch.topk(perm, k=max(num_sample, positive.numel()))[1].sort()[0]
        target = torch.searchsorted(index, labels)
        w = weight[index]
    else:
        target = labels
        w = weight
    logits = F.linear(F.normalize(embeddings), F.normalize(w)).clamp(-1, 1)
    rows = torch.arange(batch)
    with torch.no_grad():
        theta = torch.arccos(logits[rows, target])
        logits[rows, target] = torch.cos(theta + m)
    loss = F.cross_entropy(logits * s, target)
    loss.backward()
    optimizer.step()


for _ in range(warmup):
    step()
samples = []
for _ in range(repeats):
    start = time.perf_counter()
    step()
    samples.append((time.perf_counter() - start) * 1000.0)
print(json.dumps({"step_ms": statistics.median(samples),
                  "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
