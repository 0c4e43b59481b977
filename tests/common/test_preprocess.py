import io

import numpy as np
import pytest
from PIL import Image

from common.preprocess import ImageDecodeError, ImageTooLargeError, decode_image, image_pixels, normalize, to_input


def _encode(img: Image.Image, fmt: str = "PNG", **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def test_greyscale_is_replicated_to_three_channels():
    grey = Image.fromarray(np.arange(12, dtype=np.uint8).reshape(3, 4) * 20, mode="L")
    rgb = np.asarray(decode_image(_encode(grey)))
    assert rgb.shape == (3, 4, 3)
    assert (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()
    np.testing.assert_array_equal(rgb[..., 0], np.asarray(grey))


def test_exif_orientation_is_applied():
    arr = np.zeros((2, 3, 3), dtype=np.uint8)
    arr[0, 0] = (255, 0, 0)  # red top-left in stored pixels
    img = Image.fromarray(arr)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW to display
    decoded = decode_image(_encode(img, "PNG", exif=exif))
    assert decoded.size == (2, 3)  # width, height swapped
    assert tuple(np.asarray(decoded)[0, 1]) == (255, 0, 0)  # top-left moved to top-right


def test_rgba_is_composited_on_black():
    img = Image.new("RGBA", (2, 2), (200, 100, 50, 0))
    assert np.asarray(decode_image(_encode(img))).max() == 0


def test_sixteen_bit_thermal_is_scaled_to_full_range():
    arr = np.array([[1000, 2000], [3000, 5000]], dtype=np.uint16)
    decoded = np.asarray(decode_image(_encode(Image.fromarray(arr))))
    assert decoded[0, 0, 0] == 0 and decoded[1, 1, 0] == 255


def test_undecodable_bytes_raise():
    with pytest.raises(ImageDecodeError):
        decode_image(b"definitely not an image")


def test_pixel_limit_is_checked_before_decoding():
    data = _encode(Image.new("L", (100, 100)))
    with pytest.raises(ImageTooLargeError, match="100x100"):
        decode_image(data, max_pixels=9_999)
    assert decode_image(data, max_pixels=10_000).size == (100, 100)


def test_to_input_and_normalize():
    img = Image.new("RGB", (10, 20), (255, 0, 51))
    x = to_input(img, height=8, width=4)
    assert x.shape == (3, 8, 4) and x.dtype == np.float32
    np.testing.assert_allclose(x[:, 0, 0], [1.0, 0.0, 0.2], atol=1e-6)
    z = normalize(x[None], mean=(0.5, 0.5, 0.5), std=(0.5, 0.25, 1.0))
    np.testing.assert_allclose(z[0, :, 0, 0], [1.0, -2.0, -0.3], atol=1e-6)


def test_a_corrupt_exif_block_still_decodes_with_its_orientation():
    from tests.service.support import corrupt_exif_jpeg  # noqa: PLC0415

    data = corrupt_exif_jpeg(0)
    with Image.open(io.BytesIO(data)) as raw:
        assert raw.getexif().get(0x0112) == 6
        stored = np.asarray(raw.convert("RGB"))
    decoded = np.asarray(decode_image(data))
    assert decoded.shape == (24, 48, 3)  # 24x48 (w x h) stored, rotated to 48x24
    np.testing.assert_array_equal(decoded, np.rot90(stored, k=-1))


def test_image_pixels_reads_the_header_only_and_applies_the_limit():
    buf = io.BytesIO()
    Image.new("RGB", (40, 30)).save(buf, format="PNG")
    truncated = buf.getvalue()[:60]  # the header, no pixel data
    assert image_pixels(truncated) == 1200
    with pytest.raises(ImageDecodeError):
        decode_image(truncated)
    with pytest.raises(ImageTooLargeError, match="40x30"):
        image_pixels(truncated, max_pixels=1199)
    with pytest.raises(ImageDecodeError):
        image_pixels(b"not an image")
