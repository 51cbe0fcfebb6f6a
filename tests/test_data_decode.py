"""Every bad-input kind: decoded right (not just readable), or skipped and reported."""

from __future__ import annotations

import io
import json

import data_helpers as dh
import numpy as np
from PIL import Image

from alexnet.data.decode import decode_image
from alexnet.data.pack import prepare
from alexnet.data.sources import open_source


def _bytes(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def test_cmyk_jpeg_colours_match_rgb():
    rgb = dh.photo(3, 48, 32)
    # Pillow writes Adobe CMYK JPEGs (inverted, APP14 marker), as Photoshop does
    data = _bytes(Image.fromarray(rgb).convert("CMYK"), "JPEG", quality=98)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    out = decode_image(data, "x.JPEG", None)
    assert out.image is not None and out.image.shape == rgb.shape
    # naive RGB->CMYK->RGB is the identity up to JPEG error; an un-inverted decode is ~255 off
    assert np.abs(out.image.astype(int) - rgb).mean() < 4
    assert any("CMYK" in r for r in out.repairs)


def test_cmyk_with_icc_profile_uses_it():
    from PIL import ImageCms

    rgb = dh.photo(4, 32, 32)
    cmyk = Image.fromarray(rgb).convert("CMYK")
    # an ICC profile for the CMYK data: an sRGB profile would be wrong, so build a Lab-based
    # check instead: when the profile is unusable for CMYK, we must fall back, not crash
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    data = _bytes(cmyk, "JPEG", quality=98, icc_profile=srgb)
    out = decode_image(data, "x.jpg", None)
    assert out.image is not None
    assert np.abs(out.image.astype(int) - rgb).mean() < 4


def test_16bit_scaled_not_clipped():
    ramp = (np.arange(64 * 16, dtype=np.uint32) * 64).reshape(16, 64).astype(np.uint16)
    data = _bytes(Image.fromarray(ramp), "PNG")
    out = decode_image(data, "x.png", None)
    expected = np.rint(ramp.astype(np.float64) * 255 / 65535).astype(np.uint8)
    assert np.array_equal(out.image[..., 0], expected)
    assert np.array_equal(out.image[..., 2], expected)
    assert out.image.max() == expected.max() and expected.max() > 250  # clipping gives 255s
    assert (out.image == 255).mean() < 0.01
    assert any("16-bit" in r for r in out.repairs)


def test_exif_orientation_stored_upright():
    upright = np.zeros((30, 20, 3), np.uint8)  # tall image, red top half
    upright[:15] = (255, 0, 0)
    upright[15:] = (0, 0, 255)
    # orientation 6 = "rotate 90 CW to display": store the pixels rotated 90 CCW
    stored = Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    data = _bytes(stored, "JPEG", quality=98, exif=exif.tobytes())
    out = decode_image(data, "x.jpg", None)
    assert out.image.shape == (30, 20, 3)
    assert out.image[:10, :, 0].mean() > 200 and out.image[:10, :, 2].mean() < 50
    assert out.image[-10:, :, 2].mean() > 200
    assert any("EXIF" in r for r in out.repairs)


def test_png_named_jpeg_decoded_by_content():
    rgb = dh.photo(5)
    out = decode_image(dh.png_bytes(rgb), "n02105855_2933.JPEG", None)
    assert np.array_equal(out.image, rgb)  # PNG is lossless
    assert any("PNG content" in r for r in out.repairs)


def test_grayscale_palette_alpha():
    gray = dh.photo(6)[..., 0]
    out = decode_image(_bytes(Image.fromarray(gray), "PNG"), "g.png", None)
    assert np.array_equal(out.image, np.repeat(gray[..., None], 3, 2))
    pal = Image.fromarray(dh.photo(7)).quantize(16)
    out = decode_image(_bytes(pal, "PNG"), "p.png", None)
    assert np.array_equal(out.image, np.asarray(pal.convert("RGB")))
    rgba = np.zeros((4, 4, 4), np.uint8)  # fully transparent black -> white background
    out = decode_image(_bytes(Image.fromarray(rgba), "PNG"), "a.png", None)
    assert (out.image == 255).all()


def test_skips_without_crashing():
    good = dh.jpeg_bytes(dh.photo(8, 64, 48))
    assert decode_image(b"", "e.JPEG", 32).skip.startswith("empty")
    assert "not an image" in decode_image(b"hello world" * 20, "t.JPEG", 32).skip
    assert "truncated" in decode_image(good[: len(good) // 2], "t.JPEG", 32).skip
    bomb = decode_image(good, "b.JPEG", 32, max_pixels=64 * 48 - 1)
    assert bomb.image is None and "decompression bomb" in bomb.skip
    assert decode_image(good, "ok.JPEG", 32, max_pixels=64 * 48).image.shape == (32, 32, 3)


def test_bomb_skipped_before_decoding():
    # a 20000 x 20000 PNG header over a tiny body: decoding would need 1.2 GB
    big = Image.new("L", (20000, 20000))
    data = _bytes(big, "PNG", optimize=False)
    out = decode_image(data, "bomb.png", 256, max_pixels=10_000_000)
    assert out.image is None and "20000x20000" in out.skip


def test_prepare_reports_every_bad_file(tmp_path):
    dh.imagefolder(tmp_path / "src", per_class=2, val_per_class=1)
    d = tmp_path / "src" / "train" / dh.WNIDS[0]
    good = dh.jpeg_bytes(dh.photo(9, 64, 48))
    (d / "empty.JPEG").write_bytes(b"")
    (d / "trunc.JPEG").write_bytes(good[: len(good) // 3])
    (d / "notes.JPEG").write_text("not an image\n" * 10)
    (d / "png.JPEG").write_bytes(dh.png_bytes(dh.photo(10)))
    (d / "cmyk.JPEG").write_bytes(_bytes(Image.fromarray(dh.photo(11)).convert("CMYK"), "JPEG"))
    (d / "huge.JPEG").write_bytes(dh.jpeg_bytes(np.zeros((200, 300, 3), np.uint8)))
    source = open_source(str(tmp_path / "src"), size=16, max_pixels=200 * 300 - 1)
    report = prepare(source, tmp_path / "out", workers=2, progress=False)
    saved = json.loads((tmp_path / "out" / "report.json").read_text())
    assert saved == json.loads(json.dumps(report))
    skipped = {e["path"].split("/")[-1]: e["reason"] for e in saved["skipped"]}
    repaired = {e["path"].split("/")[-1]: e["reason"] for e in saved["repaired"]}
    assert set(skipped) == {"empty.JPEG", "trunc.JPEG", "notes.JPEG", "huge.JPEG"}
    assert "empty" in skipped["empty.JPEG"] and "bomb" in skipped["huge.JPEG"]
    assert set(repaired) == {"png.JPEG", "cmyk.JPEG"}
    assert saved["splits"] == {"train": 6 + 2, "val": 3}


def test_a_grayscale_image_is_stored_as_it_is_not_listed_as_repaired():
    grey = np.arange(48, dtype=np.uint8).reshape(6, 8)
    out = decode_image(_bytes(Image.fromarray(grey), "PNG"), "g.png", None)
    assert out.repairs == [] and (out.image == grey[:, :, None]).all()
