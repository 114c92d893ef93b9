"""Batched Triton client for the `signals` model: tokenize once, coalesce concurrent requests, one gRPC call.

Every request's texts go into a shared queue; a single flusher task drains it into batches of at most
`max_batch` rows (sent at once when no batch is in flight, else after waiting at most `window_ms` for company),
tokenizes it (on the loop for a few short texts, in a worker thread for a large batch; padding to the batch's own
longest row, never to the model maximum) and sends ONE `infer` call.

A caller that does not need PII says so (`classify(..., pii=False)`); a batch in which no caller needs it asks
Triton for the other outputs only, and the model then runs its graph without the PII branch (~30% less time).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import tritonclient.grpc.aio as grpcclient
from tokenizers import Encoding, Tokenizer
from tritonclient.utils import InferenceServerException

from router_service import metrics
from router_service.core.decision import PiiEntity, TextSignals, without_lone_surrogates
from router_service.errors import ClassifierOverloaded, ClassifierUnavailable
from wire.pii_rules import scored

__all__ = ["SignalClient", "SignalManifest", "load_manifest"]

# Batches up to this many characters are tokenized on the event loop (~50 µs per short prompt); longer ones
# go to a worker thread so a large batch never stalls other requests.
_INLINE_TOKENIZE_CHARS = 2048
_OUTPUTS = ("intent_probs", "jailbreak_probs", "pii_tag_ids", "pii_tag_probs", "embedding")
_PII_OUTPUTS = frozenset({"pii_tag_ids", "pii_tag_probs"})
_CHANNEL_ARGS = [
    ("grpc.max_send_message_length", 2**31 - 1),
    ("grpc.max_receive_message_length", 2**31 - 1),
    # tritonclient's keepalive defaults
    ("grpc.keepalive_time_ms", 2**31 - 1),
    ("grpc.keepalive_timeout_ms", 20000),
    ("grpc.keepalive_permit_without_calls", False),
    ("grpc.http2.max_pings_without_data", 2),
    # After Triton restarts, reconnect within a second: gRPC's default backoff grows to 120 s, which would keep the
    # classifier "unavailable" for minutes after a longer outage although Triton is back.
    ("grpc.initial_reconnect_backoff_ms", 250),
    ("grpc.min_reconnect_backoff_ms", 250),
    ("grpc.max_reconnect_backoff_ms", 1000),
]


@dataclass(frozen=True)
class SignalManifest:
    intent_labels: tuple[str, ...]
    jailbreak_labels: tuple[str, ...]
    pii_labels: tuple[str, ...]
    max_seq_length: int
    embedding_dim: int
    build_key: str
    jailbreak_threshold: float
    """The build's validated jailbreak operating point (0.7, VSR's default, for a manifest without one)."""


def load_manifest(model_dir: Path) -> SignalManifest:
    raw = json.loads((model_dir / "1" / "manifest.json").read_text())
    labels = raw["labels"]
    return SignalManifest(
        intent_labels=tuple(labels["intent"]),
        jailbreak_labels=tuple(labels["jailbreak"]),
        pii_labels=tuple(labels["pii"]),
        max_seq_length=int(raw.get("max_seq_length", 512)),
        embedding_dim=int(raw.get("embedding_dim", 384)),
        build_key=str(raw.get("build_key", "")),
        jailbreak_threshold=float(raw.get("thresholds", {}).get("jailbreak", 0.7)),
    )


@dataclass
class _Pending:
    text: str
    pii: bool
    future: asyncio.Future[TextSignals]


class SignalClient:
    """Async, batching client. Create in the app lifespan; `await start()`, `await close()`."""

    def __init__(
        self,
        triton_url: str,
        model_repository: Path,
        *,
        model_name: str = "signals",
        max_batch: int = 32,
        window_ms: float = 2.0,
        timeout_s: float = 1.0,
        max_seq_length: int | None = None,
        memo_size: int = 2048,
        max_pending_rows: int = 128,
    ) -> None:
        model_dir = model_repository / model_name
        self.manifest = load_manifest(model_dir)
        self.model_name = model_name
        self.max_batch = max_batch
        self.window_s = window_ms / 1000.0
        self.timeout_s = timeout_s
        self.max_seq_length = min(max_seq_length or self.manifest.max_seq_length, self.manifest.max_seq_length)
        self._tokenizer = Tokenizer.from_file(str(model_dir / "1" / "tokenizer.json"))
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(self.max_seq_length)
        self._client = grpcclient.InferenceServerClient(url=triton_url, channel_args=_CHANNEL_ARGS)
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._flusher: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[None]] = set()
        # Bounded memo of recent texts: repeated prompts (retries, cache hits, multi-turn history) skip Triton.
        self._memo: OrderedDict[str, TextSignals] = OrderedDict()
        self._memo_size = memo_size
        # The classification queue's bound: texts queued or in flight. Past it a request is shed at once
        # (ClassifierOverloaded) instead of waiting for Triton's timeout behind a queue it cannot beat.
        self.max_pending_rows = max_pending_rows
        self._pending_rows = 0

    async def start(self) -> None:
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._run(), name="signals-flusher")

    async def close(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            await asyncio.wait({self._flusher}, timeout=5.0)  # shutdown never hangs on the flusher
            self._flusher = None
        await self._client.close()

    async def ready(self) -> bool:
        try:
            return bool(await self._client.is_model_ready(self.model_name, client_timeout=self.timeout_s))
        except InferenceServerException:
            return False

    async def classify(self, texts: Sequence[str], *, pii: bool = True) -> list[TextSignals]:
        """Signals for each text, in order; with `pii=False` their `pii` may be None (not computed).
        Raises ClassifierUnavailable when Triton fails or times out, ClassifierOverloaded (a subclass) at once when
        `max_pending_rows` texts are already queued or in flight (a request alone is always admitted)."""
        results: list[TextSignals | None] = [self._memo_get(t, pii) for t in texts]
        new = sum(1 for r in results if r is None)
        if new and self._pending_rows and self._pending_rows + new > self.max_pending_rows:
            raise ClassifierOverloaded(
                f"the classification queue is full ({self._pending_rows} texts pending, bound {self.max_pending_rows})"
            )
        self._pending_rows += new
        metrics.CLASSIFIER_PENDING_ROWS.set(self._pending_rows)
        loop = asyncio.get_running_loop()
        waiting: list[tuple[int, asyncio.Future[TextSignals]]] = []
        for i, text in enumerate(texts):
            if results[i] is None:
                fut: asyncio.Future[TextSignals] = loop.create_future()
                self._queue.put_nowait(_Pending(text, pii, fut))
                waiting.append((i, fut))
        if waiting:
            try:
                async with asyncio.timeout(self.timeout_s + self.window_s + 0.5):
                    done = await asyncio.gather(*(f for _, f in waiting))
            except TimeoutError as e:
                raise ClassifierUnavailable("Triton did not answer in time") from e
            for (i, _), sig in zip(waiting, done, strict=True):
                results[i] = sig
        return [r for r in results if r is not None]

    async def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """Sentence embeddings (rows L2-normalised) from the same Triton model, for the tool catalogue."""
        signals = await self.classify(texts, pii=False)
        if not signals:
            return np.zeros((0, self.manifest.embedding_dim), dtype=np.float32)
        return np.stack([s.embedding for s in signals]).astype(np.float32)

    def _memo_get(self, text: str, pii: bool) -> TextSignals | None:
        hit = self._memo.get(text)
        if hit is None or (pii and hit.pii is None):
            return None
        self._memo.move_to_end(text)
        return hit

    def _memo_put(self, text: str, sig: TextSignals) -> None:
        known = self._memo.get(text)
        if sig.pii is None and known is not None and known.pii is not None:
            sig = known  # keep the entry that has PII too
        self._memo[text] = sig
        self._memo.move_to_end(text)
        while len(self._memo) > self._memo_size:
            self._memo.popitem(last=False)

    async def _run(self) -> None:
        while True:
            first = await self._queue.get()
            batch = [first]
            while len(batch) < self.max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            # Idle Triton: send at once (no added latency at low load). Busy: wait up to the window for company,
            # so the rows that arrive while a batch runs travel together in the next one.
            deadline = time.monotonic() + (self.window_s if self._inflight else 0.0)
            while len(batch) < self.max_batch:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancel that lands as the
                # get completes, and the flusher would then outlive close().
                try:
                    async with asyncio.timeout(remaining):
                        batch.append(await self._queue.get())
                except TimeoutError:
                    break
            # Never await the inference inline: the next batch forms while this one runs.
            task = asyncio.create_task(self._infer_batch(batch))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)

    async def _infer_batch(self, batch: list[_Pending]) -> None:
        try:
            await self._answer_batch(batch)
        finally:  # the rows leave the bound when Triton is done with them, not when a caller stops waiting
            self._pending_rows = max(0, self._pending_rows - len(batch))
            metrics.CLASSIFIER_PENDING_ROWS.set(self._pending_rows)

    async def _answer_batch(self, batch: list[_Pending]) -> None:
        texts = [p.text for p in batch]
        try:
            signals = await self._infer(texts, pii=any(p.pii for p in batch))
        except ClassifierUnavailable as e:
            for p in batch:
                if not p.future.done():
                    p.future.set_exception(e)
            return
        except Exception as e:  # never leave a caller waiting on an unexpected error
            err = ClassifierUnavailable(f"signals batch failed: {e!r}")
            for p in batch:
                if not p.future.done():
                    p.future.set_exception(err)
            return
        for p, sig in zip(batch, signals, strict=True):
            self._memo_put(p.text, sig)
            if not p.future.done():
                p.future.set_result(sig)

    async def _infer(self, texts: list[str], *, pii: bool = True) -> list[TextSignals]:
        # The tokenizer rejects a str with a lone surrogate, and that would fail every request in the batch. Request
        # bodies are already cleaned (`decision.load_body`); this keeps any other caller from poisoning a batch.
        model_texts = [without_lone_surrogates(t) for t in texts]
        if sum(len(t) for t in model_texts) <= _INLINE_TOKENIZE_CHARS:
            # ~60 µs a prompt: cheaper than a thread hop (and no rayon pool for a handful of texts)
            encodings: list[Encoding] = [self._tokenizer.encode(t) for t in model_texts]
        else:
            encodings = await asyncio.to_thread(self._tokenizer.encode_batch, model_texts)
        width = max(1, max(len(e.ids) for e in encodings))
        ids = np.zeros((len(texts), width), dtype=np.int64)
        mask = np.zeros((len(texts), width), dtype=np.int64)
        for row, enc in enumerate(encodings):
            n = len(enc.ids)
            ids[row, :n] = enc.ids
            mask[row, :n] = 1
            if enc.overflowing:
                metrics.TRUNCATED_TEXTS.inc()
        metrics.SIGNAL_BATCH_SIZE.observe(len(texts))
        inputs = [
            grpcclient.InferInput("input_ids", list(ids.shape), "INT64"),
            grpcclient.InferInput("attention_mask", list(mask.shape), "INT64"),
        ]
        inputs[0].set_data_from_numpy(ids)
        inputs[1].set_data_from_numpy(mask)
        names = _OUTPUTS if pii else tuple(n for n in _OUTPUTS if n not in _PII_OUTPUTS)
        outputs = [grpcclient.InferRequestedOutput(name) for name in names]
        started = time.perf_counter()
        try:
            result = await self._client.infer(self.model_name, inputs, outputs=outputs, client_timeout=self.timeout_s)
        except InferenceServerException as e:
            metrics.CLASSIFIER_ERRORS.labels(reason="triton").inc()
            raise ClassifierUnavailable(f"Triton inference failed: {e.message()}") from e
        metrics.CLASSIFIER_LATENCY.labels(classifier="signals").observe(time.perf_counter() - started)
        arrays = {name: result.as_numpy(name) for name in names}
        return [self._decode(texts[i], encodings[i], arrays, i) for i in range(len(texts))]

    def _decode(self, text: str, enc: Encoding, out: dict[str, npt.NDArray[Any] | None], row: int) -> TextSignals:
        m = self.manifest
        intent = np.asarray(out["intent_probs"])[row]
        jailbreak = np.asarray(out["jailbreak_probs"])[row]
        best = int(np.argmax(intent))
        jb_index = m.jailbreak_labels.index("jailbreak") if "jailbreak" in m.jailbreak_labels else 1
        pii = None
        if "pii_tag_ids" in out:
            tag_ids = np.asarray(out["pii_tag_ids"])[row]
            tag_probs = np.asarray(out["pii_tag_probs"])[row]
            pii = tuple(_entities(text, enc, tag_ids, tag_probs, m.pii_labels))
        return TextSignals(
            intent=m.intent_labels[best],
            intent_confidence=float(intent[best]),
            intent_probs={label: float(p) for label, p in zip(m.intent_labels, intent, strict=True)},
            jailbreak_confidence=float(jailbreak[jb_index]),
            pii=pii,
            embedding=np.asarray(out["embedding"])[row].astype(np.float32, copy=True),
            jailbreak_threshold=m.jailbreak_threshold,
            truncated=bool(enc.overflowing),
        )


def _entities(
    text: str, enc: Encoding, tag_ids: npt.NDArray[Any], tag_probs: npt.NDArray[Any], labels: Sequence[str]
) -> list[PiiEntity]:
    """The model's BIO tags merged with the validated structured-PII rules, with a confidence each
    (`wire.pii_rules.scored`: exactly as the build's evaluation decodes them, so the served quality is the reported
    one)."""
    offsets = [(0, 0) if special else off for off, special in zip(enc.offsets, enc.special_tokens_mask, strict=True)]
    tags = [labels[int(t)] if int(t) < len(labels) else "O" for t in tag_ids[: len(offsets)]]
    return [
        PiiEntity(span.entity_type, span.start, span.end, text[span.start : span.end], confidence)
        for span, confidence in scored(text, offsets, tags, [float(p) for p in tag_probs[: len(offsets)]])
    ]
