"""The DINO reference's training step in PyTorch eager, as a peer for examples/bench_step.rs.

The reference's scripts are not on this machine, so this re-implements the body of its
`train_one_epoch` for the micro-benchmark configuration: its ViT (vision_transformer.py: explicit
softmax attention, GELU MLP, LayerNorm eps 1e-6, drop path 0.1, bicubic position-embedding
interpolation), DINOHead (3-layer MLP, bottleneck 256, weight-normed last layer), the multi-crop
wrapper (one backbone pass per resolution, one head pass), DINOLoss (centering, sharpening),
AdamW over its two parameter groups, per-parameter gradient clipping at 3.0, and the teacher EMA.
One forward over all crops, then one backward, as the reference. `bf16` runs the same step under
CPU bfloat16 autocast, which the reference does not offer (its use_fp16 is CUDA's GradScaler).

    python scripts/peer-step.py fp32|bf16 [ITERS] [BATCH] [vit_tiny4|cifar-quick]

`cifar-quick` is the CPU preset's step instead: torchvision's ResNet-18 (its layout, written out
here because the venv has no torchvision) with `fc` replaced by identity as the reference does,
DINOHead with batch norm (use_bn_in_head), out_dim 256, hidden 1024, 32 px x2 + 16 px x4, teacher
momentum 0.99 and temperature 0.02. Both networks stay in training mode, as in the reference.

Prints "peer vit_tiny4 fp32: S s/iteration, I images/s, peak RSS M MB". Uses the PyTorch that
scripts/setup-libtorch.sh installs (its venv's python).
"""
import math
import warnings
import resource
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

# The reference calls nn.utils.weight_norm, which PyTorch 2.11 marks deprecated.
warnings.filterwarnings("ignore", category=FutureWarning)


class Attention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.qkv, self.proj = nn.Linear(dim, dim * 3), nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


def drop_path(x, rate, training):
    if rate == 0.0 or not training:
        return x
    keep = 1 - rate
    mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
    return x.div(keep) * mask


class Block(nn.Module):
    def __init__(self, dim, heads, rate):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim, eps=1e-6), nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
        self.rate = rate

    def forward(self, x):
        x = x + drop_path(self.attn(self.norm1(x)), self.rate, self.training)
        return x + drop_path(self.mlp(self.norm2(x)), self.rate, self.training)


class ViT(nn.Module):
    def __init__(self, dim=192, depth=12, heads=3, patch=4, img=32, drop_path_rate=0.1):
        super().__init__()
        self.patch = patch
        self.patch_embed = nn.Conv2d(3, dim, patch, patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, (img // patch) ** 2 + 1, dim) * 0.02)
        rates = [r.item() for r in torch.linspace(0, drop_path_rate, depth)]
        self.blocks = nn.ModuleList(Block(dim, heads, r) for r in rates)
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def pos(self, x, w, h):
        n = self.pos_embed.shape[1] - 1
        if x.shape[1] - 1 == n and w == h:
            return self.pos_embed
        side, dim = int(math.sqrt(n)), x.shape[-1]
        w0, h0 = w // self.patch + 0.1, h // self.patch + 0.1
        grid = self.pos_embed[:, 1:].reshape(1, side, side, dim).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, scale_factor=(w0 / side, h0 / side), mode="bicubic")
        return torch.cat((self.pos_embed[:, :1], grid.permute(0, 2, 3, 1).view(1, -1, dim)), dim=1)

    def forward(self, x):
        b, _, w, h = x.shape
        t = self.patch_embed(x).flatten(2).transpose(1, 2)
        t = torch.cat((self.cls_token.expand(b, -1, -1), t), dim=1)
        t = t + self.pos(t, w, h)
        for blk in self.blocks:
            t = blk(t)
        return self.norm(t)[:, 0]


class BasicBlock(nn.Module):
    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out)
        self.conv2, self.bn2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False), nn.BatchNorm2d(c_out)
        self.downsample = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(y + (x if self.downsample is None else self.downsample(x)))


class ResNet18(nn.Module):
    """torchvision's resnet18() with fc = nn.Identity(): the pooled 512-d feature."""

    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        stages, c_in = [], 64
        for c_out, stride in [(64, 1), (128, 2), (256, 2), (512, 2)]:
            stages.append(nn.Sequential(BasicBlock(c_in, c_out, stride), BasicBlock(c_out, c_out, 1)))
            c_in = c_out
        self.layer1, self.layer2, self.layer3, self.layer4 = stages

    def forward(self, x):
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)


class Head(nn.Module):
    def __init__(self, dim, out_dim, hidden=2048, bottleneck=256, norm_last_layer=True, use_bn=False):
        super().__init__()
        bn = (lambda: [nn.BatchNorm1d(hidden)]) if use_bn else (lambda: [])
        self.mlp = nn.Sequential(
            nn.Linear(dim, hidden), *bn(), nn.GELU(), nn.Linear(hidden, hidden), *bn(), nn.GELU(), nn.Linear(hidden, bottleneck)
        )
        self.last_layer = nn.utils.weight_norm(nn.Linear(bottleneck, out_dim, bias=False))
        self.last_layer.weight_g.data.fill_(1)
        if norm_last_layer:
            self.last_layer.weight_g.requires_grad = False

    def forward(self, x):
        return self.last_layer(F.normalize(self.mlp(x), dim=-1, p=2))


class MultiCrop(nn.Module):
    def __init__(self, backbone, head):
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, crops):
        sizes = torch.tensor([c.shape[-1] for c in crops])
        ends = torch.cumsum(torch.unique_consecutive(sizes, return_counts=True)[1], 0)
        out, start = [], 0
        for end in ends:
            out.append(self.backbone(torch.cat(crops[start:end])))
            start = end
        return self.head(torch.cat(out))


def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else "fp32"
    iters = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    batch = int(sys.argv[3]) if len(sys.argv) > 3 else 64
    which = sys.argv[4] if len(sys.argv) > 4 else "vit_tiny4"
    torch.manual_seed(0)
    if which == "vit_tiny4":
        out_dim, nlocal, momentum, teacher_temp = 4096, 6, 0.996, 0.04
        student = MultiCrop(ViT(), Head(192, out_dim, norm_last_layer=False))
        teacher = MultiCrop(ViT(drop_path_rate=0.0), Head(192, out_dim))
    elif which == "cifar-quick":
        out_dim, nlocal, momentum, teacher_temp = 256, 4, 0.99, 0.02
        head = lambda: Head(512, out_dim, hidden=1024, use_bn=True)  # noqa: E731
        student, teacher = MultiCrop(ResNet18(), head()), MultiCrop(ResNet18(), head())
    else:
        sys.exit(f"peer-step: unknown configuration {which!r} (vit_tiny4 or cifar-quick)")
    ncrops = 2 + nlocal
    teacher.load_state_dict(student.state_dict())
    for p in teacher.parameters():
        p.requires_grad = False
    named = [(n, p) for n, p in student.named_parameters() if p.requires_grad]
    groups = [
        {"params": [p for n, p in named if not (n.endswith(".bias") or p.ndim == 1)]},
        {"params": [p for n, p in named if n.endswith(".bias") or p.ndim == 1], "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(groups, lr=1e-4)
    center = torch.zeros(1, out_dim)
    crops = [torch.randn(batch, 3, 32, 32) for _ in range(2)] + [torch.randn(batch, 3, 16, 16) for _ in range(nlocal)]

    def step():
        nonlocal center
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mode == "bf16"):
            teacher_out = teacher(crops[:2]).float()
            student_out = student(crops).float()
        s = (student_out / 0.1).chunk(ncrops)
        t = F.softmax((teacher_out - center) / teacher_temp, dim=-1).detach().chunk(2)
        loss, terms = 0, 0
        for iq, q in enumerate(t):
            for v in range(ncrops):
                if v != iq:
                    loss = loss + torch.sum(-q * F.log_softmax(s[v], dim=-1), dim=-1).mean()
                    terms += 1
        loss = loss / terms
        opt.zero_grad()
        loss.backward()
        for p in student.parameters():
            if p.grad is not None:
                norm = p.grad.data.norm(2)
                p.grad.data.mul_((3.0 / (norm + 1e-6)).clamp(max=1))
        opt.step()
        with torch.no_grad():
            for ps, pt in zip(student.parameters(), teacher.parameters()):
                pt.data.mul_(momentum).add_((1 - momentum) * ps.detach().data)
            center = center * 0.9 + teacher_out.sum(dim=0, keepdim=True) / len(teacher_out) * 0.1

    step()  # warm-up, as bench_step
    t0 = time.time()
    for _ in range(iters):
        step()
    dt = (time.time() - t0) / iters
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peer {which} {mode}: {dt:.3f} s/iteration, {batch / dt:.1f} images/s, peak RSS {rss:.0f} MB, {torch.get_num_threads()} threads")


if __name__ == "__main__":
    main()
