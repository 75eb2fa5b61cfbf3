import json

import datasets
import numpy as np
from PIL import Image

from hart_vlm.cli import main
from hart_vlm.data.assembly import generate_caption_example, generate_guide, plan_guide, to_hf_dataset, write_jsonl


def _files(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_jsonl_same_seed_same_bytes_and_parallel_workers(tmp_path):
    a = write_jsonl(tmp_path / "a", 4, "validation", seed=2, resolution=32, include_captions=True)
    b = write_jsonl(tmp_path / "b", 4, "validation", seed=2, resolution=32, include_captions=True, workers=2)
    assert a.name == "validation.jsonl"
    assert _files(a.parent) == _files(b.parent)
    c = write_jsonl(tmp_path / "c", 4, "validation", seed=3, resolution=32, include_captions=True)
    assert _files(a.parent) != _files(c.parent)


def test_jsonl_loads_with_datasets_and_round_trips(tmp_path):
    path = write_jsonl(tmp_path, 3, "train", seed=0, resolution=48, include_captions=True)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(rows) == 6 and [r["task"] for r in rows[:3]] == ["guide"] * 3
    loaded = datasets.load_dataset("json", data_files=str(path), split="train")
    assert len(loaded) == len(rows)

    def strip_none(x):
        if isinstance(x, dict):
            return {k: strip_none(v) for k, v in x.items() if v is not None}
        if isinstance(x, list):
            return [strip_none(v) for v in x]
        return x

    assert [strip_none(r) for r in loaded] == rows
    # Guide rows follow DESIGN.md §7 and their PNGs are the guide's renders.
    guide = generate_guide(1, "train", seed=0, resolution=48)
    messages = rows[1]["messages"]
    assert messages[0] == {"role": "user", "content": [{"type": "text", "text": guide.prompt}]}
    content = messages[1]["content"]
    assert content[0] == {"type": "text", "text": f"Step 1: {guide.steps[0].text}"}
    assert content[1] == {"type": "image", "image": "images/train/000001_1.png"}
    for k, step in enumerate(guide.steps):
        png = Image.open(tmp_path / content[2 * k + 1]["image"])
        assert np.array_equal(np.asarray(png), np.asarray(step.image))
    assert json.loads(rows[1]["params"]) == guide.params
    # Caption rows reference their one image.
    example = generate_caption_example(0, "train", seed=0, resolution=48)
    images = [i["image"] for m in rows[3]["messages"] for i in m["content"] if i["type"] == "image"]
    expected = [i["image"] for m in example["messages"] for i in m["content"] if i["type"] == "image"]
    assert images == ["images/train/caption_000000.png"]
    assert np.array_equal(np.asarray(Image.open(tmp_path / images[0])), np.asarray(expected[0]))


def test_hf_dataset_has_image_features(tmp_path):
    ds = to_hf_dataset(2, "heldout", seed=1, resolution=32, include_captions=True, cache_dir=str(tmp_path))
    assert isinstance(ds.features["messages"].feature["content"].feature["image"], datasets.Image)
    assert len(ds) == 4 and ds[0]["split"] == "heldout"
    guide = generate_guide(0, "heldout", seed=1, resolution=32)
    content = ds[0]["messages"][1]["content"]
    assert content[0]["text"] == f"Step 1: {guide.steps[0].text}" and content[0]["image"] is None
    assert np.array_equal(np.asarray(content[1]["image"].convert("RGB")), np.asarray(guide.steps[0].image))


def test_cli_writes_dataset(tmp_path, capsys):
    out = tmp_path / "cli"
    code = main(["data", "assembly", "--out", str(out), "--num", "2", "--split", "validation",
                 "--resolution", "32", "--seed", "4"])
    assert code == 0
    assert (out / "validation.jsonl").read_text().count("\n") == 2
    assert "validation.jsonl" in capsys.readouterr().out
    assert _files(out) == _files(write_jsonl(tmp_path / "api", 2, "validation", 4, 32).parent)


def test_overview_flag_opens_each_guide_answer_with_its_plan(tmp_path):
    code = main(["data", "assembly", "--out", str(tmp_path / "cli"), "--num", "2", "--resolution", "32", "--overview"])
    assert code == 0
    rows = [json.loads(line) for line in (tmp_path / "cli" / "train.jsonl").read_text().splitlines()]
    for row in rows:
        guide = generate_guide(row["index"], "train", seed=0, resolution=32)
        first = row["messages"][1]["content"][0]["text"]
        assert first == f"{guide.plan.overview}\nStep 1: {guide.steps[0].text}"
    ds = to_hf_dataset(1, "train", seed=0, resolution=32, overview=True, cache_dir=str(tmp_path / "cache"))
    assert ds[0]["messages"][1]["content"][0]["text"] == rows[0]["messages"][1]["content"][0]["text"]


def test_wording_flag_rewords_guide_prompts_and_nothing_else(tmp_path):
    out = tmp_path / "cli"
    assert main(["data", "assembly", "--out", str(out), "--num", "3", "--resolution", "32", "--wording", "varied"]) == 0
    rows = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    plain = [json.loads(line) for line in write_jsonl(tmp_path / "plain", 3, resolution=32).read_text().splitlines()]
    for row, base in zip(rows, plain):
        assert row["messages"][0]["content"][0]["text"] == plan_guide(row["index"], "train", 0, "varied").prompt
        assert row["messages"][1] == base["messages"][1] and row["params"] == base["params"]
    ds = to_hf_dataset(1, "train", seed=0, resolution=32, wording="varied", cache_dir=str(tmp_path / "cache"))
    assert ds[0]["messages"][0]["content"][0]["text"] == rows[0]["messages"][0]["content"][0]["text"]
