#!/usr/bin/env python3
"""Chat-template goldens for tests/tokenizer/test_chat_template.cpp: renders tests/data/chat/conversations.json
with each option set through transformers' apply_chat_template(tokenize=False) for each Qwen template family
(offline: templates from files, a tiny in-memory tokenizer), cross-checked against render_jinja_template and
plain jinja2, into <out>/expected_<family>.json. Runs on the GPU machine (transformers 5.17, jinja2):
  python3 tools/reference/make_chat_refs.py --templates .carry_chat --out $OUT
"""
import argparse
import copy
import hashlib
import json
import os
import platform
import sys

FAMILIES = {
    "qwen2_5": "Qwen-Qwen2.5-7B-Instruct.jinja",
    "qwen3": "Qwen-Qwen3-0.6B.jinja",
    "qwen3_5": "Qwen3.5-4B.jinja",
    "qwq": "Qwen-QwQ-32B.jinja",
    "qwen3_coder": "Qwen3-Coder.jinja",
}


def fnv1a64(data: bytes) -> str:
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return "%016x" % h


def plain_jinja2_renderer():
    """jinja2 configured as transformers' _compile_jinja_template does (sandbox, trim/lstrip, loopcontrols)."""
    import jinja2
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception

    def render(template, messages, tools, add_generation_prompt, kwargs):
        return env.from_string(template).render(
            messages=messages, tools=tools, documents=None, add_generation_prompt=add_generation_prompt, **kwargs)

    return render


def transformers_renderers(special_tokens):
    """apply_chat_template on an offline tokenizer (None if one cannot be built), and render_jinja_template
    (what apply_chat_template calls)."""
    from transformers.utils.chat_template_utils import render_jinja_template

    def direct(template, messages, tools, add_generation_prompt, kwargs):
        rendered, _ = render_jinja_template(conversations=[messages], tools=tools, chat_template=template,
                                            add_generation_prompt=add_generation_prompt, **special_tokens, **kwargs)
        return rendered[0]

    try:
        from tokenizers import Tokenizer, models
        from transformers import PreTrainedTokenizerFast

        vocab = {"<unk>": 0}
        for t in special_tokens.values():
            vocab.setdefault(t, len(vocab))
        tok = PreTrainedTokenizerFast(
            tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="<unk>")), **special_tokens)
    except Exception as e:  # an API change: fall back to the function apply_chat_template delegates to
        print(f"cannot build an offline tokenizer ({type(e).__name__}: {e})", file=sys.stderr)
        return None, direct

    def apply(template, messages, tools, add_generation_prompt, kwargs):
        tok.chat_template = template
        return tok.apply_chat_template(messages, tools=tools, add_generation_prompt=add_generation_prompt,
                                       tokenize=False, **kwargs)

    return apply, direct


def run(render, template, conv, opts):
    try:
        text = render(template, copy.deepcopy(conv["messages"]), copy.deepcopy(conv["tools"]),
                      opts["add_generation_prompt"], dict(opts["extra"]))
        return {"text": text}
    except Exception as e:  # the template raised, or failed on this input: the expected outcome to record
        return {"error": str(e), "error_type": type(e).__name__}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--templates", required=True, help="folder holding the .jinja files named in FAMILIES")
    ap.add_argument("--conversations", default="tests/data/chat/conversations.json")
    ap.add_argument("--out", required=True)
    ap.add_argument("--plain-jinja2", action="store_true", help="no transformers: jinja2 emulation only")
    args = ap.parse_args()

    os.makedirs(args.out, exist_ok=True)
    with open(args.conversations, encoding="utf-8") as f:
        data = json.load(f)
    special = data["special_tokens"]
    import jinja2

    plain = plain_jinja2_renderer()
    versions = {"python": platform.python_version(), "jinja2": jinja2.__version__}
    if args.plain_jinja2:
        primary, direct = plain, None
        versions["renderer"] = "jinja2 emulation of transformers (development only)"
    else:
        import transformers

        versions["transformers"] = transformers.__version__
        primary, direct = transformers_renderers(special)
        versions["renderer"] = "transformers PreTrainedTokenizerFast.apply_chat_template(tokenize=False)"
        probe = {} if primary is None else run(
            primary, "{{ messages[0].content }}", {"messages": [{"role": "user", "content": "x"}], "tools": None},
            {"add_generation_prompt": False, "extra": {}})
        if probe.get("text") != "x":
            # No tokenizer, or not the string this script expects (an API change): render with the function
            # apply_chat_template delegates to.
            print(f"apply_chat_template probe gave {probe!r}; using render_jinja_template", file=sys.stderr)
            primary, direct = direct, None
            versions["renderer"] = "transformers.utils.chat_template_utils.render_jinja_template"

    for family, filename in FAMILIES.items():
        with open(f"{args.templates}/{filename}", "rb") as f:
            raw = f.read()
        template = raw.decode("utf-8")
        cases = []
        disagree = {"render_jinja_template": 0, "plain_jinja2": 0}
        for ci, conv in enumerate(data["conversations"]):
            for opts in data["option_sets"]:
                got = run(primary, template, conv, opts)
                checks = [("plain_jinja2", plain)] + ([("render_jinja_template", direct)] if direct else [])
                for name, other in checks:
                    alt = run(other, template, conv, opts)
                    if alt.get("text") != got.get("text") or ("error" in alt) != ("error" in got):
                        disagree[name] += 1
                        print(f"{family} #{ci} {opts}: {name} differs from apply_chat_template", file=sys.stderr)
                cases.append({"conversation": ci, "options": opts, **got})
        out = {
            "generator": "tools/reference/make_chat_refs.py",
            "versions": versions,
            "template_file": filename,
            "template_sha256": hashlib.sha256(raw).hexdigest(),
            "template_fnv1a64": fnv1a64(raw),
            "special_tokens": special,
            "disagreements": disagree,
            "cases": cases,
        }
        path = f"{args.out}/expected_{family}.json"
        with open(path, "w", encoding="utf-8") as f:
            json.dump(out, f, ensure_ascii=False, indent=1)
            f.write("\n")
        errors = sum("error" in c for c in cases)
        print(f"{family}: {len(cases)} cases ({errors} raise), disagreements {disagree} -> {path}")


if __name__ == "__main__":
    main()
