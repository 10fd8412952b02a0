"""The Notebook page through the real entry point, on the local router."""

from __future__ import annotations

import nbformat
import pytest
from page_support import APP, RUN_TIMEOUT_S, open_app
from streamlit.testing.v1 import AppTest

from orq_core.notebook import Notebook
from orq_core.store import Store

PAGE = "app_pages/notebook.py"
HAIKU = "anthropic/claude-haiku-4-5-20251001"


@pytest.fixture
def app(page_env):
    at = open_app(PAGE)
    at.button(key="nb_start_blank").click().run()
    assert not at.exception, at.exception
    return at


def notebook(at) -> Notebook:
    return at.session_state["nb"]


def ok(at) -> None:
    assert not at.exception, at.exception


def add(at, after_id: str, kind: str) -> str:
    """Adds a cell of ``kind`` below ``after_id``; returns the new cell's id."""
    before = {c.id for c in notebook(at).cells}
    at.selectbox(key=f"nb_add_{after_id}").set_value(kind).run()
    ok(at)
    [new] = [c.id for c in notebook(at).cells if c.id not in before]
    return new


def badges(at) -> dict[str, str]:
    """Cell number -> its status badge, from the cell headers."""
    out = {}
    for m in at.markdown:
        if m.value.startswith("**") and "·" in m.value and "-badge[" in m.value:
            number = m.value[2:].split(" ")[0]
            out[number] = m.value.split("-badge[")[1].rstrip("]")
    return out


def build_every_kind(at) -> dict[str, str]:
    first = notebook(at).cells[0].id
    ids = {"markdown": first}
    ids["variables"] = add(at, first, "variables")
    at.text_area(key=f"nb_{ids['variables']}_text").set_value("topic = tides\nlength = one sentence").run()
    ids["prompt"] = add(at, ids["variables"], "prompt")
    at.text_area(key=f"nb_{ids['prompt']}_user").set_value("Explain {{topic}} in {{length}}.").run()
    ids["plain"] = add(at, ids["prompt"], "prompt")
    at.text_area(key=f"nb_{ids['plain']}_user").set_value("Say hello.").run()
    ids["compare"] = add(at, ids["plain"], "compare")
    at.text_area(key=f"nb_{ids['compare']}_user").set_value("What are {{topic}}?").run()
    ids["lab"] = add(at, ids["compare"], "lab")
    at.number_input(key=f"nb_{ids['lab']}_requests").set_value(2).run()
    at.number_input(key=f"nb_{ids['lab']}_context_tokens").set_value(2_000).run()
    ids["batch"] = add(at, ids["lab"], "batch")
    at.text_area(key=f"nb_{ids['batch']}_template").set_value("One word about {{city}} and {{topic}}.").run()
    at.text_area(key=f"nb_{ids['batch']}_table").set_value("city\nOslo\nLima").run()
    ok(at)
    return ids


def test_every_cell_kind_runs_goes_stale_and_reloads_from_the_url(app, page_env):
    ids = build_every_kind(app)
    nb = notebook(app)
    assert [c.kind for c in nb.cells] == ["markdown", "variables", "prompt", "prompt", "compare", "lab", "batch"]
    assert app.query_params["nb"] == nb.id
    app.button(key="nb_run_all").click().run()
    ok(app)
    nb = notebook(app)
    outputs = {kind: nb.cell(cell_id).output for kind, cell_id in ids.items()}
    for kind in ("prompt", "plain", "compare", "lab", "batch"):
        assert outputs[kind].ok, (kind, outputs[kind].error)
    assert "Explain tides in one sentence." in outputs["prompt"].answers[0].text
    assert len(outputs["compare"].answers) == 2 and len(outputs["lab"].requests) == 4
    assert [r.label for r in outputs["batch"].requests] == ["row 1", "row 2"]
    assert "One word about Lima and tides." in outputs["batch"].batch["records"][1]["output"]
    assert len(app.get("plotly_chart")) == 3 + 2  # the lab's and the batch's
    totals = nb.totals()
    assert app.metric[0].value == f"{totals.requests:,}"
    assert badges(app)["3"] == "up to date" and badges(app)["4"] == "up to date"

    # a variable changes: the cells that use it go stale, the others do not
    app.text_area(key=f"nb_{ids['variables']}_text").set_value("topic = volcanoes\nlength = one sentence").run()
    ok(app)
    marks = badges(app)
    assert marks["3"] == "stale" and marks["5"] == "stale" and marks["7"] == "stale"
    assert marks["4"] == "up to date" and marks["6"] == "up to date"
    plain_ran_at = notebook(app).cell(ids["plain"]).output.ran_at
    assert app.button(key="nb_run_stale").label.startswith("Run stale (")
    app.button(key="nb_run_stale").click().run()
    ok(app)
    nb = notebook(app)
    assert "Explain volcanoes in one sentence." in nb.cell(ids["prompt"]).output.answers[0].text
    assert nb.cell(ids["plain"]).output.ran_at == plain_ran_at
    assert nb.stale_cells() == []
    assert "One word about Lima and volcanoes." in nb.cell(ids["batch"]).output.batch["records"][1]["output"]

    # reload from the URL in a new session: the same cells and outputs, from the store
    again = AppTest.from_file(APP, default_timeout=RUN_TIMEOUT_S)
    again.query_params["nb"] = nb.id
    again.run()
    again.switch_page(PAGE)
    again.query_params["nb"] = nb.id
    again.run()
    ok(again)
    assert notebook(again).to_dict() == nb.to_dict()

    # export both formats
    again.button(key="nb_prepare_exports").click().run()
    ok(again)
    ipynb, report = again.session_state["nb_exports"]
    nbformat.validate(nbformat.reads(ipynb, as_version=4))
    assert "plotly-graph-div" in report and "Saved by caching" in report
    assert [b.label for b in again.get("download_button")] == ["Download .ipynb", "Download HTML report"]


def test_editing_cells_and_undoing_a_delete(app):
    first = notebook(app).cells[0].id
    prompt = add(app, first, "prompt")
    variables = add(app, first, "variables")
    assert [c.kind for c in notebook(app).cells] == ["markdown", "variables", "prompt"]
    app.button(key=f"nb_up_{prompt}").click().run()
    assert [c.id for c in notebook(app).cells][1] == prompt
    app.button(key=f"nb_down_{first}").click().run()
    assert [c.id for c in notebook(app).cells] == [prompt, first, variables]
    app.button(key=f"nb_dup_{prompt}").click().run()
    assert [c.kind for c in notebook(app).cells] == ["prompt", "prompt", "markdown", "variables"]
    app.button(key=f"nb_collapse_{prompt}").click().run()
    ok(app)
    assert notebook(app).cell(prompt).collapsed
    assert f"nb_{prompt}_user" not in [t.key for t in app.text_area]
    app.button(key=f"nb_delete_{variables}").click().run()
    assert [c.kind for c in notebook(app).cells] == ["prompt", "prompt", "markdown"]
    app.button(key="nb_undo_delete").click().run()
    ok(app)
    assert [c.id for c in notebook(app).cells][-1] == variables
    saved = Store.default().load_doc("notebook", notebook(app).id)
    assert [c["kind"] for c in saved.data["cells"]] == ["prompt", "prompt", "markdown", "variables"]


def test_an_error_stops_run_all_in_its_cell(app):
    first = notebook(app).cells[0].id
    broken = add(app, first, "prompt")
    app.text_area(key=f"nb_{broken}_user").set_value("Hello {{nobody}}").run()
    later = add(app, broken, "prompt")
    app.text_area(key=f"nb_{later}_user").set_value("Hi").run()
    app.button(key="nb_run_all").click().run()
    ok(app)
    sentence = ("The cell uses {{nobody}}, but no Variables cell above it defines nobody. "
                "Add `nobody = ...` to a Variables cell above, or remove it.")
    assert [e.value for e in app.error] == [sentence]
    assert [w.value for w in app.warning] == [f"Stopped at cell 2 (Prompt): {sentence}"]
    assert notebook(app).cell(later).output is None
    assert notebook(app).cell(later).inputs.user == "Hi"


def test_a_link_to_a_missing_notebook_says_so(page_env):
    at = AppTest.from_file(APP, default_timeout=RUN_TIMEOUT_S)
    at.run()
    at.switch_page(PAGE)
    at.query_params["nb"] = "0123456789"
    at.run()
    ok(at)
    assert [w.value for w in at.warning] == [
        "That notebook link opens nothing here: the notebook was deleted, or it is someone else's. "
        "Open one of yours from the sidebar."]


def test_the_demo_starts_with_its_cells(page_env):
    at = open_app(PAGE)
    at.button(key="nb_start_demo").click().run()
    ok(at)
    nb = notebook(at)
    assert nb.title == "What prompt caching saves"
    assert [c.kind for c in nb.cells] == ["markdown", "variables", "markdown", "prompt", "prompt", "markdown",
                                          "compare", "markdown", "lab", "markdown", "batch", "markdown"]
    assert Store.default().load_doc("notebook", nb.id).name == "What prompt caching saves"


def test_import_an_exported_notebook_and_refuse_a_foreign_one(page_env):
    from orq_core.notebook import demo_notebook
    from orq_core.notebook_export import NOT_OURS, export_ipynb

    at = open_app(PAGE)
    foreign = nbformat.writes(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(1)")]))
    at.file_uploader(key="nb_import").set_value([("theirs.ipynb", foreign.encode(), "application/json")]).run()
    ok(at)
    assert [w.value for w in at.warning] == [f"Not imported: {NOT_OURS}"]
    assert at.session_state["nb"] is None if "nb" in at.session_state else True

    saved = demo_notebook()
    at.file_uploader(key="nb_import").set_value([("demo.ipynb", export_ipynb(saved).encode(), "application/json")]).run()
    ok(at)
    imported = notebook(at)
    assert imported.title == saved.title and imported.id != saved.id
    assert [c.inputs for c in imported.cells] == [c.inputs for c in saved.cells]
    assert at.query_params["nb"] == imported.id
    assert Store.default().load_doc("notebook", imported.id).name == saved.title


def test_a_cell_cut_off_by_a_killed_server_opens_with_what_finished(page_env):
    from orq_core.notebook import INTERRUPTED, CellOutput, RequestFigures

    nb = Notebook("Killed mid-batch")
    cell = nb.add("batch", template="About {{city}}", table="city\nLima\nQuito\nOslo",
                  targets=("anthropic/claude-sonnet-4-5-20250929",))
    nb.save(Store.default())
    so_far = CellOutput("", "error", error=INTERRUPTED.format(done=1, total=3),
                        requests=[RequestFigures("row 1", "anthropic/claude-sonnet-4-5-20250929")])
    nb.save_output(Store.default(), cell, so_far)
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page(PAGE)
    at.query_params["nb"] = nb.id
    at.run()
    ok(at)
    assert INTERRUPTED.format(done=1, total=3) in [e.value for e in at.error]
    assert at.button(key="nb_run_stale").label == "Run stale (1)"
