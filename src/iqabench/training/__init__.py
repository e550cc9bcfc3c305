"""Self-supervised pretraining: the corpus, the contrastive loss and the training loop."""
