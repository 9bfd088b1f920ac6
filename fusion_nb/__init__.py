"""Notebook-first fraud detection that fuses a graph view (GNN) and a sequence view (LSTM) of the same transactions, and reports honestly whether fusion helps.

Modules:

- `fusion_nb.embeddings`: The aligned two-view embedding store: one row per transaction, its graph-view and sequence-view embeddings side by side, joined by transaction id, saved without pickle.
- `fusion_nb.evaluate`: Metrics for rare-fraud scores: a decision threshold tuned on validation and applied to test, average precision as the headline, and no fake 0.0 on a split that has only one class."""

__version__ = "0.1.0"
