import ast
import json
import shlex

import pytest

from orq_core.codegen import SHORTENED_NOTE, SNIPPETS, to_curl, to_python, to_typescript
from orq_core.request import (
    ChatParams, abbreviate_payload, build_payload, image_part_from_bytes, system_message, text_part, user_message,
)

BASE_URL = "https://api.orq.ai/v2/router/"
NASTY = "it's $(rm -rf ~) `whoami` \\n \"quoted\" ${HOME} ! 'x' \u00e9\u2028 end"


def payload(stream: bool = True) -> dict:
    params = ChatParams(model="anthropic/claude-sonnet-4-5-20250929", max_tokens=2000, top_k=40, stop=("'END'",),
                        retry_count=2, response_cache_ttl=60, stream=stream)
    return build_payload(params, [system_message(NASTY, "1h"),
                                  user_message([text_part("look"), image_part_from_bytes(b"\x00" * 300, "image/png")])])


def curl_args(snippet: str) -> list[str]:
    return shlex.split(snippet, comments=True)


def curl_body(snippet: str) -> dict:
    args = curl_args(snippet)
    return json.loads(args[args.index("-d") + 1])


def python_literal(code: str, name: str):
    for node in ast.parse(code).body:
        if isinstance(node, ast.Assign) and node.targets[0].id == name:
            return ast.literal_eval(node.value)
    raise AssertionError(f"no {name} = ... in the snippet")


def ts_body(code: str) -> dict:
    start = code.index("const body = ") + len("const body = ")
    return json.loads(code[start:code.index(";\n\nasync function main()")])


@pytest.mark.parametrize("stream", [True, False])
def test_curl_round_trips_through_the_shell_parser(stream):
    snippet = to_curl(payload(stream), BASE_URL)
    args = curl_args(snippet)
    assert curl_body(snippet) == payload(stream)
    assert args[:5] == ["curl", "-sS", "-X", "POST", "https://api.orq.ai/v2/router/chat/completions"]
    assert "Authorization: Bearer $ORQ_API_KEY" in args  # expanded by the shell that runs it, not by us
    assert ("--no-buffer" in args) is stream


def test_curl_quotes_an_odd_base_url():
    args = curl_args(to_curl(payload(), "http://127.0.0.1:8787/v2/router?a=1&b='2'"))
    assert args[4] == "http://127.0.0.1:8787/v2/router?a=1&b='2'/chat/completions"


def test_python_snippet_compiles_and_carries_the_payload():
    streaming = to_python(payload(True), BASE_URL)
    compile(streaming, "snippet.py", "exec")
    assert python_literal(streaming, "payload") == payload(True)
    assert python_literal(streaming, "URL") == "https://api.orq.ai/v2/router/chat/completions"
    assert 'api_key = os.environ["ORQ_API_KEY"]' in streaming
    assert 'client.stream("POST", URL, json=payload)' in streaming
    assert 'if data == "[DONE]":' in streaming

    blocking = to_python(payload(False), BASE_URL)
    compile(blocking, "snippet.py", "exec")
    assert python_literal(blocking, "payload") == payload(False)
    assert "httpx.post(URL, headers=headers, json=payload" in blocking
    assert "client.stream" not in blocking


def test_typescript_snippet_holds_the_json_and_reads_the_key_from_env():
    streaming = to_typescript(payload(True), BASE_URL)
    assert ts_body(streaming) == payload(True)
    assert "apiKey: process.env.ORQ_API_KEY," in streaming
    assert 'baseURL: "https://api.orq.ai/v2/router",' in streaming
    assert "as unknown as OpenAI.Chat.ChatCompletionCreateParamsStreaming" in streaming
    assert "for await (const chunk of stream)" in streaming
    blocking = to_typescript(payload(False), BASE_URL)
    assert ts_body(blocking) == payload(False)
    assert "ChatCompletionCreateParamsNonStreaming" in blocking


def test_abbreviated_snippets_say_so_and_show_short_data():
    full, short = payload(), abbreviate_payload(payload())
    curl = to_curl(full, BASE_URL, abbreviate=True)
    assert curl.startswith(f"# {SHORTENED_NOTE}\n")
    assert curl_body(curl) == short
    python = to_python(full, BASE_URL, abbreviate=True)
    assert python.startswith(f"# {SHORTENED_NOTE}\n")
    assert python_literal(python, "payload") == short
    typescript = to_typescript(full, BASE_URL, abbreviate=True)
    assert typescript.startswith(f"// {SHORTENED_NOTE}\n")
    assert ts_body(typescript) == short
    assert "…(300 bytes)" in curl and "…(300 bytes)" in python and "…(300 bytes)" in typescript
    assert SHORTENED_NOTE not in to_curl(full, BASE_URL)


def test_no_snippet_can_hold_a_key(monkeypatch):
    monkeypatch.setenv("ORQ_API_KEY", "sk-live-very-secret")
    for make, _language in SNIPPETS.values():
        code = make(payload(), BASE_URL)
        assert "sk-live-very-secret" not in code
        assert "ORQ_API_KEY" in code
        with pytest.raises(TypeError):
            make(payload(), BASE_URL, api_key="sk-live-very-secret")
