#!/usr/bin/env python3
"""Opacus side of the DP-SGD throughput comparison (docs/BENCHMARKS.md).

Measures training throughput (examples/s, median ms/step) of the same model,
data shape and optimizer that dpfleet-train-bench measures, with
  * opacus_hooks: Opacus PrivacyEngine, grad_sample_mode="hooks" (per-sample
    gradients materialised by module hooks, then clipped and summed);
  * opacus_ghost: Opacus fast gradient clipping, grad_sample_mode="ghost"
    (per-sample norms without per-sample gradients, second backward pass),
    driven through the DPLossFastGradientClipping criterion that Opacus 1.6
    returns from make_private;
  * torch_nondp: plain PyTorch SGD, a sanity column for the machine.

Output has the columns / JSON keys of dpfleet-train-bench (model, batch, mode,
examples_per_s, ms_per_step, mean_ms_per_step, dim, threads, steps).

Batching choice: every step gets exactly B rows gathered from an in-memory
tensor with a random index vector (x[idx]), i.e. make_private is called with
poisson_sampling=False and the DataLoader it wraps is only used to tell Opacus
the expected batch size. dpfleet Poisson-samples (actual size ~ B +- sqrt(B))
and gathers with index_select, so both sides pay one gather of ~B rows per
step and the same expected work; examples/s counts B on both sides. Feeding
Opacus through its DataLoader instead would add Python per-item collation
cost that has nothing to do with DP-SGD and would flatter dpfleet.

  usage: opacus_bench.py [--dim 59] [--threads 2] [--steps 30] [--warmup 5]
                         [--batches 256,1024,4096] [--models 64x32,256x256]
                         [--modes opacus_hooks,opacus_ghost,torch_nondp] [--json]
"""

import argparse
import json
import statistics
import sys
import time
import warnings

import torch
import torch.nn as nn

MODES = ("opacus_hooks", "opacus_ghost", "torch_nondp")


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dim", type=int, default=59)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--batches", default="256,1024,4096")
    p.add_argument("--models", default="64x32,256x256")
    p.add_argument("--modes", default=",".join(MODES))
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--noise-multiplier", type=float, default=1.0)
    p.add_argument("--max-grad-norm", type=float, default=1.0)
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    a.batches = [int(b) for b in a.batches.split(",")]
    a.models = [[] if m == "logistic" else [int(w) for w in m.split("x")] for m in a.models.split(",")]
    a.modes = a.modes.split(",")
    for m in a.modes:
        if m not in MODES:
            p.error(f"unknown mode {m}; choose from {','.join(MODES)}")
    if a.dim <= 0 or a.threads <= 0 or a.steps <= 0:
        p.error("dim, threads and steps must be > 0")
    return a


def model_name(hidden):
    return "logistic" if not hidden else "mlp[" + ",".join(str(h) for h in hidden) + "]"


def make_mlp(dim, hidden):
    """Linear+ReLU layers ending in one logit: dpfleet's Model (model.h)."""
    layers, width = [], dim
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    layers.append(nn.Linear(width, 1))
    return nn.Sequential(*layers)


class LogitLoss(nn.Module):
    """BCE-with-logits on the model's [B, 1] output against [B] labels.

    Squeezing inside the criterion keeps the model output [B, 1] (what Opacus'
    per-sample machinery expects) while the loss sees matching shapes. The
    reduction attribute is forwarded because DPLossFastGradientClipping
    switches it to "none" to get per-sample losses.
    """

    def __init__(self, reduction="mean"):
        super().__init__()
        self.reduction = reduction

    def forward(self, output, target):
        return nn.functional.binary_cross_entropy_with_logits(output.squeeze(1), target, reduction=self.reduction)


def build(mode, args, hidden, batch, x, y):
    """Returns step(xb, yb) for one training step of the given mode."""
    torch.manual_seed(1)
    model = make_mlp(args.dim, hidden)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum)
    criterion = LogitLoss()
    if mode == "torch_nondp":

        def step(xb, yb):
            optimizer.zero_grad(set_to_none=True)
            criterion(model(xb), yb).backward()
            optimizer.step()

        return step

    from opacus import PrivacyEngine

    # The loader only tells make_private the (expected) batch size; steps are
    # fed pre-gathered tensors (see the module docstring).
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=batch, drop_last=True)
    engine = PrivacyEngine(accountant="rdp")
    common = dict(
        module=model,
        optimizer=optimizer,
        data_loader=loader,
        noise_multiplier=args.noise_multiplier,
        max_grad_norm=args.max_grad_norm,
        poisson_sampling=False,
    )
    if mode == "opacus_hooks":
        model, optimizer, _ = engine.make_private(grad_sample_mode="hooks", **common)

        def step(xb, yb):
            optimizer.zero_grad(set_to_none=True)
            criterion(model(xb), yb).backward()
            optimizer.step()

        return step

    # Fast gradient clipping: make_private wraps the criterion in
    # DPLossFastGradientClipping, whose backward() runs the norm pass, scales
    # the loss by the clip factors and runs the second backward.
    model, optimizer, dp_criterion, _ = engine.make_private(grad_sample_mode="ghost", criterion=criterion, **common)

    def step(xb, yb):
        optimizer.zero_grad(set_to_none=True)
        dp_criterion(model(xb), yb).backward()
        optimizer.step()

    return step


def measure(step, x, y, batch, steps, warmup):
    n = x.shape[0]
    gen = torch.Generator().manual_seed(2)
    times = []
    for s in range(warmup + steps):
        start = time.perf_counter()
        idx = torch.randint(n, (batch,), generator=gen)
        step(x.index_select(0, idx), y.index_select(0, idx))
        if s >= warmup:
            times.append(1000.0 * (time.perf_counter() - start))
    return statistics.median(times), statistics.fmean(times)


def main(argv):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")  # Opacus warns about secure_mode, RNG etc.
    rows = []
    if not args.json:
        print(f"dim={args.dim} threads={args.threads} steps={args.steps} warmup={args.warmup} "
              f"torch={torch.__version__}")
        print(f"{'model':<16} {'batch':>7} {'mode':>13} {'examples/s':>14} {'ms/step':>10}")
    for hidden in args.models:
        for batch in args.batches:
            # Same data as dpfleet-train-bench: N = max(16384, 8B) random
            # float32 rows, labels 1 with probability 0.3.
            n = max(16384, 8 * batch)
            torch.manual_seed(1)
            x = torch.randn(n, args.dim)
            y = (torch.rand(n) < 0.3).float()
            for mode in args.modes:
                step = build(mode, args, hidden, batch, x, y)
                ms, mean_ms = measure(step, x, y, batch, args.steps, args.warmup)
                row = dict(model=model_name(hidden), batch=batch, mode=mode, examples_per_s=1000.0 * batch / ms,
                           ms_per_step=ms, mean_ms_per_step=mean_ms, dim=args.dim, threads=args.threads,
                           steps=args.steps)
                if args.json:
                    rows.append(row)
                else:
                    print(f"{row['model']:<16} {batch:>7} {mode:>13} {row['examples_per_s']:>14.0f} {ms:>10.3f}",
                          flush=True)
    if args.json:
        print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main(sys.argv[1:])
