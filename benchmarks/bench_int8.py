"""int8 on the CPU: our fp32 (torch eager, our kernels) vs onnxruntime fp32 vs our int8 export.

For the paper net and torchvision's net (random weights, seed 0, 1000 classes, 224 px): each
is saved, exported with `alexnet export --onnx` (fp32) and `--int8` (calibrated on a small
synthetic packed set: speed does not depend on the calibration images), then timed at batch 1
and 32, interleaved (round r times every path once), median of `--reps` rounds after a
warm-up. Threads: torch's and onnxruntime's intra-op pools both use every core.

Then one onnxruntime profile per ONNX file of the paper net at batch 32: time per node,
summed into the LRN, conv1, the other convolutions, the FC layers and the rest.

With `--data DIR --weights W`: the top-1 error of W (torch) and of its fp32 and int8 exports
(int8 calibrated on DIR's training split) on DIR's val split (its first `--val-images`), 1
crop, through the same `alexnet.evaluate.evaluate`. `--models ""` skips the timing.

The CPU's name and flags (AVX2, AVX-512, VNNI) are printed first; the last line is JSON.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from alexnet.cli import main as cli
from alexnet.export import OnnxModel, export_onnx
from alexnet.models.registry import get_model
from alexnet.weights import save


def cpu_info() -> dict:
    """Name and the SIMD flags that matter for int8 (x86 Linux /proc/cpuinfo)."""
    name, flags = platform.processor() or "?", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and name in ("?", "x86_64", ""):
                name = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return {
        "name": name,
        "cores": os.cpu_count(),
        "avx2": "avx2" in flags,
        "avx512": "avx512f" in flags,
        "vnni": bool({"avx512_vnni", "avx_vnni"} & flags),
        "amx": "amx_int8" in flags,
    }


def save_random(name: str, path: Path) -> None:
    torch.manual_seed(0)
    model = get_model(name, num_classes=1000)
    pre = {"crop_size": 224, "resize": None, "out_channels": 3, "normalize": "channel",
           "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}  # fmt: skip
    classes = [f"c{i}" for i in range(1000)]
    save(path, model.state_dict(), model_config=model.config, classes=classes, preprocess=pre)


def timed(fn, x) -> float:
    t0 = time.perf_counter()
    fn(x)
    return time.perf_counter() - t0


def profile(path: Path, x: np.ndarray, runs: int = 2) -> dict:
    """onnxruntime's per-node times (ms per run) of `path` on `x`, grouped: "lrn" (nodes of
    the LRN modules), "conv1" (the first convolution), "convs" (the others), "fc" (the
    Gemm/MatMul nodes) and "other" (quantize/dequantize, pooling, ReLU, reshapes)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.enable_profiling = True
    opts.intra_op_num_threads = os.cpu_count() or 1
    opts.profile_file_prefix = str(path.with_suffix(""))
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    for _ in range(runs):
        sess.run(None, {"images": x})
    trace = json.loads(Path(sess.end_profiling()).read_text())
    nodes = [e for e in trace if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
    groups = dict.fromkeys(("lrn", "conv1", "convs", "fc", "other"), 0.0)
    first_conv = None
    for e in nodes:
        name, op = e["name"][: -len("_kernel_time")], e.get("args", {}).get("op_name", "")
        if "lrn" in name.lower() or "norm" in name.lower():
            key = "lrn"
        elif "Conv" in op:
            first_conv = first_conv or name
            key = "conv1" if name == first_conv else "convs"
        elif any(k in op for k in ("Gemm", "MatMul")):
            key = "fc"
        else:
            key = "other"
        groups[key] += e["dur"] / 1000 / runs
    total = sum(groups.values())
    return {"ms": {k: round(v, 1) for k, v in groups.items()}, "total_ms": round(total, 1)}


def accuracy(data: str, weights: str, tmp: Path, calib: int, images: int = 0) -> dict:
    """Top-1 error on DIR's val split (its first `images`, 0: all): torch, fp32 ONNX, int8
    ONNX (calibrated on train)."""
    from alexnet.data.loader import DeviceLoader
    from alexnet.data.packed import open_dataset
    from alexnet.evaluate import evaluate, make_eval_transform
    from alexnet.inference import load_backend

    fp32, int8 = tmp / "acc.onnx", tmp / "acc.int8.onnx"
    export_onnx(weights, fp32)
    export_onnx(weights, int8, int8=True, calibration_data=data, calibration_images=calib)
    ds = open_dataset(data, "val")
    ds = ds.head(images) if images > 0 else ds
    out = {"data": data, "weights": weights, "images": len(ds)}
    for key, path in (("torch_fp32", weights), ("onnx_fp32", fp32), ("int8", int8)):
        backend, meta = load_backend(path, "cpu")
        model = getattr(backend, "model", backend)
        loader = DeviceLoader(ds, 256, shuffle=False, drop_last=False, device="cpu")
        loader.set_epoch(0)
        transform = make_eval_transform(meta.preprocess, meta.mean_image, 1)
        res = evaluate(model, loader.iterate(), transform, crops=1, num_classes=ds.num_classes)
        out[key] = {"top1_error": res["top1_error"], "loss": res["loss"]}
    out["top1_change_pts"] = 100 * (out["int8"]["top1_error"] - out["torch_fp32"]["top1_error"])
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="paper,torchvision")
    p.add_argument("--batches", default="1,32")
    p.add_argument("--reps", type=int, default=3, help="timed rounds per batch size")
    p.add_argument("--data", help="packed dataset for the top-1 change (val split)")
    p.add_argument("--weights", help="weights evaluated on --data")
    p.add_argument("--val-images", type=int, default=0, help="first N val images (0: all)")
    p.add_argument("--calibration-images", type=int, default=256)
    p.add_argument("--no-profile", action="store_true")
    args = p.parse_args()
    cpu = cpu_info()
    threads = os.cpu_count() or 1
    torch.set_num_threads(threads)
    flags = f"AVX2 {cpu['avx2']}, AVX-512 {cpu['avx512']}, VNNI {cpu['vnni']}"
    print(f"cpu: {cpu['name']}, {cpu['cores']} cores, {flags}")
    result: dict = {"cpu": cpu, "torch": torch.__version__, "speed": {}, "profile": {}}
    import onnxruntime

    result["onnxruntime"] = onnxruntime.__version__
    tmp = Path(tempfile.mkdtemp(prefix="bench-int8-"))
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)  # full-size files: leave no trace
    calib = tmp / "calib"
    prep = ["prepare", "synthetic", calib, "--source", "synthetic", "--classes", "4",
            "--count", "32", "--image-size", "256", "--workers", "1", "--no-progress"]  # fmt: skip
    cli([str(a) for a in prep])
    batches = [int(b) for b in args.batches.split(",")]
    for name in filter(None, args.models.split(",")):
        w = tmp / f"{name}.safetensors"
        save_random(name, w)
        fp32, int8 = tmp / f"{name}.onnx", tmp / f"{name}.int8.onnx"
        export_onnx(w, fp32, check=False)
        export_onnx(w, int8, check=False, int8=True, calibration_data=calib, calibration_images=16)
        from alexnet.weights import load

        model, _ = load(w, "cpu")
        ort32, ort8 = OnnxModel(fp32), OnnxModel(int8)

        @torch.no_grad()
        def ours(x: np.ndarray, model=model) -> None:
            model(torch.from_numpy(x))

        paths = {"torch_fp32": ours, "onnx_fp32": ort32.logits, "int8": ort8.logits}
        for b in batches:
            x = np.random.default_rng(b).standard_normal((b, 3, 224, 224)).astype(np.float32)
            for fn in paths.values():
                fn(x)  # warm-up
            times: dict[str, list[float]] = {k: [] for k in paths}
            for _ in range(args.reps):
                for k, fn in paths.items():
                    times[k].append(timed(fn, x))
            ips = {k: round(b / statistics.median(v), 1) for k, v in times.items()}
            ips["int8_vs_torch_fp32"] = round(ips["int8"] / ips["torch_fp32"], 2)
            ips["int8_vs_onnx_fp32"] = round(ips["int8"] / ips["onnx_fp32"], 2)
            result["speed"][f"{name}/b{b}"] = ips
            line = "  ".join(f"{k} {ips[k]:7.1f}" for k in paths)
            print(f"{name:<12} batch {b:>3} img/s: {line}", flush=True)
        if name == "paper" and not args.no_profile:
            x = np.random.default_rng(0).standard_normal((32, 3, 224, 224)).astype(np.float32)
            for key, path in (("onnx_fp32", fp32), ("int8", int8)):
                result["profile"][f"paper/b32/{key}"] = prof = profile(path, x)
                print(f"profile paper b32 {key}: {prof['ms']} total {prof['total_ms']} ms")
    if args.data and args.weights:
        acc = accuracy(args.data, args.weights, tmp, args.calibration_images, args.val_images)
        result["accuracy"] = acc
        err = {
            k: f"{100 * acc[k]['top1_error']:.2f} %" for k in ("torch_fp32", "onnx_fp32", "int8")
        }
        print(
            f"top-1 error on {acc['data']} val ({acc['images']} images): torch fp32 "
            f"{err['torch_fp32']}, onnx fp32 {err['onnx_fp32']}, int8 {err['int8']} "
            f"({acc['top1_change_pts']:+.2f} pts)"
        )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
