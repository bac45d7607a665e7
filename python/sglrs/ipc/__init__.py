"""Inter-process plumbing: typed messages (`messages`) and IPC endpoints (`ports`)."""
