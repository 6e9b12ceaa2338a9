"""Drives Hearth's web pages in a real headless Chromium (Selenium, Debian's chromium-driver) against a running gateway
and node, as a person would: chat, stop, a refusal, hostile model output, the network page and its ledger check, the
account page with a key made in the browser and with a pasted token (revoking a device), and the node dashboard's
pause.

Usage: browser_pages.py GATEWAY_URL DASHBOARD_URL ENGINE_PORT SCREENSHOT_DIR ACCOUNT_TOKEN
ACCOUNT_TOKEN is from `hearth login` for the account that certified the node named own-server.
Prints one line per step, `STOPPED request=<id>` for the Swift side to check in the gateway's records, then OK.

Or: browser_pages.py pool GATEWAY_URL SCREENSHOT_DIR, against a gateway whose only nodes lend memory to pools: the
chat page offers the pooled model, says it is warming when first asked, then answers. Prints `POOLED request=<id>`.

Every wait is bounded; a failure prints the step, the page's console and raises."""
import json
import sys
import time
import urllib.error
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

POOL = sys.argv[1] == "pool"
if POOL:
    GATEWAY, SHOTS = sys.argv[2:4]
else:
    GATEWAY, DASHBOARD, ENGINE_PORT, SHOTS, ACCOUNT_TOKEN = sys.argv[1:6]


def http(method, url, body=None, headers=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def poll(description, check, timeout=60, interval=0.1):
    """Calls check() until it returns something truthy, at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {description}")
        time.sleep(interval)


def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900", "--lang=en-US"]:
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


driver = browser()
# The pages redraw their tables as data comes, so an element found a moment ago may be gone: waits try again, and
# `text`/`attribute` read the current element in one step.
wait = lambda seconds=60: WebDriverWait(driver, seconds, poll_frequency=0.05, ignored_exceptions=[StaleElementReferenceException])
find = lambda selector: driver.find_element(By.CSS_SELECTOR, selector)
finds = lambda selector: driver.find_elements(By.CSS_SELECTOR, selector)
text = lambda selector: driver.execute_script("const e = document.querySelector(arguments[0]); return e ? e.innerText : null", selector)
attribute = lambda selector, name: driver.execute_script("const e = document.querySelector(arguments[0]); return e ? e.getAttribute(arguments[1]) : null", selector, name)


def step(name):
    print(f"STEP {name}", flush=True)


def shot(name):
    driver.save_screenshot(f"{SHOTS}/{name}.png")


def console_errors():
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def answers():
    """The answers on the page, read in one go (the page redraws them as tokens come, so element handles go stale)."""
    return driver.execute_script(
        """return [...document.querySelectorAll('article.message[data-role="assistant"]')].map((m) => ({
          text: m.querySelector('.body').innerText, meta: (m.querySelector('.meta') || {}).innerText || '',
          request: m.dataset.request || null, alert: (m.querySelector('[role="alert"]') || {}).innerText || null}));"""
    )


def streaming():
    return driver.execute_script("return !document.getElementById('stop').hidden")


def send(text):
    box = find("#prompt")
    box.clear()
    box.send_keys(text)
    find("#send").click()


def set_max_tokens(value):
    """Sets the chat's max tokens in its settings panel, as a person would."""
    find("details.settings summary").click()
    field = find("#max-tokens")
    field.clear()
    field.send_keys(str(value))
    find("details.settings summary").click()


def wait_for_answer(count, timeout=180):
    """Waits until the count-th answer is finished (the stop button hidden again) and returns its element."""
    wait(timeout).until(lambda d: len(answers()) >= count and not streaming())
    return answers()[count - 1]


def chat():
    step("chat streams a real answer")
    driver.get(GATEWAY + "/")
    wait().until(lambda d: find("#model").get_attribute("value") == "smollm2-135m-instruct:q4_1")
    # Short answers, so that the anonymous quota (set low for the refusal step) lasts until then.
    set_max_tokens(60)
    # Record what the page sends, to check the conversation goes along with the second question.
    driver.execute_script(
        "window.__sent = []; const original = window.fetch;"
        "window.fetch = (url, options) => { if (options && options.body) window.__sent.push(options.body); return original(url, options); };"
    )
    # While it streams, an answer grows in several steps: it is not one block at the end. The page records each
    # answer's length at every change it makes (polling from here missed the steps of a short answer on a fast engine).
    driver.execute_script(
        "window.__lengths = {};"
        "new MutationObserver(() => { const bodies = document.querySelectorAll('article.message[data-role=\"assistant\"] .body');"
        " if (!bodies.length) return; const n = bodies.length;"
        " (window.__lengths[n] ??= []).push(bodies[n - 1].innerText.length); })"
        ".observe(document.body, {childList: true, subtree: true, characterData: true});"
    )
    send("Write three sentences about the sea.")
    wait(180).until(lambda d: len(answers()) == 1 and not streaming())
    first = answers()[0]
    text = first["text"].strip()
    assert text and text != "…", "the answer is empty"
    assert "tokens" in first["meta"], f"no token count under the answer: {first}"
    request_id = first["request"]
    assert request_id, "the answer does not carry its request id"

    step("a second question carries the conversation")
    send("And now in French?")
    wait_for_answer(2)
    # At least one of the two answers grew while it streamed. One answer may arrive whole on a starved machine: the
    # page redraws once a frame, and a browser that gets no CPU while the engine writes reads a short answer in one
    # read (seen once in CI beside stress-ng and the pool tests, at "51,000 tokens/s"). A gateway or node that held
    # answers back would show both whole.
    lengths = driver.execute_script("return window.__lengths")
    grew = [len({n for n in lengths.get(str(k), []) if n > 1}) >= 2 for k in (1, 2)]
    assert any(grew), f"neither answer grew while streaming: {lengths}"
    sent = [json.loads(body) for body in driver.execute_script("return window.__sent")]
    assert len(sent) == 2, f"{len(sent)} requests sent"
    roles = [message["role"] for message in sent[1]["messages"]]
    assert roles == ["user", "assistant", "user"], f"second request's messages: {roles}"
    assert sent[1]["messages"][1]["content"].strip() == text.strip() or sent[1]["messages"][1]["content"], "history lost"

    step("history stays in the browser across a reload")
    driver.refresh()
    wait().until(lambda d: len(answers()) == 2)
    assert len(finds("#chats li")) == 1
    shot("chat")
    return request_id


def hostile_output():
    step("model output with markup is shown as text")
    payload = 'Here: <script>window.__xss = 1</script> <img src=x onerror="window.__xss = 2"> **bold** `<b>code</b>`\n\n```html\n<script>window.__xss = 3</script>\n```\n[click](javascript:window.__xss=4)'
    driver.execute_script(
        """const chats = JSON.parse(localStorage.getItem('hearth.chats'));
        chats.unshift({id: 'hostile', title: 'hostile', updated: Date.now(), messages: [
          {role: 'user', content: '<img src=x onerror="window.__xss = 5">'},
          {role: 'assistant', content: arguments[0], model: 'test'}]});
        localStorage.setItem('hearth.chats', JSON.stringify(chats));
        const settings = JSON.parse(localStorage.getItem('hearth.chat-settings') || '{}');
        settings.current = 'hostile';
        localStorage.setItem('hearth.chat-settings', JSON.stringify(settings));""",
        payload,
    )
    driver.refresh()
    wait().until(lambda d: len(answers()) == 1)
    body = 'article.message[data-role="assistant"] .body'
    assert "<script>window.__xss = 1</script>" in text(body), text(body)
    assert '<img src=x onerror="window.__xss = 2">' in text(body), text(body)
    assert not finds(".messages img, .messages script"), "markup from the answer became elements"
    assert text(body + " strong") == "bold"
    assert text(body + " pre code").strip() == "<script>window.__xss = 3</script>"
    assert not finds(body + " a"), "a javascript: link was kept"
    assert driver.execute_script("return window.__xss") is None, "injected script ran"
    # Back to a new chat for the next steps.
    find("#new-chat").click()


def stop():
    step("the stop button stops generation on the engine")
    set_max_tokens(1500)
    count = len(answers())
    send("Write a very long story about a dragon named Ember, with many chapters and much detail.")
    wait(120).until(lambda d: len(answers()) > count and len(answers()[-1]["text"].strip("… ")) > 0)
    find("#stop").click()
    answer = wait_for_answer(count + 1, timeout=30)
    assert "stopped" in answer["meta"], answer
    request_id = answer["request"]
    def engine_idle():
        with urllib.request.urlopen(f"http://127.0.0.1:{ENGINE_PORT}/slots", timeout=10) as response:
            slots = json.loads(response.read())
        return all(not slot["is_processing"] for slot in slots)
    poll("the engine's slots to be idle after Stop", engine_idle, timeout=20)
    print(f"STOPPED request={request_id}", flush=True)
    set_max_tokens(60)


def refusal():
    step("an over-quota refusal is shown in words")
    for _ in range(8):
        count = len(answers())
        send("Tell me about the sea.")
        answer = wait_for_answer(count + 1)
        if answer["alert"]:
            text = answer["alert"]
            assert "token quota" in text and "refills at" in text, text
            shot("chat-refusal")
            return
    raise AssertionError("the quota never ran out")


def pooled():
    step("a pooled model is offered, says it is warming when first asked, then answers")
    model = "smollm2-135m-instruct:q4_1"
    driver.get(GATEWAY + "/")
    # No node serves it alone: it is offered under "Pooled", once the gateway sees enough memory lent.
    offered = """return [...document.querySelectorAll('#model optgroup')].filter((g) => g.label.startsWith('Pooled'))
        .flatMap((g) => [...g.querySelectorAll('option')]).map((o) => ({value: o.value, label: o.innerText}));"""
    def offered_pooled():
        found = [o for o in driver.execute_script(offered) if o["value"] == model]
        if not found:
            driver.refresh()
        return found
    option = poll("the pooled model in the picker", offered_pooled, timeout=120, interval=2)[0]
    assert "pooled" in option["label"], option
    Select(find("#model")).select_by_value(model)
    note = text("#model-note") or ""
    assert "first request starts it" in note, f"the page does not say a pooled model starts on first use: {note!r}"
    set_max_tokens(24)
    send("Tell me about the sea.")
    first = wait_for_answer(1, timeout=120)
    assert first["alert"] and "warming" in first["alert"] and "try again" in first["alert"], first
    print(f"WARMING {first['alert']!r}", flush=True)
    shot("chat-pool-warming")
    # Asked again as the page says, the pool answers once it is ready.
    for _ in range(90):
        count = len(answers())
        send("Tell me about the sea.")
        answer = wait_for_answer(count + 1, timeout=180)
        if not answer["alert"]:
            assert answer["text"].strip() and "tokens" in answer["meta"], answer
            shot("chat-pooled")
            print(f"POOLED request={answer['request']}", flush=True)
            return
        assert "warming" in answer["alert"], answer["alert"]
        time.sleep(2)
    raise AssertionError("the pool never answered")


def network(request_id):
    step("the network page lists the node, the planner, the ledger")
    driver.get(GATEWAY + "/network")
    rows = lambda: driver.execute_script("return [...document.querySelectorAll('#node-rows tr[data-node]')].map(r => r.innerText)")
    wait().until(lambda d: len(rows()) == 2)
    row = next(r for r in rows() if "node-a" in r)
    assert "serving" in row, row
    # The second node serves the model through its owner's server, which gives no way to check its file: shown as
    # such, and not routed to by this gateway.
    own = next(r for r in rows() if "own-server" in r)
    assert "own server, unverified: not routed" in own, own
    big = '#capacity [data-model="llama-3.3-70b-instruct:q4_k_m"]'
    wait().until(lambda d: text(big))
    assert attribute(big, "data-status") == "needsMoreNodes", attribute(big, "data-status")
    assert "not runnable" in text(big) and "more node" in text(big), text(big)
    assert attribute('#capacity [data-model="smollm2-135m-instruct:q4_1"]', "data-status") == "singleNode"
    wait(30).until(lambda d: finds(f'#ledger-rows tr[data-request="{request_id}"]'))
    # The charts drew the requests just made.
    wait(30).until(lambda d: "peak 0" not in (text("#chart-requests") or "peak 0"))

    step("the chain verifies in the browser")
    find("#verify").click()
    wait(60).until(lambda d: attribute("#verify-result [data-verdict]", "data-verdict"))
    assert attribute("#verify-result [data-verdict]", "data-verdict") == "ok", text("#verify-result")
    driver.execute_script("document.querySelector('main').scrollTo(0, 0)")
    shot("network")

    step("a tampered ledger fails the browser's check")
    result = driver.execute_async_script(
        """const done = arguments[arguments.length - 1];
        (async () => {
          const ledger = await import('/ui/ledger.js');
          const head = await (await fetch('/api/ledger/head')).json();
          const page = await (await fetch('/api/ledger/entries?limit=1000')).json();
          const entries = page.data.map((row) => row.entry);
          const verdicts = {};
          const attempt = async (name, list, signed = head.signed) => {
            try { await ledger.verifyChain({gateway: head.gateway, entries: list, head: signed}); verdicts[name] = 'verified'; }
            catch (error) { verdicts[name] = error.message; }
          };
          await attempt('honest', entries);
          // One byte of the first entry changed (inside its payload, so it still decodes).
          const bytes = ledger.fromBase64URL(entries[0]);
          bytes[bytes.length - 80] ^= 1;
          const tampered = btoa(String.fromCharCode(...bytes)).replace(/\\+/g, '-').replace(/\\//g, '_').replace(/=+$/, '');
          await attempt('flipped', [tampered, ...entries.slice(1)]);
          await attempt('dropped', entries.slice(1));
          await attempt('truncated', entries.slice(0, -1));
          done(verdicts);
        })().catch((error) => done({error: String(error)}));"""
    )
    assert result.get("honest") == "verified", result
    for name in ["flipped", "dropped", "truncated"]:
        assert result.get(name, "verified") != "verified", f"{name}: {result}"
    assert result["flipped"].startswith("Entry 1:"), result


def account():
    step("log in with a key made in the browser")
    driver.get(GATEWAY + "/account")
    wait().until(lambda d: find("#login").is_displayed())
    find("#login-key").click()
    wait().until(lambda d: find("#account").is_displayed())
    account_id = wait().until(lambda d: text("#account-id"))
    assert account_id.startswith("Account ") and len(account_id.split()[-1]) == 64, account_id
    extractable = driver.execute_async_script(
        """const done = arguments[arguments.length - 1];
        const open = indexedDB.open('hearth', 1);
        open.onsuccess = () => {
          const get = open.result.transaction('keys').objectStore('keys').get('login');
          get.onsuccess = () => crypto.subtle.exportKey('pkcs8', get.result.privateKey).then(() => done('exported'), () => done('refused'));
        };"""
    )
    assert extractable == "refused", "the browser's private key can be exported"
    shot("account")

    step("create and revoke an API key")
    find("#key-name").send_keys("browser-test")
    find("#key-form button").click()
    key = wait().until(lambda d: finds("#created-key") and find("#created-key").get_attribute("value"))
    assert key.startswith("hk_"), key
    status, _ = http("GET", GATEWAY + "/api/reciprocity/standing", headers={"Authorization": f"Bearer {key}"})
    assert status == 200, status
    wait().until(lambda d: "active" in (text("#key-rows tr[data-key]") or ""))
    find("#key-rows tr[data-key] button").click()
    wait().until(lambda d: "revoked" in (text("#key-rows tr[data-key]") or ""))
    status, body = http("GET", GATEWAY + "/api/reciprocity/standing", headers={"Authorization": f"Bearer {key}"})
    assert status == 401, (status, body)


def devices():
    step("log in with a pasted token and revoke a device")
    find("#logout").click()
    wait().until(lambda d: find("#login").is_displayed())
    find("#login details summary").click()
    find("#token").send_keys(ACCOUNT_TOKEN)
    find("#token-form button").click()
    row = '#device-rows tr[data-device]'
    wait().until(lambda d: "own-server" in (text(row) or "") and "online" in (text(row) or ""))
    device = attribute(row, "data-device")
    find(row + " button").click()
    # The page asks first; a person confirms.
    wait(10).until(lambda d: d.switch_to.alert)
    driver.switch_to.alert.accept()
    wait().until(lambda d: "revoked" in (text(row) or ""))
    # The gateway cut the device's link and lists it no more.
    poll("the revoked device to leave the gateway", lambda: all(node["nodeID"] != device for node in http("GET", GATEWAY + "/api/nodes")[1]), timeout=30)


def node_dashboard():
    step("the node dashboard shows the engine and pauses the node")
    driver.get(DASHBOARD + "/")
    wait().until(lambda d: finds('#engines tr[data-state="ready"]'))
    shot("node")
    find("#pause").click()
    wait().until(lambda d: "paused" in (text("#state") or ""))
    # The gateway now routes nothing to it (nor to the unverified own-server node).
    def drained():
        status, nodes = http("GET", GATEWAY + "/api/nodes")
        return status == 200 and any(node["name"] == "node-a" and node["draining"] for node in nodes)
    poll("the gateway to see the node paused", drained, timeout=30)
    status, body = http("POST", GATEWAY + "/v1/chat/completions", {"model": "smollm2-135m-instruct:q4_1", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4})
    assert status == 503, (status, body)
    # The chat page says so in words, rather than offering a model nothing serves.
    driver.get(GATEWAY + "/")
    wait().until(lambda d: "No model can be served right now" in (text("#model-note") or ""))
    assert not driver.execute_script("return document.getElementById('model').value"), "a model is offered while no node serves"
    driver.get(DASHBOARD + "/")
    wait().until(lambda d: "paused" in (text("#state") or ""))
    find("#resume").click()
    wait().until(lambda d: "taking work" in (text("#state") or ""))
    poll("the gateway to route to the node again", lambda: http("GET", GATEWAY + "/v1/models")[1]["data"], timeout=30)


current = "start"
try:
    if POOL:
        pooled()
        print("OK", flush=True)
        sys.exit(0)
    request_id = chat()
    hostile_output()
    stop()
    network(request_id)
    account()
    devices()
    node_dashboard()
    # Anonymous again (the account page logged this browser in), for the anonymous quota.
    driver.get(GATEWAY + "/")
    driver.execute_script("localStorage.removeItem('hearth.token')")
    driver.refresh()
    refusal()
    errors = [e for e in console_errors() if "429" not in e and "401" not in e and "503" not in e]
    assert not errors, f"the console has errors: {errors}"
    print("OK", flush=True)
except Exception:
    try:
        shot("failure")
        print("console:", json.dumps(driver.get_log("browser"))[-3000:], file=sys.stderr)
        print("page:", driver.find_element(By.TAG_NAME, "body").text[-3000:], file=sys.stderr)
    except Exception:
        pass
    raise
finally:
    driver.quit()
