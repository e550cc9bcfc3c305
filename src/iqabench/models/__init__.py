"""Quality models: CNN encoders (self-supervised) and classic NSS baselines."""
