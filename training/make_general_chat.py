"""Write the general conversations that keep a pretrained LLM's manners while it learns pictures.

    python training/make_general_chat.py --out training/data/general_chat.jsonl

The project ships no hub data, so the answers are the base model's own: SmolLM2-135M-Instruct
(the `smollm2` backbone, hart_vlm.llms) answers every prompt below, sampled at its recommended
temperature 0.2 and top-p 0.9 from a fixed seed, batched. An answer is kept when it ends by
itself (within `--max-new-tokens`) and does not repeat a line or a sentence three times; the
rest are dropped and counted. Trained on alongside the assembly data, these conversations teach
the model that a question that asks for no picture gets text and no picture, in the base model's
own words (self-distillation: nothing new is learned from them but to stay as it was).

The prompts are this project's own: everyday questions, explanations, advice, arithmetic,
writing, greetings and questions about furniture that ask for no guide. None of them is in the
general-question benchmark (evals/general_questions.py checks that).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

HANDWRITTEN = (
    "Hello! Who are you?", "Hi there!", "Good morning! How are you today?", "What can you do?",
    "Can you help me with something?", "Thanks for your help!", "Tell me a fun fact.", "Tell me a joke.",
    "What's your name?", "Are you a robot?", "How do I boil an egg?", "How do I make a cup of tea?",
    "How do I change a flat bicycle tyre?", "How can I save money on groceries?", "How do I start running?",
    "What should I pack for a weekend camping trip?", "How do I write a good cover letter?",
    "How do I care for a cactus?", "How can I learn a new language faster?", "How do I make pancakes?",
    "What is a healthy breakfast?", "How do I clean a cast iron pan?", "How do I get better at chess?",
    "What is the difference between weather and climate?", "Why is the sky blue?", "Why do leaves change colour in autumn?",
    "How does a rainbow form?", "What causes the seasons?", "Why do we dream?", "How do vaccines work?",
    "What is gravity?", "What is an atom?", "What is DNA?", "What is the internet?", "What is a black hole?",
    "How does a refrigerator keep food cold?", "What is the water cycle?", "How do bees make honey?",
    "What is inflation?", "What is a budget?", "What does a librarian do?", "What does a nurse do?",
    "Write a short poem about the sea.", "Write a haiku about autumn.", "Write a two-sentence story about a dragon.",
    "Give me a name for a pet goldfish.", "Suggest a title for a mystery novel.", "Write a thank-you note to a teacher.",
    "What are the primary colours?", "How many days are in a leap year?", "How many continents are there?",
    "What is the largest ocean on Earth?", "What is the boiling point of water in Celsius?", "Who wrote Romeo and Juliet?",
    "What language is spoken in Brazil?", "What is the tallest animal?", "What is the fastest land animal?",
    "How many legs does a spider have?", "What do pandas eat?", "What is the chemical symbol for gold?",
    "What is photosynthesis?", "What is the speed of light?", "What planet is known as the Red Planet?",
    "What is a noun?", "What is a verb?", "What is the past tense of 'run'?", "What is a synonym for 'happy'?",
    "Is a tomato a fruit or a vegetable?", "Why do cats purr?", "Why should I drink water?",
    "How can I be more productive?", "How do I calm down before an exam?", "How can I sleep better?",
    "What is a good hobby to pick up?", "Recommend a board game for a family evening.", "What is mindfulness?",
    "How do I plant tomatoes?", "How often should I water a houseplant?", "How do I make a paper aeroplane?",
    "What is Python used for?", "What is a variable in programming?", "Write a Python function that adds two numbers.",
    "What does HTML stand for?", "What is an algorithm?", "What is machine learning?",
    # furniture and home questions that ask for no guide: the answer is text, not a picture
    "What is the difference between oak and pine wood?", "Which wood is best for a kitchen table?",
    "How do I get a scratch out of a wooden table?", "How should I arrange furniture in a small living room?",
    "How do I clean a fabric sofa?", "What colour should I paint my bedroom?", "How do I stop a chair from wobbling?",
    "Is walnut wood expensive?", "What is flat-pack furniture?", "What tools do I need in a basic home toolkit?",
    "How do I hang a picture on the wall?", "How do I keep my desk tidy?", "What is a good height for a desk?",
    "How do I choose a mattress?", "How can I make a small room look bigger?", "What is an Allen key?",
)

# Templates with fillers: more prompts of the same kinds, in other words.
TEMPLATES = {
    "Explain {} in simple terms.": ("electricity", "the stock market", "recycling", "a volcano", "an earthquake",
                                     "the moon's phases", "evolution", "a computer", "the immune system", "tides",
                                     "a democracy", "interest on savings", "climate change", "a solar panel",
                                     "the heart", "friction", "magnetism", "an eclipse"),
    "Give me three tips for {}.": ("staying focused", "eating healthier", "learning to swim", "public speaking",
                                    "saving energy at home", "travelling on a budget", "taking better photos",
                                    "making friends in a new city", "keeping a journal", "studying for a test",
                                    "staying warm in winter", "reading more books", "drinking more water",
                                    "waking up early", "cooking for one"),
    "What is {} plus {}?": None,
    "What is {} times {}?": None,
    "Write a short poem about {}.": ("the moon", "a cat", "friendship", "the city at night", "rain", "the mountains",
                                      "a garden", "snow", "the sun", "coffee"),
    "How do I {}?": ("tie a tie", "make a smoothie", "wash my car", "write an email to my boss", "bake bread",
                     "start a vegetable garden", "fold a shirt", "make a budget", "learn to juggle",
                     "fix a dripping tap", "iron a shirt", "make rice", "draw a cat", "train my dog to sit"),
    "What is a {}?": ("haiku", "mammal", "planet", "prime number", "noun phrase", "rainforest", "galaxy",
                      "triangle", "metaphor", "molecule", "battery", "desert"),
    "Can you describe {} in a few sentences?": ("a beach at sunset", "a busy market", "a quiet library",
                                                 "a thunderstorm", "a forest in spring", "a snowy village"),
}
NUMBER_PAIRS = ((3, 4), (12, 7), (25, 17), (9, 8), (100, 45), (6, 7), (15, 15), (48, 2), (11, 11), (30, 12))


def general_prompts() -> list[str]:
    prompts = list(HANDWRITTEN)
    for template, fillers in TEMPLATES.items():
        if fillers is None:
            prompts += [template.format(a, b) for a, b in NUMBER_PAIRS]
        else:
            prompts += [template.format(f) for f in fillers]
    if len(set(prompts)) != len(prompts):
        raise ValueError("the general prompts hold duplicates")
    return prompts


def repetitive(text: str) -> bool:
    """A line or sentence said three times or more: the base model looping."""
    pieces = [p.strip().lower() for p in re.split(r"[\n.!?]+", text) if len(p.strip()) > 12]
    return any(count >= 3 for count in (pieces.count(p) for p in set(pieces)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="training/data/general_chat.jsonl")
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hart_vlm.llms import llm_folder
    from hart_vlm.precision import auto_dtype

    folder = llm_folder("smollm2")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=auto_dtype("cpu")).eval()
    prompts = general_prompts()
    torch.manual_seed(args.seed)
    kept, dropped = [], {"unfinished": 0, "repetitive": 0}
    for start in range(0, len(prompts), args.batch_size):
        batch = prompts[start : start + args.batch_size]
        texts = [tokenizer.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True, tokenize=False)
                 for p in batch]
        enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            out = model.generate(**enc, max_new_tokens=args.max_new_tokens, do_sample=True, temperature=0.2, top_p=0.9)
        for prompt, ids in zip(batch, out[:, enc["input_ids"].shape[1]:]):
            ids = ids.tolist()
            if tokenizer.eos_token_id not in ids:
                dropped["unfinished"] += 1
                continue
            answer = tokenizer.decode(ids[: ids.index(tokenizer.eos_token_id)], skip_special_tokens=True).strip()
            if not answer or repetitive(answer):
                dropped["repetitive"] += 1
                continue
            kept.append({"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]})
        print(f"{min(start + args.batch_size, len(prompts))}/{len(prompts)} prompts, {len(kept)} kept", flush=True)
    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in kept), encoding="utf-8")
    tmp.replace(out_path)
    print(f"wrote {len(kept)} conversations to {out_path}; dropped {dropped}")


if __name__ == "__main__":
    main()
