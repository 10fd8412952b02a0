"""The Notebook core: cells, variables and staleness, running, totals, storage, .ipynb and HTML export,
import, and the `notebook` CLI, all against the local router."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

import nbformat
import pytest

from orq_core.__main__ import main
from orq_core.client import OrqClient
from orq_core.cost import cost_of
from orq_core.notebook import (DEMO_TITLE, Notebook, NotebookError, RunContext, demo_notebook, parse_variables,
                               run_all, run_cell)
from orq_core.notebook_export import NOT_OURS, export_ipynb, import_ipynb
from orq_core.notebook_report import export_html, render_markdown
from orq_core.store import Store

SONNET = "anthropic/claude-sonnet-4-5-20250929"
HAIKU = "anthropic/claude-haiku-4-5-20251001"


@pytest.fixture
def client(local_router):
    from orq_core.cache_doctor import doctor_for

    doctor = doctor_for(local_router.base_url, local_router.api_key)
    with OrqClient(local_router.base_url, local_router.api_key, doctor=doctor) as c:
        yield c


@pytest.fixture
def run_ctx(client):
    return RunContext(client, local=True)


def small_notebook() -> Notebook:
    nb = Notebook("Small")
    nb.add("markdown", text="# Intro")
    nb.add("variables", text="topic = tides\n# a comment\nlength = 'one sentence'")
    nb.add("prompt", user="Explain {{topic}} in {{length}}.", max_tokens=200)
    nb.add("prompt", user="Say hello.", max_tokens=100)
    nb.add("compare", targets=(SONNET, HAIKU), user="What are {{topic}}?", max_tokens=150)
    return nb


def ran(nb: Notebook, ctx: RunContext) -> list:
    return list(run_all(nb, ctx))


# --- variables and staleness ----------------------------------------------------------------------

def test_variables_parse_and_a_bad_line_gets_a_sentence():
    assert parse_variables("a = 1\n\n# c\nb_2 =  two words \nq = \"x y\"") == {"a": "1", "b_2": "two words", "q": "x y"}
    with pytest.raises(NotebookError) as error:
        parse_variables("a = 1\n2x = 3")
    assert str(error.value) == ("Line 2 of the Variables cell is not `name = value` (a name is letters, digits and _, "
                                "not starting with a digit): '2x = 3'.")


def test_changing_a_variable_makes_only_the_cells_that_use_it_stale(run_ctx):
    nb = small_notebook()
    prompt_topic, prompt_hello, compare = nb.cells[2], nb.cells[3], nb.cells[4]
    assert [nb.is_stale(c) for c in nb.cells] == [False, False, True, True, True]  # never run
    ran(nb, run_ctx)
    assert nb.stale_cells() == []
    assert prompt_topic.references() == ["topic", "length"] and prompt_hello.references() == []
    nb.cells[1].inputs.text = "topic = volcanoes\nlength = 'one sentence'"
    assert [c.id for c in nb.stale_cells()] == [prompt_topic.id, compare.id]
    nb.cells[1].inputs.text = "topic = volcanoes\nlength = 'two sentences'"
    assert [c.id for c in nb.stale_cells()] == [prompt_topic.id, compare.id]
    steps = list(run_all(nb, run_ctx, only_stale=True))
    assert [s.cell.id for s in steps if s.output] == [prompt_topic.id, compare.id]
    assert "Explain volcanoes in two sentences." in prompt_topic.output.answers[0].text
    assert nb.stale_cells() == []
    prompt_hello.inputs.max_tokens = 120  # its own input
    assert nb.stale_cells() == [prompt_hello]


def test_an_error_stops_run_all_in_that_cell_and_keeps_the_rest(run_ctx):
    nb = small_notebook()
    ran(nb, run_ctx)
    kept = nb.cells[4].output
    nb.cells[3].inputs.user = "Hello {{nobody}}"
    steps = ran(nb, run_ctx)
    assert [s.cell.kind for s in steps if s.output] == ["prompt", "prompt"]
    failed = nb.cells[3].output
    assert failed.status == "error"
    assert failed.error == ("The cell uses {{nobody}}, but no Variables cell above it defines nobody. "
                            "Add `nobody = ...` to a Variables cell above, or remove it.")
    assert nb.cells[4].output is kept  # not run again, not lost


def test_a_variables_cell_that_does_not_parse_stops_run_all_there(run_ctx):
    nb = small_notebook()
    nb.cells[1].inputs.text = "topic tides"
    steps = ran(nb, run_ctx)
    assert [s.output.error for s in steps if s.output] == [
        "Line 1 of the Variables cell is not `name = value` (a name is letters, digits and _, not starting with "
        "a digit): 'topic tides'."]
    assert all(c.output is None for c in nb.cells)


def test_totals_add_up_each_requests_cost(run_ctx):
    nb = demo_notebook()
    ran(nb, run_ctx)
    first, second = [c for c in nb.cells if c.kind == "prompt"]
    assert first.output.requests[0].usage.cache_write_tokens > 1_024
    assert second.output.requests[0].usage.cache_read_tokens == first.output.requests[0].usage.cache_write_tokens
    assert first.output.requests[0].cache.sentence() == "writes 1,628: first request with this prefix · as predicted"
    assert second.output.requests[0].cache.sentence().startswith("reads 1,628 tokens written ")  # the doctor's why
    requests = [r for c in nb.cells if c.output for r in c.output.requests]
    totals = nb.totals()
    assert totals.requests == len(requests) == 2 + 2 + 8 + 3
    assert totals.cost_usd == pytest.approx(sum(r.cost_usd for r in requests), abs=1e-12)
    read = second.output.requests[0]
    assert read.cost_usd == pytest.approx(float(cost_of(read.usage, SONNET).total), abs=1e-12)
    assert totals.saved_usd > 0 and totals.usage.cache_read_tokens >= read.usage.cache_read_tokens
    assert dict(totals.rows())["Requests"] == "15"
    batch = nb.cells[10].output
    assert [r.label for r in batch.requests] == ["row 1", "row 2", "row 3"]
    assert all(r.usage.cache_read_tokens == first.output.requests[0].usage.cache_write_tokens for r in batch.requests)
    assert "as a guide from Valparaíso would." in batch.batch["records"][2]["output"]


# --- editing and storage ----------------------------------------------------------------------------

def test_add_move_duplicate_collapse_delete():
    nb = Notebook("Edits")
    a = nb.add("markdown", text="a")
    c = nb.add("prompt", user="c")
    b = nb.add("variables", after=a.id, text="x = 1")
    assert [x.id for x in nb.cells] == [a.id, b.id, c.id]
    nb.move(c.id, -1)
    nb.move(a.id, -1)  # already first
    assert [x.id for x in nb.cells] == [a.id, c.id, b.id]
    twin = nb.duplicate(c.id)
    assert nb.cells[2] is twin and twin.inputs == c.inputs and twin.id != c.id and twin.inputs is not c.inputs
    nb.toggle_collapsed(b.id)
    assert b.collapsed
    nb.delete(a.id)
    assert [x.kind for x in nb.cells] == ["prompt", "prompt", "variables"]
    with pytest.raises(NotebookError, match="There is no 'poem' cell"):
        nb.add("poem")


def test_saved_and_loaded_with_outputs_as_items(run_ctx, tmp_path):
    store = Store(tmp_path / "nb.db")
    nb = small_notebook()
    ran(nb, run_ctx)
    nb.save(store)
    assert {key for key, _ in store.items("notebook", nb.id)} == {c.id for c in nb.cells}
    back = Notebook.load(store, nb.id)
    assert back.to_dict() == nb.to_dict()
    assert back.stale_cells() == []
    assert Notebook.load(store, "missing") is None


# --- .ipynb -----------------------------------------------------------------------------------------

def test_the_demo_run_exports_a_valid_ipynb_whose_code_cells_all_carry_outputs(run_ctx):
    nb = demo_notebook()
    ran(nb, run_ctx)
    text = export_ipynb(nb)
    exported = nbformat.reads(text, as_version=4)
    nbformat.validate(exported)
    code = [c for c in exported.cells if c.cell_type == "code"]
    assert len(code) == 1 + 1 + 2 + 1 + 1 + 1  # setup, variables, 2 prompts, compare, lab, batch
    assert all(c.outputs for c in code)
    intro = exported.cells[0].source
    assert intro.startswith(f"# {DEMO_TITLE}\n") and "local router" in intro and "need `orq_core`" in intro
    prompt = code[2]
    assert 'os.environ["ORQ_API_KEY"]' in code[0].source and "ORQ_BASE_URL" in code[0].source
    assert "client.chat.completions.create(" in prompt.source and "Who keeps the lighthouse?" in prompt.source
    answer = nb.cells[3].output.answers[0].text
    assert prompt.outputs[0].text == answer + "\n"
    table = prompt.outputs[1].data["text/markdown"]
    usage = nb.cells[3].output.requests[0].usage
    assert f"| cache write | {usage.cache_write_tokens:,} |" in table


def test_import_round_trips_and_refuses_foreign_or_broken_files(run_ctx):
    nb = small_notebook()
    ran(nb, run_ctx)
    text = export_ipynb(nb)
    back = import_ipynb(text)
    assert back.to_dict() == nb.to_dict()
    edited = json.loads(text)
    edited["cells"][2]["source"] = "# Edited in Jupyter"  # the first playground cell (markdown)
    assert import_ipynb(json.dumps(edited)).cells[0].inputs.text == "# Edited in Jupyter"

    foreign = nbformat.writes(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(1)")]))
    for bad, sentence in [
        (foreign, NOT_OURS),
        ("{not json", "The file is not a valid Jupyter notebook (NotJSONError): export it again, or choose the "
                      ".ipynb file itself."),
        (b"\xff\xfe\x00", "The file is not text (UTF-8), so it is not an .ipynb notebook."),
    ]:
        with pytest.raises(NotebookError) as error:
            import_ipynb(bad)
        assert str(error.value) == sentence
    wrong = json.loads(text)
    wrong["cells"][4]["metadata"]["orq_playground"]["cell"]["inputs"]["max_tokens"] = "lots"
    with pytest.raises(NotebookError) as error:
        import_ipynb(json.dumps(wrong))
    assert str(error.value) == "Cell 5 of the file (Prompt): max_tokens must be a whole number, not 'lots'."


# --- the HTML report --------------------------------------------------------------------------------

class Resources(HTMLParser):
    """Every src/href of the document's own tags (script text is data, not tags)."""

    def __init__(self):
        super().__init__()
        self.urls: list[tuple[str, str, str]] = []

    def handle_starttag(self, tag, attrs):
        self.urls += [(tag, name, value) for name, value in attrs if name in ("src", "href") and value]


def remote_resources(html: str) -> list:
    parser = Resources()
    parser.feed(html)
    return [(tag, name, url) for tag, name, url in parser.urls
            if re.match(r"\s*(https?:)?//", url) and not (tag == "a" and name == "href")]


def test_the_report_is_standalone_and_renders_markdown_with_html_off(run_ctx):
    nb = demo_notebook()
    nb.cells[0].inputs.text += "\n\n<script>alert(1)</script> ![logo](https://example.com/logo.png)"
    ran(nb, run_ctx)
    html = export_html(nb)
    assert remote_resources(html) == []
    assert "Content-Security-Policy" in html and "default-src 'none'" in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>alert(1)" not in html
    assert "[image: logo] (https://example.com/logo.png)" in html
    assert "local router: their text is synthetic" in html
    assert f"Cache doctor · {SONNET}: reads 1,628 tokens written " in html
    totals = dict(nb.totals().rows())
    assert f"<td>Cost</td><td class=\"num\">{totals['Cost']}</td>" in html
    assert html.count('class="plotly-graph-div"') == 6  # cost per cell, the lab's three, the batch's two
    assert render_markdown("**b** <b>x</b>") == "<p><strong>b</strong> &lt;b&gt;x&lt;/b&gt;</p>\n"


# --- the CLI ----------------------------------------------------------------------------------------

def test_cli_demo_and_run(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("ORQ_API_KEY", raising=False)
    monkeypatch.setenv("ORQ_LOCAL_ROUTER_TIME_SCALE", "0")
    demo = tmp_path / "demo.ipynb"
    assert main(["notebook", "demo", "--out", str(demo)]) == 0
    written = nbformat.read(demo, as_version=4)
    nbformat.validate(written)
    assert all(not c.outputs for c in written.cells if c.cell_type == "code")
    source = demo
    out, report = tmp_path / "ran.ipynb", tmp_path / "report.html"
    capsys.readouterr()
    assert main(["notebook", "run", str(source), "--out", str(out), "--html", str(report)]) == 0
    printed = capsys.readouterr()
    assert printed.out.startswith(f"wrote {out} and {report}: 15 requests, cost $")
    assert all(c.outputs for c in nbformat.read(out, as_version=4).cells if c.cell_type == "code")
    assert "plotly-graph-div" in report.read_text()


def test_cli_errors_are_one_sentence(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("ORQ_API_KEY", raising=False)
    monkeypatch.setenv("ORQ_LOCAL_ROUTER_TIME_SCALE", "0")
    foreign = tmp_path / "foreign.ipynb"
    foreign.write_text(nbformat.writes(nbformat.v4.new_notebook()))
    assert main(["notebook", "run", str(foreign), "--out", str(tmp_path / "x.ipynb")]) == 2
    assert capsys.readouterr().err == f"error: {NOT_OURS}\n"
    assert main(["notebook", "run", str(tmp_path / "none.ipynb"), "--out", str(tmp_path / "x.ipynb")]) == 2
    assert capsys.readouterr().err == (f"error: Cannot use the file {str(tmp_path / 'none.ipynb')!r}: No such file or "
                                       "directory. Check the path and try again.\n")
    nb = Notebook("Broken")
    nb.add("prompt", user="Hi {{who}}")
    source = tmp_path / "broken.ipynb"
    source.write_text(export_ipynb(nb))
    assert main(["notebook", "run", str(source), "--out", str(tmp_path / "y.ipynb")]) == 1
    assert capsys.readouterr().err.splitlines()[-1] == (
        "error: cell 1 (Prompt) failed: The cell uses {{who}}, but no Variables cell above it defines who. "
        "Add `who = ...` to a Variables cell above, or remove it.")
    assert (tmp_path / "y.ipynb").exists()
    demo = tmp_path / "demo.ipynb"
    assert main(["notebook", "demo", "--out", str(demo)]) == 0
    assert main(["notebook", "run", str(demo), "--out", str(tmp_path / "z.ipynb"), "--max-spend", "0.001"]) == 1
    last = capsys.readouterr().err.splitlines()[-1]
    assert last.startswith("error: cell 4 (Prompt) failed: Not sent: this request could cost up to $0.0")
    assert last.endswith("and this run has spent $0 of its $0.001 budget. Lower max_tokens, shorten the prompt, "
                         "or raise --max-spend.")


def test_run_cell_reports_a_router_error_in_the_cell(run_ctx):
    nb = Notebook("Err")
    cell = nb.add("prompt", user="Hi", model="anthropic/claude-nonexistent-1")
    output = run_cell(nb, cell.id, run_ctx)
    assert output.status == "error" and "claude-nonexistent-1" in output.error


class ServerKilled(BaseException):
    """Stands for SIGKILL: nothing after it runs, no `finally` saves anything."""


@pytest.mark.parametrize("kind", ["batch", "lab"])
def test_a_long_cell_saves_as_it_goes_and_a_killed_run_reopens_interrupted(kind, client, tmp_path):
    store = Store(tmp_path / "nb.db")
    nb = Notebook("Long cells")
    if kind == "batch":
        cell = nb.add("batch", template="Tell me about {{city}}.", max_tokens=50, concurrency=1,
                      table="city\n" + "\n".join(f"Town {n}" for n in range(1, 9)), targets=(SONNET,))
    else:
        cell = nb.add("lab", preset="book", requests=4, context_tokens=2_000, max_tokens=50)  # 2 arms x 4
    nb.save(store)
    ticks = iter(range(1_000))
    saves = []

    def save_then_die_at_the_third(c, so_far) -> None:
        saves.append(len(so_far.requests))
        nb.save_output(store, c, so_far)
        if len(saves) == 3:
            raise ServerKilled

    ctx = RunContext(client, local=True, clock=lambda: float(next(ticks)), partial_every_s=2.0,
                     save_partial=save_then_die_at_the_third)
    with pytest.raises(ServerKilled):
        run_cell(nb, cell.id, ctx)

    assert saves == [1, 3, 5]  # the first request, then at most every 2 s of the (fake) clock
    back = Notebook.load(store, nb.id)
    kept = back.cell(cell.id).output
    assert kept.status == "error" and len(kept.requests) == 5 and all(r.usage.output_tokens for r in kept.requests)
    assert kept.error == ("Interrupted after 5 of 8 requests: the server stopped while this cell ran. What finished "
                          "is shown; run the cell again for the rest.")
    assert back.stale_cells() == [back.cell(cell.id)]  # "Run stale" runs it again

    steps = list(run_all(back, RunContext(client, local=True, save_partial=lambda c, o: back.save_output(store, c, o))))
    assert [s.output.status for s in steps if s.output] == ["ok"]
    back.save_output(store, back.cell(cell.id))
    reopened = Notebook.load(store, nb.id)
    done = reopened.cell(cell.id).output
    assert done.ok and done.error is None and len(done.requests) == 8 and reopened.stale_cells() == []
