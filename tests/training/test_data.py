"""Training data: checked JSONL rows, the assembly mixture, the batch stream, the collator."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from accelerate.data_loader import BatchSamplerShard, SkipBatchSampler
from PIL import Image

from hart_vlm import HartVLMConfig, HartVLMProcessor
from hart_vlm.data.assembly import plan_guide
from hart_vlm.text_tokenizer import load_text_tokenizer
from hart_vlm.training.batching import ChatCollator, GroupedBatchSampler
from hart_vlm.training.data import AssemblyMixture, ChatDataset, read_chat_jsonl

GOOD = {"messages": [{"role": "user", "content": [{"type": "text", "text": "Draw a stool."}]},
                     {"role": "assistant", "content": [{"type": "text", "text": "Here: "},
                                                       {"type": "image", "image": "images/a.png"}]}]}


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "images").mkdir()
    Image.new("RGB", (40, 30), (200, 10, 10)).save(tmp_path / "images" / "a.png")
    (tmp_path / "images" / "broken.png").write_bytes(b"not a png")
    return tmp_path


def write(folder, rows: list[str]):
    path = folder / "data.jsonl"
    path.write_bytes(("\n".join(rows) + "\n").encode("latin-1" if "\xe9" in "".join(rows) else "utf-8"))
    return path


def test_images_outside_the_data_folder_only_when_allowed(folder):
    (folder / "data").mkdir()
    path = write(folder / "data", [with_image("../images/a.png")])
    with pytest.raises(ValueError, match="leaves the data file's folder"):
        read_chat_jsonl(path)
    examples, _ = read_chat_jsonl(path, images_outside=True)
    assert examples[0].messages[1]["content"][1]["image"] == str((folder / "images" / "a.png").resolve())


def with_image(image: str) -> str:
    row = json.loads(json.dumps(GOOD))
    row["messages"][1]["content"][1]["image"] = image
    return json.dumps(row)


@pytest.mark.parametrize("row, problem", [
    ('{"messages": [', "broken JSON"),
    ('{"conversation": []}', "non-empty 'messages' list"),
    (with_image("images/missing.png"), r"messages\[1\]\['content'\]\[1\]: image file not found"),
    (with_image("images/broken.png"), "cannot read image file"),
    (json.dumps({"messages": [{"role": "robot", "content": "hi"}]}), "role 'robot'"),
    (json.dumps({"messages": [{"role": "user", "content": [{"type": "video", "video": "x"}]}]}), "type 'video'"),
    (json.dumps({"messages": [{"role": "user", "content": "Only a question."}]}), "no assistant message"),
    (json.dumps({"messages": [{"role": "assistant", "content": "Hi"}, {"role": "user", "content": "x"}]}), "starts with"),
    (with_image("../images/a.png"), "leaves the data file's folder"),
    (with_image("images/../../etc/a.png"), "leaves the data file's folder"),
    (with_image("/etc/passwd"), "leaves the data file's folder"),
    ('{"messages": "caf\xe9"}', r"not UTF-8 text \(byte 0xe9 at column 18\)"),
])
def test_bad_rows_raise_naming_file_and_line_or_are_counted_when_skipped(folder, row, problem):
    path = write(folder, [json.dumps(GOOD), "", row, json.dumps(GOOD)])
    with pytest.raises(ValueError, match=rf"^{re.escape(str(path))}:3: .*{problem}"):
        read_chat_jsonl(path)
    examples, skipped = read_chat_jsonl(path, skip_bad_rows=True)
    assert [e.source for e in examples] == [f"{path}:1", f"{path}:4"]
    assert len(skipped) == 1 and skipped[0].startswith(f"{path}:3: ")


def test_good_rows_get_absolute_image_paths_and_a_length_estimate(folder):
    path = write(folder, [json.dumps(GOOD), json.dumps({"messages": [{"role": "user", "content": "Hi"},
                                                                     {"role": "assistant", "content": "Hello there"}]})])
    dataset, skipped = ChatDataset.from_jsonl([str(path)], image_positions=47)
    assert skipped == [] and len(dataset) == 2
    assert dataset[0][1]["content"][1]["image"] == str((folder / "images" / "a.png").resolve())
    assert dataset[1][1]["content"] == [{"type": "text", "text": "Hello there"}]
    assert dataset.length(0) == len("Draw a stool.Here: ") // 4 + 47 and dataset.length(1) == len("HiHello there") // 4


def test_assembly_mixture_is_a_pure_function_of_seed_and_index():
    mixture = AssemblyMixture(400, "train", seed=0, resolution=32, image_positions=47)
    tasks = [mixture.task(i) for i in range(400)]
    counts = {t: tasks.count(t) for t in ("guide", "caption", "text")}
    assert 0.5 < counts["guide"] / 400 < 0.7 and 0.2 < counts["caption"] / 400 < 0.4 and counts["text"] > 20
    again = AssemblyMixture(400, "train", seed=0, resolution=32, image_positions=47)
    guide, text = tasks.index("guide"), tasks.index("text")
    assert json.dumps(mixture[text]) == json.dumps(again[text])
    a, b = mixture[guide], again[guide]
    images = [item["image"] for item in a[1]["content"] if item["type"] == "image"]
    assert images and all(im.size == (32, 32) for im in images)
    assert all(np.array_equal(np.asarray(x["image"]), np.asarray(y["image"]))
               for x, y in zip(a[1]["content"], b[1]["content"]) if x["type"] == "image")
    assert mixture.length(guide) >= len(images) * 47 > mixture.length(text)
    assert AssemblyMixture(10, weights={"text": 1.0}).task(3) == "text"
    with pytest.raises(ValueError, match="unknown task"):
        AssemblyMixture(10, weights={"video": 1.0})


def test_assembly_mixture_overview_opens_guide_and_text_answers():
    plain = AssemblyMixture(60, "train", seed=0, resolution=32, image_positions=47)
    with_overview = AssemblyMixture(60, "train", seed=0, resolution=32, image_positions=47, overview=True)
    tasks = [plain.task(i) for i in range(60)]
    for task in ("guide", "text", "caption"):
        i = tasks.index(task)
        if task == "caption":
            texts = [[c.get("text") for c in m[i][1]["content"]] for m in (plain, with_overview)]
            assert texts[0] == texts[1] and with_overview.length(i) == plain.length(i)
        else:
            a, b = plain[i][1]["content"][0]["text"], with_overview[i][1]["content"][0]["text"]
            assert not a.startswith("Overview:") and b.startswith("Overview: (1) ") and b.endswith(a)
            assert with_overview.length(i) > plain.length(i)


def test_assembly_mixture_varied_wording_rewords_guide_and_text_prompts_only():
    plain = AssemblyMixture(60, "train", seed=0, resolution=32, image_positions=47)
    varied = AssemblyMixture(60, "train", seed=0, resolution=32, image_positions=47, wording="varied")
    tasks = [plain.task(i) for i in range(60)]
    changed = 0
    for i, task in enumerate(tasks[:20]):
        a, b = plain[i], varied[i]
        if task == "caption":
            texts = [[[c.get("text") for c in m["content"]] for m in chat] for chat in (a, b)]
            assert texts[0] == texts[1]
            continue
        assert [c.get("text") for c in a[1]["content"]] == [c.get("text") for c in b[1]["content"]]
        assert b[0]["content"][0]["text"] == plan_guide(i, "train", 0, wording="varied").prompt
        changed += a[0]["content"][0]["text"] != b[0]["content"][0]["text"]
    assert changed >= 5
    with pytest.raises(ValueError, match="the 'unseen' family is for evaluation"):
        AssemblyMixture(4, wording="unseen")


def test_assembly_mixture_mixes_questions_and_general_chats(tmp_path):
    rows = [{"messages": [{"role": "user", "content": f"What is {i} plus {i}?"},
                          {"role": "assistant", "content": f"{2 * i}."}]} for i in range(3)]
    path = tmp_path / "chat.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    chats, _ = ChatDataset.from_jsonl([str(path)], 47)
    mixture = AssemblyMixture(40, "train", seed=0, resolution=32, image_positions=47,
                              weights={"question": 1.0, "chat": 1.0}, chats=chats)
    seen = {mixture.task(i) for i in range(40)}
    assert seen == {"question", "chat"}
    for i in range(40):
        chat = mixture[i]
        if mixture.task(i) == "chat":
            assert chat == chats[i % 3] and mixture.length(i) == chats.length(i % 3)
        else:
            assert [c["type"] for c in chat[0]["content"]] == ["image", "text"] and mixture.length(i) > 47
    with pytest.raises(ValueError, match="the 'chat' task needs chats"):
        AssemblyMixture(4, weights={"chat": 1.0})


def test_batch_stream_is_deterministic_prefix_stable_and_groups_by_length():
    lengths = np.random.default_rng(0).integers(10, 1000, size=100)
    def stream(n, length=None, seed=0):
        return list(GroupedBatchSampler(100, 4, n, seed, length, group_batches=5))
    long = stream(60, lengths.__getitem__)
    assert len(long) == 60 and all(len(b) == 4 for b in long)
    assert stream(33, lengths.__getitem__) == long[:33]  # a shorter run sees the same first batches
    assert sorted(i for b in long[:25] for i in b) == list(range(100))  # epoch 1 covers every example once
    assert long[25:50] != long[:25]  # epoch 2 is a new order
    assert stream(60, lengths.__getitem__, seed=1) != long
    spread = lambda batches: np.mean([np.ptp(lengths[b]) for b in batches])
    assert spread(long) < 0.5 * spread(stream(60))  # grouping cuts the length spread within a batch


def test_sharded_and_skipped_streams_partition_the_batches():
    sampler = GroupedBatchSampler(50, 2, 12, seed=3)
    batches = list(sampler)
    shards = [list(BatchSamplerShard(sampler, num_processes=2, process_index=p)) for p in (0, 1)]
    assert shards[0] == batches[0::2] and shards[1] == batches[1::2]
    resumed = list(SkipBatchSampler(BatchSamplerShard(sampler, num_processes=2, process_index=1), skip_batches=4))
    assert resumed == shards[1][4:]


def test_collator_pads_and_labels_through_the_processor(folder):
    tokenizer = load_text_tokenizer()
    config = HartVLMConfig.from_preset("tiny", tokenizer=tokenizer)
    collate = ChatCollator(HartVLMProcessor(tokenizer, config))
    dataset, _ = ChatDataset.from_jsonl([str(write(folder, [json.dumps(GOOD)]))], config.layout.num_positions)
    text_only = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    batch = collate([dataset[0], text_only])
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape
    assert batch["pixel_values"].shape == (1, 3, 32, 32)
    assert int(batch["attention_mask"][1].sum()) < batch["input_ids"].shape[1]  # the short one is padded
    with pytest.raises(ValueError, match="max_length"):
        ChatCollator(collate.processor, max_length=8)([dataset[0]])


def test_datasets_sources_load_from_disk_and_feed_the_collator(tmp_path):
    import datasets

    from hart_vlm.data.assembly import to_hf_dataset
    from hart_vlm.training.data import HFChatDataset, load_hf_dataset
    from hart_vlm.training.images import HFImages

    to_hf_dataset(2, resolution=32, include_captions=True, cache_dir=str(tmp_path / "cache")).save_to_disk(tmp_path / "chat")
    chats = HFChatDataset(load_hf_dataset(str(tmp_path / "chat")))
    assert len(chats) == 4
    items = [item for m in chats[0] for item in m["content"]]
    assert all(set(item) in ({"type", "text"}, {"type", "image"}) for item in items)
    assert any(isinstance(item.get("image"), Image.Image) for item in items)
    tokenizer = load_text_tokenizer()
    config = HartVLMConfig.from_preset("tiny", tokenizer=tokenizer)
    batch = ChatCollator(HartVLMProcessor(tokenizer, config))([chats[0], chats[3]])
    assert batch["pixel_values"].shape[1:] == (3, 32, 32)
    with pytest.raises(ValueError, match="no 'image' column"):
        load_hf_dataset(str(tmp_path / "chat"), column="image")

    pictures = datasets.Dataset.from_dict({"image": [Image.new("RGB", (48, 40), (9, 9, 9))]},
                                          features=datasets.Features({"image": datasets.Image()}))
    pictures.save_to_disk(tmp_path / "pictures")
    images = HFImages(load_hf_dataset(str(tmp_path / "pictures"), column="image"), 32)
    assert images[0].shape == (3, 32, 32) and float(images[0].max()) < -0.9
