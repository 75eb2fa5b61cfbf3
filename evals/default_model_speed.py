"""Start-up and demo times of the embedded default model (issue 8's targets), each in a fresh process.

    python evals/default_model_speed.py                 # 3 runs of each measurement
    python evals/default_model_speed.py --repeats 5 --prompt "How do I assemble an oak stool?"
    python evals/default_model_speed.py --models tiny smollm2      # the packaged models side by side

Measured, median (and min / max) over `--repeats` fresh Python processes, on this machine:

  python -c "import torch"              baseline: the interpreter and torch alone
  import hart_vlm                       the package's import
  import hart_vlm; load_default()       the time until the model is ready on the CPU (target: < 5 s),
                                        and the load_default() call alone, timed inside that process
  hart-vlm story PROMPT --out DIR       what `make demo` runs, start-up included (target: < 60 s)
  first preview                         a fresh process that loads the model and streams
                                        `model.chat(..., stream=True)` on "Draw a white bookcase.": the
                                        seconds from that call to its first ImagePreview (a coarse scale
                                        of the picture) and to its first ImageDone

and each process's peak RSS. Prints a table, saves JSON (evals/results/default_model_speed.json) and
writes its section of evals/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hart_vlm.default_model import DEFAULT_MODEL, PACKAGED_MODELS
from hart_vlm.scripts import load_script, write_json

HERE = Path(__file__).resolve().parent
DEMO_PROMPT = "How do I assemble a two-shelf white bookcase?"
TARGETS_S = {"load_default": 5.0, "story": 60.0}
FIRST_PREVIEW = """import time, hart_vlm
model = hart_vlm.load_default({})
start, seen = time.perf_counter(), {{}}
for event in model.chat([{{"role": "user", "content": "Draw a white bookcase."}}], stream=True, seed=0):
    seen.setdefault(type(event).__name__, time.perf_counter() - start)
print(seen["ImagePreview"], seen["ImageDone"])"""


def _load_speed():
    """evals/speed.py: the machine description and the RESULTS.md section writer."""
    return load_script(HERE / "speed.py", "evals_speed")


def timed_process(argv: list[str]) -> tuple[float, float, str]:
    """(wall seconds, peak RSS in MB, stdout) of one child process; fails loudly if it fails.

    Peak RSS comes from wait4's rusage of that child alone (ru_maxrss is in kB on Linux); its output
    goes to temporary files, so a chatty child cannot block on a full pipe."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited with {proc.returncode}:\n{stderr[-2000:]}")
    return seconds, usage.ru_maxrss / 1024, stdout


def measurements(prompt: str, out_dir: Path, seed: int, models: list[str]) -> dict[str, list[str]]:
    """The commands to time. The first model's rows are `load_default` and `story` (with no model
    named: what `make demo` runs when it is the default); each further model's `load_default:NAME`
    and `story:NAME`."""
    python = sys.executable
    cli = shutil.which("hart-vlm")
    story = [cli] if cli else [python, "-m", "hart_vlm.cli"]
    commands = {"import_torch": [python, "-c", "import torch"], "import_hart_vlm": [python, "-c", "import hart_vlm"]}
    for i, name in enumerate(models):
        named = name != DEFAULT_MODEL or i > 0
        suffix = f":{name}" if i > 0 else ""
        commands["load_default" + suffix] = [
            python, "-c", f"import time, hart_vlm; t = time.perf_counter(); hart_vlm.load_default("
                          f"{repr(name) if named else ''}); print(time.perf_counter() - t)"]
        commands["first_preview" + suffix] = [python, "-c", FIRST_PREVIEW.format(repr(name) if named else "")]
        commands["story" + suffix] = [*story, "story", prompt, "--out", str(out_dir), "--seed", str(seed),
                                      *(["--model", name] if named else [])]
    return commands


def run(repeats: int, prompt: str, seed: int, models: list[str]) -> dict:
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        out_dir = Path(tmp) / "story"
        commands = measurements(prompt, out_dir, seed, models)
        for name, argv in commands.items():
            times, rss, outputs = [], [], []
            for _ in range(repeats):
                seconds, peak_mb, out = timed_process(argv)
                times.append(seconds)
                rss.append(peak_mb)
                outputs.append(out)
            shown = [Path(argv[0]).name, *("OUT" if a == str(out_dir) else a for a in argv[1:])]
            if name.startswith("first_preview"):  # the script is many lines: name it instead
                model = name.partition(":")[2]
                shown = [shown[0], "-c", f"load_default({repr(model) if model else ''}), "
                                         "then chat([Draw a white bookcase.], stream=True)"]
            rows[name] = {"command": shlex.join(shown),
                          "median_s": statistics.median(times), "min_s": min(times), "max_s": max(times),
                          "times_s": times, "peak_rss_mb": max(rss), "target_s": TARGETS_S.get(name.split(":")[0])}
            if name.startswith("load_default"):  # the child printed the seconds of the call itself
                rows[name]["call_median_s"] = statistics.median(float(o.split()[-1]) for o in outputs)
            if name.startswith("first_preview"):  # the child printed the seconds to its first preview and picture
                rows[name]["preview_median_s"] = statistics.median(float(o.split()[-2]) for o in outputs)
                rows[name]["picture_median_s"] = statistics.median(float(o.split()[-1]) for o in outputs)
            if name.startswith("story"):
                rows[name]["output_tail"] = outputs[-1].strip().splitlines()[-3:]
                story = json.loads((out_dir / "story.json").read_text())
                rows[name]["steps"] = len(story["steps"])
    return rows


def table(result: dict) -> str:
    lines = ["| measurement | median (s) | min / max (s) | target (s) | peak RSS (MB) |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for name, r in result["rows"].items():
        target = f"< {r['target_s']:g}" if r["target_s"] is not None else "baseline" if name == "import_torch" else ""
        lines.append(f"| `{r['command']}` | {r['median_s']:.2f} | {r['min_s']:.2f} / {r['max_s']:.2f} | {target} | "
                     f"{r['peak_rss_mb']:.0f} |")
    calls = ", ".join(f"{name.partition(':')[2] or 'default'} {r['call_median_s']:.2f} s"
                      for name, r in result["rows"].items() if name.startswith("load_default"))
    lines += ["", f"Inside the load_default processes, the `hart_vlm.load_default()` call itself (median): {calls}; "
                  "the rest of each process is Python, torch and transformers start-up."]
    firsts = ", ".join(f"{name.partition(':')[2] or 'default'} {r['preview_median_s']:.2f} s to the first preview, "
                       f"{r['picture_median_s']:.2f} s to the picture" for name, r in result["rows"].items()
                       if name.startswith("first_preview"))
    lines += ["", f"From the call of `model.chat(..., stream=True)` on \"Draw a white bookcase.\" (median): {firsts}."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per measurement")
    parser.add_argument("--prompt", default=DEMO_PROMPT, help="the story's prompt (default: make demo's)")
    parser.add_argument("--seed", type=int, default=0, help="the story's seed")
    parser.add_argument("--models", nargs="+", default=[DEFAULT_MODEL], choices=PACKAGED_MODELS,
                        help="packaged models to time, side by side (default: the default model)")
    parser.add_argument("--json", type=Path, default=HERE / "results" / "default_model_speed.json")
    parser.add_argument("--results-md", type=Path, default=HERE / "RESULTS.md", help="section written/replaced here")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")
    if not args.prompt.strip():
        parser.error("--prompt must not be empty")

    import torch

    from hart_vlm.default_model import default_model_path, has_default_model

    for name in args.models:
        if not has_default_model(name):
            parser.error(f"the packaged model {name!r} is not in this installation (looked in {default_model_path(name)})")
    speed = _load_speed()
    load_before = os.getloadavg()[0]
    rows = run(args.repeats, args.prompt, args.seed, args.models)
    result = {
        "machine": speed.machine(torch.device("cpu")),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": " ".join(["python evals/default_model_speed.py", *(argv if argv is not None else sys.argv[1:])]),
        "repeats": args.repeats, "prompt": args.prompt, "seed": args.seed, "models": args.models,
        "load_average_before_after": [load_before, os.getloadavg()[0]],
        "rows": rows,
    }
    print(table(result))
    write_json(args.json, result)
    m = result["machine"]
    lines = ["## Default model: start-up and demo time", "", f"`{result['command']}`", "",
             f"- machine: {m['cpu']}, {m['logical_cores']} logical cores, torch {m['torch']}, "
             f"transformers {m['transformers']}, {result['date']}",
             f"- load average (1 min) before / after: {load_before:.2f} / {result['load_average_before_after'][1]:.2f}",
             f"- each measurement: {args.repeats} fresh processes; the story (steps drawn: "
             + ", ".join(f"{n.partition(':')[2] or 'default'} {r['steps']}" for n, r in rows.items() if n.startswith("story"))
             + f") for \"{args.prompt}\", seed {args.seed}", "",
             table(result), "", f"File: `{speed._relative(args.json)}`"]
    speed.write_results_section(args.results_md, "default_model_speed", lines)
    print(f"wrote {args.json}, {args.results_md}")
    return result


if __name__ == "__main__":
    main()
