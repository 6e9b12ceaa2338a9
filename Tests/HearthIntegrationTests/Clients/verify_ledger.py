"""Verifies a `hearth ledger export` file with an implementation independent of Hearth: cbor2 for CBOR and
cryptography's Ed25519. Checks every gateway countersignature (COSE_Sign1, RFC 9052), every node receipt, that
each payload is deterministic CBOR, the hash chain, and the signed head. Prints OK or raises."""
import base64
import hashlib
import json
import sys

import cbor2
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


def b64url(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def cose_sign1(raw):
    """The signer's raw key and the payload of a tagged COSE_Sign1 whose EdDSA signature verifies."""
    tagged = cbor2.loads(raw)
    assert isinstance(tagged, cbor2.CBORTag) and tagged.tag == 18, "not a tagged COSE_Sign1"
    protected, unprotected, payload, signature = tagged.value
    assert cbor2.loads(protected) == {1: -8}, "the protected header is not alg EdDSA"
    kid = unprotected[4]
    to_be_signed = cbor2.dumps(["Signature1", protected, b"", payload])
    Ed25519PublicKey.from_public_bytes(kid).verify(signature, to_be_signed)
    return kid, payload


def deterministic(payload):
    """The decoded payload, after checking it is exactly its canonical encoding."""
    value = cbor2.loads(payload)
    assert cbor2.dumps(value, canonical=True) == payload, "not deterministic CBOR"
    return value


def split(tokens, shares):
    """A pool's tokens shared by layers as docs/POOLS.md states it: floors, then the remainder one each to the largest
    remainders, ties to the earlier share."""
    total = sum(layers for _, layers in shares)
    if total == 0 or tokens == 0:
        return [0 for _ in shares]
    parts = [tokens * layers // total for _, layers in shares]
    remainders = [tokens * layers % total for _, layers in shares]
    order = sorted(range(len(shares)), key=lambda i: (-remainders[i], i))
    for i in order[: tokens - sum(parts)]:
        parts[i] += 1
    return parts


def verify_chain(header, lines):
    """One gateway's chain: its entries, and its signed head when the export has one. Returns the summary."""
    assert header["format"] == "hearth-ledger-v1"
    gateway = header["gateway"]
    previous = bytes(32)
    prompt = completion = pooled = 0
    requests = []
    for seq, line in enumerate(lines, start=1):
        raw = b64url(json.loads(line)["entry"])
        kid, payload = cose_sign1(raw)
        assert hashlib.sha256(kid).hexdigest() == gateway, f"entry {seq}: not signed by the gateway"
        entry = deterministic(payload)
        assert entry["seq"] == seq, f"entry {seq}: sequence {entry['seq']}"
        assert entry["prev"] == previous, f"entry {seq}: breaks the hash chain"
        node_kid, receipt_payload = cose_sign1(entry["receipt"])
        receipt = deterministic(receipt_payload)
        assert receipt["node"] == hashlib.sha256(node_kid).hexdigest(), f"entry {seq}: receipt signed by another node"
        assert receipt["gateway"] == gateway, f"entry {seq}: receipt for another gateway"
        assert 0 <= receipt["completion_tokens"] <= receipt["max_tokens"], f"entry {seq}: completion over max_tokens"
        if receipt["v"] == 2:
            shares = receipt["pool"]["shares"]
            assert shares[0][0] == receipt["node"], f"entry {seq}: pooled receipt not signed by the pool's head"
            expected = split(receipt["prompt_tokens"] + receipt["completion_tokens"], shares)
            credits = entry["credits"]
            assert [c[0] for c in credits] == [s[0] for s in shares], f"entry {seq}: credits name other nodes"
            assert [c[2] for c in credits] == expected, f"entry {seq}: credits are not the pool's shares"
            pooled += 1
        else:
            assert receipt["v"] == 1 and "credits" not in entry, f"entry {seq}: credits without a pool"
        prompt += receipt["prompt_tokens"]
        completion += receipt["completion_tokens"]
        requests.append(receipt["request"])
        previous = hashlib.sha256(raw).digest()
    signed = header.get("head") is not None
    if signed:
        kid, payload = cose_sign1(b64url(header["head"]))
        head = deterministic(payload)
        assert hashlib.sha256(kid).hexdigest() == gateway and head["gateway"] == gateway, "head not signed by the gateway"
        assert head["seq"] == len(lines) and head["hash"] == previous, "the head does not match the chain"
    return {"entries": len(lines), "prompt": prompt, "completion": completion, "pooled": pooled, "requests": requests, "signed": signed}


def main(path):
    """Every chain in the export (gateways sharing a database each keep one); no request credited in two."""
    sections = []
    for line in open(path).read().splitlines():
        if "format" in json.loads(line):
            sections.append((json.loads(line), []))
        else:
            assert sections, "the export does not start with a chain header"
            sections[-1][1].append(line)
    assert sections, "an empty export"
    totals = {"entries": 0, "prompt": 0, "completion": 0, "pooled": 0}
    credited = {}
    for header, lines in sections:
        summary = verify_chain(header, lines)
        for request in summary["requests"]:
            assert request not in credited, f"request {request} credited in two chains"
            credited[request] = header["gateway"]
        for key in totals:
            totals[key] += summary[key]
    print(f"entries={totals['entries']} prompt_tokens={totals['prompt']} completion_tokens={totals['completion']} pooled={totals['pooled']}")
    print(f"chains={len(sections)}")
    print("OK")


if __name__ == "__main__":
    main(sys.argv[1])
