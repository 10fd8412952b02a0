"""The Vision / PDF page through the real entry point, real widgets (AppTest's file uploader and
camera drivers) and the local router, which reads the files' real pixels and text."""

import io
import os
import re

import pytest
from fpdf import FPDF
from PIL import Image
from page_support import by_label, open_app



def png(width: int, height: int, colour=(30, 60, 220)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(out, "PNG")
    return out.getvalue()


def jpeg(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (20, 160, 30)).save(out, "JPEG")
    return out.getvalue()


def noise_png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.frombytes("RGB", (width, height), os.urandom(width * height * 3)).save(out, "PNG", compress_level=1)
    return out.getvalue()


def pdf(pages: int, title: str, words: int = 40) -> bytes:
    doc = FPDF()
    doc.set_title(title)
    doc.set_font("helvetica", size=11)
    for page in range(pages):
        doc.add_page()
        doc.multi_cell(0, 6, f"Section {page + 1} of the {title}. " + "Revenue grew in every region. " * words)
    return bytes(doc.output())


@pytest.fixture
def app(page_env):
    return open_app("app_pages/vision.py")


def texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


def upload(at, *files):
    at.file_uploader[0].set_value(list(files)).run()
    assert not at.exception, at.exception


def ask(at, question: str):
    at.text_area(key="vision_question").input(question)
    at.button(key="vision_ask").click().run()
    assert not at.exception, at.exception


def session(at):
    return at.session_state["vision_session"]


def test_png_and_pdf_answer_states_their_real_facts(app):
    upload(app, ("chart.png", png(640, 480), "image/png"),
           ("report.pdf", pdf(3, "Quarterly report"), "application/pdf"))
    captions = texts(app.caption)
    assert "PNG image · 1.9 KB · 640 × 480 px · ≈ 410 tokens" in captions  # 640 * 480 / 750 = 409.6
    assert "3 pages" in captions and "Title: Quarterly report" in captions
    assert "Estimate before sending" in captions
    assert len(app.file_uploader) == 1 and not app.file_uploader[0].value  # emptied after intake

    ask(app, "What are these files?")
    (turn,) = session(app).turns
    answer = turn.completion.text
    assert "640×480" in answer
    assert "3 pages" in answer and "Quarterly report" in answer
    assert any(answer[:60] in m.value for m in app.markdown)
    assert f"output {turn.completion.usage.output_tokens:,}" in texts(app.caption)
    assert app.text_area(key="vision_question").value == ""  # cleared after an answer


def test_estimate_shown_before_sending_matches_the_usage_after(app):
    upload(app, ("chart.png", png(300, 200), "image/png"))
    app.text_area(key="vision_question").input("How wide is it?").run()
    shown = re.search(r"Estimate before sending: \*\*([\d,]+) input tokens\*\*", texts(app.caption))
    app.button(key="vision_ask").click().run()
    usage = session(app).turns[0].completion.usage
    assert usage.prompt_tokens == int(shown.group(1).replace(",", "")) == 80 + 3 + 5  # image, overhead, question


def test_renamed_oversize_and_corrupt_files_each_say_why(app):
    big = noise_png(1400, 1400)
    assert len(big) > 5 * 1024 * 1024
    upload(app, ("scan.pdf", png(50, 40), "application/pdf"),
           ("huge.png", big, "image/png"),
           ("broken.pdf", b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\ntrailer", "application/pdf"),
           ("fine.png", png(20, 20), "image/png"))
    errors = texts(app.error)
    assert "“scan.pdf” is named .pdf but its bytes are an image (PNG image)" in errors
    assert "The image is 5.6 MB; the limit is 5 MB per image" in errors
    assert "This PDF is damaged" in errors
    warnings = texts(app.warning)
    assert "3 files have a problem (“scan.pdf”, “huge.png”, “broken.pdf”)" in warnings
    assert app.button(key="vision_ask").disabled
    assert [i.name for i in session(app).items] == ["scan.pdf", "huge.png", "broken.pdf", "fine.png"]

    broken = session(app).items[2]
    app.button(key=f"remove_{broken.id}").click().run()
    renamed = session(app).items[0]
    app.button(key=f"detected_{renamed.id}").click().run()
    huge = session(app).items[1]
    app.button(key=f"downscale_{huge.id}").click().run()
    assert not app.exception, app.exception
    assert [i.ok for i in session(app).items] == [True, True, True]
    assert "Downscaled from 1400 × 1400 px" in texts(app.caption)
    assert not app.button(key="vision_ask").disabled


def test_downscale_offer_shows_the_token_figures(app):
    upload(app, ("wide.png", png(3000, 2000), "image/png"))
    offer = texts(app.info)
    assert "at full size this image would be 8,000 tokens" in offer
    assert "at 1313 × 875 it is 1,532 (−6,468)" in offer


def test_cached_pdf_follow_up_reads_the_cache(app):
    document = pdf(2, "Annual review", words=60)
    upload(app, ("review.pdf", document, "application/pdf"))
    by_label(app.toggle, "Cache this document").set_value(True).run()
    assert "are written to the 5m cache at 1.25× the input price" in texts(app.caption)
    ask(app, "Summarise the review.")
    assert "should be read from the cache at 0.1×" in texts(app.caption)
    ask(app, "What does page 2 say?")
    first, second = (t.completion.usage for t in session(app).turns)
    assert first.cache_write_tokens > 1024 and first.cache_read_tokens == 0  # Sonnet 4.5 caches from 1,024
    assert second.cache_read_tokens == first.cache_write_tokens
    assert f"{second.cache_read_tokens:,} cache read" in texts(app.caption)
    # the follow-up kept the document: first message with the file, then the Q/A turns
    roles = [m["role"] for m in app.session_state["vision_last_payload"]["messages"]]
    assert roles == ["user", "assistant", "user"]


def test_view_code_abbreviates_base64(app):
    upload(app, ("report.pdf", pdf(1, "Tiny"), "application/pdf"))
    ask(app, "Title?")
    code = texts(app.code)
    assert "data:application/pdf;base64," in code and "bytes)" in code
    assert len(code) < 20_000


def test_refused_request_keeps_question_and_files(page_env, monkeypatch):
    monkeypatch.setenv("ORQ_SPEND_BUDGET_USD", "0.0001")  # the sidebar's spend guard starts there
    app = open_app("app_pages/vision.py")
    upload(app, ("report.pdf", pdf(1, "Tiny"), "application/pdf"))
    ask(app, "Will this be sent?")
    assert "Not sent" in texts(app.error)
    assert app.text_area(key="vision_question").value == "Will this be sent?"
    assert len(session(app).items) == 1 and not session(app).turns


def test_camera_is_off_until_asked_then_adds_a_photo(app):
    assert not app.camera_input
    by_label(app.toggle, "Use the camera").set_value(True).run()
    app.camera_input[0].upload("photo.jpg", jpeg(320, 240)).run()
    assert not app.exception, app.exception
    (item,) = session(app).items
    assert item.source == "camera" and item.mime == "image/jpeg" and (item.width, item.height) == (320, 240)


def test_url_items(app):
    app.text_input(key="vision_url").input("https://example.com/paper.pdf")
    by_label(app.button, "Add as image").click().run()
    assert "The address ends in .pdf but was added as an image" in texts(app.error)
    assert app.text_input(key="vision_url").value == ""
    ask_disabled = app.button(key="vision_ask").disabled
    assert ask_disabled
    item = session(app).items[0]
    app.button(key=f"detected_{item.id}").click().run()
    assert session(app).items[0].kind == "pdf" and session(app).items[0].ok
    assert "fetched by the router" in texts(app.warning)


def test_an_image_address_is_not_previewed_until_asked(app):
    address = "http://169.254.169.254/latest/meta-data/chart.png"
    app.text_input(key="vision_url").input(address)
    by_label(app.button, "Add as image").click().run()
    assert not app.exception, app.exception
    assert app.get("image") == []  # the person's browser has loaded nothing from the address
    assert ("No preview yet: the router, not the playground, fetches this address when you ask. A preview would "
            "make your own browser load it.") in texts(app.caption)
    item = session(app).items[0]
    app.button(key=f"preview_{item.id}").click().run()
    (image,) = app.get("image")
    assert image.value == [address]
