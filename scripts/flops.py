#!/usr/bin/env python3
"""FLOPs of one DINO training step per image, counted layer by layer (multiply-adds x 2), for the
docs/benchmarks.md's physical-limit figures (issue 21). Standard library only.

Counts the matrix products and convolutions: patch embedding, attention (qkv, QK^T, AV, proj), MLP,
the DINO head, ResNet convolutions. Norms, activations, softmax, the loss and the optimizer are
left out (a few per cent). Backward is counted as twice the forward (gradients for inputs and for
weights); the teacher runs forward on the global crops only.

Usage: python3 scripts/flops.py [NAME=IMAGES_PER_S ...]   e.g. vit_tiny4=15.1 cifar-quick=92.8
"""
import sys


def vit_forward(img, patch=4, dim=192, depth=12, mlp_ratio=4):
    tokens = (img // patch) ** 2 + 1
    embed = (img // patch) ** 2 * (3 * patch * patch) * dim
    per_block = tokens * (3 * dim * dim + dim * dim + 2 * mlp_ratio * dim * dim) + 2 * tokens * tokens * dim
    return 2 * (embed + depth * per_block)


def resnet18_forward(img):
    """torchvision's ResNet-18 with the ImageNet stem (7x7 stride 2, max-pool)."""
    macs = 0
    s = (img + 1) // 2  # conv1 stride 2, padding 3
    macs += s * s * 64 * 3 * 49
    s = (s + 1) // 2  # max-pool stride 2
    c_in = 64
    for c, stride in [(64, 1), (128, 2), (256, 2), (512, 2)]:
        for block in range(2):
            st = stride if block == 0 else 1
            s_out = (s + st - 1) // st
            macs += s_out * s_out * c * c_in * 9  # conv1 3x3
            macs += s_out * s_out * c * c * 9  # conv2 3x3
            if st != 1 or c_in != c:
                macs += s_out * s_out * c * c_in  # downsample 1x1
            s, c_in = s_out, c
    return 2 * macs, c_in


def head_forward(in_dim, hidden, bottleneck, out_dim):
    return 2 * (in_dim * hidden + hidden * hidden + hidden * bottleneck + bottleneck * out_dim)


def step(backbone, feat_dim, head, global_px, local_px, n_local):
    g = backbone(global_px) + head_forward(feat_dim, *head)
    l = backbone(local_px) + head_forward(feat_dim, *head)
    student = 3 * (2 * g + n_local * l)  # forward + backward (2x)
    teacher = 2 * g
    return student + teacher


CONFIGS = {
    # The micro-benchmark of issue 21 and docs/benchmarks.md: vit_tiny/4, 2 x 32 px + 6 x 16 px, out_dim 4096.
    "vit_tiny4": step(vit_forward, 192, (2048, 256, 4096), 32, 16, 6),
    # cifar-quick: ResNet-18, 2 x 32 px + 4 x 16 px, BN head 1024/256, out_dim 256.
    "cifar-quick": step(lambda px: resnet18_forward(px)[0], 512, (1024, 256, 256), 32, 16, 4),
}


def main(argv):
    measured = dict(a.split("=", 1) for a in argv if "=" in a)
    for name, flops in CONFIGS.items():
        line = f"{name}: {flops / 1e9:.2f} GFLOP per image per step"
        if name in measured:
            ips = float(measured[name])
            line += f"; at {ips:g} images/s: {flops * ips / 1e9:.0f} GFLOP/s"
        print(line)


if __name__ == "__main__":
    main(sys.argv[1:])
