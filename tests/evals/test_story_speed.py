"""evals/story_speed.py: every configuration runs, the caches give identical stories, the library's cache is restored."""

import json

import hart_vlm
from hart_vlm import HartVLM
from hart_vlm.generation import state
from tests.evals import load_eval


def test_story_speed_runs_each_cache_and_the_stories_agree(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(hart_vlm, "load_default", lambda name, dtype: HartVLM.from_pretrained(tiny_model_dir).to(dtype))
    script = load_eval("story_speed")
    library_cache = state.generation_cache
    out = tmp_path / "speed.json"
    result = script.main(["--models", "tiny", "--dtypes", "float32", "--stories", "1", "--json", str(out),
                          "--prompt", "How do I build a pine stool?"])
    assert state.generation_cache is library_cache
    rows = {row["cache"]: row for row in result["rows"]}
    assert set(rows) == {"growing", "dynamic"}
    assert rows["dynamic"]["same_as_first_cache"] and rows["dynamic"]["median"] > 0
    assert json.loads(out.read_text())["rows"][0]["model"] == "tiny"
