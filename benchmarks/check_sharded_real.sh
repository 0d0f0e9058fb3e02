#!/bin/bash
# Real-data check: sharded == merged on SciFact (exact, surrogate) and the DL19 pool (rerank). Run under flock.
set -euo pipefail
#   bash benchmarks/check_sharded_real.sh [WORKDIR]     (from the repository root; ../shared beside it)
export OMP_NUM_THREADS=2
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-.venv/bin/python}
D=${PYSERINI_HYPENCODER_SHARED:-../shared}/data
W=${1:-runs/sharded-check}
mkdir -p $W
enc() {  # corpus fields outdir dtype
  for i in 0 1 2; do
    [ -e $3/shards/part-$i/meta.json ] || $PY -m pyserini_hypencoder.encode input --corpus $1 $2 --shard-id $i --shard-num 3 \
      output --embeddings $3/shards/part-$i --storage-dtype $4 encoder --encoder default --batch-size 32 --bf16 --threads 2 --quiet
  done
  [ -e $3/merged/meta.json ] || $PY -m pyserini_hypencoder.encode.merge --shards $3/shards/part-{0,1,2} --output $3/merged --quiet
}
t0=$(date +%s)
enc $D/scifact/corpus.jsonl "--fields title text" $W/scifact float32
enc $D/trec-dl-2019-passage-rerank/corpus.jsonl "" $W/dl19 bfloat16
echo "encode done in $(( $(date +%s) - t0 )) s"
S="--encoder default --batch-size 32 --bf16 --threads 2 --quiet"
for idx in merged shards; do
  /usr/bin/time -f "scifact exact $idx %e s %M KB" $PY -m pyserini_hypencoder.search --topics $D/scifact/topics.test.tsv --index $W/scifact/$idx $S --hits 1000 --output $W/scifact.exact.$idx.trec
  /usr/bin/time -f "scifact surrogate $idx %e s %M KB" $PY -m pyserini_hypencoder.search --topics $D/scifact/topics.test.tsv --index $W/scifact/$idx $S --hits 1000 --strategy surrogate --surrogate-candidates 500 --output $W/scifact.surrogate.$idx.trec
  /usr/bin/time -f "dl19 rerank $idx %e s %M KB" $PY -m pyserini_hypencoder.search --topics $D/trec-dl-2019-passage-rerank/topics.test.tsv --index $W/dl19/$idx $S --rerank $D/trec-dl-2019-passage-rerank/runs/bm25.trec --rerank-depth 100 --output $W/dl19.rerank.$idx.trec
done
for r in scifact.exact scifact.surrogate dl19.rerank; do
  if cmp -s $W/$r.merged.trec $W/$r.shards.trec; then echo "$r: IDENTICAL ($(wc -l < $W/$r.merged.trec) lines, sha256 $(sha256sum < $W/$r.merged.trec | cut -c1-16))"; else echo "$r: DIFFERENT"; fi
done
