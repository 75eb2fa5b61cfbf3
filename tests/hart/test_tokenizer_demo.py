import runpy
import sys
from pathlib import Path

from PIL import Image

DEMO = Path(__file__).resolve().parents[2] / "examples" / "tokenizer_demo.py"


def test_demo_writes_the_three_panels(tmp_path, monkeypatch, capsys):
    out = tmp_path / "demo.png"
    monkeypatch.setattr(sys, "argv", [str(DEMO), "--out", str(out), "--steps", "2"])
    runpy.run_path(str(DEMO), run_name="__main__")
    printed = capsys.readouterr().out
    assert "trained in this demo itself: 2 steps" in printed
    assert "discrete-only" in printed and "hybrid" in printed and str(out) in printed
    with Image.open(out) as image:
        assert image.width > 2 * image.height > 0  # three panels side by side
