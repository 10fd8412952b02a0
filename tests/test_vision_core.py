"""orq_core.vision: checks, estimates (hand-computed), downscale offer, limits, message parts."""

import dataclasses
import io
import os
from decimal import Decimal

import pytest
from fpdf import FPDF
from PIL import Image

from orq_core import vision
from orq_core.catalog import catalog
from orq_core.emulator.prompt import count_prompt_tokens
from orq_core.types import Completion
from orq_core.usage import Usage

SONNET = catalog().model("claude-sonnet-4-5-20250929")
HAIKU = catalog().model("claude-haiku-4-5-20251001")
SLUG = "anthropic/claude-sonnet-4-5-20250929"


def png(width: int, height: int, colour=(200, 30, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(out, "PNG")
    return out.getvalue()


def noise_png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.frombytes("RGB", (width, height), os.urandom(width * height * 3)).save(out, "PNG", compress_level=1)
    return out.getvalue()


def pdf(pages: int, title: str = "Quarterly report", text: str | None = None) -> bytes:
    doc = FPDF()
    doc.set_title(title)
    doc.set_font("helvetica", size=12)
    for i in range(pages):
        doc.add_page()
        if text is not None:
            doc.multi_cell(0, 8, text)
    return bytes(doc.output())


def answered(text="An answer.", usage=Usage(input_tokens=10, output_tokens=5)) -> Completion:
    return Completion(text=text, usage=usage, model=SLUG, finish_reason="stop")


# --- facts and token estimates --------------------------------------------------------------

def test_png_facts_and_tokens():
    item = vision.inspect_file("chart.png", png(800, 600))
    assert item.ok and item.kind == "image" and item.mime == "image/png"
    assert (item.width, item.height) == (800, 600)
    assert item.tokens == 640  # 800 * 600 / 750
    assert "PNG image" in item.facts() and "800 × 600 px" in item.facts() and "640 tokens" in item.facts()


def test_large_image_tokens_after_claude_resize():
    item = vision.inspect_file("photo.png", png(3000, 2000))
    # scale = min(1568/3000, sqrt(1,150,000 / 6,000,000)) = 0.43780 -> 1313 x 875 -> 1,148,875 / 750 = 1531.8
    assert item.tokens == 1532


def test_pdf_facts_and_tokens_blank_pages():
    item = vision.inspect_file("blank.pdf", pdf(3, title="Blank"))
    assert item.ok and item.kind == "pdf" and item.pages == 3 and item.title == "Blank"
    assert item.tokens == 3 * 1600  # no text: each page is its page image only
    assert "3 pages" in item.facts()


def test_pdf_tokens_count_page_text():
    item = vision.inspect_file("hello.pdf", pdf(2, text="Hello world"))
    # "Hello" and "world" are 2 tokens each (one per started 4 characters), plus 1,600 per page
    assert item.tokens == 2 * (4 + 1600)
    assert item.first_lines[0] == "Hello world"


# --- checks -----------------------------------------------------------------------------------

def test_png_renamed_pdf_is_refused_then_sent_as_what_it_is():
    item = vision.inspect_file("scan.pdf", png(40, 30))
    assert not item.ok and item.fix == "as_detected"
    assert "named .pdf but its bytes are an image (PNG image)" in item.problem
    vision.accept_detected_type(item)
    assert item.ok and item.kind == "image" and item.tokens == 2  # 40 * 30 / 750 = 1.6


def test_unknown_bytes_and_empty_file():
    assert "is not a PNG, JPEG, GIF, WebP image or a PDF" in vision.inspect_file("notes.png", b"hello").problem
    assert vision.inspect_file("empty.pdf", b"").problem == "“empty.pdf” is empty."


def test_corrupt_pdf():
    item = vision.inspect_file("broken.pdf", b"%PDF-1.4\n1 0 obj <<>> garbage")
    assert not item.ok and "damaged" in item.problem


def test_encrypted_pdf():
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter()
    for page in PdfReader(io.BytesIO(pdf(1))).pages:
        writer.add_page(page)
    writer.encrypt("secret")
    out = io.BytesIO()
    writer.write(out)
    item = vision.inspect_file("locked.pdf", out.getvalue())
    assert not item.ok and "encrypted" in item.problem


def test_pdf_over_100_pages():
    item = vision.inspect_file("long.pdf", pdf(101))
    assert "101 pages; the limit is 100 pages" in item.problem


def test_oversize_image_offers_downscale_that_fixes_it():
    data = noise_png(1400, 1400)
    assert len(data) > 5 * 1024 * 1024
    item = vision.inspect_file("noise.png", data)
    assert not item.ok and "the limit is 5 MB per image" in item.problem and item.fix == "downscale"
    offer = vision.downscale_offer(item)
    # sqrt(1,150,000 / 1,960,000) = 0.766 -> 1072 x 1072
    assert (offer.new_width, offer.new_height) == (1072, 1072)
    vision.apply_downscale(item)
    assert item.ok and (item.width, item.height) == (1072, 1072) and item.size < 5 * 1024 * 1024
    assert item.original == (1400, 1400, len(data))


def test_image_over_8000_px_is_refused_with_downscale_fix():
    item = vision.inspect_file("strip.png", png(8001, 10))
    assert not item.ok and "over 8,000 px" in item.problem and item.fix == "downscale"
    vision.apply_downscale(item)
    assert item.ok and item.width == 1568


def test_too_many_images():
    session = vision.DocumentSession()
    tiny = png(10, 10)
    for i in range(vision.PAGE_MAX_IMAGES):
        session.add_file(f"{i}.png", tiny)
    assert session.problems(SONNET) == []
    session.add_file("one-more.png", tiny)
    assert any("21 images: this page sends at most 20" in p for p in session.problems(SONNET))


def test_model_without_vision_or_pdf():
    session = vision.DocumentSession()
    session.add_file("a.png", png(10, 10))
    session.add_file("b.pdf", pdf(1))
    blind = dataclasses.replace(SONNET, vision=False, pdf=False)
    found = " ".join(session.problems(blind))
    assert "does not read images" in found and "does not read PDFs" in found


def test_broken_file_blocks_sending_and_nothing_is_lost():
    session = vision.DocumentSession()
    good = session.add_file("a.png", png(10, 10))
    bad = session.add_file("b.pdf", b"%PDF-1.4 junk")
    assert "1 file has a problem (“b.pdf”)" in session.problems(SONNET)[0]
    assert session.items == [good, bad]
    session.remove(bad.id)
    assert session.problems(SONNET) == []


def test_request_size_warning():
    session = vision.DocumentSession()
    size = 25 * 1024 * 1024
    session.items.append(vision.MediaItem(name="big.pdf", source="upload", kind="pdf", size=size))
    assert session.items[0].encoded_size == 4 * -(-size // 3)
    assert any("caps a request at 32 MB" in w for w in session.warnings(SONNET))


# --- URLs -------------------------------------------------------------------------------------

def test_image_url_is_assumed_1092_square():
    item = vision.inspect_url("https://example.com/chart.png", "image")
    # the local router's assumption for an unfetched image: 1092 x 1092, which is over 1.15 MP, so
    # Claude's resize makes it 1072 x 1072 -> 1,149,184 / 750 = 1532.2 -> 1,533 tokens
    assert item.ok and item.tokens == 1533
    assert item.part() == {"type": "image_url", "image_url": {"url": "https://example.com/chart.png"}}


def test_pdf_url_mismatch_and_bad_scheme():
    item = vision.inspect_url("https://example.com/paper.pdf", "image")
    assert "ends in .pdf but was added as an image" in item.problem
    vision.accept_detected_type(item)
    assert item.ok and item.kind == "pdf"
    assert item.part() == {"type": "file", "file": {"uri": "https://example.com/paper.pdf"}}
    assert "must start with http" in vision.inspect_url("ftp://example.com/a.png", "image").problem


def test_data_url_is_decoded_and_checked_like_an_upload():
    import base64

    url = "data:image/png;base64," + base64.b64encode(png(30, 25)).decode()
    item = vision.inspect_url(url, "pdf")
    assert item.ok and item.kind == "image" and (item.width, item.height) == (30, 25)


# --- downscale offer ----------------------------------------------------------------------------

def test_downscale_offer_figures():
    item = vision.inspect_file("wide.png", png(3000, 2000))
    offer = vision.downscale_offer(item)
    assert (offer.new_width, offer.new_height) == (1313, 875)
    assert offer.full_size_tokens == 8000 and offer.tokens_after == 1532 and offer.token_saving == 6468
    assert offer.bytes_before == item.size and offer.bytes_after < offer.bytes_before
    assert vision.downscale_offer(vision.inspect_file("small.png", png(800, 600))) is None


# --- messages and estimates -----------------------------------------------------------------------

def test_first_message_media_then_question_cache_on_last_media_part():
    session = vision.DocumentSession(cache_document=True)
    session.add_file("a.png", png(20, 20))
    session.add_file("b.pdf", pdf(1))
    (message,) = session.messages("What is this?")
    kinds = [p["type"] for p in message["content"]]
    assert kinds == ["image_url", "file", "text"]
    assert [("cache_control" in p) for p in message["content"]] == [False, True, False]
    assert message["content"][1]["file"]["filename"] == "b.pdf"


def test_follow_up_keeps_first_message_with_media():
    session = vision.DocumentSession()
    session.add_file("a.png", png(20, 20))
    session.record("First?", answered("One."), "5m")
    messages = session.messages("Second?")
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert messages[0]["content"][-1] == {"type": "text", "text": "First?"}
    assert messages[1]["content"] == "One." and messages[2]["content"] == "Second?"
    assert session.locked
    with pytest.raises(ValueError):
        session.add_file("b.png", png(5, 5))
    session.new_conversation()
    assert not session.locked and len(session.items) == 1


def test_part_built_once_and_shared_by_payloads():
    session = vision.DocumentSession()
    item = session.add_file("a.pdf", pdf(2))
    first = session.payload(SLUG, "Q1")
    second = session.payload(SLUG, "Q2")
    url1 = first["messages"][0]["content"][0]["file"]["file_data"]
    url2 = second["messages"][0]["content"][0]["file"]["file_data"]
    assert url1 is url2 is item.part()["file"]["file_data"]


def test_checked_pdf_keeps_only_its_data_url_and_estimates_build_none():
    import base64

    data = pdf(2)
    item = vision.inspect_file("a.pdf", data)
    assert item.data is None and item.size == len(data)
    assert item.part()["file"]["file_data"] == "data:application/pdf;base64," + base64.b64encode(data).decode()
    image = vision.DocumentSession()
    picture = image.add_file("a.png", png(20, 20))
    image.estimate(SONNET, "Q")
    assert picture._part is None  # the estimate counts from the facts, it builds no data URL


def test_estimate_hand_computed_with_cache_write_then_read():
    session = vision.DocumentSession(cache_document=True, max_tokens=1024)
    session.add_file("square.png", png(1000, 1000))  # 1,000,000 / 750 = 1333.3 -> 1,334 tokens
    estimate = session.estimate(SONNET, "Hi")
    # prefix = 1,334 image + 3 message overhead; "Hi" = 1 token uncached
    assert (estimate.media_tokens, estimate.prefix_tokens, estimate.input_tokens) == (1334, 1337, 1338)
    assert estimate.cache == "write"
    assert estimate.usage == Usage(input_tokens=1, cache_write_tokens=1337)
    # $3/MTok input, $3.75/MTok 5-minute write, $15/MTok output
    assert estimate.input_cost.total == Decimal("0.000003") + Decimal("0.00501375")
    assert estimate.ceiling == Decimal("0.00501675") + Decimal("0.01536")
    payload = session.payload(SLUG, "Hi")
    assert count_prompt_tokens(payload) == estimate.input_tokens  # what the local router will report

    session.record("Hi", answered(usage=Usage(input_tokens=1, cache_write_tokens=1337, output_tokens=9)), "5m")
    follow = session.estimate(SONNET, "More?")
    assert follow.cache == "read" and follow.usage.cache_read_tokens == 1337
    assert follow.input_tokens == count_prompt_tokens(session.payload(SLUG, "More?"))


def test_estimate_cache_off_and_too_short():
    session = vision.DocumentSession()
    session.add_file("a.png", png(800, 600))
    assert session.estimate(SONNET, "Q").cache == "off"
    session.cache_document = True
    short = session.estimate(HAIKU, "Q")  # 643 tokens < Haiku 4.5's 4,096 minimum
    assert short.cache == "too_short" and short.usage.cache_write_tokens == 0
    assert any("under Claude Haiku 4.5's caching minimum of 4,096" in w for w in session.warnings(HAIKU))
    assert short.input_cost.total == Decimal(short.input_tokens) * Decimal("1.00") / Decimal(1_000_000)


def test_estimate_matches_router_count_for_pdf_follow_ups():
    session = vision.DocumentSession()
    session.add_file("doc.pdf", pdf(3, text="The quick brown fox jumps over the lazy dog. " * 5))
    session.record("Summarise it.", answered("A fox, a dog."), "5m")
    estimate = session.estimate(SONNET, "Which animal jumps?")
    assert estimate.input_tokens == count_prompt_tokens(session.payload(SLUG, "Which animal jumps?"))


def test_one_hour_cache_prices_writes_at_twice_input():
    from orq_core.request import cache_write_ttl

    session = vision.DocumentSession(cache_document=True, cache_ttl="1h")
    session.add_file("square.png", png(1000, 1000))
    estimate = session.estimate(SONNET, "Hi")
    assert estimate.input_cost.cache_write == Decimal(1337) * Decimal("6.00") / Decimal(1_000_000)
    payload = session.payload(SLUG, "Hi")
    assert payload["messages"][0]["content"][0]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}
    assert cache_write_ttl(payload) == "1h"
