"""Export: a `datasets.Dataset` with Image features, and the JSONL chat format of DESIGN.md §7.

Rows are guides (task "guide") followed, when asked, by single-picture examples (task "draw":
text -> image, or "describe": image -> text). The JSONL stores images as PNG files referenced by
paths relative to the JSONL's folder: images/<split>/<index>_<step>.png for guides and
images/<split>/caption_<index>.png for the others.
"""

from __future__ import annotations

import json
import os
import multiprocessing
from collections.abc import Iterator
from functools import partial
from pathlib import Path

from tqdm import tqdm

from .guide import SPLITS, generate_caption_example, generate_guide, plan_caption

def _meta(task: str, split: str, index: int, seed: int, kind: str, params: dict) -> dict:
    return {"id": f"{split}-{task}-{index:06d}", "task": task, "split": split, "index": index, "seed": seed,
            "kind": kind, "params": json.dumps(params, sort_keys=True)}


def _validate(num: int, split: str, seed: int, resolution: int) -> None:
    if not isinstance(num, int) or num < 0:
        raise ValueError(f"num must be a non-negative int, got {num!r}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    if not isinstance(resolution, int) or not 16 <= resolution <= 2048:
        raise ValueError(f"resolution must be an int in [16, 2048], got {resolution!r}")


def _row(task: str, index: int, split: str, seed: int, resolution: int, image_dir: Path | None,
         overview: bool = False, wording: str = "data") -> dict:
    """One example; with `image_dir`, images are written there as PNG and replaced by relative paths.
    With `overview`, a guide's answer opens with its plan line (GuidePlan.overview); `wording`
    words its prompt (plan_guide: "data", "varied" or "unseen")."""
    if task == "guide":
        guide = generate_guide(index, split, seed, resolution, wording)
        meta = _meta("guide", split, index, seed, guide.kind, guide.params)
        if image_dir is None:
            return {**meta, "messages": guide.to_messages("pil", overview=overview)}
        paths = []
        for k, step in enumerate(guide.steps):
            name = f"{index:06d}_{k + 1}.png"
            step.image.save(image_dir / name)
            paths.append(f"images/{split}/{name}")
        return {**meta, "messages": guide.to_messages("path", paths, overview=overview)}
    cap = plan_caption(index, split, seed)
    example = generate_caption_example(index, split, seed, resolution)
    meta = _meta(cap.task, split, index, seed, cap.guide.kind, {**cap.guide.params, "steps_shown": cap.num_steps})
    if image_dir is not None:
        name = f"caption_{index:06d}.png"
        for message in example["messages"]:
            for item in message["content"]:
                if item["type"] == "image":
                    item["image"].save(image_dir / name)
                    item["image"] = f"images/{split}/{name}"
    return {**meta, **example}


def _jobs(num: int, include_captions: bool) -> list[tuple[str, int]]:
    return [("guide", i) for i in range(num)] + ([("caption", i) for i in range(num)] if include_captions else [])


def _run(job: tuple[str, int], split: str, seed: int, resolution: int, image_dir: Path | None,
         overview: bool = False, wording: str = "data") -> dict:
    return _row(job[0], job[1], split, seed, resolution, image_dir, overview, wording)


def write_jsonl(out_dir: str | Path, num: int, split: str = "train", seed: int = 0, resolution: int = 128,
                include_captions: bool = False, workers: int = 1, progress: bool = False,
                overview: bool = False, wording: str = "data") -> Path:
    """Write `num` guides (and `num` caption examples) to out_dir/<split>.jsonl with their PNGs;
    with `overview`, each guide's answer opens with its one-line plan (GuidePlan.overview); `wording`
    words the guide prompts (plan_guide: "data", "varied" or "unseen").

    Output is byte-identical for the same arguments, whatever `workers` is.
    """
    _validate(num, split, seed, resolution)
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive int, got {workers!r}")
    out_dir = Path(out_dir)
    image_dir = out_dir / "images" / split
    image_dir.mkdir(parents=True, exist_ok=True)
    jobs = _jobs(num, include_captions)
    work = partial(_run, split=split, seed=seed, resolution=resolution, image_dir=image_dir, overview=overview,
                   wording=wording)
    path = out_dir / f"{split}.jsonl"
    partial_path = out_dir / f".{split}.jsonl.tmp"  # renamed onto `path` once every row is written
    try:
        with (open(partial_path, "w", encoding="utf-8") as f,
              tqdm(total=len(jobs), disable=not progress, desc=split) as bar):
            if workers == 1:
                rows: Iterator[dict] = map(work, jobs)
                pool = None
            else:
                pool = multiprocessing.Pool(workers)
                rows = pool.imap(work, jobs, chunksize=8)
            try:
                for row in rows:
                    f.write(json.dumps(row, ensure_ascii=False) + "\n")
                    bar.update(1)
            finally:
                if pool is not None:
                    pool.close()
                    pool.join()
    except BaseException:
        partial_path.unlink(missing_ok=True)
        raise
    os.replace(partial_path, path)
    return path


def _features():
    from datasets import Features, Image, List, Value

    item = {"type": Value("string"), "text": Value("string"), "image": Image()}
    return Features({"id": Value("string"), "task": Value("string"), "split": Value("string"),
                     "index": Value("int64"), "seed": Value("int64"), "kind": Value("string"),
                     "params": Value("string"),
                     "messages": List({"role": Value("string"), "content": List(item)})})


def _dataset_rows(num: int, split: str, seed: int, resolution: int, include_captions: bool,
                  overview: bool = False, wording: str = "data") -> Iterator[dict]:
    for task, index in _jobs(num, include_captions):
        row = _row(task, index, split, seed, resolution, None, overview, wording)
        for message in row["messages"]:
            message["content"] = [{"type": c["type"], "text": c.get("text"), "image": c.get("image")}
                                  for c in message["content"]]
        yield row


def to_hf_dataset(num: int, split: str = "train", seed: int = 0, resolution: int = 128,
                  include_captions: bool = False, cache_dir: str | None = None, overview: bool = False,
                  wording: str = "data"):
    """A `datasets.Dataset` of the same rows as `write_jsonl`, images as `datasets.Image`
    features inside "messages" (items carry "type", "text" and "image"; the unused one is None)."""
    from datasets import Dataset

    _validate(num, split, seed, resolution)
    return Dataset.from_generator(
        _dataset_rows, features=_features(), cache_dir=cache_dir,
        gen_kwargs=dict(num=num, split=split, seed=seed, resolution=resolution, include_captions=include_captions,
                        overview=overview, wording=wording))
