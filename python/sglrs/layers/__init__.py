"""Model building blocks. Linear layers and the embedding are the only ones a tensor-parallel
version swaps: each parameter carries a `weight_loader(param, loaded, shard_id)`."""
