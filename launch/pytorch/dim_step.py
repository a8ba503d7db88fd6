"""The DIM training step of docs/design.md in plain PyTorch, timed like `dim-dist bench`.

Written from the design text (not from dim-dist's code) so that launch/bench-vs-pytorch.sh can
compare the two on the same CPU in one run. Local DIM, JSD, Adam(lr 1e-4, betas 0.5/0.999),
random images; prints one JSON line with images/s.

    python3 launch/pytorch/dim_step.py --threads 1 --batch 64 --steps 5
"""
import argparse
import json
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Encoder(nn.Module):
    """basic32x32: conv 64/128/256 (k4 s2 p1, BN, ReLU), fc 1024 (BN, ReLU), linear 64.
    Returns the local map (output of the 2nd conv) and Y."""

    def __init__(self, in_ch=3, convs=(64, 128, 256), fc=1024, y=64, size=32):
        super().__init__()
        layers, c = [], in_ch
        for w in convs:
            layers.append(nn.Sequential(nn.Conv2d(c, w, 4, 2, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU()))
            c, size = w, size // 2
        self.convs = nn.ModuleList(layers)
        self.fc = nn.Sequential(nn.Linear(c * size * size, fc, bias=False), nn.BatchNorm1d(fc), nn.ReLU())
        self.y = nn.Linear(fc, y)

    def forward(self, x):
        local = None
        for i, block in enumerate(self.convs):
            x = block(x)
            if i == 1:
                local = x
        return local, self.y(self.fc(x.flatten(1)))


class MIHead(nn.Module):
    """MI1x1ConvNet: LayerNorm(conv_b(ReLU(BN(conv_a(x)))) + shortcut(x)) over channels."""

    def __init__(self, n_in, units, conv):
        super().__init__()
        lin = (lambda i, o, b: nn.Conv2d(i, o, 1, bias=b)) if conv else (lambda i, o, b: nn.Linear(i, o, bias=b))
        bn = nn.BatchNorm2d(units) if conv else nn.BatchNorm1d(units)
        self.block = nn.Sequential(lin(n_in, units, False), bn, nn.ReLU(), lin(units, units, True))
        self.shortcut = lin(n_in, units, False)
        self.ln = nn.LayerNorm(units)
        self.conv = conv

    def forward(self, x):
        h = self.block(x) + self.shortcut(x)
        if self.conv:
            return self.ln(h.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return self.ln(h)


def jsd_loss(G, L):
    """u[i, j, l] = <G_i, L_{j,l}>; softplus(-u) on positives, softplus(u) on negatives."""
    n, units = G.shape
    Lf = L.flatten(2)                                     # n x units x P
    u = torch.einsum("iu,jup->ijp", G, Lf)                # n x n x P
    P = u.shape[2]
    pos = torch.eye(n, dtype=torch.bool).unsqueeze(2).expand_as(u)
    e_pos = F.softplus(-u[pos]).sum() / (n * P)
    e_neg = F.softplus(u[~pos]).sum() / (n * (n - 1) * P)
    return e_pos + e_neg - 2 * math.log(2)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--mi-units", type=int, default=2048)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    enc = Encoder()
    local_head, global_head = MIHead(128, args.mi_units, True), MIHead(64, args.mi_units, False)
    params = list(enc.parameters()) + list(local_head.parameters()) + list(global_head.parameters())
    opt = torch.optim.Adam(params, lr=1e-4, betas=(0.5, 0.999))
    x = torch.rand(args.batch, 3, 32, 32) * 2 - 1

    def step():
        opt.zero_grad(set_to_none=True)
        C, Y = enc(x)
        loss = jsd_loss(global_head(Y), local_head(C))
        loss.backward()
        opt.step()
        return loss.item()

    for _ in range(args.warmup):
        step()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    seconds = time.perf_counter() - t0
    print(json.dumps({"framework": f"pytorch {torch.__version__}", "threads": args.threads, "batch": args.batch,
                      "images_per_second": args.batch * args.steps / seconds,
                      "ms_per_step": 1000 * seconds / args.steps}))


if __name__ == "__main__":
    main()
