"""General questions: does a model still answer what has nothing to do with furniture, in text?

    python evals/general_questions.py --models smollm2-base smollm2 tiny [--out evals/results/general_questions.json]

60 questions with known short answers (facts, arithmetic, words). A reply is right when it
contains one of the accepted answers (a regular expression, case-insensitive) and holds no
picture. `smollm2-base` is the pretrained SmolLM2-135M-Instruct alone, through transformers; the
other names are packaged hart-vlm models (`hart_vlm.load_default(name)`). Text is greedy, with the
models' own chat templates. None of these questions is among the general conversations the
models are trained on (training/make_general_chat.py); the script checks that.
"""

from __future__ import annotations

import argparse
import platform
import re
import sys
import time
from pathlib import Path

from hart_vlm.scripts import write_json

QUESTIONS: tuple[tuple[str, str], ...] = (
    ("What is the capital of France?", r"\bparis\b"),
    ("What is the capital of Japan?", r"\btokyo\b"),
    ("What is the capital of Italy?", r"\brome\b"),
    ("What is the capital of Germany?", r"\bberlin\b"),
    ("What is the capital of Spain?", r"\bmadrid\b"),
    ("What is the capital of the United Kingdom?", r"\blondon\b"),
    ("What is the capital of Egypt?", r"\bcairo\b"),
    ("What is the capital of Russia?", r"\bmoscow\b"),
    ("What is the capital of China?", r"\bbeijing\b"),
    ("What is 2+2?", r"\b4\b|\bfour\b"),
    ("What is 5 plus 3?", r"\b8\b|\beight\b"),
    ("What is 10 minus 4?", r"\b6\b|\bsix\b"),
    ("What is 3 times 3?", r"\b9\b|\bnine\b"),
    ("What is half of 10?", r"\b5\b|\bfive\b"),
    ("How many legs does a dog have?", r"\b4\b|\bfour\b"),
    ("What colour is grass?", r"\bgreen\b"),
    ("What is frozen water called?", r"\bice\b"),
    ("How many hours are in a day?", r"\b24\b|twenty-four"),
    ("How many days are in a week?", r"\b7\b|\bseven\b"),
    ("How many months are in a year?", r"\b12\b|\btwelve\b"),
    ("How many minutes are in an hour?", r"\b60\b|\bsixty\b"),
    ("What gas do plants take in from the air?", r"carbon dioxide|\bco2\b"),
    ("What is the largest planet in our solar system?", r"\bjupiter\b"),
    ("What is the star at the centre of our solar system?", r"\bsun\b"),
    ("At what temperature in Celsius does water freeze?", r"\b0\b|\bzero\b"),
    ("Who painted the Mona Lisa?", r"leonardo|da vinci"),
    ("Who wrote the Harry Potter books?", r"rowling"),
    ("What do bees make?", r"\bhoney\b"),
    ("What is the opposite of hot?", r"\bcold\b"),
    ("What is the plural of mouse?", r"\bmice\b"),
    ("What is the chemical formula of water?", r"h2o|h₂o"),
    ("How many sides does a triangle have?", r"\b3\b|\bthree\b"),
    ("How many sides does a square have?", r"\b4\b|\bfour\b"),
    ("How many sides does a hexagon have?", r"\b6\b|\bsix\b"),
    ("Who was the first president of the United States?", r"washington"),
    ("What is the currency of Japan?", r"\byen\b"),
    ("Which animal says moo?", r"\bcows?\b"),
    ("What is a baby cat called?", r"\bkittens?\b"),
    ("What colour is a ripe banana?", r"\byellow\b"),
    ("What is the largest mammal?", r"blue whale"),
    ("What does a caterpillar turn into?", r"butterfl|moth"),
    ("What planet do we live on?", r"\bearth\b"),
    ("What language is spoken in France?", r"\bfrench\b"),
    ("What language is spoken in Germany?", r"\bgerman\b"),
    ("On which continent is Egypt?", r"\bafrica\b"),
    ("What is the longest river in Africa?", r"\bnile\b"),
    ("What organ pumps blood through the body?", r"\bheart\b"),
    ("What do we breathe in to stay alive?", r"\boxygen\b|\bair\b"),
    ("What is the closest planet to the Sun?", r"\bmercury\b"),
    ("How many wheels does a bicycle have?", r"\b2\b|\btwo\b"),
    ("What is the main ingredient of bread?", r"\bflour\b|\bwheat\b"),
    ("Which animal is known as the king of the jungle?", r"\blions?\b"),
    ("What colour do you get when you mix blue and yellow?", r"\bgreen\b"),
    ("What is the freezing point of water in Fahrenheit?", r"\b32\b"),
    ("Who discovered penicillin?", r"fleming"),
    ("What is the square root of 9?", r"\b3\b|\bthree\b"),
    ("Which season comes after winter?", r"\bspring\b"),
    ("What instrument has black and white keys?", r"\bpiano\b"),
    ("What is the hardest natural substance?", r"\bdiamonds?\b"),
    ("What do you call a shape with eight sides?", r"\boctagon\b"),
)


def score(answer: str, pattern: str, images: int) -> bool:
    return images == 0 and re.search(pattern, answer, re.IGNORECASE) is not None


def base_answers(max_new_tokens: int) -> list[tuple[str, int]]:
    """The pretrained SmolLM2-135M-Instruct, greedy, its own chat template."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hart_vlm.llms import llm_folder

    folder = llm_folder("smollm2")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    out = []
    for question, _ in QUESTIONS:
        ids = tokenizer.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True,
                                            return_tensors="pt", return_dict=True)
        with torch.no_grad():
            gen = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False)
        out.append((tokenizer.decode(gen[0, ids["input_ids"].shape[1]:], skip_special_tokens=True), 0))
    return out


def model_answers(name: str, max_new_tokens: int, dtype: str = "float32") -> list[tuple[str, int]]:
    import torch

    import hart_vlm

    model = hart_vlm.load_default(name, dtype=dtype if dtype == "auto" else getattr(torch, dtype))
    out = []
    for question, _ in QUESTIONS:
        reply = model.chat([{"role": "user", "content": question}], reply="free", seed=0, temperature=0.0,
                           max_new_tokens=max_new_tokens)
        out.append((reply.text, len(reply.images)))
    return out


def check_disjoint() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training"))
    from make_general_chat import general_prompts

    overlap = {q for q, _ in QUESTIONS} & set(general_prompts())
    if overlap:
        raise ValueError(f"benchmark questions among the training prompts: {sorted(overlap)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["smollm2-base", "smollm2", "tiny"])
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--out", default=None, help="write the answers and scores as JSON")
    parser.add_argument("--dtype", choices=["float32", "auto"], default="float32",
                        help="the packaged models' load_default dtype (auto: this machine's fastest)")
    args = parser.parse_args()
    check_disjoint()
    results = {}
    for name in args.models:
        start = time.time()
        answers = (base_answers(args.max_new_tokens) if name == "smollm2-base"
                   else model_answers(name, args.max_new_tokens, args.dtype))
        rows = [{"question": q, "answer": a, "images": n, "right": score(a, pattern, n)}
                for (q, pattern), (a, n) in zip(QUESTIONS, answers)]
        results[name] = {"right": sum(r["right"] for r in rows), "with_pictures": sum(r["images"] > 0 for r in rows),
                         "seconds": round(time.time() - start, 1), "rows": rows}
    print(f"general questions ({len(QUESTIONS)}), {platform.processor() or platform.machine()}, greedy text, "
          f"dtype {args.dtype}")
    print("| model | right | answers with a picture | seconds |\n| --- | --- | --- | --- |")
    for name, r in results.items():
        print(f"| {name} | {r['right']} / {len(QUESTIONS)} | {r['with_pictures']} | {r['seconds']} |")
    if args.out:
        write_json(args.out, results, indent=1)


if __name__ == "__main__":
    main()
