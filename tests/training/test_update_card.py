"""training/update_card.py: the Limitations and Evaluation sections of a card rewritten in place."""

from __future__ import annotations

import json
import re

import pytest

from hart_vlm.default_model import default_model_path
from hart_vlm.training.config import parse_config, run_cli

from .conftest import ROOT, load_recipe

CARD = """# a card

## How it was trained

- data seed: 0

## Limitations

Old limits.

## Evaluation

`old.json`:

| metric | value |
| --- | --- |
| a | 1 |

## Packaging check

Loaded back.
"""


def _bench(tmp_path, iou=0.5):
    path = tmp_path / "bench.json"
    path.write_text(json.dumps({"command": "python evals/assembly_bench.py",
                                "rows": [{"cfg": 3.0, "iou": iou, "per_story": [{"iou": iou}]}]}))
    return str(path)


def _update(card, *args):
    recipe = load_recipe("update_card")
    return recipe.update_card(parse_config(recipe.UpdateCardConfig, ["--card", str(card), *args]))


def test_sections_are_replaced_and_every_other_line_kept(tmp_path):
    card = tmp_path / "MODEL_CARD.md"
    card.write_text(CARD)
    bench = _bench(tmp_path, iou=0.613)
    _update(card, "--limitations", "New limits.", "--eval-results", bench)
    text = card.read_text()
    assert "Old limits." not in text and "`old.json`" not in text
    assert text.startswith("# a card\n\n## How it was trained\n\n- data seed: 0\n\n## Limitations\n\nNew limits.\n\n")
    assert f"`{bench}`:" in text and "| command | python evals/assembly_bench.py |" in text
    assert "| 3 | 0.613 |" in text and "per_story" not in text  # records as tables, without per-story details
    assert text.endswith("## Packaging check\n\nLoaded back.\n")
    # only the limitations: the evaluation just written stays
    _update(card, "--limitations", "Newer limits.")
    assert "Newer limits." in card.read_text() and f"`{bench}`:" in card.read_text()


def test_a_missing_section_goes_where_packaging_puts_it(tmp_path):
    card = tmp_path / "MODEL_CARD.md"
    card.write_text(CARD.replace("## Evaluation\n\n`old.json`:\n\n| metric | value |\n| --- | --- |\n| a | 1 |\n\n", ""))
    _update(card, "--eval-results", _bench(tmp_path))
    headings = [line for line in card.read_text().split("\n") if line.startswith("## ")]
    assert headings == ["## How it was trained", "## Limitations", "## Evaluation", "## Packaging check"]


def test_the_shipped_card_is_reproduced_from_its_own_results(tmp_path):
    """The shipped card's sections, rendered again from the files it names, are what it holds: the
    committed results and the card agree, and update_card renders as package_default did."""
    shipped = (default_model_path() / "MODEL_CARD.md").read_text()
    results = re.findall(r"^`(evals/results/[^`]+\.json)`:$", shipped, flags=re.M)
    assert results, "the shipped card names no evaluation results"
    limitations = shipped.split("## Limitations\n\n", 1)[1].split("\n\n## ", 1)[0]
    card = tmp_path / "MODEL_CARD.md"
    card.write_text(shipped)
    _update(card, "--limitations", limitations, "--eval-results", *(str(ROOT / p) for p in results))
    assert card.read_text().replace(str(ROOT) + "/", "") == shipped


def test_bad_arguments_fail_clearly(tmp_path, capsys):
    card = tmp_path / "MODEL_CARD.md"
    card.write_text(CARD)
    recipe = load_recipe("update_card")
    for args, message in [([], "nothing to update"),
                          (["--eval-results", str(tmp_path / "none.json")], "eval_results file not found"),
                          (["--limitations", " "], "limitations must be a non-empty"),
                          (["--card", str(tmp_path / "nope.md"), "--limitations", "x"], "card not found")]:
        argv = args if "--card" in args else ["--card", str(card), *args]
        with pytest.raises(SystemExit) as err:
            run_cli(recipe.UpdateCardConfig, recipe.update_card, argv)
        assert err.value.code == 2 and message in capsys.readouterr().err
    assert card.read_text() == CARD
