"""Chat: a streamed conversation with every parameter, thinking, usage, cost and code."""

import streamlit as st

from orq_core.cache_advisor import advise, apply_advice
from orq_core.cost import format_usd
from orq_core.conversation import ChatSettings, Conversation, ConversationImportError, blank_message_problem
from orq_core.import_checks import printable
from orq_core.errors import OrqError, describe, must_change_request
from orq_core.request import cache_write_ttl
from playground_ui.render import code_view, local_banner, usage_line
from playground_ui.session import require_context
from playground_ui.streaming import LiveAnswer

ctx = require_context()
store = ctx.store
SHOWN_TURNS = 40  # drawn at first; older turns behind "Show earlier turns" keep a long conversation quick


# --- which conversation ------------------------------------------------------------------------

def open_conversation(conversation: Conversation) -> None:
    st.session_state["conversation"] = conversation
    st.session_state["_opened"] = conversation.id
    st.query_params["c"] = conversation.id


def current_conversation() -> Conversation:
    wanted = st.query_params.get("c")
    conversation = st.session_state.get("conversation")
    just_opened = st.session_state.pop("_opened", None)
    if conversation is not None and (not wanted or conversation.id in (wanted, just_opened)):
        st.query_params["c"] = conversation.id  # a rerun may still carry the previous address
        return conversation
    loaded = load_saved(wanted) if wanted else None
    if wanted and loaded is None and st.session_state.get("_damaged_id") != wanted:
        # never existed, deleted, or someone else's: the same answer for all three
        st.warning("Conversation not found: this link points to no conversation of yours. A new one is open instead.")
    conversation = loaded or Conversation(ChatSettings(model=ctx.slug))
    if wanted and loaded is None:
        st.query_params["c"] = conversation.id  # the address no longer names one that cannot open
    st.session_state["conversation"] = conversation
    return conversation


def load_saved(conversation_id: str) -> Conversation | None:
    try:
        return Conversation.load(store, conversation_id)
    except ConversationImportError as error:
        st.session_state["_import_error"] = f"{error} A new conversation was started instead."
        st.session_state["_damaged_id"] = conversation_id
        return None


def open_chosen_conversation() -> None:
    chosen = st.session_state.get("open_conversation")
    loaded = load_saved(chosen) if chosen else None
    if loaded is not None:
        open_conversation(loaded)


conversation = current_conversation()

with st.sidebar:
    st.markdown("### Conversations")
    if st.button("New conversation", icon=":material/add:", use_container_width=True):
        open_conversation(Conversation(ChatSettings(model=ctx.slug)))
        st.rerun()
    saved = store.list_docs("conversation")
    if saved:
        labels = {doc.id: f"{printable(doc.name)[:40]}" for doc in saved}
        # The choice follows the open conversation (an import or "New" changes it), and only a
        # person's pick opens another one.
        st.session_state["open_conversation"] = conversation.id if conversation.id in labels else None
        st.selectbox("Open", list(labels), format_func=labels.get, key="open_conversation", index=None,
                     placeholder="choose a saved conversation", on_change=open_chosen_conversation)
    if conversation.turns:
        new_title = st.text_input("Title", value=conversation.title, key=f"title_{conversation.id}")
        if new_title != conversation.title:
            conversation.title = new_title = printable(new_title)
            store.rename_doc("conversation", conversation.id, new_title)
        if st.button("Delete this conversation", icon=":material/delete:", use_container_width=True):
            store.delete_doc("conversation", conversation.id)
            open_conversation(Conversation(ChatSettings(model=ctx.slug)))
            st.rerun()
    uploaded = st.file_uploader("Import a conversation (.json)", type=["json"], key="import_conversation")
    if uploaded is not None and st.session_state.get("_imported") != uploaded.file_id:
        st.session_state["_imported"] = uploaded.file_id
        try:
            imported = Conversation.from_json(uploaded.getvalue())
        except ConversationImportError as error:
            st.session_state["_import_error"] = str(error)
        else:
            imported.save(store)
            open_conversation(imported)
            st.rerun()
    if st.session_state.get("_import_error"):
        st.error(st.session_state["_import_error"])
    damaged_id = st.session_state.get("_damaged_id")
    if damaged_id and st.button("Delete the conversation that cannot be opened", icon=":material/delete:"):
        store.delete_doc("conversation", damaged_id)
        st.session_state.pop("_damaged_id")
        st.session_state.pop("_import_error", None)
        st.rerun()


# --- settings ----------------------------------------------------------------------------------

st.title("Chat")
local_banner(ctx.connection)
settings = conversation.settings
settings.model = ctx.slug
model = ctx.model

with st.expander("System prompt and parameters", expanded=not conversation.turns, icon=":material/tune:"):
    settings.system = st.text_area("System prompt", value=settings.system, height=100,
                                   placeholder="You are a concise assistant…")
    c1, c2, c3 = st.columns(3)
    settings.cache_system = c1.toggle("Cache the system prompt", value=settings.cache_system,
                                      help=f"Adds a cache breakpoint. {model.label} caches prompts of at least "
                                           f"{model.min_cacheable:,} tokens; shorter ones are silently not cached.")
    settings.cache_conversation = c2.toggle(
        "Cache the conversation", value=settings.cache_conversation,
        help="A breakpoint on the newest message, moved each turn: the next turn reads the conversation so far.")
    settings.cache_ttl = c2.segmented_control("Cache TTL", ["5m", "1h"], default=settings.cache_ttl,
                                              disabled=not (settings.cache_system or settings.cache_conversation)) or "5m"
    settings.max_tokens = c3.number_input("max_tokens", min_value=1, max_value=model.max_output,
                                          value=min(settings.max_tokens, model.max_output), step=256)
    thinking = c1.toggle("Extended thinking", value=bool(settings.thinking_budget) and model.thinking,
                         disabled=not model.thinking,
                         help="Reasoning streams into a collapsed box and is replayed, signed, on the next turn."
                              if model.thinking else f"{model.label} has no extended thinking.")
    if thinking:
        settings.thinking_budget = c2.number_input("Thinking budget (tokens)", min_value=1024,
                                                   value=max(1024, settings.thinking_budget or 2048), step=512,
                                                   help="At least 1,024 and less than max_tokens.")
        settings.temperature = settings.top_p = settings.top_k = None
        c3.caption("With thinking, Claude fixes temperature at 1 and takes no top_k; the sampling controls are off.")
    else:
        settings.thinking_budget = None
        sampling = c2.radio("Sampling", ["default", "temperature", "top_p"], horizontal=True,
                            index=1 if settings.temperature is not None else 2 if settings.top_p is not None else 0,
                            help="Newer Claude models take temperature or top_p, not both.")
        settings.temperature = (c3.slider("temperature", 0.0, 1.0, settings.temperature if settings.temperature
                                          is not None else 1.0, 0.05) if sampling == "temperature" else None)
        settings.top_p = (c3.slider("top_p", 0.01, 1.0, settings.top_p or 0.9, 0.01)
                          if sampling == "top_p" else None)
        top_k = c1.number_input("top_k (0 = off)", min_value=0, value=settings.top_k or 0, step=1)
        settings.top_k = int(top_k) or None
    stops = st.text_input("Stop sequences (comma-separated)", value=", ".join(settings.stop))
    settings.stop = tuple(s.strip() for s in stops.split(",") if s.strip())
    for problem in settings.problems():
        st.warning(problem, icon=":material/rule:")


# --- history -----------------------------------------------------------------------------------

def render_turn(index: int, turn) -> None:
    if turn.role == "error":
        with st.chat_message("assistant", avatar=":material/error:"):
            st.error(turn.text)
        return
    with st.chat_message(turn.role):
        if turn.reasoning:
            with st.expander("Thinking", icon=":material/psychology:"):
                st.markdown(turn.reasoning)
        st.markdown(turn.text or "_(no text)_")
        if turn.stopped:
            st.caption(":material/stop_circle: Stopped: partial answer"
                       + (f" ({turn.completion.error})" if turn.completion and turn.completion.error else ""))
        if turn.completion is not None:
            usage_line(turn.completion, turn.write_ttl, key=f"turn{index}")


shown_from = max(0, len(conversation.turns) - st.session_state.get(f"shown_turns_{conversation.id}", SHOWN_TURNS))
if shown_from and st.button(f"Show earlier turns ({shown_from:,} hidden)", icon=":material/expand_less:"):
    st.session_state[f"shown_turns_{conversation.id}"] = len(conversation.turns) - shown_from + SHOWN_TURNS
    st.rerun()
for i, turn in enumerate(conversation.turns[shown_from:], start=shown_from):
    render_turn(i, turn)


def breakpoint_advisor() -> None:
    """The cache doctor's advice for the next turns, applied with one click."""
    doctor = getattr(ctx.client, "doctor", None)
    if doctor is None or not conversation.turns:
        return
    try:
        advice = advise(conversation, doctor)
    except (OrqError, ValueError):
        return
    with st.expander("Cache doctor: where to put breakpoints", icon=":material/cached:",
                     expanded=not advice.same_as(settings.cache_system, settings.cache_conversation)):
        if advice.same_as(settings.cache_system, settings.cache_conversation):
            st.caption(f"The current breakpoints are the cheapest for the next {advice.turns} turns "
                       f"(about {format_usd(advice.expected_usd)} of input).")
            return
        st.markdown(advice.sentence())
        if st.button("Apply the suggestion", icon=":material/auto_fix_high:", key="apply_breakpoint_advice"):
            apply_advice(conversation, advice)
            conversation.save(store)
            st.rerun()


breakpoint_advisor()


# --- sending -----------------------------------------------------------------------------------

def take_back_last_user_turn(error: OrqError) -> None:
    """The request itself was refused: the message leaves the history (or every later turn would
    fail the same way) and comes back as a draft, with the reason."""
    st.session_state["draft"] = conversation.last_user_text() or ""
    conversation.drop_trailing_answers()
    if conversation.turns:
        conversation.turns.pop()
    conversation.save(store)
    st.session_state["send_error"] = describe(error)
    st.rerun()


def answer_last_user_turn() -> None:
    """Stream the answer to the last user turn; errors become a note in the chat, nothing is lost."""
    try:
        payload = conversation.payload_for_next_answer()
        ctx.guard(payload)
    except OrqError as error:
        take_back_last_user_turn(error)
    st.session_state["last_payload"] = payload
    live = LiveAnswer(ctx.client, payload, page="chat")
    with st.chat_message("assistant"):
        try:
            completion = live.run()
        except OrqError as error:
            if must_change_request(error):
                take_back_last_user_turn(error)
            conversation.add_error(describe(error))
        else:
            conversation.add_answer(completion, cache_write_ttl(payload))
        finally:
            if live.interrupted:  # stopped by the person: keep what arrived, marked
                conversation.add_answer(live.partial_completion(), cache_write_ttl(payload))
            conversation.save(store)
            st.query_params["c"] = conversation.id
    st.rerun()


if st.session_state.get("send_error"):
    st.error(st.session_state.pop("send_error"), icon=":material/block:")
    draft = st.session_state.get("draft")
    if draft:
        st.caption("Your message was not sent; here it is to copy back:")
        st.code(draft, language=None)

# The chat input is pinned to the bottom wherever it is called; reading it here lets the answer
# stream in this same run, so its stop button stops this stream.
prompt = st.chat_input("Message Claude (Enter to send, Shift+Enter for a new line)", submit_mode="stop")
if prompt and blank_message_problem(prompt):
    st.error(blank_message_problem(prompt), icon=":material/block:")
elif prompt:
    st.session_state.pop("draft", None)
    conversation.add_user(prompt)
    render_turn(len(conversation.turns) - 1, conversation.turns[-1])
    answer_last_user_turn()
elif conversation.turns and conversation.turns[-1].role == "user" and st.session_state.pop("_pending_send", False):
    answer_last_user_turn()

actions = st.columns(4)
if conversation.turns:
    if actions[0].button("Regenerate", icon=":material/refresh:", disabled=not conversation.last_user_text()):
        conversation.drop_trailing_answers()
        st.session_state["_pending_send"] = True
        st.rerun()
    if actions[1].button("Clear", icon=":material/delete_sweep:"):
        conversation.clear()
        conversation.save(store)
        st.rerun()
    actions[2].download_button("Export JSON", conversation.to_json(), file_name=f"conversation-{conversation.id}.json",
                               mime="application/json", icon=":material/download:", on_click="ignore")
    with actions[3].popover("Edit last message", icon=":material/edit:"):
        edited = st.text_area("Last user message", value=conversation.last_user_text() or "", key="edit_last")
        if st.button("Resend", key="resend_edited") and edited.strip():
            conversation.replace_last_user(edited)
            st.session_state["_pending_send"] = True
            st.rerun()

with st.expander("View code", icon=":material/code:"):
    code_view(st.session_state.get("last_payload"), ctx.connection.base_url)
