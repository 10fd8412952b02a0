"""Images and PDFs, inspected from their real bytes: shared by the Vision page (checks and token
estimates before sending) and the local router (what it says about the media it was sent).

Type comes from magic bytes, never from a file name. Limits are Anthropic's: 5 MB per image,
32 MB and 100 pages per PDF. Over-size files get status 413, everything else 400.
Pillow and pypdf are imported inside the functions that need them, so ``import orq_core`` stays light.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
from dataclasses import dataclass

from . import tokens

MAX_IMAGE_BYTES = 5 * 1024 * 1024
MAX_PDF_BYTES = 32 * 1024 * 1024
MAX_PDF_PAGES = 100
MAX_IMAGE_SIDE = 8000  # Anthropic rejects images larger than 8000 x 8000 px

IMAGE_MIMES = ("image/png", "image/jpeg", "image/gif", "image/webp")
PDF_MIME = "application/pdf"
_MIME_ALIASES = {"image/jpg": "image/jpeg", "image/pjpeg": "image/jpeg", "application/x-pdf": PDF_MIME}
_KIND_NAMES = {"image/png": "PNG image", "image/jpeg": "JPEG image", "image/gif": "GIF image",
               "image/webp": "WebP image", PDF_MIME: "PDF"}
_PIL_MIMES = {"PNG": "image/png", "JPEG": "image/jpeg", "GIF": "image/gif", "WEBP": "image/webp"}

_DATA_URL = re.compile(r"data:([\w.+-]+/[\w.+-]+)((?:;[\w.+-]+=[^;,]*)*);base64,", re.ASCII)
_WHITESPACE = re.compile(rb"\s")
_WHITESPACE_TEXT = re.compile(r"\s")
DECODE_SLICE_CHARS = 1 << 20
"""Base64 characters decoded at a time (a multiple of 4, so every slice but the last is whole)."""


class MediaError(ValueError):
    """A file the API would refuse; ``status`` is the HTTP status the router answers with."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True)
class ImageInfo:
    mime: str
    width: int
    height: int
    bytes: int
    frames: int = 1


@dataclass(frozen=True)
class PdfInfo:
    pages: int
    encrypted: bool
    title: str | None
    page_texts: tuple[str, ...] = ()
    """Extracted text of the first ``len(page_texts)`` pages (all of them unless asked for fewer)."""
    bytes: int = 0

    def first_lines(self, n: int = 5) -> list[str]:
        lines: list[str] = []
        for text in self.page_texts:
            lines.extend(line.strip() for line in text.splitlines() if line.strip())
            if len(lines) >= n:
                break
        return lines[:n]


def normalise_mime(mime: str | None) -> str | None:
    if not mime:
        return None
    mime = mime.strip().lower()
    return _MIME_ALIASES.get(mime, mime)


def kind_name(mime: str | None) -> str:
    """'PNG image', 'PDF', ... for messages."""
    return _KIND_NAMES.get(mime or "", f"{mime} file" if mime else "file of unknown type")


def megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB"


def sniff(data: bytes) -> str | None:
    """The mime type told by the file's first bytes, or None when it is none of ours."""
    head = bytes(data[:16])
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head.startswith(b"%PDF-"):
        return PDF_MIME
    return None


def parse_data_url(url: str) -> tuple[str, bytes]:
    """``data:<mime>[;param=v];base64,<data>`` -> (mime, bytes). Base64 is checked strictly
    (alphabet and padding); line breaks inside it are tolerated, as MIME encoders add them."""
    if not isinstance(url, str):
        raise MediaError("Expected a data URL string")
    match = _DATA_URL.match(url)
    if not match:
        raise MediaError("Not a base64 data URL (expected data:<type>;base64,<data>)")
    if not url.isascii():
        raise MediaError("The data URL holds characters that are not base64")
    try:
        if _WHITESPACE_TEXT.search(url, match.end()):
            data = base64.b64decode(_WHITESPACE.sub(b"", url[match.end():].encode("ascii")), validate=True)
        else:
            data = _decode_in_slices(url, match.end())
    except (binascii.Error, ValueError) as exc:
        raise MediaError(f"The data URL's base64 is invalid ({exc})") from None
    return normalise_mime(match.group(1)) or "", data


def _decode_in_slices(url: str, start: int) -> bytes:
    """Base64 after ``start``, decoded a slice at a time: a 40 MB data URL is never copied whole to
    bytes before decoding. Padding is allowed only in the last slice, as in one strict decode."""
    decoded = io.BytesIO()
    for at in range(start, len(url), DECODE_SLICE_CHARS):
        piece = url[at:at + DECODE_SLICE_CHARS].encode("ascii")
        if at + DECODE_SLICE_CHARS < len(url) and b"=" in piece:
            raise binascii.Error("padding before the end of the data")
        decoded.write(base64.b64decode(piece, validate=True))
    return decoded.getvalue()  # CPython hands over its buffer here rather than copying it


# --- images ------------------------------------------------------------------------------------

def _open_image(data: bytes):
    from PIL import Image, UnidentifiedImageError

    try:
        return Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise MediaError(f"The image has too many pixels to decode safely ({exc})") from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        kind = sniff(data)
        if kind and kind.startswith("image/"):  # Pillow's own text here names a BytesIO object's address
            raise MediaError(_damaged(kind)) from None
        raise MediaError(f"This file is not a readable image ({_short(exc)})") from None


def _damaged(mime: str) -> str:
    return (f"The {kind_name(mime)} is damaged or truncated: its first bytes say {mime.split('/')[1].upper()}, "
            "but the rest cannot be read. Save or export it again, then add it again.")


def image_info(data: bytes, *, decode: bool = True) -> ImageInfo:
    """Size, type and frame count; with ``decode`` the pixels are decoded too, so a truncated
    file is caught (without it only the header is read)."""
    from PIL import Image

    with _open_image(data) as img:
        mime = _PIL_MIMES.get(img.format or "", f"image/{(img.format or 'unknown').lower()}")
        width, height = img.size
        frames = getattr(img, "n_frames", 1)
        if not decode:
            return ImageInfo(mime=mime, width=width, height=height, bytes=len(data), frames=frames)
        if img.format == "JPEG":
            img.draft("RGB", (max(1, width // 8), max(1, height // 8)))  # decode small: enough to catch truncation
        try:
            img.load()
        except Image.DecompressionBombError as exc:
            raise MediaError(f"The image has too many pixels to decode safely ({exc})") from None
        except (OSError, ValueError, SyntaxError):
            raise MediaError(_damaged(mime)) from None
    return ImageInfo(mime=mime, width=width, height=height, bytes=len(data), frames=frames)


def target_size(width: int, height: int, long_edge: int = tokens.MAX_IMAGE_LONG_EDGE) -> tuple[int, int]:
    """The size Claude works at (tokens.scaled_image_size), further capped at ``long_edge``."""
    w, h = tokens.scaled_image_size(width, height)
    if max(w, h) > long_edge:
        scale = long_edge / max(w, h)
        w, h = max(1, int(w * scale)), max(1, int(h * scale))
    return w, h


def downscale(data: bytes, long_edge: int = tokens.MAX_IMAGE_LONG_EDGE) -> bytes:
    """The image resized to what Claude would see anyway (same format, aspect kept);
    the very same bytes when it is already small enough."""
    from PIL import ImageSequence

    info = image_info(data)
    size = target_size(info.width, info.height, long_edge)
    if size == (info.width, info.height):
        return data
    out = io.BytesIO()
    with _open_image(data) as img:
        fmt = img.format
        if info.frames > 1:
            frames = [_resized(frame, size) for frame in ImageSequence.Iterator(img)]
            extra = {"save_all": True, "append_images": frames[1:], "loop": img.info.get("loop", 0),
                     "duration": img.info.get("duration", 100)}
            frames[0].save(out, format=fmt, **extra)
        else:
            resized = _resized(img, size)
            if fmt == "JPEG":
                resized = resized.convert("RGB") if resized.mode not in ("RGB", "L", "CMYK") else resized
                resized.save(out, format=fmt, quality=90, optimize=True)
            else:
                resized.save(out, format=fmt)
    return out.getvalue()


def _resized(img, size: tuple[int, int]):
    from PIL import Image

    if img.mode in ("P", "1"):
        img = img.convert("RGBA")
    return img.resize(size, Image.Resampling.LANCZOS)


def estimate_image_tokens(data: bytes) -> int:
    info = image_info(data)
    return tokens.image_tokens(info.width, info.height)


# Named colours for describing an image in words; each pixel goes to the nearest one.
PALETTE: tuple[tuple[str, tuple[int, int, int]], ...] = (
    ("black", (0, 0, 0)), ("white", (255, 255, 255)), ("grey", (128, 128, 128)),
    ("silver", (192, 192, 192)), ("dark grey", (64, 64, 64)),
    ("red", (220, 30, 30)), ("maroon", (128, 0, 0)), ("orange", (255, 140, 0)),
    ("yellow", (255, 220, 0)), ("olive", (128, 128, 0)), ("green", (30, 160, 30)),
    ("dark green", (0, 90, 0)), ("lime", (50, 255, 50)), ("teal", (0, 128, 128)),
    ("cyan", (0, 220, 230)), ("sky blue", (120, 180, 240)), ("blue", (30, 60, 220)),
    ("navy", (0, 0, 128)), ("purple", (128, 0, 160)), ("magenta", (230, 0, 200)),
    ("pink", (255, 160, 200)), ("brown", (130, 80, 30)), ("beige", (230, 215, 180)),
)


def dominant_colours(data: bytes, n: int = 3) -> list[tuple[str, str, float]]:
    """The ``n`` named colours covering most of the image: (name, hex of the pixels' mean
    colour, share of pixels 0..1), largest share first. Transparent areas count as white."""
    from PIL import Image

    with _open_image(data) as img:
        img.thumbnail((96, 96))
        rgb = _flatten_on_white(img)
    pal = Image.new("P", (1, 1))
    flat = [v for _, colour in PALETTE for v in colour]
    pal.putpalette(flat + list(PALETTE[0][1]) * (256 - len(PALETTE)))
    indices = rgb.quantize(palette=pal, dither=Image.Dither.NONE).getdata()
    sums: dict[int, list[int]] = {}
    for index, (r, g, b) in zip(indices, rgb.getdata()):
        acc = sums.setdefault(index if index < len(PALETTE) else 0, [0, 0, 0, 0])
        acc[0] += r
        acc[1] += g
        acc[2] += b
        acc[3] += 1
    total = rgb.width * rgb.height
    ranked = sorted(sums.items(), key=lambda item: (-item[1][3], item[0]))[:n]
    return [(PALETTE[i][0], "#{:02x}{:02x}{:02x}".format(*(round(c / acc[3]) for c in acc[:3])),
             round(acc[3] / total, 3)) for i, acc in ranked]


def _flatten_on_white(img):
    from PIL import Image

    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def check_image(data: bytes, declared_mime: str | None = None) -> ImageInfo:
    """What the API would accept as an image, or a MediaError saying why not."""
    if not data:
        raise MediaError("The image file is empty")
    kind = sniff(data)
    if kind == PDF_MIME:
        raise MediaError("This file is a PDF, not an image; send it as a document")
    if kind is None:
        raise MediaError("This file is not a PNG, JPEG, GIF or WebP image")
    declared = normalise_mime(declared_mime)
    if declared and declared.startswith("image/") and declared != kind:
        raise MediaError(f"This file is a {kind_name(kind)}, but it was declared as {declared}")
    if len(data) > MAX_IMAGE_BYTES:
        raise MediaError(f"The image is {megabytes(len(data))}; the limit is "
                         f"{MAX_IMAGE_BYTES // (1024 * 1024)} MB per image", status=413)
    return image_info(data)


def check_image_side(info: ImageInfo) -> None:
    """The API's pixel limit, kept apart from check_image: an image over it can still be
    previewed and downscaled (the Vision page offers that fix)."""
    if max(info.width, info.height) > MAX_IMAGE_SIDE:
        raise MediaError(f"The image is {info.width}×{info.height} px; the limit is "
                         f"{MAX_IMAGE_SIDE}×{MAX_IMAGE_SIDE} px")


# --- PDFs --------------------------------------------------------------------------------------

def pdf_info(data: bytes, *, text_pages: int = MAX_PDF_PAGES) -> PdfInfo:
    """Page count, title and the text of the first ``text_pages`` pages, read in place
    (the bytes are not copied). MediaError for a damaged, password-protected or over-long PDF."""
    from pypdf import PdfReader
    from pypdf.errors import DependencyError, FileNotDecryptedError, PyPdfError

    try:
        reader = PdfReader(_ByteView(data), strict=False)
        encrypted = reader.is_encrypted
        if encrypted:
            _decrypt_with_empty_password(reader)
        pages = len(reader.pages)
        if pages > MAX_PDF_PAGES:
            raise MediaError(f"The PDF has {pages} pages; the limit is {MAX_PDF_PAGES} pages")
        if pages == 0:
            raise MediaError("The PDF has no pages")
        title = _title(reader)
        texts = tuple(_page_text(reader, page) for page in reader.pages[:max(0, text_pages)])
    except MediaError:
        raise
    except (FileNotDecryptedError, DependencyError):
        raise MediaError("This PDF is encrypted and needs a password; remove the password and try again") from None
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError, OSError,
            RecursionError, AssertionError, ZeroDivisionError) as exc:
        if b"%%EOF" not in data[-1024:]:
            raise MediaError("This PDF is damaged: it looks truncated (no %%EOF marker at its end)") from None
        raise MediaError(f"This PDF is damaged and cannot be read ({_short(exc)})") from None
    return PdfInfo(pages=pages, encrypted=encrypted, title=title, page_texts=texts, bytes=len(data))


def _decrypt_with_empty_password(reader) -> None:
    from pypdf import PasswordType

    if reader.decrypt("") == PasswordType.NOT_DECRYPTED:
        raise MediaError("This PDF is encrypted and needs a password; remove the password and try again")


def _title(reader) -> str | None:
    try:
        title = reader.metadata.title if reader.metadata else None
    except Exception:  # a broken Info dictionary must not hide the pages
        return None
    text = str(title).strip() if title else ""
    return text or None


def _page_text(reader, page) -> str:
    try:
        return page.extract_text() or ""
    except Exception:  # pypdf raises many kinds on odd content streams; the page just has no text for us
        return ""
    finally:
        _forget_images(reader)


def _forget_images(reader) -> None:
    """Drop image streams pypdf cached while reading a page's text: a scanned 30 MB PDF would
    otherwise end up wholly in memory a second time. They are re-read from the bytes if needed."""
    from pypdf.generic import StreamObject

    cache = getattr(reader, "resolved_objects", None)
    if not isinstance(cache, dict):
        return
    for key, obj in list(cache.items()):
        if isinstance(obj, StreamObject) and obj.get("/Subtype") == "/Image":
            del cache[key]


class _ByteView(io.RawIOBase):
    """A read-only seekable stream over bytes that never copies them. (pypdf asks an io.BytesIO
    for getbuffer(), and that alone makes BytesIO copy the whole file.)"""

    def __init__(self, data: bytes):
        super().__init__()
        self._view = memoryview(data).cast("B")
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: len(self._view)}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def read(self, size: int | None = -1) -> bytes:
        end = len(self._view) if size is None or size < 0 else min(len(self._view), self._pos + size)
        chunk = bytes(self._view[self._pos:end]) if end > self._pos else b""
        self._pos = max(self._pos, end)
        return chunk

    def readinto(self, buffer) -> int:
        chunk = self.read(len(buffer))
        buffer[:len(chunk)] = chunk
        return len(chunk)


def estimate_pdf_tokens(data: bytes) -> int:
    info = pdf_info(data)
    return sum(tokens.pdf_page_tokens(text) for text in info.page_texts)


def check_pdf(data: bytes, *, text_pages: int = MAX_PDF_PAGES) -> PdfInfo:
    """What the API would accept as a PDF, or a MediaError saying why not."""
    if not data:
        raise MediaError("The PDF file is empty")
    kind = sniff(data)
    if kind in IMAGE_MIMES:
        raise MediaError(f"This file is a {kind_name(kind)}, not a PDF")
    if kind != PDF_MIME:
        raise MediaError("This file is not a PDF (it does not start with %PDF-)")
    if len(data) > MAX_PDF_BYTES:
        raise MediaError(f"The PDF is {megabytes(len(data))}; the limit is "
                         f"{MAX_PDF_BYTES // (1024 * 1024)} MB per PDF", status=413)
    return pdf_info(data, text_pages=text_pages)


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."
