"""Notebook: a story of cells (Markdown, Prompt, Compare, Lab, Batch, Variables) that run, go stale
when what they use changes, save themselves, and export as .ipynb and a standalone HTML report.

The notebook is ``orq_core.notebook``. Buttons only ask for a run (``nb_pending``); the run happens
at the end of the script, after every cell's widgets were read, so it always uses what is on screen.
Each finished cell is saved as it lands, so a click that interrupts a run loses only the cell in
flight.
"""

import time

import streamlit as st

from orq_core.errors import describe
from orq_core.notebook import (DOC_KIND, KIND_LABELS, KINDS, Notebook, NotebookError, RunContext, demo_notebook,
                               run_all)
from orq_core.types import ReasoningDelta, TextDelta
from playground_ui.notebook_cells import INPUT_WIDGETS, show_markdown_cell, show_output, show_variables
from playground_ui.render import local_banner, usage_summary
from playground_ui.session import require_context
from playground_ui.streaming import CURSOR, REPAINT_EVERY_S

ctx = require_context()
store = ctx.store
state = st.session_state


# --- which notebook ------------------------------------------------------------------------------

def show_notebook(notebook: Notebook | None) -> None:
    state["nb"] = notebook
    state.pop("nb_exports", None)
    if notebook is None:
        st.query_params.pop("nb", None)
    else:
        st.query_params["nb"] = notebook.id


def current() -> Notebook | None:
    notebook = state.get("nb")
    wanted = st.query_params.get("nb")
    if wanted and (notebook is None or notebook.id != wanted):
        loaded = Notebook.load(store, wanted)
        if loaded is None:
            state["nb_notice"] = ("That notebook link opens nothing here: the notebook was deleted, or it is "
                                  "someone else's. Open one of yours from the sidebar.")
            show_notebook(None)
            return None
        show_notebook(loaded)
        return loaded
    return notebook


def save(notebook: Notebook) -> None:
    notebook.save(store)


def new_blank() -> None:
    notebook = Notebook("Untitled notebook")
    notebook.add("markdown", text="# A new notebook\nWrite the story here, then add cells below.")
    save(notebook)
    show_notebook(notebook)


def new_demo() -> None:
    notebook = demo_notebook()
    save(notebook)
    show_notebook(notebook)


def open_saved() -> None:
    chosen = state.get("nb_open")
    if chosen:
        show_notebook(Notebook.load(store, chosen))
    state["nb_open"] = None


def duplicate_notebook() -> None:
    twin = state["nb"].copy()
    save(twin)
    show_notebook(twin)


def delete_notebook() -> None:
    store.delete_doc(DOC_KIND, state["nb"].id)
    state["nb_confirm_delete"] = False
    show_notebook(None)


def import_file() -> None:
    upload = state.get("nb_import")
    if upload is None:
        return
    from orq_core.notebook_export import import_ipynb

    try:
        imported = import_ipynb(upload.getvalue())
    except NotebookError as error:
        state["nb_notice"] = f"Not imported: {error}"
        return
    notebook = imported.copy(title=imported.title)  # new ids: an import never overwrites saved work
    save(notebook)
    show_notebook(notebook)
    state["nb_toast"] = f"Imported “{notebook.title}” ({len(notebook.cells)} cells)."


notebook = current()

with st.sidebar:
    st.markdown("### Notebooks")
    row = st.columns(2)
    row[0].button("New", icon=":material/add:", key="nb_new", on_click=new_blank, width="stretch")
    row[1].button("Demo", icon=":material/auto_stories:", key="nb_new_demo", on_click=new_demo, width="stretch",
                  help="A copy of the built-in demo, “What prompt caching saves”.")
    saved = store.list_docs(DOC_KIND)
    if saved:
        names = {doc.id: doc.name[:50] for doc in saved}
        st.selectbox("Open a saved notebook", list(names), format_func=names.get, index=None, key="nb_open",
                     placeholder="choose one", on_change=open_saved)
    st.file_uploader("Import an exported .ipynb", type=["ipynb"], key="nb_import", on_change=import_file)
    if notebook is not None:
        row = st.columns(2)
        row[0].button("Duplicate", icon=":material/content_copy:", key="nb_duplicate", on_click=duplicate_notebook,
                      width="stretch")
        if row[1].toggle("Delete…", key="nb_confirm_delete"):
            st.button(f"Delete “{notebook.title[:30]}” for good", type="primary", key="nb_delete",
                      on_click=delete_notebook, icon=":material/delete_forever:")

st.title("Notebook")
if state.get("nb_notice"):
    st.warning(state.pop("nb_notice"), icon=":material/info:")
if state.get("nb_toast"):
    st.toast(state.pop("nb_toast"))
local_banner(ctx.connection)

if notebook is None:
    st.markdown("A notebook is a story of cells: an explanation, a prompt, a comparison, a caching experiment, "
                "a batch. Cells re-run, go stale when what they use changes, and export as a runnable `.ipynb` "
                "and a standalone HTML report.")
    c = st.columns([3, 2, 1])
    c[0].button("Start from the demo: “What prompt caching saves”", type="primary", key="nb_start_demo",
                on_click=new_demo, width="stretch")
    c[1].button("Start a blank notebook", key="nb_start_blank", on_click=new_blank, width="stretch")
    st.stop()


# --- editing callbacks ---------------------------------------------------------------------------

def edit(action: str, cell_id: str) -> None:
    nb: Notebook = state["nb"]
    try:
        if action == "up":
            nb.move(cell_id, -1)
        elif action == "down":
            nb.move(cell_id, 1)
        elif action == "duplicate":
            nb.duplicate(cell_id)
        elif action == "collapse":
            nb.toggle_collapsed(cell_id)
        elif action == "delete":
            index = nb.index(cell_id)
            state["nb_undo"] = (index, nb.cells[index])
            nb.delete(cell_id)
    except NotebookError as error:
        state["nb_notice"] = str(error)
    save(nb)


def add_below(cell_id: str | None) -> None:
    key = f"nb_add_{cell_id or 'top'}"
    kind = state.get(key)
    state[key] = None
    if kind:
        nb: Notebook = state["nb"]
        try:
            nb.add(kind, after=cell_id)
        except NotebookError as error:
            state["nb_notice"] = str(error)
        save(nb)


def undo_delete() -> None:
    index, cell = state.pop("nb_undo")
    nb: Notebook = state["nb"]
    nb.cells.insert(min(index, len(nb.cells)), cell)
    save(nb)


def ask(run: tuple[str, str | None]) -> None:
    state["nb_pending"] = run


def add_selector(cell_id: str | None) -> None:
    st.selectbox("Add a cell below", KINDS, format_func=KIND_LABELS.get, index=None, key=f"nb_add_{cell_id or 'top'}",
                 placeholder="Add a cell below…", on_change=add_below, args=(cell_id,), label_visibility="collapsed")


# --- header: title, totals, run buttons ----------------------------------------------------------

title = st.text_input("Title", value=notebook.title, key=f"nb_title_{notebook.id}")
if title.strip() and title.strip() != notebook.title:
    notebook.title = title.strip()[:200]
    store.save_doc(DOC_KIND, notebook.id, notebook.title, notebook.to_dict(with_outputs=False))

totals = notebook.totals()
metrics = st.columns(6)
metrics[0].metric("Requests", f"{totals.requests:,}")
metrics[1].metric("Input tokens", f"{totals.usage.prompt_tokens:,}",
                  help=f"{totals.usage.input_tokens:,} uncached · {totals.usage.cache_read_tokens:,} cache read · "
                       f"{totals.usage.cache_write_tokens:,} cache write")
metrics[2].metric("Output tokens", f"{totals.usage.output_tokens:,}",
                  help=f"of which reasoning {totals.usage.reasoning_tokens:,}")
rows = dict(totals.rows())
metrics[3].metric("Cost", rows["Cost"], help=f"without caching {rows['Without caching']}")
metrics[4].metric("Saved by caching", rows["Saved by caching"])
metrics[5].metric("Time", rows["Time"])
if totals.requests:
    st.caption(f"Tokens by kind: {usage_summary(totals.usage)} · without caching {rows['Without caching']}")

stale = notebook.stale_cells()
buttons = st.columns([1, 1.3, 2])
buttons[0].button("Run all", icon=":material/play_circle:", type="primary", key="nb_run_all", on_click=ask,
                  args=(("all", None),), shortcut="alt+shift+a", help="Every cell, top to bottom (Alt+Shift+A). "
                                                                     "Stops at the first error.")
buttons[1].button(f"Run stale ({len(stale)})", icon=":material/update:", key="nb_run_stale", on_click=ask,
                  args=(("stale", None),), disabled=not stale, shortcut="alt+shift+s",
                  help="Only the cells whose inputs or variables changed since their run (Alt+Shift+S).")
progress_slot = buttons[2].empty()

with st.expander("Export", icon=":material/ios_share:"):
    if st.button("Prepare the .ipynb and the HTML report", key="nb_prepare_exports"):
        from orq_core.notebook_export import export_ipynb
        from orq_core.notebook_report import export_html

        state["nb_exports"] = (export_ipynb(notebook), export_html(notebook))
    if state.get("nb_exports"):
        ipynb, report = state["nb_exports"]
        e = st.columns(2)
        e[0].download_button("Download .ipynb", ipynb, file_name=f"{notebook.id}.ipynb", mime="application/json",
                             icon=":material/code:", on_click="ignore", key="nb_download_ipynb")
        e[1].download_button("Download HTML report", report, file_name=f"{notebook.id}.html", mime="text/html",
                             icon=":material/description:", on_click="ignore", key="nb_download_html")
        st.caption("The .ipynb reads ORQ_BASE_URL and ORQ_API_KEY from the environment: the key is never in it. "
                   "The report opens offline (plotly is inside it).")

if state.get("nb_undo"):
    st.button("Undo the delete", icon=":material/undo:", key="nb_undo_delete", on_click=undo_delete)
if not notebook.cells:
    add_selector(None)


# --- the cells -----------------------------------------------------------------------------------

def cell_header(number: int, cell, is_stale: bool) -> None:
    head = st.columns([4, 1, 1, 1, 1, 1, 1], vertical_alignment="center")
    if not cell.runnable:
        badge = ""
    elif cell.output is None:
        badge = " :gray-badge[not run]"
    elif is_stale:
        badge = " :orange-badge[stale]"
    elif not cell.output.ok:
        badge = " :red-badge[error]"
    else:
        badge = " :green-badge[up to date]"
    head[0].markdown(f"**{number} · {cell.label}**{badge}")
    if cell.runnable:
        head[1].button("Run", icon=":material/play_arrow:", key=f"nb_run_{cell.id}", on_click=ask,
                       args=(("cell", cell.id),), help="Run this cell")
    head[2].button(":material/arrow_upward:", key=f"nb_up_{cell.id}", on_click=edit, args=("up", cell.id),
                   help="Move up")
    head[3].button(":material/arrow_downward:", key=f"nb_down_{cell.id}", on_click=edit, args=("down", cell.id),
                   help="Move down")
    head[4].button(":material/content_copy:", key=f"nb_dup_{cell.id}", on_click=edit, args=("duplicate", cell.id),
                   help="Duplicate")
    head[5].button(":material/unfold_more:" if cell.collapsed else ":material/unfold_less:",
                   key=f"nb_collapse_{cell.id}", on_click=edit, args=("collapse", cell.id),
                   help="Expand" if cell.collapsed else "Collapse")
    head[6].button(":material/delete:", key=f"nb_delete_{cell.id}", on_click=edit, args=("delete", cell.id),
                   help="Delete (Undo appears at the top)")


changed = False
slots = {}
for number, cell in enumerate(list(notebook.cells), start=1):
    with st.container(border=True, key=f"nb_cell_{cell.id}"):
        cell_header(number, cell, notebook.is_stale(cell))
        if not cell.collapsed and cell.kind == "markdown":
            with st.expander("Edit", icon=":material/edit:", expanded=not cell.inputs.text.strip()):
                changed |= notebook.set_inputs(cell.id, INPUT_WIDGETS[cell.kind](cell))
        elif not cell.collapsed:
            changed |= notebook.set_inputs(cell.id, INPUT_WIDGETS[cell.kind](cell))
        if cell.kind == "markdown":
            show_markdown_cell(cell, notebook)
        elif cell.kind == "variables":
            show_variables(cell)
        elif not cell.collapsed or cell.output is not None:
            if not cell.collapsed:
                st.divider()
            slots[cell.id] = st.empty()
            with slots[cell.id].container():
                show_output(cell)
    add_selector(cell.id)

if changed:
    store.save_doc(DOC_KIND, notebook.id, notebook.title, notebook.to_dict(with_outputs=False))
if changed and state.get("nb_pending") is None and not state.get("_nb_redrawn"):
    state["_nb_redrawn"] = True  # once: the stale badges above were drawn before this change
    st.rerun()
state["_nb_redrawn"] = False


# --- running -------------------------------------------------------------------------------------

class LivePainter:
    """Paints a running cell's streamed text into its slot, at most every REPAINT_EVERY_S."""

    def __init__(self):
        self.cell_id = None
        self.texts: dict[str, str] = {}
        self.area = None
        self.last = 0.0

    def start(self, cell) -> None:
        self.cell_id, self.texts, self.last = cell.id, {}, 0.0
        slot = slots.get(cell.id)
        if slot is None:
            self.area = None
            return
        with slot.container():
            st.caption("Running…")
            self.area = st.empty()

    def __call__(self, cell, event) -> None:
        label, text = self._text_of(event)
        if text is None or self.area is None:
            return
        self.texts[label] = self.texts.get(label, "") + text
        now = time.monotonic()
        if now - self.last >= REPAINT_EVERY_S:
            self.last = now
            body = "\n\n".join(f"**{k}**\n\n{v}" if k else v for k, v in self.texts.items())
            self.area.markdown(body + CURSOR)

    @staticmethod
    def _text_of(event):
        inner = getattr(event, "event", None)
        if inner is not None:  # a Compare column's event
            label = f"Column {event.column + 1}"
            return (label, inner.text) if isinstance(inner, TextDelta) else (label, None)
        if isinstance(event, (TextDelta, ReasoningDelta)):
            return "", event.text if isinstance(event, TextDelta) else None
        if hasattr(event, "arm") and hasattr(event, "request"):  # a Lab record
            return f"{event.arm} #{event.request}", f"{event.status} "
        if hasattr(event, "row") and hasattr(event, "target"):  # a Batch record
            return event.target, f"row {event.row} {event.status} · "
        return "", None


pending = state.pop("nb_pending", None)
if pending is not None:
    mode, target = pending
    painter = LivePainter()
    run_ctx = RunContext(ctx.client, local=ctx.connection.local, on_event=painter,
                         spent_usd=lambda: ctx.spend.total_usd, budget_usd=ctx.budget_usd,
                         save_partial=lambda cell, so_far: notebook.save_output(store, cell, so_far))
    if mode == "cell":
        from orq_core.notebook import run_cell

        try:
            cell = notebook.cell(target)
            painter.start(cell)
            run_cell(notebook, target, run_ctx)
            notebook.save_output(store, cell)
        except NotebookError as error:
            state["nb_notice"] = describe(error)
    else:
        bar = progress_slot.progress(0.0, text="Starting…")
        for step in run_all(notebook, run_ctx, only_stale=mode == "stale",
                            on_cell_done=lambda c: notebook.save_output(store, c)):
            number = notebook.index(step.cell.id) + 1
            if step.output is None:
                painter.start(step.cell)
                bar.progress(step.done / max(step.total, 1),
                             text=f"Running cell {number} ({step.cell.label}), {step.done + 1} of {step.total}")
            elif not step.output.ok:
                state["nb_notice"] = f"Stopped at cell {number} ({step.cell.label}): {step.output.error}"
    state.pop("nb_exports", None)
    st.rerun()
