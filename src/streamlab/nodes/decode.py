"""Decoder: calibrate on labelled epochs, fit off the data path, then predict every epoch.

Phases (see docs/decoding.md):

* ``calibrate``: frames (epochs from :class:`~streamlab.nodes.epochs.Epoch`, or windows) whose
  label (metadata ``label_key``, else the frame's first event) is one of ``classes`` are kept.
  The phase ends at an event labelled ``end_marker`` (on any input frame: an epoch or an
  empty marker frame), or once every class has ``per_class`` epochs.
* ``fit``: the estimator pipeline is fitted (and cross-validated, ``cv_folds``) in a worker
  thread or process: ``process`` returns at once and frames keep flowing. Epochs arriving
  meanwhile are held (``while_fitting: "hold"``, up to ``hold_max``) and predicted as soon as
  the model exists, or the node awaits the fit (``"wait"``: its input backs up, nothing lost).
* ``predict``: one output frame per epoch: channels ``p_<class>`` (probabilities, when the
  final estimator has ``predict_proba``) and ``label`` (index of the predicted class in
  ``classes``), one sample at the time of the epoch's last sample, metadata
  ``predicted_label``, ``true_label`` (when the epoch had one), ``latency_us`` (clock time
  minus the epoch end: meaningful when timestamps are wall-clock) and ``cv_accuracy``; and an
  event ``<event_prefix><predicted label>`` (value: its probability) for an LSL marker outlet.

``model_path`` loads a saved model (skips calibration); ``save_path`` saves the fitted one.
A model records the graph before the decoder (``NodeContext.upstream``) and refuses to run
behind another one.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import multiprocessing
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field, model_validator

from streamlab.config.paths import InputPath, OutputPath
from streamlab.errors import NodeError
from streamlab.events import Event
from streamlab.frame import DataFrame, Payload
from streamlab.learn.persist import DecoderModel, ModelFileError, load_model, save_model
from streamlab.learn.spec import EstimatorPipeline
from streamlab.node import NodeConfig, ProcessingNode
from streamlab.registry import register_node

__all__ = ["Decoder", "DecoderConfig", "DecoderStatistics", "EPOCH_FATES", "fit_decoder"]

#: What becomes of each frame with samples a Decoder receives (statistics()).
EPOCH_FATES = (
    "calibrated",  # kept in the calibration set
    "ignored",     # during calibration: no label, or a label not in ``classes``
    "predicted",   # a prediction was emitted for it
    "no_model",    # no model to predict with (before calibration ended, a held epoch lost)
)


class DecoderConfig(NodeConfig):
    """Settings of Decoder."""

    pipeline: EstimatorPipeline = Field(..., description="The estimator steps: {\"steps\": "
                                        "[[\"Covariances\", {\"estimator\": \"oas\"}], ...]}.")
    classes: list[str] | None = Field(None, min_length=2, description="Labels to learn "
                                      "(others are ignored); None: every label seen.")
    label_key: str = Field("event_label", min_length=1, description="Metadata key holding "
                           "an epoch's label (else its first event's label).")
    end_marker: str = Field("calibration_end", min_length=1, description="Event label that "
                            "ends calibration and starts the fit.")
    per_class: int | None = Field(None, ge=2, description="Also end calibration once every "
                                  "class has this many epochs (needs 'classes').")
    picks: list[str] | None = Field(None, min_length=1, description="Channels, in this order "
                                    "(default: the first epoch's).")
    model_path: InputPath | None = Field(None, min_length=1, description="A saved model to "
                                         "load (skips calibration). A relative path is "
                                         "relative to the config file's folder.")
    save_path: OutputPath | None = Field(None, min_length=1, description="Where to save the "
                                         "model after the fit (.skops); relative: to the "
                                         "config file's folder.")
    fit_in: Literal["thread", "process"] = Field("thread", description="Where the fit runs.")
    while_fitting: Literal["hold", "wait"] = Field("hold", description="'hold': keep epochs "
                                                   "arriving during the fit and predict them "
                                                   "after; 'wait': await the fit.")
    hold_max: int = Field(1000, ge=0, description="Most epochs held during a fit (the oldest "
                          "beyond: fate no_model).")
    cv_folds: int = Field(5, ge=0, description="Stratified k-fold cross-validation after the "
                          "fit (0: none; needs this many epochs per class).")
    event_prefix: str = Field("", description="Prefix of the prediction event's label.")
    ticks_from: str | None = Field(None, min_length=1, description="Id of an input whose "
                                   "frames are only looked at for the end marker and as "
                                   "ticks: held epochs are predicted with the first frame "
                                   "after the fit, from any input (connect the data stream "
                                   "here so that they need not wait for the next epoch).")
    fit_timeout_s: float = Field(600.0, gt=0, description="'wait' mode and on_stop: longest "
                                 "wait for a fit.")

    @model_validator(mode="after")
    def _check(self) -> DecoderConfig:
        if self.per_class is not None and self.classes is None:
            raise ValueError("per_class needs 'classes' (which classes to count)")
        if self.classes is not None and len(set(self.classes)) != len(self.classes):
            raise ValueError(f"classes must be unique (got {self.classes})")
        if self.classes is not None and self.end_marker in self.classes:
            raise ValueError(f"end_marker {self.end_marker!r} is also a class")
        if self.model_path is not None and not Path(self.model_path).suffix == ".skops":
            raise ValueError("model_path must be a .skops file written by a Decoder")
        if self.save_path is not None and not Path(self.save_path).suffix == ".skops":
            raise ValueError("save_path must end in .skops")
        return self


@dataclass(frozen=True)
class DecoderStatistics:
    """What a Decoder did: its phase, epoch fates (EPOCH_FATES), calibration per class, CV."""

    phase: str
    fates: dict[str, int]
    per_class: dict[str, int]
    held: int
    cv_scores: tuple[float, ...]
    fit_seconds: float | None


def fit_decoder(steps: list[Any], X: np.ndarray, y: np.ndarray, cv_folds: int
                ) -> tuple[Any, tuple[float, ...], float]:
    """Fit the pipeline ``steps`` on ``X`` (epochs x channels x samples), ``y``; then the
    stratified ``cv_folds``-fold accuracy (unshuffled folds: deterministic). Runs in the worker.
    """
    import contextlib
    import sys

    quiet: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
    if "mne" in sys.modules:  # CSP logs every covariance at INFO: only warnings, for the fit
        quiet = sys.modules["mne"].utils.use_log_level("WARNING")
    with quiet:
        return _fit(steps, X, y, cv_folds)


def _fit(steps: list[Any], X: np.ndarray, y: np.ndarray, cv_folds: int
         ) -> tuple[Any, tuple[float, ...], float]:
    import time

    from sklearn.model_selection import (  # type: ignore[import-untyped]
        StratifiedKFold,
        cross_val_score,
    )

    t0 = time.perf_counter()
    spec = EstimatorPipeline(steps=steps)
    pipe = spec.build()
    pipe.fit(X, y)
    scores: tuple[float, ...] = ()
    if cv_folds >= 2:
        scores = tuple(float(s) for s in cross_val_score(spec.build(), X, y,
                                                         cv=StratifiedKFold(cv_folds)))
    return pipe, scores, time.perf_counter() - t0


def _warm_up(steps: list[Any]) -> None:
    """Import what the fit needs (in the worker process, before the fit is asked for)."""
    EstimatorPipeline(steps=steps).build()


@dataclass
class _Held:
    frame: DataFrame
    label: str | None


@register_node
class Decoder(ProcessingNode):
    """Calibrate on labelled epochs, fit in the background, then predict a label per epoch.

    Input: epochs (frames of channels x samples, label in metadata ``event_label`` or as the
    first event), and optionally marker frames (``calibration_end``) or, on the input named
    ``ticks_from``, the data stream (ticks that release epochs held during the fit, and the
    end marker). Output per epoch once a
    model exists: one sample with ``p_<class>`` and ``label`` channels, and an event labelled
    with the predicted class. Event fates: ``epoched`` (taken into the calibration set, or the
    end marker), ``unmatched`` (ignored labels during calibration), ``carried`` (on a
    prediction frame), ``rejected`` (no model to predict with), ``dropped`` (held at the stop).
    ``statistics()`` counts each epoch's fate (:data:`EPOCH_FATES`).

    >>> from streamlab.testing import run_node
    >>> rng = np.random.default_rng(0)
    >>> def ep(i, label, scale):
    ...     x = rng.standard_normal((2, 50)) * [[scale], [1.0]]
    ...     return DataFrame(i * 1_000_000, i, {"a": x[0], "b": x[1]},
    ...                      {"event_label": label, "sample_rate": "100"})
    >>> calib = [ep(i, "big" if i % 2 else "small", 3.0 if i % 2 else 1.0) for i in range(20)]
    >>> end = DataFrame(20_000_000, 20, {}, {}, [Event(20_000_000, "calibration_end")])
    >>> test = [ep(21 + i, "?", 3.0) for i in range(3)]
    >>> cfg = {"pipeline": {"steps": [["Covariances", {}], ["TangentSpace", {}],
    ...                               ["LogisticRegression", {}]]},
    ...        "while_fitting": "wait", "cv_folds": 2}
    >>> out = run_node(Decoder, cfg, calib + [end] + test)
    >>> [f.metadata["predicted_label"] for f in out], out[0].channels
    (['big', 'big', 'big'], ('p_big', 'p_small', 'label'))
    """

    Config = DecoderConfig
    handles_events: ClassVar[bool] = True
    uses_upstream: ClassVar[bool] = True  # the runtime sets context.upstream

    def on_create(self, config: DecoderConfig) -> None:
        super().on_create(config)
        self._classes_cfg = frozenset(config.classes) if config.classes is not None else None
        self._X: list[np.ndarray] = []
        self._y: list[str] = []
        self._channels: tuple[str, ...] | None = tuple(config.picks) if config.picks else None
        self._shape: tuple[int, int] | None = None
        self._rate = ""
        self._phase = "calibrate"
        self._model: DecoderModel | None = None
        self._future: cf.Future[Any] | None = None
        self._pool: cf.Executor | None = None
        self._held: deque[_Held] = deque()
        self._fates = dict.fromkeys(EPOCH_FATES, 0)
        self._fit_s: float | None = None
        self._out_names: tuple[str, ...] = ()
        self._seq = 0

    def on_start(self) -> None:
        cfg = self.config
        if cfg.ticks_from is not None and cfg.ticks_from not in self.context.inputs:
            raise self._fail(f"config.ticks_from: {cfg.ticks_from!r} is not an input of this "
                             f"node (inputs: {list(self.context.inputs)})")
        if self.config.model_path is not None:
            self._install(self._load(self.config.model_path))
        elif self.config.fit_in == "process":
            # start the worker now: a spawned interpreter takes seconds to import scikit-learn
            # and the estimators, which would otherwise delay the fit (measured)
            self._pool = cf.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
            self._pool.submit(_warm_up, self.config.pipeline.steps)

    # -- model ---------------------------------------------------------------------------------
    def _fail(self, message: str) -> NodeError:
        return NodeError(self.node_id, f"Decoder: {message}")

    def _load(self, path: str) -> DecoderModel:
        try:
            model = load_model(path)
        except ModelFileError as exc:
            raise self._fail(str(exc)) from None
        if model.spec.canonical() != self.config.pipeline.canonical():
            raise self._fail(f"model file {path!r} was fitted with the steps "
                             f"{model.spec.canonical()}, this node's config.pipeline is "
                             f"{self.config.pipeline.canonical()}")
        if model.upstream != self.context.upstream:
            raise self._fail(
                f"model file {path!r} was fitted behind another graph (upstream sha256 "
                f"{model.upstream_hash[:12]}, this graph's {_sha(self.context.upstream)[:12]}): "
                f"the nodes before the decoder or their configs differ "
                f"({_diff(model.upstream, self.context.upstream)}); calibrate again behind "
                f"this graph")
        return model

    def _install(self, model: DecoderModel) -> None:
        self._model = model
        self._channels = model.channels
        self._shape = (len(model.channels), model.n_times)
        self._rate = model.sample_rate
        self._phase = "predict"
        self._has_proba = hasattr(model.pipeline, "predict_proba")
        self._out_names = tuple(f"p_{c}" for c in model.classes) * self._has_proba + ("label",)
        self._index = {c: i for i, c in enumerate(model.classes)}
        self._cv = (f"{np.mean(model.cv_scores):.6f}" if model.cv_scores else "")

    def _start_fit(self) -> None:
        counts = self._per_class()
        need = max(2, self.config.cv_folds)
        few = {c: n for c, n in counts.items() if n < need}
        if len(counts) < 2 or few:
            raise self._fail(f"cannot fit at {self.config.end_marker!r}: need at least 2 classes "
                             f"with {need} epochs each (cv_folds={self.config.cv_folds}), "
                             f"got {counts}")
        X = np.stack(self._X)
        y = np.array(self._y)
        self._phase = "fit"
        if self.config.fit_in == "process":
            # spawn: a clean interpreter (no fork of a process with threads and a running loop)
            if self._pool is None:
                self._pool = cf.ProcessPoolExecutor(
                    1, mp_context=multiprocessing.get_context("spawn"))
        else:
            self._pool = cf.ThreadPoolExecutor(1, thread_name_prefix=f"fit-{self.node_id}")
        self._future = self._pool.submit(fit_decoder, self.config.pipeline.steps, X, y,
                                         self.config.cv_folds)
        self.context.logger.info("%s: fitting on %d epochs %s in a %s", self.node_id, len(y),
                                 counts, self.config.fit_in)

    def _finish_fit(self) -> None:
        """Install the fitted model (the future is done); a failed fit raises NodeError."""
        assert self._future is not None
        try:
            pipe, scores, seconds = self._future.result()
        except Exception as exc:  # propagates, named: a fit that fails stops the pipeline
            raise self._fail(f"the fit failed: {type(exc).__name__}: {exc}") from exc
        finally:
            self._future = None
            self._close_pool()
        self._fit_s = seconds
        self._X.clear()
        model = DecoderModel(self.config.pipeline, pipe, tuple(str(c) for c in pipe.classes_),
                             self._channels or (), self._shape[1] if self._shape else 0,
                             self._rate, self.context.upstream, scores)
        self._install(model)
        cv = (f"cross-validated accuracy {np.mean(scores):.3f} +- {np.std(scores):.3f} "
              f"({len(scores)} folds)" if scores else "no cross-validation")
        self.context.logger.info("%s: fitted in %.2f s, %s", self.node_id, seconds, cv)
        if self.config.save_path is not None:
            save_model(self.config.save_path, model)

    async def _await_fit(self) -> bool:
        """Wait (``fit_timeout_s`` at most) for the running fit; whether it ended. A failed fit
        is not raised here: _finish_fit reports it, naming the node."""
        assert self._future is not None
        waiter = asyncio.wrap_future(self._future)
        done, _ = await asyncio.wait({waiter}, timeout=self.config.fit_timeout_s)
        if done:
            waiter.exception()  # the exception _finish_fit raises: asyncio must not warn
        return bool(done)

    def _close_pool(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    # -- per frame -----------------------------------------------------------------------------
    async def process(self, frame: DataFrame) -> list[DataFrame]:
        outs: list[DataFrame] = []
        if self._future is not None and self.config.while_fitting == "wait":
            if not await self._await_fit():
                raise self._fail(f"the fit did not finish within fit_timeout_s="
                                 f"{self.config.fit_timeout_s:g} s (while_fitting 'wait')")
        if self._future is not None and self._future.done():
            self._finish_fit()
            if self._held:
                held = list(self._held)
                self._held.clear()
                outs.extend(self._predict([h.frame for h in held], [h.label for h in held]))
        end = any(e.label == self.config.end_marker for e in frame.events)
        ticks = (self.config.ticks_from is not None
                 and self.context.current_input == self.config.ticks_from)
        if frame.n_samples == 0 or ticks:  # a marker frame or a tick: only the end marker
            for e in frame.events:
                self.context.settle_events("epoched" if e.label == self.config.end_marker
                                           else "unmatched")
        elif end:  # an epoch cut around the end marker is a marker, not a trial
            self.context.settle_events("epoched", len(frame.events))
        else:
            outs.extend(self._epoch(frame))
        if end and self._phase == "calibrate":
            self._start_fit()
        return outs

    def _label(self, frame: DataFrame) -> str | None:
        label = frame.metadata.get(self.config.label_key)
        if label is None and frame.events:
            label = frame.events[0].label
        return label

    def _block(self, frame: DataFrame) -> np.ndarray:
        if self._channels is None:
            self._channels = frame.channels
        missing = [c for c in self._channels if c not in frame.channels]
        if missing:
            raise self._fail(f"frame {frame.sequence_id} lacks the channels {missing} "
                             f"(the model uses {list(self._channels)})")
        block = frame.block()
        if frame.channels != self._channels:
            block = block[[frame.channels.index(c) for c in self._channels]]
        if self._shape is None:
            self._shape = (block.shape[0], block.shape[1])
            self._rate = frame.metadata.get("sample_rate", "")
        elif block.shape[1] != self._shape[1]:
            raise self._fail(f"frame {frame.sequence_id} has {block.shape[1]} samples, the "
                             f"{'model' if self._model else 'first epoch'} has {self._shape[1]}")
        return block

    def _epoch(self, frame: DataFrame) -> list[DataFrame]:
        label = self._label(frame)
        n_ev = len(frame.events)
        if self._phase == "calibrate":
            wanted = (label is not None and label != self.config.end_marker and
                      (self._classes_cfg is None or label in self._classes_cfg))
            if label is None:  # a window to predict, but there is no model yet
                self._no_model(frame)
                return []
            if not wanted:
                self._fates["ignored"] += 1
                self.context.settle_events("unmatched", n_ev)
                return []
            self._X.append(self._block(frame))
            self._y.append(label)
            self._fates["calibrated"] += 1
            self.context.settle_events("epoched", n_ev)
            if self.config.per_class is not None and self._classes_cfg is not None:
                counts = self._per_class()
                if all(counts.get(c, 0) >= self.config.per_class for c in self._classes_cfg):
                    self._start_fit()
            return []
        if self._phase == "fit":
            self._block(frame)  # shape checks now, not after the fit
            if len(self._held) >= self.config.hold_max:
                if not self.config.hold_max:
                    self._no_model(frame)
                    return []
                self._no_model(self._held.popleft().frame)
            self._held.append(_Held(frame, label))
            return []
        return self._predict([frame], [label])

    def _no_model(self, frame: DataFrame) -> None:
        self._fates["no_model"] += 1
        self.context.settle_events("rejected", len(frame.events))

    def _per_class(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for c in self._y:
            counts[c] = counts.get(c, 0) + 1
        return dict(sorted(counts.items()))

    def _predict(self, frames: list[DataFrame], labels: list[str | None]) -> list[DataFrame]:
        """One prediction frame per epoch, from ONE pass through the transformers for all of
        them (the held epochs after a fit come at once: one call, not one per epoch)."""
        model = self._model
        assert model is not None
        X = np.stack([self._block(f) for f in frames])
        pipe = model.pipeline
        Xt = pipe[:-1].transform(X) if len(pipe) > 1 else X
        final = pipe[-1]
        preds = [str(p) for p in final.predict(Xt)]  # the classifier's own rule, as offline
        probas = final.predict_proba(Xt) if self._has_proba else None
        now = self.context.clock.time_us()
        outs = []
        for k, (frame, label, pred) in enumerate(zip(frames, labels, preds)):
            values: dict[str, np.ndarray] = {}
            prob = 1.0
            if probas is not None:
                for c, v in zip(model.classes, probas[k]):
                    values[f"p_{c}"] = np.array([v])
                prob = float(probas[k][self._index[pred]])
            values["label"] = np.array([float(self._index[pred])])
            end = frame.timestamp
            if frame.n_samples > 1 and self._rate:
                end += round((frame.n_samples - 1) * 1e6 / float(self._rate))
            meta = {"predicted_label": pred, "latency_us": str(now - end),
                    "cv_accuracy": self._cv}
            if label is not None:
                meta["true_label"] = label
            if "event_index" in frame.metadata:
                meta["event_index"] = frame.metadata["event_index"]
            self._fates["predicted"] += 1
            self.context.settle_events("carried", len(frame.events))
            events = [e.at(0) for e in frame.events]
            events.append(Event(end, self.config.event_prefix + pred, value=prob))
            self._seq += 1
            outs.append(DataFrame(end, self._seq - 1, Payload(values), meta, events))
        return outs

    async def on_stop(self) -> None:
        """Await a running fit (``fit_timeout_s``) so that its model is installed and saved;
        held epochs can no longer be output: fate ``no_model``, events ``dropped``. A fit that
        failed raises NodeError (after the held epochs are counted); one that timed out is
        logged and abandoned (a thread cannot be killed: it ends on its own)."""
        failure: NodeError | None = None
        if self._future is not None:
            if not await self._await_fit():
                self.context.logger.error("%s: the fit did not finish within %g s at the "
                                          "stop; abandoned", self.node_id,
                                          self.config.fit_timeout_s)
                self._future = None
            if self._future is not None:
                try:
                    self._finish_fit()
                except NodeError as exc:
                    failure = exc
        self._close_pool()
        while self._held:  # no output is possible any more: they are lost, counted
            h = self._held.popleft()
            self._fates["no_model"] += 1
            self.context.settle_events("dropped", len(h.frame.events))
        if failure is not None:
            raise failure

    def statistics(self) -> DecoderStatistics:
        """Phase, epoch fates, calibration epochs per class, held epochs, CV scores."""
        return DecoderStatistics(self._phase, dict(self._fates), self._per_class(),
                                 len(self._held),
                                 self._model.cv_scores if self._model else (), self._fit_s)

    @property
    def model(self) -> DecoderModel | None:
        """The fitted or loaded model (None before)."""
        return self._model


def _sha(text: str) -> str:
    from streamlab.learn.persist import upstream_digest

    return upstream_digest(text)


def _diff(a: str, b: str) -> str:
    """A short description of how two upstream descriptions differ."""
    import json

    try:
        na, nb = json.loads(a)["nodes"], json.loads(b)["nodes"]
    except (ValueError, KeyError, TypeError):
        return "the model was fitted outside a pipeline" if not a else "unreadable"
    ta = [n.get("type", "source") for n in na]
    tb = [n.get("type", "source") for n in nb]
    if ta != tb:
        return f"model: {' -> '.join(ta) or 'nothing'}; here: {' -> '.join(tb) or 'nothing'}"
    changed = [t for t, x, y in zip(ta, na, nb) if x != y]
    return f"configs of {changed} differ" if changed else "the connections differ"
