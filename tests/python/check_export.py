"""Loads a dpfleet export with real PyTorch and checks it against the worker.

Usage: check_export.py DIR
DIR holds model.pt (TorchScript), model.safetensors, codes.txt (raw PUMS
codes of eval rows, -1 = blank), encoded.txt (the worker's encoding of those
rows) and logits.txt (the worker's logits for them). Exit 0 when both
formats reproduce the worker's encoding and logits; 77 when PyTorch or
safetensors cannot be imported (the caller skips); 1 otherwise.
"""
import json
import sys

try:
    import numpy as np
    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file
except ImportError as e:  # a dev machine that has not run ./dpfleet setup
    print(f"skip: {e}", file=sys.stderr)
    sys.exit(77)


def sequential(card):
    """The nn.Sequential a dpfleet safetensors export loads into (docs/EXPORT.md)."""
    widths = card["model"]["widths"]
    act = torch.nn.Tanh if card["model"]["activation"] == "tanh" else torch.nn.ReLU
    layers = []
    for i in range(len(widths) - 1):
        layers.append(torch.nn.Linear(widths[i], widths[i + 1]))
        if i + 2 < len(widths):
            layers.append(act())
    return torch.nn.Sequential(*layers)


def main(d):
    codes = torch.from_numpy(np.loadtxt(f"{d}/codes.txt", dtype=np.int64, ndmin=2))
    encoded = torch.from_numpy(np.loadtxt(f"{d}/encoded.txt", dtype=np.float32, ndmin=2))
    logits = torch.from_numpy(np.loadtxt(f"{d}/logits.txt", dtype=np.float32, ndmin=1))
    failures = []

    extra = {"model_card.json": ""}
    m = torch.jit.load(f"{d}/model.pt", _extra_files=extra)
    card = json.loads(extra["model_card.json"])
    enc = m.encode(codes)
    if enc.shape != encoded.shape or not torch.equal(enc, encoded):
        failures.append(f"torchscript encode differs from the worker's encoding "
                        f"(max |diff| {(enc - encoded).abs().max().item() if enc.shape == encoded.shape else enc.shape})")
    with torch.no_grad():
        ts = m(enc)
    if not torch.allclose(ts, logits, rtol=1e-5, atol=1e-5):
        failures.append(f"torchscript logits differ: max |diff| {(ts - logits).abs().max().item()}")
    try:
        bad = codes.clone()
        bad[0, 0] = 10**6
        m.encode(bad)
        failures.append("encode accepted a code outside the schema")
    except Exception as e:  # torch.jit.Error
        if "outside" not in str(e):
            failures.append(f"encode's error does not say why: {e}")

    with safe_open(f"{d}/model.safetensors", framework="pt") as f:
        st_card = json.loads(f.metadata()["model_card"])
    if st_card != card:
        failures.append("the safetensors card differs from the TorchScript card")
    net = sequential(st_card)
    net.load_state_dict(load_file(f"{d}/model.safetensors"))
    with torch.no_grad():
        st = net(encoded).view(-1)
    if not torch.allclose(st, logits, rtol=1e-5, atol=1e-5):
        failures.append(f"safetensors logits differ: max |diff| {(st - logits).abs().max().item()}")

    print(json.dumps({"rows": int(codes.shape[0]), "card_job": card.get("job_id"),
                      "max_diff_torchscript": (ts - logits).abs().max().item(),
                      "max_diff_safetensors": (st - logits).abs().max().item(),
                      "failures": failures}))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
