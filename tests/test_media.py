"""media.py on real files made here: Pillow images, fpdf2 PDFs, pypdf-encrypted PDFs."""

from __future__ import annotations

import base64
import io
import math
import random
import tracemalloc

import pytest
from fpdf import FPDF
from PIL import Image
from pypdf import PdfReader, PdfWriter

from orq_core import media
from orq_core.tokens import image_tokens, pdf_page_tokens, text_tokens


def image_bytes(fmt: str, size=(64, 48), colour=(220, 30, 30), **save) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, fmt, **save)
    return out.getvalue()


def make_pdf(pages: int, title: str = "Quarterly Report") -> bytes:
    pdf = FPDF()
    pdf.set_title(title)
    pdf.set_font("helvetica", size=12)
    for n in range(1, pages + 1):
        pdf.add_page()
        pdf.cell(text=f"Page {n} heading")
        pdf.ln()
        pdf.cell(text=f"Second line of page {n}")
    return bytes(pdf.output())


def encrypt(data: bytes, user_password: str) -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(data)))
    writer.encrypt(user_password, owner_password="owner")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


# --- sniffing and data URLs --------------------------------------------------------------------

@pytest.mark.parametrize("fmt, mime", [("PNG", "image/png"), ("JPEG", "image/jpeg"), ("GIF", "image/gif"),
                                       ("WEBP", "image/webp")])
def test_sniff_images_by_magic_bytes(fmt, mime):
    assert media.sniff(image_bytes(fmt)) == mime


def test_sniff_pdf_gif87_and_unknown():
    assert media.sniff(make_pdf(1)) == "application/pdf"
    assert media.sniff(b"GIF87a" + b"\0" * 10) == "image/gif"
    assert media.sniff(b"RIFF\0\0\0\0WAVEfmt ") is None  # RIFF but not WebP
    assert media.sniff(b"hello world") is None
    assert media.sniff(b"") is None


def test_parse_data_url_round_trip_and_strictness():
    data = image_bytes("PNG")
    encoded = base64.b64encode(data).decode()
    assert media.parse_data_url(f"data:image/png;base64,{encoded}") == ("image/png", data)
    assert media.parse_data_url(f"data:image/jpg;base64,{encoded}")[0] == "image/jpeg"
    wrapped = "\n".join(encoded[i:i + 76] for i in range(0, len(encoded), 76))
    assert media.parse_data_url(f"data:image/png;base64,{wrapped}")[1] == data
    assert media.parse_data_url("data:application/pdf;name=a.pdf;base64,JVBERi0=")[1] == b"%PDF-"
    for bad in ("https://example.com/a.png", "data:image/png,rawtext", f"data:image/png;base64,{encoded}!",
                "data:image/png;base64,abc", "data:image/png;base64,ab=c"):
        with pytest.raises(media.MediaError) as error:
            media.parse_data_url(bad)
        assert error.value.status == 400


# --- images ----------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt, mime", [("PNG", "image/png"), ("JPEG", "image/jpeg"), ("GIF", "image/gif"),
                                       ("WEBP", "image/webp")])
def test_image_info_reads_real_size(fmt, mime):
    data = image_bytes(fmt, size=(321, 123))
    info = media.image_info(data)
    assert (info.mime, info.width, info.height, info.bytes, info.frames) == (mime, 321, 123, len(data), 1)


def test_image_info_counts_gif_frames():
    frames = [Image.new("RGB", (20, 10), c) for c in ("red", "green", "blue")]
    out = io.BytesIO()
    frames[0].save(out, "GIF", save_all=True, append_images=frames[1:], duration=50)
    assert media.image_info(out.getvalue()).frames == 3


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF"])
def test_truncated_image_is_an_error(fmt):
    data = _noise(fmt, (400, 300))
    with pytest.raises(media.MediaError, match="damaged or truncated"):
        media.image_info(data[: len(data) // 2])


def _noise(fmt: str, size) -> bytes:
    img = Image.frombytes("RGB", size, random.Random(7).randbytes(size[0] * size[1] * 3))
    out = io.BytesIO()
    img.save(out, fmt)
    return out.getvalue()


def test_not_an_image():
    with pytest.raises(media.MediaError, match="not a readable image"):
        media.image_info(b"just some text, not pixels")


def test_check_image_messages():
    with pytest.raises(media.MediaError, match="This file is a PDF, not an image"):
        media.check_image(make_pdf(1))
    with pytest.raises(media.MediaError, match="not a PNG, JPEG, GIF or WebP"):
        media.check_image(b"BM" + b"\0" * 100)
    with pytest.raises(media.MediaError, match="This file is a JPEG image, but it was declared as image/png"):
        media.check_image(image_bytes("JPEG"), declared_mime="image/png")
    assert media.check_image(image_bytes("JPEG"), declared_mime="image/jpg").mime == "image/jpeg"
    with pytest.raises(media.MediaError, match="empty"):
        media.check_image(b"")


def test_check_image_over_5_mb_is_413_with_size():
    big = b"\x89PNG\r\n\x1a\n" + b"\0" * (6 * 1024 * 1024)
    with pytest.raises(media.MediaError) as error:
        media.check_image(big)
    assert error.value.status == 413
    assert "6.0 MB" in error.value.message and "5 MB" in error.value.message


def test_image_side_limit_is_a_separate_check():
    info = media.check_image(image_bytes("PNG", size=(8001, 10)))  # still readable, so it can be downscaled
    with pytest.raises(media.MediaError, match="The image is 8001×10 px; the limit is 8000×8000 px"):
        media.check_image_side(info)
    media.check_image_side(media.check_image(image_bytes("PNG", size=(8000, 10))))


def test_downscale_3000x2000_to_what_claude_sees():
    # long edge 1568 gives 1568x1045 = 1.64 MP > 1.15 MP, so the area cap rules:
    # scale = sqrt(1_150_000 / 6_000_000) = 0.43780 -> 1313.4 x 875.6 -> 1313 x 875
    data = image_bytes("PNG", size=(3000, 2000))
    small = media.downscale(data)
    info = media.image_info(small)
    assert (info.mime, info.width, info.height) == ("image/png", 1313, 875)
    assert media.estimate_image_tokens(small) == math.ceil(1313 * 875 / 750) == 1532
    assert media.estimate_image_tokens(data) == 1532  # the API scales anyway: same bill
    assert 3000 * 2000 // 750 - 1532 == 6468  # tokens a naive w*h/750 estimate would overstate


def test_downscale_wide_image_long_edge_only_and_custom_edge():
    data = image_bytes("JPEG", size=(2000, 500))
    info = media.image_info(media.downscale(data))
    assert (info.mime, info.width, info.height) == ("image/jpeg", 1568, 392)  # 500 * 1568 / 2000 = 392
    assert image_tokens(2000, 500) == math.ceil(1568 * 392 / 750) == 820
    info = media.image_info(media.downscale(image_bytes("WEBP", size=(3000, 2000)), long_edge=800))
    assert (info.mime, info.width, info.height) == ("image/webp", 800, 533)  # 875 * 800 / 1313 = 533.1


def test_downscale_small_image_returns_same_bytes_and_keeps_gif_frames():
    data = image_bytes("PNG", size=(800, 600))
    assert media.downscale(data) is data
    frames = [Image.new("RGB", (2400, 1200), c) for c in ("red", "blue")]
    out = io.BytesIO()
    frames[0].save(out, "GIF", save_all=True, append_images=frames[1:], duration=80)
    info = media.image_info(media.downscale(out.getvalue()))
    assert (info.mime, info.width, info.height, info.frames) == ("image/gif", 1516, 758, 2)


def test_dominant_colours_names_hex_and_shares():
    img = Image.new("RGB", (100, 100), (255, 255, 255))
    img.paste((220, 30, 30), (0, 0, 50, 100))   # left half red
    img.paste((30, 60, 220), (50, 0, 100, 25))  # an eighth blue
    out = io.BytesIO()
    img.save(out, "PNG")
    colours = media.dominant_colours(out.getvalue(), n=3)
    assert [(name, hex_) for name, hex_, _ in colours] == [("red", "#dc1e1e"), ("white", "#ffffff"),
                                                          ("blue", "#1e3cdc")]
    assert [share for _, _, share in colours] == pytest.approx([0.5, 0.375, 0.125], abs=0.02)


def test_transparent_pixels_count_as_white():
    out = io.BytesIO()
    Image.new("RGBA", (10, 10), (0, 0, 0, 0)).save(out, "PNG")
    assert media.dominant_colours(out.getvalue(), n=1)[0][:2] == ("white", "#ffffff")


# --- PDFs ------------------------------------------------------------------------------------

def test_pdf_info_pages_title_text_and_tokens():
    data = make_pdf(3)
    info = media.check_pdf(data)
    assert (info.pages, info.encrypted, info.title, info.bytes) == (3, False, "Quarterly Report", len(data))
    assert info.page_texts[1] == "Page 2 heading\nSecond line of page 2"
    assert info.first_lines(3) == ["Page 1 heading", "Second line of page 1", "Page 2 heading"]
    # "Page 1 heading\nSecond line of page 1": Page, 1, head|ing, Seco|nd, line, of, page, 1 = 10 tokens
    assert text_tokens(info.page_texts[0]) == 10
    assert media.estimate_pdf_tokens(data) == 3 * (10 + 1600) == sum(pdf_page_tokens(t) for t in info.page_texts)


def test_pdf_info_reads_only_the_pages_asked_for():
    info = media.pdf_info(make_pdf(5), text_pages=2)
    assert info.pages == 5 and len(info.page_texts) == 2


def test_encrypted_pdf_needs_password():
    with pytest.raises(media.MediaError, match="encrypted and needs a password") as error:
        media.check_pdf(encrypt(make_pdf(2), "secret"))
    assert error.value.status == 400


def test_empty_password_pdf_is_read():
    info = media.check_pdf(encrypt(make_pdf(2), ""))
    assert (info.pages, info.encrypted) == (2, True)
    assert info.first_lines(1) == ["Page 1 heading"]


def test_truncated_and_corrupt_pdfs():
    data = make_pdf(3)
    with pytest.raises(media.MediaError, match="damaged"):
        media.check_pdf(data[: len(data) // 2])
    with pytest.raises(media.MediaError, match="damaged"):
        media.check_pdf(b"%PDF-1.7\n" + b"garbage " * 200)


def test_png_named_pdf_and_other_types():
    with pytest.raises(media.MediaError, match="This file is a PNG image, not a PDF"):
        media.check_pdf(image_bytes("PNG"))
    with pytest.raises(media.MediaError, match="not a PDF"):
        media.check_pdf(b"Plain text pretending")


def test_pdf_over_100_pages():
    with pytest.raises(media.MediaError, match="The PDF has 101 pages; the limit is 100 pages") as error:
        media.check_pdf(make_pdf(101))
    assert error.value.status == 400


def test_pdf_over_32_mb_is_413_with_size():
    with pytest.raises(media.MediaError) as error:
        media.check_pdf(b"%PDF-1.7\n" + b"\0" * (33 * 1024 * 1024))
    assert error.value.status == 413
    assert "33.0 MB" in error.value.message and "32 MB" in error.value.message


def test_check_pdf_does_not_copy_the_file():
    """A scanned PDF (noise JPEG pages) is read in place: peak memory stays under its size."""
    pdf = FPDF()
    pdf.set_font("helvetica", size=12)
    for n in range(4):
        img = Image.frombytes("RGB", (900, 700), random.Random(n).randbytes(900 * 700 * 3))
        jpeg = io.BytesIO()
        img.save(jpeg, "JPEG", quality=95)
        pdf.add_page()
        pdf.cell(text=f"Scan {n + 1}")
        pdf.image(io.BytesIO(jpeg.getvalue()), x=10, y=20, w=150)
    data = bytes(pdf.output())
    assert len(data) > 2_000_000
    tracemalloc.start()
    try:
        info = media.check_pdf(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert info.pages == 4 and info.first_lines(1) == ["Scan 1"]
    assert peak < len(data) * 0.6


@pytest.mark.parametrize("cut", [8, 20, 40])
def test_a_png_cut_in_its_header_gets_a_sentence_not_an_object_address(cut):
    data = image_bytes("PNG")[:cut]
    with pytest.raises(media.MediaError) as caught:
        media.check_image(data)
    assert str(caught.value) == ("The PNG image is damaged or truncated: its first bytes say PNG, but the rest "
                                 "cannot be read. Save or export it again, then add it again.")


def test_a_large_data_url_is_decoded_in_slices_not_copied_whole(monkeypatch):
    """A 30 MB PDF's data URL is 40 MB of text: copying it to bytes before decoding held about 4x the
    file at the peak. Decoded a slice at a time, the peak above the URL stays near the decoded file."""
    import tracemalloc

    data = bytes(range(256)) * (8 * 1024 * 1024 // 256)  # 8 MiB
    url = "data:application/pdf;base64," + base64.b64encode(data).decode()
    tracemalloc.start()
    try:
        mime, decoded = media.parse_data_url(url)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (mime, decoded == data) == ("application/pdf", True)
    assert peak < 1.5 * len(data), f"peak {peak / len(data):.2f}x the file"


def test_slices_keep_base64_strict_at_their_edges(monkeypatch):
    monkeypatch.setattr(media, "DECODE_SLICE_CHARS", 8)
    assert media.parse_data_url("data:text/plain;base64,QUJDREVGR0hJSktM")[1] == b"ABCDEFGHIJKL"
    assert media.parse_data_url("data:text/plain;base64,QUJDREVGR0g=")[1] == b"ABCDEFGH"
    for bad in ("data:text/plain;base64,QQ==QUJDREVG", "data:text/plain;base64,QUJDREVGR0hJSk",
                "data:text/plain;base64,QUJDREVG!0hJSktM"):
        with pytest.raises(media.MediaError):
            media.parse_data_url(bad)
