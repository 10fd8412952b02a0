"""Vision / PDF: images and PDFs, checked and estimated before sending, then a streamed answer.

The logic (checks, estimates, message parts, follow-ups) is ``orq_core.vision.DocumentSession``,
kept in ``st.session_state["vision_session"]`` so nothing uploaded is lost on an error.
Files arrive through the real widgets (uploader, URL box, camera); each is handed to
``DocumentSession.add_file(name, bytes)`` once, then the uploader is emptied (its key changes),
so a file is never added twice and a removed one does not come back.
"""

import re

import streamlit as st

from orq_core import vision
from orq_core.cost import format_usd
from orq_core.errors import OrqError
from orq_core.media import MAX_IMAGE_BYTES, MAX_PDF_BYTES, MAX_PDF_PAGES, megabytes
from orq_core.request import cache_write_ttl
from playground_ui.render import code_view, local_banner, show_error, usage_line
from playground_ui.session import require_context
from playground_ui.streaming import LiveAnswer

ctx = require_context()
model = ctx.model
session: vision.DocumentSession = st.session_state.setdefault("vision_session", vision.DocumentSession())
state = st.session_state


def plain(text: str) -> str:
    """A file name shown inside markdown, its markdown characters escaped."""
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|<>~])", r"\\\1", text)


def next_round(name: str) -> int:
    """Widget keys that change after each intake, so the widget comes back empty."""
    state[name] = state.get(name, 0) + 1
    return state[name]


# --- adding files ------------------------------------------------------------------------------

def add_url(kind: str) -> None:
    url = (state.get("vision_url") or "").strip()
    if url:
        session.add_url(url, kind)
        state["vision_url"] = ""


def upload_help() -> str:
    return (f"PNG, JPEG, GIF, WebP images and PDFs, several at once. The type is read from each file's bytes, "
            f"not its name. Limits: {megabytes(MAX_IMAGE_BYTES)} per image, {megabytes(MAX_PDF_BYTES)} and "
            f"{MAX_PDF_PAGES} pages per PDF, {vision.PAGE_MAX_IMAGES} images per question. This server accepts "
            f"uploads up to {st.get_option('server.maxUploadSize')} MB (server.maxUploadSize): a bigger file is "
            "refused by the uploader itself and never reaches the page.")


def intake() -> None:
    upload, address, camera = st.tabs(["Upload", "Address (URL)", "Camera"])
    with upload:
        files = st.file_uploader("Images and PDFs", type=list(vision.UPLOAD_TYPES), accept_multiple_files=True,
                                 key=f"vision_upload_{state.get('_vision_upload_round', 0)}", help=upload_help())
        if files:
            for file in files:
                session.add_file(file.name, file.getvalue())
            next_round("_vision_upload_round")
            st.rerun()
    with address:
        st.text_input("Address of an image or a PDF", key="vision_url",
                      placeholder="https://example.com/chart.png, or a data:image/png;base64,… URL",
                      help="http(s) addresses are fetched by the router, not by this page; a data: URL is "
                           "decoded and checked here like an upload.")
        left, right = st.columns(2)
        left.button("Add as image", icon=":material/image:", on_click=add_url, args=(vision.IMAGE,))
        right.button("Add as PDF", icon=":material/picture_as_pdf:", on_click=add_url, args=(vision.PDF,))
    with camera:
        on = st.toggle("Use the camera", key="vision_camera_on",
                       help="Off until you turn it on, so the browser does not ask for the camera when the page opens.")
        if on:
            shot = st.camera_input("Take a picture", key=f"vision_camera_{state.get('_vision_camera_round', 0)}")
            if shot is not None:
                taken = next_round("_vision_camera_round")
                session.add_file(f"camera-{taken}.jpg", shot.getvalue(), source="camera")
                st.rerun()


# --- the files ---------------------------------------------------------------------------------

def downscale(item_id: str) -> None:
    item = session.item(item_id)
    if item is not None:
        vision.apply_downscale(item)


def use_detected(item_id: str) -> None:
    item = session.item(item_id)
    if item is not None:
        vision.accept_detected_type(item)


def offer_downscale(item: vision.MediaItem) -> None:
    offer = vision.downscale_offer(item)
    if offer is None:
        return
    st.info(f"Claude reads images at most {vision.RECOMMENDED_LONG_EDGE:,} px on the long edge (and about "
            f"1.15 megapixels): at full size this image would be {offer.full_size_tokens:,} tokens "
            f"(width × height / 750); at {offer.new_width} × {offer.new_height} it is {offer.tokens_after:,} "
            f"(−{offer.token_saving:,}). Claude resizes it that far itself, so downscaling here saves the upload "
            f"({vision.file_size(offer.bytes_before)} → {vision.file_size(offer.bytes_after)}) and the router's "
            "resize time, not billed tokens.", icon=":material/photo_size_select_large:")
    st.button(f"Downscale to {offer.new_width} × {offer.new_height}", key=f"downscale_{item.id}",
              icon=":material/compress:", on_click=downscale, args=(item.id,))


def preview(item: vision.MediaItem) -> None:
    if item.kind == vision.IMAGE and item.data is not None and item.width:
        st.image(item.data, width=160)
    elif item.kind == vision.IMAGE and item.by_address and item.ok and state.get(f"previewed_{item.id}"):
        st.image(item.url, width=160)  # a checked http(s) address, never a path; loaded by the person's browser
    elif item.kind == vision.IMAGE and item.by_address and item.ok:
        st.caption("No preview yet: the router, not the playground, fetches this address when you ask. A preview "
                   "would make your own browser load it.")
        if st.button("Show preview", key=f"preview_{item.id}", icon=":material/visibility:"):
            state[f"previewed_{item.id}"] = True
            st.rerun()
    else:
        st.markdown(":material/picture_as_pdf:" if item.kind == vision.PDF else ":material/help:")


def render_item(item: vision.MediaItem) -> None:
    with st.container(border=True):
        left, right = st.columns([1, 4])
        with left:
            preview(item)
        with right:
            source = {"upload": "uploaded", "camera": "from the camera", "url": "by address"}[item.source]
            st.markdown(f"**{plain(item.name)}** · {source}")
            st.caption(item.facts())
            if item.original:
                w, h, size = item.original
                st.caption(f"Downscaled from {w} × {h} px ({vision.file_size(size)}).")
            if item.kind == vision.PDF and item.pages:
                st.caption(f"Title: {item.title or '(none)'} · first lines:")
                lines = [line if len(line) <= 160 else line[:159] + "…" for line in item.first_lines[:4]]
                st.text("\n".join(lines) or "(no text on the first pages: scanned?)")
            if item.problem:
                st.error(item.problem, icon=":material/block:")
                if item.fix == "as_detected":
                    st.button("Send it as what it is", key=f"detected_{item.id}", on_click=use_detected,
                              args=(item.id,))
            if not session.locked:
                offer_downscale(item)
                st.button("Remove", key=f"remove_{item.id}", icon=":material/delete:",
                          on_click=session.remove, args=(item.id,))


# --- the conversation --------------------------------------------------------------------------

def render_turns() -> None:
    for i, turn in enumerate(session.turns):
        with st.chat_message("user"):
            st.markdown(turn.question)
            if i == 0:
                st.caption(f"with {len(session.items)} file{'s' if len(session.items) != 1 else ''}")
        with st.chat_message("assistant"):
            st.markdown(turn.completion.text or "_(no text)_")
            if turn.completion.partial:
                st.caption(":material/stop_circle: Partial answer"
                           + (f" ({turn.completion.error})" if turn.completion.error else ""))
            usage_line(turn.completion, turn.write_ttl, key=f"vision_turn{i}")


def show_estimate(question: str) -> None:
    estimate = session.estimate(model, question)
    cache_note = {
        "write": f" · the files ({estimate.prefix_tokens:,} tokens) are written to the {session.cache_ttl} cache "
                 f"at {'2' if session.cache_ttl == '1h' else '1.25'}× the input price",
        "read": f" · the files ({estimate.prefix_tokens:,} tokens) should be read from the cache at 0.1× "
                f"(if asked within {session.cache_ttl} of the last question)",
        "too_short": " · too short to cache",
    }.get(estimate.cache, "")
    st.caption(f"Estimate before sending: **{estimate.input_tokens:,} input tokens** "
               f"({estimate.media_tokens:,} files + {estimate.text_tokens:,} text) · input "
               f"{format_usd(estimate.input_cost.total)} · at most {format_usd(estimate.ceiling)} with "
               f"{session.max_tokens:,} output tokens{cache_note}")


def ask(question: str) -> None:
    """Stream the answer; on any error the question stays in its box and the files stay put."""
    try:
        payload = session.payload(ctx.slug, question)
        ctx.guard(payload)
    except OrqError as error:
        show_error(error)
        return
    state["vision_last_payload"] = payload
    with st.chat_message("user"):
        st.markdown(question)
    live = LiveAnswer(ctx.client, payload, page="vision")
    with st.chat_message("assistant"):
        try:
            completion = live.run()
        except OrqError as error:
            show_error(error)
            return
        finally:
            if live.interrupted:  # the script was stopped mid-stream: keep what arrived
                session.record(question, live.partial_completion(), cache_write_ttl(payload))
    session.record(question, completion, cache_write_ttl(payload))
    state["_vision_clear_question"] = True
    st.rerun()


# --- the page ----------------------------------------------------------------------------------

st.title("Vision / PDF")
local_banner(ctx.connection)

if session.locked:
    st.info("These files are part of the conversation below; follow-up questions keep them in context. "
            "Start a new conversation to change them.", icon=":material/lock:")
    st.button("New conversation (keep the files)", icon=":material/add:", on_click=session.new_conversation)
else:
    intake()

for item in list(session.items):
    render_item(item)

render_turns()

settings = st.columns(4)
session.cache_document = settings[0].toggle(
    "Cache this document", value=session.cache_document,
    help="Puts cache_control on the last file, so follow-up questions read the files from the prompt cache "
         "(0.1× the input price) instead of paying for them again; the first question pays 1.25× to write them. "
         f"{model.label} caches prompts of at least {model.min_cacheable:,} tokens; shorter ones are silently "
         "not cached.")
session.cache_ttl = settings[1].segmented_control(
    "Cache TTL", ["5m", "1h"], default=session.cache_ttl, disabled=not session.cache_document,
    help="5 minutes (refreshed at each read; writes cost 1.25× input) or 1 hour (writes cost 2×).") or "5m"
session.max_tokens = int(settings[2].number_input("max_tokens", min_value=1, max_value=model.max_output,
                                                  value=min(session.max_tokens, model.max_output), step=256))
settings[3].caption(f"Model: {ctx.target.label} · images: {'yes' if model.vision else 'no'} · "
                    f"PDFs: {'yes' if model.pdf else 'no'}")

for note in session.warnings(model):
    st.warning(note, icon=":material/info:")
problems = session.problems(model)
if session.items:
    for problem in problems:
        st.warning(problem, icon=":material/block:")
else:
    st.caption("Add an image or a PDF above to ask about it.")

if state.pop("_vision_clear_question", False):
    state["vision_question"] = ""
label = "Follow-up question" if session.turns else "Your question about these files"
question = st.text_area(label, key="vision_question", height=80,
                        placeholder="What does this chart show? Summarise the PDF's conclusions…")
if session.items and not problems:
    show_estimate(question)
if st.button("Ask", type="primary", icon=":material/send:", disabled=bool(problems), key="vision_ask"):
    if question.strip():
        ask(question)
    else:
        st.warning("Type a question first.")

with st.expander("View code", icon=":material/code:"):
    st.caption("The base64 data of each file is shortened here (`…(N bytes)`) so the page stays light; the "
               "request that was sent carried the whole file. Put your file's base64 back in to run it.")
    code_view(state.get("vision_last_payload"), ctx.connection.base_url, abbreviate=True)
