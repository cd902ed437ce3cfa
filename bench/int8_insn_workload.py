"""The models and the inference calls of bench/int8_insn_counts.sh.

    python int8_insn_workload.py export DIR                  # natively, once: the models
    python int8_insn_workload.py run MODEL INPUT WARMUP REPS # under qemu: the counted calls
    python int8_insn_workload.py isa                         # the int8 path CPUID selects

``export`` writes, with bench/inference.py's export and schemes (random weights: an inference
executes the same instructions whatever the weights are):

- ``DIR/resnet18-224/`` (ResNet-18, ImageNet stem, 1000 classes, 224 px, float NCHW input,
  calibrated on 16 CIFAR-10 images upsampled to 224 px, or random ones) with ``model.onnx``
  (fp32) and ``model.int8.onnx`` (U8S8, 7-bit weights: the default), ``DIR/resnet18-224-u8u8.onnx``
  and ``DIR/resnet18-224-u8s8_8-bit.onnx``, and the input ``DIR/resnet18-224-input.npy``
  (1, 3, 224, 224);
- ``DIR/lenet-digits/`` and its siblings alike: the LeNet of docs/deploy.md's int8 accuracy
  table (1 channel, 28 px, 10 classes, ``input="uint8-nhwc"``), calibrated on 256 digits:mnist
  images; input one digits:mnist image (1, 28, 28, 1) uint8.

``run`` opens one model in onnxruntime (1 thread, as bench/inference.py's sessions), prints the
int8 path this CPU (or qemu's CPUID) selects, runs WARMUP inferences, then makes a getppid()
mark, runs REPS inferences and makes a second mark: the counting plugin prints its count at each
mark (see bench/qemu_insn.sh).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def export_all(out: Path) -> None:
    import torch
    from inference import cifar_images, export, extra_schemes

    import pyxfer
    from pyxfer.ops import normalize

    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    resnet = pyxfer.create_backbone("resnet18", num_classes=1000).eval()
    calib, _ = cifar_images(16, 224)
    bundle = export(
        resnet, out / "resnet18-224", quantize="int8", calibration=calib,
        calibration_count=len(calib), dynamic_size=False,
    )  # fmt: skip
    spec = resnet.input_spec
    extra_schemes(bundle, normalize(np.ascontiguousarray(calib), spec.mean, spec.std))
    x = np.random.default_rng(1).standard_normal((1, 3, 224, 224), np.float32)
    np.save(out / "resnet18-224-input.npy", x)

    torch.manual_seed(0)
    lenet = pyxfer.create_backbone("lenet", num_classes=10).eval()
    images = pyxfer.load_dataset("digits:mnist").images
    bundle = export(
        lenet, out / "lenet-digits", input="uint8-nhwc", quantize="int8", calibration=images,
        calibration_count=256, dynamic_size=False,
    )  # fmt: skip
    calib = images[np.random.default_rng(0).choice(len(images), 256, replace=False)]
    extra_schemes(bundle, calib)
    np.save(out / "lenet-digits-input.npy", images[:1])


def run(model: str, input_path: str, warmup: int, reps: int) -> None:
    from inference import ort_session

    from pyxfer.runtime.verification import int8_isa

    print(f"int8 path: {int8_isa()}", flush=True)
    session = ort_session(Path(model), 1)
    feed = {session.get_inputs()[0].name: np.load(input_path)}
    for _ in range(warmup):
        session.run(None, feed)
    os.getppid()  # marks (the counting plugin prints its count at each getppid)
    for _ in range(reps):
        session.run(None, feed)
    os.getppid()


if __name__ == "__main__":
    if sys.argv[1:2] == ["export"] and len(sys.argv) == 3:
        export_all(Path(sys.argv[2]))
    elif sys.argv[1:] == ["isa"]:
        from pyxfer.runtime.verification import int8_isa

        print(int8_isa())
    elif sys.argv[1:2] == ["run"] and len(sys.argv) == 6:
        run(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    else:
        sys.exit(__doc__)
