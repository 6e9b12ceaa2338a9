#!/usr/bin/env python3
"""Measures the spot check's error rates on real engines (docs/ROUTING.md, "Spot checks").

Honest answers come from one llama-server configuration and are scored, as the gateway does it (a token grammar forcing
the claimed ids, log-probabilities with the top 40), by a SmolLM2 engine configured differently (threads, micro-batch,
slots): the share that SpotCheck.judge would fail is the false-positive rate. Answers of another model (Gemma 3 270M,
its ids past SmolLM2's vocabulary dropped, as those fail the vocabulary check on their own) and random token ids
measure how often a dishonest answer is caught by one check.

The verdict below mirrors SpotCheck.judge and its default policy (at most 10 % of the tokens outside the top 40, and
a mean log-probability of at least -4); SpotCheckTests checks the Swift side on recorded outputs of this script's kind.

    python3 bench/spot-check-calibration.py --honest 1000 --dishonest 200 > bench/results/spot-checks.md
"""
import argparse, json, os, random, statistics, subprocess, sys, time, urllib.error, urllib.request

HOME = os.path.expanduser("~/.cache/hearth")
ENGINE = next(os.path.join(HOME, "engine", d, "bin", "llama-server") for d in sorted(os.listdir(os.path.join(HOME, "engine"))))
SMOLLM = os.path.join(HOME, "models", "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53.gguf")
GEMMA = os.path.join(HOME, "models", "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818.gguf")
VOCABULARY = 49152
TOP_K, MAX_OUTSIDE, MIN_MEAN = 40, 0.1, -4.0
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


def answer(port, prompt, temperature, seed, tokens):
    reply = post(port, {"messages": [{"role": "user", "content": prompt}], "max_tokens": tokens,
                        "temperature": temperature, "seed": seed, "logprobs": True, "top_logprobs": 1})
    # The token that ended the answer has no text, so a stream carries no mark for it: the gateway claims only the
    # tokens before it, and so does this script.
    entries = reply["choices"][0]["logprobs"]["content"]
    if reply["choices"][0]["finish_reason"] == "stop" and entries and entries[-1]["token"] == "":
        entries = entries[:-1]
    return [entry["id"] for entry in entries]


def check(port, prompt, claimed):
    grammar = "root ::= " + " ".join(f"<[{token}]>" for token in claimed)
    try:
        reply = post(port, {"messages": [{"role": "user", "content": prompt}], "max_tokens": len(claimed), "temperature": 0,
                            "logprobs": True, "top_logprobs": TOP_K, "grammar": grammar})
    except urllib.error.HTTPError:
        # The engine cannot even be forced through these ids (an end-of-generation token in the middle): no model said them.
        return None
    entries = reply["choices"][0]["logprobs"]["content"]
    if [entry["id"] for entry in entries] != claimed:
        return None
    logprobs = [entry["logprob"] for entry in entries]
    outside = sum(1 for entry, token in zip(entries, claimed) if all(alt["id"] != token for alt in entry["top_logprobs"]))
    mean, share = statistics.mean(logprobs), outside / len(claimed)
    return mean, share, share <= MAX_OUTSIDE and mean >= MIN_MEAN


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--honest", type=int, default=1000)
    parser.add_argument("--dishonest", type=int, default=200)
    parser.add_argument("--tokens", type=int, default=32)
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
    finally:
        for process in answerers + [checker, other]:
            process.terminate()
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


if __name__ == "__main__":
    main()
