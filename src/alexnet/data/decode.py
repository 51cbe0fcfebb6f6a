"""Robust image decoding + the paper's fixed preprocessing (§2: shorter side to 256, centre
crop). `decode_image` never raises on bad input: a `Decoded` holds the RGB uint8 image or a
skip reason, and the repairs made (format by content, EXIF orientation, CMYK, 16-bit, alpha,
palette); decompression bombs are caught from the header, before decoding."""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# PIL's own bomb check would raise inside open(); we check the header size ourselves.
Image.MAX_IMAGE_PIXELS = None
DEFAULT_MAX_PIXELS = 89_478_485  # Pillow's default limit (~ 0.25 GB of 24-bit pixels)

_EXT_FORMAT = dict.fromkeys((".jpeg", ".jpg", ".jpe", ".jfif"), "JPEG")  # by file extension
_EXT_FORMAT |= {".png": "PNG", ".gif": "GIF", ".bmp": "BMP", ".webp": "WEBP"}
_EXT_FORMAT |= {".tif": "TIFF", ".tiff": "TIFF"}


@dataclass
class Decoded:
    image: np.ndarray | None  # (H, W, 3) uint8, or None when skipped
    skip: str | None = None
    repairs: list[str] = field(default_factory=list)


def _srgb_from_cmyk(img: Image.Image, repairs: list[str]) -> Image.Image:
    """CMYK -> RGB as a colour-managed viewer shows it: through the embedded ICC profile, else
    the (1-C)(1-K) formula (Pillow has undone Photoshop's Adobe inversion while decoding)."""
    icc = img.info.get("icc_profile")
    if icc:
        try:
            from PIL import ImageCms

            src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            dst = ImageCms.createProfile("sRGB")
            out = ImageCms.profileToProfile(img, src, dst, outputMode="RGB")
            if out is not None:
                repairs.append("CMYK converted to RGB through its ICC profile")
                return out
        except Exception:  # a broken profile: fall back to the formula
            pass
    repairs.append("CMYK converted to RGB")
    return img.convert("RGB")


def _to_rgb(img: Image.Image, repairs: list[str]) -> np.ndarray:
    mode = img.mode
    if mode == "RGB":
        return np.asarray(img)
    if mode == "CMYK":
        return np.asarray(_srgb_from_cmyk(img, repairs))
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):  # uint16 or int32 pixels
        arr = np.asarray(img).astype(np.float64)
        top = 65535.0 if (mode != "I" or arr.max(initial=0) > 255) else 255.0
        if top == 65535.0:
            repairs.append("16-bit image scaled to 8 bits")
        arr = np.rint(np.clip(arr, 0, top) * (255.0 / top)).astype(np.uint8)
        return np.repeat(arr[:, :, None], 3, axis=2)
    if mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min(initial=0)), float(arr.max(initial=1))
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
        repairs.append("floating-point image scaled to 8 bits")
        arr = np.rint((arr - lo) * scale).astype(np.uint8)
        return np.repeat(arr[:, :, None], 3, axis=2)
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        repairs.append("alpha channel composited on white")
        return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"))
    if mode == "P":
        repairs.append("palette image converted to RGB")
    elif mode not in ("L", "1"):  # gray: every pixel kept in the three channels, not a repair
        repairs.append(f"{mode} image converted to RGB")
    return np.asarray(img.convert("RGB"))


def resize_center_crop(img: Image.Image, size: int) -> Image.Image:
    """Shorter side to `size` (antialiased bilinear, like torchvision's Resize), then the
    central size x size crop (paper §2)."""
    w, h = img.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    if (nw, nh) != (w, h):
        img = img.resize((nw, nh), Image.Resampling.BILINEAR, reducing_gap=None)
    left, top = (nw - size) // 2, (nh - size) // 2
    return img.crop((left, top, left + size, top + size))


def decode_image(
    data: bytes, name: str, size: int | None, max_pixels: int = DEFAULT_MAX_PIXELS
) -> Decoded:
    """Decode `data` (the bytes of file `name`) to RGB uint8, resized + centre-cropped to
    (size, size, 3) when `size` is given (else native size)."""
    if not data:
        return Decoded(None, "empty file (0 bytes)")
    repairs: list[str] = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Corrupt EXIF data" etc. are harmless
            img = Image.open(io.BytesIO(data))
            fmt = img.format or "unknown"
            expected = _EXT_FORMAT.get(os.path.splitext(name)[1].lower())
            if expected and fmt != expected and not (expected == "JPEG" and fmt == "MPO"):
                repairs.append(f"{fmt} content named {os.path.splitext(name)[1]}, decoded as {fmt}")
            w, h = img.size
            if w * h > max_pixels:
                return Decoded(None, f"decompression bomb: {w}x{h} = {w * h} pixels > {max_pixels}")
            if w == 0 or h == 0:
                return Decoded(None, "image has zero width or height")
            orientation = img.getexif().get(0x0112, 1)
            if fmt == "JPEG" and size is not None and img.mode in ("RGB", "L", "CMYK"):
                s = min(w, h)  # DCT-domain downscale, never below the target size
                img.draft(None, (max(1, w * size // s), max(1, h * size // s)))
            img.load()
            if orientation not in (1, None):
                img = ImageOps.exif_transpose(img)
                repairs.append(f"EXIF orientation {orientation} applied")
            arr = _to_rgb(img, repairs)
            if size is not None:
                arr = np.asarray(resize_center_crop(Image.fromarray(arr), size))
    except UnidentifiedImageError:
        return Decoded(None, "not an image (format not recognized)")
    except (OSError, ValueError, SyntaxError, EOFError, IndexError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return Decoded(None, f"truncated or corrupt image: {msg}")
    except Exception as exc:  # noqa: BLE001 - a bad file must never crash `prepare`
        return Decoded(None, f"undecodable image: {type(exc).__name__}: {exc}")
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    return Decoded(arr, None, repairs)
