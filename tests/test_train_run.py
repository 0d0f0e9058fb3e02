"""A tiny end-to-end training run on the parity checkpoint (frozen backbone, cached features)."""
import json

import pytest
import torch

from pyserini_hypencoder.model import load_hypencoder
from pyserini_hypencoder.train.cli import cli
from pyserini_hypencoder.train.config import TrainConfig
from pyserini_hypencoder.train.data import load_jsonl
from pyserini_hypencoder.train.trainer import Trainer


@pytest.fixture(scope="module")
def jsonl(parity_dir, tmp_path_factory):
    """The loss fixture's batch in the original training format, with teacher scores."""
    exp = json.loads((parity_dir / "expected_losses.json").read_text())
    path = tmp_path_factory.mktemp("data") / "train.jsonl"
    with open(path, "w") as f:
        for b, (qid, qtext) in enumerate(zip(exp["query_ids"], exp["query_texts"])):
            items = [{"id": str(pid), "content": exp["passage_texts"][4 * b + k], "score": exp["labels"][b][k],
                      "type": "positive" if k == 0 else "negative"}
                     for k, pid in enumerate(exp["passage_ids"][b])]
            f.write(json.dumps({"query": {"id": str(qid), "content": qtext}, "items": items}) + "\n")
    return path


def config(parity_dir, jsonl, out, **kw):
    values = dict(init_from=str(parity_dir / "checkpoint_bin"), pooling="cls", data_format="jsonl",
                  data_path=str(jsonl), dev_fraction=0.0, batch_size=2, negatives=2, margin_mse_weight=1.0,
                  cross_entropy_weight=1.0, only_use_first_item=True, lr=1e-4, warmup_steps=0,
                  schedule="constant", steps=30, eval_every=10, query_max_length=16, passage_max_length=32,
                  output_dir=str(out), cache_dir=str(out.parent / "cache"), half_precision_save=False, seed=3)
    values.update(kw)
    return TrainConfig.load(None, values)


def test_jsonl_loader(jsonl):
    data = load_jsonl(jsonl)
    assert len(data.examples) == 3 and data.has_teacher_scores
    assert all(len(e.positives) == 1 and len(e.negatives) == 3 for e in data.examples)


def test_tiny_run_learns_and_reloads(parity_dir, jsonl, tmp_path):
    trainer = Trainer(config(parity_dir, jsonl, tmp_path / "run"))
    summary = trainer.train()
    losses = [r["loss"] for r in trainer.history]
    assert summary["steps"] == 30
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5
    reloaded = load_hypencoder(str(tmp_path / "run" / "final"))
    model = trainer.model.eval()
    texts = trainer.data.passage_texts
    tok = model.tokenizer(texts, padding="longest", truncation=True, max_length=32, return_tensors="pt")
    qtok = model.tokenizer(trainer.data.query_texts, padding="longest", truncation=True, max_length=16,
                           return_tensors="pt")
    with torch.no_grad():
        before = model.encode_queries(qtok["input_ids"], qtok["attention_mask"]).score(
            model.encode_passages(tok["input_ids"], tok["attention_mask"]))
        after = reloaded.encode_queries(qtok["input_ids"], qtok["attention_mask"]).score(
            reloaded.encode_passages(tok["input_ids"], tok["attention_mask"]))
    assert (before - after).abs().max() < 1e-6
    assert reloaded.settings["query_max_length"] == 16 and reloaded.pooling == "cls"


def test_resume_continues_the_same_run(parity_dir, jsonl, tmp_path, monkeypatch):
    straight = Trainer(config(parity_dir, jsonl, tmp_path / "a", steps=8, save_every=4, schedule="linear"))
    straight.train()
    cfg = config(parity_dir, jsonl, tmp_path / "b", steps=8, save_every=4, schedule="linear")
    broken = Trainer(cfg)
    real = broken.sampler.batch

    def interrupt(step):
        if step == 6:
            raise KeyboardInterrupt
        return real(step)
    monkeypatch.setattr(broken.sampler, "batch", interrupt)
    with pytest.raises(KeyboardInterrupt):
        broken.train()
    with pytest.raises(FileExistsError):
        Trainer(cfg)   # an existing run is never silently overwritten
    resumed = Trainer(cfg, resume=True)
    resumed.train()
    assert [r["loss"] for r in resumed.history] == pytest.approx([r["loss"] for r in straight.history], abs=1e-6)
    for (n, p), (_, q) in zip(straight.model.head.named_parameters(), resumed.model.head.named_parameters()):
        assert torch.allclose(p, q, atol=1e-6), n


def test_cli_reports_bad_config(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model_kind: transformer\ndata_path: x\nsteps: 1\n")
    assert cli(["--config", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model_kind" in err[0]
    assert cli(["--config", str(tmp_path / "missing.yaml")]) == 2
