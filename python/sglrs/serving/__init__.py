"""The serving front: request parsing and the TokenizerManager shared by HTTP and Engine."""
