"""Reading pictures: questions about held-out renders, in the trained wordings and in a family of
wordings no training example uses, answers checked against the ground truth.

    python evals/understanding.py --models tiny smollm2 --num 40 [--json evals/results/understanding.json]

For question example i of the held-out split (`plan_question(i, "heldout", seed, wording)`: a render
of a (kind, material, size) combination training never saw, at some stage of its assembly, and a
question about its kind, material, parts in place or progress; and the same pictures asked
"Describe the furniture in this image." for the description family), each model answers greedily
and the answer is read with the data's own parser:

  kind       the furniture kind the answer names (follow.detect_kind) is the picture's
  material   the first material word in the answer is the picture's material
  parts      F1 of the parts named as in place (before any "missing" / "not yet" clause) against
             the parts the picture shows
  progress   a "yes"/"no" first word that matches whether every part is in place

Families: "trained" (wordings.QUESTIONS, the wordings of the training data of models trained with
the "question" task), "unseen" (wordings.UNSEEN_QUESTIONS) and "describe" (the one request the
tiny model's data used; its answer is scored for kind, material and parts at once). The tiny model
never saw the question task: its rows measure how far its descriptions carry.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import time
from pathlib import Path

from hart_vlm.data.assembly import MATERIALS, caption_messages, detect_kind, find_mentions, plan_question

DESCRIBE = "Describe the furniture in this image."
_NEGATION = re.compile(r"\b(missing|not yet|not fitted|still to come|but not|to come)\b", re.IGNORECASE)


def material_of(answer: str) -> str | None:
    found = [(m.start(), name) for name in MATERIALS for m in re.finditer(rf"\b{name}\b", answer, re.IGNORECASE)]
    return min(found)[1] if found else None


def parts_f1(kind: str, answer: str, true_parts: set[str], part_names: tuple[str, ...], desc: str = "") -> float:
    said = answer.replace(desc, "") if desc else answer  # "a desk with two drawers" names no part in place
    negation = _NEGATION.search(said)
    if negation:  # the parts named in place come before the clause that says what is missing
        said = said[: negation.start()]
        cut = max(said.rfind(sep) for sep in (";", ". ", ", while"))
        said = said[:cut] if cut > 0 else said
    named = {n for m in find_mentions(kind, said) for n in m.parts if n in part_names}
    if not named and not true_parts:
        return 1.0
    hits = len(named & true_parts)
    return 0.0 if hits == 0 else 2 * hits / (len(named) + len(true_parts))


def score(topic: str, answer: str, cap) -> dict[str, float]:
    guide = cap.guide
    present = set(cap.present)
    names = guide.furniture.part_names
    if topic == "kind":
        return {"kind": float(detect_kind(answer) == guide.kind)}
    if topic == "material":
        return {"material": float(material_of(answer) == guide.material)}
    if topic == "parts":
        return {"parts": parts_f1(guide.kind, answer, present, names, guide.description)}
    if topic == "progress":
        first = (re.findall(r"[a-z]+", answer.lower()) or [""])[0]
        return {"progress": float(first in ("yes", "no") and (first == "yes") == (present == set(names)))}
    # the description answers all three
    return {"kind": float(detect_kind(answer) == guide.kind), "material": float(material_of(answer) == guide.material),
            "parts": parts_f1(guide.kind, answer, present, names, guide.description)}


def examples(num: int, seed: int):
    """(family, topic, question, CaptionPlan) for every question asked."""
    for i in range(num):
        for family, wording in (("trained", "varied"), ("unseen", "unseen")):
            cap = plan_question(i, "heldout", seed, wording)
            yield family, cap.task.split(":")[1], cap.user_text, cap
        cap = plan_question(i, "heldout", seed, "varied")
        yield "describe", "describe", DESCRIBE, cap


def evaluate(model, num: int, seed: int, resolution: int) -> dict:
    rows = []
    for family, topic, question, cap in examples(num, seed):
        image = caption_messages(cap, resolution)["messages"][0]["content"]
        picture = next(item["image"] for item in image if item["type"] == "image")
        messages = [{"role": "user", "content": [{"type": "image", "image": picture}, {"type": "text", "text": question}]}]
        reply = model.chat(messages, seed=0, temperature=0.0, max_new_tokens=96, max_images=0)
        rows.append({"family": family, "topic": topic, "question": question, "answer": reply.text,
                     **score(topic, reply.text, cap)})
    return {"rows": rows, "table": summarize(rows)}


def summarize(rows: list[dict]) -> dict[str, dict[str, float]]:
    table: dict[str, dict[str, float]] = {}
    for family in ("trained", "unseen", "describe"):
        for metric in ("kind", "material", "parts", "progress"):
            values = [r[metric] for r in rows if r["family"] == family and metric in r]
            if values:
                table.setdefault(family, {})[metric] = round(sum(values) / len(values), 3)
    return table


def main() -> None:
    import hart_vlm

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["tiny", "smollm2"])
    parser.add_argument("--num", type=int, default=40, help="held-out pictures per family")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.num < 1:
        parser.error("--num must be >= 1")
    results = {}
    for name in args.models:
        start = time.time()
        model = hart_vlm.load_default(name)
        results[name] = evaluate(model, args.num, args.seed, model.config.image_size)
        results[name]["seconds"] = round(time.time() - start, 1)
    print(f"reading held-out renders ({args.num} per family, seed {args.seed}), "
          f"{platform.processor() or platform.machine()}, greedy text")
    print("| model | wording | kind | material | parts F1 | progress |\n| --- | --- | --- | --- | --- | --- |")
    for name, r in results.items():
        for family, m in r["table"].items():
            cells = [f"{m[k]:.2f}" if k in m else "-" for k in ("kind", "material", "parts", "progress")]
            print(f"| {name} | {family} | " + " | ".join(cells) + " |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
