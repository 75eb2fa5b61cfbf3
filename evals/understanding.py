"""Reading pictures: questions about held-out renders and about pictures the model drew itself, in
the trained wordings and in a family of wordings no training example uses, answers checked against
the ground truth.

    python evals/understanding.py --models tiny smollm2 --num 30 --drawn 8 [--json evals/results/understanding.json]

Held-out renders: picture i of the held-out split (`plan_question(i, "heldout", seed, wording,
topic)`: a render of a (kind, material, size) combination training never saw, at some stage of its
assembly) is asked every question topic in both wording families, and "Describe the furniture in
this image."; each model answers greedily and the answer is read with the data's own parser:

  kind       the furniture kind the answer names (follow.detect_kind) is the picture's
  material   the first material word in the answer is the picture's material
  parts      F1 of the parts named as in place (before any "missing" / "not yet" clause) against
             the parts the picture shows
  progress   a "yes"/"no" first word that matches whether every part is in place
  step       the guide's steps listed under the question: the first number in the answer is the
             step after which the picture was taken
  match      one step quoted ("Does this picture match "Step 3: ..."?"; half the time the
             picture's own step, else another): a "yes"/"no" first word that is right

Families: "trained" (wordings.QUESTIONS, the wordings of the "question" task of the training
mixture), "unseen" (wordings.UNSEEN_QUESTIONS, never trained on), "describe" (the description
request; its answer is scored for kind, material and parts at once) and "drawn": the model's own
story for held-out guide i (generate_story's defaults), each picture asked its kind, material,
which of the story's steps it shows and whether it matches its own step and a neighbouring one, in
the trained wordings. A drawn picture's truth is what it was drawn for (the guide's kind and
material, the step it follows), so the drawn row also pays for pictures drawn wrong.
"""

from __future__ import annotations

import argparse
import platform
import re
import time
from pathlib import Path

from hart_vlm.data.assembly import (MATERIALS, caption_messages, detect_kind, find_mentions, plan_guide,
                                    plan_question)
from hart_vlm.data.assembly.wordings import QUESTIONS

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


def yes_no(answer: str, truth: bool) -> float:
    first = (re.findall(r"[a-z]+", answer.lower()) or [""])[0]
    return float(first in ("yes", "no") and (first == "yes") == truth)


def first_number(answer: str) -> int | None:
    found = re.search(r"\d+", answer)
    return int(found.group()) if found else None


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
        return {"progress": yes_no(answer, present == set(names))}
    if topic == "step":
        return {"step": float(first_number(answer) == cap.num_steps)}
    if topic == "match":
        return {"match": yes_no(answer, cap.asked_step == cap.num_steps)}
    # the description answers all three
    return {"kind": float(detect_kind(answer) == guide.kind), "material": float(material_of(answer) == guide.material),
            "parts": parts_f1(guide.kind, answer, present, names, guide.description)}


TOPICS = tuple(QUESTIONS)  # kind, material, parts, progress, step, match
FAMILIES = ("trained", "unseen", "describe", "drawn")
METRICS = ("kind", "material", "parts", "progress", "step", "match")


def examples(num: int, seed: int):
    """(family, topic, question, CaptionPlan) for every question asked about the held-out renders."""
    for i in range(num):
        for family, wording in (("trained", "varied"), ("unseen", "unseen")):
            for topic in TOPICS:
                cap = plan_question(i, "heldout", seed, wording, topic)
                yield family, topic, cap.user_text, cap
        cap = plan_question(i, "heldout", seed, "varied", "kind")
        yield "describe", "describe", DESCRIBE, cap


def ask(model, picture, question: str) -> str:
    messages = [{"role": "user", "content": [{"type": "image", "image": picture}, {"type": "text", "text": question}]}]
    return model.chat(messages, seed=0, temperature=0.0, max_new_tokens=96, max_images=0).text


def drawn_questions(story_steps: list[str], k: int, rng) -> list[tuple[str, str, bool | int | None]]:
    """(topic, question, truth) about the picture of step k (1-based) of a story whose step texts
    are `story_steps`, in the trained wordings, each topic's wording picked by `rng`."""
    lines = [f"Step {j + 1}: {text}" for j, text in enumerate(story_steps)]

    def pick(topic: str) -> str:
        return QUESTIONS[topic][int(rng.integers(len(QUESTIONS[topic])))]

    asked = [("kind", pick("kind"), None), ("material", pick("material"), None),
             ("step", "\n".join([pick("step"), *lines]), k), ("match", pick("match").format(step=lines[k - 1]), True)]
    if len(lines) > 1:  # a neighbouring step: the right answer is no
        other = k + 1 if k < len(lines) else k - 1
        asked.append(("match", pick("match").format(step=lines[other - 1]), False))
    return asked


def evaluate_drawn(model, num: int, seed: int) -> list[dict]:
    """Rows of the "drawn" family: questions about the pictures of the model's own stories."""
    import numpy as np

    rows = []
    for i in range(num):
        plan = plan_guide(i, "heldout", seed, "varied")
        story = model.generate_story(plan.prompt, seed=seed + i)
        texts = [step.text for step in story.steps]
        rng = np.random.default_rng([seed, i])
        for k, step in enumerate(story.steps, start=1):
            if step.image is None:
                continue
            for topic, question, truth in drawn_questions(texts, k, rng):
                answer = ask(model, step.image, question)
                if topic == "kind":
                    value = float(detect_kind(answer) == plan.kind)
                elif topic == "material":
                    value = float(material_of(answer) == plan.material)
                elif topic == "step":
                    value = float(first_number(answer) == truth)
                else:
                    value = yes_no(answer, truth)
                rows.append({"family": "drawn", "topic": topic, "question": question, "answer": answer, topic: value})
    return rows


def evaluate(model, num: int, seed: int, resolution: int, drawn: int = 0) -> dict:
    rows = []
    for family, topic, question, cap in examples(num, seed):
        image = caption_messages(cap, resolution)["messages"][0]["content"]
        picture = next(item["image"] for item in image if item["type"] == "image")
        reply = ask(model, picture, question)
        rows.append({"family": family, "topic": topic, "question": question, "answer": reply, **score(topic, reply, cap)})
    rows += evaluate_drawn(model, drawn, seed)
    return {"rows": rows, "table": summarize(rows)}


def summarize(rows: list[dict]) -> dict[str, dict[str, float]]:
    table: dict[str, dict[str, float]] = {}
    for family in FAMILIES:
        for metric in METRICS:
            values = [r[metric] for r in rows if r["family"] == family and metric in r]
            if values:
                table.setdefault(family, {})[metric] = round(sum(values) / len(values), 3)
    return table


def main() -> None:
    import torch

    from hart_vlm.scripts import load_script, write_json

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["tiny", "smollm2"],
                        help="packaged models' names or saved HartVLM folders")
    parser.add_argument("--num", type=int, default=30, help="held-out renders, each asked every question")
    parser.add_argument("--drawn", type=int, default=8, help="held-out guides whose stories' pictures are asked about")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.num < 1 or args.drawn < 0:
        parser.error("--num must be >= 1 and --drawn >= 0")
    reconstruction = load_script(Path(__file__).with_name("reconstruction.py"), "evals_reconstruction")
    results = {}
    for spec in args.models:
        start = time.time()
        model = reconstruction.load_model(parser, spec, torch.device("cpu"))[0]
        results[spec] = evaluate(model, args.num, args.seed, model.config.image_size, args.drawn)
        results[spec]["seconds"] = round(time.time() - start, 1)
    print(f"reading: {args.num} held-out renders (every question, both wordings), the pictures of {args.drawn} "
          f"of the model's own stories; seed {args.seed}, {platform.processor() or platform.machine()}, greedy text")
    print("| model | questions | " + " | ".join(METRICS) + " |\n| --- | --- |" + " ---: |" * len(METRICS))
    for name, r in results.items():
        for family, m in r["table"].items():
            cells = [f"{m[k]:.2f}" if k in m else "-" for k in METRICS]
            print(f"| {name} | {family} | " + " | ".join(cells) + " |")
    if args.json:
        write_json(args.json, results, indent=1)


if __name__ == "__main__":
    main()
