#!/usr/bin/env python3
"""Reference token ids for tests/data/tokenizer/corpus.txt from Hugging Face `tokenizers`, plus its single-thread
encode throughput (the baseline of bench/bench_tokenizer.cpp).

The corpus is cut into chunks (whole paragraphs, cut after a "\\n\\n", of at least CHUNK_MIN characters); each chunk is
encoded alone with `Tokenizer.encode(chunk, add_special_tokens=False)`, so added tokens in the text are matched, as
tune's Tokenizer::encode does. Writes to --out:
  tokenizer_refs_qwen3.bin    every chunk, with the Qwen3 tokenizer.json
  tokenizer_refs_qwen2_5.bin  only the chunks whose ids differ from Qwen3's (Qwen2.5 has the same vocab and merges
                              but lacks <think>, </think>, <tool_response>, </tool_response>)
  tokenizer_refs.json         generator, versions, corpus sha256, chunking, counts, and the benchmark
File format: "TUNETOKR", then little-endian u32 version = 2, n_chunks, n_records, payload_bytes, then u32
chunk_byte_offsets[n_chunks + 1] (into corpus.txt), then the payload: n_records records of unsigned LEB128 varints,
  chunk, n_edits, n_edits x (start, n_deleted, n_inserted, inserted ids...).
A record's ids are its base ids with the edits applied in order (`start` indexes the base, increasing): the base is
empty in the Qwen3 file (one edit inserts all ids) and is the chunk's Qwen3 ids in the Qwen2.5 file.

Benchmark: RAYON_NUM_THREADS=1 and TOKENIZERS_PARALLELISM=false, chunk by chunk with `encode` (not encode_batch), the
first pass and the best of 3 passes over the whole corpus (the BPE cache is warm after the first), printed as JSON.

Probe (--probe, instead of the above): how the installed `tokenizers` classifies every code point under the Qwen
regexes (L / M / N / P / WS) and which code points its NFC changes, written as unicode_probe.json, to compare with
tune's Unicode tables (tools/gen_unicode_tables.py).

Needs `tokenizers` (and `transformers` for a cross-check of a few chunks, skipped if absent).
Run:  python3 tools/reference/make_tokenizer_refs.py --qwen3 DIR --qwen2_5 DIR [--corpus FILE] [--out DIR]
      python3 tools/reference/make_tokenizer_refs.py --probe [--out DIR]
"""

import os

os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

import argparse  # noqa: E402
import difflib  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import struct  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import tokenizers  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402

GENERATOR = "tools/reference/make_tokenizer_refs.py"
CHUNK_MIN = 2000  # characters
MAGIC = b"TUNETOKR"


def chunk_corpus(text):
    """Whole paragraphs: cut after each "\\n\\n" once the chunk has CHUNK_MIN characters."""
    chunks, start, pos = [], 0, 0
    while True:
        cut = text.find("\n\n", pos)
        if cut < 0:
            break
        pos = cut + 2
        if pos - start >= CHUNK_MIN:
            chunks.append(text[start:pos])
            start = pos
    if start < len(text):
        chunks.append(text[start:])
    return chunks


def put_varint(out, x):
    while x >= 0x80:
        out.append((x & 0x7F) | 0x80)
        x >>= 7
    out.append(x)


def get_varint(data, pos):
    x, shift = 0, 0
    while True:
        b = data[pos]
        pos += 1
        x |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return x, pos


def edits_between(base, ids):
    """(start, n_deleted, inserted ids) turning base into ids."""
    sm = difflib.SequenceMatcher(None, base, ids, autojunk=False)
    return [(i1, i2 - i1, ids[j1:j2]) for tag, i1, i2, j1, j2 in sm.get_opcodes() if tag != "equal"]


def apply_edits(base, edits):
    out, pos = [], 0
    for start, n_deleted, inserted in edits:
        out += base[pos:start] + list(inserted)
        pos = start + n_deleted
    return out + base[pos:]


def write_refs(path, byte_offsets, records):
    """records: (chunk, edits) in chunk order."""
    payload = bytearray()
    for chunk, edits in records:
        put_varint(payload, chunk)
        put_varint(payload, len(edits))
        for start, n_deleted, inserted in edits:
            for x in (start, n_deleted, len(inserted), *inserted):
                put_varint(payload, x)
    with open(path, "wb") as f:
        f.write(MAGIC)
        f.write(struct.pack("<4I", 2, len(byte_offsets) - 1, len(records), len(payload)))
        f.write(struct.pack(f"<{len(byte_offsets)}I", *byte_offsets))
        f.write(payload)
    return os.path.getsize(path)


def read_refs(path, base=None):
    """{chunk: ids} of the records of a file written by write_refs; base: {chunk: ids} the edits apply to."""
    with open(path, "rb") as f:
        data = f.read()
    assert data[:8] == MAGIC
    version, n_chunks, n_records, n_payload = struct.unpack_from("<4I", data, 8)
    pos = 24 + 4 * (n_chunks + 1)
    assert version == 2 and len(data) == pos + n_payload
    out = {}
    for _ in range(n_records):
        chunk, pos = get_varint(data, pos)
        n_edits, pos = get_varint(data, pos)
        edits = []
        for _ in range(n_edits):
            start, pos = get_varint(data, pos)
            n_deleted, pos = get_varint(data, pos)
            n_inserted, pos = get_varint(data, pos)
            inserted = []
            for _ in range(n_inserted):
                x, pos = get_varint(data, pos)
                inserted.append(x)
            edits.append((start, n_deleted, inserted))
        out[chunk] = apply_edits(base[chunk] if base else [], edits)
    return out


def bench(tok, chunks, n_bytes, reps=3):
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for c in chunks:
            tok.encode(c, add_special_tokens=False)
        times.append(time.perf_counter() - t0)
    return {"first_s": times[0], "best_s": min(times), "mb_per_s_first": n_bytes / times[0] / 1e6,
            "mb_per_s_best": n_bytes / min(times) / 1e6}


def probe_unicode():
    """Per code point class under the installed tokenizers' regex engine, run-length encoded."""
    import unicodedata

    from tokenizers import Regex, normalizers, pre_tokenizers

    def splitter(pattern):
        return pre_tokenizers.Split(Regex(pattern), behavior="isolated")

    q2 = splitter(r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""")
    q35 = splitter(r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""")
    cps = [cp for cp in range(0x110000) if not 0xD800 <= cp <= 0xDFFF]

    def pieces_per_segment(splitter_, make):
        # Segments of 4 characters; count the pieces that start in each segment's first 3 characters.
        text = "".join(make(chr(cp)) for cp in cps)
        counts = [0] * len(cps)
        start = 0  # pieces tile the text; their own lengths give the character offsets
        for piece, _ in splitter_.pre_tokenize_str(text):
            if start % 4 != 3:
                counts[start // 4] += 1
            start += len(piece)
        assert start == len(text)
        return counts

    a2 = pieces_per_segment(q2, lambda c: "a" + c + "a\n")
    a35 = pieces_per_segment(q35, lambda c: "a" + c + "a\n")
    b2 = pieces_per_segment(q2, lambda c: c + c + ".\n")
    classes = []
    for i, cp in enumerate(cps):
        if a2[i] == 1:
            k = "L"
        elif a35[i] == 1:
            k = "M"
        elif a2[i] == 3 and cp not in (0x0A, 0x0D):
            k = "N"
        elif b2[i] == 1:
            k = "P"
        else:
            k = "WS"
        classes.append(k)
    runs = []
    for cp, k in zip(cps, classes):
        if runs and runs[-1][2] == k and runs[-1][1] == cp - 1:
            runs[-1][1] = cp
        else:
            runs.append([cp, cp, k])
    # NFC of each character alone: joined by spaces (a starter that composes with nothing), split again.
    nfc = normalizers.NFC()
    single = [cp for cp in cps if cp != 0x20]
    parts = nfc.normalize_str(" ".join(chr(cp) for cp in single)).split(" ")
    if len(parts) == len(single):
        changed = {f"{cp:04X}": " ".join(f"{ord(c):04X}" for c in p) for cp, p in zip(single, parts) if p != chr(cp)}
    else:
        changed = {"error": f"split gave {len(parts)} parts for {len(single)} code points"}
    # Composition: NFC of each two-character canonical decomposition this Python knows, where it differs.
    pairs = []
    for cp in cps:
        d = unicodedata.decomposition(chr(cp))
        if d and not d.startswith("<") and len(d.split()) == 2:
            pairs.append("".join(chr(int(x, 16)) for x in d.split()))
    composed = nfc.normalize_str(" ".join(pairs)).split(" ")
    compose_diff = {" ".join(f"{ord(c):04X}" for c in p): " ".join(f"{ord(c):04X}" for c in q)
                    for p, q in zip(pairs, composed) if q != unicodedata.normalize("NFC", p)}
    return {"generator": GENERATOR + " --probe", "tokenizers": tokenizers.__version__,
            "python_unicodedata": unicodedata.unidata_version, "class_runs": runs, "nfc_changed": changed,
            "nfc_pairs_differing_from_python": compose_diff}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--qwen3", help="directory with the Qwen3 tokenizer.json")
    ap.add_argument("--qwen2_5", help="directory with the Qwen2.5 tokenizer.json")
    ap.add_argument("--corpus", default="tests/data/tokenizer/corpus.txt")
    ap.add_argument("--out", default="tests/data/tokenizer")
    ap.add_argument("--probe", action="store_true", help="only write unicode_probe.json (no references)")
    args = ap.parse_args()
    if args.probe:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "unicode_probe.json"), "w") as f:
            json.dump(probe_unicode(), f)
        return

    with open(args.corpus, "rb") as f:
        data = f.read()
    text = data.decode("utf-8")
    chunks = chunk_corpus(text)
    assert "".join(chunks) == text
    byte_offsets = [0]
    for c in chunks:
        byte_offsets.append(byte_offsets[-1] + len(c.encode("utf-8")))
    assert byte_offsets[-1] == len(data)

    tok3 = Tokenizer.from_file(os.path.join(args.qwen3, "tokenizer.json"))
    tok25 = Tokenizer.from_file(os.path.join(args.qwen2_5, "tokenizer.json"))
    ids3 = [tok3.encode(c, add_special_tokens=False).ids for c in chunks]
    ids25 = [tok25.encode(c, add_special_tokens=False).ids for c in chunks]
    # Round trip as a sanity check of the reference itself: decode gives back the NFC text.
    import unicodedata
    roundtrip_ok = all(tok3.decode(i, skip_special_tokens=False) == unicodedata.normalize("NFC", c)
                       for i, c in zip(ids3[:50], chunks[:50]))

    os.makedirs(args.out, exist_ok=True)
    path3 = os.path.join(args.out, "tokenizer_refs_qwen3.bin")
    path25 = os.path.join(args.out, "tokenizer_refs_qwen2_5.bin")
    size3 = write_refs(path3, byte_offsets, [(i, [(0, 0, ids)]) for i, ids in enumerate(ids3)])
    diff = [(i, edits_between(a, b)) for i, (a, b) in enumerate(zip(ids3, ids25)) if a != b]
    size25 = write_refs(path25, byte_offsets, diff)
    # Read both back: the files must give exactly the ids above.
    back3 = read_refs(path3)
    back25 = read_refs(path25, back3)
    assert [back3[i] for i in range(len(chunks))] == ids3
    assert all(back25.get(i, ids3[i]) == ids25[i] for i in range(len(chunks)))

    cross = None
    try:
        import transformers
        from transformers import AutoTokenizer
        at = AutoTokenizer.from_pretrained(args.qwen3)
        cross = {"transformers": transformers.__version__,
                 "first_100_chunks_equal": all(at.encode(c, add_special_tokens=False) == i
                                               for c, i in zip(chunks[:100], ids3[:100]))}
    except Exception as e:  # transformers is optional: the reference is `tokenizers`
        cross = {"error": repr(e)[:300]}

    result = {
        "generator": GENERATOR,
        "tokenizers": tokenizers.__version__,
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "corpus": {"path": args.corpus, "bytes": len(data), "characters": len(text),
                   "sha256": hashlib.sha256(data).hexdigest()},
        "chunking": f"whole paragraphs, cut after a \"\\n\\n\" once >= {CHUNK_MIN} characters",
        "chunks": len(chunks),
        "qwen3": {"tokens": sum(len(i) for i in ids3), "file_bytes": size3,
                  "tokenizer_json_sha256": hashlib.sha256(
                      open(os.path.join(args.qwen3, "tokenizer.json"), "rb").read()).hexdigest()},
        "qwen2_5": {"chunks_differing_from_qwen3": len(diff), "file_bytes": size25,
                    "tokenizer_json_sha256": hashlib.sha256(
                        open(os.path.join(args.qwen2_5, "tokenizer.json"), "rb").read()).hexdigest()},
        "decode_roundtrip_first_50_chunks": roundtrip_ok,
        "transformers_cross_check": cross,
    }
    result["bench_tokenizers_qwen3"] = bench(tok3, chunks, len(data))
    with open(os.path.join(args.out, "tokenizer_refs.json"), "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
