"""ChatResponse, streaming events, Story: parsing, saving, loading and the saved web page."""

import importlib.util
import json
import os
import re

import numpy as np
import pytest
from PIL import Image

from hart_vlm.outputs import Done, ImageDone, ImagePreview, TextDelta, collect
from hart_vlm.outputs import ChatResponse
from hart_vlm.stories import Step, Story

from .conftest import CHROMIUM, launch_chromium


def _image(seed: int, size: int = 128) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8), "RGB")


def _same_pixels(a: Image.Image, b: Image.Image) -> bool:
    return a.size == b.size and np.array_equal(np.asarray(a.convert("RGB")), np.asarray(b.convert("RGB")))


A, B, C = _image(1), _image(2), _image(3)


# -- ChatResponse and events ------------------------------------------------------------------


def test_chat_response_merges_text_and_keeps_order():
    reply = ChatResponse(["Step 1: ", "lay the panel.", A, "", "Step 2: done.", B])
    assert reply.parts[0] == "Step 1: lay the panel."
    assert [type(p) for p in reply.parts] == [str, Image.Image, str, Image.Image]
    assert reply.text == "Step 1: lay the panel.Step 2: done."
    assert reply.images[0] is A and reply.images[1] is B
    md = reply.to_markdown(image_dir="out")
    assert md.index("lay the panel.") < md.index("![Image 1](out/image_01.png)") < md.index("![Image 2](out/image_02.png)")


def test_chat_response_rejects_bad_parts():
    with pytest.raises(TypeError, match=r"parts\[1\]"):
        ChatResponse(["text", 3])
    with pytest.raises(TypeError, match="parts"):
        ChatResponse("just a string")


def test_chat_response_save_load_round_trip(tmp_path):
    reply = ChatResponse(["Look:", A, "and <b>this</b>", B])
    folder = reply.save(tmp_path / "reply")
    assert sorted(p.name for p in folder.iterdir()) == ["image_01.png", "image_02.png", "index.html", "response.json"]
    page = (folder / "index.html").read_text()
    assert "&lt;b&gt;this&lt;/b&gt;" in page and "<b>this</b>" not in page
    loaded = ChatResponse.load(folder)
    assert loaded.text == reply.text
    assert all(_same_pixels(x, y) for x, y in zip(loaded.images, reply.images))
    record = json.loads((folder / "response.json").read_text())
    assert [p["type"] for p in record["parts"]] == ["text", "image", "text", "image"]


def _stream(row: int = 0):
    return [
        TextDelta("Step 1: lay ", row),
        TextDelta("the panel.", row),
        ImagePreview(_image(9, 16), scale_index=0, num_scales=3, row=row),
        ImagePreview(_image(8, 64), scale_index=1, num_scales=3, row=row),
        ImageDone(A, row),
        TextDelta("Step 2: ", row),
        TextDelta("add the shelf.", row),
        ImageDone(B, row),
        TextDelta(" Done!", row),
    ]


def test_collect_equals_direct_response():
    direct = ChatResponse(["Step 1: lay the panel.", A, "Step 2: add the shelf.", B, " Done!"])
    assert collect(_stream()) == direct
    assert collect(_stream() + [Done(direct)]) == direct  # a consistent Done is accepted


def test_collect_checks_rows_and_done():
    interleaved = [e for pair in zip(_stream(0), _stream(1)) for e in pair]
    with pytest.raises(ValueError, match="row"):
        collect(interleaved)
    assert collect(interleaved, row=1) == collect(_stream(0))
    with pytest.raises(ValueError, match="inconsistent"):
        collect(_stream() + [Done(ChatResponse(["something else"]))])
    with pytest.raises(TypeError, match=r"events\[1\]"):
        collect([TextDelta("a"), "b"])


def test_event_validation():
    with pytest.raises(ValueError, match="scale_index"):
        ImagePreview(A, scale_index=3, num_scales=3)
    with pytest.raises(TypeError, match="image"):
        ImageDone("not an image")
    with pytest.raises(ValueError, match="row"):
        TextDelta("x", row=-1)
    with pytest.raises(TypeError, match="response"):
        Done(["text"])


# -- Story.from_parts ---------------------------------------------------------------------------


def _texts(story: Story) -> list[str]:
    return [s.text for s in story.steps]


def _images(story: Story) -> list:
    return [s.image for s in story.steps]


def test_from_parts_with_markers_and_intro():
    parts = ["Here is how.\nYou need a screwdriver.\n\nStep 1: Lay the panel.", A,
             "step 2) Add the shelf.", B, "**Step 3:** Fix the back.", C]
    story = Story.from_parts("How?", parts, metadata={"seed": 0})
    assert story.intro == "Here is how.\nYou need a screwdriver."
    assert _texts(story) == ["Lay the panel.", "Add the shelf.", "Fix the back."]
    assert _images(story) == [A, B, C]
    assert story.metadata == {"seed": 0}


def test_each_forced_picture_closes_the_step_of_the_line_before_it():
    """generate_story's stories: the boundaries are the pictures generation drew, not markers found
    again in the text; on such answers both constructions agree."""
    parts = ["Overview: (1) bottom panel; (2) shelf.\nStep 1: Lay the bottom panel.", A,
             "\nStep 2: Add the shelf between the sides.", B, "\nAll done!"]
    story = Story.from_pictured_steps("How?", parts)
    assert story.intro == "Overview: (1) bottom panel; (2) shelf."
    assert _texts(story) == ["Lay the bottom panel.", "Add the shelf between the sides.", "All done!"]
    assert _images(story)[:2] == [A, B] and story.steps[2].image is None
    same = Story.from_parts("How?", parts[:4])
    assert (same.intro, _texts(same)) == (story.intro, _texts(story)[:2])
    # text the picture does not belong to stays a step of its own, and an answer without pictures is text
    odd = Story.from_pictured_steps("How?", ["Step 1: Lay it.", A, "\nNow rest.\nStep 2: Fix it.", B])
    assert _texts(odd) == ["Lay it.", "Now rest.", "Fix it."] and odd.steps[1].image is None
    assert _texts(Story.from_pictured_steps("How?", ["Step 1: Lay it.\nStep 2: Fix it."])) == ["Lay it.", "Fix it."]


def test_from_parts_several_markers_in_one_text_part():
    # Step 1 has no image of its own: the image after "Step 2" belongs to step 2
    story = Story.from_parts("p", ["Step 1: Unpack. Step 2: Sort the screws.", A, "STEP 3 - Assemble.", B])
    assert _texts(story) == ["Unpack.", "Sort the screws.", "Assemble."]
    assert _images(story) == [None, A, B]


def test_from_parts_without_markers_pairs_text_and_image():
    story = Story.from_parts("p", ["Lay the panel.", A, "Add the shelf.", B, "Fix the back.", C])
    assert story.intro == ""
    assert _texts(story) == ["Lay the panel.", "Add the shelf.", "Fix the back."]
    assert _images(story) == [A, B, C]


def test_from_parts_numbered_list_markers():
    story = Story.from_parts("p", ["Intro line.\n1. Lay the panel.", A, "2) Add the shelf.", B])
    assert story.intro == "Intro line."
    assert _texts(story) == ["Lay the panel.", "Add the shelf."]


def test_from_parts_numbered_list_inside_step_markers_does_not_split():
    story = Story.from_parts("p", ["Step 1: You need:\n1. four screws\n2. a shelf", A, "Step 2: Fix it.", B])
    assert _texts(story) == ["You need:\n1. four screws\n2. a shelf", "Fix it."]


def test_from_parts_image_without_text_and_missing_marker():
    story = Story.from_parts("p", [A, "Step 2: Add the shelf.", B, C, "Now fix the back.", A])
    assert _texts(story) == ["", "Add the shelf.", "", "Now fix the back."]
    assert _images(story) == [A, B, C, A]


def test_from_parts_trailing_text_joins_last_step():
    story = Story.from_parts("p", ["Step 1: Lay the panel.", A, "Step 2: Add the shelf.", B, "Enjoy your bookcase!"])
    assert _texts(story) == ["Lay the panel.", "Add the shelf.\nEnjoy your bookcase!"]
    assert _images(story) == [A, B]
    text_only = Story.from_parts("p", ["I cannot draw that."])
    assert _texts(text_only) == ["I cannot draw that."] and _images(text_only) == [None]


def test_step_and_story_validation():
    with pytest.raises(TypeError, match="image"):
        Step("text", image=np.zeros((8, 8, 3)))
    with pytest.raises(TypeError, match="text"):
        Step(None, A)
    with pytest.raises(TypeError, match=r"steps\[0\]"):
        Story("p", steps=["not a step"])


# -- save / load / render ---------------------------------------------------------------------


def _story(n_steps: int = 3) -> Story:
    steps = [Step(f"Attach part {k} with two screws. <script>alert({k})</script>", _image(10 + k)) for k in range(n_steps)]
    steps.append(Step("Check that everything is tight.", None))
    return Story("How do I assemble a two-shelf white bookcase?", steps,
                 metadata={"seed": 0, "model": "tiny", "sampling": {"temperature": 0.7}}, intro="You need a screwdriver & 20 min.")


def test_save_load_round_trip(tmp_path):
    story = _story()
    folder = story.save(tmp_path / "nested" / "story")
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["index.html", "step_01.png", "step_02.png", "step_03.png", "story.json", "storyboard.png"]
    loaded = Story.load(folder)
    assert loaded.prompt == story.prompt and loaded.intro == story.intro and loaded.metadata == story.metadata
    assert _texts(loaded) == _texts(story)
    assert loaded.steps[3].image is None
    assert all(_same_pixels(x.image, y.image) for x, y in zip(loaded.steps[:3], story.steps[:3]))
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no temporary files left
    # saving again into the same folder replaces the files
    Story("Other", [Step("one", _image(99))]).save(folder)
    assert _same_pixels(Story.load(folder).steps[0].image, _image(99))


def test_save_bad_targets(tmp_path):
    target = tmp_path / "file.txt"
    target.write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        _story().save(target)
    with pytest.raises(TypeError, match="dir"):
        _story().save(42)
    with pytest.raises(TypeError, match="metadata"):
        Story("p", [Step("a", A)], metadata={"bad": object()}).save(tmp_path / "s")
    with pytest.raises(TypeError, match="metadata"):
        Story("p", [Step("a", A)], metadata={"cfg": float("nan")}).save(tmp_path / "s")
    with pytest.raises(FileNotFoundError):
        Story.load(tmp_path)


def test_saving_over_an_earlier_story_leaves_only_the_new_one_or_the_old_one_whole(tmp_path, monkeypatch):
    long = Story("long", [Step(f"Step {k}: s.", _image(k)) for k in range(1, 6)])
    long.save(tmp_path / "s")
    (tmp_path / "s" / "notes.txt").write_text("mine")
    short = Story("short", long.steps[:2])
    short.save(tmp_path / "s")
    names = sorted(p.name for p in (tmp_path / "s").iterdir())
    assert names == ["index.html", "notes.txt", "step_01.png", "step_02.png", "story.json", "storyboard.png"]
    assert Story.load(tmp_path / "s").prompt == "short"
    before = {p.name: p.read_bytes() for p in (tmp_path / "s").iterdir()}

    def broken(self, *args, **kwargs):
        raise RuntimeError("the storyboard could not be drawn")

    monkeypatch.setattr(Story, "storyboard", broken)
    with pytest.raises(RuntimeError):
        long.save(tmp_path / "s")
    assert {p.name: p.read_bytes() for p in (tmp_path / "s").iterdir()} == before


def test_html_is_self_contained_and_escaped(tmp_path):
    page = (_story().save(tmp_path / "s") / "index.html").read_text()
    assert "http://" not in page and "https://" not in page
    srcs = re.findall(r'src="([^"]*)"', page)
    assert len(srcs) == 3 and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert not re.search(r"<(script|link|iframe)\b", page) and "@import" not in page and "url(" not in page
    assert "&lt;script&gt;alert(0)&lt;/script&gt;" in page
    assert "image-rendering: pixelated" in page
    assert "screwdriver &amp; 20 min." in page


def test_markdown_links():
    md = _story().to_markdown(image_dir="guide")
    assert md.startswith("# How do I assemble a two-shelf white bookcase?")
    for k in (1, 2, 3):
        assert f"![Step {k}](guide/step_0{k}.png)" in md
    assert "\n4. Check that everything is tight." in md and "step_04.png" not in md
    assert "![Step 1](step_01.png)" in _story().to_markdown()


def test_storyboard_grows_with_steps_and_keeps_pixels_crisp():
    sizes = [_story(n).storyboard().size for n in (0, 2, 3, 5)]  # 1, 3, 4 and 6 cells (one without image)
    assert sizes[0][0] < sizes[1][0]  # more columns
    assert sizes[1][0] == sizes[2][0] == sizes[3][0]  # 3 columns at most
    assert sizes[1][1] < sizes[2][1] and sizes[2][1] <= sizes[3][1]  # then more rows
    red, blue = (255, 0, 0), (0, 0, 255)
    blocks = np.kron(np.eye(4, dtype=bool), np.ones((32, 32), dtype=bool))  # (128, 128) checker
    small = Image.fromarray(np.where(blocks[..., None], red, blue).astype(np.uint8), "RGB")
    board = np.asarray(Story("checker", [Step("x", small)]).storyboard()).astype(int)
    # enlarged x2 by nearest-neighbour: exactly 256 x 256 saturated pixels, all pure red or blue
    saturated = board[(board.max(-1) - board.min(-1)) > 100]
    assert len(saturated) == 256 * 256
    assert {tuple(c) for c in np.unique(saturated, axis=0).tolist()} == {red, blue}


@pytest.mark.skipif(
    not (os.path.exists(CHROMIUM) and importlib.util.find_spec("playwright") is not None),
    reason=f"needs {CHROMIUM} (apt-get install chromium) and the Python package playwright (pip install playwright)",
)
def test_index_html_in_a_real_browser(tmp_path):
    from playwright.sync_api import sync_playwright

    story = _story()
    page_path = story.save(tmp_path / "s") / "index.html"
    requests: list[str] = []
    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = browser.new_page(viewport={"width": 900, "height": 900})
            page.on("request", lambda request: requests.append(request.url))
            page.goto(page_path.as_uri())
            page.wait_for_load_state("load")
            widths = page.eval_on_selector_all("img", "imgs => imgs.map(i => i.complete ? i.naturalWidth : 0)")
            assert len(widths) == 3 and all(w == 128 for w in widths)
            rendered = page.eval_on_selector_all("img", "imgs => imgs.map(i => i.getBoundingClientRect().width)")
            assert all(250 <= w <= 260 for w in rendered)
            for step in story.steps:
                assert page.get_by_text(step.text, exact=True).is_visible()
            assert page.get_by_role("heading", name=story.prompt).is_visible()
            assert page.evaluate("() => document.querySelectorAll('script').length") == 0
            page.screenshot(path=str(tmp_path / "index.png"), full_page=True)
        finally:
            browser.close()
    assert requests and all(url.startswith(("file:", "data:")) for url in requests), requests
    assert (tmp_path / "index.png").stat().st_size > 0
