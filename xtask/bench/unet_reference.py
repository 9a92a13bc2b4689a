"""diffusers/PyTorch's cost per UNet step on the same weights and shapes as Cinder's
`unet_step` example (host/core/examples/unet_step.rs): a guidance batch of 2 at a latent
size, float32 on the CPU with torch's threads set to the machine's cores.

    python unet_reference.py UNET_DIR SIDE [STEPS]
    python unet_reference.py --make-sd15 OUT_DIR   # a random-weight SD-1.5-shaped UNet

Run it with the venv made for the fixture (tests/fixtures/sd-tiny/README.md: torch,
diffusers). A step's cost does not depend on what the weights say, so random ones measure it.
"""

import os
import resource
import sys
import time

import torch
from diffusers import UNet2DConditionModel


def make_sd15(out):
    torch.manual_seed(0)
    # UNet2DConditionModel's defaults are SD 1.5's layout (320/640/1280/1280, 8 heads, 768).
    unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768)
    unet.save_pretrained(out, safe_serialization=True)
    print(f"saved {sum(p.numel() for p in unet.parameters()) / 1e6:.0f}M parameters to {out}")


def main():
    if sys.argv[1] == "--make-sd15":
        return make_sd15(sys.argv[2])
    path, side = sys.argv[1], int(sys.argv[2])
    steps = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    torch.set_num_threads(os.cpu_count())
    unet = UNet2DConditionModel.from_pretrained(path).eval()
    c = unet.config
    n = 2 * c.in_channels * side * side
    sample = (torch.arange(n, dtype=torch.int64) * 7919 % 1000).float().div(500).sub(1)
    sample = sample.reshape(2, c.in_channels, side, side)
    context = torch.full((2, 77, c.cross_attention_dim), 0.01)
    times = []
    with torch.inference_mode():
        for i in range(steps + 1):
            t = time.perf_counter()
            unet(sample, 999 - i, encoder_hidden_states=context).sample
            times.append(time.perf_counter() - t)
    warm = times[1:]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"torch {torch.__version__} diffusers | threads {torch.get_num_threads()} | first step {times[0]:.3f} s | "
          f"step (batch 2, {side}x{side} latents) mean {sum(warm) / len(warm):.3f} s over {len(warm)} | peak RSS {peak:.0f} MiB")


if __name__ == "__main__":
    main()
