"""A chat page in the browser: `hart-vlm serve` or `python -m hart_vlm.app [--model NAME|FOLDER]`.

A Gradio app (the optional `ui` extra: `pip install "hart-vlm[ui]"`) around `HartVLM.chat`: text
streams in as it is written, each picture grows from coarse to fine as its scales arrive (the
`ImagePreview` events), the conversation is multi-turn (later turns see the earlier pictures), a
picture can be uploaded to ask about, and an answer with pictures can be downloaded as a story
(index.html and storyboard.png). It binds 127.0.0.1 unless told otherwise, answers one request at
a time with a bounded queue, and a request that fails shows its error in the page.

`Conversation` holds the logic and is tested without a browser; `build_app` only lays it out.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

QUEUE_SIZE = 8  # requests waiting at most; more are refused with "the queue is full"


@dataclass
class Settings:
    """The sampling settings the page exposes (the rest stay the model's defaults)."""

    cfg: float = 3.0
    temperature: float = 0.7
    seed: int = 0

    def __post_init__(self) -> None:
        import math

        for name in ("cfg", "temperature"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if isinstance(self.seed, float) and self.seed.is_integer():
            self.seed = int(self.seed)
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or not 0 <= self.seed < 2**63:
            raise ValueError(f"seed must be an integer in [0, 2**63), got {self.seed!r}")


@dataclass
class Conversation:
    """One visitor's chat: the model's messages (with PIL pictures) and the page's view of them
    (Gradio messages whose pictures are PNG files under `folder`)."""

    folder: Path
    messages: list[dict] = field(default_factory=list)
    shown: list[dict] = field(default_factory=list)
    downloads: list[str] = field(default_factory=list)
    _count: int = 0

    def _png(self, image: Image.Image, stem: str) -> dict:
        self._count += 1
        path = self.folder / f"{self._count:04d}_{stem}.png"
        image.save(path)
        return {"path": str(path)}

    def ask(self, model, text: str, image: Image.Image | None, settings: Settings):
        """Answers one user turn; yields the page's messages after every event (text streamed,
        previews replaced by the finished picture). Bad input raises ValueError before anything
        is generated, and leaves the conversation as it was."""
        from hart_vlm.outputs import Done, ImageDone, ImagePreview, TextDelta
        from hart_vlm.stories import Story, reply_kind

        text = (text or "").strip()
        if not text:
            raise ValueError("type a message (a picture alone is not a question)")
        content: list[dict] = [{"type": "text", "text": text}]
        shown_user: list[dict] = [{"role": "user", "content": text}]
        if image is not None:
            content.insert(0, {"type": "image", "image": image.convert("RGB")})
            shown_user.insert(0, {"role": "user", "content": self._png(image.convert("RGB"), "upload")})
        messages = [*self.messages, {"role": "user", "content": content}]
        shown = [*self.shown, *shown_user]
        kind = reply_kind(messages)
        answer: list[dict] = []  # the page's assistant messages of this turn
        response = None
        events = model.chat(messages, stream=True, seed=settings.seed, cfg=settings.cfg,
                            **({} if kind in ("guide", "picture") else {"temperature": settings.temperature}))
        for event in events:
            if isinstance(event, TextDelta):
                if answer and isinstance(answer[-1]["content"], str):
                    answer[-1]["content"] += event.text
                else:
                    answer.append({"role": "assistant", "content": event.text})
            elif isinstance(event, (ImagePreview, ImageDone)):
                stem = "preview" if isinstance(event, ImagePreview) else "picture"
                message = {"role": "assistant", "content": self._png(event.image, stem)}
                if answer and answer[-1].get("preview"):
                    answer[-1] = message
                else:
                    answer.append(message)
                if isinstance(event, ImagePreview):
                    message["preview"] = True
            elif isinstance(event, Done):
                response = event.response
            else:
                continue
            yield shown + [{k: v for k, v in m.items() if k != "preview"} for m in answer]
        parts = [{"type": "text", "text": p} if isinstance(p, str) else {"type": "image", "image": p}
                 for p in response.parts] or [{"type": "text", "text": ""}]
        self.messages = [*messages, {"role": "assistant", "content": parts}]
        self.shown = shown + [{k: v for k, v in m.items() if k != "preview"} for m in answer]
        self.downloads = []
        if response.images:
            make = Story.from_pictured_steps if kind == "guide" else Story.from_parts
            self._count += 1
            folder = make(text, response.parts).save(self.folder / f"story_{self._count:04d}")
            self.downloads = [str(folder / "index.html"), str(folder / "storyboard.png")]
        yield self.shown


def build_app(model, title: str = "hart-vlm"):
    """The Gradio Blocks of the chat page around `model` (to launch it yourself, pass
    `allowed_paths=[str(hart_vlm.app.FILES)]`: the pictures are files there)."""
    import gradio as gr

    with gr.Blocks(title=title, analytics_enabled=False) as app:
        gr.Markdown(f"# {title}\nAsk for an assembly guide (a picture per step), a drawing, or about a picture "
                    "you upload.")
        state = gr.State(None)
        chatbot = gr.Chatbot(label="chat", height=560, elem_id="chat")
        box = gr.MultimodalTextbox(placeholder="How do I assemble a small oak stool?", file_types=["image"],
                                   file_count="single", elem_id="message", show_label=False)
        with gr.Row():
            cfg = gr.Slider(0.0, 8.0, value=Settings.cfg, step=0.5, label="image guidance (cfg)")
            temperature = gr.Slider(0.0, 1.5, value=Settings.temperature, step=0.05,
                                    label="text temperature (guides and drawings are greedy)")
            seed = gr.Number(value=Settings.seed, precision=0, minimum=0, label="seed")
        story = gr.File(label="the last answer with pictures, to download", file_count="multiple",
                        elem_id="story", interactive=False)
        new = gr.Button("new chat")

        def respond(message, conversation, cfg_value, temperature_value, seed_value):
            if conversation is None:
                FILES.mkdir(parents=True, exist_ok=True)
                conversation = Conversation(Path(tempfile.mkdtemp(prefix="hart_vlm_chat_", dir=FILES)))
            files = (message or {}).get("files") or []
            try:
                settings = Settings(cfg=cfg_value, temperature=temperature_value, seed=seed_value)
                image = Image.open(files[0]).convert("RGB") if files else None
                for shown in conversation.ask(model, (message or {}).get("text", ""), image, settings):
                    yield shown, conversation, gr.MultimodalTextbox(value=None), conversation.downloads or None
            except (ValueError, TypeError, OSError) as error:
                raise gr.Error(str(error)) from error

        box.submit(respond, [box, state, cfg, temperature, seed], [chatbot, state, box, story])
        new.click(lambda: ([], None, None), None, [chatbot, state, story])
    return app


FILES = Path(tempfile.gettempdir()) / "hart_vlm_app"  # the pictures and stories the page shows


def serve(model_name: str | None = None, host: str = "127.0.0.1", port: int = 7860, device: str = "cpu",
          block: bool = True):
    """Loads the model and starts the page; returns the running app when `block` is False."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # the page calls no one
    try:
        import gradio  # noqa: F401
    except ImportError as error:
        raise SystemExit('the chat page needs Gradio: pip install "hart-vlm[ui]" (or pip install gradio)') from error
    from hart_vlm.cli_generate import check_device, load_named_model

    check_device(device)
    FILES.mkdir(parents=True, exist_ok=True)
    model = load_named_model(model_name, device)
    app = build_app(model)
    app.queue(max_size=QUEUE_SIZE, default_concurrency_limit=1)
    app.launch(server_name=host, server_port=port, allowed_paths=[str(FILES)], prevent_thread_lock=not block,
               quiet=not block, show_error=True, footer_links=[])
    return app


def register(subparsers) -> None:
    serve_parser = subparsers.add_parser("serve", help="a chat page in the browser (Gradio; pip install hart-vlm[ui])")
    add_arguments(serve_parser)
    serve_parser.set_defaults(func=_run_serve)


def _run_serve(args) -> int:
    serve(args.model, args.host, args.port, args.device)
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None,
                        help="a packaged model's name (tiny, smollm2) or a saved HartVLM folder (default: the default model)")
    parser.add_argument("--host", default="127.0.0.1", help="the address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")


def main(argv: list[str] | None = None) -> int:
    from hart_vlm.cli import set_thread_wait

    set_thread_wait()  # as the CLI, before torch is imported
    parser = argparse.ArgumentParser(prog="python -m hart_vlm.app", description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    serve(args.model, args.host, args.port, args.device)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
