#!/usr/bin/env python3
"""Reference fixtures for the segpipe tokenizer, produced by Hugging Face transformers/tokenizers.

Writes into OUT_DIR (default: tests/tokenizer/fixtures):
  chat_renderings.json  [{messages, tools?, add_generation_prompt, enable_thinking, text}] where text is
                        AutoTokenizer.apply_chat_template(..., tokenize=False) of the vendored tokenizer
  corpus_hf_ids.json    {"versions": {...}, "ids": [[...], ...], "decoded": ["...", ...]} for every string of
                        tests/tokenizer/fixtures/corpus.json, encoded with tokenizers.Tokenizer (no special
                        tokens added) and decoded back with skip_special_tokens=False

Run from the repository root (needs transformers, tokenizers and jinja2; no network):
  python3 tools/tokenizer/make_fixtures.py [OUT_DIR]
The conversations below are inputs only; every expected text comes from the reference.
"""
import json
import os
import sys

TOKENIZER_DIR = "orchestrator/tokenizer/qwen3"
CORPUS = "tests/tokenizer/fixtures/corpus.json"

U = lambda c: {"role": "user", "content": c}
A = lambda c, **kw: {"role": "assistant", "content": c, **kw}
S = lambda c: {"role": "system", "content": c}
T = lambda c: {"role": "tool", "content": c}

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "Città / 城市"}},
                       "required": ["city"]},
    },
}
CALC_TOOL = {"type": "function", "function": {"name": "add", "description": "Add two numbers",
                                              "parameters": {"type": "object", "properties": {
                                                  "a": {"type": "number"}, "b": {"type": "number"}}}}}


def call(name, args):
    return {"type": "function", "function": {"name": name, "arguments": args}}


# (messages, tools or None, add_generation_prompt, enable_thinking)
CASES = [
    ([U("Hello!")], None, True, True),
    ([U("Hello!")], None, True, False),
    ([U("Hello!")], None, False, True),
    ([U("Hello!")], None, False, False),
    ([S("You are a helpful assistant."), U("What is 2+2?")], None, True, True),
    ([S("You are a helpful assistant."), U("What is 2+2?")], None, True, False),
    ([S("Be brief."), U("Hi"), A("Hello! How can I help?"), U("Tell me a joke.")], None, True, True),
    ([U("Q1"), A("<think>\nLet me think about Q1.\n</think>\n\nA1"), U("Q2")], None, True, True),
    ([U("Q1"), A("<think>\nLet me think about Q1.\n</think>\n\nA1"), U("Q2")], None, True, False),
    ([U("Q1"), A("<think>\nreasoning one\n</think>\n\nA1")], None, False, True),
    ([U("Q1"), A("<think>\nreasoning one\n</think>\n\nA1")], None, True, True),
    ([U("Q1"), A("plain answer without think")], None, False, True),
    ([U("Q1"), A("answer", reasoning_content="explicit reasoning\n")], None, False, True),
    ([U("Q1"), A("answer", reasoning_content="old reasoning"), U("Q2"), A("second", reasoning_content="new")],
     None, False, True),
    ([U("Q1"), A("only a closing tag</think>\n\nthe rest")], None, False, True),
    ([U("Q1"), A("<think>a</think>b</think>\n\nc")], None, False, True),
    ([U("Q1"), A("\n\n\nleading newlines\n\n")], None, False, True),
    ([U("")], None, True, True),
    ([U("Q"), A("")], None, False, True),
    ([S(""), U("x")], None, True, False),
    ([S("Système: répondez en français 🇫🇷"), U("你好，世界！こんにちは 🌏 مرحبا שלום"),
      A("<think>\nคิดก่อน 🤔\n</think>\n\nÇa va très bien 😀")], None, True, True),
    ([U("first"), S("a system message in the middle"), U("second")], None, True, True),
    ([U("What's the weather in Paris?"),
      A("", tool_calls=[call("get_weather", {"city": "Paris"})]),
      T("{\"temp\": 21, \"sky\": \"clear\"}"),
      A("<think>\nThe tool says 21.\n</think>\n\nIt is 21°C and clear.")], [WEATHER_TOOL], False, True),
    ([U("Add 2 and 3, then the weather in Oslo."),
      A("<think>\nTwo calls needed.\n</think>\n\nCalling tools.",
        tool_calls=[call("add", "{\"a\": 2, \"b\": 3}"), call("get_weather", {"city": "Oslo"})]),
      T("5"), T("{\"temp\": -3}")], [WEATHER_TOOL, CALC_TOOL], True, True),
    ([S("You can call tools."), U("Weather in Tōkyō?")], [WEATHER_TOOL], True, True),
    ([S("You can call tools."), U("Weather in Tōkyō?")], [WEATHER_TOOL], True, False),
    ([U("<tool_response>\nfake response\n</tool_response>")], None, True, True),
    ([U("real question"), A("<think>\nr1\n</think>\n\nanswer1", tool_calls=[call("add", {"a": 1, "b": 2})]),
      U("<tool_response>\n3\n</tool_response>"), A("<think>\nr2\n</think>\n\nanswer2")], None, False, True),
    ([U("q"), A("<think>\nr1\n</think>\n\na1", tool_calls=[call("add", {"a": 1, "b": 2})]), T("3"),
      A("<think>\nr2\n</think>\n\na2", tool_calls=[call("add", {"a": 3, "b": 4})]), T("7"),
      A("done")], None, False, True),
    ([S("only a system prompt")], None, True, True),
    ([A("an assistant speaks first")], None, True, True),
    ([U("text with <|im_end|> and <|im_start|> inside"), A("ok <|endoftext|>")], None, True, True),
    ([U("  spaced  \n\n  content \t"), A("\n<think>\n\n  padded reasoning  \n\n</think>\n\n\n  padded answer  ")],
     None, False, True),
    ([U("q1"), A("a1", reasoning_content=""), U("q2"), A("a2", reasoning_content="")], None, False, True),
    ([U("q1"), A("a1", reasoning_content=None), U("q2")], None, True, False),
    ([U("q"), A("", tool_calls=[call("add", {"a": 1.5, "b": [1, "x", None, True]})])], None, False, True),
]


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else "tests/tokenizer/fixtures"
    os.makedirs(out_dir, exist_ok=True)
    import tokenizers
    import transformers
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(TOKENIZER_DIR)
    renderings = []
    for messages, tools, gen, think in CASES:
        kwargs = {"tokenize": False, "add_generation_prompt": gen, "enable_thinking": think}
        if tools is not None:
            kwargs["tools"] = tools
        text = tok.apply_chat_template(messages, **kwargs)
        if not isinstance(text, str):
            raise SystemExit(f"apply_chat_template returned {type(text)}, expected str")
        entry = {"messages": messages, "add_generation_prompt": gen, "enable_thinking": think, "text": text}
        if tools is not None:
            entry["tools"] = tools
        renderings.append(entry)
    with open(os.path.join(out_dir, "chat_renderings.json"), "w", encoding="utf-8") as f:
        json.dump(renderings, f, ensure_ascii=False, indent=1)
        f.write("\n")

    with open(CORPUS, encoding="utf-8") as f:
        corpus = json.load(f)
    raw = tokenizers.Tokenizer.from_file(os.path.join(TOKENIZER_DIR, "tokenizer.json"))
    ids = [e.ids for e in raw.encode_batch(corpus, add_special_tokens=False)]
    decoded = raw.decode_batch(ids, skip_special_tokens=False)
    # Cross-check: the transformers wrapper must agree with the raw tokenizer it wraps.
    auto_ids = tok(corpus, add_special_tokens=False)["input_ids"]
    wrapper_mismatches = sum(1 for a, b in zip(ids, auto_ids) if a != b)
    result = {
        "versions": {"tokenizers": tokenizers.__version__, "transformers": transformers.__version__},
        "corpus_size": len(corpus),
        "wrapper_mismatches": wrapper_mismatches,
        "ids": ids,
        "decoded": decoded,
    }
    with open(os.path.join(out_dir, "corpus_hf_ids.json"), "w", encoding="utf-8") as f:
        json.dump(result, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    print(f"{len(renderings)} renderings, {len(corpus)} corpus strings, "
          f"wrapper mismatches {wrapper_mismatches}, versions {result['versions']}")


if __name__ == "__main__":
    main()
