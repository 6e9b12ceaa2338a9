"""A scripted conversation through Hearth's gateway with the official `openai` and `ollama` Python clients.

Usage: python sdk_conversation.py BASE_URL MODEL
Exits non-zero with a message on the first thing that does not behave like the real APIs.
"""

import base64
import sys

import ollama
import openai

base, model = sys.argv[1], sys.argv[2]

client = openai.OpenAI(base_url=base + "/v1", api_key="not-needed")
messages = [{"role": "user", "content": "Say hello in one short sentence."}]

reply = client.chat.completions.create(model=model, messages=messages, max_tokens=12, temperature=0)
first = reply.choices[0].message.content
assert first, f"empty answer: {reply}"
assert reply.usage.completion_tokens > 0 and reply.usage.prompt_tokens > 0, reply.usage

messages += [{"role": "assistant", "content": first}, {"role": "user", "content": "And once more."}]
text, usage = "", None
for chunk in client.chat.completions.create(
    model=model, messages=messages, max_tokens=12, stream=True, stream_options={"include_usage": True}
):
    if chunk.choices:
        text += chunk.choices[0].delta.content or ""
    if chunk.usage:
        usage = chunk.usage
assert text, "streamed answer is empty"
assert usage is not None and usage.completion_tokens > 0, f"no usage on the stream: {usage}"

# Tools, streamed as agent frameworks stream them: the engine answers (a call or text), whatever SmolLM2 makes of it.
tools = [{"type": "function", "function": {"name": "get_weather", "description": "The weather in a city",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
finish, said = None, ""
for chunk in client.chat.completions.create(
    model=model, messages=[{"role": "user", "content": "What is the weather in Paris?"}], tools=tools, max_tokens=24, stream=True
):
    if chunk.choices:
        delta = chunk.choices[0].delta
        said += (delta.content or "") + "".join((call.function.arguments or "") for call in delta.tool_calls or [])
        finish = chunk.choices[0].finish_reason or finish
assert said and finish in ("stop", "length", "tool_calls"), f"streamed tools answer: {said!r}, finish {finish}"

completion = client.completions.create(model=model, prompt="The sky is", max_tokens=5)
assert completion.choices[0].text is not None and completion.usage.completion_tokens > 0, completion

assert model in [m.id for m in client.models.list()], "model missing from /v1/models"

# Embeddings (the node serves its model's own, `--embeddings`). The SDK asks for base64 by default and decodes it;
# asked for explicitly, base64 comes back as the string: 576 float32s.
vectors = client.embeddings.create(model=model, input=["a cat", "a dog"])
assert [item.index for item in vectors.data] == [0, 1] and len(vectors.data[0].embedding) == 576, vectors.data[0].index
assert vectors.usage.prompt_tokens > 0, vectors.usage
packed = client.embeddings.create(model=model, input="a cat", encoding_format="base64")
assert len(base64.b64decode(packed.data[0].embedding)) == 576 * 4, "base64 embeddings are not 576 float32s"

try:
    client.chat.completions.create(model=model + "-nope", messages=messages)
    sys.exit("an unknown model was accepted")
except openai.NotFoundError as error:
    assert error.body["code"] == "model_not_found", error.body

try:
    client.chat.completions.create(model=model, messages=[])
    sys.exit("empty messages were accepted")
except openai.BadRequestError:
    pass

local = ollama.Client(host=base)
answer = local.chat(model=model, messages=[{"role": "user", "content": "Hi"}], stream=False, options={"num_predict": 8})
assert answer.message.content and answer.done and answer.eval_count > 0, answer

parts = list(local.chat(model=model, messages=[{"role": "user", "content": "Hi"}], stream=True, options={"num_predict": 8}))
assert parts[-1].done and parts[-1].eval_count > 0, parts[-1]
assert "".join(part.message.content for part in parts), "streamed Ollama answer is empty"

# Ollama's chat with tools (the gateway streams it from the engine either way).
tooled = local.chat(model=model, messages=[{"role": "user", "content": "What is the weather in Paris?"}], tools=tools,
                    stream=False, options={"num_predict": 24})
assert tooled.done and (tooled.message.content or tooled.message.tool_calls), tooled

generated = local.generate(model=model, prompt="Hello", options={"num_predict": 6})
assert generated.response and generated.done, generated

assert any(entry.model == model for entry in local.list().models), "model missing from /api/tags"
embedded = local.embed(model=model, input=["a cat", "a dog"])
assert len(embedded.embeddings) == 2 and len(embedded.embeddings[0]) == 576, len(embedded.embeddings)
assert local.show(model).details.format == "gguf"

print("OK")
