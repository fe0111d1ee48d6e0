"""Token layout of the prompt: text is tokenised, frames and memory are spliced in as embeddings.

A *segment list* is a list whose items are either token ids (``list[int]``) or one of the
markers :data:`MEMORY` / :data:`IMAGE`, to be replaced by the memory tokens or a frame's tokens.
"""
from __future__ import annotations

from .config import PromptConfig

MEMORY = "<memory>"
IMAGE = "<image>"


class PromptBuilder:
    def __init__(self, tokenizer, cfg: PromptConfig):
        self.tokenizer = tokenizer
        self.cfg = cfg
        self.im_end_id = self._single_token(cfg.im_end)
        self.im_start_id = self._single_token(cfg.im_start)
        self.newline_ids = self.encode("\n")
        self.close_ids = [self.im_end_id] + self.newline_ids  # ends a message
        self._turn = self._split(turn_text(cfg))

    def _single_token(self, text: str) -> int:
        ids = self.encode(text)
        if len(ids) != 1:
            raise ValueError(f"the tokenizer must have {text!r} as a single (special) token, it gives {ids}")
        return ids[0]

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def decode(self, ids) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=False)

    def _split(self, text: str) -> list:
        """Tokenise ``text`` around the ``{memory}`` / ``{image}`` placeholders."""
        out: list = []
        rest = text
        while rest:
            cut = [(rest.find(p), p) for p in ("{memory}", "{image}") if p in rest]
            if not cut:
                out.append(self.encode(rest))
                break
            pos, ph = min(cut)
            if pos > 0:
                out.append(self.encode(rest[:pos]))
            out.append(MEMORY if ph == "{memory}" else IMAGE)
            rest = rest[pos + len(ph):]
        return [s for s in out if not (isinstance(s, list) and not s)]

    def prefix(self, instruction: str, with_memory: bool) -> list:
        cfg = self.cfg
        for ph in ("{memory}", "{image}"):
            if ph in instruction:
                raise ValueError(f"instruction must not contain the placeholder {ph}")
        return self._split(prefix_text(cfg, instruction, with_memory))

    def turn(self) -> list:
        """One turn up to the assistant header (the answer follows)."""
        return list(self._turn)


def prefix_text(cfg: PromptConfig, instruction: str, with_memory: bool) -> str:
    """The prefix as text, with the ``{memory}`` placeholder when ``with_memory``."""
    user = cfg.task.replace("{instruction}", instruction) + (cfg.memory_sentence if with_memory else "")
    return f"{cfg.im_start}system\n{cfg.system}{cfg.im_end}\n{cfg.im_start}user\n{user}{cfg.im_end}\n"


def turn_text(cfg: PromptConfig) -> str:
    """One turn up to the assistant header, with the ``{image}`` placeholder."""
    return f"{cfg.im_start}user\n{cfg.frame}{cfg.im_end}\n{cfg.im_start}assistant\n"


def prompt_texts(cfg: PromptConfig, instructions) -> list[str]:
    """The text a model reads (the prefix for each instruction, one turn), placeholders removed:
    the corpus a tokenizer's merges are learnt from."""
    def strip(text: str) -> str:
        return text.replace("{memory}", "").replace("{image}", "")

    return [strip(prefix_text(cfg, " ".join(i.split()), with_memory=True)) for i in instructions] + [strip(turn_text(cfg))]
