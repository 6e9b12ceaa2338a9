"""Drives Open WebUI through its own HTTP API, as its users' browsers do, against a Hearth gateway it knows as an
OpenAI connection (GATEWAY/v1) and an Ollama connection (GATEWAY): sign up the first user (its admin), verify both
connections, give the OpenAI one a prefix so both lists survive, list models, chat through each connection streamed
and not, check Ollama's running-model list, store and find a document with embeddings from the gateway (its document
search), and one long non-streamed answer (what its background tasks ask).

Usage: open_webui_client.py GATEWAY_URL OPEN_WEBUI_URL MODEL. Prints one line per step, then OK."""
import json
import sys
import time

import httpx

GATEWAY, WEBUI, MODEL = sys.argv[1], sys.argv[2], sys.argv[3]
client = httpx.Client(timeout=600)


def step(name):
    print(f"STEP {name}", flush=True)


def check(response, status=200):
    assert response.status_code == status, f"{response.request.method} {response.request.url}: {response.status_code} {response.text[:500]}"
    return response


step("Open WebUI starts")
deadline = time.monotonic() + 240
while True:
    try:
        if client.get(WEBUI + "/health").status_code == 200:
            break
    except httpx.TransportError:
        pass
    assert time.monotonic() < deadline, "Open WebUI did not start within 240 s"
    time.sleep(0.5)

step("sign up the first user, who is the admin")
user = check(client.post(WEBUI + "/api/v1/auths/signup", json={"name": "Admin", "email": "admin@example.org", "password": "correct horse battery staple"})).json()
assert user["role"] == "admin", user
auth = {"Authorization": f"Bearer {user['token']}"}

step("both connections verify")
listed = check(client.post(WEBUI + "/openai/verify", headers=auth, json={"url": GATEWAY + "/v1", "key": "unused"})).json()
assert MODEL in [model["id"] for model in listed["data"]], listed
version = check(client.post(WEBUI + "/ollama/verify", headers=auth, json={"url": GATEWAY})).json()
assert version.get("version"), version

step("a prefix on the OpenAI connection keeps both model lists")
config = check(client.get(WEBUI + "/openai/config", headers=auth)).json()
config["OPENAI_API_CONFIGS"] = {"0": {"prefix_id": "hearth", "enable": True}}
check(client.post(WEBUI + "/openai/config/update", headers=auth, json=config))
models = {model["id"]: model.get("owned_by") for model in check(client.get(WEBUI + "/api/models", headers=auth)).json()["data"]}
through_openai, through_ollama = f"hearth.{MODEL}", MODEL
assert models.get(through_openai) == "openai" and models.get(through_ollama) == "ollama", models

step("Ollama's running models show it loaded")
running = check(client.get(WEBUI + "/ollama/api/ps", headers=auth)).json()["models"]
entry = next(model for model in running if model["name"] == MODEL)
assert entry["expires_at"] and entry["size_vram"] == 0, entry

for model in [through_openai, through_ollama]:
    step(f"chat through {model}, whole answer")
    question = {"model": model, "messages": [{"role": "user", "content": "Say hello to a friend."}], "max_tokens": 24}
    answer = check(client.post(WEBUI + "/api/chat/completions", headers=auth, json={**question, "stream": False})).json()
    text = answer["choices"][0]["message"]["content"]
    assert text.strip(), answer

    step(f"chat through {model}, streamed")
    pieces, done = [], False
    with client.stream("POST", WEBUI + "/api/chat/completions", headers=auth, json={**question, "stream": True}) as response:
        check(response)
        assert response.headers["content-type"].startswith("text/event-stream"), response.headers
        for line in response.iter_lines():
            if not line.startswith("data: "):
                continue
            if line == "data: [DONE]":
                done = True
                continue
            event = json.loads(line[6:])
            assert "error" not in event, event
            for choice in event.get("choices", []):
                pieces.append((choice.get("delta") or {}).get("content") or "")
    assert "".join(pieces).strip(), "no streamed text"
    assert len([p for p in pieces if p]) > 1, "the answer came in one piece"
    assert done or model == through_ollama, "the OpenAI stream did not end with [DONE]"

step("document search embeds through the gateway")
embedding = check(client.get(WEBUI + "/api/v1/retrieval/embedding", headers=auth)).json()
assert embedding["RAG_EMBEDDING_ENGINE"] == "openai" and embedding["RAG_EMBEDDING_MODEL"] == MODEL, embedding
text = "Hearth is community infrastructure for running open language models together on volunteers' machines."
stored = check(client.post(WEBUI + "/api/v1/retrieval/process/text", headers=auth, json={"name": "hearth.txt", "content": text})).json()
found = check(client.post(
    WEBUI + "/api/v1/retrieval/query/doc",
    headers=auth,
    json={"collection_name": stored["collection_name"], "query": "What is Hearth?", "k": 1},
)).json()
assert found["documents"][0] == [text], found

step("a long whole answer, as Open WebUI's background tasks ask")
started = time.monotonic()
long = check(client.post(
    WEBUI + "/api/chat/completions",
    headers=auth,
    json={"model": through_openai, "messages": [{"role": "user", "content": "Tell a long story."}], "max_tokens": 1000, "ignore_eos": True, "stream": False},
)).json()
assert long["usage"]["completion_tokens"] == 1000, long["usage"]
print(f"long answer: 1000 tokens in {time.monotonic() - started:.1f} s", flush=True)

print("OK", flush=True)
