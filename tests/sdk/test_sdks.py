"""The official OpenAI and Anthropic Python SDKs, unchanged, against the gateway.

Run by .ci/run against `switchboard serve --demo`:
    SWITCHBOARD_URL=http://127.0.0.1:PORT python tests/sdk/test_sdks.py
Prints one line per check and a closing "N passed, M failed" line; exits non-zero on failure.
"""

import os
import sys
import traceback

import anthropic
import openai

BASE = os.environ.get("SWITCHBOARD_URL", "http://127.0.0.1:8080")
oa = openai.OpenAI(base_url=f"{BASE}/v1", api_key="demo", max_retries=2)
an = anthropic.Anthropic(base_url=BASE, api_key="demo", max_retries=2)


def openai_chat():
    raw = oa.chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "Say this is a test"}],
    )
    completion = raw.parse()
    assert completion.choices[0].message.content == "This is a test.", completion
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.completion_tokens > 0
    assert raw.headers["x-switchboard-status"] in ("ok", "degraded")
    assert len(raw.headers["x-switchboard-trace-id"]) == 32


def openai_stream():
    stream = oa.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "Say this is a test"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    text, usage = "", None
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
        if chunk.usage:
            usage = chunk.usage
    assert text == "This is a test.", text
    assert usage is not None and usage.completion_tokens > 0


def openai_error():
    try:
        oa.chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "x"}])
    except openai.NotFoundError as e:
        assert e.status_code == 404
        assert e.code == "model_not_found", e.code
        return
    raise AssertionError("expected NotFoundError")


def anthropic_message():
    message = an.messages.create(
        model="claude-haiku-4-5",
        max_tokens=256,
        messages=[{"role": "user", "content": "Say this is a test"}],
    )
    assert message.content[0].text == "This is a test.", message
    assert message.stop_reason == "end_turn"
    assert message.usage.output_tokens > 0


def anthropic_stream():
    with an.messages.stream(
        model="claude-haiku-4-5",
        max_tokens=256,
        messages=[{"role": "user", "content": "Say this is a test"}],
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "This is a test.", text
    assert final.usage.output_tokens > 0


def anthropic_error():
    try:
        an.messages.create(model="claude-0", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    except anthropic.NotFoundError as e:
        assert e.status_code == 404
        assert e.body["error"]["type"] == "not_found_error", e.body
        return
    raise AssertionError("expected NotFoundError")


CHECKS = [openai_chat, openai_stream, openai_error, anthropic_message, anthropic_stream, anthropic_error]

if __name__ == "__main__":
    passed = failed = 0
    for check in CHECKS:
        try:
            check()
            passed += 1
            print(f"ok   {check.__name__}")
        except Exception:
            failed += 1
            print(f"FAIL {check.__name__}")
            traceback.print_exc()
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)
