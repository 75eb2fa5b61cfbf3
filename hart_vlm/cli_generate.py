"""`hart-vlm story` and `hart-vlm chat`: interleaved generation from the command line."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path


def register(subparsers) -> None:
    story = subparsers.add_parser("story", help="write a step-by-step guide with a picture per step")
    story.add_argument("prompt", help='e.g. "How do I assemble a two-shelf white bookcase?"')
    story.add_argument("--out", required=True, type=Path, help="folder for index.html, storyboard.png, step_XX.png, story.json")
    _model_arguments(story)
    story.add_argument("--steps", type=int, default=None, help="stop after this many steps (default: as the model writes)")
    story.add_argument("--no-follow-plan", action="store_true",
                       help="write every step as first sampled (default: a step that strays from the plan the answer "
                            "opens with is written again; hart_vlm.data.assembly.PlanFollower)")
    story.set_defaults(func=run_story)

    chat = subparsers.add_parser("chat", help="a terminal chat; images are saved and their paths printed")
    chat.add_argument("--out", type=Path, default=Path("chat_images"), help="folder for the images of the chat")
    chat.add_argument("--image", type=Path, default=None, help="a picture (PNG, JPEG, ...) sent with your first message")
    _model_arguments(chat)
    chat.set_defaults(func=run_chat)


def _model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None,
                        help="a packaged model's name (tiny, smollm2) or a saved HartVLM folder (default: the default model)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cfg", type=float, default=None, help="classifier-free guidance of the images")
    parser.add_argument("--temperature", type=float, default=None, help="text sampling temperature, 0 = greedy (default: 0 for story, 0.7 for chat)")
    parser.add_argument("--max-new-tokens", type=int, default=None)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument("--discrete-only", action="store_true", help="decode without the residual diffusion head")
    parser.add_argument("--max-images", type=int, default=None, help="at most this many images per answer")
    parser.add_argument("--force-image-after", default=None, metavar="REGEX",
                        help="start an image whenever the text since the last image matches REGEX")


def load_named_model(name: str | None, device: str = "cpu"):
    """A packaged model by name (None: the default) or a saved HartVLM folder, on `device`, in the
    dtype that runs fastest there (dtype="auto"; HART_VLM_DTYPE=float32 keeps float32 throughout)."""
    import torch

    from .default_model import PACKAGED_MODELS, load_default, load_model

    if name is None or name in PACKAGED_MODELS:
        return load_default(name, device=device, dtype="auto")
    return load_model(name, torch.device(device), dtype="auto")


def check_device(device: str) -> None:
    """`--device` names a device torch has here (checked before anything loads)."""
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"--device {device!r} is not a device name (cpu, cuda, cuda:1, mps, ...): {error}") from None
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device!r}: this machine has no CUDA device; use --device cpu")
    if parsed.type == "cuda" and parsed.index is not None and parsed.index >= torch.cuda.device_count():
        raise ValueError(f"--device {device!r}: there are {torch.cuda.device_count()} CUDA devices")
    if parsed.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"--device {device!r}: MPS is not available here; use --device cpu")


def check_out(out: Path) -> None:
    """`--out` can hold the files (checked before the model loads and the story is drawn)."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {str(out)!r} is a file; give a folder (it is created if missing)")
    existing = next((p for p in [out, *out.parents] if p.exists()), None)
    if existing is not None and not os.access(existing, os.W_OK):
        raise ValueError(f"--out {str(out)!r}: {str(existing)!r} is not writable")


def _load(args):
    check_device(args.device)
    return load_named_model(args.model, args.device)


def _sampling(args) -> dict:
    out = {}
    for name in ("cfg", "temperature", "max_new_tokens", "max_images", "force_image_after"):
        value = getattr(args, name)
        if value is not None:
            out[name] = value
    if args.discrete_only:
        out["use_residual"] = False
    return out


def run_story(args) -> int:
    from .outputs import ImageDone, TextDelta

    start = time.perf_counter()
    check_out(args.out)
    model = _load(args)
    print(f"model loaded in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    count = {"images": 0}

    def progress(event) -> None:
        if isinstance(event, TextDelta):
            print(event.text, end="", flush=True)
        elif isinstance(event, ImageDone):
            count["images"] += 1
            print(f"  [picture {count['images']}]", flush=True)

    story = model.generate_story(args.prompt, num_steps=args.steps, seed=args.seed, on_event=progress,
                                 step_check=None if args.no_follow_plan else "auto", **_sampling(args))
    folder = story.save(args.out)
    n = len(story.steps)
    print(f"\n{n} step{'' if n == 1 else 's'} in {time.perf_counter() - start:.1f} s")
    if story.metadata["step_check"] is not None:
        print(f"steps kept to the answer's plan by {story.metadata['step_check']} (--no-follow-plan: as first written)",
              file=sys.stderr)
    print(f"story: {folder / 'index.html'}\nstoryboard: {folder / 'storyboard.png'}")
    return 0


def run_chat(args) -> int:
    from .outputs import ImageDone, TextDelta

    image = None
    if args.image is not None:
        from PIL import Image, UnidentifiedImageError

        try:
            image = Image.open(args.image).convert("RGB")
        except (OSError, UnidentifiedImageError) as error:
            raise ValueError(f"--image {str(args.image)!r} is not a readable picture (PNG, JPEG, ...): {error}") from None
    check_out(args.out)
    model = _load(args)
    args.out.mkdir(parents=True, exist_ok=True)
    messages: list[dict] = []
    n_saved = 0
    print("hart-vlm chat: type a message, an empty line or Ctrl-D quits.")
    while True:
        try:
            line = input("you> ").strip()
        except EOFError:
            break
        if not line:
            break
        content = [{"type": "text", "text": line}]
        if image is not None:  # the picture goes with the first message
            content, image = [{"type": "image", "image": image}, *content], None
        messages.append({"role": "user", "content": content})
        print("model> ", end="", flush=True)
        content = []
        for event in model.chat(messages, stream=True, seed=args.seed + len(messages), **_sampling(args)):
            if isinstance(event, TextDelta):
                print(event.text, end="", flush=True)
                if content and content[-1]["type"] == "text":
                    content[-1]["text"] += event.text
                else:
                    content.append({"type": "text", "text": event.text})
            elif isinstance(event, ImageDone):
                n_saved += 1
                path = args.out / f"image_{n_saved:03d}.png"
                event.image.save(path)
                content.append({"type": "image", "image": event.image})
                print(f"\n[image: {path}]", flush=True)
        print()
        messages.append({"role": "assistant", "content": content or [{"type": "text", "text": ""}]})
    return 0
