"""pyserini-hypencoder: Hypencoder retrieval for Pyserini."""
from ._java import configure_java

configure_java()
