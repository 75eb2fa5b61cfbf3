"""hart_vlm.scripts.write_json: the benchmarks' results files are written whole or not at all."""

import json

import pytest

from hart_vlm.scripts import write_json


def test_write_json_creates_the_folder_and_replaces_the_file(tmp_path):
    path = tmp_path / "results" / "bench.json"
    write_json(path, {"rows": [1, 2]})
    write_json(path, {"rows": [3], "name": "ünïcode"}, indent=1)
    assert json.loads(path.read_text(encoding="utf-8")) == {"rows": [3], "name": "ünïcode"}
    assert [p.name for p in path.parent.iterdir()] == ["bench.json"]


def test_a_result_that_cannot_be_written_leaves_the_old_file(tmp_path):
    path = tmp_path / "bench.json"
    write_json(path, {"rows": [1]})
    with pytest.raises(TypeError):
        write_json(path, {"rows": [object()]})
    assert json.loads(path.read_text()) == {"rows": [1]}
    assert [p.name for p in tmp_path.iterdir()] == ["bench.json"]
