#!/usr/bin/python3
"""Behaviour cloning of the simulated tabletop expert into two small ONNX policies.

    /usr/bin/python3 scripts/train_tabletop.py --demos data/sim-demos --out models [--seed 7]

Development-only tool: Debian's python3-torch (1.13) and python3-onnx; nothing at runtime or in
CI needs Python. Reads the demonstrations written by `npm run sim:demos` (format in docs/sim.md):
frames.npy uint8 [N, S, S, 3] (S = 224 / downsample_factor, an exact AvgPool2d of the rendered
frame), actions.npy float32 [N, 7], episodes.json, dataset_statistics.json.

One network, two heads, trained together, exported as two model directories the engine serves
(docs/models.md "Model directory"):
  tabletop-policy        output `action_logits` [B, 7, 256]: OpenVLA-style action-token logits,
                         decoded by the engine's argmax -> token 31744 + k -> bin centre ->
                         BOUNDS_Q99 un-normalization with the demonstrations' statistics
  tabletop-policy-chunk  output `actions` [B, H, 7]: normalized continuous actions (pi0-style
                         chunk), un-normalized the same way
Both take the engine's inputs: `image` uint8 NHWC [B, 224, 224, 3] and `tokens` int64 [B, 16]
(the hash-words tokenizer of src/modules/models/tokenizer.ts, vocabulary 512). The network
averages 4x4 (or the dataset's factor) pixel blocks first, exactly what the demonstrations store.

Determinism: torch.manual_seed, numpy seed, one intra-op thread count, deterministic algorithms;
the same command on the same machine writes the same weights (the metadata records a hash).
"""

import argparse
import hashlib
import json
import os
import platform
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

N_BINS = 256
MAX_TOKENS = 16
VOCAB = 512
EMBED = 64
KEYPOINTS = 32


# ------------------------------------------------------------------ tokenizer (src/modules/models/tokenizer.ts)

def fnv1a32(word: str) -> int:
    h = 0x811C9DC5
    for byte in word.encode("utf-8"):
        h ^= byte
        h = (h * 0x01000193) & 0xFFFFFFFF
    return h


def tokenize(text: str) -> list:
    import re

    words = [w for w in re.split(r"[^a-z0-9]+", text.lower()) if w]
    ids = [1 + (fnv1a32(w) % (VOCAB - 1)) for w in words[:MAX_TOKENS]]
    return ids + [0] * (MAX_TOKENS - len(ids))


# ------------------------------------------------------------------ OpenVLA action bins (shared/reference/vla-serving.md section 2)

EDGES = np.linspace(-1.0, 1.0, N_BINS)
CENTRES = (EDGES[:-1] + EDGES[1:]) / 2


def to_logit_index(normalized: np.ndarray) -> np.ndarray:
    """normalized in [-1, 1] -> the logit index k the engine turns into token 31744 + k.

    Encode: t = 32000 - digitize(a, edges) (digitize = count of edges <= a, 1..256); the engine's
    token is 31744 + k, so k = 256 - digitize(a).
    """
    a = np.clip(normalized, -1.0, 1.0)
    d = np.searchsorted(EDGES, a, side="right")  # count of edges <= a
    return (N_BINS - d).astype(np.int64)


def decode_index(k: np.ndarray) -> np.ndarray:
    """The engine's decode of logit index k: d = 32000 - t = 256 - k; i = clip(d - 1, 0, 254)."""
    i = np.clip(N_BINS - k - 1, 0, N_BINS - 2)
    return CENTRES[i]


def normalize(actions: np.ndarray, stats: dict) -> np.ndarray:
    """BOUNDS_Q99 normalization (the inverse of the engine's un-normalization); unmasked dims pass."""
    q01 = np.asarray(stats["q01"], dtype=np.float64)
    q99 = np.asarray(stats["q99"], dtype=np.float64)
    mask = np.asarray(stats["mask"], dtype=bool)
    span = q99 - q01
    safe = np.where(span > 0, span, 1.0)
    n = np.where(span > 0, 2.0 * (actions - q01) / safe - 1.0, 0.0)
    n = np.where(mask, n, actions)
    return np.clip(n, -1.0, 1.0)


def unnormalize(n: np.ndarray, stats: dict) -> np.ndarray:
    q01 = np.asarray(stats["q01"], dtype=np.float64)
    q99 = np.asarray(stats["q99"], dtype=np.float64)
    mask = np.asarray(stats["mask"], dtype=bool)
    return np.where(mask, 0.5 * (n + 1.0) * (q99 - q01) + q01, n)


# ------------------------------------------------------------------ the network


class Trunk(nn.Module):
    """Small CNN over the downsampled frame with coordinate channels, FiLM-conditioned on the
    instruction's mean word embedding (so the colour word selects what the features respond to),
    read out by a spatial softmax: each of the last layer's channels becomes the expected image
    position of its activation (a keypoint), which generalises to new block layouts far better
    than a flattened feature map; a max-pooled copy of the feature map carries the rest (gripper state, height)."""

    def __init__(self, size: int):
        super().__init__()
        self.size = size
        self.embed = nn.Embedding(VOCAB, EMBED, padding_idx=0)
        self.c1 = nn.Conv2d(5, 24, 3, stride=2, padding=1)
        self.c2 = nn.Conv2d(24, 48, 3, stride=2, padding=1)
        self.c3 = nn.Conv2d(48, KEYPOINTS, 3, stride=1, padding=1)
        self.n1 = nn.BatchNorm2d(24)
        self.n2 = nn.BatchNorm2d(48)
        self.n3 = nn.BatchNorm2d(KEYPOINTS)
        self.film1 = nn.Linear(EMBED, 2 * 24)
        self.film2 = nn.Linear(EMBED, 2 * 48)
        self.film3 = nn.Linear(EMBED, 2 * KEYPOINTS)
        side = ((size + 1) // 2 + 1) // 2
        half = (side + 1) // 2
        self.fc = nn.Linear(2 * KEYPOINTS + KEYPOINTS * half * half + EMBED, 256)
        self.fc2 = nn.Linear(256, 128)
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
        self.register_buffer("coords", torch.stack([xs, ys])[None], persistent=False)
        ks_y, ks_x = torch.meshgrid(torch.linspace(-1, 1, side), torch.linspace(-1, 1, side), indexing="ij")
        self.register_buffer("kx", ks_x.reshape(1, 1, -1), persistent=False)
        self.register_buffer("ky", ks_y.reshape(1, 1, -1), persistent=False)

    @staticmethod
    def film(x, params):
        gamma, beta = params.chunk(2, dim=1)
        return x * (1 + gamma[:, :, None, None]) + beta[:, :, None, None]

    def forward(self, small, tokens):
        """small: float [B, 3, S, S] in 0..1; tokens: int64 [B, 16]."""
        b = small.shape[0]
        mask = (tokens != 0).float()
        e = (self.embed(tokens) * mask[:, :, None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1.0)
        x = torch.cat([small - 0.5, self.coords.expand(b, -1, -1, -1)], dim=1)
        x = F.relu(self.film(self.n1(self.c1(x)), self.film1(e)))
        x = F.relu(self.film(self.n2(self.c2(x)), self.film2(e)))
        x = self.film(self.n3(self.c3(x)), self.film3(e))
        flat = x.flatten(2)  # [B, K, side*side]
        attention = F.softmax(flat, dim=-1)
        keypoints = torch.cat([(attention * self.kx).sum(-1), (attention * self.ky).sum(-1)], dim=1)
        coarse = F.max_pool2d(F.relu(x), 2, ceil_mode=True).flatten(1)
        h = torch.cat([keypoints, coarse, e], dim=1)
        return F.relu(self.fc2(F.relu(self.fc(h))))


class Policy(nn.Module):
    def __init__(self, size: int, horizon: int):
        super().__init__()
        self.horizon = horizon
        self.trunk = Trunk(size)
        self.logits = nn.Linear(128, 7 * N_BINS)
        self.chunk = nn.Linear(128, horizon * 7)

    def forward(self, small, tokens):
        h = self.trunk(small, tokens)
        return self.logits(h).view(-1, 7, N_BINS), torch.tanh(self.chunk(h)).view(-1, self.horizon, 7)


class Exported(nn.Module):
    """The engine's contract: uint8 NHWC 224x224 + int64 tokens -> one head's output."""

    def __init__(self, policy: Policy, factor: int, head: str):
        super().__init__()
        self.policy = policy
        self.factor = factor
        self.head = head

    def forward(self, image, tokens):
        x = image.permute(0, 3, 1, 2).float() / 255.0
        x = F.avg_pool2d(x, self.factor) if self.factor > 1 else x
        logits, chunk = self.policy(x, tokens)
        return logits if self.head == "logits" else chunk


# ------------------------------------------------------------------ data


def load(demos: str):
    frames = np.load(os.path.join(demos, "frames.npy"))
    actions = np.load(os.path.join(demos, "actions.npy")).astype(np.float64)
    meta = json.load(open(os.path.join(demos, "episodes.json")))
    stats_doc = json.load(open(os.path.join(demos, "dataset_statistics.json")))
    return frames, actions, meta, stats_doc


def chunk_targets(norm: np.ndarray, episodes: list, horizon: int) -> np.ndarray:
    """For every step, the next `horizon` normalized actions of its episode (the last one repeated)."""
    out = np.zeros((norm.shape[0], horizon, norm.shape[1]), dtype=np.float32)
    for ep in episodes:
        s, n = ep["start"], ep["length"]
        for i in range(n):
            idx = np.minimum(np.arange(i, i + horizon), n - 1) + s
            out[s + i] = norm[idx]
    return out


def soft_targets(k: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian over neighbouring bins around each target bin (ordinal smoothing)."""
    bins = np.arange(N_BINS)[None, None, :]
    w = np.exp(-0.5 * ((bins - k[:, :, None]) / sigma) ** 2)
    return (w / w.sum(-1, keepdims=True)).astype(np.float32)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--demos", required=True)
    p.add_argument("--out", default="models")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--horizon", type=int, default=8)
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--label-sigma", type=float, default=3.0, help="Gaussian label smoothing over action bins")
    p.add_argument("--command", default=None, help="the npm command that produced the demos (recorded)")
    args = p.parse_args()

    started = time.time()
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)

    frames, actions, meta, stats_doc = load(args.demos)
    key = meta["unnorm_key"]
    stats = stats_doc[key]["action"]
    factor = int(meta["downsample_factor"])
    size = int(meta["frame_size"][0])
    episodes = meta["episodes"]
    instructions = meta["instructions"]
    token_table = np.array([tokenize(t) for t in instructions], dtype=np.int64)
    step_instruction = np.zeros(len(actions), dtype=np.int64)
    for ep in episodes:
        step_instruction[ep["start"] : ep["start"] + ep["length"]] = ep["instruction_id"]

    norm = normalize(actions, stats)
    k = to_logit_index(norm)
    chunks = chunk_targets(norm.astype(np.float32), episodes, args.horizon)
    mask = np.asarray(stats["mask"], dtype=bool)

    # Hold out whole episodes (the last val_fraction of them) for validation metrics.
    n_val_eps = max(1, int(len(episodes) * args.val_fraction))
    val_start = episodes[-n_val_eps]["start"]
    train_idx = np.arange(0, val_start)
    val_idx = np.arange(val_start, len(actions))

    frames_t = torch.from_numpy(frames)  # uint8 [N, S, S, 3]
    tokens_t = torch.from_numpy(token_table[step_instruction])
    soft = torch.from_numpy(soft_targets(k, args.label_sigma))
    chunks_t = torch.from_numpy(chunks)

    model = Policy(size, args.horizon)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    steps_per_epoch = (len(train_idx) + args.batch - 1) // args.batch
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.epochs * steps_per_epoch)
    gen = torch.Generator().manual_seed(args.seed)

    def batch_input(idx, augment):
        x = frames_t[idx].permute(0, 3, 1, 2).float() / 255.0
        if augment:
            # Sensor noise, brightness and contrast jitter: the server's JPEG round trip and the
            # simulator's lighting option must not throw the policy off.
            bsz = x.shape[0]
            x = x * (1 + 0.1 * (torch.rand(bsz, 1, 1, 1, generator=gen) - 0.5))
            x = x + 0.06 * (torch.rand(bsz, 3, 1, 1, generator=gen) - 0.5)
            x = x + 0.015 * torch.randn(x.shape, generator=gen)
            x = x.clamp(0, 1)
        return x, tokens_t[idx]

    for epoch in range(args.epochs):
        model.train()
        perm = train_idx[torch.randperm(len(train_idx), generator=gen).numpy()]
        total = 0.0
        for s in range(steps_per_epoch):
            idx = torch.from_numpy(perm[s * args.batch : (s + 1) * args.batch])
            x, tok = batch_input(idx, True)
            logits, chunk = model(x, tok)
            ce = -(soft[idx] * F.log_softmax(logits, -1)).sum(-1).mean()
            l1 = F.smooth_l1_loss(chunk, chunks_t[idx], beta=0.05)
            loss = ce + 5.0 * l1
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item()
        print(f"epoch {epoch + 1}/{args.epochs} loss {total / steps_per_epoch:.4f} ({time.time() - started:.0f} s)", flush=True)

    # Validation on held-out episodes: what the engine would decode, in action units.
    model.eval()
    with torch.no_grad():
        idx = torch.from_numpy(val_idx)
        x, tok = batch_input(idx, False)
        logits, chunk = model(x, tok)
    pred_k = logits.argmax(-1).numpy()
    pred = unnormalize(decode_index(pred_k), stats)
    truth = actions[val_idx]
    pos_err = np.abs(pred[:, :3] - truth[:, :3])
    grip_ok = (pred[:, 6] >= 0.5) == (truth[:, 6] >= 0.5)
    chunk_pred = unnormalize(chunk.numpy()[:, 0, :].astype(np.float64), stats)
    metrics = {
        "validation_episodes": n_val_eps,
        "validation_steps": int(len(val_idx)),
        "logits_position_mae_m": float(pos_err.mean()),
        "logits_position_mae_per_axis_m": [float(v) for v in pos_err.mean(0)],
        "logits_gripper_accuracy": float(grip_ok.mean()),
        "logits_token_exact": float((pred_k[:, mask] == k[val_idx][:, mask]).mean()),
        "chunk_first_step_position_mae_m": float(np.abs(chunk_pred[:, :3] - truth[:, :3]).mean()),
        "chunk_gripper_accuracy": float(((chunk_pred[:, 6] >= 0.5) == (truth[:, 6] >= 0.5)).mean()),
    }
    print(json.dumps(metrics, indent=2))

    train_seconds = time.time() - started
    for head, name, out_name in (("logits", "tabletop-policy", "action_logits"), ("chunk", "tabletop-policy-chunk", "actions")):
        d = os.path.join(args.out, name)
        os.makedirs(d, exist_ok=True)
        onnx_path = os.path.join(d, "model.onnx")
        wrapper = Exported(model, factor, head).eval()
        torch.onnx.export(
            wrapper,
            (torch.zeros(1, 224, 224, 3, dtype=torch.uint8), torch.zeros(1, MAX_TOKENS, dtype=torch.int64)),
            onnx_path,
            input_names=["image", "tokens"],
            output_names=[out_name],
            dynamic_axes={"image": {0: "batch"}, "tokens": {0: "batch"}, out_name: {0: "batch"}},
            opset_version=14,
            do_constant_folding=True,
        )
        onnx_bytes = open(onnx_path, "rb").read()
        output = (
            {"name": out_name, "kind": "action_token_logits", "action_dim": 7, "bins": N_BINS}
            if head == "logits"
            else {"name": out_name, "kind": "normalized_actions", "action_dim": 7, "chunk": args.horizon}
        )
        config = {
            "format": "vla-onnx/1",
            "name": name,
            "description": (
                "Behaviour-cloned policy of the simulated tabletop (sim/, docs/sim.md): "
                + ("OpenVLA-style action-token logits." if head == "logits" else f"a chunk of {args.horizon} normalized actions (pi0-style).")
            ),
            "inputs": {
                "image": {"name": "image", "dtype": "uint8", "layout": "NHWC", "height": 224, "width": 224},
                "instruction": {"name": "tokens", "tokenizer": {"kind": "hash-words", "vocab_size": VOCAB, "max_length": MAX_TOKENS}},
            },
            "output": output,
            "dataset_statistics": "dataset_statistics.json",
            "default_unnorm_key": key,
        }
        json.dump(config, open(os.path.join(d, "config.json"), "w"), indent=2)
        open(os.path.join(d, "config.json"), "a").write("\n")
        json.dump({key: stats_doc[key]}, open(os.path.join(d, "dataset_statistics.json"), "w"), indent=2)
        open(os.path.join(d, "dataset_statistics.json"), "a").write("\n")
        training = {
            "script": "scripts/train_tabletop.py",
            # The test (test/sim/tabletop-policy.test.ts) checks this against the committed script.
            "script_sha256": hashlib.sha256(open(os.path.abspath(__file__), "rb").read()).hexdigest(),
            "command": " ".join(["/usr/bin/python3", "scripts/train_tabletop.py", *sys.argv[1:]]),
            "demos_command": args.command,
            "seed": args.seed,
            "epochs": args.epochs,
            "batch": args.batch,
            "lr": args.lr,
            "horizon": args.horizon,
            "label_sigma": args.label_sigma,
            "demos": {
                "format": meta["format"],
                "options": meta["options"],
                "num_transitions": meta["num_transitions"],
                "num_trajectories": meta["num_trajectories"],
                "frame_size": meta["frame_size"],
            },
            "validation": metrics,
            "parameters": int(sum(p.numel() for p in model.parameters())),
            "onnx_bytes": len(onnx_bytes),
            "onnx_sha256": hashlib.sha256(onnx_bytes).hexdigest(),
            "train_seconds": round(train_seconds, 1),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "machine": f"{platform.machine()}, {os.cpu_count()} cpus, {args.threads} threads",
        }
        json.dump(training, open(os.path.join(d, "training.json"), "w"), indent=2)
        open(os.path.join(d, "training.json"), "a").write("\n")
        print(f"wrote {d} ({len(onnx_bytes)} bytes)")


if __name__ == "__main__":
    main()
