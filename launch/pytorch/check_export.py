"""Checks the README's "Taking the encoder to PyTorch" snippet: loads a dim-dist checkpoint into a
PyTorch encoder named as docs/design.md §9 says (conv0, bn0, ..., fc{n+1}, bn{n+1}, fc{n+2}) with
the snippet's own code (read from README.md), and compares its conv / fc / y features with
`dim-dist encode` on the same images.

Without PyTorch (CI installs only h5py and numpy), the same state_dict keys and shapes go through a
numpy forward of the same module (eval mode): that checks the checkpoint's names, layouts, BatchNorm
buffers and flatten order, but not the snippet's torch calls.

    dim-dist encode --checkpoint CKPT --data DATA --split test --out feats.h5
    python3 launch/pytorch/check_export.py CKPT DATA feats.h5 [--images 256]
"""
import argparse, glob, re, sys
import h5py, numpy as np

try:
    import torch, torch.nn as nn
except ImportError:
    torch = None


def numpy_features(state, x):
    """conv / fc / y of the encoder in eval mode, from state_dict-style keys (conv0.weight, bn0.running_mean, ...)."""
    n = len([k for k in state if re.fullmatch(r"conv\d+\.weight", k)])

    def bn(h, i):
        shape = (1, -1) + (1,) * (h.ndim - 2)
        scale = state[f"bn{i}.weight"] / np.sqrt(state[f"bn{i}.running_var"] + 1e-5)
        return (h - state[f"bn{i}.running_mean"].reshape(shape)) * scale.reshape(shape) + state[f"bn{i}.bias"].reshape(shape)

    for i in range(n):
        w = state[f"conv{i}.weight"].astype(np.float64)
        k = w.shape[2]
        pad = 2 if k == 5 else 1
        xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
        ho = (x.shape[2] + 2 * pad - k) // 2 + 1
        cols = np.stack([xp[:, :, ky:ky + 2 * ho:2, kx:kx + 2 * ho:2] for ky in range(k) for kx in range(k)], axis=2)
        # cols: [N, C, k*k, ho, wo]; weight [O, C, k, k]
        x = np.einsum("ncpyx,ocp->noyx", cols, w.reshape(w.shape[0], w.shape[1], k * k))
        x = np.maximum(bn(x, i), 0)
    conv = x.reshape(x.shape[0], -1)
    f = np.maximum(bn(conv @ state[f"fc{n + 1}.weight"].T, n + 1), 0)
    y = f @ state[f"fc{n + 2}.weight"].T + state[f"fc{n + 2}.bias"]
    return conv, f, y


class Encoder(nn.Module if torch else object):
    """basic32x32/28x28/64x64 from the checkpoint's shapes: conv{i}/bn{i}, fc{n+1}, bn{n+1}, fc{n+2}."""

    def __init__(self, params):
        super().__init__()
        self.n = len([k for k in params if re.fullmatch(r"encoder\.conv\d+\.weight", k)])
        for i in range(self.n):
            w = params[f"encoder.conv{i}.weight"]
            k = w.shape[2]
            pad = 2 if k == 5 else 1
            setattr(self, f"conv{i}", nn.Conv2d(w.shape[1], w.shape[0], k, 2, pad, bias=False))
            setattr(self, f"bn{i}", nn.BatchNorm2d(w.shape[0]))
        fc = params[f"encoder.fc{self.n + 1}.weight"]
        y = params[f"encoder.fc{self.n + 2}.weight"]
        setattr(self, f"fc{self.n + 1}", nn.Linear(fc.shape[1], fc.shape[0], bias=False))
        setattr(self, f"bn{self.n + 1}", nn.BatchNorm1d(fc.shape[0]))
        setattr(self, f"fc{self.n + 2}", nn.Linear(y.shape[1], y.shape[0]))

    def forward(self, x):
        for i in range(self.n):
            x = torch.relu(getattr(self, f"bn{i}")(getattr(self, f"conv{i}")(x)))
        conv = x.flatten(1)
        f = torch.relu(getattr(self, f"bn{self.n + 1}")(getattr(self, f"fc{self.n + 1}")(conv)))
        return conv, f, getattr(self, f"fc{self.n + 2}")(f)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint"); ap.add_argument("data"); ap.add_argument("features")
    ap.add_argument("--images", type=int, default=256)
    a = ap.parse_args()
    shard = sorted(glob.glob(f"{a.data}/test-*.h5"))[0]
    with h5py.File(shard, "r") as f:
        x = f["images"][: a.images].astype(np.float32) * (2 / 255) - 1
    with h5py.File(a.features, "r") as f:
        ref = [f[f"features/{k}"][: a.images] for k in ("conv", "fc", "y")]
    if torch is None:
        print("PyTorch not importable: checking the state_dict keys with a numpy forward instead")
        with h5py.File(a.checkpoint, "r") as f:
            state = {k.removeprefix("encoder."): f[g][k][()] for g in ("params", "buffers") for k in f[g]
                     if k.startswith("encoder.")}
        mine = numpy_features(state, x.astype(np.float64))
    else:
        with h5py.File(a.checkpoint, "r") as f:
            params = {k: f["params"][k][()] for k in f["params"]}
        encoder = Encoder(params).eval()
        # The README's snippet, as written there, with its path replaced by this checkpoint.
        readme = open(__file__.rsplit("/launch/", 1)[0] + "/README.md").read()
        snippet = re.search(r"```python\n(import h5py, torch\n.*?)```", readme, re.S).group(1)
        snippet = re.sub(r'h5py\.File\("[^"]+"', f'h5py.File("{a.checkpoint}"', snippet)
        exec(snippet, {"encoder": encoder})
        with torch.no_grad():
            mine = [t.numpy() for t in encoder(torch.from_numpy(x))]
    worst = 0.0
    for name, m, r in zip(("conv", "fc", "y"), mine, ref):
        err = float(np.abs(m - r).max() / np.abs(r).max())
        worst = max(worst, err)
        print(f"{name}: max |python - dim-dist| / max |dim-dist| = {err:.2e}")
    sys.exit(0 if worst < 1e-4 else 1)


if __name__ == "__main__":
    main()
