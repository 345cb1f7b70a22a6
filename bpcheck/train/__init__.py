"""Training: optimizers as records, K steps judged at the candidate's own parameters, an honest envelope."""
