"""Rewrites the Limitations and/or Evaluation section of a packaged model's card, weights untouched.

    python training/update_card.py --eval-results evals/results/assembly_bench_default.json ...
    python training/update_card.py --limitations "$(cat limitations.txt)" --eval-results ...

For figures that change while the weights do not: a benchmark run again with other sampling
defaults, a corrected sentence. The sections are rendered exactly as training/package_default.py
renders them (so a later re-packaging gives the same text); every other line of the card stays as
it is. The card is written atomically (a temporary file, then a rename).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hart_vlm.default_model import default_model_path
from hart_vlm.scripts import load_script
from hart_vlm.story import atomic_write
from hart_vlm.training.config import option, run_cli

_package = load_script(Path(__file__).resolve().parent / "package_default.py", "training_package_default")
CARD_NAME, evaluation_section, limitations_section = (
    _package.CARD_NAME, _package.evaluation_section, _package.limitations_section)

# The sections of a card in the order package_default writes them; a new section goes before the
# first of its successors that the card has.
SECTION_ORDER = ("## Limitations", "## Evaluation", "## Packaging check", "## License and provenance")


@dataclass
class UpdateCardConfig:
    card: str | None = option(None, f"the card to rewrite (default: the package's hart_vlm/default_model/{CARD_NAME})")
    limitations: str | None = option(None, "the new Limitations paragraph (None: keep the card's)")
    eval_results: list[str] = option([], "JSON files written by the evals; they replace the Evaluation section")

    def __post_init__(self) -> None:
        if self.card is None:
            self.card = str(default_model_path() / CARD_NAME)
        if not Path(self.card).is_file():
            raise ValueError(f"card not found: {self.card!r}")
        if self.limitations is None and not self.eval_results:
            raise ValueError("nothing to update: give limitations and/or eval_results")
        if self.limitations is not None and not self.limitations.strip():
            raise ValueError("limitations must be a non-empty paragraph")
        for path in self.eval_results:
            if not Path(path).is_file():
                raise ValueError(f"eval_results file not found: {path!r}")


def replace_section(lines: list[str], heading: str, section: list[str]) -> list[str]:
    """`lines` with the section under `heading` (up to the next "## " heading) replaced by
    `section`; a card without it gets it before the first later section of SECTION_ORDER."""
    if heading in lines:
        start = lines.index(heading)
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        return lines[:start] + section + lines[end:]
    later = SECTION_ORDER[SECTION_ORDER.index(heading) + 1:]
    at = next((i for i, line in enumerate(lines) if line in later), len(lines))
    return lines[:at] + section + lines[at:]


def update_card(cfg: UpdateCardConfig) -> Path:
    path = Path(cfg.card)
    lines = path.read_text().split("\n")
    if cfg.limitations is not None:
        lines = replace_section(lines, "## Limitations", limitations_section(cfg.limitations))
    if cfg.eval_results:
        lines = replace_section(lines, "## Evaluation", evaluation_section(cfg.eval_results))
    atomic_write(path, "\n".join(lines).encode())
    print(f"updated {path}" + (": limitations" if cfg.limitations is not None else "")
          + (f"; evaluation from {len(cfg.eval_results)} file(s)" if cfg.eval_results else ""))
    return path


if __name__ == "__main__":
    run_cli(UpdateCardConfig, update_card, description=__doc__.split("\n\n")[0])
