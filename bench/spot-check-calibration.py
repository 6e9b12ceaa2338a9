#!/usr/bin/env python3
"""Measures the spot check's error rates on real engines (docs/ROUTING.md, "Spot checks").

Honest answers come from one llama-server configuration and are scored, as the gateway does it (a token grammar forcing
the claimed ids, log-probabilities with the top 40), by a SmolLM2 engine configured differently (threads, micro-batch,
slots): the share that SpotCheck.judge would fail is the false-positive rate. Answers of another model (Gemma 3 270M,
its ids past SmolLM2's vocabulary dropped, as those fail the vocabulary check on their own) and random token ids
measure how often a dishonest answer is caught by one check. With --ending N, answers SmolLM2 ended itself are also
asked whether the model would stop there (one token more, which only the end of the text can be), whole (false
positives) and cut at a random token (caught or not).

The verdict below mirrors SpotCheck.judge and its default policy (at most 10 % of the tokens outside the top 40, and
a mean log-probability of at least -4); SpotCheckTests checks the Swift side on recorded outputs of this script's kind.

    python3 bench/spot-check-calibration.py --honest 1000 --dishonest 200 > bench/results/spot-checks.md
    python3 bench/spot-check-calibration.py --honest 0 --dishonest 0 --ending 300 >> bench/results/spot-checks.md
    python3 bench/spot-check-calibration.py --honest 0 --dishonest 0 --text 400 >> bench/results/spot-checks.md
"""
import argparse, json, os, random, statistics, subprocess, sys, time, urllib.error, urllib.request

HOME = os.path.expanduser("~/.cache/hearth")
ENGINE = next(os.path.join(HOME, "engine", d, "bin", "llama-server") for d in sorted(os.listdir(os.path.join(HOME, "engine"))))
SMOLLM = os.path.join(HOME, "models", "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53.gguf")
GEMMA = os.path.join(HOME, "models", "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818.gguf")
VOCABULARY = 49152
TOP_K, MAX_OUTSIDE, MIN_MEAN = 40, 0.1, -4.0
# SpotCheck.Policy's bound for a check by text (log-probability per byte), and SpotCheck.minTextBytes.
TEXT_MIN_PER_BYTE, TEXT_MIN_BYTES = -3.0, 64
PROMPTS = [
    "Tell me about rivers.", "Write a haiku about snow.", "How do plants grow?", "Explain what a computer is.",
    "Give me three tips for sleeping well.", "What is the capital of France?", "Describe a cat.",
    "Write a short story about a fox.", "Why is the sky blue?", "List some fruits.", "What is rain made of?",
    "How do I boil an egg?",
]


def start(model, port, arguments):
    process = subprocess.Popen([ENGINE, "-m", model, "--port", str(port), "-c", "4096", "--no-webui"] + arguments,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(600):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
            return process
        except Exception:
            time.sleep(0.2)
    raise SystemExit(f"llama-server on {port} did not start")


def post(port, body):
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", data=json.dumps(body).encode(),
                                     headers={"content-type": "application/json"})
    return json.load(urllib.request.urlopen(request, timeout=600))


def answer(port, prompt, temperature, seed, tokens, finish=False):
    reply = post(port, {"messages": [{"role": "user", "content": prompt}], "max_tokens": tokens,
                        "temperature": temperature, "seed": seed, "logprobs": True, "top_logprobs": 1})
    # The token that ended the answer has no text, so a stream carries no mark for it: the gateway claims only the
    # tokens before it, and so does this script.
    entries = reply["choices"][0]["logprobs"]["content"]
    stopped = reply["choices"][0]["finish_reason"] == "stop"
    if stopped and entries and entries[-1]["token"] == "":
        entries = entries[:-1]
    ids = [entry["id"] for entry in entries]
    return (ids, stopped) if finish else ids


def check(port, prompt, claimed, ending=False):
    """(mean log-probability, share outside the top 40, passed[, the end's log-probability]) as SpotCheck.judge sees
    it; with `ending`, one token more is asked, which only the end of the text can be, and it must be in the top 40."""
    grammar = "root ::= " + " ".join(f"<[{token}]>" for token in claimed)
    try:
        reply = post(port, {"messages": [{"role": "user", "content": prompt}], "max_tokens": len(claimed) + (1 if ending else 0),
                            "temperature": 0, "logprobs": True, "top_logprobs": TOP_K, "grammar": grammar})
    except urllib.error.HTTPError:
        # The engine cannot even be forced through these ids (an end-of-generation token in the middle): no model said them.
        return None
    entries = reply["choices"][0]["logprobs"]["content"]
    end = entries[len(claimed)] if ending and len(entries) == len(claimed) + 1 else None
    entries = entries[:len(claimed)]
    if [entry["id"] for entry in entries] != claimed:
        return None
    logprobs = [entry["logprob"] for entry in entries]
    outside = sum(1 for entry, token in zip(entries, claimed) if all(alt["id"] != token for alt in entry["top_logprobs"]))
    mean, share = statistics.mean(logprobs), outside / len(claimed)
    passed = share <= MAX_OUTSIDE and mean >= MIN_MEAN
    if not ending:
        return mean, share, passed
    end_in_top = end is not None and any(alt["id"] == end["id"] for alt in end["top_logprobs"])
    return mean, share, passed and end_in_top, (end["logprob"] if end else None)


def literal(text):
    """`text` as a GBNF string literal, as SpotCheck.grammarLiteral writes it."""
    escapes = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
    return '"' + "".join(escapes.get(ch, f"\\x{ord(ch):02X}" if ord(ch) < 0x20 or ord(ch) == 0x7F else ch) for ch in text) + '"'


def text_answer(port, prompt, temperature, seed, tokens):
    reply = post(port, {"messages": [{"role": "user", "content": prompt}], "max_tokens": tokens,
                        "temperature": temperature, "seed": seed})
    return reply["choices"][0]["message"]["content"], reply["choices"][0]["finish_reason"] == "stop"


def text_check(port, prompt, text, ending):
    """As SpotCheck's text check: the checker forced through the answer's text (its first 512 bytes) by a string
    grammar, its own tokens of it judged with the text bounds; with `ending`, the token after them must be in the top
    40 too. (log-probability per byte, share outside the top 40, passed, tokens), or None when the checker did not
    keep to the text."""
    scored = text.encode()[:512].decode("utf-8", "ignore")
    ending = ending and scored == text
    reply = post(port, {"messages": [{"role": "user", "content": prompt}], "max_tokens": len(scored.encode()) + 1,
                        "temperature": 0, "logprobs": True, "top_logprobs": TOP_K, "grammar": "root ::= " + literal(scored)})
    entries, produced, index = reply["choices"][0]["logprobs"]["content"], b"", 0
    while len(produced) < len(scored.encode()) and index < len(entries):
        produced += bytes(entries[index]["bytes"])
        index += 1
    if produced != scored.encode() or index == 0:
        return None
    forced = entries[:index]
    logprobs = [entry["logprob"] for entry in forced]
    outside = sum(1 for entry in forced if all(alt["id"] != entry["id"] for alt in entry["top_logprobs"]))
    per_byte, share = sum(logprobs) / len(scored.encode()), outside / len(forced)
    passed = per_byte >= TEXT_MIN_PER_BYTE
    if ending:
        end = entries[index] if index < len(entries) else None
        passed = passed and end is not None and any(alt["id"] == end["id"] for alt in end["top_logprobs"])
    return per_byte, share, passed, len(forced)


def texts(options, rng):
    """Answers checked by their text, as answers from owners' own servers are (no token ids), with the text bounds:
    SmolLM2's own at temperatures 0, 0.7 and 1.0 (false positives), Gemma 3 270M's (another model's fluent text),
    SmolLM2's answers to another prompt, and random words (an answer made of nothing)."""
    honest, failures, short = [], [], 0
    caught = {"another model (Gemma 3 270M)": [], "SmolLM2's answer to another prompt": [], "random words": []}
    words = [word for prompt in PROMPTS for word in prompt.lower().strip("?.").split()] + "the and of a is to in it".split()

    for index in range(options.text):
        prompt = PROMPTS[index % len(PROMPTS)]
        text, stopped = text_answer(18091 + index % 2, prompt, [0.0, 0.7, 1.0][index % 3], index, options.tokens)
        if len(text.encode()) < TEXT_MIN_BYTES:
            short += 1
            continue
        result = text_check(18093, prompt, text, stopped)
        if result is None or not result[2]:
            failures.append((index, text[:60], result))
        if result is not None:
            honest.append(result)
        if index % 4 == 0:
            other, stopped = text_answer(18094, prompt, 0.7, index, options.tokens)
            if len(other.encode()) >= TEXT_MIN_BYTES:
                result = text_check(18093, prompt, other, stopped)
                caught["another model (Gemma 3 270M)"].append(result is None or not result[2])
            elsewhere = PROMPTS[(index + 5) % len(PROMPTS)]
            result = text_check(18093, elsewhere, text, stopped)
            caught["SmolLM2's answer to another prompt"].append(result is None or not result[2])
            salad = " ".join(rng.choice(words) for _ in range(rng.randrange(16, 48)))
            result = text_check(18093, prompt, salad, False)
            caught["random words"].append(result is None or not result[2])
        if index % 50 == 49:
            print(f"{index + 1} texts checked, {len(failures)} failed", file=sys.stderr)
    means = sorted(result[0] for result in honest)
    shares = sorted(result[1] for result in honest)
    lines = [f"\n## Checked by text\n\nAnswers of up to {options.tokens} tokens checked by their text, as answers from "
             "owners' own servers are (they carry no token ids): the checker is forced through the text by a string "
             "grammar and the text is judged by its log-probability per byte under the checker's model (at least "
             f"{TEXT_MIN_PER_BYTE}; an answer the engine ended, scored whole, also by its end; texts under "
             f"{TEXT_MIN_BYTES} bytes are not judged). The share of the checker's tokens outside its top {TOP_K} is "
             "shown, not judged: they are not the tokens the answer was sampled as. Honest answers from the same engines "
             "as above, at temperatures 0, 0.7 and 1.0.\n",
             "| measure | value |\n| --- | --- |",
             f"| honest answers checked | {len(honest)} ({short} under {TEXT_MIN_BYTES} bytes not judged) |",
             f"| failed (false positives) | {len(failures)} |"]
    if means:
        lines.append(f"| log-probability per byte: worst, 1st percentile, median | {means[0]:.2f}, {means[len(means) // 100]:.2f}, "
                     f"{means[len(means) // 2]:.2f} |")
        lines.append(f"| share outside the top {TOP_K}: worst, 99th percentile | {shares[-1]:.3f}, "
                     f"{shares[len(shares) * 99 // 100]:.3f} |")
    for name, results in caught.items():
        lines.append(f"| {name}: caught by one check | {sum(results)} of {len(results)} |")
    if failures:
        lines.append(f"\nFailures: {failures[:10]}")
    return "\n".join(lines)


def endings(options, rng):
    """Answers SmolLM2 ended itself, checked whole and asked about their end (false positives), and the same answers
    cut at a random token and claimed as ended (caught or not)."""
    honest, failures, inconclusive, cut = [], [], [], []
    for index in range(options.ending):
        if index % 50 == 49:
            print(f"{index + 1} answers asked, {len(honest)} ended by the engine, {len(failures)} failed", file=sys.stderr)
        port = 18091 + index % 2
        prompt = PROMPTS[index % len(PROMPTS)]
        claimed, stopped = answer(port, prompt, [0.0, 0.7, 1.0][index % 3], 1000 + index, options.ending_tokens, finish=True)
        if not stopped or len(claimed) < 2:
            continue
        result = check(18093, prompt, claimed, ending=True)
        if result is None:
            # The checker could not be forced through the claimed ids: the gateway records that as inconclusive.
            inconclusive.append(index)
            continue
        honest.append(result)
        if not result[2]:
            failures.append((index, result))
        short = claimed[:rng.randrange(1, len(claimed))]
        result = check(18093, prompt, short, ending=True)
        cut.append(result is None or not result[2])
    ends = sorted(result[3] for result in honest if result[3] is not None)
    lines = [f"\n## Where the answer ends\n\nAnswers of up to {options.ending_tokens} tokens that SmolLM2 ended itself "
             "(`finish_reason: stop`), checked whole with one token more asked (only the end of the text can follow the "
             "claimed tokens), and the same answers cut at a random token and claimed as ended.\n",
             "| measure | value |\n| --- | --- |",
             f"| answers ended by the engine, checked whole | {len(honest)} |",
             f"| failed (false positives) | {len(failures)} |",
             f"| inconclusive (the checker could not be forced through the claimed ids) | {len(inconclusive)} |"]
    if ends:
        lines.append(f"| the end's log-probability: worst, median | {ends[0]:.2f}, {ends[len(ends) // 2]:.2f} |")
    lines.append(f"| cut short and claimed as ended: caught by one check | {sum(cut)} of {len(cut)} |")
    if failures:
        lines.append(f"\nFailures: {failures[:10]}")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--honest", type=int, default=1000)
    parser.add_argument("--dishonest", type=int, default=200)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--ending", type=int, default=0, help="answers asked for the end-of-text check (0: none)")
    parser.add_argument("--ending-tokens", type=int, default=128)
    parser.add_argument("--text", type=int, default=0, help="answers checked by their text (0: none)")
    options = parser.parse_args()
    rng = random.Random(1)
    # Answering engines as differently configured as volunteers' are; the checker has a configuration of its own.
    answerers = [
        start(SMOLLM, 18091, ["-t", "1", "-np", "1"]),
        start(SMOLLM, 18092, ["-t", "2", "-np", "4", "-ub", "64"]),
    ]
    checker = start(SMOLLM, 18093, ["-t", "1", "-np", "2", "-ub", "1"])
    other = start(GEMMA, 18094, ["-t", "1", "-np", "1"])
    honest, failures, worst = [], [], None
    started = time.time()
    try:
        for index in range(options.honest):
            port = 18091 + index % 2
            prompt = PROMPTS[index % len(PROMPTS)]
            temperature = [0.0, 0.7, 1.0][index % 3]
            claimed = answer(port, prompt, temperature, index, options.tokens)
            result = check(18093, prompt, claimed)
            if result is None:
                failures.append((index, "did not follow"))
                continue
            honest.append(result)
            if not result[2]:
                failures.append((index, result))
            worst = result if worst is None or result[0] < worst[0] else worst
            if index % 100 == 99:
                print(f"{index + 1} honest checked, {len(failures)} failed", file=sys.stderr)
        caught = {"another model": [], "random tokens": []}
        for index in range(options.dishonest):
            prompt = PROMPTS[index % len(PROMPTS)]
            claimed = [token for token in answer(18094, prompt, 0.7, index, options.tokens) if token < VOCABULARY]
            if claimed:
                result = check(18093, prompt, claimed)
                caught["another model"].append(result is None or not result[2])
            randoms = [rng.randrange(VOCABULARY) for _ in range(options.tokens)]
            result = check(18093, prompt, randoms)
            caught["random tokens"].append(result is None or not result[2])
        ending_report = endings(options, rng) if options.ending else ""
        ending_report += texts(options, rng) if options.text else ""
    finally:
        for process in answerers + [checker, other]:
            process.terminate()
    if not honest:
        print(ending_report)
        return
    means = sorted(result[0] for result in honest)
    shares = sorted(result[1] for result in honest)
    print("# Spot checks: false positives and detection (bench/spot-check-calibration.py)\n")
    print(f"Machine: {os.cpu_count()} cores; llama.cpp b11434; {options.tokens} tokens per answer; "
          f"{time.time() - started:.0f} s. Policy: at most {MAX_OUTSIDE:.0%} of the tokens outside the checker's "
          f"top {TOP_K}, mean log-probability ≥ {MIN_MEAN}.\n")
    print("Honest answers: SmolLM2 at temperatures 0, 0.7 and 1.0, from `-t 1 -np 1` and `-t 2 -np 4 -ub 64`, "
          "checked by SmolLM2 at `-t 1 -np 2 -ub 1`.\n")
    print("| measure | value |\n| --- | --- |")
    print(f"| honest answers checked | {len(honest)} |")
    print(f"| failed (false positives) | {len(failures)} ({len(failures) / max(1, options.honest):.2%}) |")
    print(f"| mean log-probability: worst, 1st percentile, median | {means[0]:.2f}, {means[len(means) // 100]:.2f}, "
          f"{means[len(means) // 2]:.2f} |")
    print(f"| share outside the top {TOP_K}: worst, 99th percentile | {shares[-1]:.3f}, {shares[len(shares) * 99 // 100]:.3f} |")
    for name, results in caught.items():
        print(f"| {name}: caught by one check | {sum(results)} of {len(results)} |")
    if failures:
        print("\nFailures:", failures[:10])
    print(ending_report)


if __name__ == "__main__":
    main()
