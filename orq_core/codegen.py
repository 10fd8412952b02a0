"""curl / Python / TypeScript snippets that send exactly the request the playground sent.

There is deliberately no API-key parameter: every snippet reads the key from the environment
(``$ORQ_API_KEY``, ``os.environ["ORQ_API_KEY"]``, ``process.env.ORQ_API_KEY``), so a snippet
can be copied, shared or saved without leaking one.
"""

from __future__ import annotations

import json
import shlex
from typing import Callable

from .request import abbreviate_payload

SHORTENED_NOTE = ("base64 data was shortened for display; paste the real file's data URL "
                  "before running this")


def _endpoint(base_url: str) -> str:
    return f"{base_url.rstrip('/')}/chat/completions"


def _shown(payload: dict, abbreviate: bool) -> dict:
    return abbreviate_payload(payload) if abbreviate else payload


def _note(comment: str, abbreviate: bool) -> str:
    return f"{comment} {SHORTENED_NOTE}\n" if abbreviate else ""


def _json(payload: dict) -> str:
    return json.dumps(payload, indent=2, ensure_ascii=False)


def _single_quoted(text: str) -> str:
    """Shell single quotes keep everything literal; a quote inside becomes '\\''."""
    return "'" + text.replace("'", "'\\''") + "'"


def to_curl(payload: dict, base_url: str, *, abbreviate: bool = False) -> str:
    lines = [
        f"curl -sS -X POST {shlex.quote(_endpoint(base_url))}",
        '  -H "Authorization: Bearer $ORQ_API_KEY"',
        "  -H 'Content-Type: application/json'",
    ]
    if payload.get("stream"):
        lines.append("  --no-buffer")
    lines.append(f"  -d {_single_quoted(_json(_shown(payload, abbreviate)))}")
    return _note("#", abbreviate) + " \\\n".join(lines) + "\n"


_PY_STREAM = '''\
with httpx.Client(headers=headers, timeout=httpx.Timeout(60.0, connect=5.0)) as client:
    with client.stream("POST", URL, json=payload) as response:
        if response.is_error:
            response.read()
            raise SystemExit(f"HTTP {response.status_code}: {response.text}")
        for line in response.iter_lines():
            if not line.startswith("data:"):
                continue
            data = line[len("data:"):].strip()
            if data == "[DONE]":
                break
            chunk = json.loads(data)
            if "error" in chunk:
                raise SystemExit(f"stream error: {chunk['error']}")
            for choice in chunk.get("choices") or []:
                delta = choice.get("delta") or {}
                print(delta.get("reasoning") or "", delta.get("content") or "", sep="", end="", flush=True)
            if chunk.get("usage"):
                print("\\n\\nusage:", json.dumps(chunk["usage"]))
'''

_PY_CREATE = '''\
response = httpx.post(URL, headers=headers, json=payload, timeout=httpx.Timeout(60.0, connect=5.0))
if response.is_error:
    raise SystemExit(f"HTTP {response.status_code}: {response.text}")
body = response.json()
message = body["choices"][0]["message"]
if message.get("reasoning"):
    print("[thinking]", message["reasoning"], sep="\\n", end="\\n\\n")
print(message.get("content") or "")
for call in message.get("tool_calls") or []:
    print("tool call:", call["function"]["name"], call["function"]["arguments"])
print("\\nusage:", json.dumps(body.get("usage")))
'''


def _python_literal(value, level: int = 0) -> str:
    """Like json.dumps(indent=4) but Python (True/None); short containers stay on one line.
    Unlike pprint, long strings (base64) are never cut into pieces across lines."""
    flat = repr(value)
    if not isinstance(value, (dict, list)) or not value or len(flat) + 4 * level <= 96:
        return flat
    pad = "    " * (level + 1)
    if isinstance(value, dict):
        lines = [f"{pad}{key!r}: {_python_literal(item, level + 1)}," for key, item in value.items()]
        return "{\n" + "\n".join(lines) + "\n" + "    " * level + "}"
    lines = [f"{pad}{_python_literal(item, level + 1)}," for item in value]
    return "[\n" + "\n".join(lines) + "\n" + "    " * level + "]"


def to_python(payload: dict, base_url: str, *, abbreviate: bool = False) -> str:
    shown = _python_literal(_shown(payload, abbreviate))
    return (
        _note("#", abbreviate)
        + "import json\nimport os\n\nimport httpx\n\n"
        + f"URL = {_endpoint(base_url)!r}\n"
        + 'api_key = os.environ["ORQ_API_KEY"]\n'
        + 'headers = {"Authorization": f"Bearer {api_key}"}\n\n'
        + f"payload = {shown}\n\n"
        + (_PY_STREAM if payload.get("stream") else _PY_CREATE)
    )


_TS_STREAM = '''\
  const stream = await client.chat.completions.create(
    body as unknown as OpenAI.Chat.ChatCompletionCreateParamsStreaming,
  );
  for await (const chunk of stream) {
    // reasoning is Orq's field for Claude's thinking; it is not in the OpenAI types.
    const delta = (chunk.choices[0]?.delta ?? {}) as { content?: string | null; reasoning?: string };
    process.stdout.write(delta.reasoning ?? "");
    process.stdout.write(delta.content ?? "");
    if (chunk.usage) console.log("\\n\\nusage:", JSON.stringify(chunk.usage));
  }
'''

_TS_CREATE = '''\
  const completion = await client.chat.completions.create(
    body as unknown as OpenAI.Chat.ChatCompletionCreateParamsNonStreaming,
  );
  const message = completion.choices[0].message;
  console.log(message.content);
  for (const call of message.tool_calls ?? []) console.log("tool call:", JSON.stringify(call));
  console.log("usage:", JSON.stringify(completion.usage));
'''


def to_typescript(payload: dict, base_url: str, *, abbreviate: bool = False) -> str:
    return (
        _note("//", abbreviate)
        + 'import OpenAI from "openai";\n\n'
        + "const client = new OpenAI({\n"
        + "  apiKey: process.env.ORQ_API_KEY,\n"
        + f"  baseURL: {json.dumps(base_url.rstrip('/'))},\n"
        + "});\n\n"
        + f"const body = {_json(_shown(payload, abbreviate))};\n\n"
        + "async function main() {\n"
        + "  // Cast: the SDK sends the body as it is, so Orq's and Claude's extra keys (orq, thinking,\n"
        + "  // top_k, cache_control) reach the router although the OpenAI types do not list them.\n"
        + (_TS_STREAM if payload.get("stream") else _TS_CREATE)
        + "}\n\nmain();\n"
    )


# label -> (snippet function, language name for syntax highlighting)
SNIPPETS: dict[str, tuple[Callable[..., str], str]] = {
    "curl": (to_curl, "bash"),
    "Python": (to_python, "python"),
    "TypeScript": (to_typescript, "typescript"),
}
