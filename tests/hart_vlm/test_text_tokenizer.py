"""The text tokenizer: round trips, whole special tokens, chat template, foreign tokenizers, the
shipped folder and the recipe that made it."""

from __future__ import annotations

import importlib.util
import io
import random
import sys
from importlib.resources import files
from pathlib import Path

import jinja2
import pydoc_data.topics
import pytest
import sentencepiece as spm
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from hart_vlm.special_tokens import (
    ALL_SPECIAL_TOKENS,
    ASSISTANT,
    END_OF_TURN,
    IMAGE_PLACEHOLDER,
    PAD,
    SYSTEM,
    USER,
)
from hart_vlm.text_tokenizer import (
    CHAT_TEMPLATE,
    add_hart_special_tokens,
    build_text_tokenizer,
    default_text_tokenizer_path,
    load_text_tokenizer,
)

REPO_ROOT = Path(__file__).resolve().parents[2]

VARIED_TEXTS = [
    "Attach the left side panel to the base with four cam bolts.",
    "Step 3: Slide the back panel into the grooves, then tighten the screws.",
    "How do I assemble a two-shelf white bookcase? It is 120 cm tall and 0.8 m wide.",
    "  two leading spaces, two  inner spaces and a trailing one ",
    "tabs\tand\t\tnewlines\n\nand a windows\r\nline end",
    "\n",
    " ",
    "",
    "Unicode: café, naïve, Ærøskøbing, Straße, 中文字符, кириллица, ελληνικά, עברית",
    "Emoji: 😀 🪑🛠️ 👩‍🔧 (a ZWJ sequence) 🇩🇪",
    "Symbols: ≥ ≤ → ∑ © ™ ½ °C \u00a0nbsp\u200bzero-width",
    "Numbers 0123456789, 3.14159, -42, 1e-5, 2024-06-01",
    "Code: def f(x):\n    return x ** 2  # squared",
    "<|not a token|> <| |> <|image |> |> <|",
]

# A stand-in for the assembly corpus, so these tests do not depend on the data generator.
KINDS = ["bookcase", "table", "chair", "stool", "bed frame", "cabinet", "desk", "wardrobe"]
PARTS = ["left side panel", "right side panel", "shelf", "back panel", "leg", "top", "drawer", "door"]
ACTIONS = ["Attach the {p} to the {k}.", "Screw the {p} onto the frame of the {k}.", "Slide the {p} into place."]


def stand_in_corpus() -> list[str]:
    lines = [action.format(p=part, k=kind) for kind in KINDS for part in PARTS for action in ACTIONS]
    lines += [f"How do I assemble a {kind} with {n} shelves?" for kind in KINDS for n in range(2, 6)]
    for key in sorted(pydoc_data.topics.topics)[:12]:
        lines += [line for line in pydoc_data.topics.topics[key].split("\n") if line.strip()]
    return lines


def train_sentencepiece(path: Path, vocab_size: int, **overrides) -> Path:
    options = dict(
        model_type="bpe",
        byte_fallback=True,
        split_digits=True,
        normalization_rule_name="identity",
        add_dummy_prefix=False,
        remove_extra_whitespaces=False,
        unk_id=0,
        bos_id=-1,
        eos_id=-1,
        pad_id=-1,
        minloglevel=2,
        num_threads=1,
    )
    options.update(overrides)
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(stand_in_corpus()), model_writer=model, vocab_size=vocab_size, **options
    )
    path.write_bytes(model.getvalue())
    return path


@pytest.fixture(scope="module")
def built_model_file(tmp_path_factory) -> Path:
    return train_sentencepiece(tmp_path_factory.mktemp("spm") / "stand_in.model", vocab_size=600)


@pytest.fixture(scope="module")
def built(built_model_file) -> PreTrainedTokenizerFast:
    return build_text_tokenizer(built_model_file)


@pytest.fixture(scope="module")
def shipped() -> PreTrainedTokenizerFast:
    return load_text_tokenizer()


@pytest.fixture(params=["built", "shipped"])
def tokenizer(request) -> PreTrainedTokenizerFast:
    return request.getfixturevalue(request.param)


def special_ids(tokenizer) -> set[int]:
    return {tokenizer.convert_tokens_to_ids(token) for token in ALL_SPECIAL_TOKENS}


# --- round trips ------------------------------------------------------------------------------


def test_round_trip_is_exact(tokenizer):
    for text in VARIED_TEXTS:
        ids = tokenizer.encode(text, add_special_tokens=False)
        assert tokenizer.decode(ids) == text
        assert tokenizer.unk_token_id not in ids, text  # byte fallback covers every character


def test_random_strings_round_trip(tokenizer):
    rng = random.Random(0)
    alphabet = "ab cdE\n\t.,:1é中😀<|>_-"
    for _ in range(200):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
        ids = tokenizer.encode(text, add_special_tokens=False)
        assert tokenizer.decode(ids) == text
        assert not special_ids(tokenizer) & set(ids), text  # ordinary text yields no special id


def test_matches_sentencepiece(built, built_model_file, shipped):
    """The fast tokenizer gives exactly the ids of the SentencePiece model it came from."""
    shipped_model = default_text_tokenizer_path() / "sentencepiece.model"
    for tokenizer, model_file in ((built, built_model_file), (shipped, shipped_model)):
        reference = spm.SentencePieceProcessor(model_file=str(model_file))
        for text in VARIED_TEXTS + stand_in_corpus()[::7]:
            assert tokenizer.encode(text, add_special_tokens=False) == reference.encode(text), text


def test_nothing_added_around_a_sequence(tokenizer):
    assert tokenizer.encode("Attach the leg.") == tokenizer.encode("Attach the leg.", add_special_tokens=False)
    assert tokenizer.bos_token is None


# --- special tokens ---------------------------------------------------------------------------


def test_special_tokens_follow_the_pieces_in_order(tokenizer):
    size = len(tokenizer)
    assert [tokenizer.convert_tokens_to_ids(token) for token in ALL_SPECIAL_TOKENS] == list(
        range(size - len(ALL_SPECIAL_TOKENS), size)
    )
    assert tokenizer.eos_token == END_OF_TURN and tokenizer.pad_token == PAD
    assert set(ALL_SPECIAL_TOKENS) <= set(tokenizer.all_special_tokens)


def test_special_tokens_stay_whole(tokenizer):
    for token in ALL_SPECIAL_TOKENS:
        token_id = tokenizer.convert_tokens_to_ids(token)
        assert tokenizer.encode(token, add_special_tokens=False) == [token_id]
        for text in (f"a{token}b", f" {token} ", f"{token}{token}", f"<|{token}|>", f"x\n{token}\ny"):
            ids = tokenizer.encode(text, add_special_tokens=False)
            assert ids.count(token_id) == text.count(token)
            assert tokenizer.decode(ids) == text


def test_marker_fragments_are_ordinary_text(tokenizer):
    fragments = ["<|", "|>", "<|image", "image|>", "image_start", "<|end", "end|>", "< |end| >", "<||>", "<|pad |>"]
    for text in fragments + [" ".join(fragments), "".join(fragments)]:
        ids = tokenizer.encode(text, add_special_tokens=False)
        assert not special_ids(tokenizer) & set(ids), text
        assert tokenizer.decode(ids) == text


# --- chat template ----------------------------------------------------------------------------

MESSAGES = [
    {"role": "system", "content": "You write assembly guides."},
    {
        "role": "user",
        "content": [
            {"type": "text", "text": "What is this? "},
            {"type": "image", "image": "images/000123_1.png"},
            {"type": "text", "text": " Explain."},
        ],
    },
    {
        "role": "assistant",
        "content": [
            {"type": "text", "text": "Step 1: Attach the legs."},
            {"type": "image"},
            {"type": "text", "text": "Step 2: Add the top."},
            {"type": "image"},
        ],
    },
    {"role": "user", "content": "Thanks!"},
]

EXPECTED_CHAT = (
    f"{SYSTEM}\nYou write assembly guides.{END_OF_TURN}\n"
    f"{USER}\nWhat is this? {IMAGE_PLACEHOLDER} Explain.{END_OF_TURN}\n"
    f"{ASSISTANT}\nStep 1: Attach the legs.{IMAGE_PLACEHOLDER}Step 2: Add the top.{IMAGE_PLACEHOLDER}{END_OF_TURN}\n"
    f"{USER}\nThanks!{END_OF_TURN}\n"
)


def test_chat_template_renders_exactly(tokenizer):
    assert tokenizer.chat_template == CHAT_TEMPLATE
    assert tokenizer.apply_chat_template(MESSAGES, tokenize=False) == EXPECTED_CHAT
    prompt = tokenizer.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True)
    assert prompt == EXPECTED_CHAT + f"{ASSISTANT}\n"
    reply = [{"role": "assistant", "content": None}]  # transformers drops None content
    assert tokenizer.apply_chat_template(reply, tokenize=False) == f"{ASSISTANT}\n{END_OF_TURN}\n"


def test_chat_tokens_keep_every_special_whole(tokenizer):
    prompt = EXPECTED_CHAT + f"{ASSISTANT}\n"
    ids = tokenizer.apply_chat_template(MESSAGES, add_generation_prompt=True)["input_ids"]
    assert ids == tokenizer.encode(prompt, add_special_tokens=False)
    for token in ALL_SPECIAL_TOKENS:
        assert ids.count(tokenizer.convert_tokens_to_ids(token)) == prompt.count(token)
    assert ids.count(tokenizer.convert_tokens_to_ids(IMAGE_PLACEHOLDER)) == 3
    assert tokenizer.decode(ids) == prompt


def test_chat_template_rejects_unknown_roles_and_items(built):
    with pytest.raises(jinja2.TemplateError, match="role"):
        built.apply_chat_template([{"role": "tool", "content": "x"}], tokenize=False)
    with pytest.raises(jinja2.TemplateError, match="item type"):
        built.apply_chat_template([{"role": "user", "content": [{"type": "video"}]}], tokenize=False)
    with pytest.raises(jinja2.TemplateError, match="content"):
        built.apply_chat_template([{"role": "user", "content": {"type": "text"}}], tokenize=False)


def test_sanitized_chat_reads_typed_markers_as_text(built):
    messages = [{"role": "user", "content": f"Type {IMAGE_PLACEHOLDER} and {END_OF_TURN} literally."}]
    ids = built.apply_chat_template(messages, sanitize_control_tokens=True)["input_ids"]
    assert ids.count(built.convert_tokens_to_ids(IMAGE_PLACEHOLDER)) == 0
    assert ids.count(built.convert_tokens_to_ids(END_OF_TURN)) == 1  # the template's own


# --- foreign tokenizers -----------------------------------------------------------------------


def byte_level_bpe(existing: list[str]) -> PreTrainedTokenizerFast:
    """A GPT-2-style byte-level BPE, trained tiny, that already knows some of the specials."""
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>", *existing], show_progress=False)
    backend.train_from_iterator(stand_in_corpus(), trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|endoftext|>")


def lower_casing_wordpiece(existing: list[str]) -> PreTrainedTokenizerFast:
    """A BERT-style WordPiece whose normaliser lower-cases and whose pre-tokeniser splits "<|"."""
    backend = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=400, special_tokens=["[UNK]", *existing], show_progress=False)
    backend.train_from_iterator(stand_in_corpus(), trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", pad_token=existing[0])


@pytest.mark.parametrize("make", [byte_level_bpe, lower_casing_wordpiece])
def test_add_hart_special_tokens_adds_exactly_the_missing(make):
    existing = [PAD, END_OF_TURN]
    tokenizer = make(existing)
    before = len(tokenizer)
    old_ids = {token: tokenizer.convert_tokens_to_ids(token) for token in existing}

    assert add_hart_special_tokens(tokenizer) == len(ALL_SPECIAL_TOKENS) - len(existing)
    assert len(tokenizer) == before + len(ALL_SPECIAL_TOKENS) - len(existing)
    new_tokens = [token for token in ALL_SPECIAL_TOKENS if token not in existing]
    assert [tokenizer.convert_tokens_to_ids(token) for token in new_tokens] == list(range(before, len(tokenizer)))
    assert {token: tokenizer.convert_tokens_to_ids(token) for token in existing} == old_ids
    assert tokenizer.pad_token == PAD
    assert tokenizer.chat_template == CHAT_TEMPLATE
    ids = tokenizer.apply_chat_template(MESSAGES, add_generation_prompt=True)["input_ids"]
    prompt = EXPECTED_CHAT + f"{ASSISTANT}\n"
    for token in ALL_SPECIAL_TOKENS:
        assert ids.count(tokenizer.convert_tokens_to_ids(token)) == prompt.count(token)

    assert add_hart_special_tokens(tokenizer) == 0  # idempotent
    assert len(tokenizer) == before + len(new_tokens)


def test_add_hart_special_tokens_keeps_existing_template_pad_and_end_of_turn():
    """An LLM with a chat template of its own gets only the image tokens; its template, its end
    of turn (eos) and its pad token stay."""
    from hart_vlm.special_tokens import IMAGE_TOKENS

    tokenizer = byte_level_bpe([])
    tokenizer.pad_token = "<|endoftext|>"
    tokenizer.eos_token = "<|endoftext|>"
    tokenizer.chat_template = "{{ messages[0]['content'] }}"
    assert add_hart_special_tokens(tokenizer) == len(IMAGE_TOKENS)
    assert tokenizer.pad_token == tokenizer.eos_token == "<|endoftext|>"
    assert tokenizer.chat_template == "{{ messages[0]['content'] }}"
    assert all(t not in tokenizer.get_vocab() for t in set(ALL_SPECIAL_TOKENS) - set(IMAGE_TOKENS))
    with pytest.raises(TypeError, match="tokenizer"):
        add_hart_special_tokens("gpt2")


# --- building, saving, loading ----------------------------------------------------------------


def test_build_rejects_models_that_cannot_round_trip(tmp_path):
    folding = train_sentencepiece(tmp_path / "folding.model", vocab_size=600, add_dummy_prefix=True)
    with pytest.raises(ValueError, match="add_dummy_prefix=False"):
        build_text_tokenizer(folding)
    with pytest.raises(FileNotFoundError, match="sentencepiece_model"):
        build_text_tokenizer(tmp_path / "missing.model")
    with pytest.raises(TypeError, match="sentencepiece_model"):
        build_text_tokenizer(3)


def test_save_and_load_round_trip(built, tmp_path):
    built.save_pretrained(tmp_path)
    loaded = load_text_tokenizer(tmp_path)
    assert isinstance(loaded, PreTrainedTokenizerFast)
    assert loaded.get_vocab() == built.get_vocab()
    assert loaded.chat_template == CHAT_TEMPLATE
    assert (loaded.eos_token, loaded.pad_token) == (END_OF_TURN, PAD)
    assert loaded.apply_chat_template(MESSAGES, tokenize=False) == EXPECTED_CHAT


def test_load_rejects_bad_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        load_text_tokenizer(tmp_path)
    byte_level_bpe([]).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="add_hart_special_tokens"):
        load_text_tokenizer(tmp_path)
    with pytest.raises(TypeError, match="path"):
        load_text_tokenizer(42)


def test_shipped_tokenizer_loads_from_the_installed_package(shipped):
    folder = default_text_tokenizer_path()
    assert folder == Path(str(files("hart_vlm").joinpath("assets/text_tokenizer")))
    names = {path.name for path in folder.iterdir()}
    assert {"tokenizer.json", "tokenizer_config.json", "sentencepiece.model", "README.md"} <= names
    assert sum(path.stat().st_size for path in folder.iterdir()) < 1_000_000
    assert len(shipped) == 4096
    assert shipped.get_vocab() == load_text_tokenizer(folder).get_vocab()


# --- the recipe -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def recipe():
    """training/train_text_tokenizer.py as a module (training/ is not a package)."""
    path = REPO_ROOT / "training" / "train_text_tokenizer.py"
    spec = importlib.util.spec_from_file_location("train_text_tokenizer", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve the module's annotations through it
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[spec.name]


def test_recipe_trains_a_loadable_tokenizer(recipe, tmp_path):
    cfg = recipe.parse_args(["--out", str(tmp_path), "--num-guides", "4", "--vocab-size", "1024"])
    assert recipe.main(cfg) == tmp_path
    tokenizer = load_text_tokenizer(tmp_path)
    assert len(tokenizer) == 1024
    assert tokenizer.apply_chat_template(MESSAGES, tokenize=False) == EXPECTED_CHAT
    readme = (tmp_path / "README.md").read_text()
    assert cfg.command() in readme and "sha256" in readme
    with pytest.raises(ValueError, match="vocab_size"):
        recipe.TextTokenizerTrainingConfig(vocab_size=100)
    with pytest.raises(ValueError, match="num_guides"):
        recipe.TextTokenizerTrainingConfig(num_guides=-1)


def test_zen_of_python_is_read_without_importing_this(recipe):
    zen = recipe.zen_of_python()
    assert zen.startswith("The Zen of Python") and "Beautiful is better than ugly." in zen
