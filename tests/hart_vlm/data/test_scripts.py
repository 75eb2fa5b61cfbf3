import importlib.util
import json
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[3]


def _load(relative: str):
    spec = importlib.util.spec_from_file_location(Path(relative).stem, ROOT / relative)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_assembly_grid_example(tmp_path):
    out = tmp_path / "grid.png"
    grid = _load("examples/assembly_grid.py").main(["--out", str(out), "--resolution", "48", "--steps", "3"])
    assert Image.open(out).size == grid.size
    assert grid.height > 9 * 48  # one row per furniture kind


def test_data_speed_benchmark_runs(tmp_path):
    out = tmp_path / "speed.json"
    results = _load("evals/data_speed.py").main(["--num", "3", "--resolution", "32", "--json", str(out)])
    assert results["num_guides"] == 3 and results["images"] >= 9
    assert json.loads(out.read_text())["machine"]["usable_cores"] >= 1
