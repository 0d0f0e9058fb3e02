"""Corpora, topics, run files and qrels: one reader and one writer each (writes are atomic).  No torch here."""
from .corpus import (JsonlCorpus, LuceneTexts, corpus_files, document_text, join_title,
                     write_json_collection)
from .qrels import read_qrels, write_qrels
from .runs import OUTPUT_FORMATS, RunEntry, format_run_lines, printed_score, rank_hits, read_run, write_run
from .text import iter_jsonl, open_text
from .topics import read_topics, write_topics
